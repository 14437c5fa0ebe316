package trainer

import (
	"fmt"
	"math"
)

// Optimizer updates parameters in place from a gradient.
type optimizer interface {
	// step applies one update with learning rate lr.
	step(params, grad []float32, lr float64)
	// state returns the optimizer's buffers for checkpointing.
	state() [][]float32
}

// adamW is Adam with decoupled weight decay (Loshchilov and Hutter 2019,
// "Decoupled Weight Decay Regularization", Algorithm 2).
type adamW struct {
	beta1, beta2, eps, wd float64
	t                     int
	m, v                  []float32
}

func (o *adamW) step(p, g []float32, lr float64) {
	o.t++
	b1, b2 := o.beta1, o.beta2
	c1 := 1 - math.Pow(b1, float64(o.t)) // bias corrections (Kingma and Ba 2015, Algorithm 1)
	c2 := 1 - math.Pow(b2, float64(o.t))
	for i, gi := range g {
		gf := float64(gi)
		m := b1*float64(o.m[i]) + (1-b1)*gf    // m_t = β1 m + (1−β1) g
		v := b2*float64(o.v[i]) + (1-b2)*gf*gf // v_t = β2 v + (1−β2) g²
		o.m[i], o.v[i] = float32(m), float32(v)
		x := float64(p[i])
		x -= lr * o.wd * x                             // decoupled decay: θ ← θ − η λ θ
		x -= lr * (m / c1) / (math.Sqrt(v/c2) + o.eps) // θ ← θ − η m̂/(√v̂ + ε)
		p[i] = float32(x)
	}
}

func (o *adamW) state() [][]float32 { return [][]float32{o.m, o.v} }

// sgd is SGD with heavy-ball momentum (PyTorch's convention
// b ← μ b + g, θ ← θ − η b) and decoupled weight decay.
type sgd struct {
	momentum, wd float64
	t            int
	buf          []float32
}

func (o *sgd) step(p, g []float32, lr float64) {
	o.t++
	for i, gi := range g {
		b := o.momentum*float64(o.buf[i]) + float64(gi)
		o.buf[i] = float32(b)
		x := float64(p[i])
		x -= lr * o.wd * x
		x -= lr * b
		p[i] = float32(x)
	}
}

func (o *sgd) state() [][]float32 { return [][]float32{o.buf} }

func newOptimizer(c *Config, n int) (optimizer, error) {
	switch c.Optimizer {
	case "adamw":
		return &adamW{beta1: c.Beta1, beta2: c.Beta2, eps: c.AdamEps, wd: c.WeightDecay, m: make([]float32, n), v: make([]float32, n)}, nil
	case "sgd":
		return &sgd{momentum: c.Momentum, wd: c.WeightDecay, buf: make([]float32, n)}, nil
	}
	return nil, fmt.Errorf("unknown optimizer %q (want adamw or sgd)", c.Optimizer)
}

// learningRate is the schedule: linear warm-up from 0 over warmup steps,
// then constant or cosine annealing to 0 at the last step (Loshchilov and
// Hutter 2017, "SGDR", eq. 5 with one cycle and η_min = 0).
// step counts from 0.
func learningRate(schedule string, base float64, step, warmup, total int) float64 {
	if warmup > 0 && step < warmup {
		return base * float64(step+1) / float64(warmup)
	}
	if schedule == "constant" {
		return base
	}
	span := total - warmup
	if span <= 1 {
		return base
	}
	progress := float64(step-warmup) / float64(span)
	return base * 0.5 * (1 + math.Cos(math.Pi*progress)) // η_t = η/2 (1 + cos(π t/T))
}
