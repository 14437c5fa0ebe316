package accounting

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPLDVectors(t *testing.T) {
	v := loadVectors(t)
	events := map[string]Event{
		"Gaussian(sigma=sqrt(3)) composed 3 times":                    SelfComposed{Event: Gaussian{NoiseMultiplier: math.Sqrt(3)}, Count: 3},
		"PoissonSampled(q=0.2, Gaussian(sigma=0.5)) composed 3 times": SelfComposed{Event: PoissonSampled{SamplingRate: 0.2, Event: Gaussian{NoiseMultiplier: 0.5}}, Count: 3},
	}
	if len(v.PLD) != len(events) {
		t.Fatalf("%d PLD vectors, %d known events", len(v.PLD), len(events))
	}
	for _, c := range v.PLD {
		e, ok := events[c.Event]
		if !ok {
			t.Fatalf("unknown event %q", c.Event)
		}
		p, err := NewPLD(e, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := p.Delta(c.Epsilon)
		if math.Abs(d-c.Delta) > c.Tolerance {
			t.Errorf("%s: δ(%v)=%v, want %v±%v", c.Event, c.Epsilon, d, c.Delta, c.Tolerance)
		}
		if d < c.Delta-1e-4 {
			t.Errorf("%s: δ=%v below the reference %v: discretisation is not pessimistic", c.Event, d, c.Delta)
		}
	}
}

func TestAnalyticGaussianVector(t *testing.T) {
	for _, c := range loadVectors(t).Analytic {
		eps := AnalyticGaussianEpsilon(c.Sigma, c.Delta)
		if math.Abs(eps-c.Epsilon) > c.Tolerance {
			t.Errorf("σ=%v: ε=%.12f, want %.12f", c.Sigma, eps, c.Epsilon)
		}
		// The PLD of a single Gaussian is within a few intervals above exact.
		pe, err := EpsilonPLD(Gaussian{NoiseMultiplier: c.Sigma}, c.Delta, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pe < eps-1e-9 || pe > eps+5e-4 {
			t.Errorf("σ=%v: PLD ε=%.8f vs exact %.8f", c.Sigma, pe, eps)
		}
	}
}

func TestPLDBelowRDP(t *testing.T) {
	for _, c := range []struct {
		q, s float64
		T    int
	}{{0.04, 1.5, 2250}, {0.01, 1.0, 1000}, {0.1, 2.0, 100}, {0.001, 0.8, 5000}, {1, 5, 10}} {
		e := DPSGD(c.q, c.s, c.T)
		start := time.Now()
		pe, err := EpsilonPLD(e, 1e-5, nil)
		if err != nil {
			t.Fatal(err)
		}
		dur := time.Since(start)
		re, err := EpsilonRDP(e, 1e-5, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("q=%v σ=%v T=%d: PLD %.5f (%v) RDP %.5f", c.q, c.s, c.T, pe, dur, re)
		if !(pe <= re) {
			t.Errorf("q=%v σ=%v T=%d: PLD ε %v > RDP ε %v", c.q, c.s, c.T, pe, re)
		}
	}
}

func TestPLDComposedMatchesSelfComposed(t *testing.T) {
	a, err := EpsilonPLD(DPSGD(0.02, 1.0, 300), 1e-6, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := EpsilonPLD(Composed{Events: []Event{DPSGD(0.02, 1.0, 100), DPSGD(0.02, 1.0, 200)}}, 1e-6, nil)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(a-b) > 1e-3 {
		t.Errorf("self-composed %v, composed %v", a, b)
	}
	// Heterogeneous: composing a second event never lowers ε.
	c, err := EpsilonPLD(Composed{Events: []Event{DPSGD(0.02, 1.0, 300), DPSGD(0.05, 2.0, 50)}}, 1e-6, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c <= a {
		t.Errorf("adding an event lowered ε: %v ≤ %v", c, a)
	}
}

func TestPLDProperties(t *testing.T) {
	eps := func(q, s float64, T int) float64 {
		e, err := EpsilonPLD(DPSGD(q, s, T), 1e-5, &PLDOptions{Interval: 1e-3})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, q := range []float64{0.005, 0.05} {
		for _, s := range []float64{0.8, 1.5} {
			prev := 0.0
			for _, T := range []int{1, 10, 100, 500} {
				e := eps(q, s, T)
				if e < prev {
					t.Errorf("ε not monotone in steps at q=%v σ=%v T=%d", q, s, T)
				}
				prev = e
			}
			if eps(q, s, 100) < eps(q, s*1.2, 100) {
				t.Errorf("ε not decreasing in σ at q=%v σ=%v", q, s)
			}
			if eps(q, s, 100) > eps(q*1.5, s, 100) {
				t.Errorf("ε not increasing in q at q=%v σ=%v", q, s)
			}
		}
	}
	// A finer interval never gives a larger ε by more than the coarse slack,
	// and the coarse one is never below the fine one (pessimism).
	fine, _ := EpsilonPLD(DPSGD(0.01, 1.0, 200), 1e-5, &PLDOptions{Interval: 1e-4})
	coarse, _ := EpsilonPLD(DPSGD(0.01, 1.0, 200), 1e-5, &PLDOptions{Interval: 1e-2})
	if coarse < fine-1e-9 {
		t.Errorf("coarse interval ε %v below fine %v", coarse, fine)
	}
}

// T Gaussians with noise σ compose to one Gaussian with noise σ/√T exactly, so
// the FFT composition must land just above the analytic ε.
func TestPLDGaussianCompositionExact(t *testing.T) {
	for _, c := range []struct {
		s float64
		T int
	}{{5, 10}, {20, 400}, {2, 3}, {50, 5000}} {
		pe, err := EpsilonPLD(SelfComposed{Event: Gaussian{NoiseMultiplier: c.s}, Count: c.T}, 1e-6, nil)
		if err != nil {
			t.Fatal(err)
		}
		exact := AnalyticGaussianEpsilon(c.s/math.Sqrt(float64(c.T)), 1e-6)
		if pe < exact-1e-9 || pe > exact+1e-3 {
			t.Errorf("σ=%v T=%d: PLD ε=%.6f, exact %.6f", c.s, c.T, pe, exact)
		}
	}
}

// With a finer interval the answer converges: small sampling rates are where
// RDP is loosest, so check PLD against itself rather than RDP there.
func TestPLDIntervalConvergence(t *testing.T) {
	e := DPSGD(0.001, 0.8, 5000)
	a, _ := EpsilonPLD(e, 1e-5, &PLDOptions{Interval: 1e-3})
	b, _ := EpsilonPLD(e, 1e-5, &PLDOptions{Interval: 1e-4})
	c, _ := EpsilonPLD(e, 1e-5, &PLDOptions{Interval: 3e-5})
	if !(a >= b-1e-6 && b >= c-1e-6 && a-c < 0.01) {
		t.Errorf("ε at intervals 1e-3, 1e-4, 3e-5: %v %v %v", a, b, c)
	}
}

func TestPLDTooLarge(t *testing.T) {
	// An almost noiseless Gaussian and half a billion steps of a noisy one:
	// refused quickly, not out of memory.
	for _, e := range []Event{
		Gaussian{NoiseMultiplier: 0.001},
		SelfComposed{Event: PoissonSampled{SamplingRate: 0.5, Event: Gaussian{NoiseMultiplier: 2}}, Count: 1 << 29},
	} {
		start := time.Now()
		_, err := EpsilonPLD(e, 1e-5, nil)
		if err == nil || !strings.Contains(err.Error(), "too large") {
			t.Errorf("got %v", err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("refusal took %v", d)
		}
	}
	if _, err := UnmarshalEvent([]byte(`{"type":"self_composed","count":9000000000000,"event":{"type":"gaussian","noise_multiplier":1}}`)); err == nil {
		t.Error("huge count accepted")
	}
}

// Losses far below −709, where e^{−l} overflows, must not break the ε
// search: two atoms at l = −1000 and l = 1 (mass ½ each) have
// δ(ε) = ½(1 − e^{ε−1}) for 0 ≤ ε < 1, so δ = 0.1 gives ε = 1 + log 0.8.
func TestPMFEpsilonExtremeLosses(t *testing.T) {
	const interval = 1e-3
	p := pmf{offset: -1_000_000, probs: make([]float64, 1_001_001)}
	p.probs[0] = 0.5
	p.probs[len(p.probs)-1] = 0.5
	got := p.epsilon(0.1, interval)
	want := 1 + math.Log(0.8)
	if math.Abs(got-want) > 1e-12 {
		t.Errorf("ε=%v, want %v", got, want)
	}
	if d := p.delta(want, interval); math.Abs(d-0.1) > 1e-12 {
		t.Errorf("δ(ε)=%v, want 0.1", d)
	}
}

func TestPLDDeltaBelowResolution(t *testing.T) {
	_, err := EpsilonPLD(DPSGD(0.01, 1, 10), 1e-17, nil)
	if err == nil || !strings.Contains(err.Error(), "infinite loss") {
		t.Errorf("got %v", err)
	}
}
