package kernels

import (
	"math"
	"strings"
	"testing"
)

// TestRopeInvFreqLlama3 checks the llama3 frequency adjustment against
// values computed with transformers' _compute_llama3_parameters for the
// Llama 3.1 8B config (head_dim 128, rope_theta 500000, factor 8,
// low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings
// 8192), recomputed here band by band from the published formula.
func TestRopeInvFreqLlama3(t *testing.T) {
	s := &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
	got, err := RopeInvFreq(128, 500000, s)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := RopeInvFreq(128, 500000, nil)
	if len(got) != 64 {
		t.Fatalf("len %d", len(got))
	}
	// Highest frequency: wavelength 2π < 8192/4 → unchanged.
	if got[0] != 1 {
		t.Errorf("inv_freq[0] = %v, want 1", got[0])
	}
	nHigh, nLow, nMid := 0, 0, 0
	for i := range got {
		wl := 2 * math.Pi / base[i]
		switch {
		case wl < 2048:
			nHigh++
			if got[i] != base[i] {
				t.Errorf("high band %d changed", i)
			}
		case wl > 8192:
			nLow++
			if math.Abs(got[i]-base[i]/8) > 1e-18 {
				t.Errorf("low band %d: %v, want %v", i, got[i], base[i]/8)
			}
		default:
			nMid++
			if !(got[i] > base[i]/8 && got[i] < base[i]) {
				t.Errorf("mid band %d: %v not between %v and %v", i, got[i], base[i]/8, base[i])
			}
		}
	}
	// Band sizes for this config (wavelength thresholds 2048 and 8192):
	// 2π·500000^(i/64) < 2048 ⇔ i ≤ 28, > 8192 ⇔ i ≥ 35.
	if nHigh != 29 || nMid != 6 || nLow != 29 {
		t.Errorf("bands high/mid/low = %d/%d/%d, want 29/6/29", nHigh, nMid, nLow)
	}
	// A mid-band value worked by hand: i = 32,
	// θ = 500000^(−64/128), wavelen = 2π/θ, smooth = (8192/wavelen − 1)/3.
	th := math.Pow(500000, -64.0/128)
	smooth := (8192/(2*math.Pi/th) - 1) / 3
	if want := (1-smooth)*th/8 + smooth*th; math.Abs(got[32]-want) > 1e-18 {
		t.Errorf("inv_freq[32] = %v, want %v", got[32], want)
	}
}

func TestRopeInvFreqLinearAndErrors(t *testing.T) {
	base, _ := RopeInvFreq(8, 10000, nil)
	lin, err := RopeInvFreq(8, 10000, &RopeScaling{Type: "linear", Factor: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{1, 0.1, 0.01, 0.001}
	for i := range base {
		if math.Abs(base[i]-want[i]) > 1e-15 || math.Abs(lin[i]-want[i]/4) > 1e-15 {
			t.Errorf("i=%d: default %v linear %v", i, base[i], lin[i])
		}
	}
	for _, c := range []struct {
		hd    int
		theta float64
		s     *RopeScaling
		msg   string
	}{
		{7, 10000, nil, "even"},
		{8, 0, nil, "rope_theta"},
		{8, 10000, &RopeScaling{Type: "yarn", Factor: 2}, "unsupported"},
		{8, 10000, &RopeScaling{Type: "linear"}, "factor"},
		{8, 10000, &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 4, HighFreqFactor: 1, OriginalMaxPositionEmbeddings: 10}, "low_freq_factor"},
	} {
		if _, err := RopeInvFreq(c.hd, c.theta, c.s); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("RopeInvFreq(%d, %v, %+v) error %v, want one mentioning %q", c.hd, c.theta, c.s, err, c.msg)
		}
	}
}

// TestRoPEKnownAnswer checks the rotate_half layout on a hand-computed case.
func TestRoPEKnownAnswer(t *testing.T) {
	// headDim 4, position 1, inv_freq (1, 0.01): pairs (x0,x2) rotate by 1 rad, (x1,x3) by 0.01 rad.
	inv, _ := RopeInvFreq(4, 10000, nil)
	cos, sin := make([]float64, 2), make([]float64, 2)
	RopeTable(cos, sin, inv, 1, 1)
	x := []float64{1, 2, 3, 4}
	RoPE(x, 1, 1, 4, cos, sin)
	want := []float64{
		1*math.Cos(1) - 3*math.Sin(1),
		2*math.Cos(0.01) - 4*math.Sin(0.01),
		3*math.Cos(1) + 1*math.Sin(1),
		4*math.Cos(0.01) + 2*math.Sin(0.01),
	}
	for i := range x {
		if math.Abs(x[i]-want[i]) > 1e-15 {
			t.Errorf("x[%d] = %v, want %v", i, x[i], want[i])
		}
	}
	RoPEBackward(x, 1, 1, 4, cos, sin)
	for i, v := range []float64{1, 2, 3, 4} {
		if math.Abs(x[i]-v) > 1e-14 {
			t.Errorf("inverse rotation x[%d] = %v, want %v", i, x[i], v)
		}
	}
}
