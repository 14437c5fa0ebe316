package synth

import (
	"fmt"

	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
	"github.com/fedtune/fedtune/model/tokenizer"
)

// ModelOptions sizes the tiny base model InitBaseModel writes.
type ModelOptions struct {
	Hidden, Layers, Heads, KVHeads, Intermediate, Vocab, MaxPositions int
	Seed                                                              int64
}

// DefaultModelOptions is a Llama-architecture model small enough to train
// a few DP-SGD rounds on two cores in seconds: hidden 64, 2 layers, 4 heads
// (2 key/value heads), vocabulary 512.
func DefaultModelOptions() ModelOptions {
	return ModelOptions{Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 128, Vocab: 512, MaxPositions: 256, Seed: 1}
}

// InitBaseModel writes a randomly initialised Llama-family base model in
// Hugging Face layout to dir, with a byte-level BPE tokenizer trained on
// synthetic records of every domain (so all sites share one vocabulary).
// Output is deterministic in opts.
func InitBaseModel(dir string, opts ModelOptions) error {
	var corpus []string
	for _, d := range Domains() {
		for _, t := range Topics(d) {
			recs, err := Generate(Options{Domain: d, Site: "tokenizer-" + t, Records: 200, Seed: opts.Seed})
			if err != nil {
				return err
			}
			for _, r := range recs {
				corpus = append(corpus, r.Text)
			}
		}
	}
	tok, err := tokenizer.TrainByteLevelBPE(corpus, opts.Vocab)
	if err != nil {
		return fmt.Errorf("synth: tokenizer: %w", err)
	}
	bos, eos := opts.Vocab-1, opts.Vocab-1
	c := &hf.Config{
		Architectures: []string{"LlamaForCausalLM"}, ModelType: "llama",
		HiddenSize: opts.Hidden, IntermediateSize: opts.Intermediate, NumHiddenLayers: opts.Layers,
		NumAttentionHeads: opts.Heads, NumKeyValueHeads: opts.KVHeads, HeadDim: opts.Hidden / opts.Heads, VocabSize: opts.Vocab,
		MaxPositionEmbeddings: opts.MaxPositions, RMSNormEps: 1e-5, RopeTheta: 10000,
		TieWordEmbeddings: true, HiddenAct: "silu", BOSTokenID: &bos, EOSTokenID: &eos, TorchDtype: "float32",
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("synth: model config: %w", err)
	}
	return hf.InitCheckpoint(dir, c, opts.Seed, safetensors.DType("F32"), tok)
}
