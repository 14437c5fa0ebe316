package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"golang.org/x/crypto/chacha20"

	"github.com/fedtune/fedtune/kernels"
	"github.com/fedtune/fedtune/model/hf"
)

// LoRAConfig configures an adapter.
type LoRAConfig struct {
	// R is the rank r of every LoRA pair.
	R int
	// Alpha sets the scale: Alpha/R, or Alpha/√R with RSLoRA.
	Alpha float64
	// Dropout is the probability of zeroing an input element of the LoRA
	// path during training (PEFT's lora_dropout), in [0, 1).
	Dropout float64
	// TargetModules lists the adapted projections, from q_proj, k_proj,
	// v_proj, o_proj, gate_proj, up_proj and down_proj.
	TargetModules []string
	// RSLoRA selects rank-stabilized scaling Alpha/√R (Kalajdzievski 2023,
	// eq. 6).
	RSLoRA bool
	// FFA freezes A (FFA-LoRA, Sun et al. 2024): only B is trainable.
	FFA bool
	// ASeed determines the initial A matrices. Sites that share ASeed, the
	// base model and the target modules start from the same A; with FFA A
	// never changes, so they keep it.
	ASeed int64
}

// Scale is the factor applied to B·A.
func (c *LoRAConfig) Scale() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.R)) // rsLoRA: γ_r = α/√r (Kalajdzievski 2023, eq. 6)
	}
	return c.Alpha / float64(c.R) // LoRA: ΔW x scaled by α/r (Hu et al. 2021, §4.1)
}

// Validate checks the configuration.
func (c *LoRAConfig) Validate() error {
	if c.R <= 0 {
		return fmt.Errorf("lora: rank r must be positive, got %d", c.R)
	}
	if !(c.Alpha > 0) {
		return fmt.Errorf("lora: alpha must be positive, got %v", c.Alpha)
	}
	if !(c.Dropout >= 0 && c.Dropout < 1) {
		return fmt.Errorf("lora: dropout must be in [0, 1), got %v", c.Dropout)
	}
	if len(c.TargetModules) == 0 {
		return fmt.Errorf("lora: no target modules")
	}
	seen := map[string]bool{}
	for _, t := range c.TargetModules {
		if _, ok := hf.ModulePath(t); !ok {
			return fmt.Errorf("lora: unsupported target module %q (supported: %v)", t, hf.ModuleNames)
		}
		if seen[t] {
			return fmt.Errorf("lora: target module %q listed twice", t)
		}
		seen[t] = true
	}
	return nil
}

func (c *LoRAConfig) targets(m int) bool { return slices.Contains(c.TargetModules, hf.ModuleNames[m]) }

// loraMod is one adapted projection. A is nil when the projection is not
// targeted. offA is −1 when A is frozen.
type loraMod[F kernels.Float] struct {
	A, B       []F
	offA, offB int
}

type loraW[F kernels.Float] struct {
	r       int
	scale   F
	dropout float64
	ffa     bool
	mods    [][numMods]loraMod[F]
	n       int // number of trainable parameters
}

// layout assigns offsets in the flat trainable vector: layer by layer,
// projection by projection in the order q, k, v, o, gate, up, down, A
// (unless frozen) then B, each row-major.
func layout(d *dims, c *LoRAConfig) (mods [][numMods]loraMod[float32], n int) {
	mods = make([][numMods]loraMod[float32], d.L)
	for l := range mods {
		for m := 0; m < numMods; m++ {
			lm := &mods[l][m]
			lm.offA, lm.offB = -1, -1
			if !c.targets(m) {
				continue
			}
			out, in := d.shape(m)
			if !c.FFA {
				lm.offA = n
				n += c.R * in
			}
			lm.offB = n
			n += out * c.R
		}
	}
	return mods, n
}

// Adapter is a set of LoRA matrices for one model.
//
// Its trainable parameters are one flat []float32, [Adapter.Trainable]: for
// each layer 0…L−1, for each targeted projection in the order q_proj,
// k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj: lora_A (r×in,
// row-major; absent with FFA) then lora_B (out×r, row-major). Gradients use
// the same layout.
type Adapter struct {
	Config LoRAConfig

	d    dims
	lw   loraW[float32]
	flat []float32
}

// NewAdapter creates an adapter for m with PEFT's default initialisation: B
// is zero and A is Kaiming-uniform with a = √5, as torch's
// kaiming_uniform_, drawn from a stream determined by (ASeed, layer,
// projection).
func NewAdapter(m *Model, c LoRAConfig) (*Adapter, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.TargetModules = slices.Clone(c.TargetModules)
	a := newAdapter(m.d, c)
	for l := range a.lw.mods {
		for mi := range a.lw.mods[l] {
			lm := &a.lw.mods[l][mi]
			if lm.A != nil {
				_, in := a.d.shape(mi)
				InitA(lm.A, c.ASeed, l, hf.ModuleNames[mi], in)
			}
		}
	}
	return a, nil
}

