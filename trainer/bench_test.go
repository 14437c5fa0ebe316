package trainer

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/hf"
)

// TestBenchDPOverhead checks the measurement on a tiny model; set
// FEDTUNE_BENCH_DP=1 to run it at the size of `fedtune bench train` and log
// the ratio.
func TestBenchDPOverhead(t *testing.T) {
	hidden, layers, inter, vocab, seq, batch, steps := 32, 2, 64, 64, 16, 4, 2
	big, _ := strconv.ParseBool(os.Getenv("FEDTUNE_BENCH_DP"))
	if big {
		hidden, layers, inter, vocab, seq, batch, steps = 512, 6, 1376, 8192, 256, 4, 5
	}
	c := &hf.Config{Architectures: []string{hf.ArchLlama}, HiddenSize: hidden, IntermediateSize: inter, NumHiddenLayers: layers,
		NumAttentionHeads: 8, NumKeyValueHeads: 8, HeadDim: hidden / 8, VocabSize: vocab, MaxPositionEmbeddings: 2048,
		RMSNormEps: 1e-5, RopeTheta: 10000}
	m, err := model.New(c, hf.InitTensors(c, 1))
	if err != nil {
		t.Fatal(err)
	}
	a, err := model.NewAdapter(m, model.LoRAConfig{R: 16, Alpha: 32, TargetModules: []string{"q_proj", "v_proj"}, ASeed: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range a.Trainable() {
		a.Trainable()[i] = float32(r.NormFloat64() * 0.01)
	}
	exs := make([]model.Example, batch)
	for i := range exs {
		ids := make([]int, seq)
		for j := range ids {
			ids[j] = r.IntN(vocab)
		}
		exs[i] = model.Example{InputIDs: ids, Labels: ids}
	}
	o, err := BenchDPOverhead(m, a, exs, steps, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if !(o.DPStepSeconds > 0 && o.NonDPStepSeconds > 0 && o.DPStepOverNonDPStep > 0) || o.Trainable != a.NumTrainable() {
		t.Errorf("%+v", o)
	}
	t.Logf("%+v", o)
	if _, err := BenchDPOverhead(m, a, nil, 1, time.Now); err == nil {
		t.Error("empty batch accepted")
	}
}
