package secagg

import (
	"fmt"
	"io"
	"slices"

	"github.com/cloudflare/circl/group"
	"github.com/fedtune/fedtune/crypto/secagg/prg"
)

// Server is the aggregator's side of a round: a state machine with no I/O and
// no clock. The driver feeds it each arriving message with the Receive method
// of the current stage and, when every expected site has answered
// (Complete) or the stage's deadline passes, calls Finish, which closes the
// stage and returns the messages to send next:
//
//  1. Receive errors reject one message (forged, late, duplicate,
//     malformed, wrong round) and leave the state unchanged: log and go on.
//  2. Finish with fewer than T sites aborts the round (an *AbortError
//     wrapping ErrTooFewSites); nothing about the inputs is released.
//  3. After Finish of stage Unmask, Result returns the sum.
//
// A Server is not safe for concurrent use.
type Server struct {
	p     Params
	ctx   [32]byte
	keys  *keyring
	stage Stage
	err   error

	// Stage AdvertiseKeys.
	adv        map[SiteID]*AdvertiseKeys
	u1         []SiteID
	transcript [32]byte
	// Stage ShareKeys.
	shares   map[SiteID]*ShareKeys
	u2       []SiteID
	u2Digest [32]byte
	// Stage MaskedInput.
	sum      []uint32
	masked   map[SiteID]bool
	u3       []SiteID
	u3Digest [32]byte
	// Stage ConsistencyCheck.
	cons map[SiteID][]byte
	u4   []SiteID
	// Stage Unmask.
	unmask   map[SiteID]*UnmaskShares
	lagrange lagrangeCache

	result []uint32
}

// NewServer returns the server state machine for round p. rand is unused by
// the current protocol (the server draws no secrets) and may be nil; it is
// accepted so the signature stays stable if a later version needs it.
func NewServer(p Params, roster Roster, rand io.Reader) (*Server, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := roster.validate(p); err != nil {
		return nil, err
	}
	return &Server{
		p: p, ctx: contextHash(p, roster), keys: newKeyring(p.SigAlg, roster),
		stage: StageAdvertiseKeys, adv: make(map[SiteID]*AdvertiseKeys),
	}, nil
}

// Stage returns the stage the server is collecting messages for, StageDone
// or StageAborted.
func (s *Server) Stage() Stage { return s.stage }

// Err returns the reason the round aborted, or nil.
func (s *Server) Err() error { return s.err }

// Expected returns the sites that may send a message in the current stage,
// sorted: the roster, then U1, U2, U3, U4.
func (s *Server) Expected() []SiteID {
	switch s.stage {
	case StageAdvertiseKeys:
		all := make([]SiteID, s.p.N)
		for i := range all {
			all[i] = SiteID(i + 1)
		}
		return all
	case StageShareKeys:
		return slices.Clone(s.u1)
	case StageMaskedInput:
		return slices.Clone(s.u2)
	case StageConsistencyCheck:
		return slices.Clone(s.u3)
	case StageUnmask:
		return slices.Clone(s.u4)
	}
	return nil
}

// Arrived returns the sites whose message for the current stage was
// accepted, sorted.
func (s *Server) Arrived() []SiteID {
	var out []SiteID
	switch s.stage {
	case StageAdvertiseKeys:
		out = keysOf(s.adv)
	case StageShareKeys:
		out = keysOf(s.shares)
	case StageMaskedInput:
		out = keysOf(s.masked)
	case StageConsistencyCheck:
		out = keysOf(s.cons)
	case StageUnmask:
		out = keysOf(s.unmask)
	}
	return out
}

// Complete reports whether every expected site has answered, so the driver
// may call Finish without waiting for the deadline.
func (s *Server) Complete() bool {
	e := s.Expected()
	return e != nil && len(s.Arrived()) == len(e)
}

