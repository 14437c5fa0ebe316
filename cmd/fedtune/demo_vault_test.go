package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The demo with --keystore vault runs the federation against a real Vault
// (the dev server of .ci/setup.d/50-vault.sh): every process uses its own
// least-privilege token, and no file key store is created anywhere.
func TestDemoVault(t *testing.T) {
	enabled := os.Getenv("FEDTUNE_VAULT_TEST") == "1"
	if os.Getenv("VAULT_ADDR") == "" {
		if enabled {
			t.Fatal("FEDTUNE_VAULT_TEST=1 but VAULT_ADDR is not set")
		}
		t.Skip("VAULT_ADDR is not set: skipping the Vault demo (.ci/setup.d/50-vault.sh starts a dev server)")
	}
	if !enabled {
		t.Skip("VAULT_ADDR is set but FEDTUNE_VAULT_TEST is not 1: skipping the Vault demo, which creates mounts, keys and policies")
	}
	t.Setenv("FEDTUNE_TEST_AS_CLI", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var out bytes.Buffer
	err := runDemo(ctx, &out, io.Discard, demoOptions{sites: 3, rounds: 1, records: 60, steps: 2, dir: dir, domain: "medical", json: true,
		keystore: "vault", vaultAddr: os.Getenv("VAULT_ADDR"), vaultCACert: os.Getenv("VAULT_CACERT")})
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Keystore        string   `json:"keystore"`
		RoundsCompleted int      `json:"rounds_completed"`
		AuditVerified   bool     `json:"audit_verified"`
		AuditCosigners  []string `json:"audit_cosigners"`
	}
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("%v\n%s", err, out.Bytes())
	}
	if s.Keystore != "vault" || s.RoundsCompleted != 1 || !s.AuditVerified || len(s.AuditCosigners) == 0 {
		t.Fatalf("summary: %s", out.Bytes())
	}
	for _, p := range []string{"aggregator/data/keys", "site-a/state/keys", "site-b/state/keys", "site-c/state/keys"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s exists: a file key store was created with --keystore vault", p)
		}
	}
	var scfg struct {
		Keystore struct {
			Type  string `json:"type"`
			Vault struct {
				TokenFile string `json:"token_file"`
			} `json:"vault"`
		} `json:"keystore"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "aggregator", "server.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &scfg); err != nil || scfg.Keystore.Type != "vault" || scfg.Keystore.Vault.TokenFile == "" {
		t.Fatalf("server.json keystore: %+v %v", scfg.Keystore, err)
	}
}