// newAdapter allocates a zero adapter.
func newAdapter(d dims, c LoRAConfig) *Adapter {
	mods, n := layout(&d, &c)
	a := &Adapter{Config: c, d: d, flat: make([]float32, n)}
	a.lw = loraW[float32]{r: c.R, scale: float32(c.Scale()), dropout: c.Dropout, ffa: c.FFA, mods: mods, n: n}
	for l := range mods {
		for mi := range mods[l] {
			lm := &mods[l][mi]
			if lm.offB < 0 {
				continue
			}
			out, in := d.shape(mi)
			if lm.offA >= 0 {
				lm.A = a.flat[lm.offA : lm.offA+c.R*in : lm.offA+c.R*in]
			} else {
				lm.A = make([]float32, c.R*in)
			}
			lm.B = a.flat[lm.offB : lm.offB+out*c.R : lm.offB+out*c.R]
		}
	}
	return a
}

// InitA fills a (r×in) with torch's kaiming_uniform_(a, a=√5) distribution,
// U(−bound, bound) with bound = gain·√(3/fan_in), gain = √(2/(1+a²)) (He et
// al. 2015, eq. 16 with torch's leaky-ReLU gain), which is 1/√in. The values
// come from the ChaCha20 keystream (RFC 8439) under the key SHA-256("fedtune
// lora A" ‖ seed ‖ layer ‖ module), 53 bits per value, so they depend only
// on (seed, layer, module, in) and are identical on every platform.
func InitA(a []float32, seed int64, layer int, module string, in int) {
	gain := math.Sqrt(2 / (1 + 5.0))         // calculate_gain("leaky_relu", √5)
	bound := gain * math.Sqrt(3/float64(in)) // kaiming_uniform_: √3·gain/√fan_in
	h := sha256.New()
	h.Write([]byte("fedtune lora A\x00"))
	var buf [16]byte
	binary.LittleEndian.PutUint64(buf[:8], uint64(seed))
	binary.LittleEndian.PutUint64(buf[8:], uint64(layer))
	h.Write(buf[:])
	h.Write([]byte(module))
	key := h.Sum(nil)
	c, err := chacha20.NewUnauthenticatedCipher(key, make([]byte, chacha20.NonceSize))
	if err != nil {
		panic(err) // key and nonce sizes are fixed
	}
	var word [8]byte
	for i := range a {
		clear(word[:])
		c.XORKeyStream(word[:], word[:])
		u := float64(binary.LittleEndian.Uint64(word[:])>>11) / (1 << 53) // [0, 1)
		a[i] = float32(bound * (2*u - 1))
	}
}

// Trainable returns the flat trainable parameters (see [Adapter] for the
// order). The slice aliases the adapter: an optimizer updates it in place.
func (a *Adapter) Trainable() []float32 { return a.flat }

// NumTrainable is len(a.Trainable()).
func (a *Adapter) NumTrainable() int { return len(a.flat) }

// Matrices returns the A (r×in) and B (out×r) matrices of one projection,
// aliasing the adapter, or ok == false when it is not targeted. module is a
// name like "q_proj".
func (a *Adapter) Matrices(layer int, module string) (A, B []float32, ok bool) {
	mi := slices.Index(hf.ModuleNames, module)
	if mi < 0 || layer < 0 || layer >= len(a.lw.mods) {
		return nil, nil, false
	}
	lm := a.lw.mods[layer][mi]
	if lm.B == nil {
		return nil, nil, false
	}
	return lm.A, lm.B, true
}

// Clone returns a deep copy of a.
func (a *Adapter) Clone() *Adapter {
	b := newAdapter(a.d, a.Config)
	b.Config.TargetModules = slices.Clone(a.Config.TargetModules)
	copy(b.flat, a.flat)
	for l := range a.lw.mods {
		for mi := range a.lw.mods[l] {
			if a.lw.mods[l][mi].A != nil && a.lw.mods[l][mi].offA < 0 {
				copy(b.lw.mods[l][mi].A, a.lw.mods[l][mi].A)
			}
		}
	}
	return b
}

func (a *Adapter) check(m *Model) {
	if a != nil && a.d != m.d {
		panic("model: adapter belongs to a model of another shape")
	}
}

// convertLoRA copies a float32 adapter into precision F.
func convertLoRA[F kernels.Float](a *loraW[float32]) *loraW[F] {
	out := &loraW[F]{r: a.r, scale: F(a.scale), dropout: a.dropout, ffa: a.ffa, n: a.n}
	out.mods = make([][numMods]loraMod[F], len(a.mods))
	for l := range a.mods {
		for mi, lm := range a.mods[l] {
			out.mods[l][mi] = loraMod[F]{A: convert[F](lm.A), B: convert[F](lm.B), offA: lm.offA, offB: lm.offB}
		}
	}
	return out
}

func convert[F kernels.Float](x []float32) []F {
	if x == nil {
		return nil
	}
	y := make([]F, len(x))
	for i, v := range x {
		y[i] = F(v)
	}
	return y
}
