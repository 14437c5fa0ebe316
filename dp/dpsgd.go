package dp

import (
	"fmt"
	"math"

	"github.com/fedtune/fedtune/dp/noise"
)

// PoissonSample appends to dst the indices i in [0, n) of a Poisson sample
// with rate q: each index is included independently with probability q,
// decided by comparing 64 random bits with q·2^64.
func PoissonSample(dst []int, n int, q float64, s *noise.Sampler) ([]int, error) {
	if !(q >= 0 && q <= 1) {
		return dst, fmt.Errorf("dp: sampling rate must be in [0, 1], got %v", q)
	}
	if q == 1 {
		for i := 0; i < n; i++ {
			dst = append(dst, i)
		}
		return dst, nil
	}
	threshold := uint64(math.Ldexp(q, 64)) // q < 1, so q·2^64 < 2^64
	for i := 0; i < n; i++ {
		if s.Uint64() < threshold {
			dst = append(dst, i)
		}
	}
	return dst, nil
}

// L2Norm is the Euclidean norm of g, accumulated in float64.
func L2Norm(g []float32) float64 {
	var s float64
	for _, v := range g {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// ClipAdd adds g, scaled to L2 norm at most c, to sum: sum += min(1, c/‖g‖)·g
// (Abadi et al. 2016, Algorithm 1, "clip gradient"). It returns the norm of g
// before clipping. A non-finite norm is an error and adds nothing.
func ClipAdd(sum []float64, g []float32, c float64) (float64, error) {
	if len(sum) != len(g) {
		panic(fmt.Sprintf("dp: ClipAdd lengths %d and %d", len(sum), len(g)))
	}
	norm := L2Norm(g)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, fmt.Errorf("dp: per-example gradient norm is %v", norm)
	}
	scale := 1.0
	if norm > c {
		scale = c / norm
	}
	for i, v := range g {
		sum[i] += scale * float64(v)
	}
	return norm, nil
}

// NoisyMean turns the sum of clipped gradients into the DP-SGD update
// direction: dst = (sum + N(0, σ²C²)) / B, the noise snapped to a
// power-of-two grid by [noise.Sampler.AddGaussian] (Abadi et al. 2016,
// Algorithm 1, "add noise"). sum is overwritten with the noised sum. With
// sigma = 0 (a non-private run) no noise is added.
func NoisyMean(dst []float32, sum []float64, sigma, c, expectedBatch float64, s *noise.Sampler) error {
	if len(dst) != len(sum) {
		panic(fmt.Sprintf("dp: NoisyMean lengths %d and %d", len(dst), len(sum)))
	}
	if !(expectedBatch > 0) {
		return fmt.Errorf("dp: expected batch size must be > 0, got %v", expectedBatch)
	}
	if sigma < 0 || math.IsNaN(sigma) {
		return fmt.Errorf("dp: noise multiplier must be ≥ 0, got %v", sigma)
	}
	if sigma > 0 {
		if _, err := s.AddGaussian(sum, sigma*c); err != nil {
			return err
		}
	}
	inv := 1 / expectedBatch
	for i, v := range sum {
		dst[i] = float32(v * inv)
	}
	return nil
}
