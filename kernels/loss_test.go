package kernels

import (
	"math"
	"testing"
)

// TestCrossEntropyKnownAnswer: logits (0, ln 2, ln 3) give probabilities
// (1/6, 2/6, 3/6), so the loss of label 1 is ln 3.
func TestCrossEntropyKnownAnswer(t *testing.T) {
	logits := []float64{0, math.Log(2), math.Log(3), 1000, 0, -1000}
	labels := []int{1, 0}
	loss, lse := make([]float64, 2), make([]float64, 2)
	CrossEntropy(loss, lse, logits, labels, 2, 3)
	if math.Abs(loss[0]-math.Log(3)) > 1e-15 || math.Abs(lse[0]-math.Log(6)) > 1e-15 {
		t.Errorf("row 0: loss %v lse %v, want ln 3, ln 6", loss[0], lse[0])
	}
	if loss[1] != 0 || lse[1] != 1000 {
		t.Errorf("row 1 (large logits): loss %v lse %v, want 0, 1000", loss[1], lse[1])
	}
	d := make([]float64, 6)
	CrossEntropyBackward(d, logits, lse, labels, []float64{1, 1}, 2, 3)
	want := []float64{1.0 / 6, 2.0/6 - 1, 3.0 / 6, 0, 0, 0}
	for i := range want {
		if math.Abs(d[i]-want[i]) > 1e-15 {
			t.Errorf("dlogits[%d] = %v, want %v", i, d[i], want[i])
		}
	}
}

func TestRMSNormKnownAnswer(t *testing.T) {
	x := []float32{3, 4} // mean square 12.5
	w := []float32{1, 2}
	y, rstd := make([]float32, 2), make([]float32, 1)
	RMSNorm(y, rstd, x, w, 1, 2, 0)
	r := 1 / math.Sqrt(12.5)
	if math.Abs(float64(y[0])-3*r) > 1e-6*3*r || math.Abs(float64(y[1])-8*r) > 1e-6*8*r {
		t.Errorf("RMSNorm = %v, want [%v %v]", y, 3*r, 8*r)
	}
}
