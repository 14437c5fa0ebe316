package model

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/model/hf"
)

// TestKVCacheMatchesFullForward: the logits each generated token was drawn
// from equal the full forward pass over prompt+generated tokens.
func TestKVCacheMatchesFullForward(t *testing.T) {
	for _, c := range []*hf.Config{
		tinyConfig(hf.ArchLlama, 4, 2, 0),
		tinyConfig(hf.ArchQwen2, 4, 1, 6),
	} {
		m := tinyModel(t, c, 21)
		a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, TargetModules: allModules, ASeed: 3})
		randomizeB(a, 8)
		for _, opts := range []GenerateOptions{
			{MaxNewTokens: 10},
			{MaxNewTokens: 10, Temperature: 0.9, TopP: 0.8, Seed: 5},
		} {
			prompt := []int{1, 7, 3}
			var seen [][]float32
			out, err := m.generate(a, prompt, opts, func(l []float32) { seen = append(seen, append([]float32(nil), l...)) })
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 10 || len(seen) != 10 {
				t.Fatalf("generated %d tokens, %d logit rows", len(out), len(seen))
			}
			full, err := m.Logits(a, append(append([]int(nil), prompt...), out...))
			if err != nil {
				t.Fatal(err)
			}
			for i, row := range seen {
				ref := full[len(prompt)-1+i]
				for j := range row {
					if d := math.Abs(float64(row[j] - ref[j])); d > 1e-5*math.Max(1, math.Abs(float64(ref[j]))) {
						t.Fatalf("%s step %d vocab %d: cached %v, full %v", c.Architecture(), i, j, row[j], ref[j])
					}
				}
			}
			again, _ := m.Generate(a, prompt, opts)
			for i := range out {
				if again[i] != out[i] {
					t.Fatalf("same options gave different tokens: %v vs %v", out, again)
				}
			}
		}
	}
}

func TestGreedyIsArgmaxAndEOS(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 2, 2, 0), 22)
	prompt := []int{4, 2}
	out, err := m.Generate(nil, prompt, GenerateOptions{MaxNewTokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	seq := append([]int(nil), prompt...)
	for _, tok := range out {
		lg, _ := m.Logits(nil, seq)
		row := lg[len(seq)-1]
		best := 0
		for j := range row {
			if row[j] > row[best] {
				best = j
			}
		}
		if tok != best {
			t.Fatalf("greedy chose %d, argmax %d", tok, best)
		}
		seq = append(seq, tok)
	}
	// Stop at the first occurrence of the last new token.
	eos := out[len(out)-1]
	k := slices.Index(out, eos)
	stop, _ := m.Generate(nil, prompt, GenerateOptions{MaxNewTokens: 6, EOS: []int{eos}})
	if !slices.Equal(stop, out[:k+1]) {
		t.Errorf("EOS %d: got %v from %v", eos, stop, out)
	}
}

func TestSampleTopP(t *testing.T) {
	logits := []float32{0, float32(math.Log(6)), float32(math.Log(3)), float32(math.Log(1))} // p ∝ 1, 6, 3, 1
	probs, idx := make([]float64, 4), make([]int, 4)
	counts := make([]int, 4)
	rng := newTestRand()
	for i := 0; i < 20000; i++ {
		counts[sample(logits, GenerateOptions{Temperature: 1, TopP: 0.8}, rng, probs, idx)]++
	}
	// Nucleus at 0.8: {1 (6/11), 2 (3/11)} reaches 9/11 ≥ 0.8; renormalised 2/3, 1/3.
	if counts[0] != 0 || counts[3] != 0 {
		t.Errorf("tokens outside the nucleus drawn: %v", counts)
	}
	if f := float64(counts[1]) / 20000; math.Abs(f-2.0/3) > 0.02 {
		t.Errorf("P(token 1) = %v, want 2/3", f)
	}
	for i := range counts {
		counts[i] = 0
	}
	for i := 0; i < 22000; i++ {
		counts[sample(logits, GenerateOptions{Temperature: 1}, rng, probs, idx)]++
	}
	if f := float64(counts[0]) / 22000; math.Abs(f-1.0/11) > 0.01 {
		t.Errorf("P(token 0) = %v, want 1/11", f)
	}
}

func TestGenerateErrors(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 2, 2, 0), 23)
	for _, c := range []struct {
		prompt []int
		o      GenerateOptions
		msg    string
	}{
		{nil, GenerateOptions{MaxNewTokens: 1}, "empty prompt"},
		{[]int{1, 99}, GenerateOptions{MaxNewTokens: 1}, "token 99 at position 1"},
		{[]int{1}, GenerateOptions{MaxNewTokens: 1, TopP: 1.5}, "top-p"},
		{[]int{1}, GenerateOptions{MaxNewTokens: 1, Temperature: -1}, "temperature"},
	} {
		if _, err := m.Generate(nil, c.prompt, c.o); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("error %v, want %q", err, c.msg)
		}
	}
	if _, err := m.Logits(nil, []int{-1}); err == nil {
		t.Error("negative token accepted")
	}
}

func TestSlidingWindowLimit(t *testing.T) {
	c := tinyConfig(hf.ArchMistral, 2, 2, 0)
	w := 4
	c.SlidingWindow = &w
	m := tinyModel(t, c, 24)
	if _, err := m.Logits(nil, []int{1, 2, 3, 4}); err != nil {
		t.Fatalf("sequence of window length: %v", err)
	}
	if _, err := m.Logits(nil, []int{1, 2, 3, 4, 5}); err == nil || !strings.Contains(err.Error(), "sliding_window 4") {
		t.Errorf("longer sequence: %v", err)
	}
	if _, err := m.Generate(nil, []int{1, 2}, GenerateOptions{MaxNewTokens: 3}); err == nil {
		t.Error("generation past the window accepted")
	}
	c2 := tinyConfig(hf.ArchQwen2, 2, 2, 0)
	c2.SlidingWindow = &w
	if _, err := tinyModel(t, c2, 25).Logits(nil, []int{1, 2, 3, 4, 5}); err != nil {
		t.Errorf("Qwen2 applies sliding_window: %v", err)
	}
}
