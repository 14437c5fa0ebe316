package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit/merkle"
)

// edSigner is a keystore.Signer over an in-memory Ed25519 key.
type edSigner struct{ k ed25519.PrivateKey }

func (s edSigner) Public() crypto.PublicKey { return s.k.Public() }
func (s edSigner) Sign(_ context.Context, m []byte) ([]byte, error) {
	return ed25519.Sign(s.k, m), nil
}

// seededSigner derives a key from a label, so tests are reproducible.
func seededSigner(label string) edSigner {
	seed := sha256.Sum256([]byte("fedtune audit test key " + label))
	return edSigner{ed25519.NewKeyFromSeed(seed[:])}
}

var testT0 = time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)

// testLog builds bundles in memory, signing checkpoints like a real log.
type testLog struct {
	t         testing.TB
	origin    string
	signer    *NoteSigner
	witnesses []*Witness
	quorum    int
	lines     [][]byte
	tree      merkle.Tree
	cps       []BundleFile
}

func newTestLog(t testing.TB, nWitnesses, quorum int) *testLog {
	ns, err := NewNoteSigner(context.Background(), "fedtune.test/audit", seededSigner("log"))
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{t: t, origin: "fedtune.test/audit", signer: ns, quorum: quorum}
	for i := 0; i < nWitnesses; i++ {
		w, err := NewWitness(fmt.Sprintf("witness-%d.site", i), seededSigner(fmt.Sprint("witness", i)), ns.VerifierKey(),
			func() time.Time { return testT0.Add(time.Hour) })
		if err != nil {
			t.Fatal(err)
		}
		l.witnesses = append(l.witnesses, w)
	}
	return l
}

func (l *testLog) policy() Policy {
	p := Policy{Log: l.signer.VerifierKey().Encoded, Quorum: l.quorum, Witnesses: []string{}}
	for _, w := range l.witnesses {
		p.Witnesses = append(p.Witnesses, w.VerifierKey().Encoded)
	}
	return p
}

func (l *testLog) parsedPolicy() *ParsedPolicy {
	pp, err := l.policy().Parse()
	if err != nil {
		l.t.Fatal(err)
	}
	return pp
}

func (l *testLog) append(e *Entry) uint64 {
	data, err := e.Marshal()
	if err != nil {
		l.t.Fatal(err)
	}
	l.lines = append(l.lines, data)
	l.tree.AppendLeaf(data)
	return uint64(len(l.lines) - 1)
}

// checkpoint signs the current tree and has the first k witnesses cosign it.
func (l *testLog) checkpoint(k int) []byte {
	size := l.tree.Size()
	root, _ := l.tree.Root(size)
	text := Checkpoint{Origin: l.origin, Size: size, Root: root}.Marshal()
	sig, err := l.signer.Sign(text)
	if err != nil {
		l.t.Fatal(err)
	}
	note := append(append([]byte(nil), text...), '\n')
	note = append(note, signatureLine(l.signer.Name(), l.signer.KeyHash(), sig)...)
	for _, w := range l.witnesses[:k] {
		ws, _ := w.State()
		var proof []merkle.Hash
		if ws > 0 && ws < size {
			proof, err = merkle.ConsistencyProof(&l.tree, ws, size)
			if err != nil {
				l.t.Fatal(err)
			}
		}
		line, err := w.Cosign(context.Background(), note, proof)
		if err != nil {
			l.t.Fatal(err)
		}
		note = append(note, line...)
	}
	l.cps = append(l.cps, BundleFile{Name: CheckpointFileName(size), Data: note})
	return note
}

func (l *testLog) bundle() *Bundle {
	var b bytes.Buffer
	for _, line := range l.lines {
		b.Write(line)
		b.WriteByte('\n')
	}
	pj, _ := json.MarshalIndent(l.policy(), "", "  ")
	cps := make([]BundleFile, len(l.cps))
	for i, c := range l.cps {
		cps[i] = BundleFile{Name: c.Name, Data: append([]byte(nil), c.Data...)}
	}
	return &Bundle{Entries: b.Bytes(), Checkpoints: cps, Policy: append(pj, '\n')}
}

