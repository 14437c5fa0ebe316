package aggregator

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
)

// Config fixes how every site of a round encodes its update. All sites and
// the aggregator must use the same Config and round seed.
type Config struct {
	// Dim is the length of the update vector (the adapter's trainable
	// parameters).
	Dim int
	// ClipNorm is S: each site's update is scaled down to L2 norm ≤ S.
	ClipNorm float64
	// Scale is γ, the number of integer steps per unit after rotation.
	// ChooseScale picks one that leaves room for MaxSites contributions.
	Scale float64
	// MaxSites bounds the number of vectors summed; it sizes the headroom
	// that keeps the modular sum from wrapping.
	MaxSites int
	// NoiseStd is the standard deviation, in update units, of the Skellam
	// noise on the sum of any MinHonest honest contributions; 0 disables
	// distributed noise.
	NoiseStd float64
	// MinHonest is how many honest sites the noise budget assumes (n_min).
	MinHonest int
	// Beta is the conditional-rounding parameter β of Kairouz et al. 2021;
	// 0 means e^{-1/2}, their default.
	Beta float64
}

// Modulus of the secure-aggregation group: vectors live in ℤ_{2^32}.
const modBits = 32

// tailK is the number of standard deviations of a rotated coordinate that
// the headroom allows: after a random rotation each coordinate of an S-norm
// vector is sub-Gaussian with scale S/√d' (Kairouz et al. 2021, Lemma 5), so
// it exceeds k·S/√d' with probability ≤ 2·exp(−k²/2); k = 9 makes that
// < 2·10⁻¹⁷ per coordinate.
const tailK = 9.0

// PaddedDim is d', the power of two the rotation works on.
func (c Config) PaddedDim() int { return nextPow2(c.Dim) }

func (c Config) beta() float64 {
	if c.Beta == 0 {
		return math.Exp(-0.5)
	}
	return c.Beta
}

// coordBound bounds |coordinate| of one encoded vector: the rotated,
// scaled clipped update, plus 1 for rounding.
func (c Config) coordBound() float64 {
	return c.Scale*c.ClipNorm*tailK/math.Sqrt(float64(c.PaddedDim())) + 1
}

// skellamMu is the per-site Skellam parameter μ: Sk(μ) has variance 2μ, and
// MinHonest of them must reach (γ·NoiseStd)².
func (c Config) skellamMu() float64 {
	if c.NoiseStd == 0 {
		return 0
	}
	s := c.Scale * c.NoiseStd
	return s * s / (2 * float64(c.MinHonest))
}

// sumBound bounds |coordinate| of the sum of MaxSites encoded vectors,
// counting noise to 12 standard deviations.
func (c Config) sumBound() float64 {
	b := float64(c.MaxSites) * c.coordBound()
	if mu := c.skellamMu(); mu > 0 {
		b += 12 * math.Sqrt(2*mu*float64(c.MaxSites))
	}
	return b
}

// Validate checks the configuration, including that MaxSites contributions
// cannot wrap around the modulus (up to the stated tail probability).
func (c Config) Validate() error {
	switch {
	case c.Dim <= 0:
		return fmt.Errorf("aggregator: Dim must be positive, got %d", c.Dim)
	case c.Dim > 1<<28:
		return fmt.Errorf("aggregator: Dim %d exceeds 2^28", c.Dim)
	case !(c.ClipNorm > 0) || math.IsInf(c.ClipNorm, 0):
		return fmt.Errorf("aggregator: ClipNorm must be positive and finite, got %v", c.ClipNorm)
	case !(c.Scale > 0) || math.IsInf(c.Scale, 0):
		return fmt.Errorf("aggregator: Scale must be positive and finite, got %v", c.Scale)
	case c.MaxSites <= 0:
		return fmt.Errorf("aggregator: MaxSites must be positive, got %d", c.MaxSites)
	case c.NoiseStd < 0 || math.IsNaN(c.NoiseStd):
		return fmt.Errorf("aggregator: NoiseStd must be ≥ 0, got %v", c.NoiseStd)
	case c.NoiseStd > 0 && (c.MinHonest <= 0 || c.MinHonest > c.MaxSites):
		return fmt.Errorf("aggregator: MinHonest must be in [1, MaxSites=%d] with noise, got %d", c.MaxSites, c.MinHonest)
	case c.Beta < 0 || c.Beta >= 1:
		return fmt.Errorf("aggregator: Beta must be in [0, 1), got %v", c.Beta)
	}
	if b := c.sumBound(); b >= 1<<(modBits-1) {
		return fmt.Errorf("aggregator: Scale %g leaves no headroom: the sum of %d sites may reach %.3g ≥ 2^31 and wrap; use ChooseScale", c.Scale, c.MaxSites, b)
	}
	if mu := c.skellamMu(); mu > 1<<52 {
		return fmt.Errorf("aggregator: Skellam parameter %.3g too large for exact sampling; lower Scale", mu)
	}
	return nil
}

// ChooseScale returns the largest power-of-two γ for which the sum of
// maxSites encodings (with the given noise) fits in half of the 2^31
// headroom. A power of two makes 1/γ exact.
func ChooseScale(dim int, clipNorm, noiseStd float64, maxSites, minHonest int) float64 {
	c := Config{Dim: dim, ClipNorm: clipNorm, MaxSites: maxSites, NoiseStd: noiseStd, MinHonest: minHonest}
	scale := math.Ldexp(1, 60)
	for scale > math.Ldexp(1, -60) {
		c.Scale = scale
		if c.sumBound() < 1<<(modBits-2) && c.skellamMu() <= 1<<52 {
			return scale
		}
		scale /= 2
	}
	return scale
}

