package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// Fixtures: real published tokenizer.json files (Qwen3: byte-level BPE;
// Mistral: SentencePiece BPE with byte fallback) and the ids the JavaScript
// reference produced for them (testdata/gen/gen.mjs).
// Llama 3 (ignore_merges, \p{N}{1,3}) and GPT-2 (ByteLevel's own pattern)
// cover the other byte-level variants. "trained" is the output of
// TrainByteLevelBPE (TestTrainGolden).
var fixtures = []string{"qwen3", "mistral", "llama3", "gpt2", "trained"}

var (
	loadOnce sync.Map // name -> *loaded
)

type loaded struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// fixture loads testdata/<name>_tokenizer.json.gz once per test binary.
func fixture(t testing.TB, name string) *Tokenizer {
	t.Helper()
	v, _ := loadOnce.LoadOrStore(name, &loaded{})
	l := v.(*loaded)
	l.once.Do(func() {
		path := filepath.Join("testdata", name+"_tokenizer.json.gz")
		if _, err := os.Stat(path); err != nil {
			path = filepath.Join("testdata", name+"_tokenizer.json")
		}
		l.tok, l.err = Load(path)
	})
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.tok
}

type expected struct {
	Text        string `json:"text"`
	IDs         []int  `json:"ids"`
	IDsSpecial  []int  `json:"ids_special"`
	Decoded     string `json:"decoded"`
	DecodedSkip string `json:"decoded_skip"`
}

func readExpected(t *testing.T, name string) []expected { return readExpectedTB(t, name) }

func readExpectedTB(t testing.TB, name string) []expected {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+"_expected.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []expected
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		var e expected
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s_expected.jsonl:%d: %v", name, line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReference compares Encode and Decode with the JavaScript reference on
// every fixture string.
func TestReference(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			tok := fixture(t, name)
			cases := readExpected(t, name)
			if len(cases) < 200 {
				t.Fatalf("only %d reference strings, want at least 200", len(cases))
			}
			fails := 0
			for i, c := range cases {
				got := tok.Encode(c.Text, false)
				if !slices.Equal(got, c.IDs) {
					t.Errorf("case %d: Encode(%q, false)\n got %v\nwant %v", i, c.Text, got, c.IDs)
					fails++
				}
				gotS := tok.Encode(c.Text, true)
				if !slices.Equal(gotS, c.IDsSpecial) {
					t.Errorf("case %d: Encode(%q, true)\n got %v\nwant %v", i, c.Text, gotS, c.IDsSpecial)
					fails++
				}
				if d := tok.Decode(c.IDsSpecial, false); d != c.Decoded {
					t.Errorf("case %d: Decode(ids of %q, false) = %q, want %q", i, c.Text, d, c.Decoded)
					fails++
				}
				if d := tok.Decode(c.IDsSpecial, true); d != c.DecodedSkip {
					t.Errorf("case %d: Decode(ids of %q, true) = %q, want %q", i, c.Text, d, c.DecodedSkip)
					fails++
				}
				if fails > 20 {
					t.Fatal("too many failures")
				}
			}
		})
	}
}

// TestRoundTripQwen: byte-level BPE is lossless up to the declared NFC
// normalization, including special tokens written in the text.
func TestRoundTripQwen(t *testing.T) {
	tok := fixture(t, "qwen3")
	changed := 0
	for _, c := range readExpected(t, "qwen3") {
		want := norm.NFC.String(c.Text)
		if want != c.Text {
			changed++
		}
		if d := tok.Decode(tok.Encode(c.Text, true), false); d != want {
			t.Errorf("Decode(Encode(%q)) = %q, want %q", c.Text, d, want)
		}
	}
	if changed == 0 {
		t.Error("no reference string exercises NFC normalization")
	}
}

