package secagg

import (
	"fmt"
	"io"
	"slices"

	"github.com/fedtune/fedtune/crypto/secagg/prg"
)

// Client is one site's side of a round. Call its methods in stage order,
// each with the server's message for that stage, and send what they return:
//
//  1. AdvertiseKeys() → send *AdvertiseKeys
//  2. ShareKeys(*KeyList) → send *ShareKeys
//  3. MaskedInput(*ShareKeysRelay, input) → send *MaskedInput; the client
//     keeps the relay's envelopes until Unmask, so do not modify them
//  4. ConsistencyCheck(*SurvivorList) → send *ConsistencySig
//  5. Unmask(*ConsistencyCertificate) → send *UnmaskShares
//
// Any error aborts the client for good (an *AbortError); later calls return
// it again. A Client is not safe for concurrent use.
type Client struct {
	p      Params
	ctx    [32]byte
	self   SiteID
	signer Signer
	keys   *keyring
	rand   io.Reader

	stage Stage // the next method allowed
	err   error

	sSecret, bSecret [32]byte // encodings of the scalars s_u and b_u
	mask             *maskKeys
	enc              *encKeys
	adv              *AdvertiseKeys

	u1         map[SiteID]*AdvertiseKeys
	transcript [32]byte
	// shares received: of each peer's s and b; own shares included.
	sShares, bShares map[SiteID][32]byte
	pairKeys         map[SiteID][]byte // PQ: shared secrets established in ShareKeys (peer > self)
	// relayed holds the envelopes of U2 \ {self} from MaskedInput until
	// Unmask opens them; sigChecked[i] says whether relayed[i]'s signature
	// was already verified in MaskedInput (PQ mode, From < self).
	relayed    []*Envelope
	sigChecked []bool
	u2         []SiteID
	u3         []SiteID
	u3Digest   [32]byte
}

// NewClient returns the state machine of site self (1 ≤ self ≤ N) for the
// round p. signer holds the site's identity key, whose public half is
// roster[self-1]. rand must be a cryptographically secure source
// (crypto/rand.Reader, or a CSPRNG seeded from it); it supplies the round
// secrets, HPKE keys and encryption randomness.
func NewClient(p Params, self SiteID, signer Signer, roster Roster, rand io.Reader) (*Client, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := roster.validate(p); err != nil {
		return nil, err
	}
	if self < 1 || int(self) > p.N {
		return nil, fmt.Errorf("secagg: site %d outside the roster 1..%d", self, p.N)
	}
	if signer == nil || rand == nil {
		return nil, fmt.Errorf("secagg: NewClient needs a signer and a randomness source")
	}
	return &Client{
		p: p, ctx: contextHash(p, roster), self: self, signer: signer,
		keys: newKeyring(p.SigAlg, roster), rand: rand, stage: StageAdvertiseKeys,
	}, nil
}

// Stage returns the stage whose method the client expects next, StageDone
// after Unmask, or StageAborted.
func (c *Client) Stage() Stage { return c.stage }

// Err returns the reason the client aborted, or nil.
func (c *Client) Err() error { return c.err }

func (c *Client) abort(stage Stage, class error, format string, args ...any) error {
	c.err = &AbortError{Stage: stage, Site: c.self, Reason: fmt.Sprintf(format, args...), Err: class}
	c.stage = StageAborted
	c.wipe()
	return c.err
}

// wipe drops the round secrets and received shares.
func (c *Client) wipe() {
	c.sSecret, c.bSecret = [32]byte{}, [32]byte{}
	c.mask, c.enc = nil, nil
	c.sShares, c.bShares, c.pairKeys = nil, nil, nil
	c.relayed, c.sigChecked = nil, nil
}

func (c *Client) enter(s Stage) error {
	if c.stage == StageAborted {
		return c.err
	}
	if c.stage != s {
		return fmt.Errorf("secagg: site %d: %v called in stage %v: %w", c.self, s, c.stage, ErrWrongStage)
	}
	return nil
}

func (c *Client) sign(app func(*encoder)) ([]byte, error) {
	return c.signer.Sign(signedBytes(c.ctx, app))
}

