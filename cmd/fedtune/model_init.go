package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/safetensors"
	tokenizerpkg "github.com/fedtune/fedtune/model/tokenizer"
)

// modelCmd groups the commands that create, inspect and run base models.
var modelCmd = &cobra.Command{
	Use:   "model",
	Short: "Create, run and merge Llama-family models and LoRA adapters",
}

func init() {
	rootCmd.AddCommand(modelCmd)
	modelCmd.AddCommand(newModelInitCmd())
}

func newModelInitCmd() *cobra.Command {
	var (
		arch, dtype, tokenizer, out string
		hidden, layers, heads, kv   int
		inter, vocab, headDim, pos  int
		seed                        int64
		tie, bias, jsonOut          bool
		ropeTheta                   float64
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a deterministic random checkpoint in Hugging Face layout",
		Long: `Writes config.json, model.safetensors and (with --tokenizer) tokenizer.json
into --out: a Llama-family model with deterministic random weights, for tests,
benchmarks and the demo. The same flags and seed always give the same bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			archName, ok := map[string]string{"llama": hf.ArchLlama, "mistral": hf.ArchMistral, "qwen2": hf.ArchQwen2}[arch]
			if !ok {
				return fmt.Errorf("--arch: unknown architecture %q (want llama, mistral or qwen2)", arch)
			}
			dt, ok := map[string]safetensors.DType{"f32": safetensors.F32, "bf16": safetensors.BF16, "f16": safetensors.F16}[dtype]
			if !ok {
				return fmt.Errorf("--dtype: want f32, bf16 or f16, got %q", dtype)
			}
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if kv == 0 {
				kv = heads
			}
			c := &hf.Config{
				Architectures: []string{archName}, HiddenSize: hidden, IntermediateSize: inter,
				NumHiddenLayers: layers, NumAttentionHeads: heads, NumKeyValueHeads: kv, HeadDim: headDim,
				VocabSize: vocab, MaxPositionEmbeddings: pos, RMSNormEps: 1e-5, RopeTheta: ropeTheta,
				TieWordEmbeddings: tie, AttentionBias: bias && archName != hf.ArchQwen2,
			}
			if c.HeadDim == 0 && heads > 0 {
				c.HeadDim = hidden / heads
			}
			var tok []byte
			if tokenizer != "" {
				var err error
				if tok, err = os.ReadFile(tokenizer); err != nil {
					return fmt.Errorf("--tokenizer: %w", err)
				}
				t, err := tokenizerpkg.Parse(tok)
				if err != nil {
					return fmt.Errorf("--tokenizer %s: %w", tokenizer, err)
				}
				if t.VocabSize() > vocab {
					return fmt.Errorf("--tokenizer %s has %d tokens, more than --vocab %d", tokenizer, t.VocabSize(), vocab)
				}
			}
			if err := c.Validate(); err != nil {
				return err
			}
			if err := hf.InitCheckpoint(out, c, seed, dt, tok); err != nil {
				return err
			}
			digest, err := hf.CheckpointDigest(out)
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(out)
			res := map[string]any{"dir": abs, "architecture": archName, "parameters": c.NumParameters(), "dtype": string(dt), "digest": digest}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s, %d parameters (%s)\ndigest %s\n", abs, archName, c.NumParameters(), dt, digest)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&arch, "arch", "llama", "architecture: llama, mistral or qwen2 (qwen2 has q/k/v biases)")
	f.IntVar(&hidden, "hidden", 256, "hidden size")
	f.IntVar(&layers, "layers", 4, "number of decoder layers")
	f.IntVar(&heads, "heads", 8, "attention heads")
	f.IntVar(&kv, "kv-heads", 0, "key/value heads for grouped-query attention (default: --heads)")
	f.IntVar(&inter, "intermediate", 688, "MLP intermediate size")
	f.IntVar(&vocab, "vocab", 1024, "vocabulary size")
	f.IntVar(&headDim, "head-dim", 0, "explicit head_dim (default: hidden/heads)")
	f.IntVar(&pos, "max-positions", 2048, "max_position_embeddings")
	f.Float64Var(&ropeTheta, "rope-theta", 10000, "RoPE base frequency")
	f.BoolVar(&tie, "tie-embeddings", false, "tie the output head to the token embeddings")
	f.BoolVar(&bias, "attention-bias", false, "Llama/Mistral: biases on q, k, v and o projections")
	f.StringVar(&dtype, "dtype", "f32", "weight dtype: f32, bf16 or f16")
	f.StringVar(&tokenizer, "tokenizer", "", "tokenizer.json to copy into the checkpoint")
	f.Int64Var(&seed, "seed", 0, "random seed for the weights")
	f.StringVar(&out, "out", "", "output directory (required)")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}
