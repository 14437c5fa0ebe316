package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/dp/ledger"
	"github.com/fedtune/fedtune/dp/ledger/ledgerfs"
	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
	"github.com/fedtune/fedtune/model/tokenizer"
)

// corpus returns n short records with a strong, learnable pattern.
func corpus(n, offset int) []string {
	subjects := []string{"the patient", "the client", "the nurse", "the doctor"}
	verbs := []string{"reports fever", "takes aspirin", "needs rest", "is stable"}
	out := make([]string, n)
	for i := range out {
		k := i + offset
		out[i] = fmt.Sprintf("%s %s today.", subjects[k%4], verbs[(k/4)%4])
	}
	return out
}

func writeText(t *testing.T, path string, texts []string) {
	t.Helper()
	var b bytes.Buffer
	for _, s := range texts {
		j, _ := json.Marshal(map[string]string{"text": s})
		b.Write(j)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

type fixture struct {
	modelDir, data, eval string
	m                    *model.Model
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	tj, err := tokenizer.TrainByteLevelBPE(append(corpus(64, 0), corpus(64, 1)...), 280)
	if err != nil {
		t.Fatal(err)
	}
	c := &hf.Config{Architectures: []string{hf.ArchLlama}, HiddenSize: 16, IntermediateSize: 32, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 4, VocabSize: 280, RMSNormEps: 1e-5, RopeTheta: 10000,
		InitializerRng: 0.2, MaxPositionEmbeddings: 128}
	f := fixture{modelDir: filepath.Join(dir, "model"), data: filepath.Join(dir, "train.jsonl"), eval: filepath.Join(dir, "eval.jsonl")}
	if err := hf.InitCheckpoint(f.modelDir, c, 7, safetensors.F32, tj); err != nil {
		t.Fatal(err)
	}
	writeText(t, f.data, corpus(400, 0))
	writeText(t, f.eval, corpus(40, 1000))
	if f.m, err = model.Load(f.modelDir); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f fixture) config(out string) Config {
	return Config{ModelDir: f.modelDir, Model: f.m, DataPath: f.data, EvalDataPath: f.eval, OutDir: out,
		ExpectedBatchSize: 32, MaxGradNorm: 1, Steps: 30, MicroBatch: 16, LR: 0.02, WarmupSteps: 3,
		LoRA:       model.LoRAConfig{R: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj", "down_proj"}, ASeed: 1},
		Accountant: accounting.AccountantRDP, Delta: 1e-4}
}

func TestTrainEndToEndWithLedger(t *testing.T) {
	f := newFixture(t)
	site := t.TempDir()
	if _, err := ledger.Create(ledgerfs.Dir{Path: site}, ledger.Config{EpsilonCap: 5, Delta: 1e-4}, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run1")
	cfg := f.config(out)
	cfg.SiteDir = site
	cfg.TargetEpsilon = 4
	cfg.Accountant = accounting.AccountantPLD
	var progress []Progress
	cfg.Progress = func(p Progress) { progress = append(progress, p) }
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Epsilon == nil || *r.Epsilon > 4 || *r.Epsilon < 3.9 {
		t.Errorf("epsilon %v, target 4", r.Epsilon)
	}
	if r.EvalLossBefore == nil || r.EvalLossAfter == nil || !(*r.EvalLossAfter < *r.EvalLossBefore-0.3) {
		t.Errorf("eval loss %v → %v did not drop", *r.EvalLossBefore, *r.EvalLossAfter)
	}
	if len(progress) != 30 || progress[29].Epsilon <= 0 {
		t.Errorf("progress %d calls", len(progress))
	}
	for _, name := range []string{ReportFile, PlotFile, hf.AdapterConfigFile, hf.AdapterWeightsFile} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	var rep map[string]any
	b, _ := os.ReadFile(filepath.Join(out, ReportFile))
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"epsilon", "delta", "noise_multiplier", "sampling_rate", "steps", "accountant",
		"train_loss_first", "train_loss_last", "eval_loss_before", "eval_loss_after"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %s", k)
		}
	}
	if rep["sampling_rate"] != 32.0/400 || rep["accountant"] != "pld" {
		t.Errorf("report %v %v", rep["sampling_rate"], rep["accountant"])
	}
	a, err := model.LoadAdapter(out, f.m)
	if err != nil {
		t.Fatal(err)
	}
	nonzero := false
	for _, v := range a.Trainable() {
		if v != 0 {
			nonzero = true
		}
	}
	if !nonzero {
		t.Error("trained adapter is all zero")
	}
	led, err := ledger.Open(ledgerfs.Dir{Path: site})
	if err != nil {
		t.Fatal(err)
	}
	if len(led.Events()) != 1 || math.Abs(led.Spent()-*r.Epsilon) > 1e-6 {
		t.Errorf("ledger %d events, spent %v, run ε %v", len(led.Events()), led.Spent(), *r.Epsilon)
	}

	// A second identical run would exceed the cap of 5: refused before
	// anything is written.
	out2 := filepath.Join(t.TempDir(), "run2")
	cfg.OutDir = out2
	_, err = Run(context.Background(), cfg)
	var be *ledger.BudgetError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "remaining") {
		t.Fatalf("second run: %v", err)
	}
	if _, err := os.Stat(out2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused run wrote %s", out2)
	}
	if p, err := Projected(cfg); !errors.As(err, &be) || p.Ledger.Projected <= 5 {
		t.Errorf("Projected: %v %+v", err, p)
	}
	if led2, _ := ledger.Open(ledgerfs.Dir{Path: site}); len(led2.Events()) != 1 {
		t.Error("refused run changed the ledger")
	}
}

func adapterBytes(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, hf.AdapterWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSeededRunReproducesAndResumes(t *testing.T) {
	f := newFixture(t)
	base := f.config("")
	base.NoiseMultiplier = 1.0
	base.Seeded, base.Seed = true, 42
	base.Steps = 16
	base.CheckpointEvery = 4
	base.Optimizer = "sgd"
	base.LR = 0.5
	base.LoRA.Dropout = 0.1
	runTo := func(out string, stopAt int) (*Report, error) {
		c := base
		c.OutDir = out
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if stopAt > 0 {
			c.Progress = func(p Progress) {
				if p.Step == stopAt {
					cancel()
				}
			}
		}
		return Run(ctx, c)
	}
	d := t.TempDir()
	r1, err := runTo(filepath.Join(d, "a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := runTo(filepath.Join(d, "b"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(adapterBytes(t, filepath.Join(d, "a")), adapterBytes(t, filepath.Join(d, "b"))) {
		t.Error("same seed, different adapters")
	}
	if fmt.Sprint(r1.TrainLoss) != fmt.Sprint(r2.TrainLoss) {
		t.Error("same seed, different losses")
	}
	// Interrupted after step 7, then resumed: the same result.
	if _, err := runTo(filepath.Join(d, "c"), 7); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	r3, err := runTo(filepath.Join(d, "c"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r3.ResumedFromStep != 7 {
		t.Errorf("resumed from %d", r3.ResumedFromStep)
	}
	if !bytes.Equal(adapterBytes(t, filepath.Join(d, "a")), adapterBytes(t, filepath.Join(d, "c"))) {
		t.Error("resumed run differs from the uninterrupted one")
	}
	if _, err := runTo(filepath.Join(d, "c"), 0); !errors.Is(err, ErrFinished) {
		t.Errorf("rerun of a finished run: %v", err)
	}
	// A different seed gives a different adapter.
	base.Seed = 43
	if _, err := runTo(filepath.Join(d, "e"), 0); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(adapterBytes(t, filepath.Join(d, "a")), adapterBytes(t, filepath.Join(d, "e"))) {
		t.Error("different seeds, same adapter")
	}
}

func TestResumeDoesNotSpendTwice(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(filepath.Join(t.TempDir(), "out"))
	cfg.NoiseMultiplier = 1.2
	cfg.Steps = 10
	cfg.CheckpointEvery = 2
	// The cap fits this run once, not twice.
	p, err := Projected(cfg)
	if err != nil {
		t.Fatal(err)
	}
	one, _ := accounting.EpsilonPLD(p.Event, 1e-4, nil)
	site := t.TempDir()
	if _, err := ledger.Create(ledgerfs.Dir{Path: site}, ledger.Config{EpsilonCap: one * 1.05, Delta: 1e-4}, time.Now()); err != nil {
		t.Fatal(err)
	}
	cfg.SiteDir = site
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Progress = func(p Progress) {
		if p.Step == 5 {
			cancel()
		}
	}
	if _, err := Run(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	cfg.Progress = nil
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	led, _ := ledger.Open(ledgerfs.Dir{Path: site})
	if len(led.Events()) != 1 {
		t.Errorf("%d ledger events after a resumed run, want 1", len(led.Events()))
	}
	// A new run in another directory does not fit.
	cfg.OutDir = filepath.Join(t.TempDir(), "other")
	if _, err := Run(context.Background(), cfg); !errors.Is(err, ledger.ErrBudget) {
		t.Errorf("new run after the cap: %v", err)
	}
}

func TestNoDPBaselineSaysSo(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(filepath.Join(t.TempDir(), "out"))
	cfg.NoDP = true
	cfg.Delta = 0
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Private || r.Epsilon != nil || !strings.Contains(r.Note, "NON-PRIVATE") {
		t.Errorf("report %+v", r)
	}
	if !(*r.EvalLossAfter < *r.EvalLossBefore) {
		t.Errorf("eval loss %v → %v", *r.EvalLossBefore, *r.EvalLossAfter)
	}
	b, _ := os.ReadFile(filepath.Join(cfg.OutDir, ReportFile))
	if !bytes.Contains(b, []byte(`"epsilon": null`)) {
		t.Errorf("report epsilon is not null")
	}
}

func TestClippingAndRelease(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(filepath.Join(t.TempDir(), "out"))
	cfg.NoiseMultiplier = 1
	cfg.MaxGradNorm = 1e-4 // every gradient is clipped
	cfg.Steps = 3
	cfg.ReleaseEpsilon, cfg.ReleaseDelta = 1, 1e-5
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.ClippedFraction != 1 {
		t.Errorf("clipped fraction %v", r.ClippedFraction)
	}
	if r.Released == nil || r.Released.EvalLoss == nil || math.Abs(float64(r.Released.Records-400)) > 100 {
		t.Errorf("released %+v", r.Released)
	}
	// The released statistics are part of the run's event.
	ev, err := accounting.UnmarshalEvent(r.Event)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := ev.(accounting.Composed); !ok || len(c.Events) != 4 {
		t.Errorf("event %s", r.Event)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	run := func(mut func(*Config)) error {
		cfg := f.config(filepath.Join(dir, fmt.Sprint(time.Now().UnixNano())))
		cfg.NoiseMultiplier = 1
		cfg.Steps = 2
		mut(&cfg)
		_, err := Run(context.Background(), cfg)
		return err
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	cases := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"empty", func(c *Config) { c.DataPath = write("empty.jsonl", "\n\n") }, "empty dataset"},
		{"malformed", func(c *Config) {
			c.DataPath = write("bad.jsonl", strings.Repeat(`{"text":"a b c d"}`+"\n", 50)+`{"text": "x"`+"\n")
			c.ExpectedBatchSize = 4
		}, "bad.jsonl:51: malformed JSON"},
		{"shape", func(c *Config) {
			c.DataPath = write("shape.jsonl", strings.Repeat(`{"prompt":"a"}`+"\n", 50))
			c.ExpectedBatchSize = 4
		}, "shape.jsonl:1: a prompt record needs both"},
		{"labels", func(c *Config) {
			c.DataPath = write("lab.jsonl", strings.Repeat(`{"input_ids":[1,2,3],"labels":[1,2]}`+"\n", 50))
			c.ExpectedBatchSize = 4
		}, "lab.jsonl:1: labels has 2 entries"},
		{"strict", func(c *Config) { c.MaxLength = 4; c.Strict = true }, "train.jsonl:1: record has"},
		{"delta", func(c *Config) { c.Delta = 1.0 / 400 }, "delta must be below 1/records"},
		{"unreachable", func(c *Config) { c.NoiseMultiplier = 0; c.TargetEpsilon = 1e-7; c.Steps = 100000 }, "smallest reachable"},
		{"both", func(c *Config) { c.TargetEpsilon = 1 }, "not both"},
		{"corrupt ledger", func(c *Config) {
			site := filepath.Join(dir, "site")
			ledger.Create(ledgerfs.Dir{Path: site}, ledger.Config{EpsilonCap: 5, Delta: 1e-5}, time.Now())
			os.WriteFile(filepath.Join(site, ledgerfs.LogFile), []byte("{}\n"), 0o600)
			c.SiteDir = site
		}, "privacy ledger corrupt"},
	}
	for _, c := range cases {
		err := run(c.mut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	// Truncation is counted.
	cfg := f.config(filepath.Join(dir, "trunc"))
	cfg.NoiseMultiplier, cfg.Steps, cfg.MaxLength = 1, 2, 5
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated != 440 {
		t.Errorf("truncated %d, want 440", r.Truncated)
	}
}

func TestLoadJSONLShapes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d.jsonl")
	os.WriteFile(p, []byte(`{"input_ids":[1,2,3,4]}
{"input_ids":[5,6,7],"labels":[-100,6,7]}

`), 0o644)
	ds, err := LoadJSONL(p, nil, LoadOptions{MaxLength: 10, Vocab: 8})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Examples) != 2 || fmt.Sprint(ds.Examples[1].Labels) != "[-100 6 7]" || fmt.Sprint(ds.Examples[0].Labels) != "[1 2 3 4]" {
		t.Errorf("%+v", ds.Examples)
	}
	n, _, err := CountRecords(p)
	if err != nil || n != 2 {
		t.Errorf("count %d %v", n, err)
	}
	os.WriteFile(p, []byte(`{"input_ids":[1,9]}`), 0o644)
	if _, err := LoadJSONL(p, nil, LoadOptions{MaxLength: 10, Vocab: 8}); err == nil || !strings.Contains(err.Error(), "d.jsonl:1: input_ids[1] = 9") {
		t.Errorf("vocab: %v", err)
	}
	tj, _ := tokenizer.TrainByteLevelBPE(corpus(64, 0), 270)
	tok, _ := tokenizer.Parse(tj)
	os.WriteFile(p, []byte(`{"prompt":"the patient","completion":" is stable"}`+"\n"), 0o644)
	ds, err = LoadJSONL(p, tok, LoadOptions{MaxLength: 64, Vocab: 270})
	if err != nil {
		t.Fatal(err)
	}
	ex := ds.Examples[0]
	np := len(tok.Encode("the patient", true))
	for i, l := range ex.Labels {
		if (i < np) != (l == -100) {
			t.Fatalf("labels %v: prompt tokens must be -100, completion tokens kept", ex.Labels)
		}
	}
}

// Special-token strings inside a record are data: they are encoded as
// plain text, and the only end-of-sequence token is the one appended.
func TestLoadJSONLSpecialTokensInText(t *testing.T) {
	tj, _ := tokenizer.TrainByteLevelBPE(corpus(64, 0), 270)
	tok, _ := tokenizer.Parse(tj)
	eos, ok := tok.EOS()
	if !ok {
		t.Fatal("tokenizer has no EOS")
	}
	p := filepath.Join(t.TempDir(), "s.jsonl")
	os.WriteFile(p, []byte(`{"text":"the patient <|endoftext|> is stable"}`+"\n"), 0o644)
	ds, err := LoadJSONL(p, tok, LoadOptions{MaxLength: 128, Vocab: 270})
	if err != nil {
		t.Fatal(err)
	}
	ids := ds.Examples[0].InputIDs
	for i, id := range ids[:len(ids)-1] {
		if id == eos {
			t.Fatalf("id %d of %v is the EOS token: special-token text in a record must not become a control token", i, ids)
		}
	}
	if ids[len(ids)-1] != eos {
		t.Fatalf("record %v does not end with EOS %d", ids, eos)
	}
}

func FuzzLoadJSONL(f *testing.F) {
	f.Add([]byte(`{"input_ids":[1,2,3],"labels":[-100,2,3]}` + "\n" + `{"text":"hi"}`))
	f.Add([]byte(`{"prompt":"a","completion":"b"}`))
	f.Add([]byte("\n\n{"))
	tj, _ := tokenizer.TrainByteLevelBPE(corpus(64, 0), 270)
	tok, _ := tokenizer.Parse(tj)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "f.jsonl")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Skip()
		}
		ds, err := LoadJSONL(p, tok, LoadOptions{MaxLength: 16, Vocab: 270})
		if err != nil {
			return
		}
		for _, ex := range ds.Examples {
			if len(ex.InputIDs) != len(ex.Labels) || len(ex.InputIDs) > 16 {
				t.Fatalf("bad example %+v", ex)
			}
		}
	})
}

func TestCountRecordsMatchesLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.jsonl")
	content := "{\"input_ids\":[1,2]}\n\f\n  \t\n\u00a0\n{\"input_ids\":[3,4]}"
	os.WriteFile(p, []byte(content), 0o644)
	n, _, err := CountRecords(p)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := LoadJSONL(p, nil, LoadOptions{MaxLength: 8, Vocab: 8})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ds.Examples) || n != 2 {
		t.Errorf("count %d, loaded %d", n, len(ds.Examples))
	}
}

