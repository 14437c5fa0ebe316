package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/dp/accounting"
)

func runAudit(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newAuditCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.ExecuteContext(context.Background())
	return out.String() + errOut.String(), err
}

type testSiteSigner struct{ k ed25519.PrivateKey }

func (s testSiteSigner) Public() crypto.PublicKey { return s.k.Public() }
func (s testSiteSigner) Sign(_ context.Context, m []byte) ([]byte, error) {
	return ed25519.Sign(s.k, m), nil
}

func TestAuditCommands(t *testing.T) {
	t.Setenv("FEDTUNE_PASSPHRASE", "audit cli test passphrase")
	os.Unsetenv("FEDTUNE_PASSPHRASE_FILE")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "audit")
	if out, err := runAudit(t, "", "init", "--dir", dir, "--federation", "fed-test", "--json"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if _, err := runAudit(t, "", "init", "--dir", dir); err == nil {
		t.Fatal("second init succeeded")
	}
	appendJSON := func(args ...string) uint64 {
		t.Helper()
		out, err := runAudit(t, "", append([]string{"append", "--dir", dir, "--json"}, args...)...)
		if err != nil {
			t.Fatalf("append %v: %v\n%s", args, err, out)
		}
		var r struct{ Index, TreeSize uint64 }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("append output %q: %v", out, err)
		}
		return r.Index
	}
	// A site enrols, then signs its own spend; the aggregator appends both.
	seed := sha256.Sum256([]byte("cli test site"))
	site := testSiteSigner{ed25519.NewKeyFromSeed(seed[:])}
	now := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	enrol := audit.Entry{Schema: audit.SchemaVersion, Kind: audit.SiteEnrolled, Federation: "fed-test",
		Actor: audit.Actor{ID: "service:aggregator", Auth: "mtls"}, Time: audit.FormatTime(now), Outcome: audit.OutcomeOK,
		Site: &audit.Site{ID: "hospital-a", PublicKey: base64.StdEncoding.EncodeToString(site.Public().(ed25519.PublicKey))}}
	ej, _ := json.Marshal(enrol)
	ef := filepath.Join(tmp, "enrol.json")
	os.WriteFile(ef, ej, 0o644)
	if i := appendJSON("--entry", ef); i != 0 {
		t.Fatalf("enrol index %d", i)
	}
	ev, _ := accounting.MarshalEvent(accounting.DPSGD(0.01, 1.1, 20))
	eps, err := accounting.EpsilonFromEventsJSON([]json.RawMessage{ev}, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	r1 := uint64(1)
	spend := audit.Entry{Schema: audit.SchemaVersion, Kind: audit.DPSpendKind, Federation: "fed-test", Round: &r1,
		Actor: audit.Actor{ID: "site:hospital-a", Auth: "signature"}, Time: audit.FormatTime(now.Add(time.Minute)), Outcome: audit.OutcomeOK,
		DP: &audit.DPSpend{Site: "hospital-a", Events: ev, Delta: 1e-5, EpsilonCumulative: eps, EpsilonCap: 8}}
	if err := spend.SignAsSite(context.Background(), site); err != nil {
		t.Fatal(err)
	}
	sj, _ := json.Marshal(spend)
	out, err := runAudit(t, string(sj), "append", "--dir", dir, "--entry", "-")
	if err != nil || !strings.Contains(out, "appended entry 1") {
		t.Fatalf("append dp.spend: %v\n%s", err, out)
	}
	appendJSON("--kind", "model.published", "--actor", "service:aggregator", "--object", "adapter:v1:sha256:"+strings.Repeat("0f", 32))
	appendJSON("--kind", "review.performed", "--actor", "user:officer-1", "--message", "=HYPERLINK(\"x\") checked ledger <b>", "--ref", "1")
	// Bad input is refused with a precise error and nothing is appended.
	if out, err := runAudit(t, "", "append", "--dir", dir, "--kind", "review.performed", "--actor", "alice@example.com"); err == nil || !strings.Contains(out+err.Error(), "actor.id") {
		t.Fatalf("bad actor: %v %s", err, out)
	}
	if out, err := runAudit(t, "", "append", "--dir", dir, "--kind", "no.such.kind", "--actor", "user:x"); err == nil || !strings.Contains(err.Error(), "unknown kind") {
		t.Fatalf("bad kind: %v %s", err, out)
	}

	// Proofs, checked here against the roots the bundle will carry.
	out, err = runAudit(t, "", "prove", "--dir", dir, "--index", "1", "--size", "3", "--json")
	if err != nil {
		t.Fatalf("prove: %v\n%s", err, out)
	}
	var pr struct {
		TreeSize       uint64   `json:"tree_size"`
		LeafHash       string   `json:"leaf_hash"`
		InclusionProof []string `json:"inclusion_proof"`
	}
	if err := json.Unmarshal([]byte(out), &pr); err != nil || pr.TreeSize != 3 || len(pr.InclusionProof) != 2 {
		t.Fatalf("prove output %s: %v", out, err)
	}
	if out, err := runAudit(t, "", "prove", "--dir", dir, "--from", "1", "--json"); err != nil || !strings.Contains(out, "consistency_proof") {
		t.Fatalf("prove --from: %v\n%s", err, out)
	}
	if _, err := runAudit(t, "", "prove", "--dir", dir, "--from", "0"); err == nil {
		t.Fatal("consistency proof from size 0 succeeded")
	}
	if _, err := runAudit(t, "", "prove", "--dir", dir, "--index", "99"); err == nil {
		t.Fatal("proof for a missing entry succeeded")
	}

	bundle := filepath.Join(tmp, "bundle")
	if out, err := runAudit(t, "", "export", "--dir", dir, "--out", bundle); err != nil || !strings.Contains(out, "exported 5 entries") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	policy := filepath.Join(dir, "policy.json")
	out, err = runAudit(t, "", "verify", bundle, "--policy", policy, "--json")
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	var res audit.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Entries != 5 || res.PolicySource != "caller" || len(res.Ledger["hospital-a"]) != 1 || res.Ledger["hospital-a"][0].EpsilonRecomputed == nil {
		t.Fatalf("verify result %s", out)
	}

	for _, f := range []string{"md", "html", "csv"} {
		out, err := runAudit(t, "", "report", bundle, "--policy", policy, "--format", f)
		if err != nil {
			t.Fatalf("report %s: %v", f, err)
		}
		switch f {
		case "md":
			if !strings.Contains(out, "**VERIFIED**") || !strings.Contains(out, "| hospital-a | 1 | 1 |") {
				t.Errorf("markdown report:\n%s", out)
			}
		case "html":
			if !strings.Contains(out, "<svg") || !strings.Contains(out, "<polyline") || strings.Contains(out, "<b>") || !strings.Contains(out, "&lt;b&gt;") {
				t.Errorf("html report lacks the chart or escaping:\n%s", out)
			}
		case "csv":
			rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil || len(rows) != 6 {
				t.Fatalf("csv: %d rows, %v", len(rows), err)
			}
			if rows[4][14] != `'=HYPERLINK("x") checked ledger <b>` {
				t.Errorf("csv formula cell not neutralised: %q", rows[4][14])
			}
		}
	}
	if _, err := runAudit(t, "", "report", bundle, "--format", "pdf"); err == nil {
		t.Error("unknown report format accepted")
	}

	// Tampering: the site's spend is understated after the fact.
	data, _ := os.ReadFile(filepath.Join(bundle, "entries.jsonl"))
	os.WriteFile(filepath.Join(bundle, "entries.jsonl"), bytes.Replace(data, []byte(`"epsilon_cap":8`), []byte(`"epsilon_cap":9`), 1), 0o644)
	out, err = runAudit(t, "", "verify", bundle, "--policy", policy)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("verify of tampered bundle: %v\n%s", err, out)
	}
	if !strings.Contains(out, "FAILED") || !strings.Contains(out, "entry 1: site_signature of site hospital-a does not verify") {
		t.Fatalf("verify output does not name the problem:\n%s", out)
	}
}

// TestAuditBench runs the benchmark small; FEDTUNE_LONG_BENCH=1 runs the
// full size (100 000 verified entries) and logs the ratios.
func TestAuditBench(t *testing.T) {
	appendN, batch, verifyN := 300, 100, 3000
	if os.Getenv("FEDTUNE_LONG_BENCH") == "1" {
		appendN, batch, verifyN = 20000, 1000, 100000
	}
	res, err := runAuditBench(context.Background(), appendN, batch, verifyN, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if res.AppendRatio <= 0 || res.VerifyRatio <= 0 || res.VerifyCheckpoints != (verifyN+999)/1000 {
		t.Fatalf("result %+v", res)
	}
	t.Logf("append %d entries, batch %d: %.3fs vs SHA-256 %.6fs: ratio %.5f; verify %d entries: %.3fs vs SHA-256 %.6fs: ratio %.5f",
		res.AppendEntries, res.AppendBatch, res.AppendSeconds, res.AppendSHA256Secs, res.AppendRatio,
		res.VerifyEntries, res.VerifySeconds, res.VerifySHA256Secs, res.VerifyRatio)
}
