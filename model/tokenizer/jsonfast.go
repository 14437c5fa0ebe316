package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Fast paths for the two large parts of tokenizer.json, model.vocab (an
// object of string → integer, 10^5 entries) and model.merges, which
// encoding/json decodes slowly through reflection. The input has already
// been validated as JSON by the top-level decode, so these scanners only
// need to recognise the expected shapes; anything else is reported with the
// index of the offending item.

type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		return fmt.Errorf("want %q at offset %d", c, s.i)
	}
	s.i++
	return nil
}

// str reads a JSON string; strings without escapes are sliced directly.
func (s *jsonScanner) str() (string, error) {
	if s.peek() != '"' {
		return "", fmt.Errorf("want a string at offset %d", s.i)
	}
	start := s.i
	escaped := false
	for j := start + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			s.i = j + 1
			if !escaped {
				return string(s.b[start+1 : j]), nil
			}
			var out string
			if err := json.Unmarshal(s.b[start:j+1], &out); err != nil {
				return "", err
			}
			return out, nil
		}
	}
	return "", errors.New("unterminated string")
}

// integer reads a JSON number that must be an integer.
func (s *jsonScanner) integer() (int, error) {
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	n, err := strconv.Atoi(string(s.b[start:s.i]))
	if err != nil {
		return 0, fmt.Errorf("want an integer, got %q", s.b[start:s.i])
	}
	return n, nil
}

// parseVocab decodes model.vocab.
func parseVocab(raw json.RawMessage) (map[string]int32, error) {
	s := &jsonScanner{b: raw}
	if err := s.expect('{'); err != nil {
		return nil, fieldErr("model.vocab", "want an object: %v", err)
	}
	out := make(map[string]int32, len(raw)/12)
	if s.peek() == '}' {
		return out, nil
	}
	for {
		tok, err := s.str()
		if err != nil {
			return nil, fieldErr("model.vocab", "entry %d: %v", len(out), err)
		}
		if err := s.expect(':'); err != nil {
			return nil, fieldErr("model.vocab", "entry %q: %v", tok, err)
		}
		id, err := s.integer()
		if err != nil {
			return nil, fieldErr("model.vocab", "entry %q: %v", tok, err)
		}
		if id < 0 || id >= 1<<31-1 {
			return nil, fieldErr("model.vocab", "token %q has id %d outside [0, 2^31-1)", tok, id)
		}
		if _, dup := out[tok]; dup {
			return nil, fieldErr("model.vocab", "token %q appears twice", tok)
		}
		out[tok] = int32(id)
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			return out, nil
		default:
			return nil, fieldErr("model.vocab", "entry %q: want ',' or '}' at offset %d", tok, s.i)
		}
	}
}

// parseMerges accepts both serializations: "a b" strings (tokenizers < 0.20)
// and ["a", "b"] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	s := &jsonScanner{b: raw}
	if err := s.expect('['); err != nil {
		return nil, fieldErr("model.merges", "want an array: %v", err)
	}
	var out [][2]string
	if s.peek() == ']' {
		return out, nil
	}
	for {
		i := len(out)
		bad := func(format string, args ...any) error {
			return fieldErr(fmt.Sprintf("model.merges[%d]", i), format, args...)
		}
		var pair [2]string
		switch s.peek() {
		case '"':
			str, err := s.str()
			if err != nil {
				return nil, bad("%v", err)
			}
			a, b, ok := cutSpace(str)
			if !ok {
				return nil, bad("want \"left right\" (two tokens separated by one space), got %q", str)
			}
			pair = [2]string{a, b}
		case '[':
			s.i++
			a, err := s.str()
			if err == nil {
				err = s.expect(',')
			}
			var b string
			if err == nil {
				b, err = s.str()
			}
			if err == nil {
				err = s.expect(']')
			}
			if err != nil || a == "" || b == "" {
				return nil, bad("want a \"left right\" string or a [left, right] pair of non-empty strings")
			}
			pair = [2]string{a, b}
		default:
			return nil, bad("want a \"left right\" string or a [left, right] pair of non-empty strings")
		}
		out = append(out, pair)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			return out, nil
		default:
			return nil, bad("want ',' or ']' at offset %d", s.i)
		}
	}
}

// cutSpace splits "a b" into its two non-empty, space-free halves.
func cutSpace(s string) (string, string, bool) {
	k := -1
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			if k >= 0 {
				return "", "", false
			}
			k = i
		}
	}
	if k <= 0 || k == len(s)-1 {
		return "", "", false
	}
	return s[:k], s[k+1:], true
}
