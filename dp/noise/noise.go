// Package noise samples the Gaussian noise of DP-SGD from a CSPRNG, rounded
// to a power-of-two grid so that the released values do not leak the input
// through the low-order bits of floating-point numbers.
//
// # Randomness
//
// A [Sampler] draws from ChaCha8 (math/rand/v2), a cryptographically secure
// generator. [New] keys it with 32 bytes from an io.Reader, normally
// crypto/rand.Reader; [NewSeeded] takes the key directly so that tests and
// replays are reproducible. Never use a seeded sampler for a real release.
//
// # Floating-point safety
//
// Mironov (2012, "On Significance of the Least Significant Bits for
// Differential Privacy") showed that adding textbook floating-point noise to a
// value can reveal the value, because the set of floating-point results
// depends on it. [Sampler.AddGaussian] follows his snapping remedy: it
// computes x/g + (σ/g)·Z for a power of two g = 2^(⌊log2 σ⌋−20) and rounds to
// the nearest integer, so every output is an integer multiple of g whatever
// x is. The result is a post-processing of the Gaussian mechanism with noise
// σ (the rounding does not change the sensitivity), up to two approximations
// that are documented here rather than hidden: Z comes from a ziggurat with
// 2^56 equally spaced points per layer (a spacing below 2^−32 grid units), and
// the float64 sum before rounding is exact to within 2^−13 grid units while
// |x| < 2^19·σ (so |x/g| < 2^40), which AddGaussian checks.
package noise

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
)

// Sampler draws standard normal variates and adds snapped Gaussian noise. It
// is not safe for concurrent use; give each goroutine its own.
type Sampler struct {
	rng *rand.ChaCha8
}

// New returns a sampler keyed with 32 bytes read from entropy (use
// crypto/rand.Reader).
func New(entropy io.Reader) (*Sampler, error) {
	var seed [32]byte
	if _, err := io.ReadFull(entropy, seed[:]); err != nil {
		return nil, fmt.Errorf("noise: reading seed: %w", err)
	}
	return NewSeeded(seed), nil
}

// NewSeeded returns a sampler whose output is a deterministic function of
// seed. For tests and replays only.
func NewSeeded(seed [32]byte) *Sampler {
	return &Sampler{rng: rand.NewChaCha8(seed)}
}

// SeedFromUint64 expands a small integer into a seed for [NewSeeded].
func SeedFromUint64(v uint64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], v)
	copy(s[8:], "fedtune/dp/noise seeded sampler")
	return s
}

// Uint64 returns 64 uniformly random bits.
func (s *Sampler) Uint64() uint64 { return s.rng.Uint64() }

// Float64 returns a uniform value in (0, 1), never 0, with 53 random bits.
func (s *Sampler) Float64() float64 {
	return (float64(s.rng.Uint64()>>11) + 0.5) * 0x1p-53
}

// Ziggurat tables for 128 layers (Marsaglia and Tsang 2000, "The Ziggurat
// Method for Generating Random Variables", with r = 3.442619855899 and
// v = 9.91256303526217e-3), scaled for a signed 56-bit integer.
const (
	zigR  = 3.442619855899
	zigV  = 9.91256303526217e-3
	zigM1 = 0x1p55
)

var (
	zigK [128]uint64
	zigW [128]float64
	zigF [128]float64
)

func init() {
	dn, tn := zigR, zigR
	q := zigV / math.Exp(-0.5*dn*dn)
	zigK[0] = uint64(dn / q * zigM1)
	zigK[1] = 0
	zigW[0] = q / zigM1
	zigW[127] = dn / zigM1
	zigF[0] = 1
	zigF[127] = math.Exp(-0.5 * dn * dn)
	for i := 126; i >= 1; i-- {
		dn = math.Sqrt(-2 * math.Log(zigV/dn+math.Exp(-0.5*dn*dn)))
		zigK[i+1] = uint64(dn / tn * zigM1)
		tn = dn
		zigF[i] = math.Exp(-0.5 * dn * dn)
		zigW[i] = dn / zigM1
	}
}

// Normal returns a standard normal variate (ziggurat, 64 random bits per
// attempt: 7 pick the layer, 57 the signed position).
func (s *Sampler) Normal() float64 {
	for {
		u := s.rng.Uint64()
		i := u & 127
		j := int64(u) >> 8 // signed, in [−2^55, 2^55)
		x := float64(j) * zigW[i]
		a := uint64(j)
		if j < 0 {
			a = uint64(-j)
		}
		if a < zigK[i] {
			return x
		}
		if i == 0 {
			// Tail beyond r (Marsaglia 1964).
			for {
				x = -math.Log(s.Float64()) / zigR
				y := -math.Log(s.Float64())
				if y+y >= x*x {
					break
				}
			}
			if j > 0 {
				return zigR + x
			}
			return -(zigR + x)
		}
		// Wedge: accept with probability proportional to the density.
		if zigF[i]+s.Float64()*(zigF[i-1]-zigF[i]) < math.Exp(-0.5*x*x) {
			return x
		}
	}
}

// Grid returns the power-of-two grid AddGaussian rounds to for noise
// standard deviation std: 2^(⌊log2 std⌋−20).
func Grid(std float64) float64 {
	_, e := math.Frexp(std) // std = f·2^e, f ∈ [0.5, 1)
	return math.Ldexp(1, e-1-20)
}

// ErrRange reports an input too large for exact snapping.
var ErrRange = errors.New("noise: value too large for the noise grid")

// AddGaussian replaces each x[i] with g·round(x[i]/g + (std/g)·Z_i), Z_i
// standard normal and g = Grid(std): the Gaussian mechanism with noise
// standard deviation std, snapped to a power-of-two grid (see the package
// documentation). It returns g. An input with |x[i]| ≥ 2^19·std is an error
// (nothing is written past the offending index, and x is left partially
// noised: discard it).
func (s *Sampler) AddGaussian(x []float64, std float64) (float64, error) {
	if !(std > 0) || math.IsInf(std, 0) {
		return 0, fmt.Errorf("noise: standard deviation must be finite and > 0, got %v", std)
	}
	g := Grid(std)
	inv := 1 / g // exact: g is a power of two
	scale := std * inv
	limit := 0x1p19 * std // |x/g| < 2^40: float64 sums exact to 2^−13 grid units
	for i, v := range x {
		if !(math.Abs(v) < limit) {
			return g, fmt.Errorf("%w: |x[%d]| = %v ≥ 2^19·σ = %v", ErrRange, i, math.Abs(v), limit)
		}
		x[i] = math.RoundToEven(v*inv+scale*s.Normal()) * g
	}
	return g, nil
}
