package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// EndOfText is the one special token of tokenizers made by
// [TrainByteLevelBPE]; it takes the last id.
const EndOfText = "<|endoftext|>"

// TrainByteLevelBPE learns a GPT-2-style byte-level BPE tokenizer from
// corpus and returns it as tokenizer.json. The vocabulary has exactly
// vocabSize entries: the 256 byte tokens, vocabSize-257 learned merges and
// EndOfText.
//
// Training (Sennrich et al. 2016, §3.1, on bytes as in GPT-2): the corpus is
// cut into pre-tokens with GPT-2's pattern; starting from single bytes, the
// most frequent adjacent pair (ties: the pair whose tokens have the smaller
// ids) is merged into a new token, until the vocabulary is full. A pair must
// occur at least twice to be merged; a corpus too small to fill the
// vocabulary is an error. The output is a deterministic function of corpus
// and vocabSize.
func TrainByteLevelBPE(corpus []string, vocabSize int) ([]byte, error) {
	if vocabSize < 257 {
		return nil, fmt.Errorf("tokenizer: vocabulary size %d is too small: need 256 byte tokens and %s", vocabSize, EndOfText)
	}
	// Word frequencies.
	counts := make(map[string]int)
	var pieces []string
	for _, doc := range corpus {
		pieces = gpt2Pattern.split(pieces[:0], doc)
		for _, p := range pieces {
			counts[p]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type word struct {
		syms  []int32
		count int
	}
	words := make([]word, len(keys))
	for i, k := range keys {
		syms := make([]int32, len(k))
		for j := 0; j < len(k); j++ {
			syms[j] = int32(k[j]) // ids 0..255 are the bytes in order
		}
		words[i] = word{syms, counts[k]}
	}

	// Token strings in GPT-2's byte-level characters.
	tokens := make([]string, 256, vocabSize)
	for b := 0; b < 256; b++ {
		tokens[b] = string(byteToRune[b])
	}
	index := make(map[string]int32, vocabSize)
	for i, s := range tokens {
		index[s] = int32(i)
	}

	pairCount := make(map[uint64]int)
	pairWords := make(map[uint64]map[int32]struct{})
	h := &pairHeap{}
	touched := make(map[uint64]struct{})
	// flush pushes the current count of every pair changed since the last
	// flush; older heap entries of those pairs become stale.
	flush := func() {
		for k := range touched {
			if c := pairCount[k]; c >= 2 {
				h.push(pairEntry{k, c})
			}
		}
		clear(touched)
	}
	addPairs := func(w int32, sign int) {
		s := words[w].syms
		for i := 0; i+1 < len(s); i++ {
			k := pairKey(s[i], s[i+1])
			pairCount[k] += sign * words[w].count
			if sign > 0 {
				ws := pairWords[k]
				if ws == nil {
					ws = make(map[int32]struct{})
					pairWords[k] = ws
				}
				ws[w] = struct{}{}
			}
			touched[k] = struct{}{}
		}
	}
	for w := range words {
		addPairs(int32(w), +1)
	}
	flush()

	var merges [][2]string
	for len(tokens) < vocabSize-1 {
		var best pairEntry
		found := false
		for h.len() > 0 {
			e := h.pop()
			if c := pairCount[e.key]; c == e.count && c >= 2 {
				best, found = e, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("tokenizer: corpus too small: learned %d of %d tokens (no pair occurs twice); use more text or a smaller vocabulary", len(tokens)+1, vocabSize)
		}
		a, b := int32(best.key>>32), int32(uint32(best.key))
		s := tokens[a] + tokens[b]
		id, ok := index[s]
		if !ok {
			id = int32(len(tokens))
			tokens = append(tokens, s)
			index[s] = id
		}
		merges = append(merges, [2]string{tokens[a], tokens[b]})
		affected := make([]int32, 0, len(pairWords[best.key]))
		for w := range pairWords[best.key] {
			affected = append(affected, w)
		}
		sort.Slice(affected, func(i, j int) bool { return affected[i] < affected[j] })
		delete(pairWords, best.key)
		for _, w := range affected {
			syms := words[w].syms
			has := false
			for i := 0; i+1 < len(syms); i++ {
				if syms[i] == a && syms[i+1] == b {
					has = true
					break
				}
			}
			if !has {
				continue
			}
			addPairs(w, -1)
			out := syms[:0]
			for i := 0; i < len(syms); i++ {
				if i+1 < len(syms) && syms[i] == a && syms[i+1] == b {
					out = append(out, id)
					i++
				} else {
					out = append(out, syms[i])
				}
			}
			words[w].syms = out
			addPairs(w, +1)
		}
		delete(pairCount, best.key)
		delete(touched, best.key)
		flush()
	}
	tokens = append(tokens, EndOfText)
	return marshalByteLevel(tokens, merges)
}

type pairEntry struct {
	key   uint64
	count int
}

// pairHeap is a max-heap by count, then by smaller pair key; entries go
// stale when counts change and are checked when popped.
type pairHeap struct{ e []pairEntry }

func (h *pairHeap) len() int { return len(h.e) }

func (p pairEntry) before(q pairEntry) bool {
	return p.count > q.count || (p.count == q.count && p.key < q.key)
}

func (h *pairHeap) push(x pairEntry) {
	h.e = append(h.e, x)
	for k := len(h.e) - 1; k > 0; {
		p := (k - 1) / 2
		if !h.e[k].before(h.e[p]) {
			break
		}
		h.e[k], h.e[p] = h.e[p], h.e[k]
		k = p
	}
}

func (h *pairHeap) pop() pairEntry {
	top := h.e[0]
	n := len(h.e) - 1
	h.e[0] = h.e[n]
	h.e = h.e[:n]
	for k := 0; ; {
		l, r, s := 2*k+1, 2*k+2, k
		if l < n && h.e[l].before(h.e[s]) {
			s = l
		}
		if r < n && h.e[r].before(h.e[s]) {
			s = r
		}
		if s == k {
			break
		}
		h.e[k], h.e[s] = h.e[s], h.e[k]
		k = s
	}
	return top
}

// marshalByteLevel writes a GPT-2-style tokenizer.json with the vocabulary in
// id order; the last token is the special EndOfText.
func marshalByteLevel(tokens []string, merges [][2]string) ([]byte, error) {
	var b bytes.Buffer
	str := func(s string) {
		enc, _ := json.Marshal(s)
		b.Write(enc)
	}
	eot := len(tokens) - 1
	fmt.Fprintf(&b, `{
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [
    {"id": %d, "content": %q, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
  "model": {
    "type": "BPE",
    "dropout": null,
    "unk_token": null,
    "continuing_subword_prefix": null,
    "end_of_word_suffix": null,
    "fuse_unk": false,
    "byte_fallback": false,
    "ignore_merges": false,
    "vocab": {`, eot, EndOfText)
	for i, t := range tokens {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n      ")
		str(t)
		fmt.Fprintf(&b, ": %d", i)
	}
	b.WriteString("\n    },\n    \"merges\": [")
	for i, m := range merges {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n      [")
		str(m[0])
		b.WriteString(", ")
		str(m[1])
		b.WriteString("]")
	}
	b.WriteString("\n    ]\n  }\n}\n")
	return b.Bytes(), nil
}
