// Package model is a Llama-family decoder (Llama 2/3, Mistral, Qwen2,
// SmolLM) with LoRA adapters: forward and backward passes over packed
// batches, exact per-example gradients of the adapter parameters for
// DP-SGD, generation with a key/value cache, PEFT adapter files and merging
// an adapter into a Hugging Face checkpoint.
//
// # Weights
//
// [Load] reads a Hugging Face model directory (config.json and one or more
// safetensors files in F32, F16, BF16 or F64) and converts every weight to
// float32 once, at load time; the base weights are frozen and never
// written afterwards, so one [Model] can back several trainers and
// generators at once.
//
// # LoRA
//
// An [Adapter] adds ΔW = scale·B·A to the targeted projections (Hu et al.
// 2021, "LoRA", eq. 3), with A of shape r×in and B of shape out×r as PEFT
// stores them, scale = alpha/r, or alpha/√r with rsLoRA (Kalajdzievski
// 2023). With FFA-LoRA (Sun et al. 2024) A is frozen and derived from a
// shared seed, and only B is trained, so averaging B over sites is exact.
// The trainable parameters live in one flat slice, [Adapter.Trainable].
//
// # Training
//
// A [Trainer] owns preallocated workspaces for a maximum batch shape and
// computes losses, per-example gradients ([Trainer.PerExampleGrads]) and
// the summed batch gradient ([Trainer.BatchGrad]). The examples of a batch
// are packed one after another without padding; attention never crosses
// examples, so each example's gradient is exactly the gradient of its own
// loss.
package model

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/fedtune/fedtune/kernels"
	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
)

// Projection indices, in the canonical order of hf.ModuleNames.
const (
	modQ = iota
	modK
	modV
	modO
	modGate
	modUp
	modDown
	numMods
)

// dims are the shapes a config implies.
type dims struct {
	D, H, KV, HD, I, V, L int
	QD, KVD               int
	eps                   float64
	qkvBias, oBias        bool
	tied                  bool
	window                int // sliding window (0: none)
}

func newDims(c *hf.Config) dims {
	d := dims{
		D: c.HiddenSize, H: c.NumAttentionHeads, KV: c.NumKeyValueHeads, HD: c.HeadDim,
		I: c.IntermediateSize, V: c.VocabSize, L: c.NumHiddenLayers,
		eps: c.RMSNormEps, qkvBias: c.QKVBias(), oBias: c.OBias(), tied: c.TieWordEmbeddings,
	}
	d.QD, d.KVD = d.H*d.HD, d.KV*d.HD
	// Qwen2 configs carry sliding_window too but leave it off
	// (use_sliding_window false); only Mistral applies it.
	if c.Architecture() == hf.ArchMistral && c.SlidingWindow != nil && *c.SlidingWindow > 0 {
		d.window = *c.SlidingWindow
	}
	return d
}

// shape returns the [out, in] shape of projection m.
func (d *dims) shape(m int) (out, in int) {
	switch m {
	case modQ:
		return d.QD, d.D
	case modK, modV:
		return d.KVD, d.D
	case modO:
		return d.D, d.QD
	case modGate, modUp:
		return d.I, d.D
	case modDown:
		return d.D, d.I
	}
	panic("model: bad projection index")
}

// checkLen reports a sequence too long for a sliding-window model: the
// attention here is full causal attention, which equals Mistral's sliding
// window attention only for sequences no longer than the window.
func (d *dims) checkLen(n int) error {
	if d.window > 0 && n > d.window {
		return fmt.Errorf("sequence of %d tokens exceeds the model's sliding_window %d, which is not implemented", n, d.window)
	}
	return nil
}

type layerW[F kernels.Float] struct {
	inNorm, postNorm []F
	w                [numMods][]F // [out, in], row-major
	b                [numMods][]F // nil when the projection has no bias
}

type weights[F kernels.Float] struct {
	embed, norm, lmHead []F // lmHead aliases embed when tied
	layers              []layerW[F]
	invFreq             []float64
}

