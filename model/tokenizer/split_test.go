package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplitPatterns(t *testing.T) {
	llama3 := knownPatterns[`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`]
	qwen2 := knownPatterns[`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`]
	// Expected pieces worked out by hand from the regular expressions.
	tests := []struct {
		p    *splitPattern
		in   string
		want []string
	}{
		{gpt2Pattern, "Hello world", []string{"Hello", " world"}},
		{gpt2Pattern, "I'm here", []string{"I", "'m", " here"}},
		{gpt2Pattern, "I'M", []string{"I", "'", "M"}}, // case-sensitive
		{gpt2Pattern, "a   b", []string{"a", "  ", " b"}},
		{gpt2Pattern, "a   ", []string{"a", "   "}},
		{gpt2Pattern, " 12345 x", []string{" 12345", " x"}},
		{gpt2Pattern, "x!!  ?", []string{"x", "!!", " ", " ?"}},
		{gpt2Pattern, "\n\nab", []string{"\n", "\n", "ab"}},
		{llama3, "I'M", []string{"I", "'M"}},
		{llama3, "1234567", []string{"123", "456", "7"}},
		{llama3, "\thello", []string{"\thello"}},
		{llama3, "'hello", []string{"'hello"}},
		{llama3, "a\n\n  b", []string{"a", "\n\n", " ", " b"}},
		{llama3, "a  \n  \n b", []string{"a", "  \n  \n", " b"}},
		{llama3, "x;\n\ny", []string{"x", ";\n\n", "y"}},
		{llama3, "x ;;\r\n", []string{"x", " ;;\r\n"}},
		{llama3, "ab   ", []string{"ab", "   "}},
		{llama3, "ab \t cd", []string{"ab", " \t", " cd"}},
		{qwen2, "1234", []string{"1", "2", "3", "4"}},
		{qwen2, "x'ſ", []string{"x", "'ſ"}}, // U+017F folds to s
		// U+0085 is White_Space (so the Llama 3 \s alternatives take it);
		// U+FEFF is not (it is punctuation-like "other").
		{qwen2, "a\u0085\u0085b", []string{"a", "\u0085", "\u0085b"}},
		{qwen2, "a\ufeffb", []string{"a", "\ufeffb"}},
		{qwen2, "a \ufeff", []string{"a", " \ufeff"}},
		// Invalid UTF-8 bytes are symbols (U+FFFD); pieces keep the raw bytes.
		{qwen2, "a\xff\xfeb", []string{"a", "\xff\xfe", "b"}},
		{qwen2, "", nil},
	}
	for _, tc := range tests {
		got := tc.p.split(nil, tc.in)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s split(%q) = %q, want %q", tc.p.name, tc.in, got, tc.want)
		}
	}
}

func TestUnknownPattern(t *testing.T) {
	if _, err := lookupPattern(`\w+|\s+`); err == nil || !strings.Contains(err.Error(), "unsupported split regex") {
		t.Errorf("err = %v", err)
	}
}

// TestSplitPartition: for any input, the pieces are non-empty and
// concatenate to the input.
func TestSplitPartition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "é", "中", "1", "٣", " ", "  ", "\t", "\n", "\r", "'", "s", "'S", "!", "\u00a0", "\u0085", "\ufeff", "😀", "\u200d", "\xff"}
	for _, p := range knownPatterns {
		for n := 0; n < 2000; n++ {
			var b strings.Builder
			for k := r.IntN(12); k >= 0; k-- {
				b.WriteString(alphabet[r.IntN(len(alphabet))])
			}
			s := b.String()
			pieces := p.split(nil, s)
			for _, pc := range pieces {
				if pc == "" {
					t.Fatalf("%s: empty piece in split(%q)", p.name, s)
				}
			}
			if strings.Join(pieces, "") != s {
				t.Fatalf("%s: split(%q) = %q does not partition the input", p.name, s, pieces)
			}
		}
	}
}

// TestMergeHeapMatchesScan: the heap used for long words and the scan used
// for short ones merge identically.
func TestMergeHeapMatchesScan(t *testing.T) {
	tok := fixture(t, "qwen3")
	m := tok.model
	r := rand.New(rand.NewPCG(3, 4))
	words := []string{"internationalization", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ababababababababababababab"}
	for n := 0; n < 300; n++ {
		var b strings.Builder
		for k := 2 + r.IntN(60); k > 0; k-- {
			b.WriteByte("etaoinshrdlu"[r.IntN(12)])
		}
		words = append(words, b.String())
	}
	for _, w := range words {
		mk := func() []symbol {
			syms := make([]symbol, len(w))
			for i := range syms {
				syms[i] = symbol{id: m.byteSym[w[i]], start: int32(i), end: int32(i + 1), prev: int32(i - 1), next: int32(i + 1)}
			}
			syms[len(syms)-1].next = -1
			return syms
		}
		a, b := mk(), mk()
		m.mergeScan(a)
		m.mergeHeap(b)
		if ea, eb := m.emit(w, a), m.emit(w, b); !slices.Equal(ea, eb) {
			t.Fatalf("word %q: scan %v, heap %v", w, ea, eb)
		}
	}
}

func TestLossyUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"\xe4\xb8", "\ufffd"},                 // truncated 3-byte sequence: one maximal subpart
		{"\xe4\xb8a", "\ufffda"},               // same, followed by ASCII
		{"\xff\xfe", "\ufffd\ufffd"},           // never-valid bytes: one each
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"}, // surrogate: ED A0 is not a valid prefix
		{"\xf0\x9f\x98", "\ufffd"},             // truncated emoji
		{"\xf0\x9f\x98\x80", "😀"},
		{"\xc0\xaf", "\ufffd\ufffd"}, // overlong
	}
	for _, tc := range tests {
		if got := lossyUTF8([]byte(tc.in)); got != tc.want {
			t.Errorf("lossyUTF8(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(lossyUTF8([]byte(tc.in))) {
			t.Errorf("lossyUTF8(%q) not valid", tc.in)
		}
	}
}

