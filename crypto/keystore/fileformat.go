package keystore

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/scrypt"
)

// The encrypted key store file. It is text, so that a damaged file gives an
// error naming the line:
//
//	fedtune-keystore v1
//	kdf scrypt logN=17 r=8 p=1 salt=<base64, 32 bytes>
//	aead xchacha20poly1305 nonce=<base64, 24 bytes>
//	check <base64, 16 bytes>
//	---
//	<ciphertext, base64, 64 characters a line>
//	sha256 <hex SHA-256 of every byte before this line>
//
// The header (the first four lines with their newlines) is the associated
// data of the AEAD, so changing the KDF parameters, the nonce or the check
// value makes decryption fail. The scrypt output is the input keying
// material of HKDF-SHA256, which derives the AEAD key and the check value
// (a passphrase verifier that tells a wrong passphrase from a modified
// file; it offers no guessing oracle the ciphertext does not already offer).
// The trailing SHA-256 is not a MAC: it lets Open tell accidental damage or
// a naive edit from a wrong passphrase before spending time on the KDF.

const (
	fileMagic       = "fedtune-keystore v1"
	saltSize        = 32
	checkSize       = 16
	payloadLineSize = 64

	// DefaultScryptLogN is log2 of the scrypt cost parameter N used for new
	// stores: N=2^17, r=8, p=1 takes 128 MiB and about half a second, the
	// OWASP recommendation for scrypt.
	DefaultScryptLogN = 17
	minScryptLogN     = 10
	maxScryptLogN     = 22
)

type kdfParams struct {
	logN, r, p int
	salt       []byte
}

func (k kdfParams) equal(o kdfParams) bool {
	return k.logN == o.logN && k.r == o.r && k.p == o.p && bytes.Equal(k.salt, o.salt)
}

// derivedKeys is what a passphrase gives for one set of KDF parameters.
type derivedKeys struct {
	params  kdfParams
	aeadKey []byte
	check   []byte
}