// AdvertiseKeys draws the round secrets s_u (mask-key secret) and b_u
// (self-mask secret) and returns the signed public keys.
func (c *Client) AdvertiseKeys() (*AdvertiseKeys, error) {
	const st = StageAdvertiseKeys
	if err := c.enter(st); err != nil {
		return nil, err
	}
	s, err := randomScalar(c.rand)
	if err != nil {
		return nil, c.abort(st, ErrInvalid, "%v", err)
	}
	b, err := randomScalar(c.rand)
	if err != nil {
		return nil, c.abort(st, ErrInvalid, "%v", err)
	}
	c.sSecret, c.bSecret = scalarBytes(s), scalarBytes(b)
	if c.mask, err = deriveMaskKeys(c.p.PQ, c.ctx, c.self, c.sSecret); err != nil {
		return nil, c.abort(st, ErrInvalid, "deriving mask keys: %v", err)
	}
	if c.enc, err = newEncKeys(c.p.PQ, c.rand); err != nil {
		return nil, c.abort(st, ErrInvalid, "%v", err)
	}
	m := &AdvertiseKeys{
		Round: c.p.Round, Site: c.self, EncPK: c.enc.pub, MaskPK: c.mask.pub,
		SelfMaskCommit: selfMaskCommit(c.ctx, c.self, c.bSecret),
	}
	if m.Sig, err = c.sign(m.appendSigned); err != nil {
		return nil, c.abort(st, ErrInvalid, "signing: %v", err)
	}
	c.adv = m
	c.stage = StageShareKeys
	return m, nil
}

// checkAdvertiseKeys validates one KeyList entry (shared by client and server).
func checkAdvertiseKeys(p Params, ctx [32]byte, keys *keyring, a *AdvertiseKeys) (error, string) {
	switch {
	case a.Round != p.Round:
		return ErrWrongRound, fmt.Sprintf("AdvertiseKeys of site %d is for round %d, this is round %d", a.Site, a.Round, p.Round)
	case a.Site < 1 || int(a.Site) > p.N:
		return ErrNotEligible, fmt.Sprintf("site %d is not in the roster of %d sites", a.Site, p.N)
	case !keys.verify(a.Site, signedBytes(ctx, a.appendSigned), a.Sig):
		return ErrBadSignature, fmt.Sprintf("AdvertiseKeys of site %d", a.Site)
	}
	if err := checkEncPK(p.PQ, a.EncPK); err != nil {
		return ErrInvalid, fmt.Sprintf("site %d encPK: %v", a.Site, err)
	}
	if err := checkMaskPK(p.PQ, a.MaskPK); err != nil {
		return ErrInvalid, fmt.Sprintf("site %d maskPK: %v", a.Site, err)
	}
	return nil, ""
}

// ShareKeys checks the key list (every signature, at least T sites, this
// site's own keys unchanged), Shamir-shares s_u and b_u among U1 and returns
// the envelopes for the other sites.
func (c *Client) ShareKeys(kl *KeyList) (*ShareKeys, error) {
	const st = StageShareKeys
	if err := c.enter(st); err != nil {
		return nil, err
	}
	if kl == nil {
		return nil, c.abort(st, ErrMalformed, "nil message")
	}
	if kl.Round != c.p.Round {
		return nil, c.abort(st, ErrWrongRound, "KeyList is for round %d, this is round %d", kl.Round, c.p.Round)
	}
	if len(kl.Entries) < c.p.T {
		return nil, c.abort(st, ErrTooFewSites, "KeyList has %d sites, threshold is %d", len(kl.Entries), c.p.T)
	}
	c.u1 = make(map[SiteID]*AdvertiseKeys, len(kl.Entries))
	ids := make([]SiteID, 0, len(kl.Entries))
	for i, a := range kl.Entries {
		if a == nil {
			return nil, c.abort(st, ErrMalformed, "KeyList entry %d is nil", i)
		}
		if i > 0 && a.Site <= kl.Entries[i-1].Site {
			return nil, c.abort(st, ErrInvalid, "KeyList entries not sorted at site %d", a.Site)
		}
		if class, why := checkAdvertiseKeys(c.p, c.ctx, c.keys, a); class != nil {
			return nil, c.abort(st, class, "KeyList: %s", why)
		}
		c.u1[a.Site] = a
		ids = append(ids, a.Site)
	}
	own, ok := c.u1[c.self]
	if !ok {
		return nil, c.abort(st, ErrInvalid, "KeyList does not contain this site")
	}
	if !slices.Equal(own.Marshal(), c.adv.Marshal()) {
		return nil, c.abort(st, ErrInconsistent, "KeyList carries different keys for this site than it advertised")
	}
	c.transcript = keyListDigest(c.ctx, kl)

	s, _ := parseScalar(c.sSecret)
	b, _ := parseScalar(c.bSecret)
	sShares := shareSecret(c.p.T, s, ids)
	bShares := shareSecret(c.p.T, b, ids)
	c.sShares = map[SiteID][32]byte{c.self: sShares[c.self]}
	c.bShares = map[SiteID][32]byte{c.self: bShares[c.self]}
	c.pairKeys = make(map[SiteID][]byte)

	out := &ShareKeys{Round: c.p.Round, Site: c.self}
	for _, v := range ids {
		if v == c.self {
			continue
		}
		env := &Envelope{From: c.self, To: v, Transcript: c.transcript}
		var err error
		if c.p.PQ && c.self < v {
			var ss []byte
			env.MaskCT, ss, err = c.mask.encapsulate(c.ctx, c.self, v, c.u1[v].MaskPK)
			if err != nil {
				return nil, c.abort(st, ErrInvalid, "encapsulating to site %d: %v", v, err)
			}
			c.pairKeys[v] = ss
		}
		info := shareInfo(c.ctx, c.transcript, c.self, v)
		env.Enc, env.Sealed, err = sealShares(c.p.PQ, c.rand, c.u1[v].EncPK, info, c.self, v, sShares[v], bShares[v])
		if err != nil {
			return nil, c.abort(st, ErrInvalid, "encrypting shares for site %d: %v", v, err)
		}
		if env.Sig, err = c.sign(func(e *encoder) { env.appendSigned(e, c.p.Round) }); err != nil {
			return nil, c.abort(st, ErrInvalid, "signing: %v", err)
		}
		out.Envelopes = append(out.Envelopes, env)
	}
	c.stage = StageMaskedInput
	return out, nil
}

