package keystore

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// CertIssuer issues the X.509 certificates of the federation's mutual TLS:
// one per site and one for the aggregator. The built-in federation CA
// implements it; [VaultPKI] is the alternative, a Vault PKI mount.
type CertIssuer interface {
	// Issue signs a certificate for req. Implementations may require
	// req.CSR (Vault PKI does: it signs requests, it never sees a bare
	// public key).
	Issue(ctx context.Context, req CertRequest) (*IssuedCert, error)
	// Roots returns the CA certificates that issued certificates chain to,
	// for tls.Config.RootCAs and ClientCAs.
	Roots(ctx context.Context) ([]*x509.Certificate, error)
}

// CertRequest describes the certificate to issue.
type CertRequest struct {
	CommonName  string
	URIs        []*url.URL
	DNSNames    []string
	IPAddresses []net.IP
	// PublicKey is the subject's key. Either PublicKey or CSR is set; if
	// both are, they must hold the same key.
	PublicKey crypto.PublicKey
	// CSR is a DER PKCS #10 certificate request (RFC 2986), signed by the
	// subject's key: proof that the requester holds it.
	CSR []byte
	// TTL is the validity; the issuer's default (and maximum) applies if
	// zero.
	TTL time.Duration
	// Role is the kind of subject, "site" or "aggregator"; for Vault PKI it
	// names the PKI role.
	Role string
}

// IssuedCert is a certificate with the chain up to (not including) a root.
type IssuedCert struct {
	Certificate *x509.Certificate
	// Chain holds the intermediate CA certificates, leaf's issuer first;
	// empty when a root issued the leaf directly.
	Chain []*x509.Certificate
}

// DER returns the certificate and its chain as tls.Certificate.Certificate
// wants them.
func (c *IssuedCert) DER() [][]byte {
	out := [][]byte{c.Certificate.Raw}
	for _, ch := range c.Chain {
		out = append(out, ch.Raw)
	}
	return out
}

// NewCSR makes a DER PKCS #10 request for req's names, signed by key (a
// [FileStore.CryptoSigner], say, or a TLS key held in memory).
func NewCSR(key crypto.Signer, req CertRequest) ([]byte, error) {
	if key == nil {
		return nil, errors.New("keystore: NewCSR: nil key")
	}
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: req.CommonName},
		DNSNames:    req.DNSNames,
		IPAddresses: req.IPAddresses,
		URIs:        req.URIs,
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("keystore: creating certificate request for %q: %w", req.CommonName, err)
	}
	return der, nil
}

// parseCSR parses and checks the CSR of req (its self-signature, and that
// it holds req.PublicKey when that is set).
func parseCSR(req CertRequest) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("keystore: certificate request for %q: %w", req.CommonName, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("keystore: certificate request for %q: bad self-signature: %w", req.CommonName, err)
	}
	if req.PublicKey != nil {
		type equaler interface{ Equal(crypto.PublicKey) bool }
		e, ok := req.PublicKey.(equaler)
		if !ok || !e.Equal(csr.PublicKey) {
			return nil, fmt.Errorf("keystore: certificate request for %q holds a different key than CertRequest.PublicKey", req.CommonName)
		}
	}
	return csr, nil
}

// serialHex formats a certificate serial number as Vault writes it
// ("1a:2b:...").
func serialHex(n *big.Int) string {
	b := n.Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	out := make([]byte, 0, len(b)*3)
	const digits = "0123456789abcdef"
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
