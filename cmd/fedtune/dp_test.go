package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/dp/ledger"
)

func runDP(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newDPCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestDPEpsilonJSON(t *testing.T) {
	out, err := runDP(t, "epsilon", "--sampling-rate", "0.04", "--noise-multiplier", "1.5", "--steps", "2250",
		"--delta", "1e-5", "--accountant", "rdp", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Epsilon float64 }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err, out)
	}
	if math.Abs(r.Epsilon-7.32911117143) > 1e-7 {
		t.Errorf("epsilon %v", r.Epsilon)
	}
	// More orders can only lower the RDP bound.
	out2, err := runDP(t, "epsilon", "--sampling-rate", "0.001", "--noise-multiplier", "5", "--steps", "10",
		"--delta", "1e-10", "--accountant", "rdp", "--extended-orders", "--json")
	if err != nil {
		t.Fatal(err)
	}
	out3, _ := runDP(t, "epsilon", "--sampling-rate", "0.001", "--noise-multiplier", "5", "--steps", "10",
		"--delta", "1e-10", "--accountant", "rdp", "--json")
	var r2, r3 struct{ Epsilon float64 }
	json.Unmarshal([]byte(out2), &r2)
	json.Unmarshal([]byte(out3), &r3)
	if !(r2.Epsilon < r3.Epsilon) {
		t.Errorf("extended orders %v, default %v", r2.Epsilon, r3.Epsilon)
	}
	if _, err := runDP(t, "epsilon", "--sampling-rate", "2", "--noise-multiplier", "1", "--steps", "3", "--json"); err == nil {
		t.Error("q=2 accepted")
	}
	if _, err := runDP(t, "epsilon", "--sampling-rate", "0.1", "--noise-multiplier", "1", "--steps", "3", "--accountant", "moments"); err == nil || !strings.Contains(err.Error(), "--accountant") {
		t.Errorf("bad accountant: %v", err)
	}
}

func TestDPCalibrateJSON(t *testing.T) {
	out, err := runDP(t, "calibrate", "--sampling-rate", "0.04", "--steps", "2000", "--epsilon", "8", "--delta", "1e-5",
		"--accountant", "rdp", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		NoiseMultiplier float64 `json:"noise_multiplier"`
		Epsilon         float64
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err, out)
	}
	if math.Abs(r.NoiseMultiplier-1.3562) > 0.002 || r.Epsilon > 8 {
		t.Errorf("%+v", r)
	}
	_, err = runDP(t, "calibrate", "--sampling-rate", "1", "--steps", "1000000", "--epsilon", "0.000001", "--accountant", "rdp")
	if err == nil || !strings.Contains(err.Error(), "smallest reachable") {
		t.Errorf("unreachable: %v", err)
	}
}

func TestDPLedgerInitShow(t *testing.T) {
	dir := t.TempDir()
	if _, err := runDP(t, "ledger", "show", "--site-dir", dir); !errors.Is(err, ledger.ErrNotExist) {
		t.Fatalf("show before init: %v", err)
	}
	if _, err := runDP(t, "ledger", "init", "--site-dir", dir, "--epsilon-cap", "3", "--delta", "1e-6"); err != nil {
		t.Fatal(err)
	}
	out, err := runDP(t, "ledger", "show", "--site-dir", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if s["epsilon_spent"] != 0.0 || s["epsilon_cap"] != 3.0 || s["delta"] != 1e-6 {
		t.Errorf("%v", s)
	}
	if ev, ok := s["events"].([]any); !ok || len(ev) != 0 {
		t.Errorf("events %v", s["events"])
	}
	if _, err := runDP(t, "ledger", "init", "--site-dir", dir, "--epsilon-cap", "3", "--delta", "1e-6"); !errors.Is(err, ledger.ErrExist) {
		t.Errorf("second init: %v", err)
	}
	// A corrupt ledger is reported with the line.
	p := filepath.Join(dir, "privacy-ledger.jsonl")
	b, _ := os.ReadFile(p)
	b[20] ^= 1
	os.WriteFile(p, b, 0o600)
	if _, err := runDP(t, "ledger", "show", "--site-dir", dir); !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("corrupt: %v", err)
	}
}
