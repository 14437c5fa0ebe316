package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fedtune/fedtune/model/tokenizer"
)

func init() {
	rootCmd.AddCommand(newTokenizeCmd())
}

func newTokenizeCmd() *cobra.Command {
	var (
		tokPath, text, input string
		addSpecial, jsonOut  bool
		splitSpecial         bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize --tokenizer FILE (--text TEXT | --input FILE.jsonl)",
		Short: "Encode text to token ids with a Hugging Face tokenizer.json",
		Long: `Encodes --text, or every {"text": ...} record of the JSONL file --input, with
the tokenizer.json given by --tokenizer (gzip-compressed files are accepted).

With --text, prints the ids (--json: {"ids": [...]}). With --input, prints one
{"ids": [...]} line per record, in input order, so that a dataset can be
pre-tokenized; a malformed record stops the run with its line number.
--add-special adds the tokenizer's special tokens (for Llama, BOS).
--split-special encodes special tokens written in the text ("<|im_start|>")
as ordinary characters instead of control tokens; use it for untrusted text.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokPath == "" {
				return errors.New("--tokenizer is required")
			}
			textSet := cmd.Flags().Changed("text")
			if textSet == (input != "") {
				return errors.New("give exactly one of --text and --input")
			}
			tok, err := tokenizer.Load(tokPath)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			encode := tok.Encode
			if splitSpecial {
				encode = tok.EncodeSplitSpecial
			}
			if textSet {
				ids := encode(text, addSpecial)
				if jsonOut {
					return writeJSON(out, tokenizeRecord{IDs: ids})
				}
				_, err := fmt.Fprintln(out, formatIDs(ids))
				return err
			}
			f, err := os.Open(input)
			if err != nil {
				return err
			}
			defer f.Close()
			var bar *progressbar.ProgressBar
			if st, err := f.Stat(); err == nil && !jsonOut {
				if e, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(e.Fd())) {
					bar = progressbar.DefaultBytes(st.Size(), "tokenizing")
					defer bar.Finish()
				}
			}
			var r io.Reader = f
			if bar != nil {
				r = io.TeeReader(f, bar)
			}
			return tokenizeJSONL(out, r, input, encode, addSpecial)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer.json file (required)")
	f.StringVar(&text, "text", "", "text to encode")
	f.StringVar(&input, "input", "", `JSONL file of {"text": ...} records to encode`)
	f.BoolVar(&addSpecial, "add-special", false, "add the post-processor's special tokens (e.g. BOS)")
	f.BoolVar(&splitSpecial, "split-special", false, "encode special tokens in the text as ordinary characters")
	f.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

// tokenizeRecord is one output record: {"ids": [...]}.
type tokenizeRecord struct {
	IDs []int `json:"ids"`
}

func formatIDs(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, " ")
}

// tokenizeJSONL encodes every {"text": ...} line of r and writes one
// {"ids": [...]} line per record. name is used in error messages.
func tokenizeJSONL(w io.Writer, r io.Reader, name string, encode func(string, bool) []int, addSpecial bool) error {
	br := bufio.NewReaderSize(r, 1<<20)
	bw := bufio.NewWriterSize(w, 1<<20)
	for line := 1; ; line++ {
		raw, err := br.ReadBytes('\n')
		if len(raw) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		rec := bytes.TrimRight(raw, "\r\n")
		var in struct {
			Text *string `json:"text"`
		}
		dec := json.NewDecoder(bytes.NewReader(rec))
		if err := dec.Decode(&in); err != nil {
			return fmt.Errorf("%s: line %d: want a JSON object {\"text\": ...}: %v", name, line, err)
		}
		if dec.More() {
			return fmt.Errorf("%s: line %d: more than one JSON value on the line", name, line)
		}
		if in.Text == nil {
			return fmt.Errorf("%s: line %d: missing string field \"text\"", name, line)
		}
		enc, err := json.Marshal(tokenizeRecord{IDs: encode(*in.Text, addSpecial)})
		if err != nil {
			return err
		}
		bw.Write(enc)
		if err := bw.WriteByte('\n'); err != nil {
			return err
		}
	}
	return bw.Flush()
}
