// Package trainer fine-tunes a LoRA adapter on a site's records with DP-SGD:
// the driver behind `fedtune train` and the federation's site client.
//
// [Run] takes a [Config] (no flags here) and:
//
//  1. counts the records and works out the privacy event of the run
//     (sampling rate q = B/N, steps, noise multiplier, calibrated to a
//     target ε when asked) and, when a site ledger is configured, refuses
//     the run if the cumulative ε would exceed the site's cap — before the
//     records are parsed;
//  2. tokenises the data (errors name the file and line);
//  3. records the run's event in the ledger under a run id that is also
//     stored in the output directory, then trains: Poisson sampling,
//     physical micro-batches, per-example clipping to C, Gaussian noise
//     σC on the sum, division by B, AdamW or SGD with momentum, warm-up and
//     cosine schedule;
//  4. checkpoints, and writes the PEFT adapter, training_report.json and a
//     PNG plot of loss and ε.
//
// # Resuming without spending twice
//
// The spend is recorded once per run id, before the first step. An
// interrupted run leaves its run id and last checkpoint in the output
// directory; running again with the same output directory resumes from the
// checkpoint, finds its run id in the ledger and spends nothing more. The
// ledger always counts the whole run (all planned steps), so a run that is
// never resumed is over-counted, never under-counted.
//
// [Projected] reports what a run would spend without touching the data, for
// the site client's policy checks.
package trainer

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/model"
)

// Config describes one training run. Zero values mean the defaults noted.
type Config struct {
	// ModelDir is the Hugging Face base model directory. Model, when set,
	// is used instead of loading it.
	ModelDir string
	Model    *model.Model
	// Tokenizer encodes text records; nil loads ModelDir/tokenizer.json
	// when a record needs it.
	Tokenizer Tokenizer

	// DataPath is the training JSONL; EvalDataPath an optional held-out JSONL.
	DataPath, EvalDataPath string
	// OutDir receives the adapter, report, plot and checkpoints.
	OutDir string
	// SiteDir holds the site's privacy ledger; "" trains without one.
	SiteDir string
	// InitAdapter continues from an existing PEFT adapter, taking its
	// LoRA configuration (LoRA is then ignored).
	InitAdapter string
	// LoRA configures a new adapter (default r=8, alpha=16, q_proj and v_proj).
	LoRA model.LoRAConfig

	// NoDP trains a non-private baseline: no clipping, no noise, no ε.
	NoDP bool
	// TargetEpsilon calibrates the noise multiplier; otherwise
	// NoiseMultiplier is used as given.
	TargetEpsilon   float64
	NoiseMultiplier float64
	// Delta is the δ of the reported ε (default: the ledger's δ).
	Delta float64
	// Accountant computes the reported ε (default PLD).
	Accountant accounting.Accountant
	// ExpectedBatchSize B: Poisson rate q = B/N (default 32).
	ExpectedBatchSize int
	// MaxGradNorm C, the per-example clipping norm (default 1).
	MaxGradNorm float64
	// Steps, or Epochs (steps = ⌈Epochs·N/B⌉; default 1 epoch).
	Steps  int
	Epochs float64
	// MicroBatch is the physical batch (default 8).
	MicroBatch int
	// MaxLength truncates records to this many tokens (default 256);
	// Strict rejects longer ones instead.
	MaxLength int
	Strict    bool

	// Optimizer is "adamw" (default) or "sgd".
	Optimizer string
	// LR is the peak learning rate (default 1e-3 for AdamW, 0.1 for SGD).
	LR                    float64
	Momentum              float64 // SGD (default 0.9)
	WeightDecay           float64
	Beta1, Beta2, AdamEps float64 // AdamW (defaults 0.9, 0.999, 1e-8)
	WarmupSteps           int
	Schedule              string // "cosine" (default) or "constant"
	CheckpointEvery       int    // steps between checkpoints (default 50)

	// Seeded makes noise, sampling and dropout a function of Seed, so a run
	// can be reproduced exactly. For tests only: the noise of a seeded run
	// is predictable to whoever knows the seed.
	Seeded bool
	Seed   uint64
	// Entropy keys the noise generator (default crypto/rand.Reader).
	Entropy io.Reader
	// Now is the wall clock for ledger entries and timings (default time.Now).
	Now func() time.Time
	// Progress, when set, is called after every step.
	Progress func(Progress)
	// Purpose is recorded in the ledger (default "fedtune train").
	Purpose string
	// ReleaseEpsilon > 0 also releases the record count and the mean eval
	// loss through Google's differential-privacy library, each with
	// (ReleaseEpsilon, ReleaseDelta); their cost is part of the run's event.
	ReleaseEpsilon, ReleaseDelta float64
}

// Progress is reported after each step.
type Progress struct {
	Step, Steps int
	Loss        float64 // mean loss of the step's examples (local only)
	Epsilon     float64 // ε spent so far by this run (RDP bound; 0 without DP)
	Batch       int     // realised batch size
}

