package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fedtune/fedtune/model"
	"github.com/fedtune/fedtune/model/hf"
	"github.com/fedtune/fedtune/model/tokenizer"
)

func init() {
	modelCmd.AddCommand(newModelLogitsCmd(), newModelGenerateCmd(), newModelMergeCmd())
}

// parseTokenList parses a comma-separated list of token ids.
func parseTokenList(flag, s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%s: empty token list", flag)
	}
	parts := strings.Split(s, ",")
	ids := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%s: entry %d (%q) is not an integer token id", flag, i+1, p)
		}
		ids[i] = v
	}
	return ids, nil
}

// loadModelAdapter loads --model and, when given, --adapter.
func loadModelAdapter(modelDir, adapterDir string) (*model.Model, *model.Adapter, error) {
	if modelDir == "" {
		return nil, nil, fmt.Errorf("--model is required")
	}
	m, err := model.Load(modelDir)
	if err != nil {
		return nil, nil, err
	}
	if adapterDir == "" {
		return m, nil, nil
	}
	a, err := model.LoadAdapter(adapterDir, m)
	if err != nil {
		return nil, nil, err
	}
	return m, a, nil
}

func newModelLogitsCmd() *cobra.Command {
	var modelDir, adapterDir, tokens string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "logits --model DIR [--adapter DIR] --tokens 1,2,3",
		Short: "Print the next-token logits at every position of a token sequence",
		Long: `Runs the token ids through the model (with the LoRA adapter when given) and
prints one row of vocabulary logits per input position. With --json the output
is {"logits": [[...], ...]}; without, the five most likely next tokens of each
position.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ids, err := parseTokenList("--tokens", tokens)
			if err != nil {
				return err
			}
			m, a, err := loadModelAdapter(modelDir, adapterDir)
			if err != nil {
				return err
			}
			logits, err := m.Logits(a, ids)
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"logits": logits})
			}
			w := cmd.OutOrStdout()
			for i, row := range logits {
				fmt.Fprintf(w, "position %d (token %d):", i, ids[i])
				for _, j := range topLogits(row, 5) {
					fmt.Fprintf(w, " %d:%.4f", j, row[j])
				}
				fmt.Fprintln(w)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "Hugging Face model directory (required)")
	f.StringVar(&adapterDir, "adapter", "", "PEFT LoRA adapter directory")
	f.StringVar(&tokens, "tokens", "", "comma-separated token ids (required)")
	f.BoolVar(&jsonOut, "json", false, "print {\"logits\": [[...], ...]}")
	return cmd
}

// topLogits returns the indices of the k largest values, largest first.
func topLogits(row []float32, k int) []int {
	var idx []int
	for j := range row {
		pos := len(idx)
		for pos > 0 && row[idx[pos-1]] < row[j] {
			pos--
		}
		if pos < k {
			idx = append(idx[:pos], append([]int{j}, idx[pos:]...)...)
			if len(idx) > k {
				idx = idx[:k]
			}
		}
	}
	return idx
}

func newModelGenerateCmd() *cobra.Command {
	var (
		modelDir, adapterDir, prompt, tokens, tokPath string
		maxNew                                        int
		temperature, topP                             float64
		seed                                          uint64
		jsonOut                                       bool
	)
	cmd := &cobra.Command{
		Use:   "generate --model DIR [--adapter DIR] --prompt TEXT --max-new-tokens N",
		Short: "Continue a prompt with the model (greedy, or sampled with --temperature/--top-p)",
		Long: `Encodes --prompt with the model's tokenizer.json (or --tokenizer), or takes
token ids with --tokens, and generates up to --max-new-tokens tokens with a
key/value cache. --temperature 0 (the default) is greedy decoding; otherwise
tokens are sampled from softmax(logits/temperature) restricted to the --top-p
nucleus, reproducibly for a given --seed. Generation stops at an
end-of-sequence token from config.json or the tokenizer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (prompt == "") == (tokens == "") {
				return fmt.Errorf("give exactly one of --prompt and --tokens")
			}
			if maxNew < 1 {
				return fmt.Errorf("--max-new-tokens: want a positive integer, got %d", maxNew)
			}
			m, a, err := loadModelAdapter(modelDir, adapterDir)
			if err != nil {
				return err
			}
			var tok *tokenizer.Tokenizer
			if tokPath == "" {
				tokPath = filepath.Join(modelDir, "tokenizer.json")
				if _, err := os.Stat(tokPath); err != nil && tokens != "" {
					tokPath = ""
				}
			}
			if tokPath != "" {
				if tok, err = tokenizer.Load(tokPath); err != nil {
					return err
				}
			}
			var ids []int
			if tokens != "" {
				if ids, err = parseTokenList("--tokens", tokens); err != nil {
					return err
				}
			} else {
				ids = tok.Encode(prompt, true)
			}
			opts := model.GenerateOptions{MaxNewTokens: maxNew, Temperature: temperature, TopP: topP, Seed: seed, EOS: modelEOSIDs(m.Config, tok)}
			bar := modelProgressBar(cmd.ErrOrStderr(), !jsonOut, maxNew, "generating")
			if bar != nil {
				opts.OnToken = func(int) { bar.Add(1) }
			}
			out, err := m.Generate(a, ids, opts)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			res := map[string]any{"prompt_ids": ids, "ids": out}
			if tok != nil {
				res["text"] = tok.Decode(out, true)
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			if tok != nil {
				fmt.Fprintln(cmd.OutOrStdout(), res["text"])
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), strings.Trim(strings.Join(strings.Fields(fmt.Sprint(out)), ","), "[]"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "Hugging Face model directory (required)")
	f.StringVar(&adapterDir, "adapter", "", "PEFT LoRA adapter directory")
	f.StringVar(&prompt, "prompt", "", "prompt text")
	f.StringVar(&tokens, "tokens", "", "prompt as comma-separated token ids (instead of --prompt)")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer.json (default: the one in --model)")
	f.IntVar(&maxNew, "max-new-tokens", 32, "most tokens to generate")
	f.Float64Var(&temperature, "temperature", 0, "sampling temperature; 0 is greedy")
	f.Float64Var(&topP, "top-p", 1, "nucleus sampling probability mass in (0, 1]")
	f.Uint64Var(&seed, "seed", 0, "sampling seed")
	f.BoolVar(&jsonOut, "json", false, "print {\"prompt_ids\", \"ids\", \"text\"} as JSON")
	return cmd
}

// modelEOSIDs are the end-of-sequence ids of config.json, or the tokenizer's.
func modelEOSIDs(c *hf.Config, tok *tokenizer.Tokenizer) []int {
	if len(c.EOSTokenIDs) > 0 {
		return c.EOSTokenIDs
	}
	if tok != nil {
		if id, ok := tok.EOS(); ok {
			return []int{id}
		}
	}
	return nil
}

// modelProgressBar returns a progress bar on w when enabled and w is a terminal.
func modelProgressBar(w io.Writer, enabled bool, n int, desc string) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if !enabled || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions(n, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc), progressbar.OptionClearOnFinish())
}

func newModelMergeCmd() *cobra.Command {
	var modelDir, adapterDir, out string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "merge --model DIR --adapter DIR --out DIR",
		Short: "Merge a LoRA adapter into the base weights and write a Hugging Face checkpoint",
		Long: `Writes W' = W + scale·B·A for every adapted projection into a new checkpoint
in --out (same dtypes as the base; untouched tensors copied byte for byte;
config.json and tokenizer files copied), loadable without PEFT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct{ name, v string }{{"--model", modelDir}, {"--adapter", adapterDir}, {"--out", out}} {
				if f.v == "" {
					return fmt.Errorf("%s is required", f.name)
				}
			}
			if err := model.MergeCheckpoint(modelDir, adapterDir, out); err != nil {
				return err
			}
			digest, err := hf.CheckpointDigest(out)
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(out)
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"dir": abs, "digest": digest})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\ndigest %s\n", abs, digest)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "base model directory (required)")
	f.StringVar(&adapterDir, "adapter", "", "PEFT LoRA adapter directory (required)")
	f.StringVar(&out, "out", "", "output directory (required)")
	f.BoolVar(&jsonOut, "json", false, "print {\"dir\", \"digest\"} as JSON")
	return cmd
}
