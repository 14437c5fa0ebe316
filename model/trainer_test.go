package model

import (
	"math"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/model/hf"
)

func newGrads(n, p int) [][]float32 {
	g := make([][]float32, n)
	for i := range g {
		g[i] = make([]float32, p)
	}
	return g
}

// TestPerExampleSumEqualsBatchGrad checks Σ_i PerExampleGrads = BatchGrad,
// with dropout (same seed and step) and GQA.
func TestPerExampleSumEqualsBatchGrad(t *testing.T) {
	for _, ffa := range []bool{false, true} {
		m := tinyModel(t, tinyConfig(hf.ArchQwen2, 4, 2, 0), 11)
		a, err := NewAdapter(m, LoRAConfig{R: 4, Alpha: 8, Dropout: 0.1, FFA: ffa, TargetModules: allModules, ASeed: 9})
		if err != nil {
			t.Fatal(err)
		}
		randomizeB(a, 5)
		batch := testBatch()
		tr := m.NewTrainer(a, TrainerOptions{MaxBatch: 4, MaxSeq: 8, DropoutSeed: 77})
		per := newGrads(len(batch), a.NumTrainable())
		l1, l2 := make([]float64, 4), make([]float64, 4)
		if err := tr.PerExampleGrads(batch, per, l1); err != nil {
			t.Fatal(err)
		}
		tr.SetDropoutSeed(77)
		sum := make([]float32, a.NumTrainable())
		if err := tr.BatchGrad(batch, sum, l2); err != nil {
			t.Fatal(err)
		}
		var num, den float64
		for j := range sum {
			var s float64
			for i := range per {
				s += float64(per[i][j])
			}
			num += (s - float64(sum[j])) * (s - float64(sum[j]))
			den += s * s
		}
		if den == 0 || math.Sqrt(num/den) > 1e-6 {
			t.Errorf("ffa=%v: ‖Σ per-example − batch‖/‖Σ‖ = %.3g (den %v)", ffa, math.Sqrt(num/den), den)
		}
		for i := range l1 {
			if l1[i] != l2[i] {
				t.Errorf("ffa=%v: loss %d differs: %v vs %v", ffa, i, l1[i], l2[i])
			}
		}
		// Eval losses (no dropout) differ from training losses with dropout
		// but not wildly; and with the adapter's B at zero, dropout has no
		// effect, so they are equal.
		ev := make([]float64, 4)
		if err := tr.Losses(batch, ev); err != nil {
			t.Fatal(err)
		}
		if ev[3] != 0 {
			t.Errorf("eval loss of an example without targets = %v", ev[3])
		}
	}
}

// TestPerExampleIndependence: an example's gradient does not depend on the
// other examples of its batch (no dropout).
func TestPerExampleIndependence(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 4, 2, 0), 12)
	a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, TargetModules: allModules, ASeed: 1})
	randomizeB(a, 3)
	batch := testBatch()
	tr := m.NewTrainer(a, TrainerOptions{MaxBatch: 4, MaxSeq: 8})
	per := newGrads(4, a.NumTrainable())
	losses := make([]float64, 4)
	if err := tr.PerExampleGrads(batch, per, losses); err != nil {
		t.Fatal(err)
	}
	one := newGrads(1, a.NumTrainable())
	l1 := make([]float64, 1)
	if err := tr.PerExampleGrads(batch[2:3], one, l1); err != nil {
		t.Fatal(err)
	}
	if math.Abs(l1[0]-losses[2]) > 1e-6 {
		t.Errorf("loss alone %v, in batch %v", l1[0], losses[2])
	}
	for j := range one[0] {
		if d := math.Abs(float64(one[0][j] - per[2][j])); d > 1e-6*math.Max(1, math.Abs(float64(one[0][j]))) {
			t.Fatalf("parameter %d: alone %v, in batch %v", j, one[0][j], per[2][j])
		}
	}
}

// TestDropoutDeterminism: a fixed seed reproduces gradients; another seed
// or the next step changes them.
func TestDropoutDeterminism(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 2, 2, 0), 13)
	a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, Dropout: 0.5, TargetModules: []string{"q_proj", "v_proj"}, ASeed: 1})
	randomizeB(a, 4)
	batch := testBatch()[:2]
	tr := m.NewTrainer(a, TrainerOptions{MaxBatch: 2, MaxSeq: 8, DropoutSeed: 1})
	run := func() []float32 {
		g := make([]float32, a.NumTrainable())
		if err := tr.BatchGrad(batch, g, make([]float64, 2)); err != nil {
			t.Fatal(err)
		}
		return g
	}
	g1, g2 := run(), run()
	tr.SetDropoutSeed(1)
	g3 := run()
	tr.SetDropoutSeed(2)
	g4 := run()
	eq := func(x, y []float32) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !eq(g1, g3) {
		t.Error("same seed and step gave different gradients")
	}
	if eq(g1, g2) {
		t.Error("consecutive steps used the same dropout masks")
	}
	if eq(g1, g4) {
		t.Error("different seeds gave the same dropout masks")
	}
}

