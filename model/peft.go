package model

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
)

// Keys of fedtune's own adapter settings, stored by hf.SaveAdapterConfig in
// fedtune_adapter.json beside adapter_config.json.
const (
	extraFFA   = "ffa"
	extraASeed = "a_seed"
)

// SaveAdapter writes the adapter into dir (created if needed) in PEFT's
// layout: adapter_config.json and adapter_model.safetensors with tensors
// named like base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
// (F32), which peft.PeftModel.from_pretrained loads. FFA and the A seed go
// to fedtune_adapter.json, which PEFT ignores. base names the base model
// in base_model_name_or_path.
func (a *Adapter) SaveAdapter(dir, base string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c := a.Config
	ac := &hf.AdapterConfig{
		PeftType: "LORA", BaseModelNameOrPath: base, TaskType: "CAUSAL_LM",
		R: c.R, LoraAlpha: c.Alpha, LoraDropout: c.Dropout, TargetModules: slices.Clone(c.TargetModules),
		UseRslora: c.RSLoRA, Bias: "none", InitLoraWeights: true, InferenceMode: true,
		Extra: map[string]any{extraFFA: c.FFA, extraASeed: c.ASeed},
	}
	var ts []safetensors.Tensor
	for l := range a.lw.mods {
		for mi, lm := range a.lw.mods[l] {
			if lm.B == nil {
				continue
			}
			out, in := a.d.shape(mi)
			mod := hf.ModuleNames[mi]
			ts = append(ts,
				safetensors.Float32Tensor(hf.LoraTensorName(l, mod, "A"), []int{c.R, in}, lm.A, safetensors.F32),
				safetensors.Float32Tensor(hf.LoraTensorName(l, mod, "B"), []int{out, c.R}, lm.B, safetensors.F32))
		}
	}
	if err := safetensors.Write(filepath.Join(dir, hf.AdapterWeightsFile), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return hf.SaveAdapterConfig(dir, ac)
}

// LoadAdapter reads a PEFT LoRA adapter directory for model m. The tensors
// must be exactly those the config implies, with shapes matching m.
func LoadAdapter(dir string, m *Model) (*Adapter, error) {
	cpath := filepath.Join(dir, hf.AdapterConfigFile)
	ac, err := hf.LoadAdapterConfig(cpath)
	if err != nil {
		return nil, err
	}
	c := LoRAConfig{R: ac.R, Alpha: ac.LoraAlpha, Dropout: ac.LoraDropout, TargetModules: slices.Clone(ac.TargetModules), RSLoRA: ac.UseRslora}
	if v, ok := ac.Extra[extraFFA]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, fmt.Errorf("%s: field %s: want a boolean, got %v", filepath.Join(dir, hf.AdapterExtraFile), extraFFA, v)
		}
		c.FFA = b
	}
	if v, ok := ac.Extra[extraASeed]; ok {
		f, isNum := v.(float64)
		if !isNum || f != float64(int64(f)) {
			return nil, fmt.Errorf("%s: field %s: want an integer, got %v", filepath.Join(dir, hf.AdapterExtraFile), extraASeed, v)
		}
		c.ASeed = int64(f)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", cpath, err)
	}
	wpath := filepath.Join(dir, hf.AdapterWeightsFile)
	f, err := safetensors.Open(wpath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a := newAdapter(m.d, c)
	want := map[string]bool{}
	for l := range a.lw.mods {
		for mi, lm := range a.lw.mods[l] {
			if lm.B == nil {
				continue
			}
			out, in := a.d.shape(mi)
			for _, x := range []struct {
				ab    string
				shape []int
				dst   []float32
			}{{"A", []int{c.R, in}, lm.A}, {"B", []int{out, c.R}, lm.B}} {
				name := hf.LoraTensorName(l, hf.ModuleNames[mi], x.ab)
				want[name] = true
				ti, ok := f.Info(name)
				if !ok {
					return nil, fmt.Errorf("%s: tensor %q: missing (target module %s of layer %d)", wpath, name, hf.ModuleNames[mi], l)
				}
				if !slices.Equal(ti.Shape, x.shape) {
					return nil, fmt.Errorf("%s: tensor %q: shape %v, the model and r=%d imply %v", wpath, name, ti.Shape, c.R, x.shape)
				}
				v, err := f.Float32(name)
				if err != nil {
					return nil, fmt.Errorf("%s: tensor %q: %v", wpath, name, err)
				}
				copy(x.dst, v)
			}
		}
	}
	for _, ti := range f.Tensors() {
		if !want[ti.Name] {
			return nil, fmt.Errorf("%s: tensor %q: not a LoRA matrix of the configured target modules %v", wpath, ti.Name, c.TargetModules)
		}
	}
	return a, nil
}
