package aggregator

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
)

// nextPow2 returns the smallest power of two ≥ n (1 for n ≤ 1).
func nextPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// fwht applies the unnormalized Walsh–Hadamard transform in place:
// x ← H·x with H the Sylvester Hadamard matrix of order len(x), a power of
// two. H is symmetric and H·H = len(x)·I.
func fwht(x []float64) {
	n := len(x)
	for h := 1; h < n; h <<= 1 {
		for i := 0; i < n; i += h << 1 {
			a, b := x[i:i+h], x[i+h:i+2*h]
			for j := range a {
				u, v := a[j], b[j]
				a[j], b[j] = u+v, u-v
			}
		}
	}
}

// roundSigns derives the diagonal of D (±1) for a round from the public
// round seed: the signs are the bits of a ChaCha8 stream keyed by
// SHA-256("fedtune rotation v1" || seed). The seed is public, so any
// deterministic expansion serves; it only has to be the same everywhere.
func roundSigns(seed [32]byte, n int) []float64 {
	h := sha256.New()
	h.Write([]byte("fedtune rotation v1"))
	h.Write(seed[:])
	var key [32]byte
	copy(key[:], h.Sum(nil))
	r := rand.NewChaCha8(key)
	s := make([]float64, n)
	for i := 0; i < n; i += 64 {
		w := r.Uint64()
		for j := 0; j < 64 && i+j < n; j++ {
			if w>>j&1 == 1 {
				s[i+j] = -1
			} else {
				s[i+j] = 1
			}
		}
	}
	return s
}

// rotate computes y = H·D·x/√d' into a new slice of length d'.
func rotate(x []float64, signs []float64) []float64 {
	y := make([]float64, len(signs))
	for i, v := range x {
		y[i] = v * signs[i]
	}
	fwht(y)
	inv := 1 / math.Sqrt(float64(len(y)))
	for i := range y {
		y[i] *= inv
	}
	return y
}

// unrotate computes x = D·H·y/√d' in place (the inverse of rotate, since
// (H·D/√d')⁻¹ = D·H/√d').
func unrotate(y []float64, signs []float64) {
	fwht(y)
	inv := 1 / math.Sqrt(float64(len(y)))
	for i := range y {
		y[i] *= inv * signs[i]
	}
}

// seedFrom packs a uint64 into a seed (tests and benchmarks).
func seedFrom(v uint64) (s [32]byte) {
	binary.LittleEndian.PutUint64(s[:], v)
	return s
}
