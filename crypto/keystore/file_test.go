package keystore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// testOpts keeps scrypt cheap in tests; the format is the same.
var testOpts = FileOptions{ScryptLogN: 10}

var pass = []byte("correct horse battery staple")

func newTestStore(t *testing.T) (*FileStore, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := InitFileStoreWith(dir, pass, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestFileStoreInitOpen(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %#o, want 0700", st.Mode().Perm())
	}
	st, err = os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %#o, want 0600", st.Mode().Perm())
	}
	if err := s.CreateSigningKey(ctx, "audit", Ed25519); err != nil {
		t.Fatal(err)
	}
	if _, err := InitFileStoreWith(dir, pass, testOpts); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v, want ErrExists", err)
	}
	s2, err := OpenFileStore(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Name != "audit" || l[0].CurrentVersion != 1 || l[0].Algorithm != Ed25519 {
		t.Fatalf("List = %+v", l)
	}
	if _, err := InitFileStoreWith(t.TempDir(), nil, testOpts); err == nil {
		t.Fatal("empty passphrase accepted")
	}
}

func TestFileStoreWrongPassphrase(t *testing.T) {
	_, dir := newTestStore(t)
	_, err := OpenFileStore(dir, []byte("Tr0ub4dor&3"))
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("err = %v, want ErrWrongPassphrase", err)
	}
	if errors.Is(err, ErrTampered) {
		t.Fatalf("wrong passphrase reported as tampering: %v", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Errorf("error %q does not name the file", err)
	}
}

func TestFileStorePermissions(t *testing.T) {
	s, dir := newTestStore(t)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(s.Path(), mode); err != nil {
			t.Fatal(err)
		}
		_, err := OpenFileStore(dir, pass)
		var pe *PermissionError
		if !errors.As(err, &pe) {
			t.Fatalf("mode %#o: err = %v, want *PermissionError", mode, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, s.Path()) || !strings.Contains(msg, fmt.Sprintf("%#o", mode)) {
			t.Errorf("error %q does not name the file and mode %#o", msg, mode)
		}
		// An open store refuses too.
		if _, err := s.List(context.Background()); !errors.As(err, &pe) {
			t.Errorf("List after chmod %#o: %v", mode, err)
		}
	}
	if err := os.Chmod(s.Path(), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileStore(dir, pass); err != nil {
		t.Fatalf("mode 0400 refused: %v", err)
	}
}

// TestFileStoreTamper flips every byte of a valid file (and also rewrites
// the checksum so that the AEAD itself is what catches it) and requires
// rejection with ErrTampered or ErrWrongPassphrase, never success.
func TestFileStoreTamper(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	if err := s.CreateSigningKey(ctx, "k", Ed25519); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	keys := s.keys
	for i := range orig {
		for _, fixSum := range []bool{false, true} {
			data := bytes.Clone(orig)
			data[i] ^= 0x01
			if fixSum {
				data = refreshChecksum(data)
				if bytes.Equal(data, orig) {
					continue // the flip was in the checksum itself
				}
			}
			if err := os.WriteFile(s.Path(), data, 0o600); err != nil {
				t.Fatal(err)
			}
			// Reuse the derived keys instead of running scrypt per byte
			// (the KDF-parameter change is checked by params.equal).
			f, err := parseFile(s.Path(), data)
			if err == nil {
				if !f.params.equal(keys.params) {
					continue // a different KDF input gives a different key: ErrWrongPassphrase
				}
				_, err = f.open(s.Path(), keys)
			}
			if err == nil {
				t.Fatalf("byte %d flipped (fixSum=%v): file accepted", i, fixSum)
			}
			if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("byte %d: error %v is neither ErrTampered nor ErrWrongPassphrase", i, err)
			}
		}
	}
	// End to end through OpenFileStore: a flip in the ciphertext, without
	// and with a fixed-up checksum.
	idx := bytes.Index(orig, []byte("---\n")) + 10
	for _, fixSum := range []bool{false, true} {
		data := bytes.Clone(orig)
		data[idx] ^= 0x04
		if fixSum {
			data = refreshChecksum(data)
		}
		os.WriteFile(s.Path(), data, 0o600)
		_, err := OpenFileStore(dir, pass)
		if !errors.Is(err, ErrTampered) {
			t.Fatalf("fixSum=%v: err = %v, want ErrTampered", fixSum, err)
		}
		if !strings.Contains(err.Error(), s.Path()) {
			t.Errorf("error %q does not name the file", err)
		}
	}
	// Truncation.
	os.WriteFile(s.Path(), orig[:len(orig)/2], 0o600)
	if _, err := OpenFileStore(dir, pass); !errors.Is(err, ErrTampered) {
		t.Fatalf("truncated: err = %v", err)
	}
}

