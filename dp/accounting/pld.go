package accounting

import (
	"errors"
	"fmt"
	"math"
	"math/cmplx"

	"gonum.org/v1/gonum/dsp/fourier"
)

// PLDOptions tune the PLD accountant. The zero value means the defaults.
type PLDOptions struct {
	// Interval is the discretisation interval of the privacy loss (default
	// 1e-4). A coarser interval is faster; the discretisation is always
	// pessimistic and its error shrinks with the square of the interval.
	Interval float64
	// TailMass is the probability mass cut from the tails at each
	// discretisation or composition (default 1e-15). The upper tail goes to
	// the infinite loss, so truncation only ever increases δ.
	TailMass float64
}

func (o *PLDOptions) withDefaults() (PLDOptions, error) {
	out := PLDOptions{Interval: 1e-4, TailMass: 1e-15}
	if o != nil {
		if o.Interval != 0 {
			out.Interval = o.Interval
		}
		if o.TailMass != 0 {
			out.TailMass = o.TailMass
		}
	}
	if !(out.Interval > 0 && out.Interval <= 1) {
		return out, fmt.Errorf("pld: interval must be in (0, 1], got %v", out.Interval)
	}
	if !(out.TailMass > 0 && out.TailMass < 1e-3) {
		return out, fmt.Errorf("pld: tail mass must be in (0, 1e-3), got %v", out.TailMass)
	}
	return out, nil
}

// PLD is the privacy loss distribution of an event under both directions of
// the add/remove-one relation, discretised pessimistically (connect the dots).
type PLD struct {
	interval float64
	tail     float64
	remove   pmf
	add      pmf
}

// pmf is a discretised privacy loss distribution: loss (offset+i)·interval has
// probability probs[i]; inf is the probability of an infinite loss.
type pmf struct {
	offset int
	probs  []float64
	inf    float64
}

var identity = pmf{offset: 0, probs: []float64{1}}

