// Package hf reads and writes the Hugging Face file layouts fedtune uses:
// a model's config.json, the tensor names and shapes it implies, PEFT's
// adapter_config.json and tensor names, and deterministic random
// checkpoints for tests and the demo.
package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Architecture names accepted in config.json's "architectures".
const (
	ArchLlama   = "LlamaForCausalLM"
	ArchMistral = "MistralForCausalLM"
	ArchQwen2   = "Qwen2ForCausalLM"
)

var modelTypes = map[string]string{ArchLlama: "llama", ArchMistral: "mistral", ArchQwen2: "qwen2"}

// Config is the subset of a transformers config.json that defines a
// Llama-family decoder.
type Config struct {
	Architectures         []string     `json:"architectures"`
	ModelType             string       `json:"model_type"`
	HiddenSize            int          `json:"hidden_size"`
	IntermediateSize      int          `json:"intermediate_size"`
	NumHiddenLayers       int          `json:"num_hidden_layers"`
	NumAttentionHeads     int          `json:"num_attention_heads"`
	NumKeyValueHeads      int          `json:"num_key_value_heads,omitempty"`
	HeadDim               int          `json:"head_dim,omitempty"`
	VocabSize             int          `json:"vocab_size"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings,omitempty"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	RopeTheta             float64      `json:"rope_theta,omitempty"`
	RopeScaling           *RopeScaling `json:"rope_scaling,omitempty"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	// AttentionBias is Llama's flag for biases on q, k, v and o. Qwen2 has
	// q, k and v biases whatever it says; see QKVBias and OBias.
	AttentionBias bool   `json:"attention_bias,omitempty"`
	MLPBias       bool   `json:"mlp_bias,omitempty"`
	HiddenAct     string `json:"hidden_act,omitempty"`
	BOSTokenID    *int   `json:"-"`
	EOSTokenID    *int   `json:"-"`
	// EOSTokenIDs holds every end-of-sequence id (Llama 3 lists several).
	EOSTokenIDs    []int   `json:"-"`
	TorchDtype     string  `json:"torch_dtype,omitempty"`
	SlidingWindow  *int    `json:"sliding_window,omitempty"`
	InitializerRng float64 `json:"initializer_range,omitempty"`

	path string
}

// RopeScaling is config.json's rope_scaling object.
type RopeScaling struct {
	RopeType                      string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
}

// LoadConfig reads and validates a config.json.
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, raw)
}