func refreshChecksum(data []byte) []byte {
	i := bytes.LastIndex(data[:len(data)-1], []byte("\n")) + 1
	if i <= 0 || !bytes.HasPrefix(data[i:], []byte("sha256 ")) {
		return data
	}
	sum := sha256Sum(data[:i])
	return append(bytes.Clone(data[:i]), []byte("sha256 "+hex.EncodeToString(sum)+"\n")...)
}

func TestFileStoreFormatErrors(t *testing.T) {
	s, dir := newTestStore(t)
	orig, _ := os.ReadFile(s.Path())
	lines := strings.Split(string(orig), "\n")
	cases := []struct {
		line int // 1-based line to replace
		with string
		want string
	}{
		{1, "fedtune-keystore v9", ":1: want"},
		{2, "kdf scrypt logN=40 r=8 p=1 salt=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), ":2: logN=40 out of range"},
		{2, "kdf argon2 x", ":2: want"},
		{3, "aead aes nonce=AA==", ":3: want"},
		{4, "check !!", ":4: check"},
		{5, "--", ":5: want"},
	}
	for _, c := range cases {
		l := append([]string(nil), lines...)
		l[c.line-1] = c.with
		data := refreshChecksum([]byte(strings.Join(l, "\n")))
		os.WriteFile(s.Path(), data, 0o600)
		_, err := OpenFileStore(dir, pass)
		var fe *FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrTampered) {
			t.Fatalf("line %d=%q: err = %v, want *FormatError", c.line, c.with, err)
		}
		if !strings.Contains(err.Error(), s.Path()+c.want) {
			t.Errorf("line %d: error %q, want it to contain %q", c.line, err, s.Path()+c.want)
		}
	}
}

