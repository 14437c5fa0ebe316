package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// byteToRune is GPT-2's reversible byte-to-Unicode table (openai/gpt-2
// encoder.py, bytes_to_unicode): printable Latin-1 bytes map to themselves,
// the other 68 bytes to U+0100.. in byte order, so that every byte string
// becomes a string of visible characters without whitespace.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var t [256]rune
	inv := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
		inv[t[b]] = byte(b)
	}
	return t, inv
}()

// byteLevelString maps raw bytes to their byte-level characters.
func byteLevelString(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteToRune[s[i]])
	}
	return b.String()
}

// merge is the result of merging a pair of tokens.
type merge struct {
	rank int32 // position in the merges list: lower merges first
	id   int32 // id of the merged token
}

// bpe is the BPE model of tokenizer.json (Sennrich et al. 2016, "Neural
// Machine Translation of Rare Words with Subword Units", §3.1): a word starts
// as a sequence of characters and the adjacent pair with the lowest merge rank
// is merged until no pair has a rank. Ties go to the leftmost pair.
type bpe struct {
	merges       *mergeTable
	byteFallback bool
	byteIDs      [256]int32 // <0xNN> token ids when byteFallback (-1 if absent)
	unk          int32      // unk token id or -1
	fuseUnk      bool
	ignoreMerges bool
	// byteLevel: words are raw bytes whose initial symbols are the ids of the
	// byte-level characters; otherwise words are text split into runes.
	byteLevel bool
	byteSym   [256]int32 // byte-level character ids when byteLevel (-1 if absent)

	vocab map[string]int32

	cacheMu sync.RWMutex
	cache   map[string][]int32
}

const (
	maxCachedWord = 256
	maxCacheSize  = 1 << 16
)

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// runeID returns the id of the one-character token s, or -1.
func (m *bpe) runeID(s string) int32 {
	if id, ok := m.vocab[s]; ok {
		return id
	}
	return -1
}

// encodeWord appends the ids of one pre-token. For the byte-level model word
// holds raw bytes; otherwise it is text.
func (m *bpe) encodeWord(dst []int, word string) []int {
	if word == "" {
		return dst
	}
	if len(word) <= maxCachedWord {
		m.cacheMu.RLock()
		ids, ok := m.cache[word]
		m.cacheMu.RUnlock()
		if ok {
			for _, id := range ids {
				dst = append(dst, int(id))
			}
			return dst
		}
	}
	ids := m.bpeWord(word)
	if len(word) <= maxCachedWord {
		m.cacheMu.Lock()
		if len(m.cache) >= maxCacheSize {
			clear(m.cache)
		}
		m.cache[strings.Clone(word)] = ids // a copy: word points into the caller's text
		m.cacheMu.Unlock()
	}
	for _, id := range ids {
		dst = append(dst, int(id))
	}
	return dst
}

// symbol is a node of the doubly linked list of a word being merged.
type symbol struct {
	id         int32 // -1: a character outside the vocabulary
	start, end int32 // byte range in the word
	prev, next int32 // -1 at the ends
}

func (m *bpe) bpeWord(word string) []int32 {
	if m.ignoreMerges {
		key := word
		if m.byteLevel {
			key = byteLevelString(word)
		}
		if id, ok := m.vocab[key]; ok {
			return []int32{id}
		}
	}
	syms := make([]symbol, 0, len(word))
	if m.byteLevel {
		for i := 0; i < len(word); i++ {
			syms = append(syms, symbol{id: m.byteSym[word[i]], start: int32(i), end: int32(i + 1)})
		}
	} else {
		for i := 0; i < len(word); {
			_, w := utf8.DecodeRuneInString(word[i:])
			syms = append(syms, symbol{id: m.runeID(word[i : i+w]), start: int32(i), end: int32(i + w)})
			i += w
		}
	}
	for i := range syms {
		syms[i].prev = int32(i - 1)
		syms[i].next = int32(i + 1)
	}
	syms[len(syms)-1].next = -1
	if len(syms) <= 24 {
		m.mergeScan(syms)
	} else {
		m.mergeHeap(syms)
	}
	return m.emit(word, syms)
}

