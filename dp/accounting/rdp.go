package accounting

import (
	"errors"
	"fmt"
	"math"
)

// DefaultOrders are the Rényi orders Opacus uses: 1.1, 1.2, …, 10.9, then
// 12, 13, …, 63.
func DefaultOrders() []float64 {
	orders := make([]float64, 0, 99+52)
	for x := 1; x < 100; x++ {
		orders = append(orders, 1+float64(x)/10)
	}
	for a := 12; a < 64; a++ {
		orders = append(orders, float64(a))
	}
	return orders
}

// ExtendedOrders are [DefaultOrders] followed by 64…256 and 512, 1024; they
// help for very small ε or δ.
func ExtendedOrders() []float64 {
	orders := DefaultOrders()
	for a := 64; a <= 256; a += 4 {
		orders = append(orders, float64(a))
	}
	return append(orders, 512, 1024)
}

// RDP returns the Rényi differential privacy of e at each of the orders
// (all > 1; +Inf allowed). The result has one entry per order.
func RDP(e Event, orders []float64) ([]float64, error) {
	if err := Validate(e); err != nil {
		return nil, err
	}
	for i, a := range orders {
		if !(a > 1) {
			return nil, fmt.Errorf("rdp: order %d is %v; orders must be > 1", i, a)
		}
	}
	out := make([]float64, len(orders))
	if err := addRDP(out, e, orders, 1); err != nil {
		return nil, err
	}
	return out, nil
}

// addRDP adds times × RDP(e) to dst. RDP composes by addition (Mironov 2017,
// Proposition 1).
func addRDP(dst []float64, e Event, orders []float64, times float64) error {
	switch e := e.(type) {
	case Gaussian:
		for i, a := range orders {
			dst[i] += times * rdpSampledGaussian(1, e.NoiseMultiplier, a)
		}
	case PoissonSampled:
		g, ok := e.Event.(Gaussian)
		if !ok {
			return fmt.Errorf("rdp: poisson_sampled of %T is not supported (only of gaussian)", e.Event)
		}
		for i, a := range orders {
			dst[i] += times * rdpSampledGaussian(e.SamplingRate, g.NoiseMultiplier, a)
		}
	case SelfComposed:
		return addRDP(dst, e.Event, orders, times*float64(e.Count))
	case Composed:
		for _, sub := range e.Events {
			if err := addRDP(dst, sub, orders, times); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("rdp: unsupported event %T", e)
	}
	return nil
}

// rdpSampledGaussian is the RDP at order alpha of the Poisson-subsampled
// Gaussian mechanism (Mironov, Talwar and Zhang 2019, "Rényi Differential
// Privacy of the Sampled Gaussian Mechanism", Sections 3.3 and 3.4).
func rdpSampledGaussian(q, sigma, alpha float64) float64 {
	switch {
	case q == 0:
		return 0
	case q == 1:
		return alpha / (2 * sigma * sigma) // Mironov 2017, Proposition 7
	case math.IsInf(alpha, 1):
		return math.Inf(1)
	}
	var logA float64
	if alpha == math.Trunc(alpha) && alpha < 1e6 {
		logA = logAInt(q, sigma, int(alpha))
	} else {
		logA = logAFrac(q, sigma, alpha)
	}
	return logA / (alpha - 1) // MTZ 2019, Definition 5: RDP = log(A_α)/(α−1)
}

// logAInt is log A_α for integer α (MTZ 2019, Section 3.3):
// A_α = Σ_{i=0}^{α} C(α,i) (1−q)^{α−i} q^i exp((i²−i)/(2σ²)).
func logAInt(q, sigma float64, alpha int) float64 {
	logA := math.Inf(-1)
	lq, l1q := math.Log(q), math.Log1p(-q)
	a := float64(alpha)
	la1, _ := math.Lgamma(a + 1)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		li, _ := math.Lgamma(fi + 1)
		lai, _ := math.Lgamma(a - fi + 1)
		logCoef := la1 - li - lai + fi*lq + (a-fi)*l1q
		s := logCoef + (fi*fi-fi)/(2*sigma*sigma)
		logA = logAdd(logA, s)
	}
	return logA
}

