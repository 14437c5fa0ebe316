package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the fedtune binary when the
// demo re-executes itself (os.Executable) for the aggregator and sites.
func TestMain(m *testing.M) {
	if os.Getenv("FEDTUNE_TEST_AS_CLI") == "1" {
		rootCmd.SetArgs(os.Args[1:])
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The demo runs a federation of separate processes over loopback mTLS and
// prints the documented JSON summary; one site drops out mid-round.
func TestDemo(t *testing.T) {
	t.Setenv("FEDTUNE_TEST_AS_CLI", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := runDemo(ctx, &out, io.Discard, demoOptions{sites: 3, rounds: 1, records: 60, steps: 2, drop: "site-c@share_keys",
		dir: t.TempDir(), domain: "finance", json: true})
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("%v\n%s", err, out.Bytes())
	}
	for _, k := range []string{"rounds_completed", "sites", "epsilon_by_site", "eval_loss_base", "eval_loss_global", "audit_verified"} {
		if _, ok := s[k]; !ok {
			t.Fatalf("summary lacks %q: %s", k, out.Bytes())
		}
	}
	if s["rounds_completed"].(float64) != 1 || s["audit_verified"] != true {
		t.Fatalf("summary: %s", out.Bytes())
	}
	eps := s["epsilon_by_site"].(map[string]any)
	if len(eps) != 3 {
		t.Fatalf("epsilon_by_site: %v", eps)
	}
	for site, v := range eps {
		if v.(map[string]any)["spent"].(float64) <= 0 {
			t.Fatalf("%s spent no ε", site)
		}
	}
	if s["eval_loss_global"].(float64) <= 0 || s["eval_loss_base"].(float64) <= 0 {
		t.Fatalf("eval losses missing: %s", out.Bytes())
	}
	rounds := s["rounds_by_site"].(map[string]any)["site-c"].([]any)
	if rounds[0].(map[string]any)["outcome"] != "dropped" {
		t.Fatalf("site-c: %v", rounds)
	}
}
