package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/dp/ledger"
	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/trainer"
)

func init() {
	rootCmd.AddCommand(newTrainCmd())
	benchCmd.AddCommand(newBenchDPStepCmd())
}

// exitBudget is the exit code of a run refused by the site's privacy ledger.
const exitBudget = 3

func newTrainCmd() *cobra.Command {
	var (
		c             trainer.Config
		acct          string
		seed          int64
		deterministic bool
		jsonOut       bool
		targets       []string
	)
	cmd := &cobra.Command{
		Use:   "train --model DIR --data FILE --out DIR (--epsilon E --delta D | --noise-multiplier S | --no-dp)",
		Short: "Fine-tune a LoRA adapter on local records with DP-SGD",
		Long: `Fine-tunes a LoRA adapter of the base model in --model on the JSONL records in
--data with DP-SGD (Poisson sampling with rate B/N, per-record clipping to
--max-grad-norm, Gaussian noise, AdamW or SGD) and writes the PEFT adapter,
training_report.json and training_report.png into --out.

With --site-dir, the run's privacy event is checked against the site's
privacy ledger before the records are read, and recorded there before
training: a run that would take cumulative ε above the cap is refused (exit
code 3) and writes nothing. An interrupted run resumes from its last
checkpoint when started again with the same --out, without spending twice.

--no-dp trains a non-private baseline; its report says so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct{ name, v string }{{"--model", c.ModelDir}, {"--data", c.DataPath}, {"--out", c.OutDir}} {
				if f.v == "" {
					return fmt.Errorf("%s is required", f.name)
				}
			}
			a, err := accounting.ParseAccountant(acct)
			if err != nil {
				return fmt.Errorf("--accountant: %w", err)
			}
			c.Accountant = a
			c.LoRA.TargetModules = targets
			c.LoRA.ASeed = seed
			if deterministic {
				c.Seeded, c.Seed = true, uint64(seed)
				fmt.Fprintln(cmd.ErrOrStderr(), "fedtune: warning: --deterministic-noise derives noise and sampling from --seed; the privacy guarantee does not hold against anyone who knows the seed")
			}
			if cmd.Flags().Changed("init-adapter") && (cmd.Flags().Changed("lora-r") || cmd.Flags().Changed("lora-alpha") || cmd.Flags().Changed("target") || cmd.Flags().Changed("ffa")) {
				return fmt.Errorf("--init-adapter takes its LoRA configuration from the adapter: drop the --lora-*, --target and --ffa flags")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()

			var bar *progressbar.ProgressBar
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && !jsonOut && term.IsTerminal(int(f.Fd())) {
				c.Progress = func(p trainer.Progress) {
					if bar == nil {
						bar = progressbar.NewOptions(p.Steps, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription("train"),
							progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
						bar.Set(p.Step - 1)
					}
					if c.NoDP {
						bar.Describe(fmt.Sprintf("train loss %.4f (non-private)", p.Loss))
					} else {
						bar.Describe(fmt.Sprintf("train loss %.4f ε %.3f", p.Loss, p.Epsilon))
					}
					bar.Set(p.Step)
				}
			}
			r, err := trainer.Run(ctx, c)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				if errors.Is(err, ledger.ErrBudget) {
					return &exitError{code: exitBudget, err: err}
				}
				if errors.Is(err, context.Canceled) {
					return fmt.Errorf("interrupted; the last checkpoint is in %s: run the same command again to resume", c.OutDir)
				}
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			if r.Private {
				fmt.Fprintf(w, "trained %d steps with DP-SGD: ε = %.4f at δ = %g (%s), noise multiplier %.4f, sampling rate %.5f\n",
					r.Steps, *r.Epsilon, r.Delta, r.Accountant, r.NoiseMultiplier, r.SamplingRate)
			} else {
				fmt.Fprintf(w, "%s\ntrained %d steps\n", r.Note, r.Steps)
			}
			fmt.Fprintf(w, "train loss %.4f → %.4f", r.TrainLossFirst, r.TrainLossLast)
			if r.EvalLossBefore != nil {
				fmt.Fprintf(w, "; eval loss %.4f → %.4f", *r.EvalLossBefore, *r.EvalLossAfter)
			}
			fmt.Fprintln(w)
			if r.Ledger != nil {
				fmt.Fprintf(w, "site ledger: cumulative ε %.4f of cap %.4f at δ = %g\n", r.Ledger.Projected, r.Ledger.Cap, r.Ledger.Delta)
			}
			if r.Truncated > 0 {
				fmt.Fprintf(w, "%d records truncated to %d tokens\n", r.Truncated, c.MaxLength)
			}
			fmt.Fprintf(w, "adapter in %s; report %s; plot %s (%.1fs)\n", r.Adapter, trainer.ReportFile, trainer.PlotFile, r.Seconds)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.ModelDir, "model", "", "base model directory (Hugging Face layout)")
	f.StringVar(&c.DataPath, "data", "", "training records (JSONL: text, prompt/completion or input_ids/labels)")
	f.StringVar(&c.EvalDataPath, "eval-data", "", "held-out records for eval loss before and after (JSONL)")
	f.StringVar(&c.OutDir, "out", "", "output directory (adapter, report, plot, checkpoints)")
	f.StringVar(&c.SiteDir, "site-dir", "", "site data directory holding the privacy ledger")
	f.StringVar(&c.InitAdapter, "init-adapter", "", "continue from this PEFT adapter (taking its LoRA configuration)")
	f.Float64Var(&c.TargetEpsilon, "epsilon", 0, "target ε: calibrate the noise multiplier")
	f.Float64Var(&c.Delta, "delta", 0, "δ (default: the site ledger's δ); must be below 1/records")
	f.Float64Var(&c.NoiseMultiplier, "noise-multiplier", 0, "noise multiplier σ (instead of --epsilon)")
	f.BoolVar(&c.NoDP, "no-dp", false, "train a NON-PRIVATE baseline (no clipping, no noise)")
	f.StringVar(&acct, "accountant", "pld", "accountant for ε: pld or rdp")
	f.Float64Var(&c.Epochs, "epochs", 0, "epochs (steps = ⌈epochs·N/B⌉; default 1 when --steps is not given)")
	f.IntVar(&c.Steps, "steps", 0, "number of steps")
	f.IntVar(&c.ExpectedBatchSize, "expected-batch-size", 32, "expected batch size B (Poisson rate B/N)")
	f.IntVar(&c.MicroBatch, "micro-batch", 8, "physical batch size (bounds memory)")
	f.Float64Var(&c.MaxGradNorm, "max-grad-norm", 1, "per-record clipping norm C")
	f.IntVar(&c.MaxLength, "max-length", 256, "maximum tokens per record (longer ones are truncated and counted)")
	f.BoolVar(&c.Strict, "strict", false, "reject records longer than --max-length instead of truncating")
	f.IntVar(&c.LoRA.R, "lora-r", 8, "LoRA rank")
	f.Float64Var(&c.LoRA.Alpha, "lora-alpha", 16, "LoRA alpha (scale alpha/r)")
	f.Float64Var(&c.LoRA.Dropout, "lora-dropout", 0, "LoRA dropout")
	f.StringSliceVar(&targets, "target", []string{"q_proj", "v_proj"}, "projections to adapt (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)")
	f.BoolVar(&c.LoRA.FFA, "ffa", false, "FFA-LoRA: freeze A, train only B")
	f.BoolVar(&c.LoRA.RSLoRA, "rslora", false, "rank-stabilised scaling alpha/√r")
	f.StringVar(&c.Optimizer, "optimizer", "adamw", "optimizer: adamw or sgd")
	f.Float64Var(&c.LR, "lr", 0, "peak learning rate (default 1e-3 for adamw, 0.1 for sgd)")
	f.Float64Var(&c.Momentum, "momentum", 0, "SGD momentum (default 0.9)")
	f.Float64Var(&c.WeightDecay, "weight-decay", 0, "decoupled weight decay")
	f.IntVar(&c.WarmupSteps, "warmup-steps", 0, "linear warm-up steps")
	f.StringVar(&c.Schedule, "schedule", "cosine", "learning-rate schedule: cosine or constant")
	f.IntVar(&c.CheckpointEvery, "checkpoint-every", 50, "steps between checkpoints")
	f.Int64Var(&seed, "seed", 0, "seed of the LoRA A initialisation and dropout")
	f.BoolVar(&deterministic, "deterministic-noise", false, "derive noise and sampling from --seed too (tests only: breaks privacy for whoever knows the seed)")
	f.Float64Var(&c.ReleaseEpsilon, "release-epsilon", 0, "also release the record count and eval loss with Google's DP library at this ε each")
	f.Float64Var(&c.ReleaseDelta, "release-delta", 1e-6, "δ of each released statistic")
	f.BoolVar(&jsonOut, "json", false, "print the training report as JSON")
	return cmd
}

func newBenchDPStepCmd() *cobra.Command {
	var (
		modelDir          string
		seq, batch, steps int
		rank              int
		jsonOut           bool
	)
	cmd := &cobra.Command{
		Use:   "dp-step --model DIR",
		Short: "Time a DP-SGD step against a non-private step on the same batch",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelDir == "" {
				return fmt.Errorf("--model is required")
			}
			if seq < 2 || batch < 1 || steps < 1 || rank < 1 {
				return fmt.Errorf("--seq ≥ 2, --batch, --steps and --r ≥ 1 required")
			}
			m, err := model.Load(modelDir)
			if err != nil {
				return err
			}
			a, err := model.NewAdapter(m, model.LoRAConfig{R: rank, Alpha: 2 * float64(rank), TargetModules: []string{"q_proj", "v_proj"}, ASeed: 1})
			if err != nil {
				return err
			}
			for i := range a.Trainable() {
				a.Trainable()[i] = 0.01 * float32((i%7)-3)
			}
			exs := make([]model.Example, batch)
			for i := range exs {
				ids := make([]int, seq)
				for j := range ids {
					ids[j] = (i*131 + j*17) % m.Config.VocabSize
				}
				exs[i] = model.Example{InputIDs: ids, Labels: ids}
			}
			o, err := trainer.BenchDPOverhead(m, a, exs, steps, time.Now)
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), o)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "DP-SGD step %.4fs, non-private step %.4fs: ratio %.3f (clip+noise %.4fs; batch %d, %d trainable)\n",
				o.DPStepSeconds, o.NonDPStepSeconds, o.DPStepOverNonDPStep, o.ClipNoiseSeconds, o.Batch, o.Trainable)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "base model directory")
	f.IntVar(&seq, "seq", 128, "tokens per example")
	f.IntVar(&batch, "batch", 4, "examples per step")
	f.IntVar(&steps, "steps", 3, "timed steps per mode")
	f.IntVar(&rank, "r", 16, "LoRA rank on q_proj and v_proj")
	f.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}
