package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/fedtune/fedtune/internal/atomicfile"
)

// FileName is the name of the encrypted key store file in a store's
// directory.
const FileName = "keystore.enc"

const lockName = "keystore.lock"

// FileOptions tunes a [FileStore]. The zero value is the production
// setting.
type FileOptions struct {
	// Rand is the source of salts, nonces and Ed25519 keys;
	// crypto/rand.Reader if nil. It must be a CSPRNG. (Go ignores it for
	// ECDSA key generation and signing, which always use the system's
	// CSPRNG.)
	Rand io.Reader
	// Now stamps key versions and secrets; time.Now if nil.
	Now func() time.Time
	// ScryptLogN is log2 of scrypt's N for a new store (10..22);
	// DefaultScryptLogN if 0. Only InitFileStoreWith reads it: an existing
	// store keeps the parameters in its file.
	ScryptLogN int
}

// PermissionError reports a key store file that users other than its owner
// may read or write.
type PermissionError struct {
	Path string
	Mode fs.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("keystore: %s has mode %#o, which lets other users read or change it; want 0600 (chmod 600 %s)", e.Path, e.Mode.Perm(), e.Path)
}

// FileStore is a [Store] kept in one file, FileName, in a directory,
// encrypted under a passphrase (scrypt, HKDF-SHA256, XChaCha20-Poly1305).
//
// Every operation reads the file again, so a key rotated by another process
// (fedtune keys rotate) is seen at once; changes are written atomically
// (temporary file, fsync, rename) under an advisory lock on keystore.lock.
// The file must have mode 0600 or stricter: a more open file is refused
// with a *PermissionError.
//
// What the file store cannot detect: the whole file replaced by an older
// copy of itself (a rollback of rotations), since nothing outside the file
// records its latest state.
type FileStore struct {
	dir  string
	path string
	rand io.Reader
	now  func() time.Time

	mu   sync.Mutex // serializes this process's operations; the file lock serializes processes
	keys *derivedKeys
}

var _ Store = (*FileStore)(nil)

// The decrypted contents of the file.
type filePayload struct {
	Keys    map[string]*fileKey    `json:"keys"`
	Secrets map[string]*fileSecret `json:"secrets"`
}

type fileKey struct {
	Algorithm Algorithm        `json:"algorithm"`
	Current   int              `json:"current"`
	Versions  []fileKeyVersion `json:"versions"`
}

type fileKeyVersion struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	PKCS8   []byte    `json:"pkcs8"` // RFC 5208/5958 PrivateKeyInfo

	priv crypto.Signer // parsed from PKCS8 on load
}

type fileSecret struct {
	Value   []byte    `json:"value"`
	Updated time.Time `json:"updated"`
}

// InitFileStore creates a new store in dir (created with mode 0700 if
// missing) with the production options. It fails if dir already holds a
// store.
func InitFileStore(dir string, passphrase []byte) (*FileStore, error) {
	return InitFileStoreWith(dir, passphrase, FileOptions{})
}

