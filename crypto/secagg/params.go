package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// SiteID names a site in a round: its 1-based position in the roster. It is
// also the x-coordinate of the Shamir shares the site holds, so it is never 0.
type SiteID uint32

// Limits enforced by [Params.Validate] and by every decoder.
const (
	// MaxSites is the largest roster a round may have.
	MaxSites = 1 << 14
	// MaxVectorLen is the largest input vector, in uint32 words (4 GiB).
	MaxVectorLen = 1 << 30
	// MaxFederationID is the longest federation ID, in bytes.
	MaxFederationID = 255
)

// Params are the public parameters of one round. Every site and the server
// must use identical Params (all fields but Workers enter the signed context,
// so a mismatch makes every signature fail).
type Params struct {
	// FederationID names the federation; Round numbers the round within it.
	FederationID string
	Round        uint64
	// N is the number of sites in the roster, T the threshold: any T sites
	// can rebuild a dropped site's secrets, and every stage needs at least T
	// sites to continue. Validate requires 2T > N (see the package doc).
	N, T int
	// VectorLen is the length of every input vector in uint32 words.
	VectorLen int
	// PQ selects the post-quantum hybrid mode: X25519+ML-KEM-768 for pairwise
	// mask keys and X-Wing HPKE for encrypting shares.
	PQ bool
	// SigAlg is the signature scheme of the sites' identity keys.
	SigAlg SigAlg
	// Workers bounds the goroutines used to expand masks (0: GOMAXPROCS). It
	// is a local tuning knob, not part of the protocol.
	Workers int
}

// Validate reports whether p is usable, naming the first bad field.
func (p Params) Validate() error {
	switch {
	case p.FederationID == "":
		return errors.New("secagg: params: FederationID is empty")
	case len(p.FederationID) > MaxFederationID:
		return fmt.Errorf("secagg: params: FederationID is %d bytes, at most %d allowed", len(p.FederationID), MaxFederationID)
	case p.N < 2 || p.N > MaxSites:
		return fmt.Errorf("secagg: params: N = %d, want 2 ≤ N ≤ %d", p.N, MaxSites)
	case p.T < 1 || p.T > p.N:
		return fmt.Errorf("secagg: params: T = %d, want 1 ≤ T ≤ N = %d", p.T, p.N)
	case 2*p.T <= p.N:
		return fmt.Errorf("secagg: params: T = %d with N = %d, want T > N/2 so that a server cannot split the sites into two groups that each reach the threshold", p.T, p.N)
	case p.VectorLen < 1 || p.VectorLen > MaxVectorLen:
		return fmt.Errorf("secagg: params: VectorLen = %d, want 1 ≤ VectorLen ≤ %d", p.VectorLen, MaxVectorLen)
	case p.SigAlg != Ed25519 && p.SigAlg != MLDSA65:
		return fmt.Errorf("secagg: params: unknown SigAlg %d", p.SigAlg)
	case p.Workers < 0:
		return fmt.Errorf("secagg: params: Workers = %d, want ≥ 0", p.Workers)
	}
	return nil
}

// Roster lists the sites' public identity keys; roster[i] belongs to
// SiteID(i+1). Keys are in the encoding of [Params.SigAlg].
type Roster [][]byte

func (r Roster) validate(p Params) error {
	if len(r) != p.N {
		return fmt.Errorf("secagg: roster has %d keys, params say N = %d", len(r), p.N)
	}
	for i, k := range r {
		if err := checkPublicKey(p.SigAlg, k); err != nil {
			return fmt.Errorf("secagg: roster key of site %d: %w", i+1, err)
		}
	}
	return nil
}

func (r Roster) key(id SiteID) []byte { return r[id-1] }

// contextHash binds every signature and derived key to this round:
//
//	SHA-256("fedtune/secagg/v1 context" || len‖FederationID || Round || N || T ||
//	        VectorLen || PQ || SigAlg || for each roster key: len‖key)
func contextHash(p Params, r Roster) [32]byte {
	h := sha256.New()
	var b []byte
	b = append(b, "fedtune/secagg/v1 context"...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(p.FederationID)))
	b = append(b, p.FederationID...)
	b = binary.BigEndian.AppendUint64(b, p.Round)
	b = binary.BigEndian.AppendUint32(b, uint32(p.N))
	b = binary.BigEndian.AppendUint32(b, uint32(p.T))
	b = binary.BigEndian.AppendUint32(b, uint32(p.VectorLen))
	pq := byte(0)
	if p.PQ {
		pq = 1
	}
	b = append(b, pq, byte(p.SigAlg))
	h.Write(b)
	for _, k := range r {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(k))))
		h.Write(k)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Stage is a step of the protocol (Bonawitz et al., CCS 2017, Fig. 4: rounds
// 0 to 4 of the malicious-server variant).
type Stage uint8

const (
	StageAdvertiseKeys    Stage = iota + 1 // round 0: sites publish public keys
	StageShareKeys                         // round 1: sites send encrypted shares
	StageMaskedInput                       // round 2: sites send masked inputs
	StageConsistencyCheck                  // round 3: sites sign the survivor set
	StageUnmask                            // round 4: sites reveal shares
	StageDone                              // the sum is available
	StageAborted                           // the round ended without a result
)

func (s Stage) String() string {
	switch s {
	case StageAdvertiseKeys:
		return "AdvertiseKeys"
	case StageShareKeys:
		return "ShareKeys"
	case StageMaskedInput:
		return "MaskedInput"
	case StageConsistencyCheck:
		return "ConsistencyCheck"
	case StageUnmask:
		return "Unmask"
	case StageDone:
		return "Done"
	case StageAborted:
		return "Aborted"
	}
	return fmt.Sprintf("Stage(%d)", uint8(s))
}
