package accounting

import (
	"errors"
	"fmt"
	"math"
)

// Accountant names an accountant for [Epsilon] and [Calibrate].
type Accountant string

const (
	AccountantRDP Accountant = "rdp"
	AccountantPLD Accountant = "pld"
)

// ParseAccountant checks an accountant name.
func ParseAccountant(s string) (Accountant, error) {
	switch Accountant(s) {
	case AccountantRDP, AccountantPLD:
		return Accountant(s), nil
	}
	return "", fmt.Errorf("unknown accountant %q (want rdp or pld)", s)
}

// Epsilon is ε at δ of e by the named accountant with default options.
func Epsilon(acct Accountant, e Event, delta float64) (float64, error) {
	switch acct {
	case AccountantRDP:
		return EpsilonRDP(e, delta, nil)
	case AccountantPLD:
		return EpsilonPLD(e, delta, nil)
	}
	return 0, fmt.Errorf("unknown accountant %q (want rdp or pld)", acct)
}

// MaxNoiseMultiplier is the largest noise multiplier [Calibrate] considers.
const MaxNoiseMultiplier = 1000.0

// ErrUnreachable is returned (wrapped in an *UnreachableError) when no
// noise multiplier up to MaxNoiseMultiplier meets the target.
var ErrUnreachable = errors.New("target epsilon unreachable")

// UnreachableError reports the smallest ε reachable with the given sampling
// rate and steps.
type UnreachableError struct {
	Target, Smallest float64
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("target epsilon %g unreachable with these steps and sampling rate: the smallest reachable is %.6g (noise multiplier %g)", e.Target, e.Smallest, MaxNoiseMultiplier)
}

func (e *UnreachableError) Unwrap() error { return ErrUnreachable }

// CalibrateOptions tune [Calibrate]. The zero value means the defaults.
type CalibrateOptions struct {
	// EpsilonTolerance stops the bisection once the returned σ has
	// target − tolerance ≤ ε(σ) ≤ target (default 1e-3·target). Opacus uses 0.01.
	EpsilonTolerance float64
	// PLD tunes the PLD accountant.
	PLD *PLDOptions
}

// Calibrate returns the smallest noise multiplier σ (to within the
// tolerance) such that SelfComposed(PoissonSampled(q, Gaussian(σ)), steps)
// is (targetEps, delta)-DP. It bisects as Opacus' get_noise_multiplier does
// (start at 20, doubling) and returns the upper end of the bracket, so
// ε(σ) ≤ targetEps always holds for the returned σ.
func Calibrate(acct Accountant, q float64, steps int, targetEps, delta float64, opts *CalibrateOptions) (float64, error) {
	if !(targetEps > 0) || math.IsInf(targetEps, 0) {
		return 0, fmt.Errorf("calibrate: target epsilon must be finite and > 0, got %v", targetEps)
	}
	if !(delta > 0 && delta < 1) {
		return 0, fmt.Errorf("calibrate: delta must be in (0, 1), got %v", delta)
	}
	if !(q > 0 && q <= 1) {
		return 0, fmt.Errorf("calibrate: sampling rate must be in (0, 1], got %v", q)
	}
	if steps < 1 {
		return 0, fmt.Errorf("calibrate: steps must be ≥ 1, got %d", steps)
	}
	var o CalibrateOptions
	if opts != nil {
		o = *opts
	}
	if acct == AccountantPLD && o.PLD == nil {
		// Bisect with a coarse interval (connect-the-dots is pessimistic at
		// any interval, and its error shrinks as the interval squared), then
		// confirm the answer at the default interval.
		coarse := o
		coarse.PLD = &PLDOptions{Interval: 1e-3}
		if s, err := Calibrate(acct, q, steps, targetEps, delta, &coarse); err == nil {
			if e, err := EpsilonPLD(DPSGD(q, s, steps), delta, nil); err == nil && e <= targetEps {
				return s, nil
			}
		}
		o.PLD = &PLDOptions{}
	}
	if o.EpsilonTolerance == 0 {
		o.EpsilonTolerance = 1e-3 * targetEps
	}
	eps := func(sigma float64) (float64, error) {
		e := DPSGD(q, sigma, steps)
		switch acct {
		case AccountantRDP:
			return EpsilonRDP(e, delta, nil)
		case AccountantPLD:
			return EpsilonPLD(e, delta, o.PLD)
		}
		return 0, fmt.Errorf("unknown accountant %q (want rdp or pld)", acct)
	}
	lo, hi := 0.0, 10.0
	epsHi := math.Inf(1)
	for epsHi > targetEps {
		hi *= 2
		if hi > MaxNoiseMultiplier {
			smallest, err := eps(MaxNoiseMultiplier)
			if err != nil {
				return 0, err
			}
			return 0, &UnreachableError{Target: targetEps, Smallest: smallest}
		}
		var err error
		if epsHi, err = eps(hi); err != nil {
			return 0, err
		}
		if epsHi > targetEps {
			lo = hi
		}
	}
	for i := 0; i < 200 && targetEps-epsHi > o.EpsilonTolerance && hi-lo > 1e-12*hi; i++ {
		mid := (lo + hi) / 2
		e, err := eps(mid)
		if err != nil {
			return 0, err
		}
		if e < targetEps {
			hi, epsHi = mid, e
		} else {
			lo = mid
		}
	}
	return hi, nil
}
