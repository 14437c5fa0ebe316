package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// A normalizer rewrites a section of input text before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

type unicodeNorm struct{ form norm.Form }

func (n unicodeNorm) normalize(s string) string { return n.form.String(s) }

type prependNorm struct{ prefix string }

// normalize prepends unless s is empty (tokenizers normalizers/prepend.rs).
func (n prependNorm) normalize(s string) string {
	if s == "" {
		return s
	}
	return n.prefix + s
}

type replaceNorm struct{ old, new string }

func (n replaceNorm) normalize(s string) string { return strings.ReplaceAll(s, n.old, n.new) }

type lowercaseNorm struct{}

func (lowercaseNorm) normalize(s string) string { return strings.ToLower(s) }

type stripNorm struct{ left, right bool }

func (n stripNorm) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

type normSeq []normalizer

func (q normSeq) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// A preTokenizer cuts pieces of text into smaller pieces. first reports
// whether the piece starts the input (no added token before it).
type preTokenizer interface {
	preTokenize(dst []string, piece string, first bool) []string
}

type preTokSeq []preTokenizer

func (q preTokSeq) preTokenize(dst []string, piece string, first bool) []string {
	cur := []string{piece}
	for _, p := range q {
		next := make([]string, 0, len(cur)+4)
		for k, c := range cur {
			next = p.preTokenize(next, c, first && k == 0)
		}
		cur = next
	}
	return append(dst, cur...)
}

// splitPreTok is the Split pre-tokenizer with a known regex (see split.go) or
// a literal string pattern.
type splitPreTok struct {
	re       *splitPattern // nil for a literal pattern
	literal  string
	behavior string // "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"
	invert   bool
}

// matches returns the [start,end) ranges of the pattern's matches in s.
func (p *splitPreTok) matches(s string) [][2]int {
	var out [][2]int
	if p.re != nil {
		for i := 0; i < len(s); {
			e := p.re.match(s, i)
			out = append(out, [2]int{i, e})
			i = e
		}
		return out
	}
	for i := 0; i < len(s); {
		k := strings.Index(s[i:], p.literal)
		if k < 0 {
			break
		}
		out = append(out, [2]int{i + k, i + k + len(p.literal)})
		i += k + len(p.literal)
	}
	return out
}

// preTokenize follows SplitDelimiterBehavior of the tokenizers library
// (tokenizers/src/tokenizer/normalizer.rs, NormalizedString::split).
func (p *splitPreTok) preTokenize(dst []string, s string, _ bool) []string {
	if s == "" {
		return dst
	}
	if p.re != nil && !p.invert && (p.behavior == "Isolated" || p.behavior == "Contiguous") {
		// The known patterns match everywhere, so every piece is a match.
		return p.re.split(dst, s)
	}
	// Mark each byte range as a match (delimiter) or not.
	type span struct {
		a, b  int
		delim bool
	}
	var spans []span
	prev := 0
	for _, m := range p.matches(s) {
		if m[0] > prev {
			spans = append(spans, span{prev, m[0], false})
		}
		spans = append(spans, span{m[0], m[1], true})
		prev = m[1]
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	if p.invert {
		for i := range spans {
			spans[i].delim = !spans[i].delim
		}
	}
	switch p.behavior {
	case "Removed":
		for _, sp := range spans {
			if !sp.delim {
				dst = append(dst, s[sp.a:sp.b])
			}
		}
	case "MergedWithPrevious":
		start := 0
		for _, sp := range spans {
			if sp.delim {
				dst = append(dst, s[start:sp.b])
				start = sp.b
			}
		}
		if start < len(s) {
			dst = append(dst, s[start:])
		}
	case "MergedWithNext":
		start := 0
		for _, sp := range spans {
			if sp.delim && sp.a > start {
				dst = append(dst, s[start:sp.a])
				start = sp.a
			}
		}
		if start < len(s) {
			dst = append(dst, s[start:])
		}
	case "Contiguous":
		for i := 0; i < len(spans); {
			j := i + 1
			for j < len(spans) && spans[j].delim && spans[i].delim {
				j++
			}
			dst = append(dst, s[spans[i].a:spans[j-1].b])
			i = j
		}
	default: // Isolated
		for _, sp := range spans {
			dst = append(dst, s[sp.a:sp.b])
		}
	}
	return dst
}

// byteLevelPreTok is the ByteLevel pre-tokenizer. Pieces keep their raw bytes:
// the byte-to-character mapping of GPT-2 is applied inside the BPE model.
type byteLevelPreTok struct {
	addPrefixSpace bool
	useRegex       bool
}

func (p byteLevelPreTok) preTokenize(dst []string, s string, _ bool) []string {
	if p.addPrefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	if !p.useRegex {
		return append(dst, s)
	}
	return gpt2Pattern.split(dst, s)
}

// digitsPreTok isolates numeric characters (Unicode category N, Rust's
// char::is_numeric), each on its own when individual, else in runs
// (tokenizers pre_tokenizers/digits.rs).
type digitsPreTok struct{ individual bool }

func (p digitsPreTok) preTokenize(dst []string, s string, _ bool) []string {
	start := 0
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsNumber(r) {
			i += w
			continue
		}
		if i > start {
			dst = append(dst, s[start:i])
		}
		end := i + w
		if !p.individual {
			for end < len(s) {
				r2, w2 := utf8.DecodeRuneInString(s[end:])
				if !unicode.IsNumber(r2) {
					break
				}
				end += w2
			}
		}
		dst = append(dst, s[i:end])
		i, start = end, end
	}
	if start < len(s) {
		dst = append(dst, s[start:])
	}
	return dst
}

