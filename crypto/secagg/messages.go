package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"unsafe"
)

// AdvertiseKeys is a site's first message (stage AdvertiseKeys, client →
// server): its two public keys for this round and a commitment to its
// self-mask seed, signed with its identity key.
type AdvertiseKeys struct {
	Round uint64
	Site  SiteID
	// EncPK is the HPKE public key that other sites encrypt their shares to
	// (DHKEM(X25519) classically, X-Wing in PQ mode).
	EncPK []byte
	// MaskPK is the public key for pairwise mask agreement (X25519, or
	// X25519+ML-KEM-768 in PQ mode), derived from the site's Shamir-shared
	// mask-key seed.
	MaskPK []byte
	// SelfMaskCommit = SHA-256 commitment to the self-mask seed; lets the
	// server check the seed it rebuilds from shares.
	SelfMaskCommit [32]byte
	Sig            []byte
}

// KeyList is the server's broadcast closing stage AdvertiseKeys: the
// AdvertiseKeys messages of all sites that made it (the set U1), sorted by
// site.
type KeyList struct {
	Round   uint64
	Entries []*AdvertiseKeys
}

// Envelope carries one site's shares for one other site, encrypted with HPKE
// to the recipient's EncPK, so the server relays it without reading it.
type Envelope struct {
	From, To SiteID
	// Transcript is the hash of the KeyList the sender saw.
	Transcript [32]byte
	// MaskCT is the KEM ciphertext establishing the pairwise mask key in PQ
	// mode, present when From < To; empty otherwise.
	MaskCT []byte
	// Enc is the HPKE encapsulated key, Sealed the HPKE ciphertext of
	// From ‖ To ‖ share of From's mask-key seed ‖ share of its self-mask seed.
	Enc, Sealed []byte
	Sig         []byte
}

// ShareKeys is a site's stage-ShareKeys message: one envelope per other site
// in U1, sorted by recipient.
type ShareKeys struct {
	Round     uint64
	Site      SiteID
	Envelopes []*Envelope
}

// ShareKeysRelay is what the server sends a site after stage ShareKeys: the
// envelopes addressed to it from every other site in U2, sorted by sender.
type ShareKeysRelay struct {
	Round     uint64
	To        SiteID
	Envelopes []*Envelope
}

// MaskedInput is a site's masked vector (stage MaskedInput). The signature
// covers the header fields and VectorDigest, so a transport may stream Vector
// in chunks separately from the header (see MarshalHeader, AppendWords,
// DecodeWords).
type MaskedInput struct {
	Round      uint64
	Site       SiteID
	Transcript [32]byte
	// U2Digest is the hash of the set U2 as the site saw it.
	U2Digest [32]byte
	// VectorLen is len(Vector); VectorDigest = SHA-256 of its little-endian
	// encoding.
	VectorLen    uint32
	VectorDigest [32]byte
	Sig          []byte
	Vector       []uint32
}

// SurvivorList is the server's message after stage MaskedInput: the set U3
// of sites whose masked input it accepted, sorted.
type SurvivorList struct {
	Round uint64
	Sites []SiteID
}

// ConsistencySig is a site's signature over the survivor set it was shown
// (stage ConsistencyCheck).
type ConsistencySig struct {
	Round          uint64
	Site           SiteID
	Transcript     [32]byte
	SurvivorDigest [32]byte
	Sig            []byte
}

// SiteSig is one site's signature inside a ConsistencyCertificate.
type SiteSig struct {
	Site SiteID
	Sig  []byte
}

// ConsistencyCertificate is the server's message after stage
// ConsistencyCheck: the survivor set and the signatures over it (from U4).
type ConsistencyCertificate struct {
	Round     uint64
	Survivors []SiteID
	Sigs      []SiteSig
}

// Share is one Shamir share of another site's secret, held by the sender.
type Share struct {
	Of    SiteID   // whose secret
	Value [32]byte // canonical Ristretto255 scalar encoding
}

// UnmaskShares is a site's last message (stage Unmask): shares of the
// mask-key seeds of sites that dropped after ShareKeys (U2 \ U3) and shares
// of the self-mask seeds of the survivors (U3), both sorted. A site never
// sends both kinds for the same site.
type UnmaskShares struct {
	Round          uint64
	Site           SiteID
	Transcript     [32]byte
	SurvivorDigest [32]byte
	MaskKeyShares  []Share
	SelfMaskShares []Share
	Sig            []byte
}