// checkEnvelope verifies an envelope's signature and shape (client and server).
// The order of the checks (transcript, signature, KEM ciphertext) decides
// which class is reported when several fail.
func checkEnvelope(p Params, ctx [32]byte, keys *keyring, transcript [32]byte, env *Envelope) (error, string) {
	if env.Transcript != transcript {
		return envelopeTranscriptErr(env)
	}
	if class, why := checkEnvelopeSig(p, ctx, keys, env); class != nil {
		return class, why
	}
	return checkEnvelopeShape(p, transcript, env)
}

func envelopeTranscriptErr(env *Envelope) (error, string) {
	return ErrInconsistent, fmt.Sprintf("envelope %d→%d was made for another key list", env.From, env.To)
}

// checkEnvelopeShape checks what needs no public-key operation: the
// transcript the envelope was made under and the presence and size of the
// mask KEM ciphertext.
func checkEnvelopeShape(p Params, transcript [32]byte, env *Envelope) (error, string) {
	if env.Transcript != transcript {
		return envelopeTranscriptErr(env)
	}
	wantCT := p.PQ && env.From < env.To
	switch {
	case wantCT && len(env.MaskCT) != maskScheme.CiphertextSize():
		return ErrInvalid, fmt.Sprintf("envelope %d→%d: mask KEM ciphertext is %d bytes, want %d", env.From, env.To, len(env.MaskCT), maskScheme.CiphertextSize())
	case !wantCT && len(env.MaskCT) != 0:
		return ErrInvalid, fmt.Sprintf("envelope %d→%d: unexpected mask KEM ciphertext", env.From, env.To)
	}
	return nil, ""
}

// checkEnvelopeSig verifies an envelope's signature under its sender's
// roster key.
func checkEnvelopeSig(p Params, ctx [32]byte, keys *keyring, env *Envelope) (error, string) {
	if !keys.verify(env.From, signedBytes(ctx, func(e *encoder) { env.appendSigned(e, p.Round) }), env.Sig) {
		return ErrBadSignature, fmt.Sprintf("envelope %d→%d", env.From, env.To)
	}
	return nil, ""
}