func TestFileStoreRotateAndVerify(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []Algorithm{Ed25519, ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			s, dir := newTestStore(t)
			if err := s.CreateSigningKey(ctx, "site", alg); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateSigningKey(ctx, "site", alg); !errors.Is(err, ErrExists) {
				t.Fatalf("duplicate create: %v", err)
			}
			msg := []byte("checkpoint 1\n")
			s1, err := s.Signer(ctx, "site")
			if err != nil {
				t.Fatal(err)
			}
			sig1, err := s1.Sign(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			if alg == Ed25519 && len(sig1) != ed25519.SignatureSize {
				t.Fatalf("signature is %d bytes", len(sig1))
			}
			v, err := s.Rotate(ctx, "site")
			if err != nil || v != 2 {
				t.Fatalf("Rotate = %d, %v", v, err)
			}
			// s1 stays bound to version 1.
			if s1.KeyVersion() != 1 {
				t.Fatalf("old signer now at version %d", s1.KeyVersion())
			}
			// Reopen from disk: rotation persisted.
			s, err = OpenFileStoreWith(dir, pass, testOpts)
			if err != nil {
				t.Fatal(err)
			}
			s2, err := s.Signer(ctx, "site")
			if err != nil {
				t.Fatal(err)
			}
			if s2.KeyVersion() != 2 {
				t.Fatalf("current version %d, want 2", s2.KeyVersion())
			}
			sig2, err := s2.Sign(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			pubs, err := s.PublicKeys(ctx, "site")
			if err != nil {
				t.Fatal(err)
			}
			if len(pubs) != 2 || pubs[0].Version != 1 || pubs[1].Version != 2 || pubs[0].Algorithm != alg {
				t.Fatalf("PublicKeys = %+v", pubs)
			}
			if err := Verify(pubs[0].Key, msg, sig1); err != nil {
				t.Errorf("v1 signature: %v", err)
			}
			if err := Verify(pubs[1].Key, msg, sig2); err != nil {
				t.Errorf("v2 signature: %v", err)
			}
			if err := Verify(pubs[1].Key, msg, sig1); !errors.Is(err, ErrBadSignature) {
				t.Errorf("v1 signature verified under v2 key: %v", err)
			}
			if err := Verify(pubs[0].Key, []byte("checkpoint 2\n"), sig1); !errors.Is(err, ErrBadSignature) {
				t.Errorf("signature verified for another message: %v", err)
			}
			// Public PEM round trip.
			pemBytes, err := MarshalPublicKeyPEM(pubs[1].Key)
			if err != nil {
				t.Fatal(err)
			}
			pk, err := ParsePublicKeyPEM(pemBytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(pk, msg, sig2); err != nil {
				t.Errorf("PEM round trip: %v", err)
			}
			l, _ := s.List(ctx)
			if len(l) != 1 || l[0].CurrentVersion != 2 || len(l[0].Versions) != 2 {
				t.Fatalf("List = %+v", l)
			}
			if _, err := s.Rotate(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("rotate missing: %v", err)
			}
		})
	}
}

// TestFileStoreSignedNote checks that an Ed25519 file-store signature is
// byte-compatible with golang.org/x/mod/sumdb/note, the signed-note format
// of audit checkpoints.
func TestFileStoreSignedNote(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	if err := s.CreateSigningKey(ctx, "log", Ed25519); err != nil {
		t.Fatal(err)
	}
	sg, err := s.Signer(ctx, "log")
	if err != nil {
		t.Fatal(err)
	}
	checkSignedNote(t, sg)
}

// noteSigner adapts a Signer to note.Signer.
type noteSigner struct {
	name string
	hash uint32
	s    Signer
}

func (n noteSigner) Name() string                    { return n.name }
func (n noteSigner) KeyHash() uint32                 { return n.hash }
func (n noteSigner) Sign(msg []byte) ([]byte, error) { return n.s.Sign(context.Background(), msg) }

func checkSignedNote(t *testing.T, sg Signer) {
	t.Helper()
	const origin = "fedtune.example/audit"
	pub := sg.Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	text := origin + "\n42\nqINS1GRFhWHwdkUeqLEoP4SVVPEYMkVXSPvkpqqKR6A=\n"
	msg, err := note.Sign(&note.Note{Text: text}, noteSigner{origin, v.KeyHash(), sg})
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open: %v\n%s", err, msg)
	}
	if n.Text != text || len(n.Sigs) != 1 {
		t.Fatalf("opened note %+v", n)
	}
}

func TestFileStoreSecrets(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	if _, err := s.GetSecret(ctx, "token"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSecret missing: %v", err)
	}
	val := []byte{0, 1, 2, 0xff, 'x'}
	if err := s.PutSecret(ctx, "token", val); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFileStoreWith(dir, pass, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSecret(ctx, "token")
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("GetSecret = %x, %v", got, err)
	}
	// Long enough that random ciphertext cannot contain it by chance.
	const v2 = "second-secret-value-v2"
	if err := s.PutSecret(ctx, "token", []byte(v2)); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetSecret(ctx, "token")
	if string(got) != v2 {
		t.Fatalf("overwrite: %q", got)
	}
	if err := s.PutSecret(ctx, "../etc", nil); err == nil {
		t.Fatal("bad name accepted")
	}
	raw, _ := os.ReadFile(s.Path())
	if bytes.Contains(raw, []byte(v2)) || bytes.Contains(raw, []byte(`"token"`)) {
		t.Fatal("secret or its name stored in the clear")
	}
}

