package model

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fedtune/fedtune/internal/atomicfile"
	"github.com/fedtune/fedtune/kernels"
	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
)

// Merge returns a new model whose targeted projections are
// W' = W + scale·B·A (Hu et al. 2021, §4.1: "W = W₀ + BA" at deployment),
// so that it computes what m computes with adapter a, without the adapter.
// Untouched weights are shared with m.
func (m *Model) Merge(a *Adapter) *Model {
	a.check(m)
	out := &Model{Config: m.Config, Dir: m.Dir, d: m.d, w: m.w}
	out.w.layers = make([]layerW[float32], len(m.w.layers))
	copy(out.w.layers, m.w.layers)
	r := a.Config.R
	for l := range a.lw.mods {
		for mi, lm := range a.lw.mods[l] {
			if lm.B == nil {
				continue
			}
			o, in := m.d.shape(mi)
			w := append([]float32(nil), m.w.layers[l].w[mi]...)
			kernels.Sgemm(false, false, o, in, r, a.lw.scale, lm.B, r, lm.A, in, 1, w, in)
			out.w.layers[l].w[mi] = w
		}
	}
	return out
}

// MergeCheckpoint writes into outDir a Hugging Face checkpoint of the model
// in modelDir with the adapter in adapterDir merged in: config.json and the
// tokenizer files are copied, merged projections are encoded in the dtype
// they had, and every other tensor is copied byte for byte.
func MergeCheckpoint(modelDir, adapterDir, outDir string) error {
	m, err := Load(modelDir)
	if err != nil {
		return err
	}
	a, err := LoadAdapter(adapterDir, m)
	if err != nil {
		return err
	}
	merged := m.Merge(a)
	ck, err := safetensors.OpenCheckpoint(modelDir)
	if err != nil {
		return err
	}
	defer ck.Close()
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	changed := map[string][]float32{}
	for l := range a.lw.mods {
		for mi, lm := range a.lw.mods[l] {
			if lm.B != nil {
				p, _ := hf.ModulePath(hf.ModuleNames[mi])
				changed[hf.LayerTensorName(l, p+".weight")] = merged.w.layers[l].w[mi]
			}
		}
	}
	var ts []safetensors.Tensor
	for _, ti := range ck.Tensors() {
		if v, ok := changed[ti.Name]; ok {
			data, err := safetensors.Encode(v, ti.DType)
			if err != nil {
				return fmt.Errorf("%s: tensor %q: %v", ti.File, ti.Name, err)
			}
			ts = append(ts, safetensors.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: data})
		} else {
			raw, err := ck.Bytes(ti.Name)
			if err != nil {
				return err
			}
			ts = append(ts, safetensors.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: raw})
		}
	}
	const shard = 4 << 30
	if err := safetensors.WriteSharded(outDir, ts, map[string]string{"format": "pt"}, shard); err != nil {
		return err
	}
	for _, name := range []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		raw, err := os.ReadFile(filepath.Join(modelDir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(outDir, name), raw, 0o644); err != nil {
			return err
		}
	}
	return nil
}
