package round

import (
	"crypto/rand"
	"errors"
	"testing"

	"github.com/fedtune/fedtune/crypto/secagg"
)

type sim struct {
	t       *testing.T
	m       *Machine
	clients map[secagg.SiteID]*secagg.Client
	inputs  map[secagg.SiteID][]uint32
	dropAt  map[secagg.SiteID]secagg.Stage // site stops answering from this stage on
	persist []State
	events  []Event
	result  *Result
	abort   *Abort
}

func newSim(t *testing.T, n, tt, minSites int, vlen int, deadlines map[secagg.Stage]uint64) (*sim, Ready) {
	t.Helper()
	p := secagg.Params{FederationID: "fed-test", Round: 7, N: n, T: tt, VectorLen: vlen, SigAlg: secagg.Ed25519}
	var roster secagg.Roster
	var ids []*secagg.Identity
	for i := 0; i < n; i++ {
		id, err := secagg.NewIdentity(secagg.Ed25519, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		roster = append(roster, id.Public())
	}
	s := &sim{t: t, clients: map[secagg.SiteID]*secagg.Client{}, inputs: map[secagg.SiteID][]uint32{}, dropAt: map[secagg.SiteID]secagg.Stage{}}
	for i := 0; i < n; i++ {
		sid := secagg.SiteID(i + 1)
		c, err := secagg.NewClient(p, sid, ids[i], roster, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.clients[sid] = c
		in := make([]uint32, vlen)
		for j := range in {
			in[j] = uint32(i*1000003+j*7919) ^ 0xdeadbeef
		}
		s.inputs[sid] = in
	}
	m, rd, err := New(Config{Params: p, Roster: roster, MinSites: minSites, Deadlines: deadlines})
	if err != nil {
		t.Fatal(err)
	}
	s.m = m
	return s, rd
}

func (s *sim) answers(id secagg.SiteID, st secagg.Stage) bool {
	d, ok := s.dropAt[id]
	return !ok || st < d
}

// handle processes a Ready in the documented order and feeds the sites'
// answers back, depth first.
func (s *sim) handle(rd Ready) {
	if rd.Persist != nil {
		s.persist = append(s.persist, *rd.Persist)
	}
	s.events = append(s.events, rd.Events...)
	if rd.Result != nil {
		s.result = rd.Result
	}
	if rd.Abort != nil {
		s.abort = rd.Abort
	}
	if rd.Persist != nil && rd.Persist.Stage == secagg.StageAdvertiseKeys {
		for _, id := range rd.Persist.Expected {
			if s.answers(id, secagg.StageAdvertiseKeys) {
				msg, err := s.clients[id].AdvertiseKeys()
				if err != nil {
					s.t.Fatal(err)
				}
				s.deliver(id, msg)
			}
		}
	}
	for _, o := range rd.Send {
		c := s.clients[o.To]
		var msg secagg.Message
		var err error
		switch v := o.Msg.(type) {
		case *secagg.KeyList:
			if !s.answers(o.To, secagg.StageShareKeys) {
				continue
			}
			msg, err = c.ShareKeys(v)
		case *secagg.ShareKeysRelay:
			if !s.answers(o.To, secagg.StageMaskedInput) {
				continue
			}
			msg, err = c.MaskedInput(v, s.inputs[o.To])
		case *secagg.SurvivorList:
			if !s.answers(o.To, secagg.StageConsistencyCheck) {
				continue
			}
			msg, err = c.ConsistencyCheck(v)
		case *secagg.ConsistencyCertificate:
			if !s.answers(o.To, secagg.StageUnmask) {
				continue
			}
			msg, err = c.Unmask(v)
		default:
			s.t.Fatalf("unexpected message %T", o.Msg)
		}
		if err != nil {
			s.t.Fatalf("site %d: %v", o.To, err)
		}
		s.deliver(o.To, msg)
	}
}

func (s *sim) deliver(id secagg.SiteID, msg secagg.Message) {
	rd, err := s.m.Receive(id, msg)
	if err != nil {
		s.t.Fatalf("site %d: %v", id, err)
	}
	s.handle(rd)
}

func (s *sim) tickUntilDone(max int) int {
	n := 0
	for !s.m.Done() && n < max {
		s.handle(s.m.Tick())
		n++
	}
	return n
}

func (s *sim) wantSum(survivors []secagg.SiteID) {
	s.t.Helper()
	if s.result == nil {
		s.t.Fatalf("no result; abort=%+v", s.abort)
	}
	if len(s.result.Survivors) != len(survivors) {
		s.t.Fatalf("survivors %v, want %v", s.result.Survivors, survivors)
	}
	want := make([]uint32, len(s.result.Sum))
	for i, id := range survivors {
		if s.result.Survivors[i] != id {
			s.t.Fatalf("survivors %v, want %v", s.result.Survivors, survivors)
		}
		for j, v := range s.inputs[id] {
			want[j] += v
		}
	}
	for j := range want {
		if want[j] != s.result.Sum[j] {
			s.t.Fatalf("sum[%d] = %d, want %d", j, s.result.Sum[j], want[j])
		}
	}
}

func TestCompleteWithoutTicks(t *testing.T) {
	s, rd := newSim(t, 4, 3, 3, 64, nil)
	s.handle(rd)
	if !s.m.Done() {
		t.Fatalf("round not done; stage %v", s.m.Stage())
	}
	s.wantSum([]secagg.SiteID{1, 2, 3, 4})
	// Persisted stages in order, each before the stage's messages went out.
	want := []secagg.Stage{secagg.StageAdvertiseKeys, secagg.StageShareKeys, secagg.StageMaskedInput, secagg.StageConsistencyCheck, secagg.StageUnmask, secagg.StageDone}
	if len(s.persist) != len(want) {
		t.Fatalf("persisted %v", s.persist)
	}
	for i, st := range want {
		if s.persist[i].Stage != st {
			t.Fatalf("persist[%d] = %v, want %v", i, s.persist[i].Stage, st)
		}
	}
	if last := s.events[len(s.events)-1]; last.Kind != RoundCompleted {
		t.Fatalf("last event %+v", last)
	}
}

func TestDropoutAtEachStage(t *testing.T) {
	for _, st := range []secagg.Stage{secagg.StageAdvertiseKeys, secagg.StageShareKeys, secagg.StageMaskedInput, secagg.StageConsistencyCheck, secagg.StageUnmask} {
		t.Run(st.String(), func(t *testing.T) {
			dl := map[secagg.Stage]uint64{st: 5}
			s, rd := newSim(t, 5, 3, 3, 32, dl)
			s.dropAt[2] = st
			s.handle(rd)
			if s.m.Done() {
				t.Fatal("finished before the deadline although site 2 is silent")
			}
			ticks := s.tickUntilDone(100)
			if ticks != 5 {
				t.Fatalf("stage closed after %d ticks, deadline is 5", ticks)
			}
			var dropped []Event
			for _, e := range s.events {
				if e.Kind == SiteDropped {
					dropped = append(dropped, e)
				}
			}
			if len(dropped) != 1 || dropped[0].Site != 2 || dropped[0].Stage != st {
				t.Fatalf("dropout events %+v", dropped)
			}
			// Sites that drop before MaskedInput closes are not in the sum;
			// later drop-outs are (their input was already masked in).
			survivors := []secagg.SiteID{1, 3, 4, 5}
			if st > secagg.StageMaskedInput {
				survivors = []secagg.SiteID{1, 2, 3, 4, 5}
			}
			s.wantSum(survivors)
		})
	}
}

func TestMinSitesAbort(t *testing.T) {
	s, rd := newSim(t, 5, 3, 4, 16, map[secagg.Stage]uint64{secagg.StageMaskedInput: 3})
	s.dropAt[1] = secagg.StageMaskedInput
	s.dropAt[5] = secagg.StageMaskedInput
	s.handle(rd)
	s.tickUntilDone(10)
	if s.result != nil || s.abort == nil || s.abort.Reason != TooFewSites || s.abort.Stage != secagg.StageMaskedInput {
		t.Fatalf("result=%v abort=%+v", s.result, s.abort)
	}
	if last := s.persist[len(s.persist)-1]; last.Stage != secagg.StageAborted {
		t.Fatalf("last persisted state %+v", last)
	}
	// Nothing more happens after the end.
	if rd := s.m.Tick(); rd.Persist != nil || len(rd.Send) != 0 {
		t.Fatal("ticks after the end produced output")
	}
}

func TestBelowThresholdAbort(t *testing.T) {
	s, rd := newSim(t, 3, 2, 2, 8, map[secagg.Stage]uint64{secagg.StageShareKeys: 2})
	s.dropAt[1] = secagg.StageShareKeys
	s.dropAt[2] = secagg.StageShareKeys
	s.handle(rd)
	s.tickUntilDone(10)
	if s.abort == nil || s.abort.Reason != TooFewSites || s.result != nil {
		t.Fatalf("abort=%+v result=%v", s.abort, s.result)
	}
}

func TestOperatorAbortAndSender(t *testing.T) {
	s, rd := newSim(t, 3, 2, 2, 8, nil)
	// Answer nothing yet: impersonation is refused.
	msg, err := s.clients[1].AdvertiseKeys()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Receive(2, msg); !errors.Is(err, ErrNotSender) {
		t.Fatalf("impersonation: %v", err)
	}
	_ = rd
	s.handle(s.m.Abort("maintenance"))
	if s.abort == nil || s.abort.Reason != Operator {
		t.Fatalf("abort %+v", s.abort)
	}
	if _, err := s.m.Receive(1, msg); err == nil {
		t.Fatal("message accepted after abort")
	}
}

func TestConfigValidation(t *testing.T) {
	p := secagg.Params{FederationID: "f", Round: 1, N: 3, T: 2, VectorLen: 4, SigAlg: secagg.Ed25519}
	if _, _, err := New(Config{Params: p, MinSites: 1}); err == nil {
		t.Fatal("MinSites below T accepted")
	}
	if _, _, err := New(Config{Params: p, MinSites: 4}); err == nil {
		t.Fatal("MinSites above N accepted")
	}
}

// A site that withdraws closes the stage without waiting for its deadline,
// is reported with the given detail, and can send nothing more.
func TestWithdraw(t *testing.T) {
	for _, st := range []secagg.Stage{secagg.StageAdvertiseKeys, secagg.StageShareKeys, secagg.StageConsistencyCheck} {
		t.Run(st.String(), func(t *testing.T) {
			s, rd := newSim(t, 4, 3, 3, 16, nil)
			s.dropAt[4] = st
			s.handle(rd)
			if s.m.Done() || s.m.Stage() != st {
				t.Fatalf("stage %v, want %v waiting for site 4", s.m.Stage(), st)
			}
			if got := s.m.Arrived(); len(got) != 3 {
				t.Fatalf("arrived %v, want sites 1-3", got)
			}
			rd, err := s.m.Withdraw(4, "site refused the round")
			if err != nil {
				t.Fatal(err)
			}
			s.handle(rd)
			if !s.m.Done() || s.m.Now() != 0 {
				t.Fatalf("done=%v after %d ticks; a withdrawal should close the stage at once", s.m.Done(), s.m.Now())
			}
			survivors := []secagg.SiteID{1, 2, 3}
			if st > secagg.StageMaskedInput {
				survivors = []secagg.SiteID{1, 2, 3, 4}
			}
			s.wantSum(survivors)
			var dropped []Event
			for _, e := range s.events {
				if e.Kind == SiteDropped {
					dropped = append(dropped, e)
				}
			}
			if len(dropped) != 1 || dropped[0].Site != 4 || dropped[0].Stage != st || dropped[0].Detail != "site refused the round" {
				t.Fatalf("dropout events %+v", dropped)
			}
		})
	}
}

func TestWithdrawRejects(t *testing.T) {
	s, _ := newSim(t, 3, 2, 2, 8, nil)
	msg, err := s.clients[2].AdvertiseKeys()
	if err != nil {
		t.Fatal(err)
	}
	if rd, err := s.m.Withdraw(2, "refused"); err != nil || rd.Persist != nil {
		t.Fatalf("withdraw: %v, ready %+v", err, rd)
	}
	if rd, err := s.m.Withdraw(2, "again"); err != nil || rd.Persist != nil {
		t.Fatalf("second withdraw: %v, ready %+v", err, rd)
	}
	if _, err := s.m.Receive(2, msg); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("message after withdrawal: %v", err)
	}
	for _, id := range []secagg.SiteID{0, 4} {
		if _, err := s.m.Withdraw(id, "x"); err == nil {
			t.Fatalf("site %d outside the roster withdrew", id)
		}
	}
	s.handle(s.m.Abort("stop"))
	if _, err := s.m.Withdraw(1, "late"); !errors.Is(err, secagg.ErrLate) {
		t.Fatalf("withdraw after the end: %v", err)
	}
}

// Every expected site withdrawing ends the stage at once with TooFewSites.
func TestAllWithdraw(t *testing.T) {
	s, _ := newSim(t, 3, 2, 2, 8, nil)
	for id := secagg.SiteID(1); id <= 3; id++ {
		rd, err := s.m.Withdraw(id, "refused")
		if err != nil {
			t.Fatal(err)
		}
		s.handle(rd)
	}
	if s.abort == nil || s.abort.Reason != TooFewSites || s.m.Now() != 0 {
		t.Fatalf("abort %+v after %d ticks", s.abort, s.m.Now())
	}
}
