package tokenizer

import (
	"fmt"
	"sync"
	"unicode"
	"unicode/utf8"
)

// splitPattern is a hand-written scanner for one of the regular expressions
// that byte-level BPE tokenizers use to cut text into pre-tokens. Go's regexp
// package has no lookahead, which all of these patterns need (`\s+(?!\S)`),
// so each known pattern is implemented as a function that returns the end of
// the match starting at a given offset, following the leftmost-first
// alternation and backtracking semantics of the original expression.
//
// Character classes follow Unicode as the Rust tokenizers library applies
// them: \p{L} is unicode.IsLetter, \p{N} is unicode.IsNumber and \s is the
// White_Space property (unicode.IsSpace). Bytes that are not valid UTF-8
// count as U+FFFD, a symbol.
type splitPattern struct {
	name string
	// caseFold makes the contraction alternatives case-insensitive ((?i:...)).
	caseFold bool
	// llama3Style selects `[^\r\n\p{L}\p{N}]?\p{L}+` for letters,
	// `\p{N}{1,digits}` for numbers, `[\r\n]*` after punctuation and the
	// `\s*[\r\n]+` alternative; otherwise the GPT-2 forms ` ?\p{L}+`,
	// ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+` are used.
	llama3Style bool
	// digits is the maximum length of a number run; 0 means unbounded.
	digits int
}

// The patterns known to the scanner, keyed by their exact source text as it
// appears in tokenizer.json.
var knownPatterns = map[string]*splitPattern{
	// GPT-2 (Radford et al. 2019, openai/gpt-2 encoder.py); also the default of
	// the ByteLevel pre-tokenizer with use_regex=true.
	`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`: {name: "gpt2"},
	// Llama 3 (tiktoken cl100k-style pattern as shipped in Meta-Llama-3's tokenizer.json).
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: {name: "llama3", caseFold: true, llama3Style: true, digits: 3},
	// Qwen2 / Qwen2.5 / Qwen3: the Llama 3 pattern with single digits.
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: {name: "qwen2", caseFold: true, llama3Style: true, digits: 1},
}

// gpt2Pattern is the pattern the ByteLevel pre-tokenizer uses when use_regex is true.
var gpt2Pattern = knownPatterns[`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`]

func lookupPattern(src string) (*splitPattern, error) {
	if p, ok := knownPatterns[src]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("unsupported split regex %q: only the GPT-2, Llama 3 and Qwen2 pre-tokenizer patterns are implemented", src)
}

// Character classes of the patterns, as bits so that runs can test a set.
const (
	clsL     uint8 = 1 << iota // \p{L}
	clsN                       // \p{N}
	clsS                       // \s
	clsOther                   // [^\s\p{L}\p{N}]
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		t[r] = slowClass(r)
	}
	return t
}()

func slowClass(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return clsL
	case unicode.IsNumber(r):
		return clsN
	case unicode.IsSpace(r):
		return clsS
	}
	return clsOther
}

// bmpClass caches the classes of the Basic Multilingual Plane; it is
// filled on first use (about a millisecond).
var (
	bmpOnce  sync.Once
	bmpClass *[1 << 16]uint8
)

func fillBMP() {
	t := new([1 << 16]uint8)
	for r := range t {
		t[r] = slowClass(rune(r))
	}
	bmpClass = t
}

func class(r rune) uint8 {
	if r >= 0 && r < utf8.RuneSelf {
		return asciiClass[r]
	}
	if r < 0 {
		return 0 // end of text
	}
	return wideClass(r)
}

func wideClass(r rune) uint8 {
	if r < 1<<16 {
		bmpOnce.Do(fillBMP)
		return bmpClass[r]
	}
	return slowClass(r)
}

func isL(r rune) bool { return class(r) == clsL }
func isN(r rune) bool { return class(r) == clsN }
func isS(r rune) bool { return class(r) == clsS }

// isOther reports membership in [^\s\p{L}\p{N}].
func isOther(r rune) bool { return class(r) == clsOther }

func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// foldEq reports whether r equals the ASCII lower-case letter c under simple
// Unicode case folding (so 'S', 's' and U+017F LATIN SMALL LETTER LONG S all
// match 's').
func foldEq(r rune, c byte, fold bool) bool {
	if r == rune(c) {
		return true
	}
	if !fold {
		return false
	}
	for f := unicode.SimpleFold(rune(c)); f != rune(c); f = unicode.SimpleFold(f) {
		if f == r {
			return true
		}
	}
	return false
}