// MaskedInput checks the shape of the envelopes relayed from U2, derives the
// pairwise mask keys and returns
//
//	y_u = x_u + PRG(b_u) + Σ_{v∈U2, v<u} PRG(s_{u,v}) − Σ_{v∈U2, v>u} PRG(s_{u,v})   (mod 2^32)
//
// (Bonawitz et al. 2017, Fig. 4, round 2). input must have VectorLen words;
// it is not modified.
//
// As in Bonawitz et al. 2017, Fig. 4 (round 2 stores the ciphertexts, round 4
// decrypts them), the envelopes are only kept here: their signatures are
// verified and their shares decrypted in [Client.Unmask], which aborts before
// revealing anything if one is forged or does not open. Deferring is safe
// because nothing this stage sends depends on an envelope's shares or on its
// authenticity:
//
//   - the masks come from s_u, b_u and the peers' mask keys in the KeyList,
//     whose signatures ShareKeys verified; a forged envelope cannot change
//     them, it can only make this site count a site of U1 in U2, which adds a
//     mask the server cannot remove without that site's secret;
//   - the masked input y_u reveals nothing about x_u without b_u and the
//     pairwise secrets, and a share of them is only released in Unmask, after
//     every envelope has been verified and opened;
//   - the server still cannot read an envelope (HPKE to this site's EncPK).
//
// What moves is the point of detection: a forged or undecryptable envelope
// now aborts the site one stage later, after it has sent y_u and its
// consistency signature but before it reveals any share. The site then counts
// as one that dropped after ConsistencyCheck: the server learns the sum over
// U3 if at least T other survivors answer, and nothing else.
//
// One exception stays here: in PQ mode the envelope from a lower-numbered
// peer v carries the KEM ciphertext of the pairwise key s_{u,v}, which the
// mask does depend on. Its signature is verified before decapsulation;
// otherwise a server could substitute a ciphertext it encapsulated itself,
// learn s_{u,v} for every lower peer, and for the highest-numbered site strip
// every pairwise mask once the other sites reveal b_u in Unmask.
func (c *Client) MaskedInput(relay *ShareKeysRelay, input []uint32) (*MaskedInput, error) {
	const st = StageMaskedInput
	if err := c.enter(st); err != nil {
		return nil, err
	}
	if relay == nil {
		return nil, c.abort(st, ErrMalformed, "nil message")
	}
	if len(input) != c.p.VectorLen {
		return nil, fmt.Errorf("secagg: site %d: input has %d words, params say %d", c.self, len(input), c.p.VectorLen)
	}
	switch {
	case relay.Round != c.p.Round:
		return nil, c.abort(st, ErrWrongRound, "ShareKeysRelay is for round %d, this is round %d", relay.Round, c.p.Round)
	case relay.To != c.self:
		return nil, c.abort(st, ErrInvalid, "ShareKeysRelay is addressed to site %d", relay.To)
	case len(relay.Envelopes)+1 < c.p.T:
		return nil, c.abort(st, ErrTooFewSites, "U2 has %d sites, threshold is %d", len(relay.Envelopes)+1, c.p.T)
	}
	for i, env := range relay.Envelopes {
		if env == nil {
			return nil, c.abort(st, ErrMalformed, "relay envelope %d is nil", i)
		}
		if i > 0 && env.From <= relay.Envelopes[i-1].From {
			return nil, c.abort(st, ErrInvalid, "relay envelopes not sorted at site %d", env.From)
		}
		if env.To != c.self {
			return nil, c.abort(st, ErrInvalid, "relay carries an envelope for site %d", env.To)
		}
		if _, ok := c.u1[env.From]; !ok || env.From == c.self {
			return nil, c.abort(st, ErrInvalid, "relay carries an envelope from site %d, which is not in U1", env.From)
		}
		if class, why := checkEnvelopeShape(c.p, c.transcript, env); class != nil {
			return nil, c.abort(st, class, "%s", why)
		}
	}
	// Agree on the pairwise keys in parallel (verifying first the signature
	// of each envelope whose KEM ciphertext is used); the first failure in
	// envelope order decides the abort reason.
	type agreed struct {
		shared    []byte
		sigTested bool
		class     error
		why       string
	}
	res := make([]agreed, len(relay.Envelopes))
	parallelFor(len(relay.Envelopes), prg.Workers(c.p.Workers), func(i int) {
		env := relay.Envelopes[i]
		r := &res[i]
		var err error
		switch {
		case !c.p.PQ:
			if r.shared, err = c.mask.agree(c.u1[env.From].MaskPK); err != nil {
				r.class, r.why = ErrInvalid, fmt.Sprintf("X25519 with site %d: %v", env.From, err)
			}
		case env.From < c.self:
			r.sigTested = true
			if r.class, r.why = checkEnvelopeSig(c.p, c.ctx, c.keys, env); r.class != nil {
				return
			}
			if r.shared, err = c.mask.decapsulate(env.MaskCT); err != nil {
				r.class, r.why = ErrInvalid, fmt.Sprintf("decapsulating the mask key from site %d: %v", env.From, err)
			}
		default:
			r.shared = c.pairKeys[env.From] // encapsulated in ShareKeys
		}
	})
	u2 := []SiteID{c.self}
	terms := []prg.Term{{Key: selfMaskKey(c.ctx, c.self, c.bSecret)}}
	c.relayed = make([]*Envelope, len(relay.Envelopes))
	c.sigChecked = make([]bool, len(relay.Envelopes))
	for i, env := range relay.Envelopes {
		r := &res[i]
		if r.class != nil {
			return nil, c.abort(st, r.class, "%s", r.why)
		}
		c.relayed[i], c.sigChecked[i] = env, r.sigTested
		v := env.From
		lo, hi := min(c.self, v), max(c.self, v)
		// Δ_{u,v} = +1 if u > v, −1 if u < v (Bonawitz et al. 2017, §4).
		terms = append(terms, prg.Term{Key: pairwiseMaskKey(c.ctx, lo, hi, r.shared), Neg: c.self < v})
		u2 = append(u2, v)
	}
	slices.Sort(u2)
	c.u2 = u2

	y := make([]uint32, len(input))
	prg.ApplyTo(y, input, terms, c.p.Workers)
	c.pairKeys = nil

	m := &MaskedInput{
		Round: c.p.Round, Site: c.self, Transcript: c.transcript,
		U2Digest:  siteSetDigest("fedtune/secagg/v1 U2", c.ctx, u2),
		VectorLen: uint32(len(y)), VectorDigest: VectorDigest(y), Vector: y,
	}
	var err error
	if m.Sig, err = c.sign(m.appendSigned); err != nil {
		return nil, c.abort(st, ErrInvalid, "signing: %v", err)
	}
	c.stage = StageConsistencyCheck
	return m, nil
}

