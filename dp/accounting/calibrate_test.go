package accounting

import (
	"errors"
	"math"
	"testing"
)

func TestOpacusNoiseMultiplierVector(t *testing.T) {
	for _, c := range loadVectors(t).OpacusNoise {
		s, err := Calibrate(Accountant(c.Accountant), c.Q, c.Steps, c.TargetEpsilon, c.Delta, &CalibrateOptions{EpsilonTolerance: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(s-c.NoiseMultiplier) > c.Tolerance {
			t.Errorf("σ=%v, want %v", s, c.NoiseMultiplier)
		}
	}
}

func TestCalibrateSafeEnd(t *testing.T) {
	for _, acct := range []Accountant{AccountantRDP, AccountantPLD} {
		for _, c := range []struct {
			q      float64
			T      int
			target float64
		}{{0.01, 500, 1}, {0.05, 200, 3}, {0.002, 2000, 0.5}, {0.1, 50, 8}} {
			opts := &CalibrateOptions{PLD: &PLDOptions{Interval: 1e-3}}
			s, err := Calibrate(acct, c.q, c.T, c.target, 1e-5, opts)
			if err != nil {
				t.Fatal(err)
			}
			var e float64
			if acct == AccountantRDP {
				e, err = EpsilonRDP(DPSGD(c.q, s, c.T), 1e-5, nil)
			} else {
				e, err = EpsilonPLD(DPSGD(c.q, s, c.T), 1e-5, opts.PLD)
			}
			if err != nil {
				t.Fatal(err)
			}
			if e > c.target {
				t.Errorf("%s %+v: σ=%v gives ε=%v > target", acct, c, s, e)
			}
			if e < c.target-2e-3*c.target {
				t.Errorf("%s %+v: σ=%v gives ε=%v, too far below target", acct, c, s, e)
			}
		}
	}
}

func TestCalibrateUnreachable(t *testing.T) {
	_, err := Calibrate(AccountantRDP, 1, 1000000, 1e-6, 1e-5, nil)
	var ue *UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v, want UnreachableError", err)
	}
	if !(ue.Smallest > 1e-6) {
		t.Errorf("smallest reachable %v", ue.Smallest)
	}
	for _, bad := range []struct {
		q, eps, delta float64
		T             int
	}{{0, 1, 1e-5, 10}, {0.1, 0, 1e-5, 10}, {0.1, 1, 1, 10}, {0.1, 1, 1e-5, 0}, {1.5, 1, 1e-5, 10}} {
		if _, err := Calibrate(AccountantRDP, bad.q, bad.T, bad.eps, bad.delta, nil); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
