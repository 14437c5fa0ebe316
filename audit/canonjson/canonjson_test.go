package canonjson

import (
	"bufio"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical form.
var rfc8785Numbers = []struct {
	bits uint64
	want string
}{
	{0x0000000000000000, "0"},
	{0x8000000000000000, "0"},
	{0x0000000000000001, "5e-324"},
	{0x8000000000000001, "-5e-324"},
	{0x7fefffffffffffff, "1.7976931348623157e+308"},
	{0xffefffffffffffff, "-1.7976931348623157e+308"},
	{0x4340000000000000, "9007199254740992"},
	{0xc340000000000000, "-9007199254740992"},
	{0x4430000000000000, "295147905179352830000"},
	{0x44b52d02c7e14af5, "9.999999999999997e+22"},
	{0x44b52d02c7e14af6, "1e+23"},
	{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
	{0x444b1ae4d6e2ef4e, "999999999999999700000"},
	{0x444b1ae4d6e2ef4f, "999999999999999900000"},
	{0x444b1ae4d6e2ef50, "1e+21"},
	{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
	{0x3eb0c6f7a0b5ed8d, "0.000001"},
	{0x41b3de4355555553, "333333333.3333332"},
	{0x41b3de4355555554, "333333333.33333325"},
	{0x41b3de4355555555, "333333333.3333333"},
	{0x41b3de4355555556, "333333333.3333334"},
	{0x41b3de4355555557, "333333333.33333343"},
	{0xbecbf647612f3696, "-0.0000033333333333333333"},
	{0x43143ff3c1cb0959, "1424953923781206.2"},
}

func TestRFC8785Numbers(t *testing.T) {
	for _, c := range rfc8785Numbers {
		got, err := AppendNumber(nil, math.Float64frombits(c.bits))
		if err != nil || string(got) != c.want {
			t.Errorf("%016x: got %q, %v; want %q", c.bits, got, err, c.want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := AppendNumber(nil, f); err == nil {
			t.Errorf("AppendNumber(%v) succeeded", f)
		}
	}
}

// TestECMAScriptNumbers compares against String(x) computed by Node.js for
// 4000 doubles (testdata/es_numbers.txt).
func TestECMAScriptNumbers(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "es_numbers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		h, want, ok := strings.Cut(line, " ")
		bits, err := strconv.ParseUint(h, 16, 64)
		if !ok || err != nil {
			t.Fatalf("bad line %q", line)
		}
		got, err := AppendNumber(nil, math.Float64frombits(bits))
		if err != nil || string(got) != want {
			t.Errorf("%s: got %q, %v; want %q", h, got, err, want)
		}
		n++
	}
	if n < 3000 {
		t.Fatalf("only %d numbers checked", n)
	}
}

func TestRFC8785Examples(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// RFC 8785 section 3.2.2
		{`{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		// RFC 8785 section 3.2.3
		{`{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{` [ ] `, `[]`},
		{`{"b":{"d":1,"c":[{}]},"a":-0}`, `{"a":0,"b":{"c":[{}],"d":1}}`},
		{`"\u001f\b\u007f\u2028"`, "\"\\u001f\\b\u007f\u2028\""},
	} {
		got, err := Canonicalize([]byte(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("Canonicalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if !IsCanonical([]byte(c.want)) {
			t.Errorf("IsCanonical(%q) = false", c.want)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct {
		in        string
		line, col int
		msg       string
	}{
		{`{"a":1,"a":2}`, 1, 8, "duplicate member name"},
		{"{\n  \"a\": tru}", 2, 8, "want a value"},
		{`[1,]`, 1, 4, "want a value"},
		{`"\ud800"`, 1, 8, "lone surrogate"},
		{`"\udc00\ud800"`, 1, 8, "lone surrogate"},
		{"\"a\xffb\"", 1, 3, "invalid UTF-8"},
		{"\"a\tb\"", 1, 3, "control character"},
		{`1e400`, 1, 1, "does not fit"},
		{`01`, 1, 2, "after the top-level value"},
		{`1.`, 1, 3, "after decimal point"},
		{`{"a" 1}`, 1, 6, "want ':'"},
		{`[1 2]`, 1, 4, "want ',' or ']'"},
		{`"abc`, 1, 5, "unterminated string"},
		{`"\x"`, 1, 3, "invalid escape"},
		{strings.Repeat("[", MaxDepth+2), 1, MaxDepth + 2, "nesting deeper"},
		{``, 1, 1, "unexpected end of input"},
	} {
		_, err := Canonicalize([]byte(c.in))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Canonicalize(%q) = %v, want a SyntaxError", c.in, err)
			continue
		}
		if se.Line != c.line || se.Column != c.col || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("Canonicalize(%q) = %v; want line %d column %d containing %q", c.in, err, c.line, c.col, c.msg)
		}
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"b":[1,2.5,"x"],"a":null}`, `"\u00e9\ud83d\ude00"`, `[1e21,1e-7,-0.0]`, `{"\u20ac":1,"\r":2}`, `true`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Canonicalize(in)
		if err != nil {
			return
		}
		// Idempotent.
		c2, err := Canonicalize(c)
		if err != nil || string(c2) != string(c) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, c, c2, err)
		}
		// Same value as encoding/json sees in the input.
		var a, b any
		if json.Unmarshal(in, &a) != nil {
			return // encoding/json is laxer about invalid UTF-8; we refuse more, never less
		}
		if err := json.Unmarshal(c, &b); err != nil {
			t.Fatalf("canonical output %q does not parse: %v", c, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("value changed: %q -> %q", in, c)
		}
	})
}