// ErrorBound bounds, in update units, the L2 distance between Decode's
// output for n encoded updates without noise and the exact sum of the
// clipped updates: each coordinate of each encoding is off by less than one
// integer step, so the rotated error has norm < √d'/γ per site, the inverse
// rotation preserves norms and dropping the padding only shrinks them.
func (c Config) ErrorBound(n int) float64 {
	return float64(n) * math.Sqrt(float64(c.PaddedDim())) / c.Scale
}

// Encoded is one site's encoded update.
type Encoded struct {
	// Vec is the vector over ℤ_{2^32} to mask and submit (length d').
	Vec []uint32
	// Norm is the L2 norm of the update before clipping.
	Norm float64
	// Clipped reports whether the update was scaled down to ClipNorm.
	Clipped bool
	// RoundingTries counts conditional-rounding attempts (≥ 1).
	RoundingTries int
}

// ErrRounding is returned when conditional rounding fails repeatedly,
// which for a valid Config happens with negligible probability.
var ErrRounding = errors.New("aggregator: conditional randomized rounding did not succeed")

// Encode clips, rotates, scales, rounds, adds noise and reduces x modulo
// 2^32. roundSeed is public round randomness (the same at every site);
// rng supplies the site's private randomness for rounding and noise and
// must be a CSPRNG such as crypto/rand.Reader.
func Encode(c Config, x []float32, roundSeed [32]byte, rng io.Reader) (Encoded, error) {
	if err := c.Validate(); err != nil {
		return Encoded{}, err
	}
	if len(x) != c.Dim {
		return Encoded{}, fmt.Errorf("aggregator: update has %d values, the round expects %d", len(x), c.Dim)
	}
	var seed [32]byte
	if _, err := io.ReadFull(rng, seed[:]); err != nil {
		return Encoded{}, fmt.Errorf("aggregator: reading randomness: %w", err)
	}
	r := rand.New(rand.NewChaCha8(seed))

	// 1. Clip to L2 norm S.
	xs := make([]float64, c.Dim)
	var norm2 float64
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return Encoded{}, fmt.Errorf("aggregator: update value %d is %v", i, v)
		}
		xs[i] = float64(v)
		norm2 += xs[i] * xs[i]
	}
	enc := Encoded{Norm: math.Sqrt(norm2)}
	factor := c.Scale
	if enc.Norm > c.ClipNorm {
		factor *= c.ClipNorm / enc.Norm
		enc.Clipped = true
	}
	for i := range xs {
		xs[i] *= factor // 3. scaling commutes with the rotation
	}
	// 2. Rotate.
	y := rotate(xs, roundSigns(roundSeed, c.PaddedDim()))

	// 3. Conditional randomized rounding (Kairouz et al. 2021, Alg. 1):
	// accept when ‖ỹ‖² ≤ (γS)² + d'/4 + √(2 ln(1/β))·(γS + √d'/2).
	gs, d := c.Scale*c.ClipNorm, float64(len(y))
	bound := gs*gs + d/4 + math.Sqrt(2*math.Log(1/c.beta()))*(gs+math.Sqrt(d)/2)
	out := make([]int64, len(y))
	for {
		enc.RoundingTries++
		var n2 float64
		for i, v := range y {
			f := math.Floor(v)
			k := int64(f)
			if r.Float64() < v-f {
				k++
			}
			out[i] = k
			n2 += float64(k) * float64(k)
		}
		if n2 <= bound {
			break
		}
		if enc.RoundingTries == 1000 {
			return Encoded{}, ErrRounding
		}
	}
	// 4. Skellam noise.
	if mu := c.skellamMu(); mu > 0 {
		for i := range out {
			out[i] += poisson(r, mu) - poisson(r, mu)
		}
	}
	// 5. Two's complement modulo 2^32.
	enc.Vec = make([]uint32, len(out))
	for i, k := range out {
		enc.Vec[i] = uint32(k)
	}
	return enc, nil
}

// Decode maps the modular sum of encoded vectors back to the sum of the
// (clipped) updates, a vector of length Dim. It is the exact inverse of
// Encode's linear steps; rounding error is bounded by ErrorBound.
func Decode(c Config, sum []uint32, roundSeed [32]byte) ([]float64, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(sum) != c.PaddedDim() {
		return nil, fmt.Errorf("aggregator: sum has %d values, want %d", len(sum), c.PaddedDim())
	}
	y := make([]float64, len(sum))
	inv := 1 / c.Scale
	for i, v := range sum {
		y[i] = float64(int32(v)) * inv // centre in [−2^31, 2^31)
	}
	unrotate(y, roundSigns(roundSeed, len(y)))
	return y[:c.Dim], nil
}

// poisson samples Pois(mu) exactly enough for noise: multiplication of
// uniforms (Knuth) for small mu and Hörmann's transformed rejection PTRS
// (Hörmann 1993, "The transformed rejection method for generating Poisson
// random variables") otherwise.
func poisson(r *rand.Rand, mu float64) int64 {
	if mu < 10 {
		l := math.Exp(-mu)
		k := int64(0)
		p := r.Float64()
		for p > l {
			k++
			p *= r.Float64()
		}
		return k
	}
	slam := math.Sqrt(mu)
	loglam := math.Log(mu)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invalpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + mu + 0.43)
		if us >= 0.07 && v <= vr {
			return int64(k)
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invalpha)-math.Log(a/(us*us)+b) <= -mu+k*loglam-lg {
			return int64(k)
		}
	}
}
