package accounting

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

type vectors struct {
	OpacusRDP []struct {
		Q, Sigma, Delta, Epsilon, Tolerance float64
		Steps                               int
	} `json:"opacus_rdp"`
	OpacusNoise []struct {
		Accountant          string
		Q, Delta, Tolerance float64
		TargetEpsilon       float64 `json:"target_epsilon"`
		NoiseMultiplier     float64 `json:"noise_multiplier"`
		Steps               int
	} `json:"opacus_noise_multiplier"`
	DPAccountingRDP struct {
		PoissonSampledGaussian struct {
			Sigma, Q float64
			Steps    int
			Orders   []any
			RDP      []any
			RTol     float64 `json:"rtol"`
		} `json:"poisson_sampled_gaussian"`
		PureDPConversion struct {
			RDPConst     float64 `json:"rdp_const"`
			Delta        float64
			Epsilon      float64
			OptimalOrder float64 `json:"optimal_order"`
		} `json:"pure_dp_conversion"`
		GaussianQ1 struct {
			Q, Sigma, Delta, Epsilon float64
		} `json:"gaussian_q1"`
	} `json:"dp_accounting_rdp"`
	PLD []struct {
		Event                     string
		Epsilon, Delta, Tolerance float64
	} `json:"dp_accounting_pld"`
	Analytic []struct {
		Sigma, Delta, Epsilon, Tolerance float64
	} `json:"analytic_gaussian"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/dp_accounting.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func num(t *testing.T, v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case string:
		if v == "inf" {
			return math.Inf(1)
		}
	}
	t.Fatalf("bad number %v", v)
	return 0
}

func TestOpacusRDPVector(t *testing.T) {
	v := loadVectors(t)
	if len(v.OpacusRDP) == 0 {
		t.Fatal("no vectors")
	}
	for _, c := range v.OpacusRDP {
		eps, err := EpsilonRDP(DPSGD(c.Q, c.Sigma, c.Steps), c.Delta, nil)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(eps-c.Epsilon) > c.Tolerance {
			t.Errorf("q=%v σ=%v T=%d: ε=%.12f, want %.12f", c.Q, c.Sigma, c.Steps, eps, c.Epsilon)
		}
	}
}

func TestDPAccountingRDPVector(t *testing.T) {
	c := loadVectors(t).DPAccountingRDP.PoissonSampledGaussian
	orders := make([]float64, len(c.Orders))
	for i, o := range c.Orders {
		orders[i] = num(t, o)
	}
	got, err := RDP(DPSGD(c.Q, c.Sigma, c.Steps), orders)
	if err != nil {
		t.Fatal(err)
	}
	for i := range orders {
		want := num(t, c.RDP[i])
		if math.IsInf(want, 1) {
			if !math.IsInf(got[i], 1) {
				t.Errorf("order %v: got %v, want +Inf", orders[i], got[i])
			}
			continue
		}
		if orders[i] == 1.5 && math.Abs(want-0.000670579741) < 1e-12 {
			// The collected vector has 6.7058e-4 here, but the upstream test
			// (rdp_privacy_accountant_test.py) asserts 6.5007e-4, and direct
			// numerical integration (TestRDPQuadrature) gives 6.500709e-4.
			want = 6.5007e-4
		}
		if math.Abs(got[i]-want) > c.RTol*want {
			t.Errorf("order %v: got %.10g, want %.10g", orders[i], got[i], want)
		}
	}
}

func TestPureDPConversionVector(t *testing.T) {
	c := loadVectors(t).DPAccountingRDP.PureDPConversion
	var orders, rdp []float64
	for a := 2; a <= 32; a++ {
		orders = append(orders, float64(a))
		rdp = append(rdp, c.RDPConst)
	}
	eps, order, err := EpsilonFromRDP(orders, rdp, c.Delta)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(eps-c.Epsilon) > 1e-9 || order != c.OptimalOrder {
		t.Errorf("ε=%.12f at order %v, want %.12f at %v", eps, order, c.Epsilon, c.OptimalOrder)
	}
}

func TestGaussianQ1Vector(t *testing.T) {
	c := loadVectors(t).DPAccountingRDP.GaussianQ1
	var orders []float64
	for i := 1000; i < 100000; i++ {
		orders = append(orders, float64(i)/1000)
	}
	orders = orders[1:] // orders must be > 1
	eps, err := EpsilonRDP(PoissonSampled{SamplingRate: c.Q, Event: Gaussian{NoiseMultiplier: c.Sigma}}, c.Delta, orders)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(eps-c.Epsilon) > 1e-6 {
		t.Errorf("ε=%.10f, want %v", eps, c.Epsilon)
	}
}

func TestRDPProperties(t *testing.T) {
	eps := func(q, s float64, T int) float64 {
		e, err := EpsilonRDP(DPSGD(q, s, T), 1e-5, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, q := range []float64{0.001, 0.01, 0.1} {
		for _, s := range []float64{0.7, 1, 2} {
			prev := 0.0
			for _, T := range []int{1, 10, 100, 1000} {
				e := eps(q, s, T)
				if e < prev {
					t.Errorf("ε not monotone in steps: q=%v σ=%v T=%d: %v < %v", q, s, T, e, prev)
				}
				prev = e
			}
			if eps(q, s, 100) < eps(q, s*1.1, 100) {
				t.Errorf("ε not decreasing in σ at q=%v σ=%v", q, s)
			}
			if eps(q, s, 100) > eps(q*1.5, s, 100) {
				t.Errorf("ε not increasing in q at q=%v σ=%v", q, s)
			}
		}
	}
	// Composition of identical events equals self-composition.
	a, _ := RDP(DPSGD(0.02, 1.1, 30), DefaultOrders())
	b, _ := RDP(Composed{Events: []Event{DPSGD(0.02, 1.1, 10), DPSGD(0.02, 1.1, 20)}}, DefaultOrders())
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-12*math.Max(1, a[i]) {
			t.Fatalf("order %d: %v vs %v", i, a[i], b[i])
		}
	}
}

func TestLogErfcContinuity(t *testing.T) {
	// The asymptotic branch must agree with the direct one where both work.
	for _, x := range []float64{20, 24.9} {
		direct := math.Log(math.Erfc(x))
		sum, term := 1.0, 1.0
		for k := 1; k < 20; k++ {
			term *= -float64(2*k-1) / (2 * x * x)
			sum += term
		}
		asym := -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(sum)
		if math.Abs(direct-asym) > 1e-9*math.Abs(direct) {
			t.Errorf("x=%v: %v vs %v", x, direct, asym)
		}
	}
}

// rdpQuadrature integrates A_α = E_{z∼N(0,σ²)}[((1−q) + q e^{(2z−1)/(2σ²)})^α]
// with the trapezoidal rule: an independent check of the series in rdp.go.
func rdpQuadrature(q, s, a float64) float64 {
	const n = 200000
	lo, hi := -40*s, 40*s+1
	h := (hi - lo) / n
	tot := 0.0
	for i := 0; i <= n; i++ {
		z := lo + float64(i)*h
		w := 1.0
		if i == 0 || i == n {
			w = 0.5
		}
		m0 := math.Exp(-z*z/(2*s*s)) / (s * math.Sqrt(2*math.Pi))
		tot += w * m0 * math.Pow((1-q)+q*math.Exp((2*z-1)/(2*s*s)), a)
	}
	return math.Log(tot*h) / (a - 1)
}

func TestRDPQuadrature(t *testing.T) {
	for _, c := range []struct{ q, s, a float64 }{
		{0.01, 2.5, 1.5}, {0.01, 2.5, 2.5}, {0.01, 2.5, 5}, {0.05, 1.0, 3.7}, {0.2, 0.8, 2}, {0.001, 0.5, 7.3},
	} {
		got := rdpSampledGaussian(c.q, c.s, c.a)
		want := rdpQuadrature(c.q, c.s, c.a)
		if math.Abs(got-want) > 1e-6*want {
			t.Errorf("q=%v σ=%v α=%v: series %.10g, quadrature %.10g", c.q, c.s, c.a, got, want)
		}
	}
}
