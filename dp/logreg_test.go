package dp

import (
	"math"
	"testing"

	"github.com/fedtune/fedtune/dp/noise"
)

// A small differentiable model of our own: logistic regression with
// per-example gradients, trained with the DP-SGD pieces of this package.
// It checks the mechanics end to end independently of the language model.
func TestDPSGDLogisticRegression(t *testing.T) {
	const (
		n, d     = 4000, 6
		b        = 100
		steps    = 300
		c, sigma = 1.0, 1.0
		lr       = 0.5
	)
	s := noise.NewSeeded(noise.SeedFromUint64(21))
	wTrue := []float64{1.5, -2, 0.7, 0, 1, -0.5}
	xs := make([][]float64, n)
	ys := make([]float64, n)
	for i := range xs {
		xs[i] = make([]float64, d)
		z := 0.0
		for j := range xs[i] {
			xs[i][j] = s.Normal()
			z += wTrue[j] * xs[i][j]
		}
		if z > 0 {
			ys[i] = 1
		}
	}
	accuracy := func(w []float32) float64 {
		ok := 0
		for i, x := range xs {
			z := 0.0
			for j := range x {
				z += float64(w[j]) * x[j]
			}
			if (z > 0) == (ys[i] == 1) {
				ok++
			}
		}
		return float64(ok) / n
	}
	w := make([]float32, d)
	g := make([]float32, d)
	sum := make([]float64, d)
	upd := make([]float32, d)
	var idx []int
	q := float64(b) / n
	clipped, seen := 0, 0
	for step := 0; step < steps; step++ {
		idx, _ = PoissonSample(idx[:0], n, q, s)
		clear(sum)
		for _, i := range idx {
			// ∂/∂w of the logistic loss: (σ(w·x) − y)·x, scaled up so that
			// clipping matters.
			z := 0.0
			for j := range w {
				z += float64(w[j]) * xs[i][j]
			}
			p := 1 / (1 + math.Exp(-z))
			for j := range g {
				g[j] = float32(3 * (p - ys[i]) * xs[i][j])
			}
			norm, err := ClipAdd(sum, g, c)
			if err != nil {
				t.Fatal(err)
			}
			if norm > c {
				clipped++
			}
			seen++
		}
		if err := NoisyMean(upd, sum, sigma, c, b, s); err != nil {
			t.Fatal(err)
		}
		for j := range w {
			w[j] -= float32(lr) * upd[j]
		}
	}
	if acc := accuracy(w); acc < 0.9 {
		t.Errorf("DP-SGD logistic regression accuracy %.3f", acc)
	}
	if clipped == 0 || clipped == seen {
		t.Errorf("clipped %d of %d: the test should exercise both branches", clipped, seen)
	}
	if mean := float64(seen) / steps; math.Abs(mean-b) > 5*math.Sqrt(b/float64(steps)) {
		t.Errorf("mean realised batch %v, want about %v", mean, b)
	}
}

// The noisy mean is unbiased: averaged over many draws it is sum/B.
func TestNoisyMeanUnbiased(t *testing.T) {
	s := noise.NewSeeded(noise.SeedFromUint64(22))
	const reps, b = 20000, 10.0
	want := []float64{0.3, -1.2, 4}
	acc := make([]float64, len(want))
	sum := make([]float64, len(want))
	dst := make([]float32, len(want))
	for r := 0; r < reps; r++ {
		copy(sum, want)
		if err := NoisyMean(dst, sum, 2, 1.5, b, s); err != nil {
			t.Fatal(err)
		}
		for i, v := range dst {
			acc[i] += float64(v)
		}
	}
	se := 2 * 1.5 / b / math.Sqrt(reps)
	for i := range want {
		if got := acc[i] / reps; math.Abs(got-want[i]/b) > 5*se {
			t.Errorf("coordinate %d: mean %v, want %v", i, got, want[i]/b)
		}
	}
}
