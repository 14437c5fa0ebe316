// Package canonjson implements the JSON Canonicalization Scheme of RFC 8785:
// object members sorted by the UTF-16 code units of their names, no
// insignificant whitespace, strings escaped minimally (RFC 8785 section
// 3.2.2.2) and numbers written the way ECMAScript's Number.prototype.toString
// writes an IEEE 754 double (RFC 8785 section 3.2.2.3).
//
// Input must be I-JSON (RFC 7493): valid UTF-8, no lone surrogate escapes,
// no duplicate member names, numbers that fit a double. Anything else is
// refused with a [*SyntaxError] that gives the byte offset, line and column.
package canonjson

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// SyntaxError describes why input is not acceptable I-JSON.
type SyntaxError struct {
	Offset int // byte offset of the problem
	Line   int // 1-based
	Column int // 1-based, in bytes
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d column %d: %s", e.Line, e.Column, e.Msg)
}

// MaxDepth bounds the nesting of arrays and objects.
const MaxDepth = 64

// Canonicalize parses in as I-JSON and returns its RFC 8785 canonical form.
func Canonicalize(in []byte) ([]byte, error) {
	p := parser{in: in}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return nil, p.errorf("unexpected %s after the top-level value", p.describe())
	}
	out := make([]byte, 0, len(in))
	return appendValue(out, v)
}

// IsCanonical reports whether in is already in canonical form.
func IsCanonical(in []byte) bool {
	c, err := Canonicalize(in)
	return err == nil && bytes.Equal(c, in)
}

type kind uint8

const (
	kNull kind = iota
	kTrue
	kFalse
	kNumber
	kString
	kArray
	kObject
)

type value struct {
	k       kind
	num     float64
	str     string
	elems   []value
	members []member
}

type member struct {
	name string
	val  value
}

type parser struct {
	in  []byte
	pos int
}

func (p *parser) errorf(format string, args ...any) error {
	line, col := 1, 1
	for _, c := range p.in[:min(p.pos, len(p.in))] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return &SyntaxError{Offset: p.pos, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) describe() string {
	if p.pos >= len(p.in) {
		return "end of input"
	}
	return strconv.QuoteRune(rune(p.in[p.pos]))
}

func (p *parser) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (value, error) {
	if depth > MaxDepth {
		return value{}, p.errorf("nesting deeper than %d", MaxDepth)
	}
	if p.pos >= len(p.in) {
		return value{}, p.errorf("unexpected end of input, want a value")
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.string()
		return value{k: kString, str: s}, err
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case bytes.HasPrefix(p.in[p.pos:], []byte("true")):
		p.pos += 4
		return value{k: kTrue}, nil
	case bytes.HasPrefix(p.in[p.pos:], []byte("false")):
		p.pos += 5
		return value{k: kFalse}, nil
	case bytes.HasPrefix(p.in[p.pos:], []byte("null")):
		p.pos += 4
		return value{k: kNull}, nil
	}
	return value{}, p.errorf("unexpected %s, want a value", p.describe())
}

func (p *parser) object(depth int) (value, error) {
	p.pos++ // {
	v := value{k: kObject}
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return value{}, p.errorf("unexpected %s, want a member name", p.describe())
		}
		start := p.pos
		name, err := p.string()
		if err != nil {
			return value{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return value{}, p.errorf("unexpected %s, want ':'", p.describe())
		}
		p.pos++
		p.skipSpace()
		mv, err := p.value(depth + 1)
		if err != nil {
			return value{}, err
		}
		for _, m := range v.members {
			if m.name == name {
				p.pos = start
				return value{}, p.errorf("duplicate member name %q", name)
			}
		}
		v.members = append(v.members, member{name, mv})
		p.skipSpace()
		if p.pos >= len(p.in) {
			return value{}, p.errorf("unexpected end of input in object")
		}
		switch p.in[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return v, nil
		default:
			return value{}, p.errorf("unexpected %s, want ',' or '}'", p.describe())
		}
	}
}