func TestDecodeEdgeCases(t *testing.T) {
	q := fixture(t, "qwen3")
	ids := q.Encode("\U0002A6A5", false) // a rare CJK extension B character
	if len(ids) < 2 {
		t.Fatalf("character is one token %v; need a multi-token character for this test", ids)
	}
	if got := q.Decode(ids[:1], false); got != "\ufffd" {
		t.Errorf("Decode(first token of a 4-byte character) = %q, want U+FFFD", got)
	}
	if got := q.Decode([]int{-1, 1 << 30, 9707}, false); got != "Hello" {
		t.Errorf("Decode with out-of-range ids = %q, want %q", got, "Hello")
	}
	if got := q.Decode(nil, false); got != "" {
		t.Errorf("Decode(nil) = %q", got)
	}

	l := fixture(t, "mistral")
	// Byte fallback: a character outside the vocabulary becomes <0xNN> tokens.
	ids = l.Encode("\U0001F9EC", false) // DNA, not in Mistral's vocabulary
	want := []string{"▁", "<0xF0>", "<0x9F>", "<0xA7>", "<0xAC>"}
	var got []string
	for _, id := range ids {
		s, _ := l.Token(id)
		got = append(got, s)
	}
	if !slices.Equal(got, want) {
		t.Errorf("mistral tokens of DNA emoji = %q, want %q", got, want)
	}
	// Invalid byte runs decode to one U+FFFD per byte (tokenizers' ByteFallback).
	f0, _ := l.TokenID("<0xF0>")
	x9f, _ := l.TokenID("<0x9F>")
	hello := l.Encode("hi", false)
	if got := l.Decode(append([]int{f0, x9f}, hello...), false); got != "\ufffd\ufffd hi" {
		t.Errorf("mistral Decode(<0xF0><0x9F>▁hi) = %q", got)
	}
	// Invalid UTF-8 input falls back to byte tokens and comes back as U+FFFD.
	if got := l.Decode(l.Encode("a\xffb", false), false); got != "a\ufffdb" {
		t.Errorf("mistral round trip of invalid UTF-8 = %q", got)
	}
	// ... while a real U+FFFD, which Mistral has as a token, stays one token
	// after an invalid byte was seen.
	if got := l.Encode("\ufffd", false); !slices.Equal(got, []int{28705, 29137}) {
		t.Errorf("mistral Encode(U+FFFD) = %v, want [28705 29137]", got)
	}
	// Byte-level keeps even invalid UTF-8 bytes exactly (before the lossy
	// conversion of Decode).
	tr := fixture(t, "trained")
	if got := tr.Decode(tr.Encode("a\xffb", false), false); got != "a\ufffdb" {
		t.Errorf("trained round trip of invalid UTF-8 = %q", got)
	}
}

// TestSplitBehaviors: the examples of SplitDelimiterBehavior in the
// tokenizers documentation, splitting "the-final--countdown" on "-".
func TestSplitBehaviors(t *testing.T) {
	const in = "the-final--countdown"
	tests := map[string][]string{
		"Removed":            {"the", "final", "countdown"},
		"Isolated":           {"the", "-", "final", "-", "-", "countdown"},
		"MergedWithPrevious": {"the-", "final-", "-", "countdown"},
		"MergedWithNext":     {"the", "-final", "-", "-countdown"},
		"Contiguous":         {"the", "-", "final", "--", "countdown"},
	}
	for behavior, want := range tests {
		p := &splitPreTok{literal: "-", behavior: behavior}
		if got := p.preTokenize(nil, in, true); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", behavior, got, want)
		}
	}
	// invert: the pattern marks the pieces to keep.
	p := &splitPreTok{literal: "-", behavior: "Removed", invert: true}
	if got := p.preTokenize(nil, in, true); !slices.Equal(got, []string{"-", "-", "-"}) {
		t.Errorf("inverted Removed: %q", got)
	}
}