// openRelayed verifies the signatures (those not verified in MaskedInput) and
// opens the envelopes kept by MaskedInput, in parallel, and records the
// shares they carry. The first failure in envelope order decides the class.
func (c *Client) openRelayed() (error, string) {
	type opened struct {
		sSh, bSh [32]byte
		class    error
		why      string
	}
	res := make([]opened, len(c.relayed))
	parallelFor(len(c.relayed), prg.Workers(c.p.Workers), func(i int) {
		env := c.relayed[i]
		r := &res[i]
		if !c.sigChecked[i] {
			if r.class, r.why = checkEnvelopeSig(c.p, c.ctx, c.keys, env); r.class != nil {
				return
			}
		}
		info := shareInfo(c.ctx, c.transcript, env.From, c.self)
		var err error
		if r.sSh, r.bSh, err = openShares(c.p.PQ, c.enc.sk, info, env.Enc, env.Sealed, env.From, c.self); err != nil {
			r.class, r.why = ErrInvalid, fmt.Sprintf("decrypting shares from site %d: %v", env.From, err)
			return
		}
		if _, err := parseScalar(r.sSh); err != nil {
			r.class, r.why = ErrInvalid, fmt.Sprintf("share of site %d's mask-key secret: %v", env.From, err)
			return
		}
		if _, err := parseScalar(r.bSh); err != nil {
			r.class, r.why = ErrInvalid, fmt.Sprintf("share of site %d's self-mask secret: %v", env.From, err)
		}
	})
	for i, env := range c.relayed {
		if r := &res[i]; r.class != nil {
			return r.class, r.why
		}
		c.sShares[env.From], c.bShares[env.From] = res[i].sSh, res[i].bSh
	}
	return nil, ""
}

