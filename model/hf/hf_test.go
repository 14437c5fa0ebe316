package hf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/model/safetensors"
)

const llama3Config = `{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
  "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "bos_token_id": 1, "eos_token_id": [2, 3], "tie_word_embeddings": true
}`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("config.json", []byte(llama3Config))
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDim != 16 || c.NumKeyValueHeads != 2 || *c.EOSTokenID != 2 || len(c.EOSTokenIDs) != 2 || *c.BOSTokenID != 1 {
		t.Fatalf("parsed %+v", c)
	}
	if c.RopeScaling.RopeType != "llama3" || c.RopeScaling.OriginalMaxPositionEmbeddings != 8192 {
		t.Fatalf("rope_scaling %+v", c.RopeScaling)
	}
	if c.QKVBias() || c.OBias() {
		t.Fatal("llama without attention_bias has no biases")
	}
	if _, ok := c.ExpectedTensors()["lm_head.weight"]; ok {
		t.Fatal("tied embeddings: no lm_head")
	}
	// Round trip through Marshal.
	raw, _ := c.Marshal()
	c2, err := ParseConfig("again", raw)
	if err != nil {
		t.Fatal(err)
	}
	if c2.HiddenSize != 64 || len(c2.EOSTokenIDs) != 2 || c2.RopeScaling.Factor != 8 {
		t.Fatalf("round trip lost fields: %+v", c2)
	}

	q := strings.Replace(llama3Config, "LlamaForCausalLM", "Qwen2ForCausalLM", 1)
	q = strings.Replace(q, `"model_type": "llama",`, `"head_dim": 32,`, 1)
	c, err = ParseConfig("qwen", []byte(q))
	if err != nil {
		t.Fatal(err)
	}
	if !c.QKVBias() || c.OBias() || c.HeadDim != 32 {
		t.Fatalf("qwen2: qkv=%v o=%v head_dim=%d", c.QKVBias(), c.OBias(), c.HeadDim)
	}
	if s := c.ExpectedTensors()["model.layers.1.self_attn.k_proj.bias"]; len(s) != 1 || s[0] != 64 {
		t.Fatalf("k bias shape %v", s)
	}
	if s := c.ExpectedTensors()["model.layers.0.self_attn.o_proj.weight"]; s[0] != 64 || s[1] != 128 {
		t.Fatalf("o_proj shape %v", s)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ edit, want string }{
		{`"hidden_size": 64,`, `missing required field "hidden_size"`},
		{`"LlamaForCausalLM"`, `unknown architecture "GPT2LMHeadModel"`},
		{`"num_key_value_heads": 2,`, `field num_key_value_heads: 3 does not divide`},
		{`"rope_type": "llama3"`, `field rope_scaling.rope_type: unsupported "yarn"`},
		{`"eos_token_id": [2, 3],`, `field eos_token_id: id 999`},
		{`"vocab_size": 300,`, `field vocab_size: must be a positive integer`},
	}
	repl := []string{"", `"GPT2LMHeadModel"`, `"num_key_value_heads": 3,`, `"rope_type": "yarn"`, `"eos_token_id": [2, 999],`, `"vocab_size": 0,`}
	for i, c := range cases {
		bad := strings.Replace(llama3Config, c.edit, repl[i], 1)
		_, err := ParseConfig("m/config.json", []byte(bad))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "m/config.json") {
			t.Errorf("case %d: got %v, want error containing %q and the file name", i, err, c.want)
		}
	}
}

func TestInitCheckpointBitExact(t *testing.T) {
	c, _ := ParseConfig("config.json", []byte(llama3Config))
	for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
		dir := t.TempDir()
		if err := InitCheckpoint(dir, c, 7, dt, []byte(`{"model":{}}`)); err != nil {
			t.Fatal(err)
		}
		c2, err := LoadConfig(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		ck, err := safetensors.OpenCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckCheckpoint(c2, ck); err != nil {
			t.Fatal(err)
		}
		want := InitTensors(c, 7)
		for name, v := range want {
			raw, _ := ck.Bytes(name)
			enc, _ := safetensors.Encode(v, dt)
			if !bytes.Equal(raw, enc) {
				t.Fatalf("%s %s: stored bytes differ from the encoded init", dt, name)
			}
			// Loading and re-encoding gives the same bits.
			got, _ := ck.Float32(name)
			again, _ := safetensors.Encode(got, dt)
			if !bytes.Equal(raw, again) {
				t.Fatalf("%s %s: load is not bit-exact", dt, name)
			}
		}
		ck.Close()
		d1, err := CheckpointDigest(dir)
		if err != nil {
			t.Fatal(err)
		}
		dir2 := t.TempDir()
		InitCheckpoint(dir2, c, 7, dt, nil)
		if d2, _ := CheckpointDigest(dir2); d2 != d1 {
			t.Fatalf("same seed, different digests %s %s", d1, d2)
		}
		InitCheckpoint(dir2, c, 8, dt, nil)
		if d3, _ := CheckpointDigest(dir2); d3 == d1 {
			t.Fatal("different seed, same digest")
		}
	}
}