// Continuing from an adapter starts where it ended, with its LoRA
// configuration (here FFA-LoRA: A never changes).
func TestInitAdapterContinues(t *testing.T) {
	f := newFixture(t)
	d := t.TempDir()
	cfg := f.config(filepath.Join(d, "first"))
	cfg.NoiseMultiplier = 0.8
	cfg.Steps = 10
	cfg.LoRA.FFA = true
	r1, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := f.config(filepath.Join(d, "second"))
	cfg2.NoiseMultiplier = 0.8
	cfg2.Steps = 5
	cfg2.InitAdapter = filepath.Join(d, "first")
	cfg2.LoRA = model.LoRAConfig{} // taken from the adapter
	r2, err := Run(context.Background(), cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(*r2.EvalLossBefore-*r1.EvalLossAfter) > 1e-9 {
		t.Errorf("continued run starts at eval loss %v, first run ended at %v", *r2.EvalLossBefore, *r1.EvalLossAfter)
	}
	if !r2.LoRA.FFA || r2.LoRA.R != 4 {
		t.Errorf("LoRA config %+v not taken from the adapter", r2.LoRA)
	}
	a1, err := model.LoadAdapter(filepath.Join(d, "first"), f.m)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := model.LoadAdapter(filepath.Join(d, "second"), f.m)
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"q_proj", "v_proj", "down_proj"} {
		A1, _, _ := a1.Matrices(0, mod)
		A2, _, _ := a2.Matrices(0, mod)
		if fmt.Sprint(A1) != fmt.Sprint(A2) {
			t.Errorf("%s: A changed under FFA-LoRA", mod)
		}
	}
}

