// Package keystore holds fedtune's long-term keys: the aggregator's
// checkpoint-signing key, each site's identity key, and the federation CA.
// Two stores implement it: encrypted key files in a data directory (the
// default) and HashiCorp Vault.
package keystore

import (
	"context"
	"crypto"
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
