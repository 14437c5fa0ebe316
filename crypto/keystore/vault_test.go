package keystore

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// The Vault tests run against a real Vault server, normally the dev server
// that .ci/setup.d/50-vault.sh builds and starts. They need VAULT_ADDR and
// VAULT_TOKEN (a root token) and, as a guard against running them on a
// production Vault by accident, FEDTUNE_VAULT_TEST=1. They create their own
// mounts (fedtune-test-*) and keys with a random suffix, so they can run
// repeatedly against the same server.

const (
	testTransit = "fedtune-test-transit"
	testKV      = "fedtune-test-kv"
	testPKI     = "fedtune-test-pki"
)

func vaultTestConfig(t *testing.T) VaultConfig {
	t.Helper()
	enabled := os.Getenv("FEDTUNE_VAULT_TEST") == "1"
	cfg := VaultConfigFromEnv()
	if cfg.Address == "" {
		if enabled {
			t.Fatal("FEDTUNE_VAULT_TEST=1 but VAULT_ADDR is not set")
		}
		t.Skip("VAULT_ADDR is not set: skipping Vault integration tests (.ci/setup.d/50-vault.sh starts a dev server)")
	}
	if !enabled {
		t.Skip("VAULT_ADDR is set but FEDTUNE_VAULT_TEST is not 1: skipping Vault integration tests, which create mounts, keys and policies (set FEDTUNE_VAULT_TEST=1 only for a dev server)")
	}
	cfg.TransitMount, cfg.KVMount, cfg.PKIMount = testTransit, testKV, testPKI
	cfg.KVPrefix = "fedtune-test"
	cfg.Timeout = 20 * time.Second
	return cfg
}

// newVaultTestStore connects with the root token and makes sure the test
// mounts exist.
func newVaultTestStore(t *testing.T) (*VaultStore, VaultConfig) {
	t.Helper()
	cfg := vaultTestConfig(t)
	ctx := context.Background()
	s, err := NewVaultStore(ctx, cfg)
	if err != nil {
		t.Fatalf("FEDTUNE_VAULT_TEST=1 but Vault at %s is unusable: %v", cfg.Address, err)
	}
	t.Cleanup(func() { s.Close() })
	mounts, err := s.Client().Sys().ListMountsWithContext(ctx)
	if err != nil {
		t.Fatalf("FEDTUNE_VAULT_TEST=1 but Vault at %s is unreachable: %v", cfg.Address, err)
	}
	for _, m := range []struct {
		path string
		in   vault.MountInput
	}{
		{testTransit, vault.MountInput{Type: "transit"}},
		{testKV, vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}},
		{testPKI, vault.MountInput{Type: "pki", Config: vault.MountConfigInput{MaxLeaseTTL: "87600h"}}},
	} {
		if _, ok := mounts[m.path+"/"]; ok {
			continue
		}
		if err := s.Client().Sys().MountWithContext(ctx, m.path, &m.in); err != nil {
			t.Fatalf("enabling %s: %v", m.path, err)
		}
	}
	return s, cfg
}

func randSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestVaultTransitSignVerifyRotate(t *testing.T) {
	s, _ := newVaultTestStore(t)
	ctx := context.Background()
	for _, alg := range []Algorithm{Ed25519, ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			name := "checkpoint-" + string(alg) + "-" + randSuffix()
			if err := s.CreateSigningKey(ctx, name, alg); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateSigningKey(ctx, name, alg); !errors.Is(err, ErrExists) {
				t.Fatalf("second create: %v, want ErrExists", err)
			}
			// The key is not exportable and has no plaintext backup.
			sec, err := s.Client().Logical().Read(testTransit + "/keys/" + name)
			if err != nil {
				t.Fatal(err)
			}
			if sec.Data["exportable"] != false || sec.Data["allow_plaintext_backup"] != false {
				t.Fatalf("key settings: exportable=%v allow_plaintext_backup=%v", sec.Data["exportable"], sec.Data["allow_plaintext_backup"])
			}
			if _, err := s.Client().Logical().Read(testTransit + "/export/signing-key/" + name); err == nil {
				t.Fatal("Vault exported the private key")
			}

			msg := []byte("fedtune.example/audit\n7\nYWJj\n")
			s1, err := s.Signer(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if s1.KeyVersion() != 1 {
				t.Fatalf("version %d", s1.KeyVersion())
			}
			sig1, err := s1.Sign(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			if alg == Ed25519 {
				if len(sig1) != ed25519.SignatureSize {
					t.Fatalf("signature is %d bytes, want 64", len(sig1))
				}
				checkSignedNote(t, s1)
			}
			pubs, err := s.PublicKeys(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if len(pubs) != 1 || pubs[0].Algorithm != alg {
				t.Fatalf("PublicKeys = %+v", pubs)
			}
			// Verify with the exported public key, through PEM.
			pemBytes, err := MarshalPublicKeyPEM(pubs[0].Key)
			if err != nil {
				t.Fatal(err)
			}
			pk, err := ParsePublicKeyPEM(pemBytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(pk, msg, sig1); err != nil {
				t.Fatalf("v1 signature does not verify with the exported key: %v", err)
			}
			if err := Verify(pk, append(msg, '!'), sig1); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("signature verified for another message: %v", err)
			}

			v, err := s.Rotate(ctx, name)
			if err != nil || v != 2 {
				t.Fatalf("Rotate = %d, %v", v, err)
			}
			s2, err := s.Signer(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if s2.KeyVersion() != 2 {
				t.Fatalf("current version %d after rotation", s2.KeyVersion())
			}
			sig2, err := s2.Sign(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			// The v1 signer stays pinned to version 1 after the rotation.
			sig1b, err := s1.Sign(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			pubs, err = s.PublicKeys(ctx, name)
			if err != nil || len(pubs) != 2 || pubs[0].Version != 1 || pubs[1].Version != 2 {
				t.Fatalf("PublicKeys after rotation = %+v, %v", pubs, err)
			}
			for _, c := range []struct {
				pub  int
				sig  []byte
				want bool
			}{{0, sig1, true}, {0, sig1b, true}, {1, sig2, true}, {1, sig1, false}, {0, sig2, false}} {
				err := Verify(pubs[c.pub].Key, msg, c.sig)
				if (err == nil) != c.want {
					t.Errorf("verify with v%d: %v, want ok=%v", c.pub+1, err, c.want)
				}
			}
			if alg == Ed25519 && string(sig1) != string(sig1b) {
				t.Error("Ed25519 signatures of one message by one key differ")
			}

			infos, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, in := range infos {
				if in.Name == name {
					found = true
					if in.CurrentVersion != 2 || len(in.Versions) != 2 || in.Algorithm != alg {
						t.Errorf("List entry %+v", in)
					}
				}
			}
			if !found {
				t.Errorf("List does not include %s", name)
			}

			// crypto.Signer view: a self-signed certificate verifies.
			cs, err := s.CryptoSigner(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			tmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1800000000, 0),
				IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
			der, err := x509.CreateCertificate(nil, tmpl, tmpl, cs.Public(), cs)
			if err != nil {
				t.Fatal(err)
			}
			cert, _ := x509.ParseCertificate(der)
			if err := cert.CheckSignatureFrom(cert); err != nil {
				t.Fatalf("certificate signed through Transit: %v", err)
			}
		})
	}
	if _, err := s.Signer(ctx, "missing-"+randSuffix()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Signer of a missing key: %v, want ErrNotFound", err)
	}
}

func TestVaultKV(t *testing.T) {
	s, _ := newVaultTestStore(t)
	ctx := context.Background()
	name := "enrol-" + randSuffix()
	if _, err := s.GetSecret(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing secret: %v, want ErrNotFound", err)
	}
	val := []byte{0, 1, 0xfe, 'a', '\n'}
	if err := s.PutSecret(ctx, name, val); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSecret(ctx, name)
	if err != nil || string(got) != string(val) {
		t.Fatalf("GetSecret = %x, %v", got, err)
	}
	if err := s.PutSecret(ctx, name, []byte("second")); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetSecret(ctx, name)
	if string(got) != "second" {
		t.Fatalf("after overwrite: %q", got)
	}
	// Written where the docs say: KV v2 data at <mount>/data/<prefix>/<name>.
	sec, err := s.Client().Logical().Read(testKV + "/data/fedtune-test/" + name)
	if err != nil || sec == nil {
		t.Fatalf("raw read: %v", err)
	}
}

// setupTestPKI creates a root CA in the test PKI mount (once) and a role
// for site certificates.
func setupTestPKI(t *testing.T, s *VaultStore) string {
	t.Helper()
	l := s.Client().Logical()
	if sec, _ := l.Read(testPKI + "/cert/ca"); sec == nil || sec.Data["certificate"] == "" {
		if _, err := l.Write(testPKI+"/root/generate/internal", map[string]any{
			"common_name": "fedtune test federation CA", "ttl": "87600h", "key_type": "ec", "key_bits": 256,
		}); err != nil {
			t.Fatal(err)
		}
	}
	role := "site"
	if _, err := l.Write(testPKI+"/roles/"+role, map[string]any{
		"allow_any_name":    true,
		"enforce_hostnames": false,
		"allow_ip_sans":     true,
		"allowed_uri_sans":  "spiffe://fedtune/*",
		"key_type":          "any",
		"server_flag":       true,
		"client_flag":       true,
		"max_ttl":           "72h",
		"no_store":          false,
	}); err != nil {
		t.Fatal(err)
	}
	return role
}

func TestVaultPKIIssueRevoke(t *testing.T) {
	s, _ := newVaultTestStore(t)
	ctx := context.Background()
	role := setupTestPKI(t, s)
	roots, err := s.Roots(ctx)
	if err != nil || len(roots) != 1 || !roots[0].IsCA {
		t.Fatalf("Roots = %v, %v", roots, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(roots[0])

	issue := func(cn string, ips []net.IP, uri string) (*IssuedCert, *ecdsa.PrivateKey) {
		t.Helper()
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		req := CertRequest{CommonName: cn, IPAddresses: ips, TTL: time.Hour, Role: role}
		if uri != "" {
			u, _ := url.Parse(uri)
			req.URIs = []*url.URL{u}
		}
		csr, err := NewCSR(key, req)
		if err != nil {
			t.Fatal(err)
		}
		req.CSR = csr
		req.PublicKey = key.Public()
		ic, err := s.Issue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return ic, key
	}

	// Without a CSR: a clear error.
	if _, err := s.Issue(ctx, CertRequest{CommonName: "x", PublicKey: ed25519.PublicKey(make([]byte, 32))}); err == nil || !strings.Contains(err.Error(), "CSR") {
		t.Fatalf("Issue without CSR: %v", err)
	}
	// A CSR whose key differs from PublicKey is refused before Vault.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := NewCSR(k1, CertRequest{CommonName: "x"})
	if _, err := s.Issue(ctx, CertRequest{CommonName: "x", CSR: csr, PublicKey: other.Public(), Role: role}); err == nil {
		t.Fatal("CSR with a different key accepted")
	}

	serverCert, serverKey := issue("aggregator", []net.IP{net.IPv4(127, 0, 0, 1)}, "")
	siteCert, siteKey := issue("site-a", nil, "spiffe://fedtune/site/site-a")
	if siteCert.Certificate.URIs[0].String() != "spiffe://fedtune/site/site-a" {
		t.Fatalf("URI SAN %v", siteCert.Certificate.URIs)
	}
	if _, err := siteCert.Certificate.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("site certificate does not chain to Roots: %v", err)
	}

	// mTLS over loopback: the server accepts a Vault-issued site
	// certificate unless the Vault CRL lists it.
	handshake := func(client *IssuedCert, key *ecdsa.PrivateKey) error {
		crl, err := s.CRL(ctx)
		if err != nil {
			return err
		}
		srvConf := &tls.Config{
			Certificates: []tls.Certificate{{Certificate: serverCert.DER(), PrivateKey: serverKey}},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS13,
			VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
				for _, e := range crl.RevokedCertificateEntries {
					if e.SerialNumber.Cmp(chains[0][0].SerialNumber) == 0 {
						return fmt.Errorf("certificate %s is revoked", serialHex(e.SerialNumber))
					}
				}
				return nil
			},
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", srvConf)
		if err != nil {
			return err
		}
		defer ln.Close()
		srvErr := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				srvErr <- err
				return
			}
			defer c.Close()
			err = c.(*tls.Conn).Handshake()
			if err == nil {
				_, err = c.Write([]byte("ok"))
			}
			srvErr <- err
		}()
		cliConf := &tls.Config{
			Certificates: []tls.Certificate{{Certificate: client.DER(), PrivateKey: key}},
			RootCAs:      pool,
			MinVersion:   tls.VersionTLS13,
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cliConf)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 2)
		_, rerr := io.ReadFull(c, buf)
		if err := <-srvErr; err != nil {
			return err
		}
		return rerr
	}
	if err := handshake(siteCert, siteKey); err != nil {
		t.Fatalf("handshake with a valid site certificate: %v", err)
	}
	if err := s.Revoke(ctx, siteCert.Certificate.SerialNumber); err != nil {
		t.Fatal(err)
	}
	crl, err := s.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, e := range crl.RevokedCertificateEntries {
		listed = listed || e.SerialNumber.Cmp(siteCert.Certificate.SerialNumber) == 0
	}
	if !listed {
		t.Fatal("revoked certificate is not on the CRL")
	}
	err = handshake(siteCert, siteKey)
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("handshake with a revoked certificate: %v, want refusal", err)
	}
	// Another site's certificate is still accepted.
	siteB, siteBKey := issue("site-b", nil, "spiffe://fedtune/site/site-b")
	if err := handshake(siteB, siteBKey); err != nil {
		t.Fatalf("handshake with site-b: %v", err)
	}
}

// TestVaultAppRoleLeastPrivilege logs in with AppRole under the
// aggregator policy of the documentation, signs, is refused everything
// else, and keeps working past the token's TTL because the store renews
// the token.
func TestVaultAppRoleLeastPrivilege(t *testing.T) {
	root, cfg := newVaultTestStore(t)
	ctx := context.Background()
	c := root.Client()
	auths, err := c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := auths["approle/"]; !ok {
		if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
			t.Fatal(err)
		}
	}
	key := "agg-" + randSuffix()
	if err := root.CreateSigningKey(ctx, key, Ed25519); err != nil {
		t.Fatal(err)
	}
	policyName := "fedtune-test-aggregator-" + randSuffix()
	policy, err := VaultPolicy("aggregator", cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Sys().PutPolicyWithContext(ctx, policyName, policy); err != nil {
		t.Fatal(err)
	}
	roleName := "fedtune-test-" + randSuffix()
	if _, err := c.Logical().Write("auth/approle/role/"+roleName, map[string]any{
		"token_policies": policyName,
		"token_ttl":      "4s",
		"token_max_ttl":  "1h",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := c.Logical().Read("auth/approle/role/" + roleName + "/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := c.Logical().Write("auth/approle/role/"+roleName+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	acfg := cfg
	acfg.Token = ""
	acfg.AppRole = &AppRoleAuth{RoleID: rid.Data["role_id"].(string), SecretID: sid.Data["secret_id"].(string)}
	var (
		mu       sync.Mutex
		authErrs []error
	)
	acfg.OnAuthError = func(err error) { mu.Lock(); authErrs = append(authErrs, err); mu.Unlock() }
	s, err := NewVaultStore(ctx, acfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	sg, err := s.Signer(ctx, key)
	if err != nil {
		t.Fatalf("aggregator policy cannot get a signer: %v", err)
	}
	msg := []byte("checkpoint\n")
	sig, err := sg.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(sg.Public(), msg, sig); err != nil {
		t.Fatal(err)
	}
	// Everything else is refused.
	if _, err := s.Rotate(ctx, key); err == nil {
		t.Error("aggregator policy may rotate")
	}
	if err := s.CreateSigningKey(ctx, "other-"+randSuffix(), Ed25519); err == nil {
		t.Error("aggregator policy may create keys")
	}
	if _, err := s.List(ctx); err == nil {
		t.Error("aggregator policy may list keys")
	}
	if err := s.PutSecret(ctx, "x", []byte("y")); err == nil {
		t.Error("aggregator policy may write secrets")
	}
	other := "other-" + randSuffix()
	if err := root.CreateSigningKey(ctx, other, Ed25519); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Logical().Write(cfg.TransitMount+"/sign/"+other, map[string]any{"input": "YQ=="}); err == nil {
		t.Error("aggregator policy may sign with another key")
	}

	// Outlive the 4 s TTL: renewal keeps the token valid.
	time.Sleep(7 * time.Second)
	if _, err := sg.Sign(ctx, msg); err != nil {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("signing after the token TTL: %v (renewal errors: %v)", err, authErrs)
	}
	self, err := s.Client().Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ttl, _ := self.TokenTTL(); ttl <= 0 {
		t.Fatalf("token TTL %v after renewal", ttl)
	}
}

func TestVaultTLSCustomCA(t *testing.T) {
	cfg := vaultTestConfig(t)
	if !strings.HasPrefix(cfg.Address, "https://") || cfg.CACertFile == "" {
		t.Skip("Vault is not served over TLS with a custom CA (VAULT_CACERT)")
	}
	ctx := context.Background()
	// Without the custom CA the server's certificate is unknown.
	noCA := cfg
	noCA.CACertFile = ""
	if s, err := NewVaultStore(ctx, noCA); err == nil {
		s.Close()
		t.Fatal("connected without the custom CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error without CA does not mention the certificate: %v", err)
	}
	// The CA as bytes works as well as the file.
	pemBytes, err := os.ReadFile(cfg.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	byPEM := cfg
	byPEM.CACertFile = ""
	byPEM.CACertPEM = pemBytes
	s, err := NewVaultStore(ctx, byPEM)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A wrong server name is refused.
	badName := cfg
	badName.TLSServerName = "not-vault.invalid"
	if s, err := NewVaultStore(ctx, badName); err == nil {
		s.Close()
		t.Fatal("connected with a wrong TLS server name")
	}
}

// TestVaultNoCredentialsInOutput checks that neither the token nor the
// AppRole secret ID appears in fmt output of the store or in errors.
func TestVaultNoCredentialsInOutput(t *testing.T) {
	cfg := vaultTestConfig(t)
	ctx := context.Background()
	s, _ := newVaultTestStore(t)
	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x"} {
		fmt.Fprintf(&out, verb+"\n", s)
	}
	bad := cfg
	bad.Token = "hvs.bogus-token-" + randSuffix()
	_, err := NewVaultStore(ctx, bad)
	if err == nil {
		t.Fatal("bogus token accepted")
	}
	fmt.Fprintln(&out, err)
	bad.Token = ""
	bad.AppRole = &AppRoleAuth{RoleID: "role-" + randSuffix(), SecretID: "secret-id-" + randSuffix()}
	_, err = NewVaultStore(ctx, bad)
	if err == nil {
		t.Fatal("bogus AppRole accepted")
	}
	fmt.Fprintln(&out, err)
	for _, secret := range []string{cfg.Token, "hvs.bogus-token-", bad.AppRole.SecretID} {
		if strings.Contains(out.String(), secret) {
			t.Fatalf("credential %q appears in output:\n%s", secret, out.String())
		}
	}
}

func TestVaultConfigValidate(t *testing.T) {
	for _, c := range []VaultConfig{
		{},
		{Address: "http://x"},
		{Address: "http://x", Token: "t", AppRole: &AppRoleAuth{RoleID: "r", SecretID: "s"}},
		{Address: "http://x", AppRole: &AppRoleAuth{RoleID: "r"}},
		{Address: "http://x", Token: "t", TransitMount: "/transit"},
	} {
		d := c.withDefaults()
		if err := d.validate(); err == nil {
			t.Errorf("%+v accepted", c.Address)
		}
	}
	// A namespace is sent as X-Vault-Namespace; Vault Community Edition
	// has no namespaces, so only the client side is checked here.
	s := &VaultStore{cfg: VaultConfig{Address: "http://x", Namespace: "hospital-a"}}
	if !strings.Contains(s.String(), "hospital-a") {
		t.Error("String does not name the namespace")
	}
}
