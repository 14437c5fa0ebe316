package tokenizer

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trainCorpus is the fixed corpus of the trained fixture: every reference
// string of both fixtures.
func trainCorpus(t *testing.T) []string {
	var corpus []string
	for _, name := range []string{"qwen3", "mistral"} {
		for _, e := range readExpected(t, name) {
			corpus = append(corpus, e.Text)
		}
	}
	return corpus
}

const trainedVocab = 512

// TestTrainGolden pins the output of TrainByteLevelBPE: the fixture
// testdata/trained_tokenizer.json is what it produced, and gen.mjs encodes
// the reference strings with that file in the JavaScript implementation
// (TestReference checks our ids against those). Regenerate with
// TOKENIZER_UPDATE=1 go test -run TestTrainGolden, then rerun gen.mjs.
func TestTrainGolden(t *testing.T) {
	got, err := TrainByteLevelBPE(trainCorpus(t), trainedVocab)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "trained_tokenizer.json")
	if os.Getenv("TOKENIZER_UPDATE") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("TrainByteLevelBPE output differs from %s (%d vs %d bytes)", path, len(got), len(want))
	}
}

func TestTrainProperties(t *testing.T) {
	corpus := trainCorpus(t)
	data, err := TrainByteLevelBPE(corpus, trainedVocab)
	if err != nil {
		t.Fatal(err)
	}
	again, err := TrainByteLevelBPE(corpus, trainedVocab)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Fatal("training is not deterministic")
	}
	tok, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != trainedVocab {
		t.Errorf("VocabSize = %d, want %d", tok.VocabSize(), trainedVocab)
	}
	eot, ok := tok.TokenID(EndOfText)
	if !ok || eot != trainedVocab-1 || !tok.IsSpecial(eot) {
		t.Errorf("TokenID(%s) = %d, %v", EndOfText, eot, ok)
	}
	if id, ok := tok.EOS(); !ok || id != eot {
		t.Errorf("EOS = %d, %v", id, ok)
	}
	// Learned merges compress the training text and round-trip it.
	total, tokens := 0, 0
	for _, s := range corpus {
		ids := tok.Encode(s, false)
		if d := tok.Decode(ids, false); d != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, d)
		}
		total += len(s)
		tokens += len(ids)
	}
	if ratio := float64(total) / float64(tokens); ratio < 1.5 {
		t.Errorf("%.2f bytes per token on the training corpus; merges are not being used", ratio)
	}
	// A special token in text is one id.
	if ids := tok.Encode("a"+EndOfText+"b", false); len(ids) != 3 || ids[1] != eot {
		t.Errorf("Encode with %s = %v", EndOfText, ids)
	}
}

func TestTrainErrors(t *testing.T) {
	if _, err := TrainByteLevelBPE([]string{"abc"}, 256); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("vocab 256: err = %v", err)
	}
	if _, err := TrainByteLevelBPE([]string{"abcdef"}, 300); err == nil || !strings.Contains(err.Error(), "corpus too small") {
		t.Errorf("tiny corpus: err = %v", err)
	}
	// Exactly 257: no merges needed.
	data, err := TrainByteLevelBPE(nil, 257)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("hé", false); len(got) != 3 {
		t.Errorf("bytes-only tokenizer: Encode(hé) = %v, want 3 byte tokens", got)
	}
}