// metaspacePreTok replaces spaces by the replacement character (U+2581 in
// SentencePiece models), prepends it according to prependScheme and, when
// split is set, cuts the text before every replacement character.
type metaspacePreTok struct {
	replacement   string
	prependScheme string // "always", "first" or "never"
	split         bool
}

func (p metaspacePreTok) preTokenize(dst []string, s string, first bool) []string {
	s = strings.ReplaceAll(s, " ", p.replacement)
	if !strings.HasPrefix(s, p.replacement) && (p.prependScheme == "always" || (p.prependScheme == "first" && first)) {
		s = p.replacement + s
	}
	if !p.split {
		return append(dst, s)
	}
	start := 0
	for i := 0; i < len(s); {
		k := strings.Index(s[i:], p.replacement)
		if k < 0 {
			break
		}
		if i+k > start {
			dst = append(dst, s[start:i+k])
			start = i + k
		}
		i += k + len(p.replacement)
	}
	if start < len(s) {
		dst = append(dst, s[start:])
	}
	return dst
}

// A decoder turns the list of tokens back into text, one step of the chain.
type decoder interface {
	decodeChain(tokens []string) []string
}

type decoderSeq []decoder

func (q decoderSeq) decodeChain(t []string) []string {
	for _, d := range q {
		t = d.decodeChain(t)
	}
	return t
}

// byteLevelDecoder inverts GPT-2's byte-to-character mapping. A token with a
// character outside the mapping (an added token such as "<|im_start|>" maps
// fine; one with a space does not) contributes its raw bytes, as in the
// tokenizers library.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) []string {
	var b []byte
	for _, t := range tokens {
		mark := len(b)
		for _, r := range t {
			c, ok := runeToByte[r]
			if !ok {
				b = append(b[:mark], t...)
				break
			}
			b = append(b, c)
		}
	}
	return []string{lossyUTF8(b)}
}

type replaceDecoder struct{ old, new string }

func (d replaceDecoder) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		out[i] = strings.ReplaceAll(s, d.old, d.new)
	}
	return out
}

// byteFallbackDecoder turns runs of <0xNN> tokens into their bytes; a run
// that is not valid UTF-8 becomes one U+FFFD per byte (tokenizers
// decoders/byte_fallback.rs).
type byteFallbackDecoder struct{}

func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || t[:3] != "<0x" || t[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(t[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

func (byteFallbackDecoder) decodeChain(tokens []string) []string {
	out := make([]string, 0, len(tokens))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			out = append(out, strings.Repeat("\uFFFD", len(pending)))
		}
		pending = pending[:0]
	}
	for _, t := range tokens {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(t []string) []string { return []string{strings.Join(t, "")} }

// stripDecoder removes up to start leading and stop trailing occurrences of
// the rune content from every token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		for k := 0; k < d.start; k++ {
			r, w := utf8.DecodeRuneInString(s)
			if w == 0 || r != d.content {
				break
			}
			s = s[w:]
		}
		for k := 0; k < d.stop; k++ {
			r, w := utf8.DecodeLastRuneInString(s)
			if w == 0 || r != d.content {
				break
			}
			s = s[:len(s)-w]
		}
		out[i] = s
	}
	return out
}

// metaspaceDecoder maps the replacement character back to a space. In the
// first token, which carries the space the pre-tokenizer prepended, every
// replacement character is dropped instead (tokenizers
// pre_tokenizers/metaspace.rs, Decoder::decode_chain).
type metaspaceDecoder struct {
	replacement string
	stripFirst  bool
}

func (d metaspaceDecoder) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		if i == 0 && d.stripFirst {
			out[i] = strings.ReplaceAll(s, d.replacement, "")
		} else {
			out[i] = strings.ReplaceAll(s, d.replacement, " ")
		}
	}
	return out
}

// lossyUTF8 converts b to a string, replacing each maximal ill-formed
// subsequence by one U+FFFD (Unicode 15.0 §3.9, "U+FFFD Substitution of
// Maximal Subparts"), as Rust's String::from_utf8_lossy does.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for i := 0; i < len(b); {
		r, w := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || w > 1 {
			sb.Write(b[i : i+w])
			i += w
			continue
		}
		sb.WriteRune(utf8.RuneError)
		i += maximalSubpart(b[i:])
	}
	return sb.String()
}

// maximalSubpart returns the length (≥ 1) of the longest prefix of b that
// starts a well-formed UTF-8 sequence (Unicode Table 3-7), given that b does
// not begin with a complete one.
func maximalSubpart(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if k == 0 {
			if x < lo || x > hi {
				break
			}
		} else if x < 0x80 || x > 0xBF {
			break
		}
		n++
	}
	return n
}