// InitFileStoreWith is InitFileStore with options.
func InitFileStoreWith(dir string, passphrase []byte, opts FileOptions) (*FileStore, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("keystore: empty passphrase")
	}
	logN := opts.ScryptLogN
	if logN == 0 {
		logN = DefaultScryptLogN
	}
	if logN < minScryptLogN || logN > maxScryptLogN {
		return nil, fmt.Errorf("keystore: ScryptLogN=%d out of range [%d, %d]", logN, minScryptLogN, maxScryptLogN)
	}
	s := newFileStore(dir, opts)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Lstat(s.path); err == nil {
		return nil, fmt.Errorf("keystore: %s %w (a key store is initialized there)", s.path, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	params := kdfParams{logN: logN, r: 8, p: 1, salt: make([]byte, saltSize)}
	if _, err := io.ReadFull(s.rand, params.salt); err != nil {
		return nil, fmt.Errorf("keystore: reading randomness: %w", err)
	}
	if s.keys, err = deriveKeys(passphrase, params); err != nil {
		return nil, err
	}
	if err := s.write(&filePayload{}); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenFileStore opens the store in dir. It returns an error wrapping
// ErrWrongPassphrase if passphrase does not open it, one wrapping
// ErrTampered (a *FormatError naming the file and line) if the file was
// modified or damaged, and a *PermissionError if the file's mode lets other
// users read or change it.
func OpenFileStore(dir string, passphrase []byte) (*FileStore, error) {
	return OpenFileStoreWith(dir, passphrase, FileOptions{})
}

// OpenFileStoreWith is OpenFileStore with options.
func OpenFileStoreWith(dir string, passphrase []byte, opts FileOptions) (*FileStore, error) {
	s := newFileStore(dir, opts)
	f, err := s.readSealed()
	if err != nil {
		return nil, err
	}
	if s.keys, err = deriveKeys(passphrase, f.params); err != nil {
		return nil, err
	}
	pt, err := f.open(s.path, s.keys)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	if _, err := s.decode(pt); err != nil {
		return nil, err
	}
	return s, nil
}

func newFileStore(dir string, opts FileOptions) *FileStore {
	s := &FileStore{dir: dir, path: filepath.Join(dir, FileName), rand: opts.Rand, now: opts.Now}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Path returns the path of the store's file.
func (s *FileStore) Path() string { return s.path }

// String describes the store without key material.
func (s *FileStore) String() string { return "keystore.FileStore(" + s.dir + ")" }

// Format prints String for every verb, so no fmt verb shows the derived key.
func (s *FileStore) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// readSealed reads and parses the file, checking its mode.
func (s *FileStore) readSealed() (*sealedFile, error) {
	fh, err := os.Open(s.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("keystore: no key store at %s (run fedtune keys init): %w", s.dir, err)
		}
		return nil, fmt.Errorf("keystore: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keystore: %s is not a regular file", s.path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, &PermissionError{Path: s.path, Mode: st.Mode()}
	}
	data, err := io.ReadAll(io.LimitReader(fh, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("keystore: reading %s: %w", s.path, err)
	}
	return parseFile(s.path, data)
}

// load reads and decrypts the file. The caller holds s.mu.
func (s *FileStore) load() (*filePayload, error) {
	f, err := s.readSealed()
	if err != nil {
		return nil, err
	}
	if !f.params.equal(s.keys.params) {
		return nil, fmt.Errorf("keystore: %s was re-encrypted with other KDF parameters since it was opened; open it again", s.path)
	}
	pt, err := f.open(s.path, s.keys)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return s.decode(pt)
}

// decode parses and validates the decrypted payload. Its errors never quote
// the payload.
func (s *FileStore) decode(pt []byte) (*filePayload, error) {
	var p filePayload
	if err := json.Unmarshal(pt, &p); err != nil {
		return nil, fmt.Errorf("keystore: %s: decrypted contents are not a valid key store (JSON decoding failed)", s.path)
	}
	for name, k := range p.Keys {
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("keystore: %s: %w", s.path, err)
		}
		if _, err := ParseAlgorithm(string(k.Algorithm)); err != nil || k.Algorithm == "" {
			return nil, fmt.Errorf("keystore: %s: key %q: unknown algorithm %q", s.path, name, k.Algorithm)
		}
		if len(k.Versions) == 0 || k.Current < 1 || k.Current > len(k.Versions) {
			return nil, fmt.Errorf("keystore: %s: key %q: current version %d, want 1..%d", s.path, name, k.Current, len(k.Versions))
		}
		for i := range k.Versions {
			v := &k.Versions[i]
			if v.Version != i+1 {
				return nil, fmt.Errorf("keystore: %s: key %q: version %d listed at position %d", s.path, name, v.Version, i+1)
			}
			priv, err := x509.ParsePKCS8PrivateKey(v.PKCS8)
			if err != nil {
				return nil, fmt.Errorf("keystore: %s: key %q version %d: private key does not parse as PKCS #8", s.path, name, v.Version)
			}
			signer, ok := priv.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("keystore: %s: key %q version %d: unsupported private key type", s.path, name, v.Version)
			}
			if alg, err := algorithmOf(signer.Public()); err != nil || alg != k.Algorithm {
				return nil, fmt.Errorf("keystore: %s: key %q version %d: private key is not %s", s.path, name, v.Version, k.Algorithm)
			}
			v.priv = signer
		}
	}
	for name := range p.Secrets {
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("keystore: %s: secret: %w", s.path, err)
		}
	}
	return &p, nil
}

// write encrypts p and replaces the file atomically. The caller holds s.mu
// and the file lock.
func (s *FileStore) write(p *filePayload) error {
	pt, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("keystore: encoding key store: %w", err)
	}
	defer clear(pt)
	nonce := make([]byte, 24)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return fmt.Errorf("keystore: reading randomness: %w", err)
	}
	data, err := seal(s.keys, nonce, pt)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}

