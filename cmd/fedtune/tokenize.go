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

	"github.com/fedtune/fedtune/internal/atomicfile"
	"github.com/fedtune/fedtune/model/tokenizer"
)

func init() {
	rootCmd.AddCommand(newTokenizeCmd())
	tokenizerCmd := &cobra.Command{
		Use:   "tokenizer",
		Short: "Make tokenizer.json files",
	}
	tokenizerCmd.AddCommand(newTokenizerTrainCmd())
	rootCmd.AddCommand(tokenizerCmd)
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
		text, err := parseTokenizeRecord(bytes.TrimRight(raw, "\r\n"))
		if err != nil {
			return fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		enc, err := json.Marshal(tokenizeRecord{IDs: encode(text, addSpecial)})
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

func newTokenizerTrainCmd() *cobra.Command {
	var (
		input, out string
		vocab      int
		jsonOut    bool
	)
	cmd := &cobra.Command{
		Use:   "train --input FILE.jsonl --vocab N --out tokenizer.json",
		Short: "Learn a small byte-level BPE tokenizer from {\"text\": ...} records",
		Long: `Learns a GPT-2-style byte-level BPE tokenizer with exactly --vocab tokens
(256 byte tokens, --vocab - 257 merges and <|endoftext|>) from the "text"
fields of a JSONL file, and writes it as tokenizer.json, ready for
"fedtune model init --tokenizer". The result depends only on the input and
--vocab. Meant for tests and demos with synthetic data; real models ship their
own tokenizer.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" || out == "" {
				return errors.New("--input and --out are required")
			}
			f, err := os.Open(input)
			if err != nil {
				return err
			}
			defer f.Close()
			var corpus []string
			n := 0
			err = readTokenizerCorpus(f, input, func(text string) {
				corpus = append(corpus, text)
				n += len(text)
			})
			if err != nil {
				return err
			}
			data, err := tokenizer.TrainByteLevelBPE(corpus, vocab)
			if err != nil {
				return err
			}
			tok, err := tokenizer.Parse(data)
			if err != nil {
				return fmt.Errorf("trained tokenizer does not load: %w", err)
			}
			tokens := 0
			for _, t := range corpus {
				tokens += len(tok.Encode(t, false))
			}
			if err := atomicfile.Write(out, data, 0o644); err != nil {
				return err
			}
			res := tokenizerTrainResult{Out: out, VocabSize: tok.VocabSize(), Records: len(corpus), Bytes: n, Tokens: tokens}
			if tokens > 0 {
				res.BytesPerToken = float64(n) / float64(tokens)
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d tokens; %d records, %d bytes -> %d tokens (%.2f bytes/token)\n",
				out, res.VocabSize, res.Records, res.Bytes, res.Tokens, res.BytesPerToken)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&input, "input", "", `JSONL file of {"text": ...} records (required)`)
	f.IntVar(&vocab, "vocab", 1024, "vocabulary size, at least 257")
	f.StringVar(&out, "out", "", "tokenizer.json to write (required)")
	f.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

type tokenizerTrainResult struct {
	Out           string  `json:"out"`
	VocabSize     int     `json:"vocab_size"`
	Records       int     `json:"records"`
	Bytes         int     `json:"bytes"`
	Tokens        int     `json:"tokens"`
	BytesPerToken float64 `json:"bytes_per_token"`
}

// readTokenizerCorpus calls f with the "text" field of every line of a JSONL
// file; name is used in error messages.
func readTokenizerCorpus(r io.Reader, name string, f func(text string)) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for line := 1; ; line++ {
		raw, err := br.ReadBytes('\n')
		if len(raw) == 0 && err == io.EOF {
			return nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		text, err := parseTokenizeRecord(bytes.TrimRight(raw, "\r\n"))
		if err != nil {
			return fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		f(text)
	}
}

// parseTokenizeRecord decodes one {"text": ...} JSON object.
func parseTokenizeRecord(rec []byte) (string, error) {
	var in struct {
		Text *string `json:"text"`
	}
	dec := json.NewDecoder(bytes.NewReader(rec))
	if err := dec.Decode(&in); err != nil {
		return "", fmt.Errorf("want a JSON object {\"text\": ...}: %v", err)
	}
	if dec.More() {
		return "", errors.New("more than one JSON value on the line")
	}
	if in.Text == nil {
		return "", errors.New(`missing string field "text"`)
	}
	return *in.Text, nil
}
