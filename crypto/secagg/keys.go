package secagg

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/kem/hybrid"
)

// Key material. Every derivation is HKDF-SHA256 (RFC 5869) with the round
// context hash as salt and a label naming its purpose and the sites involved,
// so no key is ever used for two purposes or in two rounds.

func derive(secret []byte, ctx [32]byte, label string, sites []SiteID, n int) []byte {
	info := []byte("fedtune/secagg/v1 " + label)
	for _, s := range sites {
		info = binary.BigEndian.AppendUint32(info, uint32(s))
	}
	out, err := hkdf.Key(sha256.New, secret, ctx[:], string(info), n) // RFC 5869 §2.2–2.3
	if err != nil {
		panic(fmt.Sprintf("secagg: hkdf: %v", err)) // only for n > 255·32
	}
	return out
}

// hpkeSuite returns the HPKE (RFC 9180) suite for encrypting shares:
// DHKEM(X25519, HKDF-SHA256) classically, X-Wing (X25519 + ML-KEM-768) in PQ
// mode; HKDF-SHA256 and AES-128-GCM in both.
func hpkeSuite(pq bool) hpke.Suite {
	k := hpke.KEM_X25519_HKDF_SHA256
	if pq {
		k = hpke.KEM_XWING
	}
	return hpke.NewSuite(k, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
}

func hpkeScheme(pq bool) kem.Scheme {
	if pq {
		return hpke.KEM_XWING.Scheme()
	}
	return hpke.KEM_X25519_HKDF_SHA256.Scheme()
}

// maskScheme is the KEM of PQ mask agreement: X25519 + ML-KEM-768
// (draft-kwiatkowski-tls-ecdhe-mlkem, as implemented by circl).
var maskScheme = hybrid.X25519MLKEM768()

// maskKeys are a site's mask-agreement keys, all derived from its Shamir-
// shared mask-key secret s_u, so anyone who rebuilds s_u rebuilds them.
type maskKeys struct {
	pq   bool
	seed []byte // HKDF(s_u): the input to both derivations below
	x    *ecdh.PrivateKey
	kemP kem.PublicKey
	kemS kem.PrivateKey
	pub  []byte
}

// deriveMaskKeys derives site's mask-agreement key pair from the encoding of
// its secret scalar s_u.
func deriveMaskKeys(pq bool, ctx [32]byte, site SiteID, secret [32]byte) (*maskKeys, error) {
	mk := &maskKeys{pq: pq}
	if pq {
		mk.seed = derive(secret[:], ctx, "mask-key seed", []SiteID{site}, maskScheme.SeedSize())
		mk.kemP, mk.kemS = maskScheme.DeriveKeyPair(mk.seed)
		pub, err := mk.kemP.MarshalBinary()
		if err != nil {
			return nil, err
		}
		mk.pub = pub
		return mk, nil
	}
	mk.seed = derive(secret[:], ctx, "mask-key seed", []SiteID{site}, 32)
	x, err := ecdh.X25519().NewPrivateKey(mk.seed)
	if err != nil {
		return nil, err
	}
	mk.x = x
	mk.pub = x.PublicKey().Bytes()
	return mk, nil
}

func checkMaskPK(pq bool, pub []byte) error {
	if pq {
		if _, err := maskScheme.UnmarshalBinaryPublicKey(pub); err != nil {
			return fmt.Errorf("X25519MLKEM768 public key of %d bytes: %v", len(pub), err)
		}
		return nil
	}
	if _, err := ecdh.X25519().NewPublicKey(pub); err != nil {
		return fmt.Errorf("X25519 public key of %d bytes: %v", len(pub), err)
	}
	return nil
}

// pairSecret is the shared secret of sites lo < hi from which their pairwise
// mask key is derived.
//
// Classical: X25519(s_lo, pk_hi) = X25519(s_hi, pk_lo) (RFC 7748 §6.1).
//
// PQ: a KEM is not symmetric, so lo encapsulates to hi's public key with
// encapsulation randomness derived from its own seed,
//
//	(ct, ss) = X25519MLKEM768.EncapsulateDeterministically(pk_hi, HKDF(seed_lo, "encaps", lo, hi)),
//
// and sends ct in its ShareKeys envelope to hi; hi computes ss = Decaps(sk_hi,
// ct). If lo drops, the server rebuilds seed_lo and re-runs the encapsulation;
// if hi drops, it rebuilds sk_hi and decapsulates the ct it relayed.
func (mk *maskKeys) encapsulate(ctx [32]byte, lo, hi SiteID, peerPub []byte) (ct, ss []byte, err error) {
	pk, err := maskScheme.UnmarshalBinaryPublicKey(peerPub)
	if err != nil {
		return nil, nil, err
	}
	eseed := derive(mk.seed, ctx, "encaps", []SiteID{lo, hi}, maskScheme.EncapsulationSeedSize())
	return maskScheme.EncapsulateDeterministically(pk, eseed)
}

func (mk *maskKeys) decapsulate(ct []byte) ([]byte, error) {
	if len(ct) != maskScheme.CiphertextSize() {
		return nil, fmt.Errorf("KEM ciphertext is %d bytes, want %d", len(ct), maskScheme.CiphertextSize())
	}
	return maskScheme.Decapsulate(mk.kemS, ct)
}

func (mk *maskKeys) agree(peerPub []byte) ([]byte, error) {
	pk, err := ecdh.X25519().NewPublicKey(peerPub)
	if err != nil {
		return nil, err
	}
	return mk.x.ECDH(pk) // rejects the all-zero output of low-order points
}

// pairwiseMaskKey derives the AES-128 key of the pairwise mask of lo < hi.
func pairwiseMaskKey(ctx [32]byte, lo, hi SiteID, shared []byte) (k [16]byte) {
	copy(k[:], derive(shared, ctx, "pairwise mask", []SiteID{lo, hi}, 16))
	return k
}

// selfMaskKey derives the AES-128 key of site's self mask from its secret b_u.
func selfMaskKey(ctx [32]byte, site SiteID, secret [32]byte) (k [16]byte) {
	copy(k[:], derive(secret[:], ctx, "self mask", []SiteID{site}, 16))
	return k
}

// selfMaskCommit = SHA-256("fedtune/secagg/v1 self-mask commit" || ctx || site || b_u).
func selfMaskCommit(ctx [32]byte, site SiteID, secret [32]byte) [32]byte {
	var e encoder
	e.fixed([]byte("fedtune/secagg/v1 self-mask commit"))
	e.fixed(ctx[:])
	e.site(site)
	e.fixed(secret[:])
	return sha256.Sum256(e.b)
}

// encKeys is a site's per-round HPKE key pair for receiving shares.
type encKeys struct {
	sk  kem.PrivateKey
	pub []byte
}

func newEncKeys(pq bool, rand io.Reader) (*encKeys, error) {
	sch := hpkeScheme(pq)
	seed := make([]byte, sch.SeedSize())
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("secagg: reading randomness: %w", err)
	}
	pk, sk := sch.DeriveKeyPair(seed)
	pub, err := pk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &encKeys{sk: sk, pub: pub}, nil
}

func checkEncPK(pq bool, pub []byte) error {
	if _, err := hpkeScheme(pq).UnmarshalBinaryPublicKey(pub); err != nil {
		return fmt.Errorf("HPKE public key of %d bytes: %v", len(pub), err)
	}
	return nil
}

// shareInfo is the HPKE info string of an envelope: it binds the ciphertext
// to the round, both sites and the KeyList transcript.
func shareInfo(ctx, transcript [32]byte, from, to SiteID) []byte {
	var e encoder
	e.fixed([]byte("fedtune/secagg/v1 shares"))
	e.fixed(ctx[:])
	e.fixed(transcript[:])
	e.site(from)
	e.site(to)
	return e.b
}

const sharePlaintextLen = 4 + 4 + 32 + 32

func sealShares(pq bool, rand io.Reader, peerPub []byte, info []byte, from, to SiteID, sShare, bShare [32]byte) (enc, ct []byte, err error) {
	suite := hpkeSuite(pq)
	pk, err := hpkeScheme(pq).UnmarshalBinaryPublicKey(peerPub)
	if err != nil {
		return nil, nil, err
	}
	snd, err := suite.NewSender(pk, info)
	if err != nil {
		return nil, nil, err
	}
	enc, sealer, err := snd.Setup(rand)
	if err != nil {
		return nil, nil, err
	}
	var e encoder
	e.site(from)
	e.site(to)
	e.fixed(sShare[:])
	e.fixed(bShare[:])
	ct, err = sealer.Seal(e.b, nil)
	return enc, ct, err
}

var errShareMismatch = errors.New("decrypted shares name other sites than the envelope")

func openShares(pq bool, sk kem.PrivateKey, info, enc, ct []byte, from, to SiteID) (sShare, bShare [32]byte, err error) {
	rcv, err := hpkeSuite(pq).NewReceiver(sk, info)
	if err != nil {
		return sShare, bShare, err
	}
	opener, err := rcv.Setup(enc)
	if err != nil {
		return sShare, bShare, err
	}
	pt, err := opener.Open(ct, nil)
	if err != nil {
		return sShare, bShare, err
	}
	if len(pt) != sharePlaintextLen {
		return sShare, bShare, fmt.Errorf("plaintext is %d bytes, want %d", len(pt), sharePlaintextLen)
	}
	if SiteID(binary.BigEndian.Uint32(pt)) != from || SiteID(binary.BigEndian.Uint32(pt[4:])) != to {
		return sShare, bShare, errShareMismatch
	}
	copy(sShare[:], pt[8:40])
	copy(bShare[:], pt[40:72])
	return sShare, bShare, nil
}
