package main

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedtune/fedtune/kernels"
	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/trainer"
)

func init() {
	benchCmd.AddCommand(newBenchTrainCmd())
}

// trainBenchMode is one gradient mode's measurements.
type trainBenchMode struct {
	StepSeconds float64 `json:"step_seconds"`
	// CPUSeconds is the process's CPU time per step (all threads); unlike
	// wall time it does not grow when other processes hold the cores.
	CPUSeconds    float64 `json:"cpu_seconds_per_step,omitempty"`
	TokensPerSec  float64 `json:"tokens_per_s"`
	GemmFraction  float64 `json:"gemm_fraction"`
	AttnFraction  float64 `json:"attention_fraction"`
	AllocsPerStep float64 `json:"allocs_per_step"`
	BytesPerStep  float64 `json:"bytes_per_step"`
}

// trainBenchResult is the output of `fedtune bench train --json`.
type trainBenchResult struct {
	Parameters    int64  `json:"parameters"`
	Trainable     int    `json:"trainable"`
	Hidden        int    `json:"hidden"`
	Layers        int    `json:"layers"`
	Heads         int    `json:"heads"`
	Intermediate  int    `json:"intermediate"`
	Vocab         int    `json:"vocab"`
	Seq           int    `json:"seq"`
	Batch         int    `json:"batch"`
	Rank          int    `json:"lora_r"`
	Targets       string `json:"lora_targets"`
	Steps         int    `json:"steps"`
	Threads       int    `json:"threads"`
	GemmBackend   string `json:"gemm_backend"`
	TokensPerStep int    `json:"tokens_per_step"`

	// BatchGrad is the non-private baseline; PerExample the DP-SGD path.
	BatchGrad  trainBenchMode `json:"batch_grad"`
	PerExample trainBenchMode `json:"per_example"`
	// PerExampleOverBatch is the per-example step time over the batch
	// step time, measured in the same run; PerExampleOverBatchCPU the same
	// ratio of CPU times.
	PerExampleOverBatch    float64 `json:"per_example_over_batch"`
	PerExampleOverBatchCPU float64 `json:"per_example_over_batch_cpu,omitempty"`
	// DPStepOverNonDPStep is a whole DP-SGD step (per-example gradients,
	// clipping, noise, optimizer update) over a non-private step (batch
	// gradient, optimizer update) on the same batch, same run.
	DPStepOverNonDPStep float64           `json:"dp_step_over_nondp_step"`
	DP                  *trainer.Overhead `json:"dp_step"`
}