func (c *Config) withDefaults() {
	if c.LoRA.R == 0 && c.InitAdapter == "" {
		c.LoRA.R = 8
	}
	if c.LoRA.Alpha == 0 {
		c.LoRA.Alpha = 2 * float64(c.LoRA.R)
	}
	if len(c.LoRA.TargetModules) == 0 {
		c.LoRA.TargetModules = []string{"q_proj", "v_proj"}
	}
	if c.Accountant == "" {
		c.Accountant = accounting.AccountantPLD
	}
	if c.ExpectedBatchSize == 0 {
		c.ExpectedBatchSize = 32
	}
	if c.MaxGradNorm == 0 {
		c.MaxGradNorm = 1
	}
	if c.Steps == 0 && c.Epochs == 0 {
		c.Epochs = 1
	}
	if c.MicroBatch == 0 {
		c.MicroBatch = 8
	}
	if c.MaxLength == 0 {
		c.MaxLength = 256
	}
	if c.Optimizer == "" {
		c.Optimizer = "adamw"
	}
	if c.LR == 0 {
		c.LR = 1e-3
		if c.Optimizer == "sgd" {
			c.LR = 0.1
		}
	}
	if c.Momentum == 0 && c.Optimizer == "sgd" {
		c.Momentum = 0.9
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.AdamEps == 0 {
		c.AdamEps = 1e-8
	}
	if c.Schedule == "" {
		c.Schedule = "cosine"
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 50
	}
	if c.Entropy == nil {
		c.Entropy = rand.Reader
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Purpose == "" {
		c.Purpose = "fedtune train"
	}
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Model == nil && c.ModelDir == "" {
		bad("model: a model directory is required")
	}
	if c.DataPath == "" {
		bad("data: a JSONL file is required")
	}
	if c.OutDir == "" {
		bad("out: an output directory is required")
	}
	if c.ExpectedBatchSize < 1 {
		bad("expected batch size must be ≥ 1, got %d", c.ExpectedBatchSize)
	}
	if !(c.MaxGradNorm > 0) || math.IsInf(c.MaxGradNorm, 0) {
		bad("max grad norm must be finite and > 0, got %v", c.MaxGradNorm)
	}
	if c.Steps < 0 || c.Epochs < 0 || math.IsNaN(c.Epochs) || math.IsInf(c.Epochs, 0) {
		bad("steps and epochs must be ≥ 0")
	}
	if c.Steps > 0 && c.Epochs > 0 {
		bad("give steps or epochs, not both")
	}
	if c.MicroBatch < 1 {
		bad("micro batch must be ≥ 1, got %d", c.MicroBatch)
	}
	if c.MaxLength < 2 {
		bad("max length must be ≥ 2, got %d", c.MaxLength)
	}
	if !slices.Contains([]string{"adamw", "sgd"}, c.Optimizer) {
		bad("optimizer must be adamw or sgd, got %q", c.Optimizer)
	}
	if !slices.Contains([]string{"cosine", "constant"}, c.Schedule) {
		bad("schedule must be cosine or constant, got %q", c.Schedule)
	}
	if !(c.LR > 0) || math.IsInf(c.LR, 0) {
		bad("learning rate must be finite and > 0, got %v", c.LR)
	}
	if c.Momentum < 0 || c.Momentum >= 1 {
		bad("momentum must be in [0, 1), got %v", c.Momentum)
	}
	if c.WeightDecay < 0 || math.IsNaN(c.WeightDecay) {
		bad("weight decay must be ≥ 0, got %v", c.WeightDecay)
	}
	if c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1 || !(c.AdamEps > 0) {
		bad("AdamW needs β1, β2 in [0, 1) and ε > 0")
	}
	if c.WarmupSteps < 0 {
		bad("warm-up steps must be ≥ 0, got %d", c.WarmupSteps)
	}
	if c.CheckpointEvery < 1 {
		bad("checkpoint interval must be ≥ 1")
	}
	if _, err := accounting.ParseAccountant(string(c.Accountant)); err != nil {
		bad("%v", err)
	}
	if c.NoDP {
		if c.TargetEpsilon != 0 || c.NoiseMultiplier != 0 {
			bad("a non-private run takes no epsilon or noise multiplier")
		}
		if c.SiteDir != "" {
			bad("a non-private run cannot be recorded against a site ledger: it has no privacy guarantee (omit the site directory)")
		}
	} else {
		switch {
		case c.TargetEpsilon != 0 && c.NoiseMultiplier != 0:
			bad("give a target epsilon or a noise multiplier, not both")
		case c.TargetEpsilon == 0 && c.NoiseMultiplier == 0:
			bad("give a target epsilon (with delta) or a noise multiplier, or ask for a non-private run")
		case c.TargetEpsilon < 0 || math.IsNaN(c.TargetEpsilon) || math.IsInf(c.TargetEpsilon, 0):
			bad("target epsilon must be finite and > 0, got %v", c.TargetEpsilon)
		case c.NoiseMultiplier < 0 || math.IsNaN(c.NoiseMultiplier) || math.IsInf(c.NoiseMultiplier, 0):
			bad("noise multiplier must be finite and > 0, got %v", c.NoiseMultiplier)
		}
		if c.Delta < 0 || c.Delta >= 1 || math.IsNaN(c.Delta) {
			bad("delta must be in (0, 1), got %v", c.Delta)
		}
	}
	if c.ReleaseEpsilon < 0 || (c.ReleaseEpsilon > 0 && !(c.ReleaseDelta > 0 && c.ReleaseDelta < 1)) {
		bad("releasing statistics needs an epsilon > 0 and a delta in (0, 1)")
	}
	return errors.Join(errs...)
}
