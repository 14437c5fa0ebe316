package secagg_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/crypto/secagg/sim"
)

func params(n, t, m int, pq bool) secagg.Params {
	return secagg.Params{FederationID: "fed-test", Round: 7, N: n, T: t, VectorLen: m, PQ: pq, SigAlg: secagg.Ed25519, Workers: 2}
}

var modes = []struct {
	name string
	pq   bool
}{{"classical", false}, {"pq", true}}

func mustNew(t *testing.T, cfg sim.Config) *sim.Federation {
	t.Helper()
	f, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func sites(ids ...int) []secagg.SiteID {
	out := make([]secagg.SiteID, len(ids))
	for i, id := range ids {
		out[i] = secagg.SiteID(id)
	}
	return out
}

// checkExact runs f to completion and requires the exact sum over want.
func checkExact(t *testing.T, f *sim.Federation, want []secagg.SiteID) {
	t.Helper()
	sum, surv, err := f.Run()
	if err != nil {
		t.Fatalf("round failed: %v\nclient errors: %v\nrejected: %v", err, f.ClientErrs, f.Rejected)
	}
	if !slices.Equal(surv, want) {
		t.Fatalf("survivors = %v, want %v", surv, want)
	}
	if !slices.Equal(sum, f.PlainSum(surv)) {
		t.Fatal("unmasked sum differs from the plain modular sum of the survivors' inputs")
	}
}

func TestDropAfterEachStage(t *testing.T) {
	for _, md := range modes {
		for st := secagg.StageAdvertiseKeys; st <= secagg.StageUnmask; st++ {
			t.Run(fmt.Sprintf("%s/%v", md.name, st), func(t *testing.T) {
				f := mustNew(t, sim.Config{Params: params(5, 3, 333, md.pq), Seed: [32]byte{byte(st)},
					DropAt: map[secagg.SiteID]secagg.Stage{2: st}})
				want := sites(1, 3, 4, 5)
				if st >= secagg.StageConsistencyCheck {
					// Site 2's masked input arrived: it counts although
					// site 2 is gone; its self mask is rebuilt from shares.
					want = sites(1, 2, 3, 4, 5)
				}
				checkExact(t, f, want)
			})
		}
	}
}

func TestSeveralDropsAcrossStages(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			f := mustNew(t, sim.Config{Params: params(9, 5, 1000, md.pq), Seed: [32]byte{9},
				DropAt: map[secagg.SiteID]secagg.Stage{
					1: secagg.StageShareKeys, 4: secagg.StageMaskedInput,
					7: secagg.StageConsistencyCheck, 9: secagg.StageUnmask,
				}})
			// U1 = 9 sites, U2 = 8, U3 = 7, U4 = 6, U5 = 5 = T: just enough.
			checkExact(t, f, sites(2, 3, 5, 6, 7, 8, 9))
		})
	}
}

func TestTooFewSurvivorsAbortsCleanly(t *testing.T) {
	for st := secagg.StageAdvertiseKeys; st <= secagg.StageUnmask; st++ {
		t.Run(st.String(), func(t *testing.T) {
			f := mustNew(t, sim.Config{Params: params(5, 3, 64, false), Seed: [32]byte{3},
				DropAt: map[secagg.SiteID]secagg.Stage{1: st, 2: st, 3: st}})
			sum, _, err := f.Run()
			if !errors.Is(err, secagg.ErrTooFewSites) || !errors.Is(err, secagg.ErrAborted) {
				t.Fatalf("Run error = %v, want ErrTooFewSites", err)
			}
			var ae *secagg.AbortError
			if !errors.As(err, &ae) || ae.Stage != st {
				t.Fatalf("abort %v, want an AbortError in stage %v", err, st)
			}
			if sum != nil {
				t.Fatal("a sum was released after an abort")
			}
			if _, _, err := f.Server.Result(); !errors.Is(err, secagg.ErrTooFewSites) {
				t.Fatalf("Result after abort = %v", err)
			}
			if f.Server.Stage() != secagg.StageAborted {
				t.Fatalf("server stage %v", f.Server.Stage())
			}
		})
	}
}

