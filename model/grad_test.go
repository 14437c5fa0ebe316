package model

import (
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/kernels"
	"github.com/fedtune/fedtune/model/hf"
)

// tinyConfig returns a 2-layer config small enough for finite differences.
func tinyConfig(arch string, heads, kv, headDim int) *hf.Config {
	c := &hf.Config{
		Architectures: []string{arch}, HiddenSize: 8, IntermediateSize: 12, NumHiddenLayers: 2,
		NumAttentionHeads: heads, NumKeyValueHeads: kv, HeadDim: headDim, VocabSize: 16,
		MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000, InitializerRng: 0.4,
	}
	if c.HeadDim == 0 {
		c.HeadDim = c.HiddenSize / heads
	}
	return c
}

// tinyModel builds a model with random weights, norms included.
func tinyModel(t testing.TB, c *hf.Config, seed int64) *Model {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ts := hf.InitTensors(c, seed)
	r := rand.New(rand.NewPCG(uint64(seed), 99))
	names := make([]string, 0, len(ts))
	for name := range ts {
		names = append(names, name)
	}
	sort.Strings(names) // map order is random; the model must not be
	for _, name := range names {
		v := ts[name]
		if strings.HasSuffix(name, "norm.weight") {
			for i := range v {
				v[i] = float32(0.5 + r.Float64())
			}
		}
	}
	m, err := New(c, ts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// randomizeB gives B random values so that gradients of A are not zero.
func randomizeB(a *Adapter, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	for l := range a.lw.mods {
		for _, lm := range a.lw.mods[l] {
			for i := range lm.B {
				lm.B[i] = float32(r.NormFloat64() * 0.3)
			}
		}
	}
}

func convertWeights[F kernels.Float](w *weights[float32]) *weights[F] {
	out := &weights[F]{embed: convert[F](w.embed), norm: convert[F](w.norm), invFreq: w.invFreq}
	if &w.lmHead[0] == &w.embed[0] {
		out.lmHead = out.embed
	} else {
		out.lmHead = convert[F](w.lmHead)
	}
	out.layers = make([]layerW[F], len(w.layers))
	for l, lw := range w.layers {
		o := &out.layers[l]
		o.inNorm, o.postNorm = convert[F](lw.inNorm), convert[F](lw.postNorm)
		for m := range lw.w {
			o.w[m], o.b[m] = convert[F](lw.w[m]), convert[F](lw.b[m])
		}
	}
	return out
}

// viewLoRA copies a's LoRA matrices into precision F with the trainable
// ones as views of one flat vector in a's layout.
func viewLoRA[F kernels.Float](a *Adapter) (*loraW[F], []F) {
	flat := convert[F](a.flat)
	lo := convertLoRA[F](&a.lw)
	lo.scale = F(a.Config.Scale())
	for l := range lo.mods {
		for m := range lo.mods[l] {
			lm := &lo.mods[l][m]
			if lm.B == nil {
				continue
			}
			out, in := a.d.shape(m)
			if lm.offA >= 0 {
				lm.A = flat[lm.offA : lm.offA+a.Config.R*in]
			}
			lm.B = flat[lm.offB : lm.offB+out*a.Config.R]
		}
	}
	return lo, flat
}

func testBatch() []Example {
	return []Example{
		{InputIDs: []int{1, 5, 9, 2, 14}, Labels: []int{-100, 5, 9, 2, 14}},
		{InputIDs: []int{3, 3, 7}, Labels: []int{3, -100, 7}},
		{InputIDs: []int{0, 15, 4, 8, 11, 6}, Labels: []int{-100, -100, 4, 8, -100, 6}},
		{InputIDs: []int{12, 13}, Labels: []int{12, -100}}, // no target tokens
	}
}

type gradCase struct {
	name    string
	arch    string
	heads   int
	kv      int
	headDim int
	mutate  func(c *hf.Config)
	lora    LoRAConfig
}

var allModules = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

func gradCases() []gradCase {
	return []gradCase{
		{name: "llama/MHA/LoRA", arch: hf.ArchLlama, heads: 2, kv: 2, lora: LoRAConfig{R: 2, Alpha: 4, TargetModules: allModules, ASeed: 1}},
		{name: "llama/MHA/FFA", arch: hf.ArchLlama, heads: 2, kv: 2, lora: LoRAConfig{R: 2, Alpha: 4, TargetModules: allModules, FFA: true, ASeed: 1}},
		{name: "llama/GQA/LoRA", arch: hf.ArchLlama, heads: 4, kv: 2, lora: LoRAConfig{R: 3, Alpha: 6, TargetModules: allModules, ASeed: 2}},
		{name: "llama/GQA/FFA", arch: hf.ArchLlama, heads: 4, kv: 2, lora: LoRAConfig{R: 3, Alpha: 6, TargetModules: allModules, FFA: true, ASeed: 2}},
		{name: "qwen2/qkv-bias/MHA/LoRA", arch: hf.ArchQwen2, heads: 2, kv: 2, lora: LoRAConfig{R: 2, Alpha: 2, TargetModules: allModules, ASeed: 3}},
		{name: "qwen2/qkv-bias/GQA/LoRA/tied/head_dim", arch: hf.ArchQwen2, heads: 4, kv: 1, headDim: 6,
			mutate: func(c *hf.Config) { c.TieWordEmbeddings = true },
			lora:   LoRAConfig{R: 2, Alpha: 2, TargetModules: allModules, ASeed: 3}},
		{name: "qwen2/qkv-bias/GQA/FFA", arch: hf.ArchQwen2, heads: 4, kv: 2, lora: LoRAConfig{R: 2, Alpha: 2, TargetModules: allModules, FFA: true, ASeed: 4}},
		{name: "llama/attention_bias/dropout/rsLoRA/llama3-rope", arch: hf.ArchLlama, heads: 4, kv: 2,
			mutate: func(c *hf.Config) {
				c.AttentionBias = true
				c.RopeScaling = &hf.RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 32}
			},
			lora: LoRAConfig{R: 4, Alpha: 8, Dropout: 0.3, RSLoRA: true, TargetModules: allModules, ASeed: 5}},
		{name: "mistral/GQA/FFA/dropout/q,v", arch: hf.ArchMistral, heads: 4, kv: 2,
			lora: LoRAConfig{R: 2, Alpha: 16, Dropout: 0.2, FFA: true, TargetModules: []string{"q_proj", "v_proj"}, ASeed: 6}},
	}
}

// TestEndToEndGradFiniteDifferences checks, in float64, the per-example
// LoRA gradients of a 2-layer model against central finite differences of
// each example's loss.
func TestEndToEndGradFiniteDifferences(t *testing.T) {
	for ci, gc := range gradCases() {
		t.Run(gc.name, func(t *testing.T) {
			c := tinyConfig(gc.arch, gc.heads, gc.kv, gc.headDim)
			if gc.mutate != nil {
				gc.mutate(c)
			}
			m := tinyModel(t, c, int64(ci+1))
			a, err := NewAdapter(m, gc.lora)
			if err != nil {
				t.Fatal(err)
			}
			randomizeB(a, uint64(ci))
			batch := testBatch()
			w64 := convertWeights[float64](&m.w)
			lo, flat := viewLoRA[float64](a)
			e := newEngine(m.d, w64, lo, len(batch), 8, true)
			e.dropSeed, e.dropStep = 42, 3
			grads := make([][]float64, len(batch))
			T, err := e.load(batch)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range e.segs {
				grads[i] = make([]float64, len(flat))
				e.tg = append(e.tg, gradTarget[float64]{s.start, s.start + s.n, grads[i]})
			}
			losses := make([]float64, len(batch))
			e.forward(T, true)
			e.losses(losses)
			e.backwardPass(T)
			allLosses := func(out []float64) {
				e.forward(T, true)
				e.losses(out)
			}
			if gmax := maxAbs(grads[3]); gmax != 0 || losses[3] != 0 {
				t.Fatalf("example without targets: loss %v, max |grad| %v; want 0, 0", losses[3], gmax)
			}
			gmax := make([]float64, len(batch))
			for i := range batch {
				if gmax[i] = maxAbs(grads[i]); gmax[i] == 0 && i != 3 {
					t.Fatalf("example %d: zero gradient", i)
				}
			}
			// Fourth-order differences with h = 1e-5: truncation error
			// ~h⁴ stays far below the tolerance even where the loss is
			// strongly curved, and rounding error ~1e-16·|loss|/h is ~1e-10.
			const h = 1e-5
			var f [4][]float64
			for k := range f {
				f[k] = make([]float64, len(batch))
			}
			worst := make([]float64, len(batch))
			for j := range flat {
				orig := flat[j]
				// Fourth-order central difference: truncation error O(h⁴).
				for k, s := range []float64{-2, -1, 1, 2} {
					flat[j] = orig + s*h
					allLosses(f[k])
				}
				flat[j] = orig
				for i := range batch[:3] {
					num := (f[0][i] - 8*f[1][i] + 8*f[2][i] - f[3][i]) / (12 * h)
					an := grads[i][j]
					rel := math.Abs(an-num) / math.Max(math.Max(math.Abs(an), math.Abs(num)), 1e-3*gmax[i])
					worst[i] = math.Max(worst[i], rel)
					if rel > 1e-6 {
						t.Fatalf("example %d, parameter %d: analytic %.12g, numeric %.12g (rel err %.3g)", i, j, an, num, rel)
					}
				}
			}
			t.Logf("%d parameters, losses %.4f, worst relative errors %.3g", len(flat), losses, worst)
		})
	}
}

func maxAbs(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
	}
	return m
}

