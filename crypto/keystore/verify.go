package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ErrBadSignature reports a signature that does not verify.
var ErrBadSignature = errors.New("keystore: signature does not verify")

// Verify checks sig over message with pub, which is an ed25519.PublicKey or
// an *ecdsa.PublicKey on P-256. It returns nil if the signature is valid and
// an error wrapping ErrBadSignature if it is not.
func Verify(pub crypto.PublicKey, message, sig []byte) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("keystore: ed25519 public key is %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		// RFC 8032 §5.1.7; the Go implementation rejects non-canonical S.
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k, message, sig) {
			return ErrBadSignature
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("keystore: ecdsa public key is on %s, want P-256", k.Curve.Params().Name)
		}
		// FIPS 186-5 §6.4.2 over e = SHA-256(message); signature is the
		// ASN.1 DER SEQUENCE{r, s} of RFC 5480 §2.2 / SEC 1 C.5.
		h := sha256.Sum256(message)
		if !ecdsa.VerifyASN1(k, h[:], sig) {
			return ErrBadSignature
		}
		return nil
	}
	return fmt.Errorf("keystore: unsupported public key type %T", pub)
}

// algorithmOf returns the Algorithm of a public key.
func algorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return Ed25519, nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256, nil
		}
	}
	return "", fmt.Errorf("keystore: unsupported public key type %T", pub)
}

// MarshalPublicKeyPEM encodes pub as a PEM "PUBLIC KEY" block holding its
// X.509 SubjectPublicKeyInfo (RFC 8410 for Ed25519, RFC 5480 for ECDSA).
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keystore: encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM decodes the first PEM "PUBLIC KEY" block of data.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("keystore: no PEM block found")
	}
	if b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("keystore: PEM block is %q, want \"PUBLIC KEY\"", b.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keystore: parsing public key: %w", err)
	}
	if _, err := algorithmOf(pub); err != nil {
		return nil, err
	}
	return pub, nil
}
