package merkle

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

type vectors struct {
	LeafInputsHex []string          `json:"leaf_inputs_hex"`
	LeafHashesHex []string          `json:"leaf_hashes_hex"`
	Roots         map[string]string `json:"root_by_tree_size_hex"`
	Inclusion     []struct {
		Index uint64   `json:"index"`
		Size  uint64   `json:"size"`
		Path  []string `json:"path_hex"`
	} `json:"inclusion_0_based"`
	Consistency []struct {
		Size1 uint64   `json:"size1"`
		Size2 uint64   `json:"size2"`
		Proof []string `json:"proof_hex"`
	} `json:"consistency"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "rfc6962.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.LeafInputsHex) != 8 || len(v.Roots) != 9 || len(v.Inclusion) == 0 || len(v.Consistency) == 0 {
		t.Fatalf("testdata/rfc6962.json looks incomplete")
	}
	return v
}

func mustHash(t *testing.T, s string) Hash {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != HashSize {
		t.Fatalf("bad hash %q", s)
	}
	return Hash(b)
}

func hashes(t *testing.T, ss []string) []Hash {
	out := make([]Hash, len(ss))
	for i, s := range ss {
		out[i] = mustHash(t, s)
	}
	return out
}

func vectorTree(t *testing.T, v vectors) *Tree {
	var tr Tree
	for i, s := range v.LeafInputsHex {
		d, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := LeafHash(d), mustHash(t, v.LeafHashesHex[i]); got != want {
			t.Errorf("leaf %d: hash %x, want %x", i, got, want)
		}
		tr.AppendLeaf(d)
	}
	return &tr
}

func TestVectorsRoots(t *testing.T) {
	v := loadVectors(t)
	tr := vectorTree(t, v)
	for ss, want := range v.Roots {
		size, _ := strconv.ParseUint(ss, 10, 64)
		got, err := tr.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		if got != mustHash(t, want) {
			t.Errorf("root(%d) = %x, want %s", size, got, want)
		}
		var b Builder
		for i := uint64(0); i < size; i++ {
			h, _ := tr.Node(0, i)
			b.AppendLeafHash(h)
		}
		if b.Root() != mustHash(t, want) {
			t.Errorf("builder root(%d) = %x, want %s", size, b.Root(), want)
		}
	}
}

func TestVectorsInclusion(t *testing.T) {
	v := loadVectors(t)
	tr := vectorTree(t, v)
	for _, c := range v.Inclusion {
		got, err := InclusionProof(tr, c.Index, c.Size)
		if err != nil {
			t.Fatal(err)
		}
		want := hashes(t, c.Path)
		if len(got) != len(want) {
			t.Fatalf("inclusion(%d, %d): %d hashes, want %d", c.Index, c.Size, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("inclusion(%d, %d)[%d] = %x, want %x", c.Index, c.Size, i, got[i], want[i])
			}
		}
		leaf, _ := tr.Node(0, c.Index)
		root := mustHash(t, v.Roots[strconv.FormatUint(c.Size, 10)])
		if err := VerifyInclusion(leaf, c.Index, c.Size, want, root); err != nil {
			t.Errorf("inclusion(%d, %d): %v", c.Index, c.Size, err)
		}
	}
}

func TestVectorsConsistency(t *testing.T) {
	v := loadVectors(t)
	tr := vectorTree(t, v)
	for _, c := range v.Consistency {
		got, err := ConsistencyProof(tr, c.Size1, c.Size2)
		if err != nil {
			t.Fatal(err)
		}
		want := hashes(t, c.Proof)
		if len(got) != len(want) {
			t.Fatalf("consistency(%d, %d): %d hashes, want %d", c.Size1, c.Size2, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("consistency(%d, %d)[%d] = %x, want %x", c.Size1, c.Size2, i, got[i], want[i])
			}
		}
		r1 := mustHash(t, v.Roots[strconv.FormatUint(c.Size1, 10)])
		r2 := mustHash(t, v.Roots[strconv.FormatUint(c.Size2, 10)])
		if err := VerifyConsistency(c.Size1, c.Size2, r1, r2, want); err != nil {
			t.Errorf("consistency(%d, %d): %v", c.Size1, c.Size2, err)
		}
	}
}

func TestConsistencyFromZeroRejected(t *testing.T) {
	var tr Tree
	for i := 0; i < 4; i++ {
		tr.AppendLeaf([]byte{byte(i)})
	}
	if _, err := ConsistencyProof(&tr, 0, 4); err == nil {
		t.Error("ConsistencyProof(0, 4) succeeded")
	}
	r, _ := tr.Root(4)
	for _, p := range [][]Hash{nil, {r}, {EmptyRoot()}} {
		if err := VerifyConsistency(0, 4, EmptyRoot(), r, p); !errors.Is(err, ErrInvalidProof) {
			t.Errorf("VerifyConsistency(0, 4, %d hashes) = %v, want ErrInvalidProof", len(p), err)
		}
	}
}

// naiveRoot is MTH straight from the RFC 6962 section 2.1 definition.
func naiveRoot(leaves []Hash) Hash {
	switch len(leaves) {
	case 0:
		return EmptyRoot()
	case 1:
		return leaves[0]
	}
	k := splitPoint(uint64(len(leaves)))
	return NodeHash(naiveRoot(leaves[:k]), naiveRoot(leaves[k:]))
}

// TestExhaustive checks every root, every inclusion proof and every
// consistency proof for all tree sizes up to 256, including that any
// altered proof, index or size is rejected.
func TestExhaustive(t *testing.T) {
	const max = 256
	var tr Tree
	var b Builder
	leaves := make([]Hash, 0, max)
	roots := []Hash{EmptyRoot()}
	for i := 0; i < max; i++ {
		h := LeafHash([]byte{byte(i), byte(i >> 8), 0xa5})
		leaves = append(leaves, h)
		tr.AppendLeafHash(h)
		b.AppendLeafHash(h)
		r, err := tr.Root(uint64(i + 1))
		if err != nil {
			t.Fatal(err)
		}
		if n := naiveRoot(leaves); r != n || b.Root() != n {
			t.Fatalf("size %d: tree root %x, builder root %x, naive %x", i+1, r, b.Root(), n)
		}
		roots = append(roots, r)
	}
	for n := uint64(1); n <= max; n++ {
		for m := uint64(0); m < n; m++ {
			p, err := InclusionProof(&tr, m, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(leaves[m], m, n, p, roots[n]); err != nil {
				t.Fatalf("inclusion(%d, %d): %v", m, n, err)
			}
			if len(p) > 0 {
				q := append([]Hash(nil), p...)
				q[len(q)/2][3] ^= 1
				if VerifyInclusion(leaves[m], m, n, q, roots[n]) == nil {
					t.Fatalf("inclusion(%d, %d): altered proof accepted", m, n)
				}
				if VerifyInclusion(leaves[m], m, n, p[:len(p)-1], roots[n]) == nil {
					t.Fatalf("inclusion(%d, %d): short proof accepted", m, n)
				}
			}
			if VerifyInclusion(leaves[m], m, n, append(p, roots[0]), roots[n]) == nil {
				t.Fatalf("inclusion(%d, %d): long proof accepted", m, n)
			}
			if m+1 < n && VerifyInclusion(leaves[m], m+1, n, p, roots[n]) == nil && leaves[m] != leaves[m+1] {
				t.Fatalf("inclusion(%d, %d): accepted at index %d", m, n, m+1)
			}
		}
		for m := uint64(1); m <= n; m++ {
			p, err := ConsistencyProof(&tr, m, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(m, n, roots[m], roots[n], p); err != nil {
				t.Fatalf("consistency(%d, %d): %v", m, n, err)
			}
			if m == n {
				continue
			}
			for i := range p {
				q := append([]Hash(nil), p...)
				q[i][0] ^= 0x80
				if VerifyConsistency(m, n, roots[m], roots[n], q) == nil {
					t.Fatalf("consistency(%d, %d): hash %d altered, accepted", m, n, i)
				}
			}
			if VerifyConsistency(m, n, roots[m], roots[n], p[:len(p)-1]) == nil {
				t.Fatalf("consistency(%d, %d): short proof accepted", m, n)
			}
			if VerifyConsistency(m, n, roots[m], roots[n], append(p, roots[1])) == nil {
				t.Fatalf("consistency(%d, %d): long proof accepted", m, n)
			}
			if VerifyConsistency(m, n, roots[m-1], roots[n], p) == nil {
				t.Fatalf("consistency(%d, %d): wrong old root accepted", m, n)
			}
		}
	}
}

func TestInclusionOutOfRange(t *testing.T) {
	var tr Tree
	tr.AppendLeaf(nil)
	if _, err := InclusionProof(&tr, 1, 1); err == nil {
		t.Error("inclusion proof for index == size succeeded")
	}
	if _, err := InclusionProof(&tr, 0, 2); err == nil {
		t.Error("inclusion proof beyond the tree succeeded")
	}
	if err := VerifyInclusion(LeafHash(nil), 1, 1, nil, LeafHash(nil)); err == nil {
		t.Error("VerifyInclusion with index == size succeeded")
	}
}

// FuzzVerify feeds arbitrary proofs to the verifiers: they must never
// panic, and must accept only the true proof for a small known tree.
func FuzzVerify(f *testing.F) {
	var tr Tree
	for i := 0; i < 13; i++ {
		tr.AppendLeaf([]byte{byte(i)})
	}
	f.Add(uint64(3), uint64(13), []byte{})
	f.Add(uint64(0), uint64(1), make([]byte, 64))
	p, _ := ConsistencyProof(&tr, 5, 13)
	var raw []byte
	for _, h := range p {
		raw = append(raw, h[:]...)
	}
	f.Add(uint64(5), uint64(13), raw)
	f.Fuzz(func(t *testing.T, m, n uint64, raw []byte) {
		var proof []Hash
		for len(raw) >= HashSize {
			proof = append(proof, Hash(raw[:HashSize]))
			raw = raw[HashSize:]
		}
		m, n = m%20, n%20
		if n > 13 || m > n {
			_ = VerifyConsistency(m, n, Hash{}, Hash{}, proof)
			_ = VerifyInclusion(Hash{}, m, n, proof, Hash{})
			return
		}
		rn, _ := tr.Root(n)
		if m > 0 {
			rm, _ := tr.Root(m)
			if VerifyConsistency(m, n, rm, rn, proof) == nil {
				want, _ := ConsistencyProof(&tr, m, n)
				if len(want) != len(proof) {
					t.Fatalf("consistency %d->%d accepted a %d-hash proof, true one has %d", m, n, len(proof), len(want))
				}
			}
		}
		if m < n {
			leaf, _ := tr.Node(0, m)
			if VerifyInclusion(leaf, m, n, proof, rn) == nil {
				want, _ := InclusionProof(&tr, m, n)
				for i := range want {
					if want[i] != proof[i] {
						t.Fatalf("inclusion %d in %d accepted a wrong proof", m, n)
					}
				}
			}
		}
	})
}
