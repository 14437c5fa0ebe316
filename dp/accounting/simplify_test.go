package accounting

import (
	"math"
	"testing"
)

func TestSimplify(t *testing.T) {
	a := PoissonSampled{SamplingRate: 0.01, Event: Gaussian{NoiseMultiplier: 1}}
	b := Gaussian{NoiseMultiplier: 3}
	e := Composed{Events: []Event{
		SelfComposed{Event: a, Count: 100},
		b,
		SelfComposed{Event: Composed{Events: []Event{a, b}}, Count: 5},
		PoissonSampled{SamplingRate: 0, Event: Gaussian{NoiseMultiplier: 1}},
		SelfComposed{Event: a, Count: 0},
	}}
	got := Simplify(e)
	want := Composed{Events: []Event{SelfComposed{Event: a, Count: 105}, SelfComposed{Event: b, Count: 6}}}
	gb, _ := MarshalEvent(got)
	wb, _ := MarshalEvent(want)
	if string(gb) != string(wb) {
		t.Fatalf("got %s\nwant %s", gb, wb)
	}
	// Same ε by RDP (linear, so exact) and PLD.
	r1, _ := EpsilonRDP(e, 1e-6, nil)
	r2, _ := EpsilonRDP(got, 1e-6, nil)
	if math.Abs(r1-r2) > 1e-12 {
		t.Errorf("RDP %v vs %v", r1, r2)
	}
	// Unsupported inner events are kept (and counted) rather than dropped.
	odd := PoissonSampled{SamplingRate: 0.5, Event: SelfComposed{Event: b, Count: 2}}
	s := Simplify(SelfComposed{Event: odd, Count: 3})
	if sc, ok := s.(SelfComposed); !ok || sc.Count != 3 || sc.Event != Event(odd) {
		t.Errorf("got %#v", s)
	}
	// Overflowing counts leave the event as it is.
	big := SelfComposed{Event: SelfComposed{Event: a, Count: 1 << 30}, Count: 4}
	if Simplify(big) != Event(big) {
		t.Error("overflowing count simplified")
	}
}

// The FFT convolution path (used for different events) agrees with the
// self-composition path on equal events, without Simplify merging them.
func TestConvolutionMatchesSelfComposition(t *testing.T) {
	p := &PLD{interval: 1e-4, tail: 1e-15}
	r1, a1, err := p.build(Composed{Events: []Event{DPSGD(0.02, 1.0, 100), DPSGD(0.02, 1.0, 150), DPSGD(0.02, 1.0, 50)}})
	if err != nil {
		t.Fatal(err)
	}
	r2, a2, err := p.build(DPSGD(0.02, 1.0, 300))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []float64{1e-5, 1e-7} {
		e1 := math.Max(r1.epsilon(d, p.interval), a1.epsilon(d, p.interval))
		e2 := math.Max(r2.epsilon(d, p.interval), a2.epsilon(d, p.interval))
		if math.Abs(e1-e2) > 1e-3 {
			t.Errorf("δ=%g: convolved %v, self-composed %v", d, e1, e2)
		}
	}
}