func keysOf[V any](m map[SiteID]V) []SiteID {
	out := make([]SiteID, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (s *Server) reject(stage Stage, site SiteID, class error, format string, args ...any) error {
	return fmt.Errorf("secagg: server rejected %v message of site %d: %s: %w", stage, site, fmt.Sprintf(format, args...), class)
}

// admit checks what every received message shares: the server is collecting
// this stage, the round matches, the site may send and has not yet.
func (s *Server) admit(st Stage, round uint64, site SiteID, eligible []SiteID, seen bool) error {
	switch {
	case s.stage == StageAborted:
		return s.err
	case s.stage > st:
		return s.reject(st, site, ErrLate, "stage already finished; now in %v", s.stage)
	case s.stage < st:
		return s.reject(st, site, ErrWrongStage, "server is in %v", s.stage)
	case round != s.p.Round:
		return s.reject(st, site, ErrWrongRound, "message is for round %d, this is round %d", round, s.p.Round)
	case site < 1 || int(site) > s.p.N:
		return s.reject(st, site, ErrNotEligible, "not in the roster of %d sites", s.p.N)
	case eligible != nil && !contains(eligible, site):
		return s.reject(st, site, ErrNotEligible, "site did not complete the previous stage")
	case seen:
		return s.reject(st, site, ErrDuplicate, "already received")
	}
	return nil
}

func contains(sorted []SiteID, x SiteID) bool {
	_, ok := slices.BinarySearch(sorted, x)
	return ok
}

func (s *Server) abort(st Stage, class error, format string, args ...any) error {
	s.err = &AbortError{Stage: st, Reason: fmt.Sprintf(format, args...), Err: class}
	s.stage = StageAborted
	s.sum, s.shares, s.unmask = nil, nil, nil
	return s.err
}

// ReceiveAdvertiseKeys accepts a site's public keys.
func (s *Server) ReceiveAdvertiseKeys(m *AdvertiseKeys) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil message: %w", ErrMalformed)
	}
	const st = StageAdvertiseKeys
	if err := s.admit(st, m.Round, m.Site, nil, s.adv[m.Site] != nil); err != nil {
		return err
	}
	if class, why := checkAdvertiseKeys(s.p, s.ctx, s.keys, m); class != nil {
		return s.reject(st, m.Site, class, "%s", why)
	}
	s.adv[m.Site] = m
	return nil
}

// ReceiveShareKeys accepts a site's envelopes: one for every other site of
// U1, each signed by the sender.
func (s *Server) ReceiveShareKeys(m *ShareKeys) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil message: %w", ErrMalformed)
	}
	const st = StageShareKeys
	if err := s.admit(st, m.Round, m.Site, s.u1, s.shares[m.Site] != nil); err != nil {
		return err
	}
	if len(m.Envelopes) != len(s.u1)-1 {
		return s.reject(st, m.Site, ErrInvalid, "%d envelopes, want one for each of the %d other sites of U1", len(m.Envelopes), len(s.u1)-1)
	}
	i := 0
	for _, v := range s.u1 {
		if v == m.Site {
			continue
		}
		env := m.Envelopes[i]
		i++
		if env == nil || env.From != m.Site || env.To != v {
			return s.reject(st, m.Site, ErrInvalid, "envelope %d is not %d→%d", i-1, m.Site, v)
		}
	}
	type verdict struct {
		class error
		why   string
	}
	res := make([]verdict, len(m.Envelopes))
	parallelFor(len(m.Envelopes), prg.Workers(s.p.Workers), func(k int) {
		res[k].class, res[k].why = checkEnvelope(s.p, s.ctx, s.keys, s.transcript, m.Envelopes[k])
	})
	for _, r := range res {
		if r.class != nil {
			return s.reject(st, m.Site, r.class, "%s", r.why)
		}
	}
	s.shares[m.Site] = m
	return nil
}

