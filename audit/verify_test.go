package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func mustVerify(t *testing.T, b *Bundle, opts VerifyOptions) *Result {
	t.Helper()
	r := Verify(b, opts)
	if !r.OK {
		t.Fatalf("valid bundle rejected: %v", r.Problems)
	}
	return r
}

func hasProblem(r *Result, entry int64, substr string) bool {
	for _, p := range r.Problems {
		if (entry == -2 || p.Entry == entry) && strings.Contains(p.String(), substr) {
			return true
		}
	}
	return false
}

func TestVerifyValid(t *testing.T) {
	l := newTestLog(t, 3, 2)
	l.federation()
	r := mustVerify(t, l.bundle(), VerifyOptions{Policy: l.parsedPolicy(), Epsilon: basicComposition})
	if r.Entries != len(l.lines) || r.TreeSize != uint64(len(l.lines)) || len(r.Cosigners) != 3 || r.PolicySource != "caller" {
		t.Errorf("result %+v", r)
	}
	if len(r.Ledger["hospital-a"]) != 2 || r.Ledger["hospital-a"][1].EpsilonRecomputed == nil || *r.Ledger["hospital-a"][1].EpsilonRecomputed != 1.75 {
		t.Errorf("ledger %+v", r.Ledger)
	}
	// Without a caller policy the bundle's own is used, and the result says so.
	r = mustVerify(t, l.bundle(), VerifyOptions{})
	if r.PolicySource != "bundle" || len(r.Notes) == 0 {
		t.Errorf("result %+v", r)
	}
}

// TestVerifyEveryByteFlip flips every byte of entries.jsonl and of every
// checkpoint (text, signature, cosignatures) and requires rejection.
func TestVerifyEveryByteFlip(t *testing.T) {
	l := newTestLog(t, 2, 2)
	l.federationN(1, 1)
	pol := l.parsedPolicy()
	base := l.bundle()
	mustVerify(t, base, VerifyOptions{Policy: pol, Epsilon: basicComposition})
	flips := 0
	for _, mask := range []byte{0x01, 0x80} {
		for i := 0; mask == 0x01 && i < len(base.Entries); i++ {
			b := l.bundle()
			b.Entries[i] ^= mask
			if r := Verify(b, VerifyOptions{Policy: pol, Epsilon: basicComposition}); r.OK || len(r.Problems) == 0 {
				t.Fatalf("entries.jsonl byte %d ^ %#x accepted", i, mask)
			}
			flips++
		}
		for c := range base.Checkpoints {
			for i := range base.Checkpoints[c].Data {
				b := l.bundle()
				b.Checkpoints[c].Data[i] ^= mask
				r := Verify(b, VerifyOptions{Policy: pol, Epsilon: basicComposition})
				if r.OK {
					t.Fatalf("%s byte %d ^ %#x accepted", b.Checkpoints[c].Name, i, mask)
				}
				if !hasProblem(r, -2, b.Checkpoints[c].Name) {
					t.Fatalf("%s byte %d ^ %#x: problems %v do not name the file", b.Checkpoints[c].Name, i, mask, r.Problems)
				}
				flips++
			}
		}
	}
	t.Logf("%d flips rejected", flips)
}

func TestVerifyEntryFlipNamesEntry(t *testing.T) {
	l := newTestLog(t, 1, 1)
	l.federation()
	pol := l.parsedPolicy()
	// Change the message of the last entry (index len-1) in a way that
	// keeps it valid JSON: only the Merkle root can tell.
	b := l.bundle()
	b.Entries = bytes.Replace(b.Entries, []byte("quarterly review"), []byte("quarterly reviev"), 1)
	r := Verify(b, VerifyOptions{Policy: pol})
	last := len(l.lines) - 1
	if r.OK || !hasProblem(r, int64(last), fmt.Sprintf("an entry in %d..%d was altered", last, last)) {
		t.Fatalf("problems %v", r.Problems)
	}
	// A non-canonical entry is named by index.
	b = l.bundle()
	b.Entries = bytes.Replace(b.Entries, []byte(`{"actor"`), []byte(`{ "actor"`), 1)
	r = Verify(b, VerifyOptions{Policy: pol})
	if r.OK || !hasProblem(r, 0, "canonical form") {
		t.Fatalf("problems %v", r.Problems)
	}
}