var contractions = []string{"s", "t", "re", "ve", "m", "ll", "d"}

// contraction matches '(s|t|re|ve|m|ll|d) at i and returns the end, or -1.
func (p *splitPattern) contraction(s string, i int) int {
	if s[i] != '\'' {
		return -1
	}
next:
	for _, c := range contractions {
		j := i + 1
		for k := 0; k < len(c); k++ {
			r, w := runeAt(s, j)
			if w == 0 || !foldEq(r, c[k], p.caseFold) {
				continue next
			}
			j += w
		}
		return j
	}
	return -1
}

// run returns the end of the run of runes whose class is in mask that
// starts at i, consuming at most max runes when max > 0.
func run(s string, i int, mask uint8, max int) int {
	n := 0
	for i < len(s) && (max == 0 || n < max) {
		if c := s[i]; c < utf8.RuneSelf {
			if asciiClass[c]&mask == 0 {
				break
			}
			i++
		} else {
			r, w := utf8.DecodeRuneInString(s[i:])
			if wideClass(r)&mask == 0 {
				break
			}
			i += w
		}
		n++
	}
	return i
}

// runCRLF returns the end of the run of CR and LF bytes starting at i.
func runCRLF(s string, i int) int {
	for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

// match returns the end of the match that starts at offset i < len(s). Every
// position matches at least one alternative of the known patterns, so the
// matches partition the text.
func (p *splitPattern) match(s string, i int) int {
	if e := p.contraction(s, i); e >= 0 {
		return e
	}
	r0, w0 := runeAt(s, i)
	r1, _ := runeAt(s, i+w0)
	if p.llama3Style {
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if isL(r0) {
			return run(s, i, clsL, 0)
		}
		if r0 != '\r' && r0 != '\n' && !isN(r0) && isL(r1) {
			return run(s, i+w0, clsL, 0)
		}
		// \p{N}{1,digits}
		if isN(r0) {
			return run(s, i, clsN, p.digits)
		}
		// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
		if j := p.punct(s, i, r0, w0, r1); j >= 0 {
			return runCRLF(s, j)
		}
	} else {
		// ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
		c0, c1 := class(r0), class(r1)
		for _, c := range [2]uint8{clsL, clsN} {
			if c0 == c {
				return run(s, i, c, 0)
			}
			if r0 == ' ' && c1 == c {
				return run(s, i+1, c, 0)
			}
		}
		if j := p.punct(s, i, r0, w0, r1); j >= 0 {
			return j
		}
	}
	// Whitespace alternatives; r0 is whitespace here.
	end := run(s, i, clsS, 0)
	if end == i {
		// Unreachable for the known patterns: every rune is a letter, a
		// number, whitespace or other. Consume one rune to guarantee progress.
		return i + w0
	}
	if p.llama3Style {
		// \s*[\r\n]+ : greedy \s* backs off to the last CR or LF of the run.
		for k := end - 1; k >= i; k-- {
			if s[k] == '\r' || s[k] == '\n' {
				return k + 1
			}
		}
	}
	// \s+(?!\S) : at the end of the text the whole run; before a non-space,
	// the run minus its last rune, if that leaves at least one rune.
	if end == len(s) {
		return end
	}
	_, lw := utf8.DecodeLastRuneInString(s[i:end])
	if end-lw > i {
		return end - lw
	}
	// \s+
	return end
}

// punct matches ` ?[^\s\p{L}\p{N}]+` at i and returns its end, or -1.
func (p *splitPattern) punct(s string, i int, r0 rune, w0 int, r1 rune) int {
	if r0 == ' ' && isOther(r1) {
		return run(s, i+1, clsOther, 0)
	}
	if isOther(r0) {
		return run(s, i, clsOther, 0)
	}
	return -1
}

// split appends to dst the pieces of s as cut by the pattern (the "Isolated"
// behaviour: every match is its own piece).
func (p *splitPattern) split(dst []string, s string) []string {
	for i := 0; i < len(s); {
		e := p.match(s, i)
		dst = append(dst, s[i:e])
		i = e
	}
	return dst
}
