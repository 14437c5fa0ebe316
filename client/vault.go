package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/server"
)

// Secrets of a site in Vault KV v2, named after its identity key so that
// the least-privilege site policy (keystore.VaultPolicy "site") covers
// them: <identity_key>.tls-key and <identity_key>.enrollment-token.
const (
	secretTLSKey = ".tls-key"
	secretToken  = ".enrollment-token"
)

// openVaultKeys connects to Vault: the identity key is a Transit key
// (created non-exportable on first start when the token may), and the mTLS
// private key is a KV v2 secret, created on first start.
func (c *Client) openVaultKeys(ctx context.Context) error {
	vs, err := c.cfg.Keystore.Vault.Open(ctx, c.log.Printf)
	if err != nil {
		return fmt.Errorf("keystore.vault: %w", err)
	}
	c.vault, c.keys = vs, vs
	if c.ident, err = server.EnsureSigningKey(ctx, vs, c.cfg.Keystore.IdentityKey, keystore.Ed25519); err != nil {
		return err
	}
	if c.ident.Public() == nil {
		return fmt.Errorf("key store: %s has no public key", c.cfg.Keystore.IdentityKey)
	}
	name := c.cfg.Keystore.IdentityKey + secretTLSKey
	der, err := vs.GetSecret(ctx, name)
	if errors.Is(err, keystore.ErrNotFound) {
		key, gerr := ecdsa.GenerateKey(elliptic.P256(), c.opts.Rand)
		if gerr != nil {
			return gerr
		}
		if der, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
			return err
		}
		if err = vs.PutSecret(ctx, name, der); err == nil {
			// Read it back: another process for the same site may have
			// written first, and the stored key is the one that counts.
			der, err = vs.GetSecret(ctx, name)
		}
	}
	if err != nil {
		return fmt.Errorf("key store: TLS key %s: %w", name, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return fmt.Errorf("key store: secret %s is not a PKCS #8 private key", name)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return fmt.Errorf("key store: secret %s is a %T, want an ECDSA P-256 key", name, k)
	}
	c.tlsKey = ek
	return nil
}

// enrollmentToken reads the one-time token from token_file or, with Vault
// and no token_file, from the KV secret <identity_key>.enrollment-token.
func (c *Client) enrollmentToken(ctx context.Context) (string, error) {
	if c.cfg.TokenFile == "" && c.vault != nil {
		name := c.cfg.Keystore.IdentityKey + secretToken
		b, err := c.vault.GetSecret(ctx, name)
		if err != nil {
			return "", fmt.Errorf("enrollment token: token_file is empty and the Vault secret %s cannot be read: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	b, err := os.ReadFile(c.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token_file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
