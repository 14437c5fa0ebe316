package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
	"github.com/fedtune/fedtune/model/tokenizer"
)

func trainFixture(t *testing.T) (modelDir, data, eval string) {
	t.Helper()
	dir := t.TempDir()
	var texts []string
	for i := 0; i < 440; i++ {
		texts = append(texts, fmt.Sprintf("%s %s today.", []string{"the patient", "the nurse"}[i%2], []string{"has fever", "is stable", "needs rest"}[(i/2)%3]))
	}
	tj, err := tokenizer.TrainByteLevelBPE(texts[:60], 270)
	if err != nil {
		t.Fatal(err)
	}
	c := &hf.Config{Architectures: []string{hf.ArchLlama}, HiddenSize: 16, IntermediateSize: 32, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 4, VocabSize: 270, RMSNormEps: 1e-5, RopeTheta: 10000,
		InitializerRng: 0.2, MaxPositionEmbeddings: 128}
	modelDir = filepath.Join(dir, "model")
	if err := hf.InitCheckpoint(modelDir, c, 5, safetensors.F32, tj); err != nil {
		t.Fatal(err)
	}
	write := func(name string, lines []string) string {
		var b bytes.Buffer
		for _, s := range lines {
			j, _ := json.Marshal(map[string]string{"text": s})
			b.Write(j)
			b.WriteByte('\n')
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b.Bytes(), 0o644)
		return p
	}
	return modelDir, write("train.jsonl", texts[:400]), write("eval.jsonl", texts[400:])
}

func runTrain(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newTrainCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestTrainCommandWithLedger(t *testing.T) {
	modelDir, data, eval := trainFixture(t)
	site := t.TempDir()
	if _, err := runDP(t, "ledger", "init", "--site-dir", site, "--epsilon-cap", "4.5", "--delta", "1e-4"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "a")
	args := []string{"--model", modelDir, "--data", data, "--eval-data", eval, "--site-dir", site,
		"--epsilon", "4", "--steps", "25", "--expected-batch-size", "32", "--lr", "0.02", "--lora-r", "4",
		"--target", "q_proj,v_proj,down_proj", "--accountant", "pld", "--json"}
	stdout, err := runTrain(t, append(args, "--out", out)...)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err, stdout)
	}
	if eps, _ := r["epsilon"].(float64); eps > 4 || eps < 3.9 {
		t.Errorf("epsilon %v", r["epsilon"])
	}
	if !(r["eval_loss_after"].(float64) < r["eval_loss_before"].(float64)) {
		t.Errorf("eval loss %v → %v", r["eval_loss_before"], r["eval_loss_after"])
	}
	show, err := runDP(t, "ledger", "show", "--site-dir", site, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		EpsilonSpent float64 `json:"epsilon_spent"`
		Events       []any
	}
	json.Unmarshal([]byte(show), &s)
	t.Logf("ledger after the first run: ε spent %v", s.EpsilonSpent)
	if len(s.Events) != 1 || s.EpsilonSpent <= 0 {
		t.Errorf("ledger after run: %s", show)
	}
	// The same run again would exceed the cap: exit code 3, nothing written.
	out2 := filepath.Join(t.TempDir(), "b")
	_, err = runTrain(t, append(args, "--out", out2)...)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitBudget || !strings.Contains(err.Error(), "remaining") {
		t.Fatalf("second run: %v", err)
	}
	if _, err := os.Stat(out2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused run created %s", out2)
	}
}

func TestTrainCommandFlags(t *testing.T) {
	modelDir, data, _ := trainFixture(t)
	out := filepath.Join(t.TempDir(), "x")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", data, "--out", out, "--no-dp"}, "--model is required"},
		{[]string{"--model", modelDir, "--data", data, "--out", out, "--noise-multiplier", "1", "--delta", "1e-5", "--accountant", "x"}, "--accountant"},
		{[]string{"--model", modelDir, "--data", data, "--out", out, "--noise-multiplier", "1", "--delta", "0.01"}, "delta must be below 1/records"},
		{[]string{"--model", modelDir, "--data", data, "--out", out, "--delta", "1e-5"}, "target epsilon"},
		{[]string{"--model", modelDir, "--data", data, "--out", out, "--no-dp", "--optimizer", "lion"}, "optimizer must be adamw or sgd"},
	} {
		if _, err := runTrain(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	stdout, err := runTrain(t, "--model", modelDir, "--data", data, "--out", out, "--no-dp", "--steps", "3")
	if err != nil || !strings.Contains(stdout, "NON-PRIVATE BASELINE") {
		t.Errorf("no-dp: %v\n%s", err, stdout)
	}
}
