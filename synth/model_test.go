package synth

import (
	"path/filepath"
	"testing"

	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/tokenizer"
)

func TestInitBaseModelLoads(t *testing.T) {
	dir := t.TempDir()
	o := DefaultModelOptions()
	if err := InitBaseModel(dir, o); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != o.Vocab {
		t.Fatalf("vocab %d, want %d", tok.VocabSize(), o.Vocab)
	}
	recs, _ := Generate(Options{Domain: Finance, Site: "x", Records: 1, Seed: 3})
	ids := tok.Encode(recs[0].Text, true)
	if got := tok.Decode(ids, true); got != recs[0].Text {
		t.Fatalf("round trip %q → %q", recs[0].Text, got)
	}
	logits, err := m.Logits(nil, ids[:8])
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != 8 || len(logits[0]) != o.Vocab {
		t.Fatalf("logits shape %d×%d", len(logits), len(logits[0]))
	}
}