func TestLateSiteIsRejected(t *testing.T) {
	var late secagg.Message
	f := mustNew(t, sim.Config{Params: params(5, 3, 100, false), Seed: [32]byte{4},
		ToServer: func(from secagg.SiteID, m secagg.Message) secagg.Message {
			if _, ok := m.(*secagg.MaskedInput); ok && from == 3 {
				late = m // held back until after the deadline
				return nil
			}
			return m
		}})
	for f.Server.Stage() < secagg.StageConsistencyCheck {
		if err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Deliver(3, late); err != nil {
		t.Fatal(err)
	}
	if len(f.Rejected) != 1 || !errors.Is(f.Rejected[0], secagg.ErrLate) {
		t.Fatalf("late message: rejections %v, want one ErrLate", f.Rejected)
	}
	checkExact(t, f, sites(1, 2, 4, 5))
}

func TestForgedSignatureRejectedByServer(t *testing.T) {
	f := mustNew(t, sim.Config{Params: params(5, 3, 100, false), Seed: [32]byte{5},
		ToServer: func(from secagg.SiteID, m secagg.Message) secagg.Message {
			if a, ok := m.(*secagg.AdvertiseKeys); ok && from == 2 {
				c := *a
				c.Sig = slices.Clone(a.Sig)
				c.Sig[10] ^= 1
				return &c
			}
			return m
		}})
	checkExact(t, f, sites(1, 3, 4, 5))
	if len(f.Rejected) != 1 || !errors.Is(f.Rejected[0], secagg.ErrBadSignature) {
		t.Fatalf("rejections %v, want one ErrBadSignature", f.Rejected)
	}
}

// A malicious server that alters a site's keys in the key list (to read its
// shares) is caught by the signature check.
func TestServerSubstitutesKeys(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			f := mustNew(t, sim.Config{Params: params(4, 3, 10, md.pq), Seed: [32]byte{6},
				ToClient: func(to secagg.SiteID, m secagg.Message) secagg.Message {
					if kl, ok := m.(*secagg.KeyList); ok && to == 1 {
						c := *kl
						c.Entries = slices.Clone(kl.Entries)
						e := *c.Entries[1]
						e.EncPK = slices.Clone(c.Entries[0].EncPK) // site 1's own key
						c.Entries[1] = &e
						return &c
					}
					return m
				}})
			f.Run()
			if err := f.ClientErrs[1]; !errors.Is(err, secagg.ErrBadSignature) {
				t.Fatalf("site 1 error %v, want ErrBadSignature", err)
			}
		})
	}
}

// A server that shows one site a different key list (here without site 4)
// splits the transcript; the envelopes of the others then fail the check.
func TestServerSplitsKeyLists(t *testing.T) {
	f := mustNew(t, sim.Config{Params: params(5, 3, 10, false), Seed: [32]byte{7},
		ToClient: func(to secagg.SiteID, m secagg.Message) secagg.Message {
			if kl, ok := m.(*secagg.KeyList); ok && to == 1 {
				c := *kl
				c.Entries = slices.Delete(slices.Clone(kl.Entries), 3, 4)
				return &c
			}
			return m
		}})
	// Site 1 shares among the 4 sites it was shown: the server refuses the
	// message, and the round goes on without site 1.
	checkExact(t, f, sites(2, 3, 4, 5))
	if len(f.Rejected) != 1 || !errors.Is(f.Rejected[0], secagg.ErrInvalid) {
		t.Fatalf("rejections %v, want one ErrInvalid", f.Rejected)
	}
}

// An envelope made under another key list (transcript) is refused by its
// recipient even if the server relays it.
func TestEnvelopeFromAnotherTranscript(t *testing.T) {
	f := mustNew(t, sim.Config{Params: params(4, 3, 10, false), Seed: [32]byte{16},
		ToClient: func(to secagg.SiteID, m secagg.Message) secagg.Message {
			if r, ok := m.(*secagg.ShareKeysRelay); ok && to == 2 {
				c := *r
				c.Envelopes = slices.Clone(r.Envelopes)
				e := *c.Envelopes[0]
				e.Transcript[0] ^= 1
				c.Envelopes[0] = &e
				return &c
			}
			return m
		}})
	f.Run()
	if err := f.ClientErrs[2]; !errors.Is(err, secagg.ErrInconsistent) {
		t.Fatalf("site 2 error %v, want ErrInconsistent", err)
	}
}

