package merkle

import (
	"fmt"
	"math/bits"
)

// Tree is an in-memory Merkle tree over a growing list of leaf hashes. It
// keeps every complete perfect-subtree hash, so proofs cost O(log n).
// The zero value is an empty tree.
type Tree struct {
	levels [][]Hash // levels[0] are the leaf hashes
}

// AppendLeafHash adds one leaf hash at index t.Size().
func (t *Tree) AppendLeafHash(h Hash) {
	if len(t.levels) == 0 {
		t.levels = append(t.levels, nil)
	}
	t.levels[0] = append(t.levels[0], h)
	for l := 0; len(t.levels[l])%2 == 0; l++ {
		n := len(t.levels[l])
		p := NodeHash(t.levels[l][n-2], t.levels[l][n-1])
		if l+1 == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		t.levels[l+1] = append(t.levels[l+1], p)
	}
}

// AppendLeaf adds LeafHash(data).
func (t *Tree) AppendLeaf(data []byte) { t.AppendLeafHash(LeafHash(data)) }

// Size returns the number of leaves.
func (t *Tree) Size() uint64 {
	if len(t.levels) == 0 {
		return 0
	}
	return uint64(len(t.levels[0]))
}

// Node implements [NodeSource].
func (t *Tree) Node(level uint, index uint64) (Hash, error) {
	if int(level) >= len(t.levels) || index >= uint64(len(t.levels[level])) {
		return Hash{}, fmt.Errorf("merkle: no node at level %d index %d in a tree of size %d", level, index, t.Size())
	}
	return t.levels[level][index], nil
}

// Root returns the root of the first size leaves (size <= t.Size()).
func (t *Tree) Root(size uint64) (Hash, error) {
	if size > t.Size() {
		return Hash{}, fmt.Errorf("merkle: root of size %d requested from a tree of size %d", size, t.Size())
	}
	return Root(t, size)
}

// Builder computes the root of a tree whose leaves arrive one at a time,
// keeping only O(log n) hashes: the roots of the perfect subtrees that make
// up the tree so far (a compact range). The zero value is an empty tree.
type Builder struct {
	size  uint64
	stack []Hash // perfect subtree roots, largest (leftmost) first
}

// AppendLeafHash adds one leaf hash.
func (b *Builder) AppendLeafHash(h Hash) {
	b.stack = append(b.stack, h)
	// Merge equal-sized neighbours: one merge per trailing one bit of size.
	for s := b.size; s&1 == 1; s >>= 1 {
		n := len(b.stack)
		b.stack[n-2] = NodeHash(b.stack[n-2], b.stack[n-1])
		b.stack = b.stack[:n-1]
	}
	b.size++
}

// Size returns the number of leaves added.
func (b *Builder) Size() uint64 { return b.size }

// Root returns MTH over all leaves added so far. The perfect subtrees are
// folded right to left, which is RFC 6962's split at the largest power of
// two below n applied recursively.
func (b *Builder) Root() Hash {
	if b.size == 0 {
		return EmptyRoot()
	}
	if len(b.stack) != bits.OnesCount64(b.size) {
		panic("merkle: builder stack out of step with its size")
	}
	r := b.stack[len(b.stack)-1]
	for i := len(b.stack) - 2; i >= 0; i-- {
		r = NodeHash(b.stack[i], r)
	}
	return r
}
