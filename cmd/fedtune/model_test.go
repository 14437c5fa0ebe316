package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
)

func runModelCmd(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// modelFixture writes a tiny base model and a LoRA adapter with non-zero B.
func modelFixture(t *testing.T) (base, adapter string) {
	t.Helper()
	dir := t.TempDir()
	base, adapter = filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
	c := &hf.Config{Architectures: []string{hf.ArchLlama}, HiddenSize: 16, IntermediateSize: 32, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 4, VocabSize: 40, RMSNormEps: 1e-5, RopeTheta: 10000, InitializerRng: 0.2}
	if err := hf.InitCheckpoint(base, c, 3, safetensors.F32, nil); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	a, err := model.NewAdapter(m, model.LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"q_proj", "v_proj", "down_proj"}, ASeed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Trainable() {
		a.Trainable()[i] = float32(math.Sin(float64(i))) * 0.5
	}
	if err := a.SaveAdapter(adapter, base); err != nil {
		t.Fatal(err)
	}
	return base, adapter
}

func logitsJSON(t *testing.T, args ...string) [][]float64 {
	t.Helper()
	out, err := runModelCmd(t, newModelLogitsCmd(), append(args, "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Logits [][]float64 }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v in %q", err, out)
	}
	return res.Logits
}

// TestModelLogitsMergeGenerate: logits with --adapter equal the logits of
// the merged checkpoint, and generation is greedy and reproducible.
func TestModelLogitsMergeGenerate(t *testing.T) {
	base, adapter := modelFixture(t)
	plain := logitsJSON(t, "--model", base, "--tokens", "1,2,3,4")
	withA := logitsJSON(t, "--model", base, "--adapter", adapter, "--tokens", "1,2,3,4")
	if len(withA) != 4 || len(withA[0]) != 40 {
		t.Fatalf("logits shape %d×%d, want 4×40", len(withA), len(withA[0]))
	}
	merged := filepath.Join(t.TempDir(), "merged")
	out, err := runModelCmd(t, newModelMergeCmd(), "--model", base, "--adapter", adapter, "--out", merged, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"digest": "sha256:`) {
		t.Errorf("merge output %s", out)
	}
	viaMerge := logitsJSON(t, "--model", merged, "--tokens", "1,2,3,4")
	var moved float64
	for i := range withA {
		for j := range withA[i] {
			if math.Abs(withA[i][j]-viaMerge[i][j]) > 1e-5 {
				t.Fatalf("logits[%d][%d]: adapter %v, merged %v", i, j, withA[i][j], viaMerge[i][j])
			}
			moved = math.Max(moved, math.Abs(withA[i][j]-plain[i][j]))
		}
	}
	if moved < 1e-3 {
		t.Fatalf("adapter changed logits by only %v", moved)
	}
	gen := func(extra ...string) []int {
		out, err := runModelCmd(t, newModelGenerateCmd(), append([]string{"--model", base, "--adapter", adapter, "--tokens", "5,6", "--max-new-tokens", "4", "--json"}, extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		var res struct{ IDs []int }
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		return res.IDs
	}
	g := gen()
	if len(g) != 4 {
		t.Fatalf("generated %v", g)
	}
	// The first greedy token is the argmax of the last logits row.
	last := logitsJSON(t, "--model", base, "--adapter", adapter, "--tokens", "5,6")[1]
	best := 0
	for j := range last {
		if last[j] > last[best] {
			best = j
		}
	}
	if g[0] != best {
		t.Errorf("first greedy token %d, argmax %d", g[0], best)
	}
	s1, s2 := gen("--temperature", "1", "--seed", "9"), gen("--temperature", "1", "--seed", "9")
	for i := range s1 {
		if s1[i] != s2[i] {
			t.Fatalf("sampling with one seed differs: %v vs %v", s1, s2)
		}
	}
}

func TestModelCommandErrors(t *testing.T) {
	base, adapter := modelFixture(t)
	for _, c := range []struct {
		cmd  *cobra.Command
		args []string
		msg  string
	}{
		{newModelLogitsCmd(), []string{"--model", base, "--tokens", "1,a"}, `--tokens: entry 2 ("a")`},
		{newModelLogitsCmd(), []string{"--model", base, "--tokens", "1,40"}, "token 40 at position 1"},
		{newModelLogitsCmd(), []string{"--tokens", "1"}, "--model is required"},
		{newModelLogitsCmd(), []string{"--model", adapter, "--tokens", "1"}, "config.json"},
		{newModelGenerateCmd(), []string{"--model", base, "--tokens", "1", "--prompt", "x"}, "exactly one of --prompt and --tokens"},
		{newModelGenerateCmd(), []string{"--model", base, "--tokens", "1", "--max-new-tokens", "0"}, "--max-new-tokens"},
		{newModelGenerateCmd(), []string{"--model", base, "--prompt", "hi"}, "tokenizer.json"},
		{newModelMergeCmd(), []string{"--model", base, "--adapter", adapter}, "--out is required"},
		{newModelMergeCmd(), []string{"--model", base, "--adapter", base, "--out", t.TempDir()}, "adapter_config.json"},
	} {
		_, err := runModelCmd(t, c.cmd, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %v: error %v, want one containing %q", c.cmd.Name(), c.args, err, c.msg)
		}
	}
}

// TestBenchTrainSmall runs the training benchmark on a tiny model.
func TestBenchTrainSmall(t *testing.T) {
	out, err := runModelCmd(t, newBenchTrainCmd(), "--hidden", "32", "--layers", "1", "--heads", "4", "--intermediate", "64",
		"--vocab", "64", "--seq", "16", "--batch", "2", "--r", "4", "--steps", "1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res trainBenchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.TokensPerStep != 32 || res.BatchGrad.TokensPerSec <= 0 || res.PerExample.TokensPerSec <= 0 || res.PerExampleOverBatch <= 0 {
		t.Errorf("result %+v", res)
	}
	if f := res.BatchGrad.GemmFraction; !(f > 0 && f < 1) {
		t.Errorf("GEMM fraction %v", f)
	}
	if res.BatchGrad.AllocsPerStep > 20 || res.PerExample.AllocsPerStep > 20 {
		t.Errorf("allocations per step: %v / %v", res.BatchGrad.AllocsPerStep, res.PerExample.AllocsPerStep)
	}
}

// TestModelGeneratePrompt encodes a prompt with the checkpoint's
// tokenizer.json and decodes the generated ids.
func TestModelGeneratePrompt(t *testing.T) {
	tok, err := os.ReadFile("../../model/tokenizer/testdata/trained_tokenizer.json")
	if err != nil {
		t.Skipf("tokenizer fixture: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "m")
	c := &hf.Config{Architectures: []string{hf.ArchLlama}, HiddenSize: 16, IntermediateSize: 32, NumHiddenLayers: 1,
		NumAttentionHeads: 2, NumKeyValueHeads: 2, HeadDim: 8, VocabSize: 512, RMSNormEps: 1e-5, RopeTheta: 10000}
	if err := hf.InitCheckpoint(dir, c, 1, safetensors.BF16, tok); err != nil {
		t.Fatal(err)
	}
	out, err := runModelCmd(t, newModelGenerateCmd(), "--model", dir, "--prompt", "the patient", "--max-new-tokens", "5", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		PromptIDs []int `json:"prompt_ids"`
		IDs       []int `json:"ids"`
		Text      *string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.PromptIDs) == 0 || len(res.IDs) == 0 || len(res.IDs) > 5 || res.Text == nil {
		t.Errorf("output %s", out)
	}
	// The text output is the decoded ids.
	plain, err := runModelCmd(t, newModelGenerateCmd(), "--model", dir, "--prompt", "the patient", "--max-new-tokens", "5")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSuffix(plain, "\n") != *res.Text {
		t.Errorf("text output %q, JSON text %q", plain, *res.Text)
	}
}
