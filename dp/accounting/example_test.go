package accounting_test

import (
	"fmt"

	"github.com/fedtune/fedtune/dp/accounting"
)

// ε of 2250 DP-SGD steps with sampling rate 0.04 and noise multiplier 1.5,
// by both accountants (the RDP value is Opacus').
func Example() {
	e := accounting.DPSGD(0.04, 1.5, 2250)
	rdp, _ := accounting.EpsilonRDP(e, 1e-5, nil)
	pld, _ := accounting.EpsilonPLD(e, 1e-5, nil)
	fmt.Printf("RDP ε = %.4f\nPLD ε = %.2f\n", rdp, pld)
	// Output:
	// RDP ε = 7.3291
	// PLD ε = 6.77
}

// The smallest noise multiplier for (ε, δ) = (8, 1e-5) over 2000 steps at
// q = 0.04, with Opacus' tolerance: the safe end of the bisection.
func ExampleCalibrate() {
	s, _ := accounting.Calibrate(accounting.AccountantRDP, 0.04, 2000, 8, 1e-5, &accounting.CalibrateOptions{EpsilonTolerance: 0.01})
	fmt.Printf("σ = %.4f\n", s)
	// Output:
	// σ = 1.3562
}

// Events serialise to JSON so that anyone can recompute a spend.
func ExampleMarshalEvent() {
	b, _ := accounting.MarshalEvent(accounting.DPSGD(0.01, 1.1, 100))
	fmt.Println(string(b))
	// Output:
	// {"type":"self_composed","count":100,"event":{"type":"poisson_sampled","sampling_probability":0.01,"event":{"type":"gaussian","noise_multiplier":1.1}}}
}