// logAFrac is log A_α for fractional α (MTZ 2019, Section 3.4): the two
// series split at z0 = σ² log(1/q − 1) + 1/2, summed until the terms drop
// below e^{−30}.
func logAFrac(q, sigma, alpha float64) float64 {
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	lq, l1q := math.Log(q), math.Log1p(-q)
	coef := 1.0 // C(α, i), by the recurrence C(α,i) = C(α,i−1)(α−i+1)/i
	for i := 0; i < 100000; i++ {
		if i > 0 {
			coef *= (alpha - float64(i) + 1) / float64(i)
		}
		fi := float64(i)
		j := alpha - fi
		logCoef := math.Log(math.Abs(coef))
		logT0 := logCoef + fi*lq + j*l1q
		logT1 := logCoef + j*lq + fi*l1q
		logE0 := math.Log(0.5) + logErfc((fi-z0)/(math.Sqrt2*sigma))
		logE1 := math.Log(0.5) + logErfc((z0-j)/(math.Sqrt2*sigma))
		logS0 := logT0 + (fi*fi-fi)/(2*sigma*sigma) + logE0
		logS1 := logT1 + (j*j-j)/(2*sigma*sigma) + logE1
		if coef > 0 {
			logA0 = logAdd(logA0, logS0)
			logA1 = logAdd(logA1, logS1)
		} else {
			logA0 = logSub(logA0, logS0)
			logA1 = logSub(logA1, logS1)
		}
		if math.Max(logS0, logS1) < -30 {
			break
		}
	}
	return logAdd(logA0, logA1)
}

func logAdd(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if math.IsInf(b, -1) {
		return a
	}
	if a < b {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// logSub is log(e^a − e^b) for a ≥ b.
func logSub(a, b float64) float64 {
	if math.IsInf(b, -1) {
		return a
	}
	if a <= b {
		return math.Inf(-1)
	}
	return a + math.Log(-math.Expm1(b-a))
}

// logErfc is log(erfc(x)), accurate where erfc underflows.
func logErfc(x float64) float64 {
	if x < 25 {
		return math.Log(math.Erfc(x))
	}
	// Asymptotic series (Abramowitz and Stegun 7.1.23):
	// erfc(x) = e^{−x²}/(x√π) · Σ_k (−1)^k (2k−1)!! / (2x²)^k.
	sum, term := 1.0, 1.0
	x2 := 2 * x * x
	for k := 1; k < 20; k++ {
		term *= -float64(2*k-1) / x2
		sum += term
		if math.Abs(term) < 1e-17 {
			break
		}
	}
	return -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(sum)
}

// EpsilonFromRDP converts RDP values at orders to ε at the given δ with
// Balle et al. 2020, "Hypothesis Testing Interpretations and Rényi
// Differential Privacy", Theorem 21, and returns the optimal order.
func EpsilonFromRDP(orders, rdp []float64, delta float64) (eps, order float64, err error) {
	if len(orders) != len(rdp) {
		return 0, 0, fmt.Errorf("rdp: %d orders but %d values", len(orders), len(rdp))
	}
	if len(orders) == 0 {
		return 0, 0, errors.New("rdp: no orders")
	}
	if !(delta > 0 && delta < 1) {
		return 0, 0, fmt.Errorf("rdp: delta must be in (0, 1), got %v", delta)
	}
	best, bestOrder := math.Inf(1), orders[0]
	for i, a := range orders {
		r := rdp[i]
		if r < 0 || math.IsNaN(r) {
			return 0, 0, fmt.Errorf("rdp: value %v at order %v is not ≥ 0", r, a)
		}
		var e float64
		switch {
		case delta*delta+math.Expm1(-r) > 0:
			// δ ≥ sqrt(1 − exp(−KL)) already (Pinsker-type bound, as dp_accounting).
			e = 0
		case a > 1.01 && !math.IsInf(a, 1) && !math.IsInf(r, 1):
			// Balle et al. 2020, Theorem 21: ε = r + log((α−1)/α) − (log δ + log α)/(α−1).
			e = r + math.Log1p(-1/a) - math.Log(delta*a)/(a-1)
		default:
			e = math.Inf(1)
		}
		if e < best {
			best, bestOrder = e, a
		}
	}
	return math.Max(0, best), bestOrder, nil
}

// EpsilonRDP is ε at δ of e by the RDP accountant at the given orders
// (DefaultOrders when nil).
func EpsilonRDP(e Event, delta float64, orders []float64) (float64, error) {
	if orders == nil {
		orders = DefaultOrders()
	}
	r, err := RDP(e, orders)
	if err != nil {
		return 0, err
	}
	eps, _, err := EpsilonFromRDP(orders, r, delta)
	return eps, err
}
