package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// Role is what a certificate allows its holder to do.
type Role string

const (
	RoleSite    Role = "site"
	RoleAdmin   Role = "admin"
	RoleAuditor Role = "auditor"
	RoleServer  Role = "server"
)

// Identity is an authenticated caller: its role and name come from the URI
// SAN fedtune://<role>/<name> of its certificate.
type Identity struct {
	Role   Role
	Name   string
	Serial string // certificate serial, hex
}

func (id Identity) String() string { return string(id.Role) + ":" + id.Name }

// IdentityURI returns the URI SAN for a role and name.
func IdentityURI(role Role, name string) *url.URL {
	return &url.URL{Scheme: "fedtune", Host: string(role), Path: "/" + name}
}

// IdentityFromCert extracts the identity of a verified certificate.
func IdentityFromCert(c *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range c.URIs {
		if u.Scheme != "fedtune" {
			continue
		}
		role := Role(u.Host)
		name := strings.TrimPrefix(u.Path, "/")
		switch role {
		case RoleSite, RoleAdmin, RoleAuditor, RoleServer:
		default:
			return Identity{}, fmt.Errorf("certificate %x: unknown role %q in %s", c.SerialNumber, u.Host, u)
		}
		if !validName(name) {
			return Identity{}, fmt.Errorf("certificate %x: bad name %q in %s", c.SerialNumber, name, u)
		}
		found = append(found, Identity{Role: role, Name: name, Serial: c.SerialNumber.Text(16)})
	}
	if len(found) != 1 {
		return Identity{}, fmt.Errorf("certificate %x: want exactly one fedtune:// URI SAN, found %d", c.SerialNumber, len(found))
	}
	return found[0], nil
}

// CA is the built-in federation certificate authority. Its key is a
// crypto.Signer from the key store; it never leaves the store.
type CA struct {
	signer crypto.Signer
	cert   *x509.Certificate
	rand   io.Reader
	now    func() time.Time
}

// NewCA loads the CA certificate certDER for signer, or, when certDER is
// nil, creates a self-signed one valid for ten years. rand and now are the
// randomness (serial numbers) and clock.
func NewCA(signer crypto.Signer, certDER []byte, federation string, rnd io.Reader, now func() time.Time) (*CA, []byte, error) {
	ca := &CA{signer: signer, rand: rnd, now: now}
	if certDER == nil {
		serial, err := randSerial(rnd)
		if err != nil {
			return nil, nil, err
		}
		t := now()
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: "fedtune federation CA " + federation, Organization: []string{federation}},
			NotBefore:             t.Add(-time.Minute),
			NotAfter:              t.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
		}
		certDER, err = x509.CreateCertificate(rnd, tmpl, tmpl, signer.Public(), signer)
		if err != nil {
			return nil, nil, fmt.Errorf("federation CA: %w", err)
		}
	}
	c, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, nil, fmt.Errorf("federation CA certificate: %w", err)
	}
	if !publicKeysEqual(c.PublicKey, signer.Public()) {
		return nil, nil, errors.New("federation CA certificate does not match the CA key in the key store")
	}
	ca.cert = c
	return ca, certDER, nil
}

// Cert returns the CA certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// Pool returns a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue signs a certificate for pub with the identity fedtune://role/name,
// valid for ttl. hosts (DNS names or IPs) make it a server certificate.
func (ca *CA) Issue(pub crypto.PublicKey, role Role, name string, ttl time.Duration, hosts []string) (*x509.Certificate, error) {
	serial, err := randSerial(ca.rand)
	if err != nil {
		return nil, err
	}
	t := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: string(role) + ":" + name},
		NotBefore:    t.Add(-time.Minute),
		NotAfter:     t.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{IdentityURI(role, name)},
	}
	if len(hosts) > 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(ca.rand, tmpl, ca.cert, pub, ca.signer)
	if err != nil {
		return nil, fmt.Errorf("issue %s:%s: %w", role, name, err)
	}
	return x509.ParseCertificate(der)
}

func randSerial(r io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // positive, 127 bits
	return new(big.Int).SetBytes(b), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(eq)
	return ok && ea.Equal(b)
}

// CheckPublicKey accepts the key types fedtune issues certificates for.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("bad Ed25519 public key length")
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve.Params().Name != "P-256" {
			return fmt.Errorf("ECDSA curve %s not accepted (want P-256)", k.Curve.Params().Name)
		}
		return nil
	default:
		return fmt.Errorf("public key type %T not accepted (want Ed25519 or ECDSA P-256)", pub)
	}
}

// CurvePreferences is the key-exchange order of every fedtune TLS
// connection: the hybrid post-quantum X25519MLKEM768 first
// (draft-ietf-tls-ecdhe-mlkem), X25519 as the classical fallback.
var CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}

// ServerTLSConfig is TLS 1.3 only, with the federation CA as the only root
// for client certificates. Client certificates are verified when given and
// required by the authorization interceptor for every RPC but Enroll.
func ServerTLSConfig(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: CurvePreferences,
		Certificates:     []tls.Certificate{cert},
		ClientCAs:        roots,
		ClientAuth:       tls.VerifyClientCertIfGiven,
	}
}

// ClientTLSConfig is the matching client side; cert may be nil before
// enrollment.
func ClientTLSConfig(cert *tls.Certificate, roots *x509.CertPool, serverName string) *tls.Config {
	c := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: CurvePreferences,
		RootCAs:          roots,
		ServerName:       serverName,
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}