func TestCheckCheckpointErrors(t *testing.T) {
	c, _ := ParseConfig("config.json", []byte(llama3Config))
	dir := t.TempDir()
	vals := InitTensors(c, 1)
	shapes := c.ExpectedTensors()
	write := func(mutate func([]safetensors.Tensor) []safetensors.Tensor) *safetensors.Checkpoint {
		var ts []safetensors.Tensor
		for _, n := range sortedNames(shapes) {
			ts = append(ts, safetensors.Float32Tensor(n, shapes[n], vals[n], safetensors.F32))
		}
		ts = mutate(ts)
		if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
			t.Fatal(err)
		}
		ck, err := safetensors.OpenCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ck.Close() })
		return ck
	}
	ck := write(func(ts []safetensors.Tensor) []safetensors.Tensor {
		for i := range ts {
			if ts[i].Name == "model.layers.1.mlp.up_proj.weight" {
				ts[i] = safetensors.Float32Tensor(ts[i].Name, []int{64, 176}, vals[ts[i].Name], safetensors.F32)
			}
		}
		return ts
	})
	err := CheckCheckpoint(c, ck)
	if err == nil || !strings.Contains(err.Error(), `tensor "model.layers.1.mlp.up_proj.weight": shape [64 176] disagrees`) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("got %v", err)
	}
	ck = write(func(ts []safetensors.Tensor) []safetensors.Tensor { return ts[1:] })
	if err := CheckCheckpoint(c, ck); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("got %v", err)
	}
	ck = write(func(ts []safetensors.Tensor) []safetensors.Tensor {
		return append(ts, safetensors.Float32Tensor("model.extra", []int{1}, []float32{1}, safetensors.F32))
	})
	if err := CheckCheckpoint(c, ck); err == nil || !strings.Contains(err.Error(), `tensor "model.extra": not part of`) {
		t.Fatalf("got %v", err)
	}
	os.Remove(filepath.Join(dir, "model.safetensors"))
}

func TestAdapterConfig(t *testing.T) {
	dir := t.TempDir()
	a := &AdapterConfig{PeftType: "LORA", R: 8, LoraAlpha: 16, TargetModules: []string{"q_proj", "v_proj"}, InitLoraWeights: true, Extra: map[string]any{"ffa": true, "a_seed": float64(42)}}
	if err := SaveAdapterConfig(dir, a); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, AdapterConfigFile))
	for _, k := range []string{`"peft_type": "LORA"`, `"task_type": "CAUSAL_LM"`, `"bias": "none"`, `"target_modules": [`} {
		if !strings.Contains(string(raw), k) {
			t.Errorf("adapter_config.json lacks %s", k)
		}
	}
	if strings.Contains(string(raw), "ffa") {
		t.Error("fedtune fields must stay out of adapter_config.json")
	}
	b, err := LoadAdapterConfig(filepath.Join(dir, AdapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if b.R != 8 || b.Scale() != 2 || b.Extra["ffa"] != true {
		t.Fatalf("loaded %+v", b)
	}
	b.UseRslora = true
	if s := b.Scale(); s < 5.656 || s > 5.657 {
		t.Fatalf("rsLoRA scale %v", s)
	}
	if n := LoraTensorName(3, "down_proj", "B"); n != "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight" {
		t.Fatal(n)
	}
	os.WriteFile(filepath.Join(dir, AdapterConfigFile), []byte(`{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["qkv"]}`), 0o644)
	if _, err := LoadAdapterConfig(filepath.Join(dir, AdapterConfigFile)); err == nil || !strings.Contains(err.Error(), `unsupported module "qkv"`) {
		t.Fatalf("got %v", err)
	}
}
