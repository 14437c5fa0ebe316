package client

import (
	"path/filepath"

	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/tokenizer"
	"github.com/fedtune/fedtune/trainer"
)

// LoadDataset reads and tokenizes a site's JSONL records exactly as
// trainer.Run does for training ({"text"}, {"prompt","completion"} with the
// loss on the completion only, or pre-tokenized {"input_ids","labels"}), so
// evaluation sees the same examples training would; records longer than
// maxSeq tokens are cut. Errors name the file and line.
func LoadDataset(path string, tok *tokenizer.Tokenizer, maxSeq int) (*trainer.Dataset, error) {
	return trainer.LoadJSONL(path, tok, trainer.LoadOptions{MaxLength: maxSeq, Vocab: tok.VocabSize()})
}

// LoadTokenizer loads tokenizer.json from a model directory.
func LoadTokenizer(modelDir string) (*tokenizer.Tokenizer, error) {
	return tokenizer.Load(filepath.Join(modelDir, "tokenizer.json"))
}

// EvalLoss is the mean per-example loss of a on examples.
func EvalLoss(m *model.Model, a *model.Adapter, examples []model.Example, maxSeq int) (float64, error) {
	const mb = 16
	tr := m.NewTrainer(a, model.TrainerOptions{MaxBatch: mb, MaxSeq: maxSeq})
	losses := make([]float64, mb)
	total := 0.0
	for off := 0; off < len(examples); off += mb {
		b := examples[off:min(off+mb, len(examples))]
		if err := tr.Losses(b, losses[:len(b)]); err != nil {
			return 0, err
		}
		for _, l := range losses[:len(b)] {
			total += l
		}
	}
	return total / float64(len(examples)), nil
}