// mergeScan merges by repeatedly scanning for the lowest-ranked pair; for
// short words this beats a heap. The rank of the pair starting at each symbol
// is kept in rank/mid, so a merge costs two map lookups.
func (m *bpe) mergeScan(syms []symbol) {
	var rankBuf, midBuf [24]int32
	rank, mid := rankBuf[:0], midBuf[:0]
	if len(syms) > len(rankBuf) {
		rank, mid = make([]int32, 0, len(syms)), make([]int32, 0, len(syms))
	}
	rank, mid = rank[:len(syms)], mid[:len(syms)]
	look := func(i int32) {
		rank[i] = -1
		j := syms[i].next
		if j == -1 || syms[i].id < 0 || syms[j].id < 0 {
			return
		}
		if mg, ok := m.merges.get(pairKey(syms[i].id, syms[j].id)); ok {
			rank[i], mid[i] = mg.rank, mg.id
		}
	}
	for i := range syms {
		look(int32(i))
	}
	for {
		best := int32(-1)
		for i := int32(0); i != -1; i = syms[i].next {
			if r := rank[i]; r >= 0 && (best < 0 || r < rank[best]) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		joinSymbols(syms, best, mid[best])
		look(best)
		if p := syms[best].prev; p != -1 {
			look(p)
		}
	}
}

// joinSymbols merges symbol i with its successor into a symbol with id.
func joinSymbols(syms []symbol, i, id int32) {
	j := syms[i].next
	syms[i].id = id
	syms[i].end = syms[j].end
	syms[i].next = syms[j].next
	if n := syms[j].next; n != -1 {
		syms[n].prev = i
	}
	syms[j].id = -2 // dead
}

// candidate is a possible merge of symbol pos with its successor.
type candidate struct {
	rank        int32
	pos         int32
	left, right int32 // ids when the candidate was pushed, to detect stale entries
	id          int32
}

func (c candidate) less(d candidate) bool {
	return c.rank < d.rank || (c.rank == d.rank && c.pos < d.pos)
}

// mergeHeap is mergeScan with a binary min-heap of candidates ordered by
// (rank, position), for long words.
func (m *bpe) mergeHeap(syms []symbol) {
	h := make([]candidate, 0, len(syms))
	push := func(i int32) {
		j := syms[i].next
		if j == -1 || syms[i].id < 0 || syms[j].id < 0 {
			return
		}
		mg, ok := m.merges.get(pairKey(syms[i].id, syms[j].id))
		if !ok {
			return
		}
		h = append(h, candidate{rank: mg.rank, pos: i, left: syms[i].id, right: syms[j].id, id: mg.id})
		for k := len(h) - 1; k > 0; {
			p := (k - 1) / 2
			if !h[k].less(h[p]) {
				break
			}
			h[k], h[p] = h[p], h[k]
			k = p
		}
	}
	pop := func() candidate {
		top := h[0]
		n := len(h) - 1
		h[0] = h[n]
		h = h[:n]
		for k := 0; ; {
			l, r, s := 2*k+1, 2*k+2, k
			if l < n && h[l].less(h[s]) {
				s = l
			}
			if r < n && h[r].less(h[s]) {
				s = r
			}
			if s == k {
				break
			}
			h[k], h[s] = h[s], h[k]
			k = s
		}
		return top
	}
	for i := range syms {
		push(int32(i))
	}
	for len(h) > 0 {
		c := pop()
		i := c.pos
		j := syms[i].next
		if syms[i].id != c.left || j == -1 || syms[j].id != c.right {
			continue // stale: one side changed since the candidate was pushed
		}
		joinSymbols(syms, i, c.id)
		if p := syms[i].prev; p != -1 {
			push(p)
		}
		push(i)
	}
}

// emit converts the merged symbols to ids, applying byte fallback and the
// unknown token to characters outside the vocabulary.
func (m *bpe) emit(word string, syms []symbol) []int32 {
	out := make([]int32, 0, len(syms))
	lastUnk := false
	for i := int32(0); i != -1; i = syms[i].next {
		s := syms[i]
		if s.id >= 0 {
			out = append(out, s.id)
			lastUnk = false
			continue
		}
		piece := word[s.start:s.end]
		if m.byteFallback {
			ok := true
			for k := 0; k < len(piece); k++ {
				if m.byteIDs[piece[k]] < 0 {
					ok = false
					break
				}
			}
			if ok {
				for k := 0; k < len(piece); k++ {
					out = append(out, m.byteIDs[piece[k]])
				}
				lastUnk = false
				continue
			}
		}
		if m.unk < 0 {
			// Unreachable: Parse requires every byte of a byte-level
			// vocabulary, and complete byte fallback or an unk token
			// otherwise.
			continue
		}
		if m.fuseUnk && lastUnk {
			continue
		}
		out = append(out, m.unk)
		lastUnk = true
	}
	return out
}

// validateByteLevel checks that every byte has a token, so that byte-level
// encoding can represent any input.
func (m *bpe) validateByteLevel() error {
	for b := 0; b < 256; b++ {
		if m.byteSym[b] < 0 {
			return fmt.Errorf("byte-level vocabulary has no token for byte 0x%02X (character %q)", b, byteToRune[b])
		}
	}
	return nil
}
