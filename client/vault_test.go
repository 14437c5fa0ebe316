package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/server"
	vault "github.com/hashicorp/vault/api"
)

// clientTestVault connects to the Vault dev server of
// .ci/setup.d/50-vault.sh with the root token and prepares test mounts:
// skipped when VAULT_ADDR is unset, failed when FEDTUNE_VAULT_TEST=1 and
// Vault is unusable.
func clientTestVault(t *testing.T) (server.VaultSettings, *keystore.VaultStore) {
	t.Helper()
	enabled := os.Getenv("FEDTUNE_VAULT_TEST") == "1"
	addr := os.Getenv("VAULT_ADDR")
	if addr == "" {
		if enabled {
			t.Fatal("FEDTUNE_VAULT_TEST=1 but VAULT_ADDR is not set")
		}
		t.Skip("VAULT_ADDR is not set: skipping the Vault integration tests (.ci/setup.d/50-vault.sh starts a dev server)")
	}
	if !enabled {
		t.Skip("VAULT_ADDR is set but FEDTUNE_VAULT_TEST is not 1: skipping the Vault integration tests, which create mounts and keys (set it only for a dev server)")
	}
	v := server.VaultSettings{Address: addr, CACertFile: os.Getenv("VAULT_CACERT"), Namespace: os.Getenv("VAULT_NAMESPACE"),
		TransitMount: "fedtune-fed-test-transit", KVMount: "fedtune-fed-test-kv", PKIMount: "fedtune-fed-test-pki",
		KVPrefix: "client-" + testHex(4)}
	v.SetDefaults()
	ctx := context.Background()
	vs, err := v.Open(ctx, t.Logf)
	if err != nil {
		t.Fatalf("FEDTUNE_VAULT_TEST=1 but Vault at %s is unusable: %v", addr, err)
	}
	t.Cleanup(func() { vs.Close() })
	if err := server.PrepareVault(ctx, vs, v, "fedtune test federation CA"); err != nil {
		t.Fatal(err)
	}
	return v, vs
}

func testHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// A whole round with every key in Vault: the aggregator's checkpoint and
// provenance keys and each site's identity key are Transit keys, the
// sites' TLS keys and one site's enrollment token are KV v2 secrets, and
// every certificate comes from the Vault PKI role.
func TestVaultFullRound(t *testing.T) {
	v, vs := clientTestVault(t)
	ctx := context.Background()
	sfx := testHex(4)
	sites := []string{"site-a", "site-b", "site-c"}

	dir := t.TempDir()
	cfg := &server.Config{
		Federation: "vault-fed", Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "server"), BaseModel: sharedBaseModel(t),
		Sites: sites,
		Keystore: server.KeystoreConfig{Type: "vault", Vault: v,
			CheckpointKey: "client-test-checkpoint-" + sfx, ProvenanceKey: "client-test-provenance-" + sfx},
		Round: server.RoundConfig{NoiseMultiplier: 1.0, ExpectedBatchSize: 8, Steps: 2, Threshold: 2, MinSites: len(sites),
			LoraRank: 2, FFA: true, ASeed: 7, LearningRate: 0.05,
			StageTimeout: server.Duration(5 * time.Second), TrainTimeout: server.Duration(60 * time.Second)},
		Schedule: server.ScheduleConfig{Rounds: 1},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f := &federation{t: t, dir: dir, sites: sites, cfg: cfg}
	f.start()
	t.Cleanup(f.stop)

	var cfgs []*Config
	for _, s := range sites {
		c := f.siteConfig(s, 60)
		c.Keystore = KeystoreConfig{Type: "vault", Vault: v, IdentityKey: "client-test-" + s + "-" + sfx}
		if s == "site-b" {
			// This site logs in with AppRole under the least-privilege site
			// policy; its identity key is created by the operator first.
			c.Keystore.Vault = siteAppRole(t, vs, v, c.Keystore.IdentityKey, filepath.Join(f.dir, "site-b-secret-id"))
		}
		if s == "site-c" {
			// This site's enrollment token is a Vault secret, not a file.
			tok, err := os.ReadFile(c.TokenFile)
			if err != nil {
				t.Fatal(err)
			}
			if err := vs.PutSecret(ctx, c.Keystore.IdentityKey+".enrollment-token", tok); err != nil {
				t.Fatal(err)
			}
			c.TokenFile = ""
		}
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, c)
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	sums, errs := runSites(t, rctx, cfgs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", sites[i], err)
		}
		if len(sums[i].Rounds) != 1 || sums[i].Rounds[0].Outcome != "completed" || sums[i].AdapterVersion != 1 {
			b, _ := json.Marshal(sums[i])
			t.Fatalf("%s: %s", sites[i], b)
		}
	}

	// The audit log verifies offline (checkpoints signed by Transit,
	// dp.spend entries signed by the sites' Transit keys), and the enrolled
	// identity keys are the Transit keys.
	es := f.auditEntries(t)
	for kind, want := range map[audit.Kind]int{audit.SiteEnrolled: 3, audit.DPSpendKind: 3, audit.ModelPublished: 1} {
		if got := count(es, kind); got != want {
			t.Errorf("%d %s entries, want %d", got, kind, want)
		}
	}
	enrolled := map[string]string{}
	for _, e := range es {
		if e.Kind == audit.SiteEnrolled && e.Site != nil {
			enrolled[e.Site.ID] = e.Site.PublicKey
		}
	}
	roots, err := vs.Roots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfgs {
		pubs, err := vs.PublicKeys(ctx, c.Keystore.IdentityKey)
		if err != nil {
			t.Fatal(err)
		}
		if got := enrolled[c.Site]; got != base64.StdEncoding.EncodeToString(pubs[0].Key.(ed25519.PublicKey)) {
			t.Errorf("%s enrolled identity key %s is not its Transit key", c.Site, got)
		}
		sec, err := vs.Client().Logical().Read(v.TransitMount + "/keys/" + c.Keystore.IdentityKey)
		if err != nil || sec == nil || sec.Data["exportable"] != false {
			t.Errorf("%s identity key: exportable=%v, %v", c.Site, sec.Data["exportable"], err)
		}
		// The site certificate is from Vault PKI and holds the TLS key
		// kept in KV.
		raw, err := os.ReadFile(filepath.Join(c.DataDir, "cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(raw)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.CheckSignatureFrom(roots[0]); err != nil {
			t.Errorf("%s certificate not from Vault PKI: %v", c.Site, err)
		}
		der, err := vs.GetSecret(ctx, c.Keystore.IdentityKey+".tls-key")
		if err != nil {
			t.Fatal(err)
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil || !k.(*ecdsa.PrivateKey).PublicKey.Equal(cert.PublicKey) {
			t.Errorf("%s certificate does not hold the KV TLS key (%v)", c.Site, err)
		}
		// Nothing of the file store was created.
		if _, err := os.Stat(filepath.Join(c.DataDir, "keys", keystore.FileName)); err == nil {
			// siteConfig pre-creates a file store for file-store tests;
			// it must be left unused: no keys in it.
			fst, err := keystore.OpenFileStore(filepath.Join(c.DataDir, "keys"), pass)
			if err != nil {
				t.Fatal(err)
			}
			if ks, _ := fst.List(ctx); len(ks) != 0 {
				t.Errorf("%s: keys in the file store: %v", c.Site, ks)
			}
		}
	}
	// The provenance record of the published adapter is signed by the
	// Transit provenance key.
	var prov server.Provenance
	pb, err := os.ReadFile(filepath.Join(cfg.DataDir, "published", "v1", "provenance.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(pb, &prov); err != nil {
		t.Fatal(err)
	}
	ppubs, err := vs.PublicKeys(ctx, cfg.Keystore.ProvenanceKey)
	if err != nil {
		t.Fatal(err)
	}
	pkix, _ := x509.MarshalPKIXPublicKey(ppubs[0].Key)
	if prov.SignerKey != base64.StdEncoding.EncodeToString(pkix) {
		t.Errorf("provenance signer %s is not the Transit provenance key", prov.SignerKey)
	}
}

// Keystore settings are checked at load time and errors name the field.
func TestKeystoreConfigErrors(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "train.jsonl")
	os.WriteFile(data, []byte(`{"text":"x"}`+"\n"), 0o600)
	base := func() Config {
		return Config{Site: "site-a", Server: "127.0.0.1:1", CAFile: "ca.pem", DataDir: dir, Data: data, BaseModel: dir,
			Policy: Policy{AllowedBaseModels: []string{"sha256:00"}, MaxEpsilonPerRound: 1, EpsilonCap: 2}}
	}
	t.Setenv("VAULT_TOKEN", "")
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"unknown type", func(c *Config) { c.Keystore.Type = "hsm" }, "keystore.type"},
		{"vault settings with file", func(c *Config) { c.Keystore.Vault.Address = "https://v:8200" }, "keystore.vault"},
		{"no address", func(c *Config) { c.Keystore.Type = "vault" }, "keystore.vault.address"},
		{"no token", func(c *Config) {
			c.Keystore = KeystoreConfig{Type: "vault", Vault: server.VaultSettings{Address: "https://v:8200"}}
		}, "keystore.vault.token_file"},
		{"approle without role", func(c *Config) {
			c.Keystore = KeystoreConfig{Type: "vault", Vault: server.VaultSettings{Address: "https://v:8200", Auth: "approle"}}
		}, "keystore.vault.role_id"},
		{"bad identity key", func(c *Config) { c.Keystore.IdentityKey = "a/b" }, "keystore.identity_key"},
		{"identity is the TLS key", func(c *Config) { c.Keystore.IdentityKey = keyTLS }, "keystore.identity_key"},
	} {
		c := base()
		tc.mutate(&c)
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
			t.Errorf("%s: %v, want an error starting with %s:", tc.name, err, tc.want)
		}
	}
	c := base()
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.Keystore.Type != "file" || c.Keystore.IdentityKey != keyIdentity {
		t.Fatalf("defaults: %+v, %v", c.Keystore, err)
	}
	c = base()
	c.Keystore = KeystoreConfig{Type: "vault", Vault: server.VaultSettings{Address: "https://v:8200"}}
	t.Setenv("VAULT_TOKEN", "t")
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.Keystore.IdentityKey != "fedtune-site-site-a" || c.Keystore.Vault.TransitMount != "transit" {
		t.Fatalf("vault defaults: %+v, %v", c.Keystore, err)
	}
}

