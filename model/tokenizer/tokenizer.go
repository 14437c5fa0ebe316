// Package tokenizer reads Hugging Face tokenizer.json files and encodes text
// to token ids and back, in pure Go.
//
// # Supported files
//
// The model must be BPE, in either of its two common flavours (plus SmolLM's
// Digits pre-tokenizer):
//
//   - byte-level BPE (GPT-2, Llama 3, Qwen2/Qwen3): a Split pre-tokenizer
//     with one of the known regular expressions followed by a ByteLevel
//     pre-tokenizer, merges given as "a b" strings or ["a", "b"] pairs,
//     optionally ignore_merges (Llama 3) and an NFC normalizer (Qwen);
//   - SentencePiece-style BPE with byte fallback (Llama 2, Mistral): the
//     Prepend("▁") + Replace(" " → "▁") normalizers or the Metaspace
//     pre-tokenizer, <0xNN> byte tokens, and the Replace / ByteFallback /
//     Fuse / Strip (or Metaspace) decoders.
//
// Added tokens are matched on the raw text before normalization (or on the
// normalized text for those marked "normalized"), honouring single_word,
// lstrip and rstrip; as in the Hugging Face libraries' default, text that
// contains "<|im_start|>" encodes to that control token. With addSpecial,
// the post_processor (TemplateProcessing, ByteLevel, Bert/RobertaProcessing)
// adds its special tokens, e.g. Llama's BOS.
//
// Anything else (WordPiece or Unigram models, unknown pre-tokenizer regular
// expressions, regex normalizers) is rejected by [Parse] with an [*Error]
// that names the JSON field.
//
// # Guarantees
//
// Encode produces the same ids as the Hugging Face tokenizers library for
// the supported files; the tests check this against the JavaScript port
// (transformers.js) on several hundred strings each for Qwen3, Llama 3,
// GPT-2, Mistral 7B (the Llama 2 scheme) and a tokenizer made by
// TrainByteLevelBPE. Where
// the two reference implementations disagree, this package follows the Rust
// library: \s in pre-tokenizer patterns is Unicode's White_Space property
// (U+0085 is whitespace, U+FEFF is not) and (?i:) uses simple case folding.
//
// For byte-level tokenizers, Decode(Encode(s)) == s for every valid UTF-8 s,
// up to the file's normalizer (Qwen's NFC, for instance).
// Encode never fails: input that is not valid UTF-8 is processed byte by
// byte (a byte-level vocabulary covers every byte; SentencePiece models fall
// back to <0xNN> tokens or <unk>). A Tokenizer is safe for concurrent use.
package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Error reports a tokenizer file that cannot be used: which file (empty for
// [Parse]), which JSON field, and what was wrong.
type Error struct {
	File  string // path given to Load, or ""
	Field string // JSON path of the offending field, e.g. "model.merges[12]"
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("tokenizer: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString("field ")
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrUnsupported is wrapped by errors about valid tokenizer.json features
// that this package does not implement.
var ErrUnsupported = errors.New("unsupported")

func fieldErr(field string, format string, args ...any) *Error {
	return &Error{Field: field, Err: fmt.Errorf(format, args...)}
}

func unsupported(field string, format string, args ...any) *Error {
	return &Error{Field: field, Err: fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))}
}

// Tokenizer encodes text to token ids and decodes ids to text.
type Tokenizer struct {
	model     *bpe
	norm      normalizer   // nil: none
	preTok    preTokenizer // nil: the whole section is one word
	post      *postProcessor
	dec       decoder // nil: tokens joined with spaces
	rawAdded  *trie   // added tokens matched before normalization
	normAdded *trie   // added tokens matched after normalization
	// The same without special tokens, for EncodeSplitSpecial.
	rawPlain, normPlain *trie
	tokens              []string
	present             []bool
	special             []bool
	vocab               map[string]int // model vocabulary plus added tokens
	bos, eos            int
	// bosFixed, eosFixed: set by the post-processor; tokenizer_config.json
	// does not override them.
	bosFixed, eosFixed bool
}

// Load reads a tokenizer.json file (optionally gzip-compressed). When a
// tokenizer_config.json lies in the same directory, its bos_token and
// eos_token name the BOS and EOS tokens.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = path
		}
		return nil, err
	}
	cfgPath := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	if cfg, err := os.ReadFile(cfgPath); err == nil {
		if err := t.applyConfig(cfg); err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.File = cfgPath
			}
			return nil, err
		}
	}
	return t, nil
}

// Parse reads the contents of a tokenizer.json file (optionally
// gzip-compressed).
func Parse(data []byte) (*Tokenizer, error) {
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, &Error{Err: fmt.Errorf("gzip: %w", err)}
		}
		data, err = io.ReadAll(zr)
		if err != nil {
			return nil, &Error{Err: fmt.Errorf("gzip: %w", err)}
		}
	}
	return parse(data)
}