// ParseConfig parses and validates config.json contents; name is used in
// errors.
func ParseConfig(name string, raw []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	var extra struct {
		BOS         json.RawMessage `json:"bos_token_id"`
		EOS         json.RawMessage `json:"eos_token_id"`
		RopeScaling map[string]any  `json:"rope_scaling"`
		Present     map[string]json.RawMessage
	}
	json.Unmarshal(raw, &extra)
	json.Unmarshal(raw, &extra.Present)
	c.path = name
	if ids, err := tokenIDs(extra.BOS); err != nil {
		return nil, fmt.Errorf("%s: field bos_token_id: %v", name, err)
	} else if len(ids) > 0 {
		c.BOSTokenID = &ids[0]
	}
	if ids, err := tokenIDs(extra.EOS); err != nil {
		return nil, fmt.Errorf("%s: field eos_token_id: %v", name, err)
	} else if len(ids) > 0 {
		c.EOSTokenID = &ids[0]
		c.EOSTokenIDs = ids
	}
	// Older configs spell rope_scaling's rope_type as "type".
	if c.RopeScaling != nil && c.RopeScaling.RopeType == "" {
		if t, ok := extra.RopeScaling["type"].(string); ok {
			c.RopeScaling.RopeType = t
		}
	}
	for _, f := range []string{"architectures", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "rms_norm_eps"} {
		if _, ok := extra.Present[f]; !ok {
			return nil, fmt.Errorf("%s: missing required field %q", name, f)
		}
	}
	if _, ok := extra.Present["num_key_value_heads"]; !ok {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func tokenIDs(raw json.RawMessage) ([]int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("want an integer or a list of integers, got %s", raw)
	}
	return many, nil
}

// Architecture returns the model class, e.g. "LlamaForCausalLM".
func (c *Config) Architecture() string {
	if len(c.Architectures) == 0 {
		return ""
	}
	return c.Architectures[0]
}

// QKVBias reports whether the q, k and v projections have biases.
func (c *Config) QKVBias() bool { return c.Architecture() == ArchQwen2 || c.AttentionBias }

// OBias reports whether the output projection has a bias.
func (c *Config) OBias() bool { return c.Architecture() != ArchQwen2 && c.AttentionBias }

func (c *Config) errf(field, format string, args ...any) error {
	name := c.path
	if name == "" {
		name = "config.json"
	}
	return fmt.Errorf("%s: field %s: %s", name, field, fmt.Sprintf(format, args...))
}

// Validate checks the config describes a model fedtune can run.
func (c *Config) Validate() error {
	if len(c.Architectures) != 1 {
		return c.errf("architectures", "want exactly one architecture, got %v", c.Architectures)
	}
	mt, ok := modelTypes[c.Architecture()]
	if !ok {
		return c.errf("architectures", "unknown architecture %q (supported: %s, %s, %s)", c.Architecture(), ArchLlama, ArchMistral, ArchQwen2)
	}
	if c.ModelType != "" && c.ModelType != mt {
		return c.errf("model_type", "%q does not match architecture %s (want %q)", c.ModelType, c.Architecture(), mt)
	}
	pos := []struct {
		f string
		v int
	}{{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads}, {"num_key_value_heads", c.NumKeyValueHeads}, {"head_dim", c.HeadDim}, {"vocab_size", c.VocabSize}}
	for _, p := range pos {
		if p.v <= 0 {
			return c.errf(p.f, "must be a positive integer, got %d", p.v)
		}
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return c.errf("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	}
	if c.HeadDim%2 != 0 {
		return c.errf("head_dim", "rotary embeddings need an even head_dim, got %d", c.HeadDim)
	}
	if !(c.RMSNormEps > 0) {
		return c.errf("rms_norm_eps", "must be positive, got %v", c.RMSNormEps)
	}
	if !(c.RopeTheta > 0) {
		return c.errf("rope_theta", "must be positive, got %v", c.RopeTheta)
	}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return c.errf("hidden_act", "only \"silu\" is supported, got %q", c.HiddenAct)
	}
	if c.MLPBias {
		return c.errf("mlp_bias", "MLP biases are not supported")
	}
	if rs := c.RopeScaling; rs != nil {
		switch rs.RopeType {
		case "default":
		case "linear":
			if !(rs.Factor > 0) {
				return c.errf("rope_scaling.factor", "must be positive, got %v", rs.Factor)
			}
		case "llama3":
			if !(rs.Factor > 0) || !(rs.LowFreqFactor > 0) || !(rs.HighFreqFactor > rs.LowFreqFactor) || rs.OriginalMaxPositionEmbeddings <= 0 {
				return c.errf("rope_scaling", "llama3 scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0")
			}
		default:
			return c.errf("rope_scaling.rope_type", "unsupported %q (supported: default, linear, llama3)", rs.RopeType)
		}
	}
	for i, id := range c.EOSTokenIDs {
		if id < 0 || id >= c.VocabSize {
			return c.errf("eos_token_id", "id %d (entry %d) outside the vocabulary of %d", id, i, c.VocabSize)
		}
	}
	if c.BOSTokenID != nil && (*c.BOSTokenID < 0 || *c.BOSTokenID >= c.VocabSize) {
		return c.errf("bos_token_id", "id %d outside the vocabulary of %d", *c.BOSTokenID, c.VocabSize)
	}
	return nil
}

// Marshal encodes the config as transformers writes it (indented JSON).
func (c *Config) Marshal() ([]byte, error) {
	type plain Config
	raw, err := json.Marshal((*plain)(c))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	json.Unmarshal(raw, &m)
	if m["model_type"] == nil || m["model_type"] == "" {
		m["model_type"] = modelTypes[c.Architecture()]
	}
	if c.BOSTokenID != nil {
		m["bos_token_id"] = *c.BOSTokenID
	}
	switch {
	case len(c.EOSTokenIDs) > 1:
		m["eos_token_id"] = c.EOSTokenIDs
	case c.EOSTokenID != nil:
		m["eos_token_id"] = *c.EOSTokenID
	}
	if m["hidden_act"] == nil {
		m["hidden_act"] = "silu"
	}
	return json.MarshalIndent(m, "", "  ")
}

// ModuleNames are the projections LoRA can target, in canonical order.
var ModuleNames = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// ModulePath returns the module's path inside a decoder layer, e.g.
// "self_attn.q_proj" or "mlp.up_proj"; ok is false for an unknown module.
func ModulePath(module string) (string, bool) {
	switch module {
	case "q_proj", "k_proj", "v_proj", "o_proj":
		return "self_attn." + module, true
	case "gate_proj", "up_proj", "down_proj":
		return "mlp." + module, true
	}
	return "", false
}

// ProjShape returns the [out, in] shape of a projection's weight.
func (c *Config) ProjShape(module string) (out, in int) {
	q, kv := c.NumAttentionHeads*c.HeadDim, c.NumKeyValueHeads*c.HeadDim
	switch module {
	case "q_proj":
		return q, c.HiddenSize
	case "k_proj", "v_proj":
		return kv, c.HiddenSize
	case "o_proj":
		return c.HiddenSize, q
	case "gate_proj", "up_proj":
		return c.IntermediateSize, c.HiddenSize
	case "down_proj":
		return c.HiddenSize, c.IntermediateSize
	}
	panic("hf: unknown module " + module)
}

// LayerTensorName is the HF name of a decoder layer's tensor, e.g.
// LayerTensorName(0, "self_attn.q_proj.weight").
func LayerTensorName(layer int, suffix string) string {
	return fmt.Sprintf("model.layers.%d.%s", layer, suffix)
}

// ExpectedTensors maps every tensor name the config implies to its shape.
func (c *Config) ExpectedTensors() map[string][]int {
	m := map[string][]int{
		"model.embed_tokens.weight": {c.VocabSize, c.HiddenSize},
		"model.norm.weight":         {c.HiddenSize},
	}
	if !c.TieWordEmbeddings {
		m["lm_head.weight"] = []int{c.VocabSize, c.HiddenSize}
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		m[LayerTensorName(l, "input_layernorm.weight")] = []int{c.HiddenSize}
		m[LayerTensorName(l, "post_attention_layernorm.weight")] = []int{c.HiddenSize}
		for _, mod := range ModuleNames {
			p, _ := ModulePath(mod)
			out, in := c.ProjShape(mod)
			m[LayerTensorName(l, p+".weight")] = []int{out, in}
		}
		if c.QKVBias() {
			for _, mod := range []string{"q_proj", "k_proj", "v_proj"} {
				out, _ := c.ProjShape(mod)
				m[LayerTensorName(l, "self_attn."+mod+".bias")] = []int{out}
			}
		}
		if c.OBias() {
			m[LayerTensorName(l, "self_attn.o_proj.bias")] = []int{c.HiddenSize}
		}
	}
	return m
}

// NumParameters counts the parameters the config implies.
func (c *Config) NumParameters() int64 {
	var n int64
	for _, s := range c.ExpectedTensors() {
		p := int64(1)
		for _, d := range s {
			p *= int64(d)
		}
		n += p
	}
	return n
}

// sortedNames returns the map's keys in order.
func sortedNames(m map[string][]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ignorableTensor reports tensors some exporters add that carry no weights
// (precomputed rotary frequencies).
func ignorableTensor(name string) bool {
	return strings.HasSuffix(name, "rotary_emb.inv_freq")
}
