package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	mistralTokenizer = "../../model/tokenizer/testdata/mistral_tokenizer.json.gz"
	trainedTokenizer = "../../model/tokenizer/testdata/trained_tokenizer.json"
)

func runTokenize(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newTokenizeCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestTokenizeText(t *testing.T) {
	// Ids from the JavaScript reference (model/tokenizer/testdata/mistral_expected.jsonl).
	out, err := runTokenize(t, "--tokenizer", mistralTokenizer, "--text", "Hello, world!", "--add-special", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		IDs []int `json:"ids"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if want := []int{1, 22557, 28725, 1526, 28808}; !slices.Equal(got.IDs, want) {
		t.Errorf("ids = %v, want %v", got.IDs, want)
	}
	out, err = runTokenize(t, "--tokenizer", mistralTokenizer, "--text", "Hello, world!")
	if err != nil {
		t.Fatal(err)
	}
	if out != "22557 28725 1526 28808\n" {
		t.Errorf("plain output = %q", out)
	}
	// The empty string is valid input.
	out, err = runTokenize(t, "--tokenizer", mistralTokenizer, "--text", "", "--json")
	if err != nil || !strings.Contains(out, `"ids": []`) {
		t.Errorf("empty text: %q, %v", out, err)
	}
}

func TestTokenizeJSONL(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	os.WriteFile(in, []byte("{\"text\":\"Hello world\"}\r\n{\"text\":\"a\\u00e9\", \"id\": 7}\n{\"text\":\"\"}"), 0o644)
	out, err := runTokenize(t, "--tokenizer", trainedTokenizer, "--input", in, "--json")
	if err != nil {
		t.Fatal(err)
	}
	want := "{\"ids\":[72,101,426,111,32,119,453,108,100]}\n{\"ids\":[97,455]}\n{\"ids\":[]}\n"
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}

	bad := []struct{ content, want string }{
		{"{\"text\":\"x\"}\n{\"txt\":\"y\"}\n", `line 2: missing string field "text"`},
		{"{\"text\":\"x\"}\n\n", `line 2: want a JSON object`},
		{"{\"text\":5}\n", `line 1: want a JSON object {"text": ...}: json: cannot unmarshal number`},
		{"{\"text\":\"x\"} {\"text\":\"y\"}\n", `line 1: more than one JSON value`},
		{"[1,2]\n", `line 1: want a JSON object`},
	}
	for _, b := range bad {
		os.WriteFile(in, []byte(b.content), 0o644)
		_, err := runTokenize(t, "--tokenizer", trainedTokenizer, "--input", in)
		if err == nil || !strings.Contains(err.Error(), in+": "+b.want) {
			t.Errorf("input %q: error %v, want %q", b.content, err, b.want)
		}
	}
}

func TestTokenizeSplitSpecial(t *testing.T) {
	out, err := runTokenize(t, "--tokenizer", mistralTokenizer, "--text", "</s>")
	if err != nil || out != "2\n" {
		t.Errorf("</s> = %q, %v; want the EOS id 2", out, err)
	}
	out, err = runTokenize(t, "--tokenizer", mistralTokenizer, "--text", "</s>", "--split-special")
	if err != nil || strings.Fields(out)[0] == "2" || len(strings.Fields(out)) < 3 {
		t.Errorf("</s> with --split-special = %q, %v; want its characters", out, err)
	}
}

func TestTokenizeFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--text", "x"},
		{"--tokenizer", trainedTokenizer},
		{"--tokenizer", trainedTokenizer, "--text", "x", "--input", "y.jsonl"},
	} {
		if _, err := runTokenize(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if _, err := runTokenize(t, "--tokenizer", "missing.json", "--text", "x"); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing tokenizer: %v", err)
	}
}

func TestTokenizerTrain(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "corpus.jsonl")
	var b strings.Builder
	for i := 0; i < 200; i++ {
		words := []string{"patient", "clinic", "dose", "blood", "pressure", "follow-up", "chart", "normal", "mg", "daily"}
		text := fmt.Sprintf("Record %d: %s %s, %s %d.%d; %s.", i, words[i%10], words[(i*3)%10], words[(i*7)%10], i*13%97, i%10, words[(i/10)%10])
		rec, _ := json.Marshal(map[string]any{"text": text, "id": i})
		b.Write(rec)
		b.WriteByte('\n')
	}
	os.WriteFile(in, []byte(b.String()), 0o644)
	out := filepath.Join(dir, "tokenizer.json")
	run := func(args ...string) (string, error) {
		cmd := newTokenizerTrainCmd()
		var o bytes.Buffer
		cmd.SetOut(&o)
		cmd.SetErr(&o)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return o.String(), err
	}
	res, err := run("--input", in, "--vocab", "300", "--out", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r tokenizerTrainResult
	if err := json.Unmarshal([]byte(res), &r); err != nil {
		t.Fatal(err)
	}
	if r.VocabSize != 300 || r.Records != 200 || r.BytesPerToken < 2 {
		t.Errorf("result %+v", r)
	}
	// The file works with fedtune tokenize and round-trips.
	got, err := runTokenize(t, "--tokenizer", out, "--text", "the patient", "--json")
	if err != nil || !strings.Contains(got, `"ids"`) {
		t.Fatalf("tokenize with trained file: %q, %v", got, err)
	}
	first, _ := os.ReadFile(out)
	if _, err := run("--input", in, "--vocab", "300", "--out", out); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(out)
	if !bytes.Equal(first, second) {
		t.Error("training is not deterministic")
	}
	if _, err := run("--input", in, "--vocab", "100000", "--out", out); err == nil || !strings.Contains(err.Error(), "corpus too small") {
		t.Errorf("oversized vocab: %v", err)
	}
	os.WriteFile(in, []byte("{\"text\": \"a\"}\n{\"tex\": 1}\n"), 0o644)
	if _, err := run("--input", in, "--out", out); err == nil || !strings.Contains(err.Error(), in+": line 2: missing string field") {
		t.Errorf("bad record: %v", err)
	}
}
