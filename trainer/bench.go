package trainer

import (
	"fmt"
	"slices"
	"time"

	"github.com/fedtune/fedtune/dp"
	"github.com/fedtune/fedtune/dp/noise"
	"github.com/fedtune/fedtune/model"
)

// Overhead is the cost of a DP-SGD step relative to a non-private step on
// the same batch, measured in the same run.
type Overhead struct {
	// DPStepSeconds: per-example gradients, clipping, noise, AdamW update.
	DPStepSeconds float64 `json:"dp_step_seconds"`
	// NonDPStepSeconds: the summed batch gradient, averaging, AdamW update.
	NonDPStepSeconds float64 `json:"nondp_step_seconds"`
	// DPStepOverNonDPStep is the ratio of the medians.
	DPStepOverNonDPStep float64 `json:"dp_step_over_nondp_step"`
	// Clip and noise time of the DP step, in seconds (part of DPStepSeconds).
	ClipNoiseSeconds float64 `json:"clip_noise_seconds"`
	Steps            int     `json:"steps"`
	Batch            int     `json:"batch"`
	Trainable        int     `json:"trainable"`
}

// BenchDPOverhead times steps DP-SGD steps and steps non-private steps on
// batch with adapter a (updated in place), alternating so both see the same
// machine load, after one warm-up step each. now is the monotonic clock.
func BenchDPOverhead(m *model.Model, a *model.Adapter, batch []model.Example, steps int, now func() time.Time) (Overhead, error) {
	if steps < 1 || len(batch) == 0 {
		return Overhead{}, fmt.Errorf("bench: need ≥ 1 step and a non-empty batch")
	}
	maxSeq := 2
	for _, ex := range batch {
		maxSeq = max(maxSeq, len(ex.InputIDs))
	}
	tr := m.NewTrainer(a, model.TrainerOptions{MaxBatch: len(batch), MaxSeq: maxSeq})
	n := a.NumTrainable()
	grads := make([][]float32, len(batch))
	for i := range grads {
		grads[i] = make([]float32, n)
	}
	grad := make([]float32, n)
	update := make([]float32, n)
	sum := make([]float64, n)
	losses := make([]float64, len(batch))
	s := noise.NewSeeded(noise.SeedFromUint64(1)) // timing only: the noise is discarded
	cfg := Config{Optimizer: "adamw"}
	cfg.withDefaults()
	optDP, _ := newOptimizer(&cfg, n)
	optBase, _ := newOptimizer(&cfg, n)
	const c, sigma = 1.0, 1.0
	bsz := float64(len(batch))
	var clipNoise time.Duration
	dpStep := func() error {
		if err := tr.PerExampleGrads(batch, grads, losses); err != nil {
			return err
		}
		t0 := now()
		clear(sum)
		for _, g := range grads {
			if _, err := dp.ClipAdd(sum, g, c); err != nil {
				return err
			}
		}
		if err := dp.NoisyMean(update, sum, sigma, c, bsz, s); err != nil {
			return err
		}
		clipNoise += now().Sub(t0)
		optDP.step(a.Trainable(), update, 1e-6)
		return nil
	}
	baseStep := func() error {
		if err := tr.BatchGrad(batch, grad, losses); err != nil {
			return err
		}
		for i, v := range grad {
			update[i] = v / float32(bsz)
		}
		optBase.step(a.Trainable(), update, 1e-6)
		return nil
	}
	var dpT, baseT []float64
	for i := 0; i <= steps; i++ {
		t0 := now()
		if err := baseStep(); err != nil {
			return Overhead{}, err
		}
		t1 := now()
		if i == 0 {
			clipNoise = 0
		}
		if err := dpStep(); err != nil {
			return Overhead{}, err
		}
		t2 := now()
		if i == 0 {
			clipNoise = 0
			continue // warm-up
		}
		baseT = append(baseT, t1.Sub(t0).Seconds())
		dpT = append(dpT, t2.Sub(t1).Seconds())
	}
	o := Overhead{DPStepSeconds: median(dpT), NonDPStepSeconds: median(baseT), Steps: steps, Batch: len(batch), Trainable: n,
		ClipNoiseSeconds: clipNoise.Seconds() / float64(steps)}
	o.DPStepOverNonDPStep = o.DPStepSeconds / o.NonDPStepSeconds
	return o, nil
}

func median(x []float64) float64 {
	y := slices.Clone(x)
	slices.Sort(y)
	if len(y)%2 == 1 {
		return y[len(y)/2]
	}
	return (y[len(y)/2-1] + y[len(y)/2]) / 2
}