// ReceiveMaskedInput accepts a site's masked vector and adds it into the
// running sum (so the server holds one vector, not one per site).
func (s *Server) ReceiveMaskedInput(m *MaskedInput) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil message: %w", ErrMalformed)
	}
	const st = StageMaskedInput
	if err := s.admit(st, m.Round, m.Site, s.u2, s.masked[m.Site]); err != nil {
		return err
	}
	switch {
	case m.Transcript != s.transcript:
		return s.reject(st, m.Site, ErrInconsistent, "masked input made for another key list")
	case m.U2Digest != s.u2Digest:
		return s.reject(st, m.Site, ErrInconsistent, "site saw a different U2")
	case int(m.VectorLen) != s.p.VectorLen || len(m.Vector) != s.p.VectorLen:
		return s.reject(st, m.Site, ErrInvalid, "vector of %d words (header says %d), params say %d", len(m.Vector), m.VectorLen, s.p.VectorLen)
	case !s.keys.verify(m.Site, signedBytes(s.ctx, m.appendSigned), m.Sig):
		return s.reject(st, m.Site, ErrBadSignature, "MaskedInput header")
	case VectorDigest(m.Vector) != m.VectorDigest:
		return s.reject(st, m.Site, ErrInvalid, "vector does not match its signed digest")
	}
	for i, w := range m.Vector {
		s.sum[i] += w
	}
	s.masked[m.Site] = true
	return nil
}

// ReceiveConsistency accepts a site's signature over the survivor set.
func (s *Server) ReceiveConsistency(m *ConsistencySig) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil message: %w", ErrMalformed)
	}
	const st = StageConsistencyCheck
	if err := s.admit(st, m.Round, m.Site, s.u3, s.cons[m.Site] != nil); err != nil {
		return err
	}
	switch {
	case m.Transcript != s.transcript || m.SurvivorDigest != s.u3Digest:
		return s.reject(st, m.Site, ErrInconsistent, "signature over a different key list or survivor set")
	case !s.keys.verify(m.Site, signedBytes(s.ctx, m.appendSigned), m.Sig):
		return s.reject(st, m.Site, ErrBadSignature, "ConsistencySig")
	}
	s.cons[m.Site] = m.Sig
	return nil
}

// ReceiveUnmask accepts a site's shares: exactly one mask-key share for each
// site of U2 \ U3 and one self-mask share for each site of U3.
func (s *Server) ReceiveUnmask(m *UnmaskShares) error {
	if m == nil {
		return fmt.Errorf("secagg: server: nil message: %w", ErrMalformed)
	}
	const st = StageUnmask
	if err := s.admit(st, m.Round, m.Site, s.u4, s.unmask[m.Site] != nil); err != nil {
		return err
	}
	if m.Transcript != s.transcript || m.SurvivorDigest != s.u3Digest {
		return s.reject(st, m.Site, ErrInconsistent, "shares for a different key list or survivor set")
	}
	var dropped []SiteID
	for _, u := range s.u2 {
		if !contains(s.u3, u) {
			dropped = append(dropped, u)
		}
	}
	for _, c := range []struct {
		name   string
		shares []Share
		want   []SiteID
	}{{"mask-key", m.MaskKeyShares, dropped}, {"self-mask", m.SelfMaskShares, s.u3}} {
		if len(c.shares) != len(c.want) {
			return s.reject(st, m.Site, ErrInvalid, "%d %s shares, want %d", len(c.shares), c.name, len(c.want))
		}
		for i, sh := range c.shares {
			if sh.Of != c.want[i] {
				return s.reject(st, m.Site, ErrInvalid, "%s share %d is of site %d, want %d", c.name, i, sh.Of, c.want[i])
			}
			if _, err := parseScalar(sh.Value); err != nil {
				return s.reject(st, m.Site, ErrInvalid, "%s share of site %d: %v", c.name, sh.Of, err)
			}
		}
	}
	if !s.keys.verify(m.Site, signedBytes(s.ctx, m.appendSigned), m.Sig) {
		return s.reject(st, m.Site, ErrBadSignature, "UnmaskShares")
	}
	s.unmask[m.Site] = m
	return nil
}

// Outgoing is a message for one site.
type Outgoing struct {
	To  SiteID
	Msg Message
}

func broadcast(to []SiteID, m Message) []Outgoing {
	out := make([]Outgoing, len(to))
	for i, t := range to {
		out[i] = Outgoing{To: t, Msg: m}
	}
	return out
}

