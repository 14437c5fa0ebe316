package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tiny is a hand-made SentencePiece-style tokenizer (Metaspace
// pre-tokenizer, as in Mistral's tokenizer.json) small enough to work out
// expected ids by hand.
const tiny = `{
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true},
    {"id": 1, "content": "<s>", "special": true},
    {"id": 9, "content": "<x>", "lstrip": true, "rstrip": true, "special": true},
    {"id": 10, "content": "yo", "single_word": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "ignore_merges": false,
    "vocab": {"<unk>": 0, "<s>": 1, "▁": 2, "a": 3, "b": 4, "▁a": 5, "ab": 6, "▁ab": 7, "c": 8, "▁ba": 11},
    "merges": ["▁ a", "a b", "▁a b"]}
}`

func mustParse(t *testing.T, s string) *Tokenizer {
	t.Helper()
	tok, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTinyMetaspace(t *testing.T) {
	tok := mustParse(t, tiny)
	tests := []struct {
		in      string
		special bool
		want    []int
	}{
		{"ab ab", true, []int{1, 7, 7}},    // ▁a first (rank 0), then ▁a+b
		{"ab", false, []int{7}},            //
		{"xyz", false, []int{2, 0}},        // unknown characters fuse into one <unk>
		{"a <x> b", false, []int{5, 9, 4}}, // lstrip/rstrip eat the spaces; "b" is not first
		{"<x>ab", false, []int{9, 6}},      // prepend_scheme "first": no ▁ after a leading added token
		{"yo a", false, []int{10, 5}},      // single_word token on its own
		{"ayo", false, []int{5, 0}},        // ... but not inside a word
		{"_yo", false, []int{2, 0}},        // "_" is a word character (\w): no match
		{"½yo", false, []int{2, 0, 10}},    // "½" (No) is not: "▁½" then the token
		{"ba", false, []int{2, 4, 3}},      // no merge makes ▁ba
		{"", true, []int{1}},
	}
	for _, tc := range tests {
		if got := tok.Encode(tc.in, tc.special); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q, %v) = %v, want %v", tc.in, tc.special, got, tc.want)
		}
	}
	if got := tok.Decode([]int{1, 7, 7}, true); got != "ab ab" {
		t.Errorf("Decode = %q", got)
	}
	if got := tok.Decode([]int{1, 7, 7}, false); got != "<s> ab ab" {
		// Metaspace decoding turns ▁ into spaces; only the first token
		// loses its leading space, and "<s>" is that first token.
		t.Errorf("Decode keeping specials = %q", got)
	}
	if id, ok := tok.BOS(); !ok || id != 1 {
		t.Errorf("BOS = %d, %v", id, ok)
	}

	// ignore_merges: a word that is itself in the vocabulary is one token.
	im := mustParse(t, strings.Replace(tiny, `"ignore_merges": false`, `"ignore_merges": true`, 1))
	if got := im.Encode("ba", false); !slices.Equal(got, []int{11}) {
		t.Errorf("ignore_merges Encode(ba) = %v, want [11]", got)
	}
}