// Message is implemented by every message type.
type Message interface {
	// Marshal returns the canonical encoding.
	Marshal() []byte
	// Stage is the stage in which the message is sent.
	Stage() Stage
}

func (*AdvertiseKeys) Stage() Stage          { return StageAdvertiseKeys }
func (*KeyList) Stage() Stage                { return StageShareKeys }
func (*ShareKeys) Stage() Stage              { return StageShareKeys }
func (*ShareKeysRelay) Stage() Stage         { return StageMaskedInput }
func (*MaskedInput) Stage() Stage            { return StageMaskedInput }
func (*SurvivorList) Stage() Stage           { return StageConsistencyCheck }
func (*ConsistencySig) Stage() Stage         { return StageConsistencyCheck }
func (*ConsistencyCertificate) Stage() Stage { return StageUnmask }
func (*UnmaskShares) Stage() Stage           { return StageUnmask }

// ---- AdvertiseKeys

func (m *AdvertiseKeys) appendSigned(e *encoder) {
	e.header(typeAdvertiseKeys, m.Round)
	e.site(m.Site)
	e.bytes(m.EncPK)
	e.bytes(m.MaskPK)
	e.fixed(m.SelfMaskCommit[:])
}

func (m *AdvertiseKeys) Marshal() []byte {
	var e encoder
	m.appendSigned(&e)
	e.bytes(m.Sig)
	return e.b
}

func (m *AdvertiseKeys) decode(d *decoder, prefix string) {
	m.Round = d.header(typeAdvertiseKeys)
	m.Site = d.site(prefix + "site")
	m.EncPK = d.bytes(prefix + "encPK")
	m.MaskPK = d.bytes(prefix + "maskPK")
	m.SelfMaskCommit = d.fixed32(prefix + "selfMaskCommit")
	m.Sig = d.bytes(prefix + "sig")
}

