package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func addSeeds(f *testing.F) {
	for _, s := range []string{
		"", " ", "Hello, world!", "I'm here  \n\n\tand\r\nthere", "1234567890",
		"中文 日本語 한국어", "👨‍👩‍👧‍👦🇺🇸", "<|im_start|>user\nhi<|im_end|>", "<s>a</s>",
		"e\u0301", "\xff\xfe", "a\u0085b\ufeffc", "▁▁x", "<0x41>",
	} {
		f.Add(s)
	}
}

// FuzzEncodeByteLevel: Encode never panics, every id is in the vocabulary,
// and for valid UTF-8 Decode(Encode(s)) is the NFC form of s (Qwen3
// declares an NFC normalizer).
func FuzzEncodeByteLevel(f *testing.F) {
	addSeeds(f)
	tok := fixture(f, "qwen3")
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s, true)
		for _, id := range ids {
			if _, ok := tok.Token(id); !ok {
				t.Fatalf("Encode(%q) returned id %d outside the vocabulary", s, id)
			}
		}
		d := tok.Decode(ids, false)
		if !utf8.ValidString(d) {
			t.Fatalf("Decode returned invalid UTF-8 %q", d)
		}
		if utf8.ValidString(s) && d != norm.NFC.String(s) {
			t.Fatalf("Decode(Encode(%q)) = %q", s, d)
		}
	})
}

// FuzzEncodeGPT2: GPT-2 has no normalizer, so byte-level decoding is the
// exact inverse of encoding on valid UTF-8.
func FuzzEncodeGPT2(f *testing.F) {
	addSeeds(f)
	tok := fixture(f, "gpt2")
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s, false)
		if d := tok.Decode(ids, false); utf8.ValidString(s) && d != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, d)
		}
	})
}

// FuzzEncodeSentencePiece: the same for Mistral, where decoding is not an
// exact inverse (the decoder strips one leading space), so only the
// invariants that hold are checked.
func FuzzEncodeSentencePiece(f *testing.F) {
	addSeeds(f)
	tok := fixture(f, "mistral")
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s, true)
		if len(ids) == 0 || ids[0] != 1 {
			t.Fatalf("Encode(%q, true) = %v does not start with BOS", s, ids)
		}
		for _, id := range ids {
			if _, ok := tok.Token(id); !ok {
				t.Fatalf("Encode(%q) returned id %d outside the vocabulary", s, id)
			}
		}
		d := tok.Decode(ids, true)
		if !utf8.ValidString(d) {
			t.Fatalf("Decode returned invalid UTF-8 %q", d)
		}
		// Without added tokens in the text, a string that does not start
		// with a space and has no ▁ comes back exactly.
		if utf8.ValidString(s) && !strings.HasPrefix(s, " ") && !strings.Contains(s, "▁") &&
			!strings.Contains(s, "<s>") && !strings.Contains(s, "</s>") && !strings.Contains(s, "<unk>") && d != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, d)
		}
	})
}

// FuzzParse: arbitrary bytes never make Parse panic; mutations of a valid
// file either fail with an *Error or give a tokenizer that encodes.
func FuzzParse(f *testing.F) {
	f.Add([]byte(tiny))
	f.Add([]byte(strings.Replace(tiny, `"split": true`, `"split": false`, 1)))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {}, "merges": []}}`))
	f.Add([]byte(`{"model": null}`))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			return
		}
		ids := tok.Encode("a b\xffc <s>", true)
		tok.Decode(ids, false)
		tok.Decode([]int{-1, 0, 1, 1 << 40}, true)
	})
}

// FuzzTrain: training on any corpus either fails cleanly or yields a
// tokenizer that round-trips its own corpus.
func FuzzTrain(f *testing.F) {
	f.Add("the cat sat on the mat; the cat ate the rat", 270)
	f.Add("aaaaaaaaaaaaaaaa", 260)
	f.Add("", 257)
	f.Fuzz(func(t *testing.T, text string, size int) {
		if size < 0 || size > 400 {
			return
		}
		data, err := TrainByteLevelBPE(strings.Split(text, "\n"), size)
		if err != nil {
			return
		}
		tok, err := Parse(data)
		if err != nil {
			t.Fatalf("trained tokenizer does not parse: %v", err)
		}
		if tok.VocabSize() != size {
			t.Fatalf("VocabSize = %d, want %d", tok.VocabSize(), size)
		}
		if utf8.ValidString(text) {
			if d := tok.Decode(tok.Encode(text, false), false); d != text {
				t.Fatalf("Decode(Encode(%q)) = %q", text, d)
			}
		}
	})
}