func TestNormalizedAddedToken(t *testing.T) {
	s := strings.Replace(tiny, `"normalizer": null`, `"normalizer": {"type": "Lowercase"}`, 1)
	s = strings.Replace(s, `{"id": 10, "content": "yo", "single_word": true}`, `{"id": 10, "content": "YO", "normalized": true}`, 1)
	tok := mustParse(t, s)
	if got := tok.Encode("aYob", false); !slices.Equal(got, []int{5, 10, 4}) {
		t.Errorf("Encode(aYob) = %v, want [5 10 4]", got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, old, new string
		want           string // substring of the error
	}{
		{"json", `"added_tokens"`, `"added_tokens`, "invalid JSON"},
		{"model type", `"type": "BPE"`, `"type": "WordPiece"`, `field model.type: unsupported: model type "WordPiece"`},
		{"merge format", `"▁a b"]`, `"▁a b c"]`, `field model.merges[2]: want "left right"`},
		{"merge pair", `"▁a b"]`, `["▁a"]]`, `field model.merges[2]: want a "left right" string or a [left, right] pair`},
		{"merge vocab", `"a b",`, `"a q",`, `field model.merges[1]: token "q" is not in model.vocab`},
		{"merge result", `"▁ a",`, `"▁ c",`, `field model.merges[0]: merged token "▁c" is not in model.vocab`},
		{"unk", `"unk_token": "<unk>"`, `"unk_token": "<nope>"`, `field model.unk_token: "<nope>" is not in model.vocab`},
		{"no unk", `"unk_token": "<unk>", `, ``, `field model: a BPE model without a ByteLevel pre-tokenizer needs unk_token or byte_fallback`},
		{"vocab dup", `"c": 8`, `"c": 7`, `field model.vocab: id 7 is used by both`},
		{"vocab neg", `"c": 8`, `"c": -8`, `field model.vocab: token "c" has id -8`},
		{"added id", `{"id": 9, "content": "<x>"`, `{"content": "<x>"`, `field added_tokens[2].id: missing or negative`},
		{"added content", `"content": "<x>"`, `"content": ""`, `field added_tokens[2].content: missing or empty`},
		{"normalizer", `"normalizer": null`, `"normalizer": {"type": "Precompiled"}`, `field normalizer.type: unsupported: normalizer "Precompiled"`},
		{"normalizer regex", `"normalizer": null`, `"normalizer": {"type": "Replace", "pattern": {"Regex": " +"}, "content": " "}`, `field normalizer.pattern.Regex: unsupported`},
		{"pretok", `"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}`, `"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}`, `field pre_tokenizer.pattern.Regex: unsupported: unsupported split regex "\\w+"`},
		{"prepend scheme", `"prepend_scheme": "first", "split": true}`, `"prepend_scheme": "sometimes", "split": true}`, `field pre_tokenizer.prepend_scheme: want always, first or never`},
		{"post special", `{"SpecialToken": {"id": "<s>", "type_id": 0}}`, `{"SpecialToken": {"id": "<bos>", "type_id": 0}}`, `field post_processor.single[0].SpecialToken.id: "<bos>" is not in post_processor.special_tokens`},
		{"post type", `"type": "TemplateProcessing"`, `"type": "Magic"`, `field post_processor.type: unsupported`},
		{"decoder", `"decoder": {"type": "Metaspace"`, `"decoder": {"type": "WordPiece"`, `field decoder.type: unsupported: decoder "WordPiece"`},
		{"missing type", `"decoder": {"type": "Metaspace",`, `"decoder": {`, `field decoder.type: missing or not a string`},
		{"field type", `"split": true}`, `"split": "yes"}`, `field pre_tokenizer.split:`},
	}
	for _, tc := range tests {
		if !strings.Contains(tiny, tc.old) {
			t.Fatalf("%s: %q not in the template", tc.name, tc.old)
		}
		_, err := Parse([]byte(strings.Replace(tiny, tc.old, tc.new, 1)))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %T is not *Error", tc.name, err)
		}
	}
	if _, err := Parse([]byte(`{"added_tokens": []}`)); err == nil || !strings.Contains(err.Error(), "field model: missing") {
		t.Errorf("no model: %v", err)
	}
}

func TestLoadErrorsNameFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokenizer.json")
	os.WriteFile(path, []byte(strings.Replace(tiny, `"a b",`, `"a q",`, 1)), 0o644)
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), "tokenizer: "+path+": field model.merges[1]:") {
		t.Errorf("Load error = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file error = %v", err)
	}
	// A broken tokenizer_config.json next to a good file is reported by name.
	os.WriteFile(path, []byte(tiny), 0o644)
	cfg := filepath.Join(dir, "tokenizer_config.json")
	os.WriteFile(cfg, []byte(`{"eos_token": "<nope>"}`), 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), cfg+": field eos_token: token \"<nope>\" is not in the vocabulary") {
		t.Errorf("config error = %v", err)
	}
	os.WriteFile(cfg, []byte(`{"eos_token": {"content": "<x>"}}`), 0o644)
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tok.EOS(); !ok || id != 9 {
		t.Errorf("EOS from config = %d, %v; want 9", id, ok)
	}
}

// TestDigitsByteLevel: SmolLM's pre-tokenizer, Digits(individual) then
// ByteLevel with GPT-2's pattern, on the trained fixture's vocabulary.
func TestDigitsByteLevel(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "trained_tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	old := `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`
	for _, individual := range []bool{true, false} {
		s := strings.Replace(string(data), old, `"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
			{"type": "Digits", "individual_digits": `+map[bool]string{true: "true", false: "false"}[individual]+`}, `+old[len(`"pre_tokenizer": `):]+`]}`, 1)
		if s == string(data) {
			t.Fatal("pre_tokenizer not found in the trained fixture")
		}
		tok := mustParse(t, s)
		seq := tok.preTok.(preTokSeq)
		got := seq.preTokenize(nil, "ab 123 x٣4½", true)
		want := []string{"ab", " ", "1", "2", "3", " x", "٣", "4", "½"}
		if !individual {
			want = []string{"ab", " ", "123", " x", "٣4½"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("individual=%v: pieces %q, want %q", individual, got, want)
		}
		if d := tok.Decode(tok.Encode("ab 123 x٣4½", false), false); d != "ab 123 x٣4½" {
			t.Errorf("round trip = %q", d)
		}
	}
}
