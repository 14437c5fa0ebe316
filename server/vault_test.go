package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/crypto/keystore"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"github.com/fedtune/fedtune/synth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// The Vault tests run against a real Vault server (a dev server started
// by .ci/setup.d/50-vault.sh): skipped when VAULT_ADDR is unset, failed
// when FEDTUNE_VAULT_TEST=1 and Vault is unusable. They use their own
// mounts and random key names, so they can run again on the same server.

func testVault(t *testing.T) (VaultSettings, *keystore.VaultStore) {
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
	v := VaultSettings{Address: addr, CACertFile: os.Getenv("VAULT_CACERT"), Namespace: os.Getenv("VAULT_NAMESPACE"),
		TransitMount: "fedtune-fed-test-transit", KVMount: "fedtune-fed-test-kv", PKIMount: "fedtune-fed-test-pki",
		KVPrefix: "fed-" + randHex(4)}
	v.SetDefaults()
	if err := v.Check("vault"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	vs, err := v.Open(ctx, t.Logf)
	if err != nil {
		t.Fatalf("FEDTUNE_VAULT_TEST=1 but Vault at %s is unusable: %v", addr, err)
	}
	t.Cleanup(func() { vs.Close() })
	if err := PrepareVault(ctx, vs, v, "fedtune test federation CA"); err != nil {
		t.Fatal(err)
	}
	return v, vs
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// vaultServer starts an aggregator whose keys and certificates are all in
// Vault.
func vaultServer(t *testing.T, v VaultSettings, sites ...string) (*Server, *Config, string) {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	if err := synth.InitBaseModel(base, synth.DefaultModelOptions()); err != nil {
		t.Fatal(err)
	}
	sfx := randHex(4)
	cfg := &Config{Federation: "vault-fed", Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), BaseModel: base, Sites: sites,
		Keystore: KeystoreConfig{Type: "vault", Vault: v, CheckpointKey: "fed-test-checkpoint-" + sfx, ProvenanceKey: "fed-test-provenance-" + sfx},
		Round:    RoundConfig{NoiseMultiplier: 1, Steps: 1, Threshold: 2, MinSites: 2}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), cfg, Options{Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return srv, cfg, lis.Addr().String()
}

func dialTLS(t *testing.T, addr string, cert *tls.Certificate, roots *x509.CertPool) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ClientTLSConfig(cert, roots, "localhost"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// With keystore vault the aggregator's checkpoint key is a non-exportable
// Transit Ed25519 key, its TLS certificate and the site certificates come
// from the Vault PKI role, a site certificate from Vault PKI is accepted
// by the gRPC layer, and one that is revoked (or that the aggregator did
// not issue at enrollment) is refused.
func TestVaultPKIAcceptedAndRevokedRefused(t *testing.T) {
	v, vs := testVault(t)
	srv, cfg, addr := vaultServer(t, v, "site-a", "site-b")
	ctx := context.Background()

	roots, err := vs.Roots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root := roots[0]
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if ca := readPEMCert(t, filepath.Join(cfg.DataDir, "ca.pem")); !ca.Equal(root) {
		t.Fatal("ca.pem is not the Vault PKI issuer")
	}
	if err := srv.tlsCert.Leaf.CheckSignatureFrom(root); err != nil {
		t.Fatalf("server certificate not signed by Vault PKI: %v", err)
	}

	// The checkpoint key: Transit, Ed25519, not exportable, and the audit
	// log's verifier key is its public key.
	sec, err := vs.Client().Logical().Read(v.TransitMount + "/keys/" + cfg.Keystore.CheckpointKey)
	if err != nil || sec == nil {
		t.Fatalf("transit key %s: %v", cfg.Keystore.CheckpointKey, err)
	}
	if sec.Data["type"] != "ed25519" || sec.Data["exportable"] != false {
		t.Fatalf("checkpoint key type=%v exportable=%v", sec.Data["type"], sec.Data["exportable"])
	}
	pubs, err := vs.PublicKeys(ctx, cfg.Keystore.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	vk := srv.audit.VerifierKey()
	if want, ok := pubs[len(pubs)-1].Key.(ed25519.PublicKey); !ok || !vk.Public.Equal(want) {
		t.Fatalf("audit verifier key %s does not hold the Transit key", vk.Encoded)
	}

	// Enroll site-a; its CSR asks for an admin identity, which the PKI
	// role must ignore.
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, "tokens", "site-a.token"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evil, _ := url.Parse("fedtune://admin/evil")
	csr, err := keystore.NewCSR(key, keystore.CertRequest{CommonName: "site:site-a", URIs: []*url.URL{evil}})
	if err != nil {
		t.Fatal(err)
	}
	ipub, _, _ := ed25519.GenerateKey(rand.Reader)
	ik, _ := x509.MarshalPKIXPublicKey(ipub)
	anon := pb.NewFederationClient(dialTLS(t, addr, nil, pool))
	resp, err := anon.Enroll(ctx, &pb.EnrollRequest{Site: "site-a", Token: strings.TrimSpace(string(tok)), Csr: csr, IdentityKey: ik})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(resp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(root); err != nil {
		t.Fatalf("site certificate not from Vault PKI: %v", err)
	}
	if len(resp.Roots) != 1 || !root.Equal(mustParse(t, resp.Roots[0])) {
		t.Fatal("enrollment does not return the Vault PKI root")
	}
	id, err := IdentityFromCert(cert)
	if err != nil || id.Role != RoleSite || id.Name != "site-a" {
		t.Fatalf("identity %v, %v (URIs %v)", id, err, cert.URIs)
	}
	// Wait for a signed checkpoint (signed by Transit), so that
	// GetCheckpoint has something to return.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, n, err := srv.audit.Checkpoint(ctx); err == nil && n > 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no checkpoint after 30s: %v", err)
		}
	}
	siteCert := &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	site := pb.NewFederationClient(dialTLS(t, addr, siteCert, pool))
	cp, err := site.GetCheckpoint(ctx, &pb.GetCheckpointRequest{})
	if err != nil {
		t.Fatalf("Vault PKI site certificate refused: %v", err)
	}
	if _, err := audit.OpenCheckpoint(cp.Note, vk, nil); err != nil {
		t.Fatalf("checkpoint does not verify with the Transit key: %v", err)
	}

	// Renewal goes through Vault PKI too, and the old certificate is
	// refused afterwards.
	keyR, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rresp, err := site.Renew(ctx, &pb.RenewRequest{Csr: mustCSR(t, keyR, "site:site-a")})
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	renewed := mustParse(t, rresp.Certificate)
	if err := renewed.CheckSignatureFrom(root); err != nil {
		t.Fatalf("renewed certificate not from Vault PKI: %v", err)
	}
	if id, err := IdentityFromCert(renewed); err != nil || id.Name != "site-a" || id.Role != RoleSite {
		t.Fatalf("renewed identity %v, %v", id, err)
	}
	old := pb.NewFederationClient(dialTLS(t, addr, siteCert, pool))
	if _, err := old.GetCheckpoint(ctx, &pb.GetCheckpointRequest{}); !refused(err) {
		t.Fatalf("certificate replaced by renewal: %v, want refused", err)
	}
	siteCert = &tls.Certificate{Certificate: [][]byte{renewed.Raw}, PrivateKey: keyR}
	site = pb.NewFederationClient(dialTLS(t, addr, siteCert, pool))
	if _, err := site.GetCheckpoint(ctx, &pb.GetCheckpointRequest{}); err != nil {
		t.Fatalf("renewed certificate refused: %v", err)
	}

	// A certificate for the same identity from the same Vault PKI, but not
	// issued through enrollment, is refused.
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, err := srv.ca.(*vaultCA).issueCSR(ctx, mustCSR(t, key2, "site:site-a"), key2.Public(), RoleSite, "site-a", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	rogue := pb.NewFederationClient(dialTLS(t, addr, &tls.Certificate{Certificate: [][]byte{other.Raw}, PrivateKey: key2}, pool))
	if _, err := rogue.GetCheckpoint(ctx, &pb.GetCheckpointRequest{}); !refused(err) {
		t.Fatalf("certificate not issued at enrollment: %v, want refused", err)
	}

	// Revoke site-a with the admin credentials (also from Vault PKI).
	adir := filepath.Join(cfg.DataDir, "credentials", "admin")
	adm, err := tls.LoadX509KeyPair(filepath.Join(adir, "cert.pem"), filepath.Join(adir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := readPEMCert(t, filepath.Join(adir, "cert.pem")).CheckSignatureFrom(root); err != nil {
		t.Fatalf("admin certificate not from Vault PKI: %v", err)
	}
	admin := pb.NewAdminClient(dialTLS(t, addr, &adm, pool))
	if _, err := admin.RevokeSite(ctx, &pb.RevokeSiteRequest{Site: "site-a", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := site.GetCheckpoint(ctx, &pb.GetCheckpointRequest{}); !refused(err) {
		t.Fatalf("revoked site certificate: %v, want refused", err)
	}
	fresh := pb.NewFederationClient(dialTLS(t, addr, siteCert, pool))
	if _, err := fresh.GetCheckpoint(ctx, &pb.GetCheckpointRequest{}); !refused(err) {
		t.Fatalf("revoked site certificate on a new connection: %v, want refused", err)
	}
}

func refused(err error) bool {
	c := status.Code(err)
	return c == codes.PermissionDenied || c == codes.Unauthenticated
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustCSR(t *testing.T, key *ecdsa.PrivateKey, cn string) []byte {
	t.Helper()
	csr, err := keystore.NewCSR(key, keystore.CertRequest{CommonName: cn})
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// EnsureSigningKey creates a missing key, returns an existing one, and
// refuses one of the wrong algorithm (a checkpoint key must be Ed25519).
func TestEnsureSigningKey(t *testing.T) {
	ctx := context.Background()
	fs, err := keystore.InitFileStoreWith(t.TempDir(), []byte("pass"), keystore.FileOptions{ScryptLogN: 10})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := EnsureSigningKey(ctx, fs, "ckpt", keystore.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := EnsureSigningKey(ctx, fs, "ckpt", keystore.Ed25519)
	if err != nil || !s2.Public().(ed25519.PublicKey).Equal(s1.Public()) {
		t.Fatalf("second call: %v", err)
	}
	if err := fs.CreateSigningKey(ctx, "p256", keystore.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureSigningKey(ctx, fs, "p256", keystore.Ed25519); err == nil || !strings.Contains(err.Error(), "want ed25519") {
		t.Fatalf("ECDSA key as Ed25519: %v", err)
	}
	if _, err := EnsureSigningKey(ctx, fs, "bad/name", keystore.Ed25519); err == nil || !strings.Contains(err.Error(), "bad/name") {
		t.Fatalf("bad name: %v", err)
	}
}

// A restarted aggregator with keystore vault finds its Transit keys (the
// audit log's verifier key is unchanged) and trusts the same PKI root.
func TestVaultRestart(t *testing.T) {
	v, _ := testVault(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	if err := synth.InitBaseModel(base, synth.DefaultModelOptions()); err != nil {
		t.Fatal(err)
	}
	sfx := randHex(4)
	cfg := &Config{Federation: "vault-fed", DataDir: filepath.Join(dir, "data"), BaseModel: base, Sites: []string{"site-a"},
		Keystore: KeystoreConfig{Type: "vault", Vault: v, CheckpointKey: "fed-restart-checkpoint-" + sfx, ProvenanceKey: "fed-restart-provenance-" + sfx},
		Round:    RoundConfig{NoiseMultiplier: 1, Steps: 1, Threshold: 2, MinSites: 2}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	open := func() (string, []byte) {
		srv, err := New(context.Background(), cfg, Options{Log: log.New(io.Discard, "", 0)})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		ca, err := os.ReadFile(filepath.Join(cfg.DataDir, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return srv.audit.VerifierKey().Encoded, ca
	}
	k1, ca1 := open()
	k2, ca2 := open()
	if k1 != k2 || string(ca1) != string(ca2) {
		t.Fatalf("after restart: verifier key %s → %s, ca.pem changed: %v", k1, k2, string(ca1) != string(ca2))
	}
}