// siteAppRole creates the identity key and an AppRole whose tokens carry
// only keystore.VaultPolicy("site", ..., key), and returns settings that
// log in with it (the secret ID in secretIDFile, mode 0600).
func siteAppRole(t *testing.T, vs *keystore.VaultStore, v server.VaultSettings, key, secretIDFile string) server.VaultSettings {
	t.Helper()
	ctx := context.Background()
	c := vs.Client()
	auths, err := c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := auths["approle/"]; !ok {
		if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := vs.CreateSigningKey(ctx, key, keystore.Ed25519); err != nil {
		t.Fatal(err)
	}
	sc, err := v.StoreConfig()
	if err != nil {
		t.Fatal(err)
	}
	policy, err := keystore.VaultPolicy("site", sc, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Sys().PutPolicyWithContext(ctx, "fedtune-test-"+key, policy); err != nil {
		t.Fatal(err)
	}
	role := "fedtune-test-" + key
	if _, err := c.Logical().WriteWithContext(ctx, "auth/approle/role/"+role, map[string]any{
		"token_policies": "fedtune-test-" + key, "token_ttl": "10m", "token_max_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := c.Logical().ReadWithContext(ctx, "auth/approle/role/"+role+"/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := c.Logical().WriteWithContext(ctx, "auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretIDFile, []byte(sid.Data["secret_id"].(string)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := v
	a.Auth, a.TokenFile, a.RoleID, a.SecretIDFile = "approle", "", rid.Data["role_id"].(string), secretIDFile
	if err := a.Check("vault"); err != nil {
		t.Fatal(err)
	}
	return a
}
