package aggregator

import (
	"encoding/json"
	"fmt"
	"math"
)

// ServerOptimizer turns the average of the sites' updates (each update is
// the site's new adapter minus the global adapter it started from) into
// the next global adapter, in place.
//
// With FFA-LoRA (A frozen and shared, only B trained) a site's weight change
// is s·ΔB·A, linear in ΔB, so averaging the B updates averages the weight
// changes exactly. With plain LoRA, A and B are averaged separately and the
// average of the products B·A is not the product of the averages: the merged
// update is an approximation whose error grows with how different the sites'
// A matrices become.
type ServerOptimizer interface {
	// Step applies avgDelta (length len(global)) to global.
	Step(global []float32, avgDelta []float64) error
}

// Average divides a decoded sum by the number of contributions.
func Average(sum []float64, n int) []float64 {
	out := make([]float64, len(sum))
	for i, v := range sum {
		out[i] = v / float64(n)
	}
	return out
}

// FedAvg is federated averaging with a server learning rate (McMahan et
// al. 2017; server LR as in Reddi et al. 2021): x ← x + η·Δ̄.
type FedAvg struct {
	LR float64 // η; 1 is plain FedAvg
}

// Step implements ServerOptimizer.
func (o *FedAvg) Step(global []float32, avg []float64) error {
	if len(avg) != len(global) {
		return fmt.Errorf("aggregator: update has %d values, adapter has %d", len(avg), len(global))
	}
	for i, d := range avg {
		global[i] += float32(o.LR * d)
	}
	return nil
}

// FedAdam is the adaptive server optimizer of Reddi et al., "Adaptive
// Federated Optimization" (ICLR 2021), Algorithm 2:
//
//	m ← β₁·m + (1−β₁)·Δ̄
//	v ← β₂·v + (1−β₂)·Δ̄²
//	x ← x + η·m/(√v + τ)
//
// Its state (M, V, T) must be persisted with the global adapter.
type FedAdam struct {
	LR    float64   `json:"lr"`
	Beta1 float64   `json:"beta1"`
	Beta2 float64   `json:"beta2"`
	Tau   float64   `json:"tau"`
	M     []float64 `json:"m"`
	V     []float64 `json:"v"`
	T     int       `json:"t"`
}

// NewFedAdam returns FedAdam with the paper's defaults (β₁ = 0.9,
// β₂ = 0.99, τ = 10⁻³) and server learning rate lr.
func NewFedAdam(lr float64) *FedAdam { return &FedAdam{LR: lr, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3} }

// Step implements ServerOptimizer.
func (o *FedAdam) Step(global []float32, avg []float64) error {
	if len(avg) != len(global) {
		return fmt.Errorf("aggregator: update has %d values, adapter has %d", len(avg), len(global))
	}
	if o.M == nil {
		o.M = make([]float64, len(global))
		o.V = make([]float64, len(global))
	}
	if len(o.M) != len(global) {
		return fmt.Errorf("aggregator: FedAdam state has %d values, adapter has %d", len(o.M), len(global))
	}
	o.T++
	for i, d := range avg {
		o.M[i] = o.Beta1*o.M[i] + (1-o.Beta1)*d
		o.V[i] = o.Beta2*o.V[i] + (1-o.Beta2)*d*d
		global[i] += float32(o.LR * o.M[i] / (math.Sqrt(o.V[i]) + o.Tau))
	}
	return nil
}

// MarshalState encodes the optimizer state for persistence.
func (o *FedAdam) MarshalState() ([]byte, error) { return json.Marshal(o) }

// UnmarshalState restores state written by MarshalState.
func (o *FedAdam) UnmarshalState(b []byte) error { return json.Unmarshal(b, o) }
