package server

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testCA(t *testing.T) *CA {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	ca, _, err := NewCA(priv, nil, "fed", rand.Reader, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIdentityFromCert(t *testing.T) {
	ca := testCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := ca.Issue(key.Public(), RoleSite, "st-marys", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := IdentityFromCert(c)
	if err != nil || id.Role != RoleSite || id.Name != "st-marys" {
		t.Fatalf("%+v %v", id, err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"fedtune://root/x", "fedtune://site/Bad Name", "fedtune://site/"} {
		uu, _ := url.Parse(u)
		if _, err := IdentityFromCert(&x509.Certificate{URIs: []*url.URL{uu}, SerialNumber: c.SerialNumber}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	two := &x509.Certificate{URIs: []*url.URL{IdentityURI(RoleSite, "a"), IdentityURI(RoleAdmin, "b")}, SerialNumber: c.SerialNumber}
	if _, err := IdentityFromCert(two); err == nil {
		t.Error("certificate with two identities accepted")
	}
}

// The handshake is TLS 1.3 with the hybrid post-quantum key exchange, and a
// TLS 1.2 client is refused.
func TestTLSPostQuantum(t *testing.T) {
	ca := testCA(t)
	skey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sc, err := ca.Issue(skey.Public(), RoleServer, "fed", time.Hour, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ckey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cc, _ := ca.Issue(ckey.Public(), RoleSite, "a", time.Hour, nil)
	l, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLSConfig(tls.Certificate{Certificate: [][]byte{sc.Raw}, PrivateKey: skey}, ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	cert := tls.Certificate{Certificate: [][]byte{cc.Raw}, PrivateKey: ckey}
	conn, err := tls.Dial("tcp", l.Addr().String(), ClientTLSConfig(&cert, ca.Pool(), "localhost"))
	if err != nil {
		t.Fatal(err)
	}
	st := conn.ConnectionState()
	conn.Close()
	if st.Version != tls.VersionTLS13 || st.CurveID != tls.X25519MLKEM768 {
		t.Fatalf("version %x curve %v, want TLS 1.3 with X25519MLKEM768", st.Version, st.CurveID)
	}
	old := ClientTLSConfig(&cert, ca.Pool(), "localhost")
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if c, err := tls.Dial("tcp", l.Addr().String(), old); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 handshake accepted")
	}
}

func TestDirDigest(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("hello"), 0o600)
	os.WriteFile(filepath.Join(dir, "b"), []byte(""), 0o600)
	os.WriteFile(filepath.Join(dir, ".hidden"), []byte("ignored"), 0o600)
	got, err := DirDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Computed independently with Python's hashlib:
	//   h = sha256(); for name, data in [("a", b"hello"), ("b", b"")]:
	//       h.update(name + b"\0" + str(len(data)) + b"\0"); h.update(sha256(data).digest())
	const want = "sha256:27c3dda8b0f41e791d49afcfb6f8c827a66dfedbdfa084fb21d33c981694ddd6"
	if got != want {
		t.Fatalf("DirDigest = %s, want %s", got, want)
	}
	os.WriteFile(filepath.Join(dir, "b"), []byte("x"), 0o600)
	if d2, _ := DirDigest(dir); d2 == got {
		t.Fatal("digest did not change with content")
	}
}

func validConfig(t *testing.T) *Config {
	t.Helper()
	c := &Config{Federation: "f", DataDir: t.TempDir(), BaseModel: t.TempDir(),
		Round: RoundConfig{NoiseMultiplier: 1, Steps: 1, Threshold: 2, MinSites: 2}}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigValidate(t *testing.T) {
	for field, mut := range map[string]func(*Config){
		"federation":               func(c *Config) { c.Federation = "" },
		"listen":                   func(c *Config) { c.Listen = "nope" },
		"base_model":               func(c *Config) { c.BaseModel = "/does/not/exist" },
		"keystore.type":            func(c *Config) { c.Keystore.Type = "hsm" },
		"round.noise_multiplier":   func(c *Config) { c.Round.NoiseMultiplier = 0 },
		"round.threshold":          func(c *Config) { c.Round.Threshold = 1 },
		"round.min_sites":          func(c *Config) { c.Round.MinSites = 1 },
		"round.delta":              func(c *Config) { c.Round.Delta = 1 },
		"round.target_modules[0]":  func(c *Config) { c.Round.TargetModules = []string{"lm_head"} },
		"round.train_timeout":      func(c *Config) { c.Round.TrainTimeout = Duration(time.Millisecond * 200) },
		"limits.max_message_bytes": func(c *Config) { c.Limits.MaxMessageBytes = 10 },
		"cert_ttl":                 func(c *Config) { c.CertTTL = Duration(time.Second) },
		"sites[1]":                 func(c *Config) { c.Sites = []string{"a", "a"} },
	} {
		c := validConfig(t)
		mut(c)
		err := c.Validate()
		var fe *fieldError
		if !errors.As(err, &fe) || fe.field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

func TestDecodeJSONCErrors(t *testing.T) {
	var c Config
	for _, tc := range []struct{ in, want string }{
		{"{\n  // comment\n  \"listen\": 5\n}", "f.json:3: listen"},
		{"{\n\n  \"nope\": 1\n}", "f.json:3: nope: unknown field"},
		{"{\n  \"listen\": \"a\",\n}", "f.json:3"},
		{"{} {}", "trailing data"},
		{"{\"round\": {\"stage_timeout\": \"x\"}}", "stage_timeout"},
	} {
		err := DecodeJSONC("f.json", []byte(tc.in), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
	// A comment marker inside a string is not a comment.
	var v struct{ A string }
	if err := DecodeJSONC("f", []byte(`{"A": "http://x"} // c`), &v); err != nil || v.A != "http://x" {
		t.Fatalf("%v %q", err, v.A)
	}
}

func FuzzDecodeJSONC(f *testing.F) {
	for _, s := range []string{`{}`, `{"listen": "a:1"} // x`, "{\n// c\n\"round\": {\"steps\": 3}}", `{"cert_ttl": "1h"}`, `"`, `{"a":"//"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		err := DecodeJSONC("f", b, &c)
		if err == nil {
			return
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.File != "f" {
			t.Fatalf("error without file: %v", err)
		}
	})
}

var _ = net.IPv4len
