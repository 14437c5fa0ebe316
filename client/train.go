package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fedtune/fedtune/dp"
	"github.com/fedtune/fedtune/dp/noise"
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

// DPSGD is one local training run's parameters.
type DPSGD struct {
	NoiseMultiplier float64
	ExpectedBatch   int
	Steps           int
	MaxGradNorm     float64
	LearningRate    float64
	// MicroBatch bounds the examples per forward/backward pass.
	MicroBatch int
}

// TrainDPSGD runs DP-SGD (Abadi et al. 2016, Algorithm 1) on a's trainable
// parameters in place: each step draws a Poisson sample with rate
// q = ExpectedBatch/N, clips every per-example gradient to MaxGradNorm, adds
// N(0, σ²C²) to the sum, divides by ExpectedBatch and takes an SGD step.
// The caller records the privacy spend in the ledger before calling.
func TrainDPSGD(ctx context.Context, m *model.Model, a *model.Adapter, ds *Dataset, p DPSGD, s *noise.Sampler, maxSeq int, progress func(step int, loss float64)) error {
	n := len(ds.Examples)
	q := float64(p.ExpectedBatch) / float64(n)
	if q <= 0 || q > 1 {
		return fmt.Errorf("sampling rate %g = expected batch %d / %d records is not in (0,1]", q, p.ExpectedBatch, n)
	}
	mb := p.MicroBatch
	if mb <= 0 {
		mb = 8
	}
	tr := m.NewTrainer(a, model.TrainerOptions{MaxBatch: mb, MaxSeq: maxSeq})
	dim := a.NumTrainable()
	grads := make([][]float32, mb)
	for i := range grads {
		grads[i] = make([]float32, dim)
	}
	losses := make([]float64, mb)
	sum := make([]float64, dim)
	upd := make([]float32, dim)
	var idx []int
	batch := make([]model.Example, 0, mb)
	for step := 0; step < p.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		idx, err = dp.PoissonSample(idx[:0], n, q, s)
		if err != nil {
			return err
		}
		clear(sum)
		lossSum, lossN := 0.0, 0
		for off := 0; off < len(idx); off += mb {
			batch = batch[:0]
			for _, i := range idx[off:min(off+mb, len(idx))] {
				batch = append(batch, ds.Examples[i])
			}
			if err := tr.PerExampleGrads(batch, grads[:len(batch)], losses[:len(batch)]); err != nil {
				return err
			}
			for i := range batch {
				if _, err := dp.ClipAdd(sum, grads[i], p.MaxGradNorm); err != nil {
					return err
				}
				lossSum += losses[i]
				lossN++
			}
		}
		if err := dp.NoisyMean(upd, sum, p.NoiseMultiplier, p.MaxGradNorm, float64(p.ExpectedBatch), s); err != nil {
			return err
		}
		w := a.Trainable()
		for i := range w {
			w[i] -= float32(p.LearningRate) * upd[i]
		}
		if progress != nil && lossN > 0 {
			progress(step, lossSum/float64(lossN))
		}
	}
	return nil
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