// VocabSize returns one more than the largest token id, counting added
// tokens: the smallest embedding table that covers every id Encode returns.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// TokenID returns the id of a token of the vocabulary or an added token.
func (t *Tokenizer) TokenID(tok string) (int, bool) {
	id, ok := t.vocab[tok]
	return id, ok
}

// Token returns the string of token id as stored in the vocabulary (for
// byte-level models, in GPT-2's byte-to-character encoding).
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.tokens) || !t.present[id] {
		return "", false
	}
	return t.tokens[id], true
}

// IsSpecial reports whether id is an added token marked special.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}

// BOS returns the beginning-of-sequence token: the one the post-processor
// puts first, else the bos_token of tokenizer_config.json (with Load), else
// a special token with a well-known name ("<s>", "<|begin_of_text|>",
// "<bos>").
func (t *Tokenizer) BOS() (int, bool) { return t.bos, t.bos >= 0 }

// EOS returns the end-of-sequence token: the one the post-processor puts
// last, else the eos_token of tokenizer_config.json (with Load), else a
// special token with a well-known name ("</s>", "<|end_of_text|>",
// "<|endoftext|>", "<eos>").
func (t *Tokenizer) EOS() (int, bool) { return t.eos, t.eos >= 0 }

// Encode returns the token ids of text. With addSpecial the post-processor's
// special tokens are added (for Llama, the BOS token in front).
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	return t.encode(text, addSpecial, t.rawAdded, t.normAdded)
}

// EncodeSplitSpecial is Encode with special tokens in text treated as plain
// text (Hugging Face's split_special_tokens=True): "<|im_start|>" typed by a
// user becomes the ids of its characters, never the control token. Added
// tokens that are not special still match. Use it for untrusted text.
func (t *Tokenizer) EncodeSplitSpecial(text string, addSpecial bool) []int {
	return t.encode(text, addSpecial, t.rawPlain, t.normPlain)
}

func (t *Tokenizer) encode(text string, addSpecial bool, rawAdded, normAdded *trie) []int {
	ids := make([]int, 0, len(text)/3+2)
	var secs, sub []section
	var pieces []string
	secs = splitAdded(rawAdded, text, true, secs)
	for _, sec := range secs {
		if sec.token != nil {
			ids = append(ids, sec.token.id)
			continue
		}
		s := sec.text
		if t.norm != nil {
			s = t.norm.normalize(s)
		}
		if s == "" {
			continue
		}
		sub = splitAdded(normAdded, s, sec.first, sub[:0])
		for _, ss := range sub {
			if ss.token != nil {
				ids = append(ids, ss.token.id)
				continue
			}
			if t.preTok == nil {
				ids = t.model.encodeWord(ids, ss.text)
				continue
			}
			pieces = t.preTok.preTokenize(pieces[:0], ss.text, ss.first)
			for _, p := range pieces {
				ids = t.model.encodeWord(ids, p)
			}
		}
	}
	if addSpecial && t.post != nil {
		ids = t.post.apply(ids)
	}
	return ids
}

// Decode returns the text of ids. With skipSpecial, special added tokens
// are left out. Ids outside the vocabulary are skipped, as in the tokenizers
// library. Byte sequences that are not valid UTF-8 (a multi-byte character
// cut by the end of ids, for instance) become U+FFFD.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) || !t.present[id] {
			continue
		}
		if skipSpecial && t.special[id] {
			continue
		}
		toks = append(toks, t.tokens[id])
	}
	if t.dec == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.dec.decodeChain(toks), "")
}

// postProcessor adds special tokens around a single sequence.
type postProcessor struct {
	prefix, suffix []int
}

func (p *postProcessor) apply(ids []int) []int {
	if len(p.prefix) == 0 && len(p.suffix) == 0 {
		return ids
	}
	out := make([]int, 0, len(p.prefix)+len(ids)+len(p.suffix))
	out = append(out, p.prefix...)
	out = append(out, ids...)
	return append(out, p.suffix...)
}

// applyConfig takes bos_token and eos_token from tokenizer_config.json when
// the tokenizer.json itself does not determine them.
func (t *Tokenizer) applyConfig(data []byte) error {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return &Error{Err: fmt.Errorf("invalid JSON: %w", err)}
	}
	for _, f := range []struct {
		key   string
		dst   *int
		fixed bool
	}{{"bos_token", &t.bos, t.bosFixed}, {"eos_token", &t.eos, t.eosFixed}} {
		raw, ok := cfg[f.key]
		if !ok || string(raw) == "null" {
			continue
		}
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			var obj struct {
				Content string `json:"content"`
			}
			if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == "" {
				return fieldErr(f.key, "want a string or an object with \"content\", got %s", raw)
			}
			name = obj.Content
		}
		id, ok := t.vocab[name]
		if !ok {
			return fieldErr(f.key, "token %q is not in the vocabulary", name)
		}
		if !f.fixed {
			*f.dst = id
		}
	}
	return nil
}