// ConsistencyCheck signs the survivor set U3 after checking it: sorted,
// at least T sites, contains this site, and U3 ⊆ U2 as this site saw U2.
func (c *Client) ConsistencyCheck(sl *SurvivorList) (*ConsistencySig, error) {
	const st = StageConsistencyCheck
	if err := c.enter(st); err != nil {
		return nil, err
	}
	if sl == nil {
		return nil, c.abort(st, ErrMalformed, "nil message")
	}
	if sl.Round != c.p.Round {
		return nil, c.abort(st, ErrWrongRound, "SurvivorList is for round %d, this is round %d", sl.Round, c.p.Round)
	}
	if len(sl.Sites) < c.p.T {
		return nil, c.abort(st, ErrTooFewSites, "U3 has %d sites, threshold is %d", len(sl.Sites), c.p.T)
	}
	for i, s := range sl.Sites {
		if i > 0 && s <= sl.Sites[i-1] {
			return nil, c.abort(st, ErrInvalid, "SurvivorList not sorted at site %d", s)
		}
		if _, ok := slices.BinarySearch(c.u2, s); !ok {
			return nil, c.abort(st, ErrInconsistent, "survivor %d is not in U2 as this site saw it", s)
		}
	}
	if _, ok := slices.BinarySearch(sl.Sites, c.self); !ok {
		return nil, c.abort(st, ErrInvalid, "SurvivorList does not contain this site")
	}
	c.u3 = slices.Clone(sl.Sites)
	c.u3Digest = siteSetDigest("fedtune/secagg/v1 U3", c.ctx, c.u3)
	m := &ConsistencySig{Round: c.p.Round, Site: c.self, Transcript: c.transcript, SurvivorDigest: c.u3Digest}
	var err error
	if m.Sig, err = c.sign(m.appendSigned); err != nil {
		return nil, c.abort(st, ErrInvalid, "signing: %v", err)
	}
	c.stage = StageUnmask
	return m, nil
}

// Unmask checks the consistency certificate — the same U3 this site signed,
// and valid signatures over it from at least T distinct sites of U3 — then
// verifies and decrypts the envelopes kept by MaskedInput (aborting with
// ErrBadSignature or ErrInvalid if one is forged or does not open), and only
// then reveals, for each site of U2 \ U3, its share of that site's
// mask-key secret, and for each site of U3, its share of the self-mask
// secret. It never reveals both for one site, and answers at most once.
func (c *Client) Unmask(cert *ConsistencyCertificate) (*UnmaskShares, error) {
	const st = StageUnmask
	if err := c.enter(st); err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, c.abort(st, ErrMalformed, "nil message")
	}
	if cert.Round != c.p.Round {
		return nil, c.abort(st, ErrWrongRound, "ConsistencyCertificate is for round %d, this is round %d", cert.Round, c.p.Round)
	}
	if !slices.Equal(cert.Survivors, c.u3) {
		return nil, c.abort(st, ErrInconsistent, "certificate names survivors %v, this site signed %v", cert.Survivors, c.u3)
	}
	if len(cert.Sigs) < c.p.T {
		return nil, c.abort(st, ErrTooFewSites, "certificate has %d signatures, threshold is %d", len(cert.Sigs), c.p.T)
	}
	for i, ss := range cert.Sigs {
		if i > 0 && ss.Site <= cert.Sigs[i-1].Site {
			return nil, c.abort(st, ErrInvalid, "certificate signatures not sorted at site %d", ss.Site)
		}
		if _, ok := slices.BinarySearch(c.u3, ss.Site); !ok {
			return nil, c.abort(st, ErrInvalid, "certificate carries a signature of site %d, which is not a survivor", ss.Site)
		}
		cs := &ConsistencySig{Round: c.p.Round, Site: ss.Site, Transcript: c.transcript, SurvivorDigest: c.u3Digest}
		if !c.keys.verify(ss.Site, signedBytes(c.ctx, cs.appendSigned), ss.Sig) {
			// Either a forgery or site ss.Site signed a different U3 or key
			// list: the server equivocated.
			return nil, c.abort(st, ErrInconsistent, "signature of site %d does not cover the survivor set this site signed", ss.Site)
		}
	}
	if class, why := c.openRelayed(); class != nil {
		return nil, c.abort(st, class, "%s", why)
	}
	m := &UnmaskShares{Round: c.p.Round, Site: c.self, Transcript: c.transcript, SurvivorDigest: c.u3Digest}
	for _, v := range c.u2 {
		if _, ok := slices.BinarySearch(c.u3, v); ok {
			m.SelfMaskShares = append(m.SelfMaskShares, Share{Of: v, Value: c.bShares[v]})
		} else {
			m.MaskKeyShares = append(m.MaskKeyShares, Share{Of: v, Value: c.sShares[v]})
		}
	}
	var err error
	if m.Sig, err = c.sign(m.appendSigned); err != nil {
		return nil, c.abort(st, ErrInvalid, "signing: %v", err)
	}
	c.stage = StageDone
	c.wipe()
	return m, nil
}