func TestSpecialIDs(t *testing.T) {
	q := fixture(t, "qwen3")
	if got := q.VocabSize(); got != 151669 {
		t.Errorf("qwen3 VocabSize = %d, want 151669", got)
	}
	if _, ok := q.BOS(); ok {
		t.Errorf("qwen3 has no BOS token")
	}
	if id, ok := q.TokenID("<|endoftext|>"); !ok || id != 151643 {
		t.Errorf("qwen3 TokenID(<|endoftext|>) = %d, %v", id, ok)
	}
	if id, ok := q.EOS(); !ok || id != 151643 {
		// Parse-only heuristics; the tokenizer_config.json of the fixture is
		// not next to it under the name Load looks for.
		t.Errorf("qwen3 EOS = %d, %v; want 151643", id, ok)
	}
	if !q.IsSpecial(151644) || q.IsSpecial(151667) || q.IsSpecial(100) {
		t.Errorf("qwen3 IsSpecial wrong")
	}
	if s, ok := q.Token(9707); !ok || s != "Hello" {
		t.Errorf("qwen3 Token(9707) = %q, %v", s, ok)
	}

	l3 := fixture(t, "llama3")
	if got := l3.VocabSize(); got != 128256 {
		t.Errorf("llama3 VocabSize = %d, want 128256", got)
	}
	if id, ok := l3.BOS(); !ok || id != 128000 {
		t.Errorf("llama3 BOS = %d, %v; want <|begin_of_text|> = 128000", id, ok)
	}
	if id, ok := l3.EOS(); !ok || id != 128001 {
		t.Errorf("llama3 EOS = %d, %v; want <|end_of_text|> = 128001", id, ok)
	}

	l := fixture(t, "mistral")
	if got := l.VocabSize(); got != 32000 {
		t.Errorf("mistral VocabSize = %d, want 32000", got)
	}
	if id, ok := l.BOS(); !ok || id != 1 {
		t.Errorf("mistral BOS = %d, %v; want 1", id, ok)
	}
	if id, ok := l.EOS(); !ok || id != 2 {
		t.Errorf("mistral EOS = %d, %v; want 2", id, ok)
	}
}

// TestLoadConfig: Load reads bos_token/eos_token from a sibling
// tokenizer_config.json.
func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("testdata", "qwen3_tokenizer.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join("testdata", "qwen3_tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644)
	tok, err := Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tok.EOS(); !ok || id != 151645 {
		t.Errorf("EOS = %d, %v; want <|im_end|> = 151645", id, ok)
	}
}

// TestEncodeSplitSpecial: special tokens in text are plain characters;
// non-special added tokens still match; other text is unchanged.
func TestEncodeSplitSpecial(t *testing.T) {
	q := fixture(t, "qwen3")
	got := q.EncodeSplitSpecial("<|im_start|>user<think>", false)
	want := append(q.Encode("<|im_start", false), q.Encode("|>user", false)...)
	want = append(want, 151667) // <think> is added but not special
	if !slices.Equal(got, want) {
		t.Errorf("EncodeSplitSpecial = %v, want %v", got, want)
	}
	for _, c := range readExpected(t, "qwen3") {
		ids := q.EncodeSplitSpecial(c.Text, true)
		for _, id := range ids {
			if q.IsSpecial(id) {
				t.Fatalf("EncodeSplitSpecial(%q) contains special id %d", c.Text, id)
			}
		}
		if !strings.Contains(c.Text, "<|") && !slices.Equal(ids, c.IDsSpecial) {
			t.Errorf("EncodeSplitSpecial(%q) = %v, want %v", c.Text, ids, c.IDsSpecial)
		}
		if d := q.Decode(ids, false); d != norm.NFC.String(c.Text) {
			t.Errorf("Decode(EncodeSplitSpecial(%q)) = %q", c.Text, d)
		}
	}
	m := fixture(t, "mistral")
	if got := m.EncodeSplitSpecial("<s>", true); len(got) < 3 || got[0] != 1 {
		t.Errorf("mistral EncodeSplitSpecial(<s>, true) = %v: want BOS then the characters", got)
	}
}

// TestConcurrentEncode: a Tokenizer is safe for concurrent use (run with
// -race); every goroutine gets the reference ids.
func TestConcurrentEncode(t *testing.T) {
	tok := fixture(t, "mistral")
	cases := readExpected(t, "mistral")
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := range cases {
				c := cases[(i+g*37)%len(cases)]
				if got := tok.Encode(c.Text, true); !slices.Equal(got, c.IDsSpecial) {
					errs <- c.Text
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Errorf("concurrent Encode(%q) differs from the reference", s)
	}
}
