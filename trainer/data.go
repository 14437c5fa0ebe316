package trainer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fedtune/fedtune/model"
)

// Tokenizer is what data loading needs from a tokenizer
// (*tokenizer.Tokenizer satisfies it).
type Tokenizer interface {
	// EncodeSplitSpecial encodes text with special-token strings in it
	// treated as plain text: a record is data, and "</s>" written in a
	// clinical note must not become a control token.
	EncodeSplitSpecial(text string, addSpecial bool) []int
	EOS() (int, bool)
}

// record is one JSONL line: exactly one of the three shapes.
type record struct {
	Text       *string `json:"text"`
	Prompt     *string `json:"prompt"`
	Completion *string `json:"completion"`
	InputIDs   []int   `json:"input_ids"`
	Labels     []int   `json:"labels"`
}

// DataError is bad input at a line of a data file.
type DataError struct {
	File string
	Line int
	Msg  string
}

func (e *DataError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Dataset is a tokenised data file.
type Dataset struct {
	Path      string
	SHA256    string // of the file's bytes
	Examples  []model.Example
	Truncated int // records cut to MaxLength
}

// LoadOptions control tokenisation.
type LoadOptions struct {
	// MaxLength is the longest example in tokens; longer records are cut
	// (and counted) or, with Strict, rejected.
	MaxLength int
	Strict    bool
	// Vocab is the model's vocabulary size: token ids must be below it.
	Vocab int
}

// CountRecords returns the number of non-blank lines of a JSONL file (blank
// as LoadJSONL sees it) and the SHA-256 of its bytes, without parsing the
// records.
func CountRecords(path string) (n int, sum string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	r := bufio.NewReaderSize(io.TeeReader(f, h), 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, "", err
		}
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// LoadJSONL reads and tokenises a JSONL data file. Each non-blank line is
// {"text": ...}, {"prompt": ..., "completion": ...} (loss on the completion
// only) or {"input_ids": [...], "labels": [...]} (labels optional, -100
// ignored). tok may be nil when every record is pre-tokenised.
func LoadJSONL(path string, tok Tokenizer, o LoadOptions) (*Dataset, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	ds := &Dataset{Path: path, SHA256: hex.EncodeToString(sum[:])}
	if o.MaxLength < 2 {
		return nil, fmt.Errorf("max length must be ≥ 2, got %d", o.MaxLength)
	}
	lines := bytes.Split(raw, []byte("\n"))
	for i, ln := range lines {
		n := i + 1
		if len(bytes.TrimSpace(ln)) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return &DataError{File: path, Line: n, Msg: fmt.Sprintf(format, args...)}
		}
		var rec record
		dec := json.NewDecoder(bytes.NewReader(ln))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return nil, bad("malformed JSON at byte %d: %v", se.Offset, err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, bad("malformed JSON: the line ends inside a value")
			}
			return nil, bad("%v (want {\"text\"}, {\"prompt\",\"completion\"} or {\"input_ids\",\"labels\"})", err)
		}
		if dec.More() {
			return nil, bad("more than one JSON value on the line")
		}
		var ex model.Example
		switch {
		case rec.Text != nil && rec.Prompt == nil && rec.Completion == nil && rec.InputIDs == nil && rec.Labels == nil:
			if tok == nil {
				return nil, bad("text record but no tokenizer")
			}
			ids := tok.EncodeSplitSpecial(*rec.Text, true)
			if eos, ok := tok.EOS(); ok {
				ids = append(ids, eos)
			}
			ex = model.Example{InputIDs: ids, Labels: append([]int(nil), ids...)}
		case rec.Prompt != nil && rec.Completion != nil && rec.Text == nil && rec.InputIDs == nil && rec.Labels == nil:
			if tok == nil {
				return nil, bad("prompt/completion record but no tokenizer")
			}
			p := tok.EncodeSplitSpecial(*rec.Prompt, true)
			c := tok.EncodeSplitSpecial(*rec.Completion, false)
			if eos, ok := tok.EOS(); ok {
				c = append(c, eos)
			}
			ex.InputIDs = append(append([]int(nil), p...), c...)
			ex.Labels = make([]int, len(ex.InputIDs))
			for j := range p {
				ex.Labels[j] = -100
			}
			copy(ex.Labels[len(p):], c)
		case rec.InputIDs != nil && rec.Text == nil && rec.Prompt == nil && rec.Completion == nil:
			ex.InputIDs = rec.InputIDs
			ex.Labels = rec.Labels
			if ex.Labels == nil {
				ex.Labels = append([]int(nil), rec.InputIDs...)
			}
			if len(ex.Labels) != len(ex.InputIDs) {
				return nil, bad("labels has %d entries, input_ids has %d", len(ex.Labels), len(ex.InputIDs))
			}
		case rec.Prompt != nil || rec.Completion != nil:
			return nil, bad("a prompt record needs both \"prompt\" and \"completion\" and nothing else")
		default:
			return nil, bad("want exactly one of {\"text\"}, {\"prompt\",\"completion\"} or {\"input_ids\",\"labels\"}")
		}
		for j, id := range ex.InputIDs {
			if id < 0 || (o.Vocab > 0 && id >= o.Vocab) {
				return nil, bad("input_ids[%d] = %d outside the vocabulary [0, %d)", j, id, o.Vocab)
			}
		}
		for j, id := range ex.Labels {
			if id != -100 && (id < 0 || (o.Vocab > 0 && id >= o.Vocab)) {
				return nil, bad("labels[%d] = %d outside the vocabulary [0, %d) and not -100", j, id, o.Vocab)
			}
		}
		if len(ex.InputIDs) > o.MaxLength {
			if o.Strict {
				return nil, bad("record has %d tokens, more than the maximum length %d (--strict)", len(ex.InputIDs), o.MaxLength)
			}
			ex.InputIDs, ex.Labels = ex.InputIDs[:o.MaxLength], ex.Labels[:o.MaxLength]
			ds.Truncated++
		}
		if len(ex.InputIDs) < 2 {
			return nil, bad("record has %d tokens; at least 2 are needed", len(ex.InputIDs))
		}
		targets := 0
		for _, l := range ex.Labels[1:] {
			if l != -100 {
				targets++
			}
		}
		if targets == 0 {
			return nil, bad("record has no target tokens (needs at least 2 tokens with a label after the first)")
		}
		ds.Examples = append(ds.Examples, ex)
	}
	if len(ds.Examples) == 0 {
		return nil, &DataError{File: path, Msg: "no records (empty dataset)"}
	}
	return ds, nil
}
