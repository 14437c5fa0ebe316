package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func runBenchSecagg(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newBenchSecaggCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestBenchSecaggJSON(t *testing.T) {
	out, err := runBenchSecagg(t, "--sites", "5", "--params", "3000", "--dropouts", "1", "--pq", "--threads", "1,2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	for key, want := range map[string]any{"sites": 5.0, "params": 3000.0, "dropouts": 1.0, "threshold": 4.0,
		"mode": "pq", "threads": 1.0, "survivors": 4.0, "exact": true} {
		if res[key] != want {
			t.Errorf("%s = %v, want %v", key, res[key], want)
		}
	}
	for _, key := range []string{"client_mask_s", "server_unmask_s", "keystream_s", "client_over_keystream", "bytes_per_client", "expansion_factor"} {
		if v, ok := res[key].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", key, res[key])
		}
	}
	if ef := res["expansion_factor"].(float64); ef != res["bytes_per_client"].(float64)/(4*3000) {
		t.Errorf("expansion_factor %v is not bytes_per_client / 4M", ef)
	}
	sc, _ := res["scaling"].([]any)
	if len(sc) != 1 || sc[0].(map[string]any)["threads"] != 2.0 {
		t.Errorf("scaling = %v, want one entry for 2 threads", res["scaling"])
	}
}

func TestBenchSecaggText(t *testing.T) {
	out, err := runBenchSecagg(t, "--sites", "4", "--params", "100")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "exact true") || !strings.Contains(out, "× keystream") {
		t.Errorf("unexpected output:\n%s", out)
	}
}

func TestBenchSecaggBadFlags(t *testing.T) {
	if _, err := runBenchSecagg(t, "--sites", "4", "--params", "10", "--dropouts", "2"); err == nil ||
		!strings.Contains(err.Error(), "threshold") {
		t.Errorf("too many drop-outs: error %v", err)
	}
	if _, err := runBenchSecagg(t, "--sites", "1", "--params", "10"); err == nil {
		t.Error("one site accepted")
	}
}
