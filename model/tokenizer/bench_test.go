package tokenizer

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"
)

// naiveEncode is a direct transcription of byte-level BPE as in GPT-2's
// encoder.py: pre-tokenize, map bytes to characters, then repeatedly merge
// the lowest-ranked pair of strings. It ignores added tokens and is the
// baseline of the encode benchmark and an independent check of Encode.
type naiveBPE struct {
	ranks map[[2]string]int
	vocab map[string]int
	split *splitPattern
}

func newNaive(t testing.TB, tok *Tokenizer) *naiveBPE {
	n := &naiveBPE{ranks: make(map[[2]string]int), vocab: make(map[string]int)}
	tok.model.merges.each(func(k uint64, m merge) {
		a, b := int(k>>32), int(uint32(k))
		n.ranks[[2]string{tok.tokens[a], tok.tokens[b]}] = int(m.rank)
	})
	for s, id := range tok.model.vocab {
		n.vocab[s] = int(id)
	}
	seq, ok := tok.preTok.(preTokSeq)
	if !ok {
		t.Fatalf("pre-tokenizer is %T, want a sequence", tok.preTok)
	}
	n.split = seq[0].(*splitPreTok).re
	return n
}

func (n *naiveBPE) encode(text string) []int {
	var ids []int
	for _, piece := range n.split.split(nil, norm.NFC.String(text)) {
		var word []string
		for _, r := range byteLevelString(piece) {
			word = append(word, string(r))
		}
		for len(word) > 1 {
			best, bestRank := -1, 0
			for i := 0; i+1 < len(word); i++ {
				if r, ok := n.ranks[[2]string{word[i], word[i+1]}]; ok && (best < 0 || r < bestRank) {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			word = slices.Replace(word, best, best+2, word[best]+word[best+1])
		}
		for _, w := range word {
			ids = append(ids, n.vocab[w])
		}
	}
	return ids
}

// mixedText is the Qwen3 reference corpus without special tokens: prose in
// many scripts, numbers, whitespace runs, emoji and code.
func mixedText(t testing.TB) string {
	var b strings.Builder
	for _, e := range readExpectedTB(t, "qwen3") {
		if strings.Contains(e.Text, "<|") || strings.Contains(e.Text, "think>") || strings.Contains(e.Text, "tool_call>") {
			continue
		}
		b.WriteString(e.Text)
		b.WriteString("\n")
	}
	return b.String()
}

func TestNaiveAgrees(t *testing.T) {
	tok := fixture(t, "qwen3")
	n := newNaive(t, tok)
	text := mixedText(t)
	for _, line := range strings.Split(text, "\n") {
		if got, want := tok.Encode(line, false), n.encode(line); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, naive %v", line, got, want)
		}
	}
}

// BenchmarkEncodeQwen3 reports encode throughput (MB/s of UTF-8 input) on
// the mixed text: warm (word cache filled), cold (cache cleared before every
// pass) and the naive baseline, all in the same run.
func BenchmarkEncodeQwen3(b *testing.B) {
	tok := fixture(b, "qwen3")
	text := mixedText(b)
	b.Run("warm", func(b *testing.B) {
		tok.Encode(text, false)
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tok.Encode(text, false)
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tok.model.cacheMu.Lock()
			clear(tok.model.cache)
			tok.model.cacheMu.Unlock()
			tok.Encode(text, false)
		}
	})
	b.Run("naive-baseline", func(b *testing.B) {
		n := newNaive(b, tok)
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			n.encode(text)
		}
	})
}

func BenchmarkLoadQwen3(b *testing.B) {
	for b.Loop() {
		if _, err := Load("testdata/qwen3_tokenizer.json.gz"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodeThroughput measures warm, cold and naive encoding interleaved
// round by round, so that load from other processes hits all three alike,
// and logs MB/s and the ratios to the naive baseline. It runs only with
// FEDTUNE_TOKENIZER_BENCH=1 (go test -run EncodeThroughput -v).
func TestEncodeThroughput(t *testing.T) {
	if os.Getenv("FEDTUNE_TOKENIZER_BENCH") == "" {
		t.Skip("set FEDTUNE_TOKENIZER_BENCH=1 to run")
	}
	tok := fixture(t, "qwen3")
	n := newNaive(t, tok)
	text := mixedText(t)
	tok.Encode(text, false)
	// Wall time, and process CPU time (less sensitive to other load on the
	// machine; includes the garbage collector's).
	var warm, cold, naive, warmCPU, coldCPU, naiveCPU time.Duration
	const rounds = 8
	for r := 0; r < rounds; r++ {
		t0, c0 := time.Now(), cpuTime()
		for k := 0; k < 4; k++ {
			tok.Encode(text, false)
		}
		warm += time.Since(t0) / 4
		warmCPU += (cpuTime() - c0) / 4
		tok.model.cacheMu.Lock()
		clear(tok.model.cache)
		tok.model.cacheMu.Unlock()
		t0, c0 = time.Now(), cpuTime()
		tok.Encode(text, false)
		cold += time.Since(t0)
		coldCPU += cpuTime() - c0
		t0, c0 = time.Now(), cpuTime()
		n.encode(text)
		naive += time.Since(t0)
		naiveCPU += cpuTime() - c0
	}
	mbps := func(d time.Duration) float64 { return float64(len(text)*rounds) / d.Seconds() / 1e6 }
	t.Logf("Qwen3, %d bytes of mixed text, %d rounds; MB/s of wall time | of CPU time", len(text), rounds)
	t.Logf("warm  %6.2f | %6.2f MB/s  (%.1fx naive)", mbps(warm), mbps(warmCPU), float64(naive)/float64(warm))
	t.Logf("cold  %6.2f | %6.2f MB/s  (%.1fx naive)", mbps(cold), mbps(coldCPU), float64(naive)/float64(cold))
	t.Logf("naive %6.2f | %6.2f MB/s", mbps(naive), mbps(naiveCPU))
}
