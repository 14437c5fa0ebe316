// Package keystore holds fedtune's long-term keys: the aggregator's
// checkpoint-signing key, each site's identity key, and the federation CA.
// Two stores implement it: encrypted key files in a data directory (the
// default) and HashiCorp Vault.
//
// # Keys and versions
//
// A signing key has a name ("audit-checkpoint", "site-identity") and one or
// more versions. [Store.Rotate] adds a version and makes it current; older
// versions stay so that signatures made with them still verify
// ([Store.PublicKeys] returns every version). A [VersionedSigner] is bound to
// the version that was current when it was obtained: its public key and its
// signatures always belong to that one version, even if the key is rotated
// while it is in use.
//
// # Signatures
//
// Ed25519 (the default) signs the message itself and gives the 64-byte
// RFC 8032 signature, the format of C2SP signed notes. ECDSA P-256 signs
// SHA-256(message) and gives an ASN.1 DER signature (SEC 1 / RFC 5480), the
// format of Vault Transit and of [ecdsa.SignASN1]. [Verify] checks either.
//
// # Secrets
//
// A store also keeps small named secrets (a site's enrolment token, say):
// [Store.PutSecret] and [Store.GetSecret]. In the file store they share the
// encrypted file with the keys; in Vault they live in a KV version 2 mount.
//
// # What never leaves
//
// Private keys and secret values never appear in errors, in the output of
// the fmt verbs on any type of this package, or in JSON. The file store keeps
// them encrypted at rest under a passphrase; the Vault store never sees them
// (Transit keys are created non-exportable).
package keystore

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"regexp"
)

// Signer signs messages with a key that may live outside this process (a
// Vault Transit key, say). Implementations are safe for concurrent use.
type Signer interface {
	// Public returns the public key: an ed25519.PublicKey for Ed25519 keys,
	// an *ecdsa.PublicKey for ECDSA P-256 keys.
	Public() crypto.PublicKey
	// Sign returns a signature over message (the message itself, not a
	// digest). For Ed25519 it is the 64-byte RFC 8032 signature.
	Sign(ctx context.Context, message []byte) ([]byte, error)
}

// VersionedSigner is a [Signer] bound to one version of a named key.
type VersionedSigner interface {
	Signer
	// KeyVersion is the version of the key that Public and Sign use
	// (1 for a new key, incremented by each rotation).
	KeyVersion() int
}

// Algorithm names a signature algorithm.
type Algorithm string

const (
	// Ed25519 is RFC 8032 Ed25519 (pure, no prehash). The default.
	Ed25519 Algorithm = "ed25519"
	// ECDSAP256 is ECDSA over NIST P-256 with SHA-256 (FIPS 186-5).
	ECDSAP256 Algorithm = "ecdsa-p256"
)

// ParseAlgorithm returns the Algorithm named s; "" means [Ed25519].
func ParseAlgorithm(s string) (Algorithm, error) {
	switch Algorithm(s) {
	case "", Ed25519:
		return Ed25519, nil
	case ECDSAP256:
		return ECDSAP256, nil
	}
	return "", fmt.Errorf("keystore: unknown algorithm %q (want %q or %q)", s, Ed25519, ECDSAP256)
}

// KeyInfo describes a signing key without its key material.
type KeyInfo struct {
	Name           string    `json:"name"`
	Algorithm      Algorithm `json:"algorithm"`
	CurrentVersion int       `json:"current_version"`
	Versions       []int     `json:"versions"`
}

// PublicKey is the public half of one version of a named key.
type PublicKey struct {
	Name      string
	Version   int
	Algorithm Algorithm
	Key       crypto.PublicKey // ed25519.PublicKey or *ecdsa.PublicKey
}

// Store keeps named, versioned signing keys and named secrets.
// Implementations are safe for concurrent use.
type Store interface {
	// CreateSigningKey creates version 1 of a new key. It returns an error
	// wrapping ErrExists if a key of that name exists.
	CreateSigningKey(ctx context.Context, name string, alg Algorithm) error
	// Signer returns a signer for the current version of the key. It
	// returns an error wrapping ErrNotFound if there is no such key.
	Signer(ctx context.Context, name string) (VersionedSigner, error)
	// Rotate adds a new version of the key, makes it current and returns
	// its number. Older versions remain available for verification.
	Rotate(ctx context.Context, name string) (newVersion int, err error)
	// PublicKeys returns the public keys of all versions, oldest first.
	PublicKeys(ctx context.Context, name string) ([]PublicKey, error)
	// List describes all signing keys, sorted by name.
	List(ctx context.Context) ([]KeyInfo, error)
	// PutSecret stores value under name, replacing any earlier value.
	PutSecret(ctx context.Context, name string, value []byte) error
	// GetSecret returns the value stored under name, or an error wrapping
	// ErrNotFound.
	GetSecret(ctx context.Context, name string) ([]byte, error)
}

var (
	// ErrExists reports that a key of the requested name exists.
	ErrExists = errors.New("already exists")
	// ErrNotFound reports that no key or secret has the requested name.
	ErrNotFound = errors.New("not found")
	// ErrWrongPassphrase reports that the passphrase does not open the
	// file store.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrTampered reports that a key store file was modified by something
	// other than this package, or is corrupt.
	ErrTampered = errors.New("file was modified or is corrupt")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// checkName reports whether name can name a key or secret in every store:
// 1-128 characters from [A-Za-z0-9._-], starting with a letter or digit.
// (Vault uses names as path segments, so '/' is out.)
func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("keystore: invalid name %q: want 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit", name)
	}
	return nil
}
