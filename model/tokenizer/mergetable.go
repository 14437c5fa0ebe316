package tokenizer

import "math/bits"

// mergeTable maps a pair of token ids to its merge: an open-addressing hash
// table with linear probing and Fibonacci hashing. Lookups are the inner
// loop of BPE and, for a large vocabulary, mostly cache misses; one probe
// sequence in a flat array costs fewer of them than a general map.
type mergeTable struct {
	slots []mergeSlot
	shift uint
	n     int
}

// mergeSlot is 16 bytes, four to a cache line.
type mergeSlot struct {
	key   uint64 // left id << 32 | right id
	rank1 int32  // rank + 1; 0 marks an empty slot
	id    int32
}

func newMergeTable(n int) *mergeTable {
	size := 1 << bits.Len(uint(n+n/2+8)) // load factor at most 2/3
	return &mergeTable{slots: make([]mergeSlot, size), shift: uint(64 - bits.Len(uint(size-1)))}
}

func (t *mergeTable) index(key uint64) int {
	return int((key * 0x9E3779B97F4A7C15) >> t.shift) // Knuth, TAOCP vol. 3, §6.4 (multiplicative hashing)
}

// insert adds key unless present; it reports whether it was added.
func (t *mergeTable) insert(key uint64, m merge) bool {
	mask := len(t.slots) - 1
	for i := t.index(key); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.rank1 == 0 {
			*s = mergeSlot{key: key, rank1: m.rank + 1, id: m.id}
			t.n++
			return true
		}
		if s.key == key {
			return false
		}
	}
}

func (t *mergeTable) get(key uint64) (merge, bool) {
	mask := len(t.slots) - 1
	for i := t.index(key); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.rank1 == 0 {
			return merge{}, false
		}
		if s.key == key {
			return merge{rank: s.rank1 - 1, id: s.id}, true
		}
	}
}

// each calls f for every entry, in no particular order.
func (t *mergeTable) each(f func(key uint64, m merge)) {
	for _, s := range t.slots {
		if s.rank1 != 0 {
			f(s.key, merge{rank: s.rank1 - 1, id: s.id})
		}
	}
}