// The malicious server shows site 1 a survivor set without site 5 while the
// others sign the full set, then presents site 1 with the others' signatures.
// Site 1 must abort before revealing any share: revealing its share of s_5
// would let the server, which holds y_5, combine it with b_5 from the others.
func TestInconsistentSurvivorListsAbort(t *testing.T) {
	var cert *secagg.ConsistencyCertificate
	f := mustNew(t, sim.Config{Params: params(5, 3, 50, false), Seed: [32]byte{10},
		ToClient: func(to secagg.SiteID, m secagg.Message) secagg.Message {
			switch m := m.(type) {
			case *secagg.SurvivorList:
				if to == 1 {
					return &secagg.SurvivorList{Round: m.Round, Sites: sites(1, 2, 3, 4)}
				}
			case *secagg.ConsistencyCertificate:
				cert = m
			}
			return m
		}})
	for f.Server.Stage() < secagg.StageUnmask {
		if err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	if f.Clients[0].Stage() != secagg.StageUnmask {
		t.Fatalf("site 1 in stage %v, want Unmask", f.Clients[0].Stage())
	}
	for _, forged := range []*secagg.ConsistencyCertificate{
		// The set site 1 signed, with the others' signatures over the other set.
		{Round: cert.Round, Survivors: sites(1, 2, 3, 4), Sigs: cert.Sigs},
		// The other set.
		{Round: cert.Round, Survivors: cert.Survivors, Sigs: cert.Sigs},
	} {
		c := *f.Clients[0]
		out, err := c.Unmask(forged)
		if !errors.Is(err, secagg.ErrInconsistent) || out != nil {
			t.Fatalf("site 1 on a forged certificate: %v, shares released: %v", err, out != nil)
		}
		if c.Stage() != secagg.StageAborted {
			t.Fatalf("site 1 stage %v after inconsistency", c.Stage())
		}
	}
}

// A survivor set naming a site the client never got shares from (not in its
// U2) is refused at the consistency check.
func TestSurvivorOutsideU2(t *testing.T) {
	f := mustNew(t, sim.Config{Params: params(5, 3, 50, false), Seed: [32]byte{11},
		ToClient: func(to secagg.SiteID, m secagg.Message) secagg.Message {
			if r, ok := m.(*secagg.ShareKeysRelay); ok && to == 1 {
				c := *r
				c.Envelopes = r.Envelopes[:len(r.Envelopes)-1] // hide site 5
				return &c
			}
			return m
		}})
	for f.Server.Stage() < secagg.StageConsistencyCheck {
		if err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	// The honest server noticed site 1 saw another U2.
	if len(f.Rejected) != 1 || !errors.Is(f.Rejected[0], secagg.ErrInconsistent) {
		t.Fatalf("rejections %v, want one ErrInconsistent", f.Rejected)
	}
	_, err := f.Clients[0].ConsistencyCheck(&secagg.SurvivorList{Round: 7, Sites: sites(1, 2, 3, 4, 5)})
	if !errors.Is(err, secagg.ErrInconsistent) {
		t.Fatalf("site 1 error %v, want ErrInconsistent", err)
	}
}

func TestWrongRoundAndReplay(t *testing.T) {
	// Round 7, recorded.
	var recorded []secagg.Message
	f7 := mustNew(t, sim.Config{Params: params(4, 3, 10, false), Seed: [32]byte{12},
		ToServer: func(from secagg.SiteID, m secagg.Message) secagg.Message {
			recorded = append(recorded, m)
			return m
		}})
	checkExact(t, f7, sites(1, 2, 3, 4))

	// Round 8 with the same identities.
	p8 := params(4, 3, 10, false)
	p8.Round = 8
	f8 := mustNew(t, sim.Config{Params: p8, Seed: [32]byte{12}})
	old := recorded[0].(*secagg.AdvertiseKeys)
	if err := f8.Server.ReceiveAdvertiseKeys(old); !errors.Is(err, secagg.ErrWrongRound) {
		t.Fatalf("round-7 message in round 8: %v, want ErrWrongRound", err)
	}
	relabeled := *old
	relabeled.Round = 8
	if err := f8.Server.ReceiveAdvertiseKeys(&relabeled); !errors.Is(err, secagg.ErrBadSignature) {
		t.Fatalf("relabeled round-7 message: %v, want ErrBadSignature", err)
	}
	// A message of a later stage before its stage opened.
	if err := f8.Server.ReceiveConsistency(recorded[len(recorded)-5].(*secagg.ConsistencySig)); !errors.Is(err, secagg.ErrWrongStage) {
		t.Fatalf("early message: %v, want ErrWrongStage", err)
	}
	// Duplicate within the round.
	var first []secagg.Message
	f9 := mustNew(t, sim.Config{Params: p8, Seed: [32]byte{13},
		ToServer: func(from secagg.SiteID, m secagg.Message) secagg.Message {
			first = append(first, m)
			return m
		}})
	if err := f9.ClientsStep(); err != nil {
		t.Fatal(err)
	}
	if err := f9.Server.ReceiveAdvertiseKeys(first[0].(*secagg.AdvertiseKeys)); !errors.Is(err, secagg.ErrDuplicate) {
		t.Fatalf("duplicate: %v, want ErrDuplicate", err)
	}
	if _, err := f9.Clients[0].AdvertiseKeys(); !errors.Is(err, secagg.ErrWrongStage) {
		t.Fatalf("second AdvertiseKeys call: %v, want ErrWrongStage", err)
	}
}

// A client answers Unmask at most once and never reveals both shares of a
// site; the property test below checks the second half on every message.
func TestUnmaskAtMostOnce(t *testing.T) {
	var cert *secagg.ConsistencyCertificate
	f := mustNew(t, sim.Config{Params: params(4, 3, 10, false), Seed: [32]byte{14},
		ToClient: func(to secagg.SiteID, m secagg.Message) secagg.Message {
			if c, ok := m.(*secagg.ConsistencyCertificate); ok {
				cert = c
			}
			return m
		}})
	checkExact(t, f, sites(1, 2, 3, 4))
	if _, err := f.Clients[0].Unmask(cert); !errors.Is(err, secagg.ErrWrongStage) {
		t.Fatalf("second Unmask: %v, want ErrWrongStage", err)
	}
}

// TestPropertyExactSum: over random n, t and drop-out patterns, whenever the
// round completes the sum is exactly the modular sum of the survivors'
// inputs, the survivors are the sites that sent a masked input, and no site
// reveals both kinds of share for one peer; when it aborts, it is for too
// few sites and nothing is released.
func TestPropertyExactSum(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 0)) // drives the test scenario only, never keys or masks
	iters := 60
	if testing.Short() {
		iters = 15
	}
	completed, aborted := 0, 0
	for it := range iters {
		pq := it%4 == 3
		n := 2 + r.IntN(8)
		tt := n/2 + 1 + r.IntN(n-n/2)
		m := 1 + r.IntN(3000)
		drop := map[secagg.SiteID]secagg.Stage{}
		for s := 1; s <= n; s++ {
			if r.IntN(3) == 0 {
				drop[secagg.SiteID(s)] = secagg.Stage(1 + r.IntN(5))
			}
		}
		var seed [32]byte
		seed[0], seed[1] = byte(it), 0xa5
		var masked []secagg.SiteID
		bothShares := false
		f := mustNew(t, sim.Config{Params: params(n, tt, m, pq), Seed: seed, DropAt: drop,
			ToServer: func(from secagg.SiteID, msg secagg.Message) secagg.Message {
				switch msg := msg.(type) {
				case *secagg.MaskedInput:
					masked = append(masked, from)
				case *secagg.UnmaskShares:
					seen := map[secagg.SiteID]bool{}
					for _, s := range msg.MaskKeyShares {
						seen[s.Of] = true
					}
					for _, s := range msg.SelfMaskShares {
						bothShares = bothShares || seen[s.Of]
					}
				}
				return msg
			}})
		sum, surv, err := f.Run()
		desc := fmt.Sprintf("iteration %d: n=%d t=%d m=%d pq=%v drops=%v", it, n, tt, m, pq, drop)
		if bothShares {
			t.Fatalf("%s: a site revealed both shares of one peer", desc)
		}
		if len(f.ClientErrs) != 0 || len(f.Rejected) != 0 {
			t.Fatalf("%s: honest run had client errors %v, rejections %v", desc, f.ClientErrs, f.Rejected)
		}
		if err != nil {
			if !errors.Is(err, secagg.ErrTooFewSites) || sum != nil {
				t.Fatalf("%s: abort %v (sum released: %v)", desc, err, sum != nil)
			}
			aborted++
			continue
		}
		completed++
		if !slices.Equal(surv, masked) {
			t.Fatalf("%s: survivors %v, masked inputs from %v", desc, surv, masked)
		}
		if !slices.Equal(sum, f.PlainSum(surv)) {
			t.Fatalf("%s: sum is not exact", desc)
		}
	}
	t.Logf("%d rounds completed, %d aborted", completed, aborted)
	if completed == 0 || aborted == 0 {
		t.Fatalf("the generator covered only one outcome: %d completed, %d aborted", completed, aborted)
	}
}

