package report

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/audit/merkle"
)

type edSigner struct{ k ed25519.PrivateKey }

func (s edSigner) Public() crypto.PublicKey { return s.k.Public() }
func (s edSigner) Sign(_ context.Context, m []byte) ([]byte, error) {
	return ed25519.Sign(s.k, m), nil
}

func key(label string) edSigner {
	seed := sha256.Sum256([]byte(label))
	return edSigner{ed25519.NewKeyFromSeed(seed[:])}
}

// fixture verifies a small federation's bundle: one site, two rounds (the
// second aborted), a refusal, a denial, a published model.
func fixture(t *testing.T) *audit.Result {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	site := key("site")
	var lines [][]byte
	var tree merkle.Tree
	n := 0
	add := func(e *audit.Entry) {
		n++
		e.Schema, e.Federation, e.Time = audit.SchemaVersion, "fed-r", audit.FormatTime(t0.Add(time.Duration(n)*time.Minute))
		if e.Outcome == "" {
			e.Outcome = audit.OutcomeOK
		}
		if e.Actor.ID == "" {
			e.Actor = audit.Actor{ID: "service:aggregator", Auth: "local"}
		}
		d, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, d)
		tree.AppendLeaf(d)
	}
	r := func(v uint64) *uint64 { return &v }
	add(&audit.Entry{Kind: audit.SiteEnrolled, Site: &audit.Site{ID: "clinic-1", PublicKey: base64.StdEncoding.EncodeToString(site.Public().(ed25519.PublicKey))}})
	add(&audit.Entry{Kind: audit.RoundOpened, Round: r(1)})
	spend := &audit.Entry{Kind: audit.DPSpendKind, Round: r(1), Actor: audit.Actor{ID: "site:clinic-1", Auth: "signature"},
		DP: &audit.DPSpend{Site: "clinic-1", Events: json.RawMessage(`{"pure":1.5}`), Delta: 1e-5, EpsilonCumulative: 1.5, EpsilonCap: 3}}
	n++
	spend.Schema, spend.Federation, spend.Time, spend.Outcome = audit.SchemaVersion, "fed-r", audit.FormatTime(t0.Add(time.Duration(n)*time.Minute)), audit.OutcomeOK
	if err := spend.SignAsSite(ctx, site); err != nil {
		t.Fatal(err)
	}
	n--
	add(spend)
	add(&audit.Entry{Kind: audit.AggregateProduced, Round: r(1), Objects: []audit.Object{{Type: "aggregate", ID: "round-1", Digest: "sha256:" + strings.Repeat("1", 64)}}})
	add(&audit.Entry{Kind: audit.RoundClosed, Round: r(1)})
	add(&audit.Entry{Kind: audit.ModelPublished, Objects: []audit.Object{{Type: "adapter", ID: "v1", Digest: "sha256:" + strings.Repeat("2", 64)}}})
	add(&audit.Entry{Kind: audit.RoundOpened, Round: r(2)})
	add(&audit.Entry{Kind: audit.RoundRefused, Round: r(2), Actor: audit.Actor{ID: "site:clinic-1", Auth: "mtls"}, Outcome: audit.OutcomeRefused, Reason: "ε cap would be exceeded"})
	add(&audit.Entry{Kind: audit.RoundAborted, Round: r(2), Outcome: audit.OutcomeAborted, Reason: "too_few_sites"})
	add(&audit.Entry{Kind: audit.AccessDenied, Actor: audit.Actor{ID: "user:visitor-3", Auth: "token"}, Outcome: audit.OutcomeDenied, Reason: "<script>alert(1)</script>"})
	ns, err := audit.NewNoteSigner(ctx, "fedtune/report-test", key("log"))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := tree.Root(tree.Size())
	text := audit.Checkpoint{Origin: ns.Name(), Size: tree.Size(), Root: root}.Marshal()
	sig, _ := ns.Sign(text)
	note := audit.Note{Text: text, Sigs: []audit.NoteSignature{{Name: ns.Name(), KeyHash: ns.KeyHash(), Sig: sig}}}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	pol, _ := audit.Policy{Log: ns.VerifierKey().Encoded, Witnesses: []string{}}.Parse()
	b := &audit.Bundle{Entries: buf.Bytes(), Checkpoints: []audit.BundleFile{{Name: audit.CheckpointFileName(tree.Size()), Data: note.Marshal()}}}
	res := audit.Verify(b, audit.VerifyOptions{Policy: pol})
	if !res.OK {
		t.Fatalf("fixture does not verify: %v", res.Problems)
	}
	return res
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, "md", fixture(t)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"**VERIFIED** — 10 entries",
		"| 1 | 2026-11-28T09:02:00Z | 2026-11-28T09:05:00Z | closed | clinic-1 | — | 0 | aggregate round-1 (sha256:1111",
		"| 2 | 2026-11-28T09:07:00Z | 2026-11-28T09:09:00Z | aborted: too_few_sites | — | site:clinic-1 | 0 |",
		"| clinic-1 | 2026-11-28T09:01:00Z | — | 1 | 1.5 | 3 |",
		"| clinic-1 | 2 | 1 | 2026-11-28T09:03:00Z | 1.5 | not recomputed | 3 |",
		"adapter v1 (sha256:2222",
		"| 9 | 2026-11-28T09:10:00Z | access.denied | user:visitor-3 | denied |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestHTML(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, "html", fixture(t)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "<script>") || !strings.Contains(out, "&lt;script&gt;") {
		t.Error("free text not escaped")
	}
	i, j := strings.Index(out, "<svg"), strings.Index(out, "</svg>")
	if i < 0 || j < 0 {
		t.Fatal("no inline SVG chart")
	}
	// The chart is well-formed XML with one point per spend and a cap line.
	var svg struct {
		Polylines []struct {
			Points string `xml:"points,attr"`
		} `xml:"polyline"`
		Circles []struct{} `xml:"circle"`
		Lines   []struct {
			Dash string `xml:"stroke-dasharray,attr"`
		} `xml:"line"`
	}
	if err := xml.Unmarshal([]byte(out[i:j+len("</svg>")]), &svg); err != nil {
		t.Fatalf("chart is not XML: %v", err)
	}
	dashed := 0
	for _, l := range svg.Lines {
		if l.Dash != "" {
			dashed++
		}
	}
	if len(svg.Polylines) != 1 || len(svg.Circles) != 1 || dashed != 1 {
		t.Errorf("chart: %d polylines, %d points, %d cap lines", len(svg.Polylines), len(svg.Circles), dashed)
	}
}

func TestCSV(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, "csv", fixture(t)); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 11 || rows[0][0] != "entry" || len(rows[0]) != 15 {
		t.Fatalf("%d rows, header %v", len(rows), rows[0])
	}
	if got := fmt.Sprint(rows[3][2], " ", rows[3][9], " ", rows[3][10], " ", rows[3][12]); got != "dp.spend clinic-1 1.5 3" {
		t.Errorf("spend row: %q", got)
	}
	if err := Render(&b, "pdf", fixture(t)); err == nil {
		t.Error("unknown format accepted")
	}
}