// With B = 1 most Poisson samples are empty: those steps still add noise,
// have no loss (null in JSON), and the run and its resume still work.
func TestEmptyPoissonSamples(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(filepath.Join(t.TempDir(), "out"))
	cfg.ExpectedBatchSize = 1
	cfg.NoiseMultiplier = 1
	cfg.Steps = 20
	cfg.CheckpointEvery = 5
	cfg.Seeded, cfg.Seed = true, 3
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	empty := 0
	for _, l := range r.TrainLoss {
		if math.IsNaN(float64(l)) {
			empty++
		}
	}
	// P(empty) = (1 − 1/400)^400 ≈ e^{−1}: about 7 of 20 (fixed by the seed).
	if empty < 2 {
		t.Errorf("%d empty steps of 20 at q=1/400", empty)
	}
	b, _ := os.ReadFile(filepath.Join(cfg.OutDir, ReportFile))
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || !bytes.Contains(b, []byte("null")) {
		t.Fatalf("report: %v", err)
	}
	if len(back.TrainLoss) != 20 || !math.IsNaN(float64(back.TrainLoss[indexNaN(r.TrainLoss)])) {
		t.Error("NaN losses do not round-trip as null")
	}
}

func indexNaN(ls []Float) int {
	for i, l := range ls {
		if math.IsNaN(float64(l)) {
			return i
		}
	}
	return 0
}
