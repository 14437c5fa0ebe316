package model

import (
	"math/rand/v2"
	"testing"

	"github.com/fedtune/fedtune/model/hf"
)

// benchSetup builds a small Llama (hidden 256, 2 layers) and a batch.
func benchSetup(b *testing.B, batch, seq int) (*Trainer, *Adapter, []Example) {
	c := &hf.Config{Architectures: []string{hf.ArchLlama}, HiddenSize: 256, IntermediateSize: 688, NumHiddenLayers: 2,
		NumAttentionHeads: 8, NumKeyValueHeads: 8, HeadDim: 32, VocabSize: 4096, RMSNormEps: 1e-5, RopeTheta: 10000}
	m, err := New(c, hf.InitTensors(c, 1))
	if err != nil {
		b.Fatal(err)
	}
	a, _ := NewAdapter(m, LoRAConfig{R: 16, Alpha: 32, TargetModules: []string{"q_proj", "v_proj"}})
	r := rand.New(rand.NewPCG(1, 1))
	ex := make([]Example, batch)
	for i := range ex {
		ids := make([]int, seq)
		for j := range ids {
			ids[j] = r.IntN(c.VocabSize)
		}
		ex[i] = Example{InputIDs: ids, Labels: ids}
	}
	return m.NewTrainer(a, TrainerOptions{MaxBatch: batch, MaxSeq: seq}), a, ex
}

// BenchmarkStep reports per-example steps against batch steps on the same
// trainer; compare the two sub-benchmarks' ns/op.
func BenchmarkStep(b *testing.B) {
	tr, a, ex := benchSetup(b, 4, 128)
	grad := make([]float32, a.NumTrainable())
	grads := newGrads(len(ex), a.NumTrainable())
	losses := make([]float64, len(ex))
	b.Run("BatchGrad", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			tr.BatchGrad(ex, grad, losses)
		}
	})
	b.Run("PerExampleGrads", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			tr.PerExampleGrads(ex, grads, losses)
		}
	})
}