func deriveKeys(passphrase []byte, params kdfParams) (*derivedKeys, error) {
	// RFC 7914 §2: scrypt(P, S, N=2^logN, r, p, dkLen=32).
	master, err := scrypt.Key(passphrase, params.salt, 1<<params.logN, params.r, params.p, 32)
	if err != nil {
		return nil, fmt.Errorf("keystore: scrypt: %w", err)
	}
	// RFC 5869 §2.2-2.3: HKDF-Extract then HKDF-Expand with a distinct info
	// string per derived key.
	aeadKey, err := hkdf.Key(sha256.New, master, nil, "fedtune-keystore v1 aead key", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	check, err := hkdf.Key(sha256.New, master, nil, "fedtune-keystore v1 passphrase check", checkSize)
	if err != nil {
		return nil, err
	}
	clear(master)
	return &derivedKeys{params: params, aeadKey: aeadKey, check: check}, nil
}

// FormatError reports a key store file that does not parse. It wraps
// ErrTampered.
type FormatError struct {
	Path string
	Line int // 1-based; 0 when the problem is not on one line
	Msg  string
}

func (e *FormatError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("keystore: %s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("keystore: %s: %s", e.Path, e.Msg)
}

func (e *FormatError) Unwrap() error { return ErrTampered }

// sealedFile is a parsed key store file, still encrypted.
type sealedFile struct {
	params     kdfParams
	nonce      []byte
	check      []byte
	header     []byte // the AEAD's associated data
	ciphertext []byte
}

func encodeHeader(params kdfParams, nonce, check []byte) []byte {
	b64 := base64.StdEncoding.Strict()
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s\n", fileMagic)
	fmt.Fprintf(&buf, "kdf scrypt logN=%d r=%d p=%d salt=%s\n", params.logN, params.r, params.p, b64.EncodeToString(params.salt))
	fmt.Fprintf(&buf, "aead xchacha20poly1305 nonce=%s\n", b64.EncodeToString(nonce))
	fmt.Fprintf(&buf, "check %s\n", b64.EncodeToString(check))
	return buf.Bytes()
}

// seal encrypts plaintext and returns the complete file.
func seal(keys *derivedKeys, nonce, plaintext []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(keys.aeadKey)
	if err != nil {
		return nil, err
	}
	header := encodeHeader(keys.params, nonce, keys.check)
	// draft-irtf-cfrg-xchacha-03 §2: XChaCha20-Poly1305 with a random
	// 192-bit nonce; the header is the associated data.
	ct := aead.Seal(nil, nonce, plaintext, header)
	var buf bytes.Buffer
	buf.Write(header)
	buf.WriteString("---\n")
	enc := base64.StdEncoding.EncodeToString(ct)
	for len(enc) > payloadLineSize {
		buf.WriteString(enc[:payloadLineSize])
		buf.WriteByte('\n')
		enc = enc[payloadLineSize:]
	}
	buf.WriteString(enc)
	buf.WriteByte('\n')
	sum := sha256.Sum256(buf.Bytes())
	fmt.Fprintf(&buf, "sha256 %s\n", hex.EncodeToString(sum[:]))
	return buf.Bytes(), nil
}

// parseFile parses a key store file without decrypting it.
func parseFile(path string, data []byte) (*sealedFile, error) {
	fail := func(line int, format string, args ...any) error {
		return &FormatError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) == 0 {
		return nil, fail(0, "file is empty")
	}
	if data[len(data)-1] != '\n' {
		return nil, fail(0, "file does not end in a newline (truncated?)")
	}
	lines := strings.Split(string(data[:len(data)-1]), "\n")
	if len(lines) < 7 {
		return nil, fail(0, "file has %d lines, want at least 7 (truncated?)", len(lines))
	}
	if lines[0] != fileMagic {
		return nil, fail(1, "want %q, found %q", fileMagic, clip(lines[0]))
	}

	// Checksum first: a damaged file should say so, not "wrong passphrase".
	last := len(lines) - 1
	sumHex, ok := strings.CutPrefix(lines[last], "sha256 ")
	if !ok {
		return nil, fail(last+1, "want \"sha256 <hex>\", found %q", clip(lines[last]))
	}
	want, err := hex.DecodeString(sumHex)
	if err != nil || len(want) != sha256.Size {
		return nil, fail(last+1, "checksum is not 64 hex digits")
	}
	body := data[:len(data)-len(lines[last])-1]
	got := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return nil, fail(0, "SHA-256 checksum does not match the contents: the file was modified or damaged")
	}

	f := &sealedFile{}
	b64 := base64.StdEncoding.Strict()

	// Line 2: kdf scrypt logN=.. r=.. p=.. salt=..
	fields := strings.Split(lines[1], " ")
	if len(fields) != 6 || fields[0] != "kdf" || fields[1] != "scrypt" {
		return nil, fail(2, "want \"kdf scrypt logN=<n> r=<n> p=<n> salt=<base64>\"")
	}
	ints := map[string]*int{"logN": &f.params.logN, "r": &f.params.r, "p": &f.params.p}
	for i, name := range []string{"logN", "r", "p"} {
		v, ok := strings.CutPrefix(fields[2+i], name+"=")
		if !ok {
			return nil, fail(2, "field %d: want %s=<n>", 3+i, name)
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fail(2, "%s: %q is not an integer", name, clip(v))
		}
		*ints[name] = n
	}
	if f.params.logN < minScryptLogN || f.params.logN > maxScryptLogN {
		return nil, fail(2, "logN=%d out of range [%d, %d]", f.params.logN, minScryptLogN, maxScryptLogN)
	}
	if f.params.r < 1 || f.params.r > 32 || f.params.p < 1 || f.params.p > 16 {
		return nil, fail(2, "r=%d p=%d out of range (want 1<=r<=32, 1<=p<=16)", f.params.r, f.params.p)
	}
	salt, ok := strings.CutPrefix(fields[5], "salt=")
	if !ok {
		return nil, fail(2, "field 6: want salt=<base64>")
	}
	if f.params.salt, err = b64.DecodeString(salt); err != nil || len(f.params.salt) != saltSize {
		return nil, fail(2, "salt: want %d bytes of base64", saltSize)
	}

	// Line 3: aead xchacha20poly1305 nonce=..
	fields = strings.Split(lines[2], " ")
	if len(fields) != 3 || fields[0] != "aead" || fields[1] != "xchacha20poly1305" || !strings.HasPrefix(fields[2], "nonce=") {
		return nil, fail(3, "want \"aead xchacha20poly1305 nonce=<base64>\"")
	}
	if f.nonce, err = b64.DecodeString(strings.TrimPrefix(fields[2], "nonce=")); err != nil || len(f.nonce) != chacha20poly1305.NonceSizeX {
		return nil, fail(3, "nonce: want %d bytes of base64", chacha20poly1305.NonceSizeX)
	}

	// Line 4: check ..
	v, ok := strings.CutPrefix(lines[3], "check ")
	if !ok {
		return nil, fail(4, "want \"check <base64>\"")
	}
	if f.check, err = b64.DecodeString(v); err != nil || len(f.check) != checkSize {
		return nil, fail(4, "check: want %d bytes of base64", checkSize)
	}
	if lines[4] != "---" {
		return nil, fail(5, "want \"---\"")
	}
	f.header = []byte(strings.Join(lines[:4], "\n") + "\n")

	var enc strings.Builder
	for i := 5; i < last; i++ {
		l := lines[i]
		if len(l) == 0 || len(l) > payloadLineSize || (len(l) < payloadLineSize && i != last-1) {
			return nil, fail(i+1, "ciphertext line has %d characters, want %d (fewer only on the last line)", len(l), payloadLineSize)
		}
		enc.WriteString(l)
	}
	if f.ciphertext, err = b64.DecodeString(enc.String()); err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, fail(6+int(ce)/payloadLineSize, "ciphertext is not valid base64")
		}
		return nil, fail(0, "ciphertext is not valid base64")
	}
	if len(f.ciphertext) < chacha20poly1305.Overhead {
		return nil, fail(6, "ciphertext is shorter than the AEAD tag")
	}
	return f, nil
}

// open decrypts f with keys, which must have been derived for f.params.
func (f *sealedFile) open(path string, keys *derivedKeys) ([]byte, error) {
	if subtle.ConstantTimeCompare(f.check, keys.check) != 1 {
		return nil, fmt.Errorf("keystore: %w for %s", ErrWrongPassphrase, path)
	}
	aead, err := chacha20poly1305.NewX(keys.aeadKey)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, f.nonce, f.ciphertext, f.header)
	if err != nil {
		return nil, &FormatError{Path: path, Msg: "authentication failed: the file was modified (the passphrase is right)"}
	}
	return pt, nil
}

// clip shortens s for an error message. Only header lines reach it, which
// hold no secrets.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
