package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The cases in testdata/reference were written by testdata/gen_reference.py,
// an independent float64 PyTorch implementation of the Hugging Face
// Llama/Qwen2 forward pass with PEFT-style LoRA, whose per-example
// gradients come from autograd. Each holds a checkpoint (BF16, F16 or F32),
// a PEFT adapter and the expected outputs.
type referenceCase struct {
	Batch []struct {
		InputIDs []int `json:"input_ids"`
		Labels   []int `json:"labels"`
	} `json:"batch"`
	Losses       []float64   `json:"losses"`
	Grads        [][]float64 `json:"grads"`
	Logits0      [][]float64 `json:"logits0"`
	BaseLogits0  [][]float64 `json:"base_logits0"`
	GreedyPrompt []int       `json:"greedy_prompt"`
	Greedy       []int       `json:"greedy"`
}

func relNorm(got, want []float64) float64 {
	var num, den float64
	for i := range want {
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func TestReferenceImplementation(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/reference/*")
	if len(dirs) == 0 {
		t.Fatal("no reference cases")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
			if err != nil {
				t.Fatal(err)
			}
			var rc referenceCase
			if err := json.Unmarshal(raw, &rc); err != nil {
				t.Fatal(err)
			}
			m, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			a, err := LoadAdapter(filepath.Join(dir, "adapter"), m)
			if err != nil {
				t.Fatal(err)
			}
			batch := make([]Example, len(rc.Batch))
			for i, b := range rc.Batch {
				batch[i] = Example{InputIDs: b.InputIDs, Labels: b.Labels}
			}
			if a.NumTrainable() != len(rc.Grads[0]) {
				t.Fatalf("NumTrainable %d, reference has %d parameters", a.NumTrainable(), len(rc.Grads[0]))
			}

			// float64: the same code as training, at reference precision.
			lo, flat := viewLoRA[float64](a)
			e := newEngine(m.d, convertWeights[float64](&m.w), lo, len(batch), 16, true)
			T, err := e.load(batch)
			if err != nil {
				t.Fatal(err)
			}
			g64 := make([][]float64, len(batch))
			for i, s := range e.segs {
				g64[i] = make([]float64, len(flat))
				e.tg = append(e.tg, gradTarget[float64]{s.start, s.start + s.n, g64[i]})
			}
			l64 := make([]float64, len(batch))
			e.forward(T, true)
			e.losses(l64)
			e.backwardPass(T)
			for i := range batch {
				if d := math.Abs(l64[i] - rc.Losses[i]); d > 1e-12*math.Max(1, rc.Losses[i]) {
					t.Errorf("float64 loss %d: %.15g, reference %.15g", i, l64[i], rc.Losses[i])
				}
				if r := relNorm(g64[i], rc.Grads[i]); r > 1e-10 {
					t.Errorf("float64 gradient %d: relative error %.3g", i, r)
				}
			}

			// float32 trainer.
			tr := m.NewTrainer(a, TrainerOptions{MaxBatch: len(batch), MaxSeq: 16})
			g32 := newGrads(len(batch), a.NumTrainable())
			l32 := make([]float64, len(batch))
			if err := tr.PerExampleGrads(batch, g32, l32); err != nil {
				t.Fatal(err)
			}
			for i := range batch {
				if d := math.Abs(l32[i] - rc.Losses[i]); d > 1e-5*math.Max(1, rc.Losses[i]) {
					t.Errorf("float32 loss %d: %v, reference %v", i, l32[i], rc.Losses[i])
				}
				if r := relNorm(convert[float64](g32[i]), rc.Grads[i]); r > 1e-4 {
					t.Errorf("float32 gradient %d: relative error %.3g", i, r)
				}
			}

			for _, lc := range []struct {
				a    *Adapter
				want [][]float64
			}{{a, rc.Logits0}, {nil, rc.BaseLogits0}} {
				got, err := m.Logits(lc.a, batch[0].InputIDs)
				if err != nil {
					t.Fatal(err)
				}
				for p := range lc.want {
					for j := range lc.want[p] {
						if d := math.Abs(float64(got[p][j]) - lc.want[p][j]); d > 1e-5*math.Max(1, math.Abs(lc.want[p][j])) {
							t.Fatalf("logits[%d][%d] (adapter %v): %v, reference %v", p, j, lc.a != nil, got[p][j], lc.want[p][j])
						}
					}
				}
			}
			greedy, err := m.Generate(a, rc.GreedyPrompt, GenerateOptions{MaxNewTokens: len(rc.Greedy)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(greedy, rc.Greedy) {
				t.Errorf("greedy %v, reference %v", greedy, rc.Greedy)
			}
		})
	}
}