func TestVerifyTruncation(t *testing.T) {
	l := newTestLog(t, 1, 1)
	l.federationN(1, 1)
	pol := l.parsedPolicy()
	full := l.bundle()
	for cut := 1; cut < len(full.Entries); cut += 7 {
		b := l.bundle()
		b.Entries = b.Entries[:len(b.Entries)-cut]
		if r := Verify(b, VerifyOptions{Policy: pol}); r.OK {
			t.Fatalf("entries.jsonl cut by %d bytes accepted", cut)
		}
	}
	// Dropping the last line exactly.
	b := l.bundle()
	lines, _ := EntryLines(b.Entries)
	b.Entries = append(bytes.Join(lines[:len(lines)-1], []byte{'\n'}), '\n')
	if r := Verify(b, VerifyOptions{Policy: pol}); r.OK || !hasProblem(r, -2, "bundle has only") {
		t.Fatalf("dropped last entry: %v", r.Problems)
	}
	// Dropping the newest checkpoint leaves entries uncovered.
	b = l.bundle()
	b.Checkpoints = b.Checkpoints[:len(b.Checkpoints)-1]
	if r := Verify(b, VerifyOptions{Policy: pol}); r.OK || !hasProblem(r, -2, "not covered") {
		t.Fatalf("dropped newest checkpoint: %v", r.Problems)
	}
	// Truncated checkpoint files. Removing whole cosignature lines from an
	// older checkpoint leaves a valid, less-witnessed checkpoint; from the
	// newest it breaks the quorum.
	for c := range full.Checkpoints {
		data := full.Checkpoints[c].Data
		logSigEnd := bytes.Index(data, []byte("\n\n")) + 2
		logSigEnd += bytes.IndexByte(data[logSigEnd:], '\n') + 1
		for cut := 1; cut < len(data); cut++ {
			b := l.bundle()
			b.Checkpoints[c].Data = data[:len(data)-cut]
			kept := len(data) - cut
			if c < len(full.Checkpoints)-1 && kept >= logSigEnd && data[kept-1] == '\n' {
				continue
			}
			if r := Verify(b, VerifyOptions{Policy: pol}); r.OK {
				t.Fatalf("%s cut by %d accepted", b.Checkpoints[c].Name, cut)
			}
		}
	}
	// No entries and no checkpoints at all.
	if r := Verify(&Bundle{Policy: full.Policy}, VerifyOptions{Policy: pol}); r.OK {
		t.Fatal("empty bundle accepted")
	}
}

func TestVerifyReorder(t *testing.T) {
	l := newTestLog(t, 1, 1)
	l.federation()
	pol := l.parsedPolicy()
	lines, _ := EntryLines(l.bundle().Entries)
	for i := 0; i+1 < len(lines); i++ {
		sw := append([][]byte(nil), lines...)
		sw[i], sw[i+1] = sw[i+1], sw[i]
		b := l.bundle()
		b.Entries = append(bytes.Join(sw, []byte{'\n'}), '\n')
		r := Verify(b, VerifyOptions{Policy: pol})
		if r.OK || !hasProblem(r, -2, "reordered") {
			t.Fatalf("swap of entries %d and %d: %v", i, i+1, r.Problems)
		}
	}
}

func TestVerifyEquivocation(t *testing.T) {
	l := newTestLog(t, 1, 1)
	l.federation()
	pol := l.parsedPolicy()
	b := l.bundle()
	// The log signs a second history of the same size.
	fork := newTestLog(t, 0, 0)
	fork.signer = l.signer
	for i, line := range l.lines {
		if i == 3 {
			e, _ := ParseEntry(line)
			e.Time = FormatTime(testT0)
			line, _ = e.Marshal()
		}
		fork.lines = append(fork.lines, line)
		fork.tree.AppendLeaf(line)
	}
	note := fork.checkpoint(0)
	b.Checkpoints = append(b.Checkpoints, BundleFile{Name: "zz-fork.note", Data: note})
	r := Verify(b, VerifyOptions{Policy: pol})
	if r.OK || !hasProblem(r, -1, "equivocation") || !hasProblem(r, -1, "zz-fork.note") {
		t.Fatalf("problems %v", r.Problems)
	}
}

func TestVerifyQuorum(t *testing.T) {
	l := newTestLog(t, 3, 2)
	l.federation()
	// Re-sign the newest checkpoint with only one cosignature.
	l.cps = l.cps[:len(l.cps)-1]
	l.checkpoint(1)
	r := Verify(l.bundle(), VerifyOptions{Policy: l.parsedPolicy()})
	if r.OK || !hasProblem(r, -1, "quorum not met: 1 of the required 2") {
		t.Fatalf("problems %v", r.Problems)
	}
	// A cosignature by a witness outside the policy is refused.
	pp := l.parsedPolicy()
	pp.Witnesses = pp.Witnesses[1:]
	pp.Quorum = 0
	r = Verify(l.bundle(), VerifyOptions{Policy: pp})
	if r.OK || !hasProblem(r, -1, "unknown key witness-0.site") {
		t.Fatalf("problems %v", r.Problems)
	}
}