func (p *parser) array(depth int) (value, error) {
	p.pos++ // [
	v := value{k: kArray}
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		ev, err := p.value(depth + 1)
		if err != nil {
			return value{}, err
		}
		v.elems = append(v.elems, ev)
		p.skipSpace()
		if p.pos >= len(p.in) {
			return value{}, p.errorf("unexpected end of input in array")
		}
		switch p.in[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return v, nil
		default:
			return value{}, p.errorf("unexpected %s, want ',' or ']'", p.describe())
		}
	}
}

func hexVal(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

func (p *parser) hex4() (rune, error) {
	if p.pos+4 > len(p.in) {
		return 0, p.errorf("truncated \\u escape")
	}
	var r rune
	for i := 0; i < 4; i++ {
		h := hexVal(p.in[p.pos+i])
		if h < 0 {
			p.pos += i
			return 0, p.errorf("bad hex digit %s in \\u escape", p.describe())
		}
		r = r<<4 | h
	}
	p.pos += 4
	return r, nil
}

func (p *parser) string() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes, all ASCII printable.
	for p.pos < len(p.in) {
		c := p.in[p.pos]
		if c == '"' {
			s := string(p.in[start:p.pos])
			p.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			break
		}
		p.pos++
	}
	buf := append([]byte(nil), p.in[start:p.pos]...)
	for {
		if p.pos >= len(p.in) {
			return "", p.errorf("unterminated string")
		}
		c := p.in[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("control character %#02x in string", c)
		case c == '\\':
			p.pos++
			if p.pos >= len(p.in) {
				return "", p.errorf("unterminated escape")
			}
			e := p.in[p.pos]
			p.pos++
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, err := p.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xdc00 || p.pos+6 > len(p.in) || p.in[p.pos] != '\\' || p.in[p.pos+1] != 'u' {
						return "", p.errorf("lone surrogate \\u%04x", r)
					}
					p.pos += 2
					r2, err := p.hex4()
					if err != nil {
						return "", err
					}
					if r2 < 0xdc00 || r2 > 0xdfff {
						return "", p.errorf("lone surrogate \\u%04x", r)
					}
					r = utf16.DecodeRune(r, r2)
				}
				buf = utf8.AppendRune(buf, r)
			default:
				p.pos--
				return "", p.errorf("invalid escape \\%c", e)
			}
		case c < 0x80:
			buf = append(buf, c)
			p.pos++
		default:
			r, n := utf8.DecodeRune(p.in[p.pos:])
			if r == utf8.RuneError && n <= 1 {
				return "", p.errorf("invalid UTF-8 in string")
			}
			buf = append(buf, p.in[p.pos:p.pos+n]...)
			p.pos += n
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (p *parser) number() (value, error) {
	start := p.pos
	if p.in[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(p.in) && p.in[p.pos] == '0':
		p.pos++
	case p.pos < len(p.in) && isDigit(p.in[p.pos]):
		for p.pos < len(p.in) && isDigit(p.in[p.pos]) {
			p.pos++
		}
	default:
		return value{}, p.errorf("unexpected %s in number, want a digit", p.describe())
	}
	if p.pos < len(p.in) && p.in[p.pos] == '.' {
		p.pos++
		if p.pos >= len(p.in) || !isDigit(p.in[p.pos]) {
			return value{}, p.errorf("unexpected %s after decimal point, want a digit", p.describe())
		}
		for p.pos < len(p.in) && isDigit(p.in[p.pos]) {
			p.pos++
		}
	}
	if p.pos < len(p.in) && (p.in[p.pos] == 'e' || p.in[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.in) && (p.in[p.pos] == '+' || p.in[p.pos] == '-') {
			p.pos++
		}
		if p.pos >= len(p.in) || !isDigit(p.in[p.pos]) {
			return value{}, p.errorf("unexpected %s in exponent, want a digit", p.describe())
		}
		for p.pos < len(p.in) && isDigit(p.in[p.pos]) {
			p.pos++
		}
	}
	f, err := strconv.ParseFloat(string(p.in[start:p.pos]), 64)
	if err != nil {
		p.pos = start
		return value{}, p.errorf("number %s does not fit an IEEE 754 double", p.in[start:min(len(p.in), start+40)])
	}
	return value{k: kNumber, num: f}, nil
}

// compareUTF16 orders strings by their UTF-16 code units (RFC 8785 section 3.2.3).
func compareUTF16(a, b string) int {
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	return slices.Compare(ua, ub)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func appendValue(out []byte, v value) ([]byte, error) {
	var err error
	switch v.k {
	case kNull:
		out = append(out, "null"...)
	case kTrue:
		out = append(out, "true"...)
	case kFalse:
		out = append(out, "false"...)
	case kNumber:
		out, err = AppendNumber(out, v.num)
	case kString:
		out = AppendString(out, v.str)
	case kArray:
		out = append(out, '[')
		for i, e := range v.elems {
			if i > 0 {
				out = append(out, ',')
			}
			if out, err = appendValue(out, e); err != nil {
				return nil, err
			}
		}
		out = append(out, ']')
	case kObject:
		slices.SortFunc(v.members, func(a, b member) int {
			if isASCII(a.name) && isASCII(b.name) {
				// For ASCII, UTF-16 order is byte order.
				return cmpString(a.name, b.name)
			}
			return compareUTF16(a.name, b.name)
		})
		out = append(out, '{')
		for i, m := range v.members {
			if i > 0 {
				out = append(out, ',')
			}
			out = AppendString(out, m.name)
			out = append(out, ':')
			if out, err = appendValue(out, m.val); err != nil {
				return nil, err
			}
		}
		out = append(out, '}')
	}
	return out, err
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string in RFC 8785 form (section
// 3.2.2.2): '"' and '\' escaped, U+0000..U+001F as \b \t \n \f \r or
// \u00xx with lowercase hex, every other character as itself.
// s must be valid UTF-8.
func AppendString(out []byte, s string) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out = append(out, s[start:i]...)
		start = i + 1
		switch c {
		case '"', '\\':
			out = append(out, '\\', c)
		case '\b':
			out = append(out, '\\', 'b')
		case '\t':
			out = append(out, '\\', 't')
		case '\n':
			out = append(out, '\\', 'n')
		case '\f':
			out = append(out, '\\', 'f')
		case '\r':
			out = append(out, '\\', 'r')
		default:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}

// AppendNumber appends f the way ECMAScript's Number.prototype.toString
// does (ECMA-262 section 7.1.12.1, required by RFC 8785 section 3.2.2.3).
// NaN and the infinities are not JSON numbers and are refused.
func AppendNumber(out []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("canonjson: %v is not a JSON number", f)
	}
	if f == 0 { // ECMA-262 7.1.12.1 step 2: +0 and -0 both give "0"
		return append(out, '0'), nil
	}
	if f < 0 {
		out = append(out, '-')
		f = -f
	}
	// The shortest digit string s (k digits) that round-trips, and n with
	// f = s × 10^(n−k) (ECMA-262 7.1.12.1 step 5). Go's shortest formatting
	// picks the closest such s, as ECMAScript requires.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	mant, exp, _ := bytes.Cut(e, []byte{'e'})
	var digits [24]byte
	s := append(digits[:0], mant[0])
	if len(mant) > 2 {
		s = append(s, mant[2:]...)
	}
	x, _ := strconv.Atoi(string(exp))
	k, n := len(s), x+1
	switch {
	case k <= n && n <= 21: // step 6: s followed by n−k zeros
		out = append(out, s...)
		for i := 0; i < n-k; i++ {
			out = append(out, '0')
		}
	case 0 < n && n <= 21: // step 7: s[:n] "." s[n:]
		out = append(out, s[:n]...)
		out = append(out, '.')
		out = append(out, s[n:]...)
	case -6 < n && n <= 0: // step 8: "0." −n zeros, s
		out = append(out, '0', '.')
		for i := 0; i < -n; i++ {
			out = append(out, '0')
		}
		out = append(out, s...)
	default: // steps 9 and 10: exponential form with explicit sign
		out = append(out, s[0])
		if k > 1 {
			out = append(out, '.')
			out = append(out, s[1:]...)
		}
		out = append(out, 'e')
		if n-1 >= 0 {
			out = append(out, '+')
		}
		out = strconv.AppendInt(out, int64(n-1), 10)
	}
	return out, nil
}