// TestFloat32MatchesFloat64 checks the float32 trainer against the float64
// engine on the same weights.
func TestFloat32MatchesFloat64(t *testing.T) {
	for ci, gc := range gradCases() {
		t.Run(gc.name, func(t *testing.T) {
			c := tinyConfig(gc.arch, gc.heads, gc.kv, gc.headDim)
			if gc.mutate != nil {
				gc.mutate(c)
			}
			m := tinyModel(t, c, int64(ci+1))
			a, _ := NewAdapter(m, gc.lora)
			randomizeB(a, uint64(ci))
			batch := testBatch()
			tr := m.NewTrainer(a, TrainerOptions{MaxBatch: 4, MaxSeq: 8, DropoutSeed: 42})
			g32 := make([][]float32, len(batch))
			for i := range g32 {
				g32[i] = make([]float32, a.NumTrainable())
			}
			l32 := make([]float64, len(batch))
			if err := tr.PerExampleGrads(batch, g32, l32); err != nil {
				t.Fatal(err)
			}
			lo, flat := viewLoRA[float64](a)
			e := newEngine(m.d, convertWeights[float64](&m.w), lo, 4, 8, true)
			e.dropSeed = 42
			T, _ := e.load(batch)
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
				if math.Abs(l32[i]-l64[i]) > 1e-5*math.Max(1, l64[i]) {
					t.Errorf("example %d: loss float32 %v, float64 %v", i, l32[i], l64[i])
				}
				var num, den float64
				for j := range flat {
					d := float64(g32[i][j]) - g64[i][j]
					num += d * d
					den += g64[i][j] * g64[i][j]
				}
				if den > 0 && math.Sqrt(num/den) > 1e-4 {
					t.Errorf("example %d: float32 gradient relative error %.3g", i, math.Sqrt(num/den))
				}
			}
		})
	}
}
