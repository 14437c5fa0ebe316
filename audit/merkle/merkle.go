// Package merkle implements the Merkle tree hashing of RFC 6962 section 2.1
// and its inclusion and consistency proofs (RFC 6962 sections 2.1.1 and
// 2.1.2, with the verification algorithms of RFC 9162 sections 2.1.3.2 and
// 2.1.4.2).
//
// The package does no I/O. Proof generation reads perfect-subtree hashes
// through the one-method [NodeSource] interface; [Tree] is an in-memory
// implementation and [Builder] computes roots incrementally while leaves
// stream past.
//
// Indices are 0-based; a tree of size n has leaves 0..n-1.
package merkle

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
)

// HashSize is the size of every hash in the tree.
const HashSize = sha256.Size

// Hash is a SHA-256 node or leaf hash.
type Hash [HashSize]byte

// ErrInvalidProof is returned (wrapped) when a proof does not verify.
var ErrInvalidProof = errors.New("merkle: invalid proof")

// EmptyRoot returns the root of the empty tree: SHA-256 of the empty string
// (RFC 6962 section 2.1: MTH({}) = SHA-256()).
func EmptyRoot() Hash { return sha256.Sum256(nil) }

// LeafHash returns the hash of a leaf: SHA-256(0x00 || data) (RFC 6962 section 2.1).
func LeafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0x00})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash returns the hash of an interior node: SHA-256(0x01 || left || right)
// (RFC 6962 section 2.1).
func NodeHash(left, right Hash) Hash {
	var buf [1 + 2*HashSize]byte
	buf[0] = 0x01
	copy(buf[1:], left[:])
	copy(buf[1+HashSize:], right[:])
	return sha256.Sum256(buf[:])
}

// NodeSource returns the root of the perfect subtree at height level whose
// leftmost leaf is index<<level: level 0 is the leaf hashes themselves.
// Callers only ask for subtrees that lie entirely inside the tree they are
// building a proof for.
type NodeSource interface {
	Node(level uint, index uint64) (Hash, error)
}

// splitPoint returns the largest power of two strictly less than n (n > 1):
// the k of RFC 6962 section 2.1.
func splitPoint(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}

// RangeHash returns MTH(D[lo:hi]) for a range that starts at a multiple of
// the largest power of two not exceeding its length, which is every range
// the RFC 6962 recursions visit.
func RangeHash(src NodeSource, lo, hi uint64) (Hash, error) {
	n := hi - lo
	if hi <= lo {
		return Hash{}, fmt.Errorf("merkle: empty range [%d, %d)", lo, hi)
	}
	if n&(n-1) == 0 && lo%n == 0 {
		level := uint(bits.TrailingZeros64(n))
		return src.Node(level, lo>>level)
	}
	k := splitPoint(n)
	if lo%k != 0 {
		return Hash{}, fmt.Errorf("merkle: range [%d, %d) is not aligned", lo, hi)
	}
	l, err := RangeHash(src, lo, lo+k)
	if err != nil {
		return Hash{}, err
	}
	r, err := RangeHash(src, lo+k, hi)
	if err != nil {
		return Hash{}, err
	}
	// MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (RFC 6962 section 2.1)
	return NodeHash(l, r), nil
}

// Root returns MTH of the first size leaves of src.
func Root(src NodeSource, size uint64) (Hash, error) {
	if size == 0 {
		return EmptyRoot(), nil
	}
	return RangeHash(src, 0, size)
}

// InclusionProof returns PATH(index, D[0:size]) (RFC 6962 section 2.1.1).
func InclusionProof(src NodeSource, index, size uint64) ([]Hash, error) {
	if index >= size {
		return nil, fmt.Errorf("merkle: inclusion proof for index %d in tree of size %d", index, size)
	}
	var proof []Hash
	var rec func(m, lo, hi uint64) error
	rec = func(m, lo, hi uint64) error {
		n := hi - lo
		if n == 1 {
			return nil // PATH(0, {d0}) = {}
		}
		k := splitPoint(n)
		var sib Hash
		var err error
		if m < k {
			// PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k
			if err = rec(m, lo, lo+k); err != nil {
				return err
			}
			sib, err = RangeHash(src, lo+k, hi)
		} else {
			// PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k
			if err = rec(m-k, lo+k, hi); err != nil {
				return err
			}
			sib, err = RangeHash(src, lo, lo+k)
		}
		if err != nil {
			return err
		}
		proof = append(proof, sib)
		return nil
	}
	if err := rec(index, 0, size); err != nil {
		return nil, err
	}
	return proof, nil
}