func TestFileStoreCryptoSigner(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	for _, alg := range []Algorithm{Ed25519, ECDSAP256} {
		name := "ca-" + string(alg)
		if err := s.CreateSigningKey(ctx, name, alg); err != nil {
			t.Fatal(err)
		}
		cs, err := s.CryptoSigner(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          bigOne(),
			NotBefore:             time.Unix(1700000000, 0),
			NotAfter:              time.Unix(1800000000, 0),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(nil, tmpl, tmpl, cs.Public(), cs)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.CheckSignatureFrom(cert); err != nil {
			t.Fatalf("%s: self-signature: %v", alg, err)
		}
		switch alg {
		case Ed25519:
			_, ok := cs.Public().(ed25519.PublicKey)
			if !ok {
				t.Fatal("wrong public key type")
			}
		case ECDSAP256:
			_, ok := cs.Public().(*ecdsa.PublicKey)
			if !ok {
				t.Fatal("wrong public key type")
			}
		}
	}
}

// TestFileStoreNoKeyMaterialInOutput formats every value that holds a
// private key with every fmt verb and checks that the key bytes appear in
// none of the renderings, nor in any error.
func TestFileStoreNoKeyMaterialInOutput(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	s.CreateSigningKey(ctx, "ed", Ed25519)
	s.CreateSigningKey(ctx, "ec", ECDSAP256)
	s.PutSecret(ctx, "sec", []byte("hunter2-secret-value"))
	var needles [][]byte
	p := func() *filePayload {
		s.mu.Lock()
		defer s.mu.Unlock()
		p, err := s.load()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}()
	for _, k := range p.Keys {
		for _, v := range k.Versions {
			switch priv := v.priv.(type) {
			case ed25519.PrivateKey:
				needles = append(needles, priv.Seed())
			case *ecdsa.PrivateKey:
				d, _ := priv.Bytes()
				needles = append(needles, d)
			}
		}
	}
	needles = append(needles, s.keys.aeadKey, []byte("hunter2-secret-value"))
	var objs []any
	objs = append(objs, s)
	for _, n := range []string{"ed", "ec"} {
		sg, _ := s.Signer(ctx, n)
		cs, _ := s.CryptoSigner(ctx, n)
		objs = append(objs, sg, cs, struct{ S Signer }{sg})
	}
	var out strings.Builder
	for _, o := range objs {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
			fmt.Fprintf(&out, verb+"\n", o)
		}
	}
	// Errors from a tampered file and a wrong passphrase.
	raw, _ := os.ReadFile(s.Path())
	_, err := OpenFileStore(dir, []byte("wrong"))
	fmt.Fprintln(&out, err)
	raw[len(raw)/2] ^= 1
	os.WriteFile(s.Path(), refreshChecksum(raw), 0o600)
	_, err = OpenFileStore(dir, pass)
	fmt.Fprintln(&out, err)
	assertNoNeedles(t, out.String(), needles)
}

func assertNoNeedles(t *testing.T, haystack string, needles [][]byte) {
	t.Helper()
	for _, n := range needles {
		for _, enc := range []string{
			string(n), hex.EncodeToString(n), strings.ToUpper(hex.EncodeToString(n)),
			base64.StdEncoding.EncodeToString(n), base64.RawURLEncoding.EncodeToString(n),
			fmt.Sprint(n), fmt.Sprintf("%#v", n),
		} {
			if len(enc) >= 8 && strings.Contains(haystack, enc) {
				t.Fatalf("key material found in output: %q", haystack)
			}
		}
		// Also any 8-byte window of the raw key in hex.
		h := hex.EncodeToString(n)
		for i := 0; i+16 <= len(h); i += 2 {
			if strings.Contains(haystack, h[i:i+16]) {
				t.Fatalf("key material fragment %s found in output", h[i:i+16])
			}
		}
	}
}

func TestFileStoreConcurrent(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	s.CreateSigningKey(ctx, "k", Ed25519)
	s2, err := OpenFileStoreWith(dir, pass, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2 // a second handle stands in for a second process
			}
			if _, err := st.Rotate(ctx, "k"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	pubs, err := s.PublicKeys(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(pubs) != 9 {
		t.Fatalf("%d versions after 8 concurrent rotations, want 9", len(pubs))
	}
}
