package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/client"
	"github.com/fedtune/fedtune/server"
)

func TestExampleVaultConfigs(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "base-model"), 0o755)
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(`{"text":"x"}`+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "vault-ca.pem"), []byte("-"), 0o644)
	os.WriteFile(filepath.Join(dir, "aggregator-secret-id"), []byte("secret-id\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "vault-token"), []byte("token\n"), 0o600)

	s, err := server.LoadConfig(copyTo(t, dir, "server-vault.json"))
	if err != nil {
		t.Fatal(err)
	}
	k := s.Keystore
	if k.Type != "vault" || k.CheckpointKey != "hospitals-2026-audit-checkpoint" || k.Vault.Auth != "approle" ||
		k.Vault.SecretIDFile != filepath.Join(dir, "aggregator-secret-id") || k.Vault.CACertFile != filepath.Join(dir, "vault-ca.pem") ||
		k.Vault.PKIRole != "fedtune" || k.Dir != "" {
		t.Fatalf("server keystore: %+v", k)
	}
	vc, err := k.Vault.StoreConfig()
	if err != nil || vc.AppRole == nil || vc.AppRole.SecretID != "secret-id" || vc.Token != "" {
		t.Fatalf("server Vault config: %v", err)
	}

	c, err := client.LoadConfig(copyTo(t, dir, "client-vault.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Keystore.Type != "vault" || c.Keystore.IdentityKey != "st-marys-identity" || c.TokenFile != "" ||
		c.Keystore.Vault.TokenFile != filepath.Join(dir, "vault-token") || c.Keystore.Vault.PKIMount != "pki" {
		t.Fatalf("client keystore: %+v", c.Keystore)
	}
	if vc, err := c.Keystore.Vault.StoreConfig(); err != nil || vc.Token != "token" {
		t.Fatalf("client Vault config: %v", err)
	}
}

// Mistakes in the Vault settings are reported with file, line and field.
func TestExampleVaultConfigErrors(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "base-model"), 0o755)
	os.WriteFile(filepath.Join(dir, "vault-ca.pem"), []byte("-"), 0o644)
	os.WriteFile(filepath.Join(dir, "aggregator-secret-id"), []byte("secret-id\n"), 0o600)
	p := copyTo(t, dir, "server-vault.json")
	raw, _ := os.ReadFile(p)
	for _, tc := range []struct{ from, to, want string }{
		{`"type": "vault"`, `"type": "hsm"`, "keystore.type"},
		{`"address": "https://vault.example.org:8200"`, `"address": "vault.example.org"`, "keystore.vault.address"},
		{`"auth": "approle"`, `"auth": "kerberos"`, "keystore.vault.auth"},
		{`"role_id": "3f1c2a9e-aggregator"`, `"role_id": ""`, "keystore.vault.role_id"},
		{`"secret_id_file": "aggregator-secret-id"`, `"secret_id_file": "missing"`, "keystore.vault.secret_id_file"},
		{`"ca_cert_file": "vault-ca.pem"`, `"ca_cert_file": "nope.pem"`, "keystore.vault.ca_cert_file"},
		{`"pki_mount": "pki"`, `"pki_mount": "../sys"`, "keystore.vault.pki_mount"},
		{`"checkpoint_key": "hospitals-2026-audit-checkpoint"`, `"checkpoint_key": "hospitals-2026-provenance"`, "keystore.provenance_key"},
		{`"provenance_key": "hospitals-2026-provenance"`, `"provenance_key": "bad/name"`, "keystore.provenance_key"},
		{`"timeout": "30s"`, `"timeout": "10ms"`, "keystore.vault.timeout"},
		{`"kv_prefix": "fedtune"`, `"kv_prefix": "fedtune", "kv_version": 2`, "kv_version"},
	} {
		bad := strings.Replace(string(raw), tc.from, tc.to, 1)
		if bad == string(raw) {
			t.Fatalf("%s not in server-vault.json", tc.from)
		}
		os.WriteFile(p, []byte(bad), 0o600)
		_, err := server.LoadConfig(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "server-vault.json:") {
			t.Errorf("%s → %v, want an error naming server-vault.json:<line> and %s", tc.to, err, tc.want)
		}
	}
	// A secret ID file that other users may read is refused.
	os.WriteFile(p, raw, 0o600)
	os.Chmod(filepath.Join(dir, "aggregator-secret-id"), 0o644)
	if _, err := server.LoadConfig(p); err == nil || !strings.Contains(err.Error(), "keystore.vault.secret_id_file") || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable secret ID file: %v", err)
	}
}
