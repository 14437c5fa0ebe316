package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/fedtune/fedtune/internal/atomicfile"
)

// Names of the files of a PEFT adapter directory.
const (
	AdapterConfigFile  = "adapter_config.json"
	AdapterWeightsFile = "adapter_model.safetensors"
	// AdapterExtraFile holds fedtune's own adapter settings (FFA-LoRA, the
	// seed of the frozen A matrices) next to the PEFT files, so
	// adapter_config.json keeps only keys PEFT knows.
	AdapterExtraFile = "fedtune_adapter.json"
)

// AdapterConfig is PEFT's LoraConfig as stored in adapter_config.json.
type AdapterConfig struct {
	PeftType            string   `json:"peft_type"`
	BaseModelNameOrPath string   `json:"base_model_name_or_path"`
	TaskType            string   `json:"task_type"`
	R                   int      `json:"r"`
	LoraAlpha           float64  `json:"lora_alpha"`
	LoraDropout         float64  `json:"lora_dropout"`
	TargetModules       []string `json:"target_modules"`
	UseRslora           bool     `json:"use_rslora"`
	Bias                string   `json:"bias"`
	FanInFanOut         bool     `json:"fan_in_fan_out"`
	InitLoraWeights     bool     `json:"init_lora_weights"`
	InferenceMode       bool     `json:"inference_mode"`
	UseDora             bool     `json:"use_dora"`
	ModulesToSave       []string `json:"modules_to_save"`
	Revision            *string  `json:"revision"`
	// Extra is stored in fedtune_adapter.json beside adapter_config.json.
	Extra map[string]any `json:"-"`
}

// Validate checks the fields fedtune relies on.
func (a *AdapterConfig) Validate(name string) error {
	if a.PeftType != "LORA" {
		return fmt.Errorf("%s: field peft_type: want \"LORA\", got %q", name, a.PeftType)
	}
	if a.R <= 0 {
		return fmt.Errorf("%s: field r: must be a positive integer, got %d", name, a.R)
	}
	if !(a.LoraAlpha > 0) {
		return fmt.Errorf("%s: field lora_alpha: must be positive, got %v", name, a.LoraAlpha)
	}
	if a.LoraDropout < 0 || a.LoraDropout >= 1 {
		return fmt.Errorf("%s: field lora_dropout: must be in [0, 1), got %v", name, a.LoraDropout)
	}
	if len(a.TargetModules) == 0 {
		return fmt.Errorf("%s: field target_modules: empty", name)
	}
	for _, m := range a.TargetModules {
		if _, ok := ModulePath(m); !ok {
			return fmt.Errorf("%s: field target_modules: unsupported module %q (supported: %v)", name, m, ModuleNames)
		}
	}
	if a.Bias != "" && a.Bias != "none" {
		return fmt.Errorf("%s: field bias: only \"none\" is supported, got %q", name, a.Bias)
	}
	if a.FanInFanOut || a.UseDora || len(a.ModulesToSave) > 0 {
		return fmt.Errorf("%s: fan_in_fan_out, use_dora and modules_to_save are not supported", name)
	}
	return nil
}

// Scale is the LoRA scaling factor: alpha/r, or alpha/√r with rsLoRA.
func (a *AdapterConfig) Scale() float64 {
	if a.UseRslora {
		return a.LoraAlpha / math.Sqrt(float64(a.R))
	}
	return a.LoraAlpha / float64(a.R)
}

// LoadAdapterConfig reads adapter_config.json (and fedtune_adapter.json
// beside it when present).
func LoadAdapterConfig(path string) (*AdapterConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var a AdapterConfig
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if err := a.Validate(path); err != nil {
		return nil, err
	}
	xp := filepath.Join(filepath.Dir(path), AdapterExtraFile)
	if xr, err := os.ReadFile(xp); err == nil {
		if err := json.Unmarshal(xr, &a.Extra); err != nil {
			return nil, fmt.Errorf("%s: %v", xp, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return &a, nil
}

// Marshal encodes adapter_config.json.
func (a *AdapterConfig) Marshal() ([]byte, error) {
	b := *a
	if b.Bias == "" {
		b.Bias = "none"
	}
	if b.TaskType == "" {
		b.TaskType = "CAUSAL_LM"
	}
	return json.MarshalIndent(&b, "", "  ")
}

// SaveAdapterConfig writes adapter_config.json into dir, and
// fedtune_adapter.json when Extra is not empty.
func SaveAdapterConfig(dir string, a *AdapterConfig) error {
	raw, err := a.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, AdapterConfigFile), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	if len(a.Extra) > 0 {
		x, err := json.MarshalIndent(a.Extra, "", "  ")
		if err != nil {
			return err
		}
		return atomicfile.Write(filepath.Join(dir, AdapterExtraFile), append(x, '\n'), 0o644)
	}
	return nil
}

// LoraTensorName is PEFT's saved name of a LoRA matrix, e.g.
// LoraTensorName(0, "q_proj", "A") =
// "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
func LoraTensorName(layer int, module string, ab string) string {
	p, ok := ModulePath(module)
	if !ok {
		panic("hf: unknown module " + module)
	}
	if ab != "A" && ab != "B" {
		panic("hf: LoRA matrix must be A or B, got " + ab)
	}
	return fmt.Sprintf("base_model.model.model.layers.%d.%s.lora_%s.weight", layer, p, ab)
}