func u64(v uint64) *uint64 { return &v }

func baseEntry(kind Kind, i int) *Entry {
	return &Entry{Schema: SchemaVersion, Kind: kind, Federation: "fed-1",
		Actor: Actor{ID: "service:aggregator", Auth: "local"}, Time: FormatTime(testT0.Add(time.Duration(i) * time.Minute)),
		Outcome: OutcomeOK}
}

// pureEvents is a DP event list for tests: pure ε-DP mechanisms, composed by
// adding their ε (basic composition, Dwork and Roth 2014, Theorem 3.16).
func pureEvents(eps float64) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"pure":%v}`, eps))
}

func basicComposition(events []json.RawMessage, delta float64) (float64, error) {
	total := 0.0
	for _, e := range events {
		var v struct {
			Pure *float64 `json:"pure"`
		}
		if err := json.Unmarshal(e, &v); err != nil || v.Pure == nil {
			return 0, fmt.Errorf("unknown event %s", e)
		}
		total += *v.Pure
	}
	return total, nil
}

// federation fills a test log with a small federation's history: two
// sites enrol, two rounds with dp.spend entries signed by the sites, a
// published model and a review.
func (l *testLog) federation() { l.federationN(2, 2) }

// federationN is federation with a number of rounds and sites (1 or 2).
func (l *testLog) federationN(rounds uint64, nsites int) {
	ctx := context.Background()
	i := 0
	next := func(k Kind) *Entry { i++; return baseEntry(k, i) }
	l.append(next(FederationCreated))
	sites := map[string]edSigner{"hospital-a": seededSigner("site a"), "bank-b": seededSigner("site b")}
	ids := []string{"hospital-a", "bank-b"}[:nsites]
	for _, id := range ids {
		e := next(SiteEnrolled)
		e.Site = &Site{ID: id, PublicKey: b64(sites[id].Public().(ed25519.PublicKey))}
		l.append(e)
	}
	l.checkpoint(len(l.witnesses))
	cum := map[string]float64{}
	for round := uint64(1); round <= rounds; round++ {
		e := next(RoundOpened)
		e.Round = u64(round)
		l.append(e)
		for _, id := range ids {
			spend := 0.5 + 0.25*float64(round)
			if id == "bank-b" {
				spend = 0.3
			}
			cum[id] += spend
			d := next(DPSpendKind)
			d.Round = u64(round)
			d.Actor = Actor{ID: "site:" + id, Auth: "signature"}
			d.DP = &DPSpend{Site: id, Events: pureEvents(spend), Delta: 1e-5, EpsilonCumulative: cum[id], EpsilonCap: 4}
			if err := d.SignAsSite(ctx, sites[id]); err != nil {
				l.t.Fatal(err)
			}
			l.append(d)
		}
		a := next(AggregateProduced)
		a.Round = u64(round)
		a.Objects = []Object{{Type: "aggregate", ID: fmt.Sprintf("round-%d", round), Digest: "sha256:" + fmt.Sprintf("%064x", round)}}
		l.append(a)
		m := next(ModelPublished)
		m.Objects = []Object{{Type: "adapter", ID: fmt.Sprintf("v%d", round), Digest: "sha256:" + fmt.Sprintf("%064x", 100+round)}}
		m.Refs = []uint64{uint64(len(l.lines) - 1)}
		l.append(m)
		l.checkpoint(len(l.witnesses))
	}
	r := next(ReviewPerformed)
	r.Actor = Actor{ID: "user:officer-1", Auth: "local"}
	r.Message = "quarterly review: ledger matches site reports"
	l.append(r)
	l.checkpoint(len(l.witnesses))
}