// UnmarshalAdvertiseKeys decodes an AdvertiseKeys message.
func UnmarshalAdvertiseKeys(b []byte) (*AdvertiseKeys, error) {
	d := &decoder{b: b, msg: "AdvertiseKeys"}
	m := new(AdvertiseKeys)
	m.decode(d, "")
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// ---- KeyList

func (m *KeyList) Marshal() []byte {
	var e encoder
	e.header(typeKeyList, m.Round)
	e.u32(uint32(len(m.Entries)))
	for _, a := range m.Entries {
		e.bytes(a.Marshal())
	}
	return e.b
}

// UnmarshalKeyList decodes a KeyList; entries must be sorted by site with no
// repeats.
func UnmarshalKeyList(b []byte) (*KeyList, error) {
	d := &decoder{b: b, msg: "KeyList"}
	m := &KeyList{Round: d.header(typeKeyList)}
	n := d.count("entries", MaxSites, 4)
	for i := 0; i < n && d.err == nil; i++ {
		f := fmt.Sprintf("entries[%d]", i)
		start := d.off
		raw := d.bytes(f)
		if d.err != nil {
			break
		}
		a, err := UnmarshalAdvertiseKeys(raw)
		if err != nil {
			de := err.(*DecodeError)
			d.off = start + 4 + de.Offset
			d.fail(f+"."+de.Field, "%s", de.Reason)
			break
		}
		if i > 0 && a.Site <= m.Entries[i-1].Site {
			d.off = start
			d.fail(f+".site", "site %d after site %d: entries must be sorted, without repeats", a.Site, m.Entries[i-1].Site)
			break
		}
		m.Entries = append(m.Entries, a)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// keyListDigest is the transcript hash after stage AdvertiseKeys:
// SHA-256("fedtune/secagg/v1 keylist" || ctx || KeyList encoding).
func keyListDigest(ctx [32]byte, kl *KeyList) [32]byte {
	h := sha256.New()
	h.Write([]byte("fedtune/secagg/v1 keylist"))
	h.Write(ctx[:])
	h.Write(kl.Marshal())
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ---- Envelope

func (m *Envelope) appendSigned(e *encoder, round uint64) {
	e.header(typeEnvelope, round)
	m.appendBody(e)
}

func (m *Envelope) appendBody(e *encoder) {
	e.site(m.From)
	e.site(m.To)
	e.fixed(m.Transcript[:])
	e.bytes(m.MaskCT)
	e.bytes(m.Enc)
	e.bytes(m.Sealed)
}

func (m *Envelope) encode(e *encoder) {
	m.appendBody(e)
	e.bytes(m.Sig)
}

func decodeEnvelope(d *decoder, f string) *Envelope {
	m := new(Envelope)
	m.From = d.site(f + ".from")
	m.To = d.site(f + ".to")
	m.Transcript = d.fixed32(f + ".transcript")
	m.MaskCT = d.bytes(f + ".maskCT")
	m.Enc = d.bytes(f + ".enc")
	m.Sealed = d.bytes(f + ".sealed")
	m.Sig = d.bytes(f + ".sig")
	if m.From == m.To && d.err == nil {
		d.fail(f+".to", "envelope from site %d to itself", m.From)
	}
	return m
}

// minEnvelope is the smallest encoded envelope: two sites, a transcript and
// four empty byte strings.
const minEnvelope = 4 + 4 + 32 + 4*4

// ---- ShareKeys

func (m *ShareKeys) Marshal() []byte {
	var e encoder
	e.header(typeShareKeys, m.Round)
	e.site(m.Site)
	e.u32(uint32(len(m.Envelopes)))
	for _, v := range m.Envelopes {
		v.encode(&e)
	}
	return e.b
}

// UnmarshalShareKeys decodes a ShareKeys message; envelopes must all be from
// the sender and sorted by recipient without repeats.
func UnmarshalShareKeys(b []byte) (*ShareKeys, error) {
	d := &decoder{b: b, msg: "ShareKeys"}
	m := &ShareKeys{Round: d.header(typeShareKeys)}
	m.Site = d.site("site")
	n := d.count("envelopes", MaxSites, minEnvelope)
	for i := 0; i < n && d.err == nil; i++ {
		f := fmt.Sprintf("envelopes[%d]", i)
		start := d.off
		v := decodeEnvelope(d, f)
		if d.err != nil {
			break
		}
		switch {
		case v.From != m.Site:
			d.off = start
			d.fail(f+".from", "envelope from site %d inside the message of site %d", v.From, m.Site)
		case i > 0 && v.To <= m.Envelopes[i-1].To:
			d.off = start + 4
			d.fail(f+".to", "recipient %d after %d: envelopes must be sorted by recipient, without repeats", v.To, m.Envelopes[i-1].To)
		}
		m.Envelopes = append(m.Envelopes, v)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// ---- ShareKeysRelay

func (m *ShareKeysRelay) Marshal() []byte {
	var e encoder
	e.header(typeShareKeysRelay, m.Round)
	e.site(m.To)
	e.u32(uint32(len(m.Envelopes)))
	for _, v := range m.Envelopes {
		v.encode(&e)
	}
	return e.b
}

// UnmarshalShareKeysRelay decodes a ShareKeysRelay; envelopes must all be to
// the recipient and sorted by sender without repeats.
func UnmarshalShareKeysRelay(b []byte) (*ShareKeysRelay, error) {
	d := &decoder{b: b, msg: "ShareKeysRelay"}
	m := &ShareKeysRelay{Round: d.header(typeShareKeysRelay)}
	m.To = d.site("to")
	n := d.count("envelopes", MaxSites, minEnvelope)
	for i := 0; i < n && d.err == nil; i++ {
		f := fmt.Sprintf("envelopes[%d]", i)
		start := d.off
		v := decodeEnvelope(d, f)
		if d.err != nil {
			break
		}
		switch {
		case v.To != m.To:
			d.off = start + 4
			d.fail(f+".to", "envelope to site %d inside the relay for site %d", v.To, m.To)
		case i > 0 && v.From <= m.Envelopes[i-1].From:
			d.off = start
			d.fail(f+".from", "sender %d after %d: envelopes must be sorted by sender, without repeats", v.From, m.Envelopes[i-1].From)
		}
		m.Envelopes = append(m.Envelopes, v)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// ---- MaskedInput

func (m *MaskedInput) appendSigned(e *encoder) {
	e.header(typeMaskedInput, m.Round)
	e.site(m.Site)
	e.fixed(m.Transcript[:])
	e.fixed(m.U2Digest[:])
	e.u32(m.VectorLen)
	e.fixed(m.VectorDigest[:])
}

// MarshalHeader encodes everything but the vector words. A transport that
// streams the vector sends MarshalHeader() followed by 4·VectorLen bytes
// produced by AppendWords, in as many chunks as it likes.
func (m *MaskedInput) MarshalHeader() []byte {
	var e encoder
	m.appendSigned(&e)
	e.bytes(m.Sig)
	return e.b
}

// Marshal encodes the header followed by the vector words.
func (m *MaskedInput) Marshal() []byte {
	b := m.MarshalHeader()
	return AppendWords(b, m.Vector)
}

func decodeMaskedInputHeader(d *decoder) *MaskedInput {
	m := &MaskedInput{Round: d.header(typeMaskedInput)}
	m.Site = d.site("site")
	m.Transcript = d.fixed32("transcript")
	m.U2Digest = d.fixed32("u2Digest")
	start := d.off
	m.VectorLen = d.u32("vectorLen")
	if d.err == nil && (m.VectorLen == 0 || m.VectorLen > MaxVectorLen) {
		d.off = start
		d.fail("vectorLen", "vector length %d outside 1..%d", m.VectorLen, MaxVectorLen)
	}
	m.VectorDigest = d.fixed32("vectorDigest")
	m.Sig = d.bytes("sig")
	return m
}

// UnmarshalMaskedInputHeader decodes the output of MarshalHeader; Vector is
// left nil for the caller to fill with DecodeWords.
func UnmarshalMaskedInputHeader(b []byte) (*MaskedInput, error) {
	d := &decoder{b: b, msg: "MaskedInput header"}
	m := decodeMaskedInputHeader(d)
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalMaskedInput decodes a whole MaskedInput (header and vector). It
// checks the length, not the digest; the server checks the digest.
func UnmarshalMaskedInput(b []byte) (*MaskedInput, error) {
	d := &decoder{b: b, msg: "MaskedInput"}
	m := decodeMaskedInputHeader(d)
	if d.err == nil {
		if rest := len(b) - d.off; uint64(rest) != 4*uint64(m.VectorLen) {
			d.fail("vector", "%d bytes for a vector of %d words, want %d", rest, m.VectorLen, 4*uint64(m.VectorLen))
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	m.Vector = make([]uint32, m.VectorLen)
	if err := DecodeWords(m.Vector, b[d.off:]); err != nil {
		return nil, err
	}
	return m, nil
}

// littleEndian reports whether this machine stores uint32 little-endian, in
// which case a []uint32 already is its wire encoding.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// wordBytes views v as its little-endian encoding (little-endian machines only).
func wordBytes(v []uint32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// AppendWords appends the little-endian encoding of v to dst.
func AppendWords(dst []byte, v []uint32) []byte {
	if littleEndian {
		return append(dst, wordBytes(v)...)
	}
	for _, w := range v {
		dst = binary.LittleEndian.AppendUint32(dst, w)
	}
	return dst
}

// DecodeWords decodes little-endian words from b into dst; len(b) must be
// exactly 4·len(dst). A transport reassembling a streamed vector calls it
// once per chunk with the matching slice of the destination.
func DecodeWords(dst []uint32, b []byte) error {
	if len(b) != 4*len(dst) {
		return &DecodeError{Message: "vector chunk", Field: "words", Reason: fmt.Sprintf("%d bytes for %d words, want %d", len(b), len(dst), 4*len(dst))}
	}
	if littleEndian {
		copy(wordBytes(dst), b)
		return nil
	}
	for i := range dst {
		dst[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return nil
}

// VectorDigest is SHA-256 of the little-endian encoding of v, as carried in
// MaskedInput.VectorDigest.
func VectorDigest(v []uint32) [32]byte {
	if littleEndian {
		return sha256.Sum256(wordBytes(v))
	}
	h := sha256.New()
	var buf [16384]byte
	for len(v) > 0 {
		n := min(len(v), len(buf)/4)
		for i, w := range v[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], w)
		}
		h.Write(buf[:4*n])
		v = v[n:]
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ---- SurvivorList

func (m *SurvivorList) Marshal() []byte {
	var e encoder
	e.header(typeSurvivorList, m.Round)
	e.u32(uint32(len(m.Sites)))
	for _, s := range m.Sites {
		e.site(s)
	}
	return e.b
}

func decodeSites(d *decoder, f string) []SiteID {
	n := d.count(f, MaxSites, 4)
	var out []SiteID
	for i := 0; i < n && d.err == nil; i++ {
		start := d.off
		s := d.site(fmt.Sprintf("%s[%d]", f, i))
		if d.err == nil && i > 0 && s <= out[i-1] {
			d.off = start
			d.fail(fmt.Sprintf("%s[%d]", f, i), "site %d after site %d: list must be sorted, without repeats", s, out[i-1])
		}
		out = append(out, s)
	}
	return out
}

// UnmarshalSurvivorList decodes a SurvivorList; sites must be sorted without
// repeats.
func UnmarshalSurvivorList(b []byte) (*SurvivorList, error) {
	d := &decoder{b: b, msg: "SurvivorList"}
	m := &SurvivorList{Round: d.header(typeSurvivorList)}
	m.Sites = decodeSites(d, "sites")
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// siteSetDigest = SHA-256(label || ctx || count || sites), the hash of U2 or U3.
func siteSetDigest(label string, ctx [32]byte, sites []SiteID) [32]byte {
	var e encoder
	e.fixed([]byte(label))
	e.fixed(ctx[:])
	e.u32(uint32(len(sites)))
	for _, s := range sites {
		e.site(s)
	}
	return sha256.Sum256(e.b)
}

// ---- ConsistencySig

func (m *ConsistencySig) appendSigned(e *encoder) {
	e.header(typeConsistency, m.Round)
	e.site(m.Site)
	e.fixed(m.Transcript[:])
	e.fixed(m.SurvivorDigest[:])
}

func (m *ConsistencySig) Marshal() []byte {
	var e encoder
	m.appendSigned(&e)
	e.bytes(m.Sig)
	return e.b
}

// UnmarshalConsistencySig decodes a ConsistencySig.
func UnmarshalConsistencySig(b []byte) (*ConsistencySig, error) {
	d := &decoder{b: b, msg: "ConsistencySig"}
	m := &ConsistencySig{Round: d.header(typeConsistency)}
	m.Site = d.site("site")
	m.Transcript = d.fixed32("transcript")
	m.SurvivorDigest = d.fixed32("survivorDigest")
	m.Sig = d.bytes("sig")
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// ---- ConsistencyCertificate

func (m *ConsistencyCertificate) Marshal() []byte {
	var e encoder
	e.header(typeCertificate, m.Round)
	e.u32(uint32(len(m.Survivors)))
	for _, s := range m.Survivors {
		e.site(s)
	}
	e.u32(uint32(len(m.Sigs)))
	for _, s := range m.Sigs {
		e.site(s.Site)
		e.bytes(s.Sig)
	}
	return e.b
}

// UnmarshalConsistencyCertificate decodes a ConsistencyCertificate; both
// lists must be sorted by site without repeats.
func UnmarshalConsistencyCertificate(b []byte) (*ConsistencyCertificate, error) {
	d := &decoder{b: b, msg: "ConsistencyCertificate"}
	m := &ConsistencyCertificate{Round: d.header(typeCertificate)}
	m.Survivors = decodeSites(d, "survivors")
	n := d.count("sigs", MaxSites, 8)
	for i := 0; i < n && d.err == nil; i++ {
		f := fmt.Sprintf("sigs[%d]", i)
		start := d.off
		s := SiteSig{Site: d.site(f + ".site"), Sig: d.bytes(f + ".sig")}
		if d.err == nil && i > 0 && s.Site <= m.Sigs[i-1].Site {
			d.off = start
			d.fail(f+".site", "site %d after site %d: signatures must be sorted by site, without repeats", s.Site, m.Sigs[i-1].Site)
		}
		m.Sigs = append(m.Sigs, s)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// ---- UnmaskShares

func (m *UnmaskShares) appendSigned(e *encoder) {
	e.header(typeUnmask, m.Round)
	e.site(m.Site)
	e.fixed(m.Transcript[:])
	e.fixed(m.SurvivorDigest[:])
	for _, list := range [][]Share{m.MaskKeyShares, m.SelfMaskShares} {
		e.u32(uint32(len(list)))
		for _, s := range list {
			e.site(s.Of)
			e.fixed(s.Value[:])
		}
	}
}

func (m *UnmaskShares) Marshal() []byte {
	var e encoder
	m.appendSigned(&e)
	e.bytes(m.Sig)
	return e.b
}

func decodeShares(d *decoder, f string) []Share {
	n := d.count(f, MaxSites, 36)
	var out []Share
	for i := 0; i < n && d.err == nil; i++ {
		g := fmt.Sprintf("%s[%d]", f, i)
		start := d.off
		s := Share{Of: d.site(g + ".of"), Value: d.fixed32(g + ".value")}
		if d.err == nil && i > 0 && s.Of <= out[i-1].Of {
			d.off = start
			d.fail(g+".of", "site %d after site %d: shares must be sorted by site, without repeats", s.Of, out[i-1].Of)
		}
		out = append(out, s)
	}
	return out
}

// UnmarshalUnmaskShares decodes an UnmaskShares message; share lists must be
// sorted by site without repeats and must not name the same site twice.
func UnmarshalUnmaskShares(b []byte) (*UnmaskShares, error) {
	d := &decoder{b: b, msg: "UnmaskShares"}
	m := &UnmaskShares{Round: d.header(typeUnmask)}
	m.Site = d.site("site")
	m.Transcript = d.fixed32("transcript")
	m.SurvivorDigest = d.fixed32("survivorDigest")
	m.MaskKeyShares = decodeShares(d, "maskKeyShares")
	start := d.off
	m.SelfMaskShares = decodeShares(d, "selfMaskShares")
	if d.err == nil {
		seen := make(map[SiteID]bool, len(m.MaskKeyShares))
		for _, s := range m.MaskKeyShares {
			seen[s.Of] = true
		}
		for _, s := range m.SelfMaskShares {
			if seen[s.Of] {
				d.off = start
				d.fail("selfMaskShares", "site %d appears in both share lists: a site never reveals both secrets of one peer", s.Of)
				break
			}
		}
	}
	m.Sig = d.bytes("sig")
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// signedBytes is what a signature covers:
// "fedtune/secagg/v1 sig" || ctx || encoding of the message without its
// signature (and, for MaskedInput, without the vector, which VectorDigest
// covers).
func signedBytes(ctx [32]byte, appendSigned func(*encoder)) []byte {
	e := encoder{b: make([]byte, 0, 256)}
	e.fixed([]byte("fedtune/secagg/v1 sig"))
	e.fixed(ctx[:])
	appendSigned(&e)
	return e.b
}

// Unmarshal decodes any message by its type byte, for transports that carry
// messages as opaque bytes. A MaskedInput must include its vector.
func Unmarshal(b []byte) (Message, error) {
	if len(b) < 2 {
		return nil, &DecodeError{Message: "message", Field: "type", Offset: len(b), Reason: fmt.Sprintf("need 2 bytes of header, have %d", len(b))}
	}
	switch b[1] {
	case typeAdvertiseKeys:
		return UnmarshalAdvertiseKeys(b)
	case typeKeyList:
		return UnmarshalKeyList(b)
	case typeShareKeys:
		return UnmarshalShareKeys(b)
	case typeShareKeysRelay:
		return UnmarshalShareKeysRelay(b)
	case typeMaskedInput:
		return UnmarshalMaskedInput(b)
	case typeSurvivorList:
		return UnmarshalSurvivorList(b)
	case typeConsistency:
		return UnmarshalConsistencySig(b)
	case typeCertificate:
		return UnmarshalConsistencyCertificate(b)
	case typeUnmask:
		return UnmarshalUnmaskShares(b)
	}
	return nil, &DecodeError{Message: "message", Field: "type", Offset: 1, Reason: fmt.Sprintf("unknown message type %d", b[1])}
}