// ConsistencyProof returns PROOF(m, D[0:n]) (RFC 6962 section 2.1.2) for
// 0 < m <= n. A proof from the empty tree is refused: it would prove
// nothing, and RFC 9162 section 2.1.4 defines proofs only for 0 < m.
func ConsistencyProof(src NodeSource, m, n uint64) ([]Hash, error) {
	if m == 0 || m > n {
		return nil, fmt.Errorf("merkle: consistency proof from size %d to size %d: want 0 < from <= to", m, n)
	}
	var proof []Hash
	// SUBPROOF(m, D[lo:hi], b) (RFC 6962 section 2.1.2)
	var rec func(m, lo, hi uint64, b bool) error
	rec = func(m, lo, hi uint64, b bool) error {
		n := hi - lo
		if m == n {
			if b {
				return nil // SUBPROOF(m, D[m], true) = {}
			}
			h, err := RangeHash(src, lo, hi) // SUBPROOF(m, D[m], false) = {MTH(D[m])}
			if err != nil {
				return err
			}
			proof = append(proof, h)
			return nil
		}
		k := splitPoint(n)
		if m <= k {
			// SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) for m <= k
			if err := rec(m, lo, lo+k, b); err != nil {
				return err
			}
			h, err := RangeHash(src, lo+k, hi)
			if err != nil {
				return err
			}
			proof = append(proof, h)
			return nil
		}
		// SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]) for m > k
		if err := rec(m-k, lo+k, hi, false); err != nil {
			return err
		}
		h, err := RangeHash(src, lo, lo+k)
		if err != nil {
			return err
		}
		proof = append(proof, h)
		return nil
	}
	if err := rec(m, 0, n, true); err != nil {
		return nil, err
	}
	return proof, nil
}

// RootFromInclusionProof returns the root implied by leafHash at index in a
// tree of size size with the given proof (RFC 9162 section 2.1.3.2).
func RootFromInclusionProof(leafHash Hash, index, size uint64, proof []Hash) (Hash, error) {
	if index >= size {
		return Hash{}, fmt.Errorf("%w: index %d not below size %d", ErrInvalidProof, index, size)
	}
	fn, sn := index, size-1 // RFC 9162 2.1.3.2 step 2
	r := leafHash
	for i, p := range proof {
		if sn == 0 {
			return Hash{}, fmt.Errorf("%w: %d extra hashes in inclusion proof", ErrInvalidProof, len(proof)-i)
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r) // step 3.2.i: r = HASH(0x01 || p || r)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 { // step 3.2.ii
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			r = NodeHash(r, p) // step 3.3: r = HASH(0x01 || r || p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 { // step 4
		return Hash{}, fmt.Errorf("%w: inclusion proof too short", ErrInvalidProof)
	}
	return r, nil
}

// VerifyInclusion checks that leafHash is at index in the tree of the given
// size and root.
func VerifyInclusion(leafHash Hash, index, size uint64, proof []Hash, root Hash) error {
	r, err := RootFromInclusionProof(leafHash, index, size, proof)
	if err != nil {
		return err
	}
	if r != root {
		return fmt.Errorf("%w: inclusion proof for index %d leads to root %x, want %x", ErrInvalidProof, index, r[:], root[:])
	}
	return nil
}

// VerifyConsistency checks that the tree of size2 with root2 extends the
// tree of size1 with root1 (RFC 9162 section 2.1.4.2). A proof from size 0
// is refused.
func VerifyConsistency(size1, size2 uint64, root1, root2 Hash, proof []Hash) error {
	switch {
	case size1 == 0:
		return fmt.Errorf("%w: consistency proof from the empty tree", ErrInvalidProof)
	case size1 > size2:
		return fmt.Errorf("%w: consistency from size %d to smaller size %d", ErrInvalidProof, size1, size2)
	case size1 == size2:
		if len(proof) != 0 {
			return fmt.Errorf("%w: non-empty consistency proof between equal sizes", ErrInvalidProof)
		}
		if root1 != root2 {
			return fmt.Errorf("%w: different roots for the same size %d", ErrInvalidProof, size1)
		}
		return nil
	}
	if len(proof) == 0 {
		return fmt.Errorf("%w: empty consistency proof", ErrInvalidProof)
	}
	// RFC 9162 2.1.4.2 step 2: if first is an exact power of 2, prepend first_hash.
	if size1&(size1-1) == 0 {
		proof = append([]Hash{root1}, proof...)
	}
	fn, sn := size1-1, size2-1 // step 3
	for fn&1 == 1 {            // step 4
		fn >>= 1
		sn >>= 1
	}
	fr, sr := proof[0], proof[0]  // step 5
	for i, c := range proof[1:] { // step 6
		if sn == 0 {
			return fmt.Errorf("%w: %d extra hashes in consistency proof", ErrInvalidProof, len(proof)-1-i)
		}
		if fn&1 == 1 || fn == sn {
			fr = NodeHash(c, fr) // 6.2.i
			sr = NodeHash(c, sr)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 { // 6.2.ii
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			sr = NodeHash(sr, c) // 6.3.i
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 { // step 7
		return fmt.Errorf("%w: consistency proof too short", ErrInvalidProof)
	}
	if fr != root1 {
		return fmt.Errorf("%w: consistency proof does not lead to the old root", ErrInvalidProof)
	}
	if sr != root2 {
		return fmt.Errorf("%w: consistency proof does not lead to the new root", ErrInvalidProof)
	}
	return nil
}