// view runs f on the current contents.
func (s *FileStore) view(f func(*filePayload) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.load()
	if err != nil {
		return err
	}
	return f(p)
}

// update runs f on the current contents under the file lock and writes the
// result if f succeeds.
func (s *FileStore) update(f func(*filePayload) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := lockFile(filepath.Join(s.dir, lockName))
	if err != nil {
		return err
	}
	defer unlock()
	p, err := s.load()
	if err != nil {
		return err
	}
	if err := f(p); err != nil {
		return err
	}
	return s.write(p)
}

func (s *FileStore) newVersion(alg Algorithm, version int) (fileKeyVersion, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(s.rand)
	case ECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), s.rand)
	default:
		return fileKeyVersion{}, fmt.Errorf("keystore: unknown algorithm %q", alg)
	}
	if err != nil {
		return fileKeyVersion{}, fmt.Errorf("keystore: generating %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fileKeyVersion{}, fmt.Errorf("keystore: encoding %s key", alg)
	}
	return fileKeyVersion{Version: version, Created: s.now().UTC(), PKCS8: der, priv: priv}, nil
}

// CreateSigningKey implements [Store].
func (s *FileStore) CreateSigningKey(ctx context.Context, name string, alg Algorithm) error {
	if err := checkName(name); err != nil {
		return err
	}
	alg, err := ParseAlgorithm(string(alg))
	if err != nil {
		return err
	}
	return s.update(func(p *filePayload) error {
		if _, ok := p.Keys[name]; ok {
			return fmt.Errorf("keystore: key %q: %w", name, ErrExists)
		}
		v, err := s.newVersion(alg, 1)
		if err != nil {
			return err
		}
		if p.Keys == nil {
			p.Keys = map[string]*fileKey{}
		}
		p.Keys[name] = &fileKey{Algorithm: alg, Current: 1, Versions: []fileKeyVersion{v}}
		return nil
	})
}

// Rotate implements [Store].
func (s *FileStore) Rotate(ctx context.Context, name string) (int, error) {
	var newVersion int
	err := s.update(func(p *filePayload) error {
		k, ok := p.Keys[name]
		if !ok {
			return fmt.Errorf("keystore: key %q: %w", name, ErrNotFound)
		}
		newVersion = len(k.Versions) + 1
		v, err := s.newVersion(k.Algorithm, newVersion)
		if err != nil {
			return err
		}
		k.Versions = append(k.Versions, v)
		k.Current = newVersion
		return nil
	})
	if err != nil {
		return 0, err
	}
	return newVersion, nil
}