// TestKaimingInit checks PEFT's default init: B zero, A uniform in
// ±1/√in with the right spread, deterministic in the seed, and FFA's A the
// same for the same seed.
func TestKaimingInit(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 2, 2, 0), 14)
	cfg := LoRAConfig{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "down_proj"}, ASeed: 123}
	a1, _ := NewAdapter(m, cfg)
	cfg.FFA = true
	a2, _ := NewAdapter(m, cfg)
	cfg.ASeed = 124
	a3, _ := NewAdapter(m, cfg)
	for l := 0; l < 2; l++ {
		for _, mod := range []string{"q_proj", "down_proj"} {
			A1, B1, ok := a1.Matrices(l, mod)
			A2, _, _ := a2.Matrices(l, mod)
			A3, _, _ := a3.Matrices(l, mod)
			if !ok {
				t.Fatalf("%d %s missing", l, mod)
			}
			in := len(A1) / 4
			bound := 1 / math.Sqrt(float64(in))
			for i, v := range A1 {
				if math.Abs(float64(v)) > bound || v != A2[i] {
					t.Fatalf("A[%d]=%v: bound %v, FFA copy %v", i, v, bound, A2[i])
				}
			}
			same := true
			for i := range A1 {
				same = same && A1[i] == A3[i]
			}
			if same {
				t.Errorf("seeds 123 and 124 gave the same A")
			}
			for _, v := range B1 {
				if v != 0 {
					t.Fatal("B not zero")
				}
			}
		}
	}
	// Moments of a large draw: U(−b, b) has mean 0 and variance b²/3.
	A := make([]float32, 100000)
	InitA(A, 7, 0, "q_proj", 64)
	var s, ss float64
	for _, v := range A {
		s += float64(v)
		ss += float64(v) * float64(v)
	}
	mean, vr := s/float64(len(A)), ss/float64(len(A))
	if want := 1.0 / 64 / 3; math.Abs(mean) > 0.002 || math.Abs(vr-want)/want > 0.02 {
		t.Errorf("mean %v variance %v, want 0 and %v", mean, vr, want)
	}
	if a1.NumTrainable() != 2*(4*8+8*4)+2*(4*12+8*4) || a2.NumTrainable() != 2*(8*4)+2*(8*4) {
		t.Errorf("NumTrainable %d / %d", a1.NumTrainable(), a2.NumTrainable())
	}
}

func TestTrainerErrors(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 2, 2, 0), 15)
	a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"q_proj"}})
	tr := m.NewTrainer(a, TrainerOptions{MaxBatch: 2, MaxSeq: 4})
	g := make([]float32, a.NumTrainable())
	l := make([]float64, 3)
	for _, c := range []struct {
		batch []Example
		msg   string
	}{
		{[]Example{{InputIDs: []int{1, 2}, Labels: []int{1}}}, "example 0: 2 input ids but 1 labels"},
		{[]Example{{InputIDs: []int{1, 2, 3, 4, 5}, Labels: []int{1, 2, 3, 4, 5}}}, "exceed MaxSeq 4"},
		{[]Example{{InputIDs: []int{1}, Labels: []int{1}}, {InputIDs: []int{1, 16}, Labels: []int{1, 2}}}, "example 1 input_ids: token 16 at position 1"},
		{[]Example{{InputIDs: []int{1, 2}, Labels: []int{1, -1}}}, "example 0: label -1 at position 1"},
		{make([]Example, 3), "exceeds the trainer's MaxBatch 2"},
	} {
		err := tr.BatchGrad(c.batch, g, l)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("error %v, want one containing %q", err, c.msg)
		}
	}
	if err := tr.BatchGrad(nil, g[:1], l); err == nil || !strings.Contains(err.Error(), "NumTrainable") {
		t.Errorf("short grad: %v", err)
	}
	if _, err := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"lm_head"}}); err == nil {
		t.Error("unknown target module accepted")
	}
	if _, err := NewAdapter(m, LoRAConfig{R: 0, Alpha: 4, TargetModules: []string{"q_proj"}}); err == nil {
		t.Error("rank 0 accepted")
	}
}