func newBenchTrainCmd() *cobra.Command {
	var (
		hidden, layers, heads, kvHeads, inter, vocab, seq, batch, rank, steps, threads int
		jsonOut                                                                        bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Measure forward+backward tokens/s of LoRA training, batch and per-example",
		Long: `Builds a random Llama model in memory (by default about 25M parameters:
hidden 512, 6 layers, 8 heads, intermediate 1376, vocabulary 8192), attaches a
LoRA adapter (r=16 on q_proj,v_proj) and times training steps on random
sequences of --seq tokens: BatchGrad (one summed gradient, the non-private
baseline) and PerExampleGrads (one gradient per example, as DP-SGD needs),
alternating so both see the same machine load. It reports tokens/s, the share
of step time spent in matrix products and in attention, heap allocations per
step, and the per-example/batch time ratio.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct {
				name string
				v    int
			}{{"--hidden", hidden}, {"--layers", layers}, {"--heads", heads}, {"--intermediate", inter}, {"--vocab", vocab},
				{"--seq", seq}, {"--batch", batch}, {"--r", rank}, {"--steps", steps}} {
				if f.v < 1 {
					return fmt.Errorf("%s: want a positive integer, got %d", f.name, f.v)
				}
			}
			if threads < 0 {
				return fmt.Errorf("--threads: want 0 (all cores) or a positive integer, got %d", threads)
			}
			if kvHeads == 0 {
				kvHeads = heads
			}
			defer kernels.SetThreads(kernels.SetThreads(threads))
			c := &hf.Config{
				Architectures: []string{hf.ArchLlama}, HiddenSize: hidden, IntermediateSize: inter, NumHiddenLayers: layers,
				NumAttentionHeads: heads, NumKeyValueHeads: kvHeads, VocabSize: vocab, MaxPositionEmbeddings: max(seq, 2048),
				RMSNormEps: 1e-5, RopeTheta: 10000,
			}
			if heads > 0 {
				c.HeadDim = hidden / heads
			}
			if err := c.Validate(); err != nil {
				return err
			}
			bar := modelProgressBar(cmd.ErrOrStderr(), !jsonOut, 2*(steps+1), "bench train")
			res, err := benchTrain(c, seq, batch, rank, steps, func() {
				if bar != nil {
					bar.Add(1)
				}
			})
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "model: %d parameters (hidden %d, %d layers, %d heads, intermediate %d, vocab %d); LoRA r=%d on %s: %d trainable\n",
				res.Parameters, hidden, layers, heads, inter, vocab, rank, res.Targets, res.Trainable)
			fmt.Fprintf(w, "batch %d × seq %d = %d tokens/step, %d threads, GEMM backend %s\n", batch, seq, res.TokensPerStep, res.Threads, res.GemmBackend)
			for _, r := range []struct {
				name string
				m    trainBenchMode
			}{{"BatchGrad", res.BatchGrad}, {"PerExampleGrads", res.PerExample}} {
				fmt.Fprintf(w, "%-16s %8.0f tokens/s  %.3f s/step (%.3f CPU s)  GEMM %4.1f%%  attention %4.1f%%  %.0f allocs/step (%.0f B)\n",
					r.name, r.m.TokensPerSec, r.m.StepSeconds, r.m.CPUSeconds, 100*r.m.GemmFraction, 100*r.m.AttnFraction, r.m.AllocsPerStep, r.m.BytesPerStep)
			}
			fmt.Fprintf(w, "per-example / batch step time: %.3f (CPU time %.3f)\n", res.PerExampleOverBatch, res.PerExampleOverBatchCPU)
			fmt.Fprintf(w, "DP-SGD step / non-private step: %.3f (clip+noise %.1f ms of %.3f s)\n", res.DPStepOverNonDPStep, 1000*res.DP.ClipNoiseSeconds, res.DP.DPStepSeconds)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&hidden, "hidden", 512, "hidden size")
	f.IntVar(&layers, "layers", 6, "decoder layers")
	f.IntVar(&heads, "heads", 8, "attention heads")
	f.IntVar(&kvHeads, "kv-heads", 0, "key/value heads (default: --heads)")
	f.IntVar(&inter, "intermediate", 1376, "MLP intermediate size")
	f.IntVar(&vocab, "vocab", 8192, "vocabulary size")
	f.IntVar(&seq, "seq", 256, "tokens per example")
	f.IntVar(&batch, "batch", 4, "examples per step")
	f.IntVar(&rank, "r", 16, "LoRA rank (targets q_proj and v_proj)")
	f.IntVar(&steps, "steps", 3, "timed steps per mode, after one warm-up step each")
	f.IntVar(&threads, "threads", 0, "GEMM threads (0: all cores)")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func benchTrain(c *hf.Config, seq, batch, rank, steps int, tick func()) (*trainBenchResult, error) {
	m, err := model.New(c, hf.InitTensors(c, 1))
	if err != nil {
		return nil, err
	}
	targets := []string{"q_proj", "v_proj"}
	a, err := model.NewAdapter(m, model.LoRAConfig{R: rank, Alpha: 2 * float64(rank), TargetModules: targets, ASeed: 1})
	if err != nil {
		return nil, err
	}
	// B starts at zero; give it values so every product does real work.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range a.Trainable() {
		a.Trainable()[i] = float32(r.NormFloat64() * 0.01)
	}
	examples := make([]model.Example, batch)
	for i := range examples {
		ids := make([]int, seq)
		for j := range ids {
			ids[j] = r.IntN(c.VocabSize)
		}
		examples[i] = model.Example{InputIDs: ids, Labels: ids}
	}
	start := time.Now()
	tr := m.NewTrainer(a, model.TrainerOptions{MaxBatch: batch, MaxSeq: seq, Clock: func() time.Duration { return time.Since(start) }})
	grad := make([]float32, a.NumTrainable())
	grads := make([][]float32, batch)
	for i := range grads {
		grads[i] = make([]float32, a.NumTrainable())
	}
	losses := make([]float64, batch)
	run := []func() error{
		func() error { return tr.BatchGrad(examples, grad, losses) },
		func() error { return tr.PerExampleGrads(examples, grads, losses) },
	}
	type acc struct {
		wall, cpu, gemm, attn time.Duration
		mallocs, bytes        uint64
	}
	var tot [2]acc
	var ms0, ms1 runtime.MemStats
	for s := 0; s <= steps; s++ {
		for k, f := range run {
			tr.ResetStats()
			runtime.ReadMemStats(&ms0)
			c0, _ := processCPUTime()
			t0 := time.Now()
			if err := f(); err != nil {
				return nil, err
			}
			wall := time.Since(t0)
			c1, _ := processCPUTime()
			runtime.ReadMemStats(&ms1)
			tick()
			if s == 0 {
				continue // warm-up
			}
			st := tr.Stats()
			tot[k].wall += wall
			tot[k].cpu += c1 - c0
			tot[k].gemm += st.Gemm
			tot[k].attn += st.Attention
			tot[k].mallocs += ms1.Mallocs - ms0.Mallocs
			tot[k].bytes += ms1.TotalAlloc - ms0.TotalAlloc
		}
	}
	tokens := batch * seq
	mode := func(x acc) trainBenchMode {
		step := x.wall.Seconds() / float64(steps)
		return trainBenchMode{
			StepSeconds: step, TokensPerSec: float64(tokens) / step, CPUSeconds: x.cpu.Seconds() / float64(steps),
			GemmFraction: x.gemm.Seconds() / x.wall.Seconds(), AttnFraction: x.attn.Seconds() / x.wall.Seconds(),
			AllocsPerStep: float64(x.mallocs) / float64(steps), BytesPerStep: float64(x.bytes) / float64(steps),
		}
	}
	res := &trainBenchResult{
		Parameters: m.NumParameters(), Trainable: a.NumTrainable(), Hidden: c.HiddenSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, Intermediate: c.IntermediateSize, Vocab: c.VocabSize, Seq: seq, Batch: batch,
		Rank: rank, Targets: "q_proj,v_proj", Steps: steps, Threads: kernels.Threads(), GemmBackend: kernels.CurrentBackend().Name(),
		TokensPerStep: tokens, BatchGrad: mode(tot[0]), PerExample: mode(tot[1]),
	}
	dp, err := trainer.BenchDPOverhead(m, a, examples, steps, time.Now)
	if err != nil {
		return nil, err
	}
	res.DP, res.DPStepOverNonDPStep = &dp, dp.DPStepOverNonDPStep
	res.PerExampleOverBatch = res.PerExample.StepSeconds / res.BatchGrad.StepSeconds
	if res.BatchGrad.CPUSeconds > 0 {
		res.PerExampleOverBatchCPU = res.PerExample.CPUSeconds / res.BatchGrad.CPUSeconds
	}
	return res, nil
}