// Signer implements [Store].
func (s *FileStore) Signer(ctx context.Context, name string) (VersionedSigner, error) {
	var out *fileSigner
	err := s.view(func(p *filePayload) error {
		k, ok := p.Keys[name]
		if !ok {
			return fmt.Errorf("keystore: key %q: %w", name, ErrNotFound)
		}
		v := k.Versions[k.Current-1]
		out = &fileSigner{name: name, version: v.Version, alg: k.Algorithm, priv: v.priv, rand: s.rand}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CryptoSigner returns a standard-library crypto.Signer for the current
// version of the key, for APIs such as x509.CreateCertificate (the
// federation CA's key, say). Its Sign takes a digest for ECDSA and the
// whole message (with crypto.Hash(0)) for Ed25519, as crypto.Signer
// specifies.
func (s *FileStore) CryptoSigner(ctx context.Context, name string) (crypto.Signer, error) {
	vs, err := s.Signer(ctx, name)
	if err != nil {
		return nil, err
	}
	fsg := vs.(*fileSigner)
	return &stdSigner{name: fsg.name, version: fsg.version, priv: fsg.priv}, nil
}

// PublicKeys implements [Store].
func (s *FileStore) PublicKeys(ctx context.Context, name string) ([]PublicKey, error) {
	var out []PublicKey
	err := s.view(func(p *filePayload) error {
		k, ok := p.Keys[name]
		if !ok {
			return fmt.Errorf("keystore: key %q: %w", name, ErrNotFound)
		}
		for _, v := range k.Versions {
			out = append(out, PublicKey{Name: name, Version: v.Version, Algorithm: k.Algorithm, Key: v.priv.Public()})
		}
		return nil
	})
	return out, err
}

// List implements [Store].
func (s *FileStore) List(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := s.view(func(p *filePayload) error {
		for name, k := range p.Keys {
			info := KeyInfo{Name: name, Algorithm: k.Algorithm, CurrentVersion: k.Current}
			for _, v := range k.Versions {
				info.Versions = append(info.Versions, v.Version)
			}
			out = append(out, info)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// PutSecret implements [Store].
func (s *FileStore) PutSecret(ctx context.Context, name string, value []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	return s.update(func(p *filePayload) error {
		if p.Secrets == nil {
			p.Secrets = map[string]*fileSecret{}
		}
		p.Secrets[name] = &fileSecret{Value: slices.Clone(value), Updated: s.now().UTC()}
		return nil
	})
}

// GetSecret implements [Store].
func (s *FileStore) GetSecret(ctx context.Context, name string) ([]byte, error) {
	var out []byte
	err := s.view(func(p *filePayload) error {
		sec, ok := p.Secrets[name]
		if !ok {
			return fmt.Errorf("keystore: secret %q: %w", name, ErrNotFound)
		}
		out = slices.Clone(sec.Value)
		return nil
	})
	return out, err
}

// fileSigner is one version of a file-store key.
type fileSigner struct {
	name    string
	version int
	alg     Algorithm
	priv    crypto.Signer
	rand    io.Reader
}

func (f *fileSigner) Public() crypto.PublicKey { return f.priv.Public() }
func (f *fileSigner) KeyVersion() int          { return f.version }

func (f *fileSigner) Sign(ctx context.Context, message []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch k := f.priv.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, message), nil // RFC 8032 §5.1.6
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(message) // FIPS 186-5 §6.4.1 with SHA-256
		return ecdsa.SignASN1(f.rand, k, h[:])
	}
	return nil, fmt.Errorf("keystore: key %q: unsupported key type", f.name)
}

func (f *fileSigner) String() string {
	return fmt.Sprintf("keystore.Signer(%s v%d %s)", f.name, f.version, f.alg)
}

// Format prints String for every verb, so no fmt verb shows the key.
func (f *fileSigner) Format(s fmt.State, _ rune) { io.WriteString(s, f.String()) }

// stdSigner adapts a private key to crypto.Signer without exposing it to
// fmt.
type stdSigner struct {
	name    string
	version int
	priv    crypto.Signer
}

func (s *stdSigner) Public() crypto.PublicKey { return s.priv.Public() }

func (s *stdSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.priv.Sign(rand, digest, opts)
}

func (s *stdSigner) String() string {
	return fmt.Sprintf("keystore.CryptoSigner(%s v%d)", s.name, s.version)
}

func (s *stdSigner) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }
