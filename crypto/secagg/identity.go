package secagg

import (
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// SigAlg is a signature scheme for site identity keys.
type SigAlg uint8

const (
	// Ed25519 signatures (RFC 8032): 32-byte keys, 64-byte signatures.
	Ed25519 SigAlg = 1
	// MLDSA65 signatures (FIPS 204, ML-DSA-65, deterministic variant, context
	// string "fedtune-secagg-v1"): 1952-byte keys, 3309-byte signatures.
	MLDSA65 SigAlg = 2
)

func (a SigAlg) String() string {
	switch a {
	case Ed25519:
		return "Ed25519"
	case MLDSA65:
		return "ML-DSA-65"
	}
	return fmt.Sprintf("SigAlg(%d)", uint8(a))
}

// mldsaContext is the FIPS 204 context string of every ML-DSA-65 signature.
var mldsaContext = []byte("fedtune-secagg-v1")

// Signer signs protocol messages with a site's identity key.
type Signer interface {
	// Sign returns a signature over message (the message itself, not a
	// digest) in the encoding of the scheme named by Params.SigAlg.
	Sign(message []byte) ([]byte, error)
}

// SignerFunc adapts a function to Signer; a driver wraps a key store's
// signer with it, e.g.
//
//	secagg.SignerFunc(func(m []byte) ([]byte, error) { return ks.Sign(ctx, m) })
type SignerFunc func(message []byte) ([]byte, error)

// Sign implements Signer.
func (f SignerFunc) Sign(message []byte) ([]byte, error) { return f(message) }

// Identity is an in-memory identity key. It implements Signer.
type Identity struct {
	alg  SigAlg
	ed   ed25519.PrivateKey
	mlsk *mldsa65.PrivateKey
	pub  []byte
}

// NewIdentity generates an identity key for alg from rand.
func NewIdentity(alg SigAlg, rand io.Reader) (*Identity, error) {
	switch alg {
	case Ed25519:
		pub, priv, err := ed25519.GenerateKey(rand)
		if err != nil {
			return nil, fmt.Errorf("secagg: generating Ed25519 key: %w", err)
		}
		return &Identity{alg: alg, ed: priv, pub: pub}, nil
	case MLDSA65:
		var seed [mldsa65.SeedSize]byte
		if _, err := io.ReadFull(rand, seed[:]); err != nil {
			return nil, fmt.Errorf("secagg: generating ML-DSA-65 key: %w", err)
		}
		pk, sk := mldsa65.NewKeyFromSeed(&seed)
		return &Identity{alg: alg, mlsk: sk, pub: pk.Bytes()}, nil
	}
	return nil, fmt.Errorf("secagg: unknown SigAlg %d", alg)
}

// Public returns the public key, as it goes into a Roster.
func (id *Identity) Public() []byte { return id.pub }

// Sign implements Signer.
func (id *Identity) Sign(message []byte) ([]byte, error) {
	switch id.alg {
	case Ed25519:
		return ed25519.Sign(id.ed, message), nil
	case MLDSA65:
		sig := make([]byte, mldsa65.SignatureSize)
		if err := mldsa65.SignTo(id.mlsk, message, mldsaContext, false, sig); err != nil {
			return nil, fmt.Errorf("secagg: ML-DSA-65 sign: %w", err)
		}
		return sig, nil
	}
	return nil, fmt.Errorf("secagg: unknown SigAlg %d", id.alg)
}

func checkPublicKey(alg SigAlg, pub []byte) error {
	switch alg {
	case Ed25519:
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
	case MLDSA65:
		if len(pub) != mldsa65.PublicKeySize {
			return fmt.Errorf("ML-DSA-65 public key is %d bytes, want %d", len(pub), mldsa65.PublicKeySize)
		}
		var pk mldsa65.PublicKey
		if err := pk.UnmarshalBinary(pub); err != nil {
			return fmt.Errorf("ML-DSA-65 public key: %v", err)
		}
	default:
		return fmt.Errorf("unknown SigAlg %d", alg)
	}
	return nil
}

func sigSize(alg SigAlg) int {
	if alg == MLDSA65 {
		return mldsa65.SignatureSize
	}
	return ed25519.SignatureSize
}

// keyring holds the roster's keys parsed once for verification.
type keyring struct {
	alg SigAlg
	raw [][]byte
	ml  []*mldsa65.PublicKey
}

// newKeyring parses a roster already checked by Roster.validate.
func newKeyring(alg SigAlg, r Roster) *keyring {
	k := &keyring{alg: alg, raw: r}
	if alg == MLDSA65 {
		k.ml = make([]*mldsa65.PublicKey, len(r))
		for i, b := range r {
			k.ml[i] = new(mldsa65.PublicKey)
			_ = k.ml[i].UnmarshalBinary(b) // checked by Roster.validate
		}
	}
	return k
}

// verify checks sig over message under the key of site id (1 ≤ id ≤ N).
func (k *keyring) verify(id SiteID, message, sig []byte) bool {
	if id < 1 || int(id) > len(k.raw) {
		return false
	}
	switch k.alg {
	case Ed25519:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.raw[id-1], message, sig)
	case MLDSA65:
		return len(sig) == mldsa65.SignatureSize && mldsa65.Verify(k.ml[id-1], message, mldsaContext, sig)
	}
	return false
}