// Finish closes the current stage (all expected sites answered, or its
// deadline passed) and returns the messages to send. With fewer than T
// sites it aborts the round. After stage Unmask it returns no messages and
// the result is ready.
func (s *Server) Finish() ([]Outgoing, error) {
	st := s.stage
	arrived := s.Arrived()
	switch st {
	case StageAborted:
		return nil, s.err
	case StageDone:
		return nil, fmt.Errorf("secagg: Finish called after the round completed: %w", ErrWrongStage)
	}
	if len(arrived) < s.p.T {
		return nil, s.abort(st, ErrTooFewSites, "%d of %d expected sites answered, threshold is %d", len(arrived), len(s.Expected()), s.p.T)
	}
	switch st {
	case StageAdvertiseKeys:
		s.u1 = arrived
		kl := &KeyList{Round: s.p.Round}
		for _, id := range s.u1 {
			kl.Entries = append(kl.Entries, s.adv[id])
		}
		s.transcript = keyListDigest(s.ctx, kl)
		s.shares = make(map[SiteID]*ShareKeys)
		s.stage = StageShareKeys
		return broadcast(s.u1, kl), nil

	case StageShareKeys:
		s.u2 = arrived
		s.u2Digest = siteSetDigest("fedtune/secagg/v1 U2", s.ctx, s.u2)
		var out []Outgoing
		for _, v := range s.u2 {
			r := &ShareKeysRelay{Round: s.p.Round, To: v}
			for _, u := range s.u2 {
				if u != v {
					r.Envelopes = append(r.Envelopes, s.envelope(u, v))
				}
			}
			out = append(out, Outgoing{To: v, Msg: r})
		}
		s.sum = make([]uint32, s.p.VectorLen)
		s.masked = make(map[SiteID]bool)
		s.stage = StageMaskedInput
		return out, nil

	case StageMaskedInput:
		s.u3 = arrived
		s.u3Digest = siteSetDigest("fedtune/secagg/v1 U3", s.ctx, s.u3)
		s.cons = make(map[SiteID][]byte)
		s.stage = StageConsistencyCheck
		return broadcast(s.u3, &SurvivorList{Round: s.p.Round, Sites: slices.Clone(s.u3)}), nil

	case StageConsistencyCheck:
		s.u4 = arrived
		cert := &ConsistencyCertificate{Round: s.p.Round, Survivors: slices.Clone(s.u3)}
		for _, id := range s.u4 {
			cert.Sigs = append(cert.Sigs, SiteSig{Site: id, Sig: s.cons[id]})
		}
		s.unmask = make(map[SiteID]*UnmaskShares)
		s.stage = StageUnmask
		return broadcast(s.u4, cert), nil

	case StageUnmask:
		if err := s.unmaskSum(arrived); err != nil {
			return nil, err
		}
		s.stage = StageDone
		return nil, nil
	}
	return nil, fmt.Errorf("secagg: Finish in unknown stage %v", st)
}

// envelope returns the envelope u→v from u's ShareKeys.
func (s *Server) envelope(u, v SiteID) *Envelope {
	for _, e := range s.shares[u].Envelopes {
		if e.To == v {
			return e
		}
	}
	return nil // unreachable: ReceiveShareKeys checked one per site of U1
}

