package noise

import (
	"crypto/rand"
	"errors"
	"math"
	"math/bits"
	mrand "math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestNormalMoments(t *testing.T) {
	s := NewSeeded(SeedFromUint64(1))
	const n = 2_000_000
	var sum, sum2, sum4 float64
	tail3 := 0
	for i := 0; i < n; i++ {
		z := s.Normal()
		sum += z
		sum2 += z * z
		sum4 += z * z * z * z
		if math.Abs(z) > 3 {
			tail3++
		}
	}
	mean, vari := sum/n, sum2/n
	// Standard errors: mean 1/√n, variance √2/√n, fourth moment √96/√n.
	if math.Abs(mean) > 5/math.Sqrt(n) {
		t.Errorf("mean %v", mean)
	}
	if math.Abs(vari-1) > 5*math.Sqrt2/math.Sqrt(n) {
		t.Errorf("variance %v", vari)
	}
	if math.Abs(sum4/n-3) > 5*math.Sqrt(96)/math.Sqrt(n) {
		t.Errorf("fourth moment %v", sum4/n)
	}
	// P(|Z| > 3) = 0.0026998.
	p := float64(tail3) / n
	if math.Abs(p-0.0026998) > 5*math.Sqrt(0.0027/n) {
		t.Errorf("P(|Z|>3) = %v", p)
	}
}

// Kolmogorov–Smirnov test against the normal CDF, including the tail beyond
// the ziggurat's base strip.
func TestNormalKS(t *testing.T) {
	s := NewSeeded(SeedFromUint64(2))
	const n = 200_000
	z := make([]float64, n)
	for i := range z {
		z[i] = s.Normal()
	}
	sort.Float64s(z)
	d := 0.0
	for i, v := range z {
		c := 0.5 * math.Erfc(-v/math.Sqrt2)
		d = math.Max(d, math.Max(math.Abs(c-float64(i)/n), math.Abs(c-float64(i+1)/n)))
	}
	// Critical value at α = 0.001: 1.95/√n.
	if d > 1.95/math.Sqrt(n) {
		t.Errorf("KS statistic %v", d)
	}
	// Tail: P(Z > 3.5) = 2.326e-4, drawn from the tail branch.
	s2 := NewSeeded(SeedFromUint64(3))
	cnt := 0
	const m = 4_000_000
	for i := 0; i < m; i++ {
		if s2.Normal() > 3.5 {
			cnt++
		}
	}
	if p := float64(cnt) / m; math.Abs(p-2.326e-4) > 5*math.Sqrt(2.326e-4/m) {
		t.Errorf("P(Z>3.5) = %v", p)
	}
}

func TestAddGaussianStdAndGrid(t *testing.T) {
	for _, std := range []float64{0.37, 1, 1.5, 1234.5} {
		s := NewSeeded(SeedFromUint64(uint64(std * 100)))
		const n = 500_000
		x := make([]float64, n)
		base := 0.123456789
		for i := range x {
			x[i] = base
		}
		g, err := s.AddGaussian(x, std)
		if err != nil {
			t.Fatal(err)
		}
		if g != Grid(std) || bits.OnesCount64(math.Float64bits(g)&((1<<52)-1)) != 0 {
			t.Fatalf("grid %v is not a power of two", g)
		}
		if r := std / g; r < 0x1p20 || r >= 0x1p21 {
			t.Fatalf("std/grid = %v", r)
		}
		var sum, sum2 float64
		for _, v := range x {
			if v/g != math.Trunc(v/g) {
				t.Fatalf("output %v not on grid %v", v, g)
			}
			d := v - base
			sum += d
			sum2 += d * d
		}
		emp := math.Sqrt(sum2 / n)
		if math.Abs(emp-std) > 5*std/math.Sqrt(2*n) {
			t.Errorf("std %v: empirical %v", std, emp)
		}
		if math.Abs(sum/n) > 5*std/math.Sqrt(n) {
			t.Errorf("std %v: mean %v", std, sum/n)
		}
	}
}

func TestSeededReproducible(t *testing.T) {
	a, b := NewSeeded(SeedFromUint64(7)), NewSeeded(SeedFromUint64(7))
	c := NewSeeded(SeedFromUint64(8))
	same := 0
	for i := 0; i < 1000; i++ {
		x, y, z := a.Normal(), b.Normal(), c.Normal()
		if x != y {
			t.Fatal("same seed, different output")
		}
		if x == z {
			same++
		}
	}
	if same > 5 {
		t.Errorf("different seeds agree %d times", same)
	}
	s1, err := New(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := New(rand.Reader)
	if s1.Uint64() == s2.Uint64() {
		t.Error("two samplers keyed from crypto/rand agree")
	}
}

func TestAddGaussianErrors(t *testing.T) {
	s := NewSeeded(SeedFromUint64(1))
	if _, err := s.AddGaussian([]float64{1}, 0); err == nil {
		t.Error("std 0 accepted")
	}
	if _, err := s.AddGaussian([]float64{1}, math.NaN()); err == nil {
		t.Error("std NaN accepted")
	}
	if _, err := s.AddGaussian([]float64{-5.2e5, 5.2e5}, 1); err != nil {
		t.Errorf("input just below 2^19·σ: %v", err)
	}
	if _, err := s.AddGaussian([]float64{0, 1e6}, 1); !errors.Is(err, ErrRange) {
		t.Errorf("huge input: %v", err)
	}
	if _, err := s.AddGaussian([]float64{math.NaN()}, 1); !errors.Is(err, ErrRange) {
		t.Errorf("NaN input: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestNewEntropyError(t *testing.T) {
	if _, err := New(failingReader{}); err == nil {
		t.Error("entropy failure ignored")
	}
}

// BenchmarkAddGaussian reports samples per second; the baseline
// BenchmarkChaCha8Uint64 is the raw generator in the same run.
func BenchmarkAddGaussian(b *testing.B) {
	s := NewSeeded(SeedFromUint64(1))
	x := make([]float64, 1<<16)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.AddGaussian(x, 1.0); err != nil {
			b.Fatal(err)
		}
		clear(x)
	}
	b.ReportMetric(float64(b.N)*float64(len(x))/b.Elapsed().Seconds(), "samples/s")
}

func BenchmarkChaCha8Uint64(b *testing.B) {
	r := mrand.NewChaCha8(SeedFromUint64(1))
	var acc uint64
	for i := 0; i < b.N*(1<<16); i++ {
		acc += r.Uint64()
	}
	b.ReportMetric(float64(b.N)*(1<<16)/b.Elapsed().Seconds(), "samples/s")
	_ = acc
}

func TestMeasureThroughput(t *testing.T) {
	tp := MeasureThroughput(1<<18, time.Now)
	if !(tp.SamplesPerSecond > 0 && tp.SamplerOverChaCha8Uint64 > 0) {
		t.Errorf("%+v", tp)
	}
	t.Logf("%+v", tp)
}
