package kernels

import (
	"fmt"
	"math"
)

// RopeScaling selects a rotary-embedding frequency adjustment, as in the
// rope_scaling field of a Hugging Face config.json. The zero value (or Type
// "default") means no adjustment.
type RopeScaling struct {
	// Type is "default", "linear" or "llama3".
	Type string
	// Factor divides the frequencies ("linear") or the low frequencies ("llama3").
	Factor float64
	// LowFreqFactor, HighFreqFactor and OriginalMaxPositionEmbeddings are
	// the "llama3" parameters.
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositionEmbeddings int
}

// RopeInvFreq returns the headDim/2 rotary inverse frequencies
// θ_i = theta^(−2i/headDim) (Su et al. 2021, "RoFormer", eq. 15), adjusted
// as s says:
//
//   - "linear": θ_i / Factor (position interpolation, Chen et al. 2023, eq. 3).
//   - "llama3": frequencies with wavelength 2π/θ_i above
//     OriginalMaxPositionEmbeddings/LowFreqFactor are divided by Factor, those
//     below OriginalMaxPositionEmbeddings/HighFreqFactor are kept, and those in
//     between are interpolated with
//     smooth = (OriginalMaxPositionEmbeddings/wavelen − LowFreqFactor)/(HighFreqFactor − LowFreqFactor),
//     θ' = (1−smooth)·θ/Factor + smooth·θ, exactly as transformers'
//     _compute_llama3_parameters.
//
// A nil s means "default".
func RopeInvFreq(headDim int, theta float64, s *RopeScaling) ([]float64, error) {
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("rope: head dimension %d is not a positive even number", headDim)
	}
	if !(theta > 0) {
		return nil, fmt.Errorf("rope: rope_theta %v is not positive", theta)
	}
	half := headDim / 2
	inv := make([]float64, half)
	for i := range inv {
		inv[i] = 1 / math.Pow(theta, float64(2*i)/float64(headDim)) // RoFormer eq. 15: θ_i = 10000^(−2(i−1)/d)
	}
	if s == nil {
		return inv, nil
	}
	switch s.Type {
	case "", "default":
	case "linear":
		if !(s.Factor > 0) {
			return nil, fmt.Errorf("rope: rope_scaling.factor %v is not positive", s.Factor)
		}
		for i := range inv {
			inv[i] /= s.Factor // Chen et al. 2023 eq. 3: f'(x, m) = f(x, m·L/L')
		}
	case "llama3":
		if !(s.Factor > 0) || !(s.LowFreqFactor > 0) || !(s.HighFreqFactor > s.LowFreqFactor) || s.OriginalMaxPositionEmbeddings <= 0 {
			return nil, fmt.Errorf("rope: llama3 rope_scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0 (got %v, %v, %v, %d)",
				s.Factor, s.LowFreqFactor, s.HighFreqFactor, s.OriginalMaxPositionEmbeddings)
		}
		old := float64(s.OriginalMaxPositionEmbeddings)
		lowWavelen := old / s.LowFreqFactor
		highWavelen := old / s.HighFreqFactor
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen < highWavelen:
				// high frequency: unchanged
			case wavelen > lowWavelen:
				inv[i] = f / s.Factor
			default:
				smooth := (old/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
				inv[i] = (1-smooth)*f/s.Factor + smooth*f
			}
		}
	default:
		return nil, fmt.Errorf("rope: unsupported rope_scaling type %q (want default, linear or llama3)", s.Type)
	}
	return inv, nil
}

// RopeTable fills cos and sin (n×len(invFreq), row-major) with the rotary
// angles of positions start … start+n−1. Reference loop:
//
//	for p := 0; p < n; p++ {
//		for i, f := range invFreq {
//			cos[p*len(invFreq)+i] = cos(float64(start+p) * f)
//			sin[p*len(invFreq)+i] = sin(float64(start+p) * f)
//		}
//	}
func RopeTable[F Float](cos, sin []F, invFreq []float64, start, n int) {
	half := len(invFreq)
	if len(cos) < n*half || len(sin) < n*half {
		panic("kernels: RopeTable slice too short")
	}
	for p := 0; p < n; p++ {
		pos := float64(start + p)
		for i, f := range invFreq {
			s, c := math.Sincos(pos * f)
			cos[p*half+i] = F(c)
			sin[p*half+i] = F(s)
		}
	}
}

// RoPE rotates x (rows×heads×headDim, row-major) in place by the angles in
// cos and sin (rows×headDim/2), in the "rotate_half" layout of Hugging Face
// Llama: element i pairs with element i+headDim/2 of the same head.
// Reference loop:
//
//	h := headDim / 2
//	for r := 0; r < rows; r++ {
//		for hd := 0; hd < heads; hd++ {
//			v := x[(r*heads+hd)*headDim:]
//			for i := 0; i < h; i++ {
//				c, s := cos[r*h+i], sin[r*h+i]
//				a, b := v[i], v[i+h]
//				v[i], v[i+h] = a*c-b*s, b*c+a*s
//			}
//		}
//	}
func RoPE[F Float](x []F, rows, heads, headDim int, cos, sin []F) {
	rope(x, rows, heads, headDim, cos, sin, 1)
}

// RoPEBackward turns the gradient with respect to RoPE's output into the
// gradient with respect to its input, in place. The rotation is orthogonal,
// so this is the rotation by the negated angles: RoPE with sin → −sin.
func RoPEBackward[F Float](dx []F, rows, heads, headDim int, cos, sin []F) {
	rope(dx, rows, heads, headDim, cos, sin, -1)
}

func rope[F Float](x []F, rows, heads, headDim int, cos, sin []F, sign F) {
	h := headDim / 2
	if headDim%2 != 0 || len(x) < rows*heads*headDim || len(cos) < rows*h || len(sin) < rows*h {
		panic("kernels: RoPE length mismatch")
	}
	for r := 0; r < rows; r++ {
		cr, sr := cos[r*h:r*h+h], sin[r*h:r*h+h]
		for hd := 0; hd < heads; hd++ {
			v := x[(r*heads+hd)*headDim : (r*heads+hd+1)*headDim]
			lo, hi := v[:h], v[h:]
			for i := range lo {
				c, s := cr[i], sign*sr[i]
				a, b := lo[i], hi[i]
				lo[i] = a*c - b*s // rotate_half: x·cos + rotate_half(x)·sin, rotate_half(x) = (−x₂, x₁)
				hi[i] = b*c + a*s
			}
		}
	}
}
