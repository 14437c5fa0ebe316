package keystore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/golden-v1.keystore.enc")

// detReader is a deterministic stream, SHA-256(seed || counter), for
// golden files only.
type detReader struct {
	seed []byte
	ctr  uint64
	buf  []byte
}

func (d *detReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(d.buf) == 0 {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], d.ctr)
			d.ctr++
			h := sha256.Sum256(append(bytes.Clone(d.seed), c[:]...))
			d.buf = h[:]
		}
		k := copy(p[n:], d.buf)
		d.buf = d.buf[k:]
		n += k
	}
	return n, nil
}

const goldenPass = "fedtune golden passphrase"

func writeGolden(t *testing.T, dir string) []byte {
	t.Helper()
	opts := FileOptions{
		Rand:       &detReader{seed: []byte("fedtune keystore golden v1")},
		Now:        func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
		ScryptLogN: 10,
	}
	s, err := InitFileStoreWith(dir, []byte(goldenPass), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.CreateSigningKey(ctx, "audit-checkpoint", Ed25519); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(ctx, "audit-checkpoint"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSecret(ctx, "site-a.enrolment", []byte("golden secret")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestFileStoreGolden pins the file format: the same inputs give the same
// bytes, and a file written by an earlier build still opens with the same
// keys.
func TestFileStoreGolden(t *testing.T) {
	golden := filepath.Join("testdata", "golden-v1.keystore.enc")
	data := writeGolden(t, filepath.Join(t.TempDir(), "k"))
	if *rewrite {
		if err := os.WriteFile(golden, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("file format changed (run with -rewrite only for an intended change):\ngot:\n%s\nwant:\n%s", data, want)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), want, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFileStore(dir, []byte(goldenPass))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pubs, err := s.PublicKeys(ctx, "audit-checkpoint")
	if err != nil || len(pubs) != 2 {
		t.Fatalf("PublicKeys = %v, %v", pubs, err)
	}
	// Known answers computed independently by testdata/golden_check.py
	// (Python hashlib scrypt, HMAC-based HKDF, a from-spec HChaCha20 and the
	// cryptography package's ChaCha20-Poly1305 and Ed25519).
	wantPub := []string{
		"5b9cd22e6b7c08e215d4913e252ba4568e6d34e13b2c15d6e9f9577a39f12ff4",
		"46a344929c3ad7e56bca7b676da9d2bfdb2c4e4cdca8b3a0989dfb12079c8c97",
	}
	const wantSig = "7022ba9464056931f3060673895ffee665dd5b8e9aff27beab66ea0179f5742e" +
		"5375bf1d9f9d28af4a5cdb7a29feabd12f835df51ebeae987133614396910c0a"
	for i, p := range pubs {
		if got := hex.EncodeToString(p.Key.(ed25519.PublicKey)); got != wantPub[i] {
			t.Errorf("version %d public key %s, want %s", p.Version, got, wantPub[i])
		}
	}
	sg, err := s.Signer(ctx, "audit-checkpoint")
	if err != nil || sg.KeyVersion() != 2 {
		t.Fatalf("Signer: %v, %v", sg, err)
	}
	sig, _ := sg.Sign(ctx, []byte("golden\n"))
	if hex.EncodeToString(sig) != wantSig {
		t.Errorf("signature %x, want %s", sig, wantSig)
	}
	sec, err := s.GetSecret(ctx, "site-a.enrolment")
	if err != nil || string(sec) != "golden secret" {
		t.Fatalf("GetSecret = %q, %v", sec, err)
	}
}
