package ledgerfs

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/dp/ledger"
)

func TestDirRoundTripAndConcurrentSpends(t *testing.T) {
	dir := t.TempDir()
	st := Dir{Path: dir}
	if _, err := ledger.Open(st); !errors.Is(err, ledger.ErrNotExist) {
		t.Fatalf("open empty: %v", err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := ledger.Create(st, ledger.Config{EpsilonCap: 1.5, Delta: 1e-5}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Create(st, ledger.Config{EpsilonCap: 1.5, Delta: 1e-5}, now); !errors.Is(err, ledger.ErrExist) {
		t.Fatalf("second create: %v", err)
	}
	// Each spend alone costs about 1.1: only one of several concurrent
	// writers may fit under the cap of 1.5.
	ev := accounting.DPSGD(0.05, 2, 100)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := ledger.Open(st)
			if err != nil {
				errs[i] = err
				return
			}
			_, _, errs[i] = l.Spend(ledger.Spend{RunID: string(rune('a' + i)), Event: ev}, now)
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ledger.ErrBudget):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if ok != 1 || refused != 3 {
		t.Fatalf("%d spends accepted, %d refused", ok, refused)
	}
	l, err := ledger.Open(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries()) != 2 || l.Spent() > 1.5 {
		t.Fatalf("entries %d spent %v", len(l.Entries()), l.Spent())
	}
	// Truncating the last line is detected.
	logPath := filepath.Join(dir, LogFile)
	b, _ := os.ReadFile(logPath)
	os.WriteFile(logPath, b[:len(b)-10], 0o600)
	if _, err := ledger.Open(st); !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("torn log: %v", err)
	}
	os.Remove(filepath.Join(dir, HeadFile))
	if _, err := ledger.Open(st); !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("missing head: %v", err)
	}
}