// NewPLD returns the privacy loss distribution of e. Supported events are
// Gaussian, PoissonSampled(Gaussian) and their compositions.
func NewPLD(e Event, opts *PLDOptions) (*PLD, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := Validate(e); err != nil {
		return nil, err
	}
	p := &PLD{interval: o.Interval, tail: o.TailMass}
	p.remove, p.add, err = p.build(Simplify(e))
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (p *PLD) build(e Event) (rem, add pmf, err error) {
	switch e := e.(type) {
	case Gaussian:
		return p.sampledGaussian(1, e.NoiseMultiplier)
	case PoissonSampled:
		g, ok := e.Event.(Gaussian)
		if !ok {
			return pmf{}, pmf{}, fmt.Errorf("pld: poisson_sampled of %T is not supported (only of gaussian)", e.Event)
		}
		if e.SamplingRate == 0 {
			return identity, identity, nil
		}
		return p.sampledGaussian(e.SamplingRate, g.NoiseMultiplier)
	case SelfComposed:
		r, a, err := p.build(e.Event)
		if err != nil {
			return pmf{}, pmf{}, err
		}
		if r, err = r.selfCompose(e.Count, p.tail); err != nil {
			return pmf{}, pmf{}, err
		}
		if a, err = a.selfCompose(e.Count, p.tail); err != nil {
			return pmf{}, pmf{}, err
		}
		return r, a, nil
	case Composed:
		rem, add = identity, identity
		for _, sub := range e.Events {
			r, a, err := p.build(sub)
			if err != nil {
				return pmf{}, pmf{}, err
			}
			if len(rem.probs)+len(r.probs) > maxPoints || len(add.probs)+len(a.probs) > maxPoints {
				return pmf{}, pmf{}, errTooLarge
			}
			rem, add = rem.compose(r, p.tail), add.compose(a, p.tail)
		}
		return rem, add, nil
	}
	return pmf{}, pmf{}, fmt.Errorf("pld: unsupported event %T", e)
}

func normSurv(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }
func normCDF(z float64) float64  { return 0.5 * math.Erfc(-z/math.Sqrt2) }

// sampledGaussian discretises the PLD of the Poisson-subsampled Gaussian with
// sensitivity 1: P = (1−q)N(0,σ²) + qN(1,σ²) against Q = N(0,σ²) (remove) and
// Q against P (add). Koskela, Jälkö and Honkela 2020, Section 6; the
// discretised by connect-the-dots.
func (p *PLD) sampledGaussian(q, sigma float64) (rem, add pmf, err error) {
	s2 := sigma * sigma
	// Privacy loss log(P(x)/Q(x)) = log((1−q) + q·exp((2x−1)/(2σ²))).
	loss := func(x float64) float64 {
		u := (2*x - 1) / (2 * s2)
		if q == 1 {
			return u
		}
		return logAdd(math.Log1p(-q), math.Log(q)+u)
	}
	// Inverse of loss, defined for l > log(1−q).
	xOf := func(l float64) float64 {
		if q == 1 {
			return s2*l + 0.5
		}
		return s2*math.Log((math.Expm1(l)+q)/q) + 0.5
	}
	lossFloor := math.Inf(-1)
	if q < 1 {
		lossFloor = math.Log1p(-q)
	}
	z := math.Sqrt2 * math.Erfcinv(p.tail) // each tail ≤ τ/2
	// Remove: P against Q. δ(ε) = Pr_P[L > ε] − e^ε Pr_Q[L > ε], L increasing in x.
	deltaRem := func(eps float64) float64 {
		if eps <= lossFloor {
			return -math.Expm1(eps)
		}
		x := xOf(eps)
		return (1-q)*normSurv(x/sigma) + q*normSurv((x-1)/sigma) - math.Exp(eps)*normSurv(x/sigma)
	}
	rem, err = connectDots(deltaRem, loss(-sigma*z), loss(1+sigma*z), p.interval)
	if err != nil {
		return pmf{}, pmf{}, err
	}
	// Add: Q against P, loss −L(x), decreasing in x: −L(X) > ε ⇔ X < xOf(−ε).
	deltaAdd := func(eps float64) float64 {
		if -eps <= lossFloor {
			return 0
		}
		x := xOf(-eps)
		return normCDF(x/sigma) - math.Exp(eps)*((1-q)*normCDF(x/sigma)+q*normCDF((x-1)/sigma))
	}
	hiAdd := -loss(-sigma * z)
	if q < 1 {
		hiAdd = math.Min(hiAdd, -lossFloor)
	}
	add, err = connectDots(deltaAdd, -loss(sigma*z), hiAdd, p.interval)
	return rem, add, err
}

// connectDots discretises a privacy curve δ(ε) on the grid kΔ, lo ≤ kΔ ≤ hi,
// with the connect-the-dots algorithm (Doroshenko, Ghazi, Kamath, Kumar and
// Manurangsi 2022, "Connect the Dots: Tighter Discrete Approximations of
// Privacy Loss Distributions", Algorithm 1): the discrete PLD's δ(ε) equals
// the true curve at every grid point and is linear in e^ε between them, so
// it lies above the convex true curve (pessimistic) with error O(Δ²).
// δ(hi) becomes the infinite-loss mass.
func connectDots(delta func(float64) float64, lo, hi, interval float64) (pmf, error) {
	if (hi-lo)/interval > maxPoints {
		return pmf{}, errTooLarge
	}
	kLo := int(math.Floor(lo / interval))
	kHi := int(math.Ceil(hi / interval))
	if kHi <= kLo {
		kHi = kLo + 1
	}
	n := kHi - kLo + 1
	d := make([]float64, n)
	for i := range d {
		d[i] = math.Max(0, delta(float64(kLo+i)*interval))
	}
	inf := d[n-1]
	probs := make([]float64, n)
	// Between grid points i and i+1, δ(ε) = inf + A_i − e^ε B_i with
	// A_i = Σ_{k>i} p_k and B_i = Σ_{k>i} p_k e^{−ε_k}; matching δ at both
	// ends gives B_i, A_i, and p_{i+1} = A_i − A_{i+1}.
	aNext := 0.0 // A_{n−1}
	for i := n - 2; i >= 0; i-- {
		ei, ej := float64(kLo+i)*interval, float64(kLo+i+1)*interval
		// B_i = (δ_i − δ_{i+1}) / (e^{ε_{i+1}} − e^{ε_i}), A_i = δ_i − inf + e^{ε_i} B_i.
		b := (d[i] - d[i+1]) / (math.Exp(ei) * math.Expm1(ej-ei))
		a := d[i] - inf + math.Exp(ei)*b
		probs[i+1] = math.Max(0, a-aNext)
		aNext = a
	}
	probs[0] = math.Max(0, 1-inf-aNext)
	return pmf{offset: kLo, probs: probs, inf: inf}, nil
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// selfCompose returns the n-fold composition by one FFT (Koskela et al. 2020,
// Algorithm 1), on a window chosen by Chernoff bounds on both tails so that
// each holds at most τ/2 (dp_accounting common.compute_self_convolve_bounds).
func (p pmf) selfCompose(n int, tail float64) (pmf, error) {
	if n == 0 {
		return identity, nil
	}
	if n == 1 {
		return p, nil
	}
	m := len(p.probs)
	lo, hi := 0, n*(m-1)
	logTail := math.Log(tail / 2)
	logp := make([]float64, m)
	for i, v := range p.probs {
		logp[i] = math.Log(v) // −Inf for zero mass
	}
	for j := -20; j <= 20; j++ {
		if j == 0 {
			continue
		}
		t := float64(j) / float64(m)
		// log E[e^{tI}] for I the index, by log-sum-exp.
		mx := math.Inf(-1)
		for i, lv := range logp {
			mx = math.Max(mx, lv+t*float64(i))
		}
		var sum float64
		for i, lv := range logp {
			sum += math.Exp(lv + t*float64(i) - mx)
		}
		lm := mx + math.Log(sum)
		// Pr[S ≥ b] ≤ exp(n·lm − t·b) for t > 0; Pr[S ≤ b] similarly for t < 0.
		b := (float64(n)*lm - logTail) / t
		if t > 0 {
			if c := math.Ceil(b); c < float64(hi) {
				hi = int(c)
			}
		} else if f := math.Floor(b); f > float64(lo) {
			lo = int(f)
		}
	}
	if hi < lo {
		hi = lo
	}
	if hi-lo+1 > maxPoints {
		return pmf{}, errTooLarge
	}
	size := nextPow2(hi - lo + 1)
	seq := make([]float64, size)
	for i, v := range p.probs {
		seq[i%size] += v
	}
	fft := fourier.NewFFT(size)
	coef := fft.Coefficients(nil, seq)
	for i, c := range coef {
		coef[i] = cmplx.Pow(c, complex(float64(n), 0))
	}
	res := fft.Sequence(nil, coef)
	out := make([]float64, hi-lo+1)
	for s := lo; s <= hi; s++ {
		out[s-lo] = math.Max(0, res[s%size]/float64(size))
	}
	inf := -math.Expm1(float64(n) * math.Log1p(-p.inf))
	if hi < n*(m-1) {
		inf += tail / 2 // mass above the window may have wrapped to lower losses
	}
	return pmf{offset: n*p.offset + lo, probs: out, inf: math.Min(1, inf)}, nil
}

// maxPoints bounds the support of a discretised distribution (2^26 points,
// 512 MiB of float64), so that an absurd event fails instead of exhausting
// memory.
const maxPoints = 1 << 26

var errTooLarge = errors.New("pld: event too large to account at this discretisation interval (more than 2^26 loss values); use a coarser interval")

// compose returns the composition of p and r by FFT convolution, then cuts at
// most τ/2 of mass from each tail: the lower tail onto the first kept point,
// the upper tail onto the infinite loss.
func (p pmf) compose(r pmf, tail float64) pmf {
	n := len(p.probs) + len(r.probs) - 1
	var out []float64
	if len(p.probs) == 1 || len(r.probs) == 1 {
		out = make([]float64, n)
		for i, a := range p.probs {
			for j, b := range r.probs {
				out[i+j] += a * b
			}
		}
	} else {
		size := nextPow2(n)
		fft := fourier.NewFFT(size)
		a := make([]float64, size)
		copy(a, p.probs)
		b := make([]float64, size)
		copy(b, r.probs)
		ca := fft.Coefficients(nil, a)
		cb := fft.Coefficients(nil, b)
		for i := range ca {
			ca[i] *= cb[i]
		}
		res := fft.Sequence(nil, ca)
		out = make([]float64, n)
		for i := range out {
			out[i] = math.Max(0, res[i]/float64(size))
		}
	}
	inf := 1 - (1-p.inf)*(1-r.inf)
	lo, cut := 0, 0.0
	for lo < len(out)-1 && cut+out[lo] <= tail/2 {
		cut += out[lo]
		lo++
	}
	out[lo] += cut
	hi, cutHi := len(out)-1, 0.0
	for hi > lo && cutHi+out[hi] <= tail/2 {
		cutHi += out[hi]
		hi--
	}
	return pmf{offset: p.offset + r.offset + lo, probs: out[lo : hi+1], inf: math.Min(1, inf+cutHi)}
}

// epsilon is the smallest ε ≥ 0 with δ(ε) ≤ delta for this distribution, where
// δ(ε) = inf + Σ_{l_k > ε} p_k (1 − e^{ε−l_k}) (the hockey-stick divergence;
// Sommer, Meiser and Mohammadi 2019, Lemma 5).
func (p pmf) epsilon(delta, interval float64) float64 {
	if p.inf > delta {
		return math.Inf(1)
	}
	// Scan down from the largest loss, keeping S = Σ_{k≥j} p_k and
	// log E = log Σ_{k≥j} p_k e^{−l_k} (in logs: e^{−l_k} overflows for
	// very negative losses). On [l_{j−1}, l_j], δ(ε) = inf + S − e^ε E.
	var sum float64
	logE := math.Inf(-1)
	for j := len(p.probs) - 1; j >= 0; j-- {
		lj := float64(p.offset+j) * interval
		if p.probs[j] > 0 {
			sum += p.probs[j]
			logE = logAdd(logE, math.Log(p.probs[j])-lj)
		}
		lower := math.Max(0, float64(p.offset+j-1)*interval)
		if lower >= lj {
			return 0 // l_j ≤ 0: no positive ε below here
		}
		excess := p.inf + sum - delta // δ(ε) − δ_target = excess − e^ε E
		if excess > 0 && math.Log(excess) > lower+logE {
			// δ(lower) > target: the solution lies in [lower, l_j].
			e := math.Log(excess) - logE
			return math.Min(lj, math.Max(lower, e))
		}
		if lower == 0 {
			return 0
		}
	}
	return 0
}

func (p pmf) delta(eps, interval float64) float64 {
	d := p.inf
	for j, v := range p.probs {
		l := float64(p.offset+j) * interval
		if l > eps {
			d += v * -math.Expm1(eps-l)
		}
	}
	return math.Min(1, d)
}

// Epsilon is the smallest ε with (ε, delta)-DP for both directions.
func (p *PLD) Epsilon(delta float64) (float64, error) {
	if !(delta > 0 && delta < 1) {
		return 0, fmt.Errorf("pld: delta must be in (0, 1), got %v", delta)
	}
	e := math.Max(p.remove.epsilon(delta, p.interval), p.add.epsilon(delta, p.interval))
	if math.IsInf(e, 1) {
		return e, fmt.Errorf("pld: delta %g is below the mass this discretisation puts on an infinite loss (%g); use a larger delta or a smaller tail mass",
			delta, math.Max(p.remove.inf, p.add.inf))
	}
	return e, nil
}

// Delta is the smallest δ with (eps, δ)-DP for both directions.
func (p *PLD) Delta(eps float64) float64 {
	return math.Max(p.remove.delta(eps, p.interval), p.add.delta(eps, p.interval))
}

// EpsilonPLD is ε at δ of e by the PLD accountant.
func EpsilonPLD(e Event, delta float64, opts *PLDOptions) (float64, error) {
	p, err := NewPLD(e, opts)
	if err != nil {
		return 0, err
	}
	return p.Epsilon(delta)
}

// AnalyticGaussianDelta is the exact δ(ε) of the Gaussian mechanism with
// sensitivity 1 and noise σ (Balle and Wang 2018, Theorem 8):
// δ = Φ(1/(2σ) − εσ) − e^ε Φ(−1/(2σ) − εσ).
func AnalyticGaussianDelta(sigma, eps float64) float64 {
	return normCDF(1/(2*sigma)-eps*sigma) - math.Exp(eps)*normCDF(-1/(2*sigma)-eps*sigma)
}

// AnalyticGaussianEpsilon is the exact ε at δ of the Gaussian mechanism with
// sensitivity 1 and noise σ, by bisection on [AnalyticGaussianDelta].
func AnalyticGaussianEpsilon(sigma, delta float64) float64 {
	lo, hi := 0.0, 1.0
	if AnalyticGaussianDelta(sigma, 0) <= delta {
		return 0
	}
	for AnalyticGaussianDelta(sigma, hi) > delta {
		lo, hi = hi, 2*hi
	}
	for i := 0; i < 200 && hi-lo > 1e-13; i++ {
		mid := (lo + hi) / 2
		if AnalyticGaussianDelta(sigma, mid) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