func TestMLDSA65Round(t *testing.T) {
	p := params(4, 3, 100, true)
	p.SigAlg = secagg.MLDSA65
	f := mustNew(t, sim.Config{Params: p, Seed: [32]byte{15}, DropAt: map[secagg.SiteID]secagg.Stage{4: secagg.StageMaskedInput}})
	checkExact(t, f, sites(1, 2, 3))
}

func TestTranscriptBindsMessages(t *testing.T) {
	var seen [][32]byte
	f := mustNew(t, sim.Config{Params: params(3, 2, 4, false), Seed: [32]byte{17},
		ToServer: func(_ secagg.SiteID, m secagg.Message) secagg.Message {
			switch m := m.(type) {
			case *secagg.MaskedInput:
				seen = append(seen, m.Transcript)
			case *secagg.ConsistencySig:
				seen = append(seen, m.Transcript)
			case *secagg.UnmaskShares:
				seen = append(seen, m.Transcript)
			}
			return m
		}})
	if f.Server.Transcript() != ([32]byte{}) {
		t.Fatal("transcript set before the key list")
	}
	checkExact(t, f, sites(1, 2, 3))
	if len(seen) != 9 {
		t.Fatalf("%d messages seen, want 9", len(seen))
	}
	for _, h := range seen {
		if h != f.Server.Transcript() {
			t.Fatal("a message names another transcript than the server's")
		}
	}
}
