package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"

	"github.com/fedtune/fedtune/dp/accounting"
)

// TestVerifyWithDPAccountant records DP-SGD spends the way a site's ledger
// does (events of the dp/accounting algebra, ε from its accountant) and
// checks that the verifier recomputes them, and catches an understated ε.
func TestVerifyWithDPAccountant(t *testing.T) {
	ctx := context.Background()
	site := seededSigner("site a")
	ev, err := accounting.MarshalEvent(accounting.DPSGD(0.01, 1.1, 50))
	if err != nil {
		t.Fatal(err)
	}
	l := newTestLog(t, 0, 0)
	en := baseEntry(SiteEnrolled, 0)
	en.Site = &Site{ID: "hospital-a", PublicKey: b64(site.Public().(ed25519.PublicKey))}
	l.append(en)
	var events []json.RawMessage
	var idx []uint64
	for round := 1; round <= 2; round++ {
		events = append(events, ev)
		eps, err := accounting.EpsilonFromEventsJSON(events, 1e-5)
		if err != nil {
			t.Fatal(err)
		}
		if round == 2 {
			eps *= 0.99 // the site under-reports
		}
		e := baseEntry(DPSpendKind, round)
		e.Round = u64(uint64(round))
		e.Actor = Actor{ID: "site:hospital-a", Auth: "signature"}
		e.DP = &DPSpend{Site: "hospital-a", Events: ev, Delta: 1e-5, EpsilonCumulative: eps, EpsilonCap: 10}
		if err := e.SignAsSite(ctx, site); err != nil {
			t.Fatal(err)
		}
		idx = append(idx, l.append(e))
	}
	l.checkpoint(0)
	r := Verify(l.bundle(), VerifyOptions{Policy: l.parsedPolicy(), Epsilon: accounting.EpsilonFromEventsJSON})
	if r.OK || len(r.Problems) != 1 || r.Problems[0].Entry != int64(idx[1]) || !hasProblem(r, int64(idx[1]), "recomputed") {
		t.Fatalf("problems %v", r.Problems)
	}
	if p := r.Ledger["hospital-a"][0]; p.EpsilonRecomputed == nil || *p.EpsilonRecomputed != p.EpsilonCumulative {
		t.Fatalf("ledger %+v", r.Ledger)
	}
}
