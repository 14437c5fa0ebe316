package model

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
)

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestPEFTRoundTrip(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 4, 2, 0), 31)
	for _, cfg := range []LoRAConfig{
		{R: 2, Alpha: 16, Dropout: 0.05, TargetModules: []string{"q_proj", "v_proj"}, ASeed: 4},
		{R: 3, Alpha: 8, RSLoRA: true, FFA: true, TargetModules: allModules, ASeed: -9},
	} {
		a, err := NewAdapter(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		randomizeB(a, 2)
		dir := t.TempDir()
		if err := a.SaveAdapter(dir, "base-model"); err != nil {
			t.Fatal(err)
		}
		// PEFT's file layout and names.
		raw, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var js map[string]any
		if err := json.Unmarshal(raw, &js); err != nil {
			t.Fatal(err)
		}
		if js["peft_type"] != "LORA" || js["r"] != float64(cfg.R) || js["lora_alpha"] != cfg.Alpha || js["use_rslora"] != cfg.RSLoRA || js["task_type"] != "CAUSAL_LM" {
			t.Errorf("adapter_config.json: %s", raw)
		}
		if _, ok := js["ffa"]; ok {
			t.Error("fedtune-only key in adapter_config.json")
		}
		f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		ti, ok := f.Info("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight")
		if !ok || ti.DType != safetensors.F32 || ti.Shape[0] != m.d.KVD || ti.Shape[1] != cfg.R {
			t.Errorf("v_proj lora_B: %+v", ti)
		}
		f.Close()

		b, err := LoadAdapter(dir, m)
		if err != nil {
			t.Fatal(err)
		}
		if b.Config.FFA != cfg.FFA || b.Config.ASeed != cfg.ASeed || b.Config.RSLoRA != cfg.RSLoRA || b.Config.Dropout != cfg.Dropout {
			t.Errorf("config %+v, want %+v", b.Config, cfg)
		}
		if b.NumTrainable() != a.NumTrainable() {
			t.Fatalf("NumTrainable %d vs %d", b.NumTrainable(), a.NumTrainable())
		}
		for i, v := range a.Trainable() {
			if b.Trainable()[i] != v {
				t.Fatalf("parameter %d: %v vs %v", i, b.Trainable()[i], v)
			}
		}
		for l := 0; l < 2; l++ {
			for _, mod := range cfg.TargetModules {
				A1, _, _ := a.Matrices(l, mod)
				A2, _, _ := b.Matrices(l, mod)
				for i := range A1 {
					if A1[i] != A2[i] {
						t.Fatalf("A differs")
					}
				}
			}
		}
	}
}

func TestLoadAdapterErrors(t *testing.T) {
	m := tinyModel(t, tinyConfig(hf.ArchLlama, 4, 2, 0), 32)
	a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"q_proj"}})
	dir := t.TempDir()
	if err := a.SaveAdapter(dir, ""); err != nil {
		t.Fatal(err)
	}
	// A model of another shape: wrong tensor shapes.
	other := tinyModel(t, tinyConfig(hf.ArchLlama, 2, 2, 0), 33)
	other.d.D = 8
	c2 := tinyConfig(hf.ArchLlama, 2, 2, 0)
	c2.HiddenSize, c2.HeadDim = 12, 6
	o2 := tinyModel(t, c2, 34)
	if _, err := LoadAdapter(dir, o2); err == nil || !strings.Contains(err.Error(), "shape") || !strings.Contains(err.Error(), "q_proj.lora_A") {
		t.Errorf("shape mismatch: %v", err)
	}
	// Missing tensor: claim an extra target module.
	raw, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	bad := strings.Replace(string(raw), `"q_proj"`, `"q_proj", "k_proj"`, 1)
	os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(bad), 0o644)
	if _, err := LoadAdapter(dir, m); err == nil || !strings.Contains(err.Error(), "k_proj.lora_A.weight") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing tensor: %v", err)
	}
	// Unexpected tensor: drop q_proj from the config.
	bad = strings.Replace(string(raw), `"q_proj"`, `"v_proj"`, 1)
	os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(bad), 0o644)
	if _, err := LoadAdapter(dir, m); err == nil || !strings.Contains(err.Error(), "adapter_model.safetensors") {
		t.Errorf("unexpected tensor: %v", err)
	}
}

// TestMergeEqualsAdapterForward: the merged model without adapter gives the
// logits of the base model with the adapter, in memory and through a
// written checkpoint.
func TestMergeEqualsAdapterForward(t *testing.T) {
	c := tinyConfig(hf.ArchQwen2, 4, 2, 0)
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	if err := hf.InitCheckpoint(base, c, 41, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	m, err := Load(base)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewAdapter(m, LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"q_proj", "o_proj", "down_proj"}, ASeed: 2})
	r := newTestRand()
	for i := range a.Trainable() {
		a.Trainable()[i] = float32(r.NormFloat64() * 0.5)
	}
	tokens := []int{3, 1, 4, 1, 5, 9, 2, 6}
	want, _ := m.Logits(a, tokens)
	baseLogits, _ := m.Logits(nil, tokens)
	check := func(name string, got [][]float32) {
		t.Helper()
		var moved float64
		for i := range want {
			for j := range want[i] {
				if d := math.Abs(float64(got[i][j] - want[i][j])); d > 1e-5*math.Max(1, math.Abs(float64(want[i][j]))) {
					t.Fatalf("%s: logits[%d][%d] = %v, adapter forward %v", name, i, j, got[i][j], want[i][j])
				}
				moved = math.Max(moved, math.Abs(float64(want[i][j]-baseLogits[i][j])))
			}
		}
		if moved < 1e-3 {
			t.Fatalf("the adapter barely changes the logits (%v); the test would not see a broken merge", moved)
		}
	}
	mm := m.Merge(a)
	got, _ := mm.Logits(nil, tokens)
	check("in memory", got)

	adir, out := filepath.Join(dir, "adapter"), filepath.Join(dir, "merged")
	if err := a.SaveAdapter(adir, base); err != nil {
		t.Fatal(err)
	}
	if err := MergeCheckpoint(base, adir, out); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = m2.Logits(nil, tokens)
	check("checkpoint", got)
}
