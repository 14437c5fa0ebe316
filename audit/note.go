package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Signature types of C2SP signed-note verifier keys.
const (
	sigTypeEd25519     = 0x01 // https://c2sp.org/signed-note#signatures
	sigTypeCosignature = 0x04 // https://c2sp.org/tlog-cosignature (cosignature/v1)
)

// maxNoteSigs bounds the signature lines of a note, as C2SP signed-note allows.
const maxNoteSigs = 100

// ErrBadSignature reports a note or entry signature that does not verify.
var ErrBadSignature = errors.New("audit: signature does not verify")

// keyHash is the signed-note key ID: the first four bytes of
// SHA-256(name || 0x0A || signature type || public key), big-endian
// (https://c2sp.org/signed-note#signatures).
func keyHash(name string, sigType byte, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', sigType})
	h.Write(pub)
	var sum [32]byte
	h.Sum(sum[:0])
	return binary.BigEndian.Uint32(sum[:4])
}

func validKeyName(name string) bool {
	if name == "" || !utf8.ValidString(name) || strings.ContainsAny(name, "+ \t\n") {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == 0x2014 {
			return false
		}
	}
	return true
}

// VerifierKey is a parsed signed-note verifier key: the log's Ed25519
// checkpoint key (type 0x01) or a witness's cosignature/v1 key (type 0x04).
type VerifierKey struct {
	Name    string
	Type    byte
	Hash    uint32
	Public  ed25519.PublicKey
	Encoded string // "<name>+<hash hex>+<base64(type || key)>"
}

