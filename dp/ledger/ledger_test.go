package ledger

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/dp/accounting"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newLedger(t *testing.T, cap float64) (*Ledger, *MemStorage) {
	t.Helper()
	st := &MemStorage{}
	l, err := Create(st, Config{EpsilonCap: cap, Delta: 1e-5}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return l, st
}

func TestSpendComposesWithPLD(t *testing.T) {
	l, st := newLedger(t, 10)
	a := accounting.DPSGD(0.02, 1.0, 300)
	b := accounting.DPSGD(0.05, 1.5, 100)
	ea, _ := accounting.EpsilonPLD(a, 1e-5, nil)
	eb, _ := accounting.EpsilonPLD(b, 1e-5, nil)
	if _, _, err := l.Spend(Spend{RunID: "r1", Event: a, Dataset: "x.jsonl", Records: 100}, t0); err != nil {
		t.Fatal(err)
	}
	eps, again, err := l.Spend(Spend{RunID: "r2", Event: b}, t0.Add(time.Hour))
	if err != nil || again {
		t.Fatal(err, again)
	}
	want, _ := accounting.EpsilonPLD(accounting.Composed{Events: []accounting.Event{a, b}}, 1e-5, nil)
	if math.Abs(eps-want) > 1e-9 || math.Abs(l.Spent()-want) > 1e-9 {
		t.Errorf("spent %v / %v, want %v", eps, l.Spent(), want)
	}
	if !(eps < ea+eb) || !(eps > math.Max(ea, eb)) {
		t.Errorf("composed ε %v not between max %v and sum %v", eps, math.Max(ea, eb), ea+eb)
	}
	// Recording the same run again spends nothing.
	eps2, again, err := l.Spend(Spend{RunID: "r1", Event: a}, t0)
	if err != nil || !again || len(l.Entries()) != 3 {
		t.Fatalf("resume: %v %v %d", err, again, len(l.Entries()))
	}
	_ = eps2
	// A fresh open reproduces the state.
	l2, err := Open(st)
	if err != nil || math.Abs(l2.Spent()-want) > 1e-9 || len(l2.Events()) != 2 {
		t.Fatalf("reopen: %v %v", err, l2)
	}
	// And the offline recomputation from the entries agrees.
	var raws [][]byte
	for _, e := range l2.Entries()[1:] {
		raws = append(raws, e.Event)
	}
	if len(raws) != 2 {
		t.Fatal(len(raws))
	}
}

func TestBudgetRefusal(t *testing.T) {
	l, st := newLedger(t, 1.0)
	before := bytes.Clone(st.Log)
	_, _, err := l.Spend(Spend{RunID: "big", Event: accounting.DPSGD(0.1, 0.8, 1000)}, t0)
	var be *BudgetError
	if !errors.As(err, &be) || !errors.Is(err, ErrBudget) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "remaining 1") || be.Projected <= 1 {
		t.Errorf("message %q", err)
	}
	if !bytes.Equal(before, st.Log) {
		t.Error("refused spend changed the log")
	}
	if _, err := l.Check(accounting.DPSGD(0.001, 5, 10)); err != nil {
		t.Errorf("small spend refused: %v", err)
	}
}

func validLedger(t *testing.T) *MemStorage {
	l, st := newLedger(t, 10)
	for _, id := range []string{"a", "b"} {
		if _, _, err := l.Spend(Spend{RunID: id, Event: accounting.DPSGD(0.01, 3, 10)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestFlipEveryByte(t *testing.T) {
	st := validLedger(t)
	if _, err := Verify(st.Log, st.Head); err != nil {
		t.Fatal(err)
	}
	for i := range st.Log {
		log := bytes.Clone(st.Log)
		log[i] ^= 0x01
		if _, err := Verify(log, st.Head); err == nil {
			t.Fatalf("flipping log byte %d (%q) went undetected", i, st.Log[i])
		}
	}
	for i := range st.Head {
		hd := bytes.Clone(st.Head)
		hd[i] ^= 0x01
		if st.Head[i] == '\n' {
			continue // the trailing newline of the head is not significant
		}
		if _, err := Verify(st.Log, hd); err == nil {
			t.Fatalf("flipping head byte %d (%q) went undetected", i, st.Head[i])
		}
	}
}

func TestTruncationAndReorder(t *testing.T) {
	st := validLedger(t)
	lines := bytes.SplitAfter(st.Log, []byte("\n"))
	lines = lines[:len(lines)-1] // trailing empty
	// Drop the last entry.
	_, err := Verify(bytes.Join(lines[:2], nil), st.Head)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncation: %v", err)
	}
	// Drop a middle entry.
	_, err = Verify(append(bytes.Clone(lines[0]), lines[2]...), st.Head)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("removed middle: %v", err)
	}
	// Swap two entries.
	_, err = Verify(bytes.Join([][]byte{lines[0], lines[2], lines[1]}, nil), st.Head)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("reorder: %v", err)
	}
	// A torn final line.
	_, err = Verify(st.Log[:len(st.Log)-5], st.Head)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("torn: %v", err)
	}
	// One whole entry past the head is an interrupted append and is kept.
	st2 := validLedger(t)
	l, err := Open(st2)
	if err != nil {
		t.Fatal(err)
	}
	oldHead := bytes.Clone(st2.Head)
	if _, _, err := l.Spend(Spend{RunID: "c", Event: accounting.DPSGD(0.01, 3, 10)}, t0); err != nil {
		t.Fatal(err)
	}
	l3, err := Verify(st2.Log, oldHead)
	if err != nil || len(l3.Events()) != 3 {
		t.Errorf("interrupted append: %v", err)
	}
}

func TestCreateValidation(t *testing.T) {
	for _, c := range []Config{{0, 1e-5}, {1, 0}, {1, 1}, {math.Inf(1), 1e-5}} {
		if _, err := Create(&MemStorage{}, c, t0); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	st := validLedger(t)
	if _, err := Create(st, Config{1, 1e-5}, t0); !errors.Is(err, ErrExist) {
		t.Errorf("create over existing: %v", err)
	}
	if _, err := Open(&MemStorage{}); !errors.Is(err, ErrNotExist) {
		t.Errorf("open missing: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	l, st := (*Ledger)(nil), &MemStorage{}
	var err error
	if l, err = Create(st, Config{EpsilonCap: 5, Delta: 1e-6}, t0); err != nil {
		f.Fatal(err)
	}
	l.Spend(Spend{RunID: "x", Event: accounting.DPSGD(0.01, 3, 5)}, t0)
	f.Add(st.Log, st.Head)
	f.Add([]byte("{}\n"), []byte("{}"))
	f.Fuzz(func(t *testing.T, log, head []byte) {
		if len(log) > 1<<14 {
			return
		}
		Verify(log, head) // must not panic
	})
}