func TestMetaspace(t *testing.T) {
	tests := []struct {
		p     metaspacePreTok
		first bool
		in    string
		want  []string
	}{
		{metaspacePreTok{"▁", "always", true}, false, "Hey  friend", []string{"▁Hey", "▁", "▁friend"}},
		{metaspacePreTok{"▁", "always", false}, false, "Hey  friend", []string{"▁Hey▁▁friend"}},
		{metaspacePreTok{"▁", "first", true}, false, "Hey friend", []string{"Hey", "▁friend"}},
		{metaspacePreTok{"▁", "first", true}, true, "Hey friend", []string{"▁Hey", "▁friend"}},
		{metaspacePreTok{"▁", "never", true}, true, " Hey", []string{"▁Hey"}},
		{metaspacePreTok{"▁", "always", true}, true, "▁x", []string{"▁x"}},
	}
	for _, tc := range tests {
		if got := tc.p.preTokenize(nil, tc.in, tc.first); !slices.Equal(got, tc.want) {
			t.Errorf("%+v first=%v %q: %q, want %q", tc.p, tc.first, tc.in, got, tc.want)
		}
	}
}

func TestMergeTable(t *testing.T) {
	tab := newMergeTable(1000)
	ref := make(map[uint64]merge)
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 1000; i++ {
		k := pairKey(int32(r.IntN(64)), int32(r.IntN(64))) // many repeats, and key 0
		m := merge{rank: int32(i), id: int32(r.IntN(1 << 20))}
		_, dup := ref[k]
		if added := tab.insert(k, m); added == dup {
			t.Fatalf("insert(%x) added=%v, already present=%v", k, added, dup)
		}
		if !dup {
			ref[k] = m
		}
	}
	for a := int32(0); a < 70; a++ {
		for b := int32(0); b < 70; b++ {
			k := pairKey(a, b)
			got, ok := tab.get(k)
			want, wok := ref[k]
			if ok != wok || got != want {
				t.Fatalf("get(%d,%d) = %v,%v; want %v,%v", a, b, got, ok, want, wok)
			}
		}
	}
	n := 0
	tab.each(func(uint64, merge) { n++ })
	if n != len(ref) || tab.n != len(ref) {
		t.Errorf("each saw %d entries, n=%d, want %d", n, tab.n, len(ref))
	}
}

func TestMetaspaceDecoder(t *testing.T) {
	d := metaspaceDecoder{replacement: "▁", stripFirst: true}
	if got := d.decodeChain([]string{"▁Hey", "▁friend!"}); !slices.Equal(got, []string{"Hey", " friend!"}) {
		t.Errorf("decodeChain = %q", got)
	}
	if got := d.decodeChain([]string{"▁▁a▁b", "▁▁"}); !slices.Equal(got, []string{"ab", "  "}) {
		t.Errorf("decodeChain, replacement inside the first token = %q", got)
	}
	d.stripFirst = false
	if got := d.decodeChain([]string{"▁Hey"}); !slices.Equal(got, []string{" Hey"}) {
		t.Errorf("prepend_scheme never: %q", got)
	}
}

// TestRustVectors: the examples in the unit tests of the Rust tokenizers
// library (pre_tokenizers/digits.rs, pre_tokenizers/metaspace.rs,
// decoders/byte_fallback.rs).
func TestRustVectors(t *testing.T) {
	if got := (digitsPreTok{false}).preTokenize(nil, "Hey 123 friend!", true); !slices.Equal(got, []string{"Hey ", "123", " friend!"}) {
		t.Errorf("Digits: %q", got)
	}
	if got := (digitsPreTok{true}).preTokenize(nil, "Hey 123 friend!", true); !slices.Equal(got, []string{"Hey ", "1", "2", "3", " friend!"}) {
		t.Errorf("Digits individual: %q", got)
	}
	ms := metaspacePreTok{"▁", "always", true}
	if got := ms.preTokenize(nil, "Hey   friend!", true); !slices.Equal(got, []string{"▁Hey", "▁", "▁", "▁friend!"}) {
		t.Errorf("Metaspace multiple spaces: %q", got)
	}
	bf := byteFallbackDecoder{}
	for _, tc := range []struct{ in, want []string }{
		{[]string{"Hey", "friend!"}, []string{"Hey", "friend!"}},
		{[]string{"<0x61>"}, []string{"a"}},
		{[]string{"<0xE5>"}, []string{"�"}},
		{[]string{"<0xE5>", "<0x8f>"}, []string{"��"}}, // Rust: two "�" tokens; joined the same
		{[]string{"<0xE5>", "<0x8f>", "<0xab>"}, []string{"叫"}},
		{[]string{"<0xE5>", "<0x8f>", "<0xab>", "a"}, []string{"叫", "a"}},
		{[]string{"<0xE5>", "<0x8f>", "a"}, []string{"��", "a"}},
	} {
		if got := bf.decodeChain(tc.in); strings.Join(got, "") != strings.Join(tc.want, "") {
			t.Errorf("ByteFallback(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
