package audit

import (
	"encoding/json"
	"sync/atomic"
	"testing"
)

// Spends with identical event histories and δ are recomputed once, and
// every spend still gets its own result and its own mismatch report.
func TestRecomputeEpsilonSharesIdenticalHistories(t *testing.T) {
	ev1 := json.RawMessage(`{"type":"gaussian","sigma":1}`)
	ev2 := json.RawMessage(`{"type":"gaussian","sigma":2}`)
	var calls atomic.Int32
	eps := func(events []json.RawMessage, delta float64) (float64, error) {
		calls.Add(1)
		return float64(len(events)) + delta, nil
	}
	r := &Result{Ledger: map[string][]LedgerPoint{"a": make([]LedgerPoint, 2), "b": make([]LedgerPoint, 2)}}
	jobs := []epsJob{
		{entry: 1, site: "a", events: []json.RawMessage{ev1}, delta: 1e-5, recorded: 1 + 1e-5, cap: 10, point: 0},
		{entry: 2, site: "b", events: []json.RawMessage{ev1}, delta: 1e-5, recorded: 1 + 1e-5, cap: 10, point: 0},
		{entry: 3, site: "a", events: []json.RawMessage{ev1, ev2}, delta: 1e-5, recorded: 2 + 1e-5, cap: 10, point: 1},
		// Same events as entry 3 but a wrong recorded value: still reported.
		{entry: 4, site: "b", events: []json.RawMessage{ev1, ev2}, delta: 1e-5, recorded: 5, cap: 10, point: 1},
		// Same events, other δ: a separate computation.
		{entry: 5, site: "c", events: []json.RawMessage{ev1}, delta: 1e-6, recorded: 1 + 1e-6, cap: 10, point: 0},
	}
	r.Ledger["c"] = make([]LedgerPoint, 1)
	recomputeEpsilon(r, eps, jobs, 2)
	if n := calls.Load(); n != 3 {
		t.Fatalf("accountant called %d times, want 3 (one per distinct history and δ)", n)
	}
	if len(r.Problems) != 1 || r.Problems[0].Entry != 4 {
		t.Fatalf("problems %+v, want exactly one, for entry 4", r.Problems)
	}
	for site, pts := range r.Ledger {
		for i, p := range pts {
			if p.EpsilonRecomputed == nil {
				t.Fatalf("site %s point %d: no recomputed ε", site, i)
			}
		}
	}
	// Keys cannot collide by moving bytes between events.
	a := epsJob{events: []json.RawMessage{json.RawMessage(`ab`), json.RawMessage(`c`)}}
	b := epsJob{events: []json.RawMessage{json.RawMessage(`a`), json.RawMessage(`bc`)}}
	if epsKey(&a) == epsKey(&b) {
		t.Fatal("different histories share a key")
	}
}
