package dp

import (
	"math"
	"testing"

	"github.com/fedtune/fedtune/dp/noise"
)

func TestClipAdd(t *testing.T) {
	const c = 1.5
	s := noise.NewSeeded(noise.SeedFromUint64(9))
	for trial := 0; trial < 200; trial++ {
		g := make([]float32, 1+trial%37)
		scale := math.Pow(10, float64(trial%7)-3)
		for i := range g {
			g[i] = float32(s.Normal() * scale)
		}
		sum := make([]float64, len(g))
		norm, err := ClipAdd(sum, g, c)
		if err != nil {
			t.Fatal(err)
		}
		var n2 float64
		for _, v := range sum {
			n2 += v * v
		}
		after := math.Sqrt(n2)
		if after > c*(1+1e-12) {
			t.Fatalf("clipped norm %v > C", after)
		}
		if norm <= c {
			for i := range g {
				if sum[i] != float64(g[i]) {
					t.Fatalf("unclipped gradient changed at %d", i)
				}
			}
		} else if math.Abs(after-c) > 1e-9 {
			t.Fatalf("clipped norm %v, want %v", after, c)
		}
	}
	if _, err := ClipAdd(make([]float64, 2), []float32{float32(math.Inf(1)), 0}, 1); err == nil {
		t.Error("infinite gradient accepted")
	}
}

func TestPoissonSampleRate(t *testing.T) {
	s := noise.NewSeeded(noise.SeedFromUint64(10))
	const n, q, steps = 5000, 0.03, 200
	total := 0
	counts := make([]int, n)
	var idx []int
	for k := 0; k < steps; k++ {
		idx, _ = PoissonSample(idx[:0], n, q, s)
		total += len(idx)
		for _, i := range idx {
			counts[i]++
		}
	}
	mean := float64(total) / (n * steps)
	if sd := math.Sqrt(q * (1 - q) / (n * steps)); math.Abs(mean-q) > 5*sd {
		t.Errorf("empirical rate %v, want %v", mean, q)
	}
	// Every record is eligible: the first and last are drawn about q·steps times.
	if counts[0] == 0 || counts[n-1] == 0 {
		t.Errorf("edge records never sampled: %d %d", counts[0], counts[n-1])
	}
	all, _ := PoissonSample(nil, 7, 1, s)
	none, _ := PoissonSample(nil, 7, 0, s)
	if len(all) != 7 || len(none) != 0 {
		t.Errorf("q=1 gave %d, q=0 gave %d", len(all), len(none))
	}
	if _, err := PoissonSample(nil, 7, 1.5, s); err == nil {
		t.Error("q=1.5 accepted")
	}
}

func TestNoisyMeanStd(t *testing.T) {
	s := noise.NewSeeded(noise.SeedFromUint64(11))
	const d, sigma, c, b = 400_000, 0.8, 2.0, 64.0
	sum := make([]float64, d)
	for i := range sum {
		sum[i] = 3
	}
	dst := make([]float32, d)
	if err := NoisyMean(dst, sum, sigma, c, b, s); err != nil {
		t.Fatal(err)
	}
	var m, m2 float64
	for _, v := range dst {
		x := float64(v)*b - 3
		m += x
		m2 += x * x
	}
	std := math.Sqrt(m2 / d)
	if math.Abs(std-sigma*c) > 5*sigma*c/math.Sqrt(2*d) {
		t.Errorf("noise std %v, want %v", std, sigma*c)
	}
	if math.Abs(m/d) > 5*sigma*c/math.Sqrt(d) {
		t.Errorf("noise mean %v", m/d)
	}
	// No noise when sigma = 0; division by the configured B.
	sum2 := []float64{64, -128}
	dst2 := make([]float32, 2)
	if err := NoisyMean(dst2, sum2, 0, c, b, s); err != nil || dst2[0] != 1 || dst2[1] != -2 {
		t.Errorf("σ=0: %v %v", dst2, err)
	}
}