// Model is a loaded base model. Its weights are float32 and read-only after
// construction; a Model is safe for concurrent use.
type Model struct {
	// Config is the model's config.json.
	Config *hf.Config
	// Dir is the directory the model was loaded from ("" for New).
	Dir string

	d dims
	w weights[float32]
}

// New builds a model from a config and float32 tensors keyed by their
// Hugging Face names (as hf.InitTensors returns them). The tensors are
// used in place, not copied.
func New(c *hf.Config, tensors map[string][]float32) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	want := c.ExpectedTensors()
	get := func(name string) ([]float32, error) {
		shape, ok := want[name]
		if !ok {
			return nil, fmt.Errorf("model: tensor %q is not part of this config", name)
		}
		v, ok := tensors[name]
		if !ok {
			return nil, fmt.Errorf("model: tensor %q missing", name)
		}
		n := 1
		for _, s := range shape {
			n *= s
		}
		if len(v) != n {
			return nil, fmt.Errorf("model: tensor %q has %d elements, config implies shape %v", name, len(v), shape)
		}
		return v, nil
	}
	return build(c, get)
}

func build(c *hf.Config, get func(string) ([]float32, error)) (*Model, error) {
	m := &Model{Config: c, d: newDims(c)}
	var rs *kernels.RopeScaling
	if s := c.RopeScaling; s != nil {
		rs = &kernels.RopeScaling{Type: s.RopeType, Factor: s.Factor, LowFreqFactor: s.LowFreqFactor,
			HighFreqFactor: s.HighFreqFactor, OriginalMaxPositionEmbeddings: s.OriginalMaxPositionEmbeddings}
	}
	inv, err := kernels.RopeInvFreq(c.HeadDim, c.RopeTheta, rs)
	if err != nil {
		return nil, err
	}
	m.w.invFreq = inv
	var errs []error
	load := func(name string) []float32 {
		v, err := get(name)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	m.w.embed = load("model.embed_tokens.weight")
	m.w.norm = load("model.norm.weight")
	if c.TieWordEmbeddings {
		m.w.lmHead = m.w.embed
	} else {
		m.w.lmHead = load("lm_head.weight")
	}
	m.w.layers = make([]layerW[float32], c.NumHiddenLayers)
	for l := range m.w.layers {
		lw := &m.w.layers[l]
		lw.inNorm = load(hf.LayerTensorName(l, "input_layernorm.weight"))
		lw.postNorm = load(hf.LayerTensorName(l, "post_attention_layernorm.weight"))
		for i, mod := range hf.ModuleNames {
			p, _ := hf.ModulePath(mod)
			lw.w[i] = load(hf.LayerTensorName(l, p+".weight"))
		}
		if m.d.qkvBias {
			for i, mod := range hf.ModuleNames[:3] {
				lw.b[i] = load(hf.LayerTensorName(l, "self_attn."+mod+".bias"))
			}
		}
		if m.d.oBias {
			lw.b[modO] = load(hf.LayerTensorName(l, "self_attn.o_proj.bias"))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// Load reads a Hugging Face model directory: config.json and
// model.safetensors or a sharded checkpoint with
// model.safetensors.index.json. It checks that the checkpoint holds exactly
// the tensors the config implies and converts all weights to float32.
func Load(dir string) (*Model, error) {
	c, err := hf.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	if err := hf.CheckCheckpoint(c, ck); err != nil {
		return nil, err
	}
	m, err := build(c, ck.Float32)
	if err != nil {
		return nil, err
	}
	m.Dir = dir
	return m, nil
}

// NumParameters is the number of base-model parameters.
func (m *Model) NumParameters() int64 { return m.Config.NumParameters() }

// checkTokens reports the first token id outside the vocabulary.
func (d *dims) checkTokens(what string, ids []int) error {
	for i, id := range ids {
		if id < 0 || id >= d.V {
			return fmt.Errorf("%s: token %d at position %d is outside the vocabulary [0, %d)", what, id, i, d.V)
		}
	}
	return nil
}