// unmaskSum rebuilds the secrets from the first T responders and removes the
// masks:
//
//	z = Σ_{u∈U3} y_u − Σ_{u∈U3} PRG(b_u) + Σ_{u∈U2\U3} Σ_{v∈U3} Δ_{v,u}·(−PRG(s_{v,u}))
//
// (Bonawitz et al. 2017, Fig. 4, round 4: the pairwise masks between
// survivors cancel in the sum).
func (s *Server) unmaskSum(responders []SiteID) error {
	const st = StageUnmask
	ids := responders[:s.p.T]
	pos := make(map[SiteID]int, len(s.u2))
	collect := func(u SiteID, selfMask bool) []group.Scalar {
		ys := make([]group.Scalar, len(ids))
		for j, r := range ids {
			m := s.unmask[r]
			list := m.MaskKeyShares
			if selfMask {
				list = m.SelfMaskShares
			}
			v, _ := parseScalar(list[pos[u]].Value) // checked in ReceiveUnmask
			ys[j] = v
		}
		return ys
	}
	var terms []prg.Term
	for i, u := range s.u3 {
		pos[u] = i
		b := scalarBytes(s.lagrange.recover(ids, collect(u, true)))
		if selfMaskCommit(s.ctx, u, b) != s.adv[u].SelfMaskCommit {
			return s.abort(st, ErrInvalid, "self-mask secret of site %d rebuilt from sites %v does not match its commitment", u, ids)
		}
		terms = append(terms, prg.Term{Key: selfMaskKey(s.ctx, u, b), Neg: true})
	}
	// Rebuild the mask-key secrets of the dropped sites, then every pairwise
	// key between a dropped site and a survivor, in parallel.
	type pair struct {
		u, v SiteID
		mk   *maskKeys
		term prg.Term
		fail error
	}
	var pairs []pair
	i := 0
	for _, u := range s.u2 {
		if contains(s.u3, u) {
			continue
		}
		pos[u] = i
		i++
		sec := scalarBytes(s.lagrange.recover(ids, collect(u, false)))
		mk, err := deriveMaskKeys(s.p.PQ, s.ctx, u, sec)
		if err != nil || !slices.Equal(mk.pub, s.adv[u].MaskPK) {
			return s.abort(st, ErrInvalid, "mask-key secret of site %d rebuilt from sites %v does not match its advertised key", u, ids)
		}
		for _, v := range s.u3 {
			pairs = append(pairs, pair{u: u, v: v, mk: mk})
		}
	}
	parallelFor(len(pairs), prg.Workers(s.p.Workers), func(k int) {
		pr := &pairs[k]
		u, v, mk := pr.u, pr.v, pr.mk
		lo, hi := min(u, v), max(u, v)
		var shared []byte
		var err error
		switch {
		case !s.p.PQ:
			shared, err = mk.agree(s.adv[v].MaskPK)
		case u == lo:
			var ct []byte
			ct, shared, err = mk.encapsulate(s.ctx, lo, hi, s.adv[v].MaskPK)
			if err == nil && !slices.Equal(ct, s.envelope(u, v).MaskCT) {
				pr.fail = fmt.Errorf("site %d's KEM ciphertext to site %d does not match its rebuilt seed", u, v)
				return
			}
		default:
			shared, err = mk.decapsulate(s.envelope(v, u).MaskCT)
		}
		if err != nil {
			pr.fail = fmt.Errorf("rebuilding the pairwise key of sites %d and %d: %v", u, v, err)
			return
		}
		// Survivor v added Δ_{v,u}·PRG = +PRG if v > u, −PRG if v < u; undo it.
		pr.term = prg.Term{Key: pairwiseMaskKey(s.ctx, lo, hi, shared), Neg: v > u}
	})
	for _, pr := range pairs {
		if pr.fail != nil {
			return s.abort(st, ErrInvalid, "%v", pr.fail)
		}
		terms = append(terms, pr.term)
	}
	prg.Apply(s.sum, terms, s.p.Workers)
	s.result, s.sum = s.sum, nil
	s.shares = nil
	return nil
}

// Result returns the sum of the survivors' inputs modulo 2^32 and the
// survivors (U3), once the round is done.
func (s *Server) Result() (sum []uint32, survivors []SiteID, err error) {
	switch s.stage {
	case StageDone:
		return s.result, slices.Clone(s.u3), nil
	case StageAborted:
		return nil, nil, s.err
	}
	return nil, nil, fmt.Errorf("secagg: Result called in stage %v: %w", s.stage, ErrWrongStage)
}

// Transcript returns the hash of the KeyList sent after stage AdvertiseKeys
// (zero before): every later signed message names it, so it identifies the
// round's key material in an audit log.
func (s *Server) Transcript() [32]byte { return s.transcript }