func TestVerifySiteSignatures(t *testing.T) {
	ctx := context.Background()
	l := newTestLog(t, 0, 0)
	l.federation()
	// The aggregator (who holds the log key) forges a spend for hospital-a.
	e := baseEntry(DPSpendKind, 99)
	e.Round = u64(3)
	e.Actor = Actor{ID: "site:hospital-a", Auth: "signature"}
	e.DP = &DPSpend{Site: "hospital-a", Events: pureEvents(0.1), Delta: 1e-5, EpsilonCumulative: 1.85, EpsilonCap: 4}
	if err := e.SignAsSite(ctx, seededSigner("aggregator")); err != nil {
		t.Fatal(err)
	}
	forged := l.append(e)
	// A spend of a site that never enrolled.
	e2 := baseEntry(DPSpendKind, 100)
	e2.Round = u64(3)
	e2.Actor = Actor{ID: "site:ghost", Auth: "signature"}
	d2 := *e.DP
	d2.Site = "ghost"
	e2.DP = &d2
	if err := e2.SignAsSite(ctx, seededSigner("ghost")); err != nil {
		t.Fatal(err)
	}
	ghost := l.append(e2)
	l.checkpoint(0)
	r := Verify(l.bundle(), VerifyOptions{Policy: l.parsedPolicy(), Epsilon: basicComposition})
	if r.OK || !hasProblem(r, int64(forged), "site_signature of site hospital-a does not verify") || !hasProblem(r, int64(ghost), "has not enrolled") {
		t.Fatalf("problems %v", r.Problems)
	}
}

func TestVerifyEpsilon(t *testing.T) {
	ctx := context.Background()
	site := seededSigner("site a")
	spend := func(l *testLog, i int, events json.RawMessage, cum, cap float64) uint64 {
		e := baseEntry(DPSpendKind, i)
		e.Round = u64(uint64(i))
		e.Actor = Actor{ID: "site:hospital-a", Auth: "signature"}
		e.DP = &DPSpend{Site: "hospital-a", Events: events, Delta: 1e-5, EpsilonCumulative: cum, EpsilonCap: cap}
		if err := e.SignAsSite(ctx, site); err != nil {
			t.Fatal(err)
		}
		return l.append(e)
	}
	l := newTestLog(t, 0, 0)
	en := baseEntry(SiteEnrolled, 0)
	en.Site = &Site{ID: "hospital-a", PublicKey: b64(site.Public().(ed25519.PublicKey))}
	l.append(en)
	spend(l, 1, pureEvents(1), 1, 2)
	bad := spend(l, 2, pureEvents(0.5), 1.4, 2)      // recorded 1.4, true 1.5
	breach := spend(l, 3, pureEvents(0.6), 2.1, 2)   // over the cap
	drop := spend(l, 4, pureEvents(0), 2.0000001, 3) // lower than before
	l.checkpoint(0)
	r := Verify(l.bundle(), VerifyOptions{Policy: l.parsedPolicy(), Epsilon: basicComposition})
	if !hasProblem(r, int64(bad), "recorded cumulative ε 1.4, recomputed 1.5") ||
		!hasProblem(r, int64(breach), "exceeds its cap 2") ||
		!hasProblem(r, int64(drop), "decreased") {
		t.Fatalf("problems %v", r.Problems)
	}
	if hasProblem(r, 1, "") {
		t.Fatalf("entry 1 flagged: %v", r.Problems)
	}
	// Within the relative tolerance is fine.
	l2 := newTestLog(t, 0, 0)
	l2.append(en)
	spend(l2, 1, pureEvents(1), 1+1e-9, 2)
	l2.checkpoint(0)
	mustVerify(t, l2.bundle(), VerifyOptions{Policy: l2.parsedPolicy(), Epsilon: basicComposition})
	// Without an accountant the result says ε was not recomputed.
	r = mustVerify(t, l2.bundle(), VerifyOptions{Policy: l2.parsedPolicy()})
	if !strings.Contains(strings.Join(r.Notes, "\n"), "not recomputed") {
		t.Fatalf("notes %v", r.Notes)
	}
}
