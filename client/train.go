package client

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/tokenizer"
)

// Dataset is a site's tokenized records.
type Dataset struct {
	Path     string
	SHA256   string
	Examples []model.Example
}

// LoadDataset reads JSONL records ({"text"} or {"prompt","completion"},
// loss on the completion only) and tokenizes them with tok, truncating to
// maxSeq tokens. Errors name the file and line.
func LoadDataset(path string, tok *tokenizer.Tokenizer, maxSeq int) (*Dataset, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	ds := &Dataset{Path: path, SHA256: "sha256:" + hex.EncodeToString(sum[:])}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var rec struct {
			Text       *string `json:"text"`
			Prompt     *string `json:"prompt"`
			Completion *string `json:"completion"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		var ids, labels []int
		switch {
		case rec.Text != nil && rec.Prompt == nil && rec.Completion == nil:
			ids = tok.Encode(*rec.Text, true)
			labels = append([]int(nil), ids...)
		case rec.Text == nil && rec.Prompt != nil && rec.Completion != nil:
			p := tok.Encode(*rec.Prompt, true)
			c := tok.Encode(*rec.Completion, false)
			ids = append(p, c...)
			labels = make([]int, len(ids))
			for i := range labels {
				labels[i] = -100
				if i >= len(p) {
					labels[i] = ids[i]
				}
			}
		default:
			return nil, fmt.Errorf(`%s:%d: want {"text": ...} or {"prompt": ..., "completion": ...}`, path, line)
		}
		if len(ids) > maxSeq {
			ids, labels = ids[:maxSeq], labels[:maxSeq]
		}
		if len(ids) < 2 {
			return nil, fmt.Errorf("%s:%d: record has fewer than 2 tokens", path, line)
		}
		ds.Examples = append(ds.Examples, model.Example{InputIDs: ids, Labels: labels})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(ds.Examples) == 0 {
		return nil, fmt.Errorf("%s: no records", path)
	}
	return ds, nil
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