// TestNoAllocationsPerStep: after warm-up a training step allocates nothing.
func TestNoAllocationsPerStep(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 4, 2, 0), 16)
	a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, Dropout: 0.1, TargetModules: allModules})
	batch := testBatch()
	tr := m.NewTrainer(a, TrainerOptions{MaxBatch: 4, MaxSeq: 8})
	per := newGrads(4, a.NumTrainable())
	g := make([]float32, a.NumTrainable())
	l := make([]float64, 4)
	tr.PerExampleGrads(batch, per, l)
	if n := testing.AllocsPerRun(5, func() { tr.PerExampleGrads(batch, per, l) }); n != 0 {
		t.Errorf("PerExampleGrads: %v allocations per step", n)
	}
	if n := testing.AllocsPerRun(5, func() { tr.BatchGrad(batch, g, l) }); n != 0 {
		t.Errorf("BatchGrad: %v allocations per step", n)
	}
	if n := testing.AllocsPerRun(5, func() { tr.Losses(batch, l) }); n != 0 {
		t.Errorf("Losses: %v allocations per step", n)
	}
}

func TestAdapterClone(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 2, 2, 0), 17)
	for _, ffa := range []bool{false, true} {
		a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, FFA: ffa, TargetModules: []string{"q_proj", "up_proj"}, ASeed: 3})
		randomizeB(a, 1)
		b := a.Clone()
		A1, B1, _ := a.Matrices(1, "up_proj")
		A2, B2, _ := b.Matrices(1, "up_proj")
		for i := range A1 {
			if A1[i] != A2[i] {
				t.Fatal("A not copied")
			}
		}
		for i := range B1 {
			if B1[i] != B2[i] {
				t.Fatal("B not copied")
			}
		}
		b.Trainable()[0] += 1
		A2[0] += 1
		if a.Trainable()[0] == b.Trainable()[0] || A1[0] == A2[0] {
			t.Fatal("clone shares memory with the original")
		}
		if _, _, ok := a.Matrices(0, "k_proj"); ok {
			t.Error("untargeted module reported")
		}
	}
}

// TestParallelMatchesSerial: splitting the non-GEMM work across workers
// gives bit-identical results to one worker, on a model large enough for
// every parallel section to split.
func TestParallelMatchesSerial(t *testing.T) {
	c := &hf.Config{Architectures: []string{hf.ArchLlama}, HiddenSize: 64, IntermediateSize: 160, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16, VocabSize: 300, RMSNormEps: 1e-5, RopeTheta: 10000, InitializerRng: 0.1}
	m := tinyModel(t, c, 61)
	a, _ := NewAdapter(m, LoRAConfig{R: 4, Alpha: 8, Dropout: 0.1, TargetModules: allModules, ASeed: 2})
	randomizeB(a, 3)
	r := newTestRand()
	batch := make([]Example, 6)
	for i := range batch {
		n := 100 + 20*i
		ids, labels := make([]int, n), make([]int, n)
		for j := range ids {
			ids[j] = r.IntN(300)
			labels[j] = ids[j]
			if r.IntN(5) == 0 {
				labels[j] = -100
			}
		}
		batch[i] = Example{InputIDs: ids, Labels: labels}
	}
	run := func(workers int) ([][]float32, []float64) {
		tr := m.NewTrainer(a, TrainerOptions{MaxBatch: 6, MaxSeq: 200, DropoutSeed: 5})
		tr.e.pool.stop()
		tr.e.pool = newPool(workers)
		tr.e.workers, tr.e.attnWorkers = workers, min(workers, len(tr.e.scratch))
		if workers > 1 && tr.e.attnWorkers < 2 {
			tr.e.scratch = append(tr.e.scratch, make([]float32, len(tr.e.scratch[0])))
			tr.e.attnWorkers = 2
		}
		g := newGrads(len(batch), a.NumTrainable())
		l := make([]float64, len(batch))
		if err := tr.PerExampleGrads(batch, g, l); err != nil {
			t.Fatal(err)
		}
		if workers > 1 {
			g2, l2 := newGrads(len(batch), a.NumTrainable()), make([]float64, len(batch))
			if n := testing.AllocsPerRun(2, func() { tr.BatchGrad(batch, g2[0], l2) }); n != 0 {
				t.Errorf("parallel BatchGrad: %v allocations per step", n)
			}
			tr.SetDropoutSeed(5)
		}
		return g, l
	}
	g1, l1 := run(1)
	g4, l4 := run(4)
	for i := range l1 {
		if l1[i] != l4[i] {
			t.Fatalf("loss %d: serial %v, parallel %v", i, l1[i], l4[i])
		}
		for j := range g1[i] {
			if g1[i][j] != g4[i][j] {
				t.Fatalf("example %d parameter %d: serial %v, parallel %v", i, j, g1[i][j], g4[i][j])
			}
		}
	}
}