// NewVerifierKey returns the verifier key of an Ed25519 public key under
// name with the given signature type (0x01 for the log, 0x04 for witnesses).
func NewVerifierKey(name string, sigType byte, pub ed25519.PublicKey) (VerifierKey, error) {
	if !validKeyName(name) {
		return VerifierKey{}, fmt.Errorf("audit: invalid key name %q (must be non-empty UTF-8 without spaces or '+')", name)
	}
	if sigType != sigTypeEd25519 && sigType != sigTypeCosignature {
		return VerifierKey{}, fmt.Errorf("audit: unsupported signature type %#02x", sigType)
	}
	if len(pub) != ed25519.PublicKeySize {
		return VerifierKey{}, fmt.Errorf("audit: Ed25519 public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	h := keyHash(name, sigType, pub)
	enc := fmt.Sprintf("%s+%08x+%s", name, h, base64.StdEncoding.EncodeToString(append([]byte{sigType}, pub...)))
	return VerifierKey{Name: name, Type: sigType, Hash: h, Public: append(ed25519.PublicKey(nil), pub...), Encoded: enc}, nil
}

// LogVerifierKey is NewVerifierKey for a log's checkpoint key (type 0x01).
func LogVerifierKey(origin string, pub ed25519.PublicKey) (VerifierKey, error) {
	return NewVerifierKey(origin, sigTypeEd25519, pub)
}

// WitnessVerifierKey is NewVerifierKey for a witness's cosignature key (type 0x04).
func WitnessVerifierKey(name string, pub ed25519.PublicKey) (VerifierKey, error) {
	return NewVerifierKey(name, sigTypeCosignature, pub)
}

// ParseVerifierKey parses "<name>+<hash>+<base64 key>" and checks that the
// hash matches the key.
func ParseVerifierKey(s string) (VerifierKey, error) {
	name, rest, ok1 := strings.Cut(s, "+")
	hexHash, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return VerifierKey{}, fmt.Errorf("audit: verifier key %q: want <name>+<hash>+<key>", s)
	}
	if len(hexHash) != 8 {
		return VerifierKey{}, fmt.Errorf("audit: verifier key %q: hash must be 8 hex digits", s)
	}
	h, err := strconv.ParseUint(hexHash, 16, 32)
	if err != nil {
		return VerifierKey{}, fmt.Errorf("audit: verifier key %q: bad hash: %v", s, err)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize {
		return VerifierKey{}, fmt.Errorf("audit: verifier key %q: want base64 of a type byte and a 32-byte Ed25519 key", s)
	}
	k, err := NewVerifierKey(name, raw[0], raw[1:])
	if err != nil {
		return VerifierKey{}, fmt.Errorf("audit: verifier key %q: %v", s, err)
	}
	if k.Hash != uint32(h) {
		return VerifierKey{}, fmt.Errorf("audit: verifier key %q: hash %08x does not match the key (want %08x)", s, h, k.Hash)
	}
	if k.Encoded != s {
		return VerifierKey{}, fmt.Errorf("audit: verifier key %q is not in canonical form (want %q)", s, k.Encoded)
	}
	return k, nil
}

// NoteSignature is one signature line of a signed note.
type NoteSignature struct {
	Name    string
	KeyHash uint32
	Sig     []byte // the bytes after the key hash
	Line    int    // 1-based line number in the note
}

// Note is a parsed C2SP signed note (https://c2sp.org/signed-note).
type Note struct {
	Text []byte // the signed text, ending in a newline
	Sigs []NoteSignature
}

// ParseNote parses a signed note strictly: valid UTF-8, no control
// characters other than newline, text ending in a newline, a blank line,
// then 1 to 100 signature lines "— <name> <base64(key hash || signature)>"
// in canonical base64. It does not check any signature.
func ParseNote(b []byte) (*Note, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("signed note: not valid UTF-8")
	}
	for i, c := range b {
		if c < 0x20 && c != '\n' || c == 0x7f {
			return nil, fmt.Errorf("signed note: line %d: control character %#02x", 1+bytes.Count(b[:i], []byte{'\n'}), c)
		}
	}
	split := bytes.LastIndex(b, []byte("\n\n"))
	if split < 0 {
		return nil, errors.New("signed note: no blank line between text and signatures")
	}
	text, sigs := b[:split+1], b[split+2:]
	if len(sigs) == 0 || sigs[len(sigs)-1] != '\n' {
		return nil, errors.New("signed note: signature block does not end in a newline")
	}
	n := &Note{Text: text}
	line := bytes.Count(text, []byte{'\n'}) + 2
	for _, l := range strings.SplitAfter(string(sigs[:len(sigs)-1]), "\n") {
		line++
		l = strings.TrimSuffix(l, "\n")
		rest, ok := strings.CutPrefix(l, "— ")
		if !ok {
			return nil, fmt.Errorf("signed note: line %d: signature line does not start with \"— \"", line)
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok || !validKeyName(name) {
			return nil, fmt.Errorf("signed note: line %d: want \"— <key name> <signature>\"", line)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(raw) < 5 || base64.StdEncoding.EncodeToString(raw) != b64 {
			return nil, fmt.Errorf("signed note: line %d: signature of %q is not canonical base64 of a key hash and a signature", line, name)
		}
		n.Sigs = append(n.Sigs, NoteSignature{Name: name, KeyHash: binary.BigEndian.Uint32(raw), Sig: raw[4:], Line: line})
		if len(n.Sigs) > maxNoteSigs {
			return nil, fmt.Errorf("signed note: more than %d signatures", maxNoteSigs)
		}
	}
	return n, nil
}

// signatureLine formats one signature line.
func signatureLine(name string, hash uint32, sig []byte) []byte {
	raw := binary.BigEndian.AppendUint32(nil, hash)
	raw = append(raw, sig...)
	return []byte("— " + name + " " + base64.StdEncoding.EncodeToString(raw) + "\n")
}

// Marshal returns the note in its wire form.
func (n *Note) Marshal() []byte {
	out := append([]byte(nil), n.Text...)
	out = append(out, '\n')
	for _, s := range n.Sigs {
		out = append(out, signatureLine(s.Name, s.KeyHash, s.Sig)...)
	}
	return out
}

// cosignedMessage is the message a cosignature/v1 signature covers:
// "cosignature/v1\ntime <t>\n" followed by the checkpoint text
// (https://c2sp.org/tlog-cosignature#signed-message).
func cosignedMessage(t uint64, text []byte) []byte {
	m := fmt.Appendf(nil, "cosignature/v1\ntime %d\n", t)
	return append(m, text...)
}

// verify checks one note signature against k. For a cosignature it returns
// the signed timestamp (seconds since the Unix epoch).
func (k VerifierKey) verify(text []byte, s NoteSignature) (timestamp uint64, err error) {
	if s.Name != k.Name || s.KeyHash != k.Hash {
		return 0, fmt.Errorf("signature by %s+%08x checked against key %s", s.Name, s.KeyHash, k.Encoded)
	}
	switch k.Type {
	case sigTypeEd25519:
		if len(s.Sig) != ed25519.SignatureSize || !ed25519.Verify(k.Public, text, s.Sig) {
			return 0, ErrBadSignature
		}
		return 0, nil
	case sigTypeCosignature:
		// cosignature/v1 signature: 8-byte big-endian timestamp || 64-byte Ed25519 signature
		if len(s.Sig) != 8+ed25519.SignatureSize {
			return 0, fmt.Errorf("%w: cosignature is %d bytes, want %d", ErrBadSignature, len(s.Sig), 8+ed25519.SignatureSize)
		}
		t := binary.BigEndian.Uint64(s.Sig[:8])
		if !ed25519.Verify(k.Public, cosignedMessage(t, text), s.Sig[8:]) {
			return 0, ErrBadSignature
		}
		return t, nil
	}
	return 0, fmt.Errorf("audit: unsupported signature type %#02x", k.Type)
}

// NoteSigner signs checkpoints with a Signer holding an Ed25519
// key. It implements golang.org/x/mod/sumdb/note.Signer, which is what
// tessera takes, so the log's key may live in any key store (a file, Vault
// Transit).
type NoteSigner struct {
	key    VerifierKey
	signer Signer
	ctx    context.Context
	onSign func(text, sig []byte) // observes each signature, may be nil
}

// NewNoteSigner adapts s to sign notes under name. ctx is used for every
// signing call (note.Signer has no context parameter).
func NewNoteSigner(ctx context.Context, name string, s Signer) (*NoteSigner, error) {
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("audit: checkpoint signer has a %T key, want Ed25519", s.Public())
	}
	k, err := LogVerifierKey(name, pub)
	if err != nil {
		return nil, err
	}
	return &NoteSigner{key: k, signer: s, ctx: ctx}, nil
}

// Name returns the key name, which is also the log origin.
func (s *NoteSigner) Name() string { return s.key.Name }

// KeyHash returns the signed-note key ID.
func (s *NoteSigner) KeyHash() uint32 { return s.key.Hash }

// VerifierKey returns the public verifier key.
func (s *NoteSigner) VerifierKey() VerifierKey { return s.key }

// Sign signs msg and checks that the signature verifies, so that a faulty
// remote signer cannot publish a checkpoint that nobody can verify.
func (s *NoteSigner) Sign(msg []byte) ([]byte, error) {
	sig, err := s.signer.Sign(s.ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("audit: signing checkpoint: %w", err)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(s.key.Public, msg, sig) {
		return nil, errors.New("audit: checkpoint signer returned a signature that does not verify")
	}
	if s.onSign != nil {
		s.onSign(msg, sig)
	}
	return sig, nil
}

// Cosign returns a cosignature/v1 signature line over a checkpoint text,
// made by witness key name with signer at time now (whole seconds, UTC).
func Cosign(ctx context.Context, name string, signer Signer, text []byte, now time.Time) ([]byte, error) {
	pub, ok := signer.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("audit: witness signer has a %T key, want Ed25519", signer.Public())
	}
	k, err := WitnessVerifierKey(name, pub)
	if err != nil {
		return nil, err
	}
	if now.Unix() < 0 {
		return nil, fmt.Errorf("audit: cosignature time %v is before 1970", now)
	}
	t := uint64(now.Unix())
	sig, err := signer.Sign(ctx, cosignedMessage(t, text))
	if err != nil {
		return nil, fmt.Errorf("audit: cosigning: %w", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("audit: witness signer returned %d bytes, want an Ed25519 signature", len(sig))
	}
	return signatureLine(name, k.Hash, append(binary.BigEndian.AppendUint64(nil, t), sig...)), nil
}

// SetObserver makes s call fn with each checkpoint text and signature it
// produces. Call it before the signer is used.
func (s *NoteSigner) SetObserver(fn func(text, sig []byte)) { s.onSign = fn }

// VerifyCosignatureLine checks one cosignature/v1 signature line (as
// [Cosign] and [Witness.Cosign] return it) over a checkpoint text.
func VerifyCosignatureLine(text []byte, witness VerifierKey, line []byte) (Cosignature, error) {
	if witness.Type != sigTypeCosignature {
		return Cosignature{}, errors.New("audit: not a cosignature/v1 key")
	}
	// Parse the line as the signature block of a note over text.
	n, err := ParseNote(append(append(append([]byte(nil), text...), '\n'), line...))
	if err != nil {
		return Cosignature{}, err
	}
	if len(n.Sigs) != 1 || !bytes.Equal(n.Text, text) {
		return Cosignature{}, errors.New("audit: want exactly one signature line")
	}
	t, err := witness.verify(text, n.Sigs[0])
	if err != nil {
		return Cosignature{}, err
	}
	return Cosignature{Witness: witness.Name, Time: t}, nil
}
