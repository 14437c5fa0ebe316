package model

import (
	"fmt"
	"runtime"
	"time"
)

// Example is one training sequence. InputIDs and Labels have the same
// length; as in Hugging Face causal-LM training the model shifts them:
// position t is scored on Labels[t+1], so Labels[0] is never used, and
// labels equal to -100 are ignored.
type Example struct {
	InputIDs []int
	Labels   []int
}

// TrainerOptions sizes a [Trainer].
type TrainerOptions struct {
	// MaxBatch is the most examples per call; MaxSeq the longest example.
	// Workspaces for MaxBatch×MaxSeq tokens are allocated up front.
	MaxBatch, MaxSeq int
	// DropoutSeed seeds the LoRA dropout masks (see [Trainer.SetDropoutSeed]).
	DropoutSeed uint64
	// Clock, when not nil, is a monotonic clock used only to fill
	// [Trainer.Stats]; nil turns timing off.
	Clock func() time.Duration
}

// Trainer computes losses and LoRA gradients for one adapter. It owns its
// workspaces and worker goroutines (as many as kernels.Threads) and is not
// safe for concurrent use; run one Trainer per goroutine. The adapter's parameters may be changed between calls (the
// optimizer updates [Adapter.Trainable] in place).
type Trainer struct {
	m    *Model
	a    *Adapter
	e    *engine[float32]
	opts TrainerOptions
}

// NewTrainer returns a trainer for adapter a of model m. It panics if a was
// created for a model of another shape or if MaxBatch or MaxSeq is not
// positive (programmer errors).
func (m *Model) NewTrainer(a *Adapter, opts TrainerOptions) *Trainer {
	if opts.MaxBatch <= 0 || opts.MaxSeq <= 0 {
		panic("model: NewTrainer needs positive MaxBatch and MaxSeq")
	}
	a.check(m)
	e := newEngine(m.d, &m.w, &a.lw, opts.MaxBatch, opts.MaxSeq, true)
	t := &Trainer{m: m, a: a, e: e, opts: opts}
	// The engine's worker goroutines end when the trainer is collected.
	runtime.AddCleanup(t, func(p *pool) { p.stop() }, e.pool)
	if opts.Clock != nil {
		e.clock = func() int64 { return int64(opts.Clock()) }
	}
	t.SetDropoutSeed(opts.DropoutSeed)
	return t
}

// SetDropoutSeed sets the dropout seed and resets the step counter. The
// LoRA dropout masks of a call are a deterministic function of (seed, step
// counter, layer, projection, row in the packed batch, column); the
// counter advances by one with each [Trainer.PerExampleGrads] or
// [Trainer.BatchGrad] call, so a fixed seed reproduces a run.
func (t *Trainer) SetDropoutSeed(seed uint64) {
	t.e.dropSeed, t.e.dropStep = seed, 0
}

func (t *Trainer) checkOut(batch []Example, losses []float64) error {
	if len(losses) < len(batch) {
		return fmt.Errorf("losses has room for %d of %d examples", len(losses), len(batch))
	}
	return nil
}

// PerExampleGrads writes the gradient of example i's loss with respect to
// a.Trainable() into grads[i] (each of length NumTrainable) and the loss
// into losses[i]. An example's loss is the mean next-token cross-entropy
// over its target tokens; an example with no target tokens has loss 0 and
// a zero gradient. The backward pass runs once over the whole packed
// batch; only the LoRA weight-gradient products are split by example, so
// the cost is close to [Trainer.BatchGrad]'s.
func (t *Trainer) PerExampleGrads(batch []Example, grads [][]float32, losses []float64) error {
	if len(grads) < len(batch) {
		return fmt.Errorf("grads has room for %d of %d examples", len(grads), len(batch))
	}
	for i := range batch {
		if len(grads[i]) != t.a.NumTrainable() {
			return fmt.Errorf("grads[%d] has length %d, want NumTrainable %d", i, len(grads[i]), t.a.NumTrainable())
		}
	}
	if err := t.checkOut(batch, losses); err != nil {
		return err
	}
	T, err := t.e.load(batch)
	if err != nil {
		return err
	}
	e := t.e
	e.tg = e.tg[:0]
	for i, s := range e.segs {
		e.tg = append(e.tg, gradTarget[float32]{s.start, s.start + s.n, grads[i]})
	}
	t.step(T, losses)
	return nil
}

// BatchGrad writes the sum over the batch of the per-example gradients
// into grad (length NumTrainable), computed the fast non-private way (one
// product per weight over all rows), and the per-example losses into
// losses.
func (t *Trainer) BatchGrad(batch []Example, grad []float32, losses []float64) error {
	if len(grad) != t.a.NumTrainable() {
		return fmt.Errorf("grad has length %d, want NumTrainable %d", len(grad), t.a.NumTrainable())
	}
	if err := t.checkOut(batch, losses); err != nil {
		return err
	}
	T, err := t.e.load(batch)
	if err != nil {
		return err
	}
	t.e.tg = append(t.e.tg[:0], gradTarget[float32]{0, T, grad})
	t.step(T, losses)
	return nil
}

func (t *Trainer) step(T int, losses []float64) {
	e := t.e
	e.forward(T, true)
	e.losses(losses)
	e.backwardPass(T)
	e.dropStep++
}

// Losses writes each example's mean target-token loss into losses: the
// forward pass only, without dropout.
func (t *Trainer) Losses(batch []Example, losses []float64) error {
	if err := t.checkOut(batch, losses); err != nil {
		return err
	}
	T, err := t.e.load(batch)
	if err != nil {
		return err
	}
	t.e.forward(T, false)
	t.e.losses(losses)
	return nil
}

// Stats are cumulative timings of a trainer with a Clock.
type Stats struct {
	// Gemm is the time spent in matrix products (projections, LoRA, output
	// head); Attention the time in attention and RoPE, whose own products
	// are not in Gemm.
	Gemm, Attention time.Duration
}

// Stats returns the timings accumulated since the last ResetStats.
func (t *Trainer) Stats() Stats {
	return Stats{Gemm: time.Duration(t.e.gemmNS), Attention: time.Duration(t.e.attnNS)}
}

// ResetStats zeroes the timings.
func (t *Trainer) ResetStats() { t.e.gemmNS, t.e.attnNS = 0, 0 }
