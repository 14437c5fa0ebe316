package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/crypto/keystore"
	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"
)

// runKeys runs `fedtune keys args...` on a fresh command tree.
func runKeys(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newKeysCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.Execute()
	return out.String() + errOut.String(), err
}

func TestKeysCommandsFileStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	t.Setenv("FEDTUNE_PASSPHRASE", "cli test passphrase")
	t.Setenv("FEDTUNE_PASSPHRASE_FILE", "")
	os.Unsetenv("FEDTUNE_PASSPHRASE_FILE")

	out, err := runKeys(t, "init", "--dir", dir, "--key", "audit", "--key", "site-a", "--json")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	var initOut struct {
		Keystore string                       `json:"keystore"`
		Created  []map[string]json.RawMessage `json:"created"`
	}
	if err := json.Unmarshal([]byte(out), &initOut); err != nil || len(initOut.Created) != 2 || initOut.Keystore != "file" {
		t.Fatalf("init --json: %v\n%s", err, out)
	}
	if _, err := runKeys(t, "init", "--dir", dir); err == nil {
		t.Fatal("second init succeeded")
	}
	// The rest runs on a store with a cheap KDF (read from its file), so
	// that each command does not spend half a second in scrypt.
	dir = filepath.Join(t.TempDir(), "cheap")
	if _, err := keystore.InitFileStoreWith(dir, []byte("cli test passphrase"), keystore.FileOptions{ScryptLogN: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := runKeys(t, "create", "--dir", dir, "audit", "site-a"); err != nil {
		t.Fatal(err)
	}
	if out, err := runKeys(t, "create", "--dir", dir, "--alg", "ecdsa-p256", "ca"); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	if out, err = runKeys(t, "rotate", "--dir", dir, "audit"); err != nil || !strings.Contains(out, "version 2") {
		t.Fatalf("rotate: %v\n%s", err, out)
	}

	out, err = runKeys(t, "list", "--dir", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Keys []keyJSON `json:"keys"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	want := []keyJSON{
		{"audit", "ed25519", 2, []int{1, 2}},
		{"ca", "ecdsa-p256", 1, []int{1}},
		{"site-a", "ed25519", 1, []int{1}},
	}
	if len(list.Keys) != len(want) {
		t.Fatalf("list: %+v", list.Keys)
	}
	for i := range want {
		g := list.Keys[i]
		if g.Name != want[i].Name || g.Algorithm != want[i].Algorithm || g.CurrentVersion != want[i].CurrentVersion || !slices.Equal(g.Versions, want[i].Versions) {
			t.Errorf("list[%d] = %+v, want %+v", i, g, want[i])
		}
	}
	out, _ = runKeys(t, "list", "--dir", dir)
	if !strings.Contains(out, "audit") || !strings.Contains(out, "1,2") {
		t.Errorf("list text:\n%s", out)
	}

	// export-public: the keys verify signatures made through the library.
	out, err = runKeys(t, "export-public", "--dir", dir, "audit", "--json", "--note-name", "fedtune.example/audit")
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		PublicKeys []publicKeyJSON `json:"public_keys"`
	}
	if err := json.Unmarshal([]byte(out), &exp); err != nil || len(exp.PublicKeys) != 2 {
		t.Fatalf("export-public --json: %v\n%s", err, out)
	}
	s, err := keystore.OpenFileStore(dir, []byte("cli test passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	sg, err := s.Signer(t.Context(), "audit")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello\n")
	sig, _ := sg.Sign(t.Context(), msg)
	pk, err := keystore.ParsePublicKeyPEM([]byte(exp.PublicKeys[1].PublicKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	if err := keystore.Verify(pk, msg, sig); err != nil {
		t.Fatalf("exported v2 key does not verify: %v", err)
	}
	if _, err := note.NewVerifier(exp.PublicKeys[1].NoteVerifierKey); err != nil || !strings.HasPrefix(exp.PublicKeys[1].NoteVerifierKey, "fedtune.example/audit+") {
		t.Fatalf("note verifier key %q: %v", exp.PublicKeys[1].NoteVerifierKey, err)
	}
	out, err = runKeys(t, "export-public", "--dir", dir, "audit", "--version", "1", "--format", "note")
	if err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "audit+") {
		t.Fatalf("export-public --format note: %v\n%s", err, out)
	}
	if _, err := runKeys(t, "export-public", "--dir", dir, "ca", "--format", "note"); err == nil {
		t.Fatal("note key for an ECDSA key")
	}

	// Errors name the problem.
	t.Setenv("FEDTUNE_PASSPHRASE", "wrong")
	if _, err := runKeys(t, "list", "--dir", dir); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	t.Setenv("FEDTUNE_PASSPHRASE", "cli test passphrase")
	os.Chmod(filepath.Join(dir, keystore.FileName), 0o644)
	if _, err := runKeys(t, "list", "--dir", dir); err == nil || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("mode 0644: %v", err)
	}
	os.Chmod(filepath.Join(dir, keystore.FileName), 0o600)
	if _, err := runKeys(t, "rotate", "--dir", dir, "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("rotate missing key: %v", err)
	}
	if _, err := runKeys(t, "list", "--keystore", "hsm"); err == nil {
		t.Fatal("unknown backend accepted")
	}
}

// TestKeysOutputHasNoPrivateKeys runs every command with and without --json
// and checks that no output holds private key material: every PEM block is
// a PUBLIC KEY, and JSON objects have only the documented fields.
func TestKeysOutputHasNoPrivateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	t.Setenv("FEDTUNE_PASSPHRASE", "p")
	os.Unsetenv("FEDTUNE_PASSPHRASE_FILE")
	// A cheap KDF keeps the test fast; the commands read it from the file.
	if _, err := keystore.InitFileStoreWith(dir, []byte("p"), keystore.FileOptions{ScryptLogN: 10}); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		"keystore": true, "location": true, "created": true, "keys": true, "name": true, "algorithm": true,
		"current_version": true, "versions": true, "public_keys": true, "version": true,
		"public_key_pem": true, "note_verifier_key": true,
	}
	var checkFields func(v any)
	checkFields = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !allowed[k] {
					t.Errorf("JSON output has field %q", k)
				}
				checkFields(x)
			}
		case []any:
			for _, x := range v {
				checkFields(x)
			}
		case string:
			checkPEM(t, v)
		}
	}
	run := func(args ...string) {
		out, err := runKeys(t, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		checkPEM(t, out)
		if slices.Contains(args, "--json") {
			var v any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("%v: output is not JSON: %v", args, err)
			}
			checkFields(v)
		}
	}
	for i, j := range []string{"--json=false", "--json"} {
		a, b := fmt.Sprint("a", i), fmt.Sprint("b", i)
		run("create", "--dir", dir, "--alg", "ed25519", a, j)
		run("create", "--dir", dir, "--alg", "ecdsa-p256", b, j)
		run("list", "--dir", dir, j)
		run("rotate", "--dir", dir, a, j)
		run("export-public", "--dir", dir, a, j)
		run("export-public", "--dir", dir, b, j)
	}
}

// checkPEM fails if text holds a PEM block other than PUBLIC KEY.
func checkPEM(t *testing.T, text string) {
	t.Helper()
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "PUBLIC KEY" {
			t.Fatalf("output holds a PEM %q block", b.Type)
		}
	}
	if strings.Contains(text, "PRIVATE KEY") {
		t.Fatal("output mentions PRIVATE KEY")
	}
}

// TestKeysCommandsVault runs the commands against the Vault dev server of
// .ci/setup.d/50-vault.sh (see crypto/keystore's Vault tests for the
// environment they need).
func TestKeysCommandsVault(t *testing.T) {
	if os.Getenv("VAULT_ADDR") == "" || os.Getenv("FEDTUNE_VAULT_TEST") != "1" {
		if os.Getenv("FEDTUNE_VAULT_TEST") == "1" {
			t.Fatal("FEDTUNE_VAULT_TEST=1 but VAULT_ADDR is not set")
		}
		t.Skip("Vault integration tests need VAULT_ADDR, VAULT_TOKEN and FEDTUNE_VAULT_TEST=1")
	}
	const mount = "fedtune-test-cli-transit"
	s, err := keystore.NewVaultStore(t.Context(), keystore.VaultConfigFromEnv())
	if err != nil {
		t.Fatalf("Vault at %s: %v", os.Getenv("VAULT_ADDR"), err)
	}
	defer s.Close()
	mounts, err := s.Client().Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts[mount+"/"]; !ok {
		if err := s.Client().Sys().Mount(mount, &vaultapi.MountInput{Type: "transit"}); err != nil {
			t.Fatal(err)
		}
	}
	name := fmt.Sprintf("cli-%d", time.Now().UnixNano())
	vflags := []string{"--keystore", "vault", "--vault-transit-mount", mount}
	run := func(args ...string) string {
		t.Helper()
		out, err := runKeys(t, append(args, vflags...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		checkPEM(t, out)
		return out
	}
	run("init", "--key", name)
	if out := run("rotate", name, "--json"); !strings.Contains(out, `"current_version": 2`) {
		t.Fatalf("rotate --json:\n%s", out)
	}
	var list struct {
		Keys []keyJSON `json:"keys"`
	}
	if err := json.Unmarshal([]byte(run("list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range list.Keys {
		if k.Name == name {
			found = k.CurrentVersion == 2 && slices.Equal(k.Versions, []int{1, 2})
		}
	}
	if !found {
		t.Fatalf("list does not show %s at version 2: %+v", name, list.Keys)
	}
	var exp struct {
		PublicKeys []publicKeyJSON `json:"public_keys"`
	}
	if err := json.Unmarshal([]byte(run("export-public", name, "--json")), &exp); err != nil || len(exp.PublicKeys) != 2 {
		t.Fatalf("export-public: %v %+v", err, exp)
	}
	// A signature made through Vault verifies with the exported key.
	cfg := keystore.VaultConfigFromEnv()
	cfg.TransitMount = mount
	vs, err := keystore.NewVaultStore(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vs.Close()
	sg, err := vs.Signer(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sg.Sign(t.Context(), []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := keystore.ParsePublicKeyPEM([]byte(exp.PublicKeys[1].PublicKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	if err := keystore.Verify(pk, []byte("m"), sig); err != nil {
		t.Fatal(err)
	}
	if out := run("list"); strings.Contains(out, os.Getenv("VAULT_TOKEN")) {
		t.Fatal("token printed")
	}
}
