package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/internal/atomicfile"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
)

// VaultSettings is the "vault" object of a keystore configuration (server
// and client): how to reach HashiCorp Vault, how to log in, and where
// fedtune's keys, secrets and certificates live there.
type VaultSettings struct {
	// Address is Vault's URL ("https://vault.example:8200").
	Address string `json:"address"`
	// Namespace is the Vault Enterprise namespace ("" for the root one).
	Namespace string `json:"namespace"`
	// CACertFile is the PEM CA that signed Vault's TLS certificate (the
	// system roots when empty); TLSServerName overrides the checked name.
	CACertFile    string `json:"ca_cert_file"`
	TLSServerName string `json:"tls_server_name"`
	// Auth is "token" (default) or "approle".
	Auth string `json:"auth"`
	// TokenFile holds the Vault token for token auth; when empty the token
	// comes from the VAULT_TOKEN environment variable.
	TokenFile string `json:"token_file"`
	// RoleID and SecretIDFile are the AppRole credentials; AppRoleMount is
	// the auth mount ("approle").
	RoleID       string `json:"role_id"`
	SecretIDFile string `json:"secret_id_file"`
	AppRoleMount string `json:"approle_mount"`
	// Mounts: Transit ("transit"), KV v2 ("secret") with fedtune's prefix
	// under it ("fedtune"), PKI ("pki") and the PKI role that signs the
	// federation's certificates ("fedtune").
	TransitMount string `json:"transit_mount"`
	KVMount      string `json:"kv_mount"`
	KVPrefix     string `json:"kv_prefix"`
	PKIMount     string `json:"pki_mount"`
	PKIRole      string `json:"pki_role"`
	// Timeout bounds each request to Vault (30s when zero).
	Timeout Duration `json:"timeout"`
}

// SetDefaults fills the documented defaults.
func (v *VaultSettings) SetDefaults() {
	if v.Auth == "" {
		v.Auth = "token"
	}
	def := func(p *string, d string) {
		if *p == "" {
			*p = d
		}
	}
	def(&v.AppRoleMount, "approle")
	def(&v.TransitMount, "transit")
	def(&v.KVMount, "secret")
	def(&v.KVPrefix, "fedtune")
	def(&v.PKIMount, "pki")
	def(&v.PKIRole, "fedtune")
	if v.Timeout == 0 {
		v.Timeout = Duration(30 * time.Second)
	}
}

// ResolvePaths makes the file names in v absolute against base (the
// directory of the configuration file).
func (v *VaultSettings) ResolvePaths(base string) {
	for _, p := range []*string{&v.CACertFile, &v.TokenFile, &v.SecretIDFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// IsZero reports whether no field is set.
func (v *VaultSettings) IsZero() bool { return *v == VaultSettings{} }

// Check validates v; prefix is the field path of v in the file
// ("keystore.vault"). The error names the bad field. It also checks that
// the credentials it names can be read, so that a missing token is
// reported at start and not at the first signature.
func (v *VaultSettings) Check(prefix string) error {
	f := func(name string) string { return prefix + "." + name }
	if v.Address == "" {
		return ferr(f("address"), "is required (Vault's URL, e.g. https://vault.example:8200)")
	}
	u, err := url.Parse(v.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ferr(f("address"), "%q is not an http(s) URL", v.Address)
	}
	if v.CACertFile != "" {
		if _, err := os.Stat(v.CACertFile); err != nil {
			return ferr(f("ca_cert_file"), "%v", err)
		}
	}
	switch v.Auth {
	case "token":
		if v.RoleID != "" || v.SecretIDFile != "" {
			return ferr(f("auth"), "is \"token\" but role_id/secret_id_file are set (use auth \"approle\")")
		}
		if v.TokenFile != "" {
			if _, err := readCredential(v.TokenFile); err != nil {
				return ferr(f("token_file"), "%v", err)
			}
		} else if os.Getenv("VAULT_TOKEN") == "" {
			return ferr(f("token_file"), "is empty and VAULT_TOKEN is not set: no Vault token")
		}
	case "approle":
		if v.TokenFile != "" {
			return ferr(f("token_file"), "is set but auth is \"approle\"")
		}
		if v.RoleID == "" {
			return ferr(f("role_id"), "is required with auth \"approle\"")
		}
		if v.SecretIDFile == "" {
			return ferr(f("secret_id_file"), "is required with auth \"approle\"")
		}
		if _, err := readCredential(v.SecretIDFile); err != nil {
			return ferr(f("secret_id_file"), "%v", err)
		}
	default:
		return ferr(f("auth"), "%q (want token or approle)", v.Auth)
	}
	for _, m := range []struct{ field, val string }{
		{"approle_mount", v.AppRoleMount}, {"transit_mount", v.TransitMount}, {"kv_mount", v.KVMount},
		{"kv_prefix", v.KVPrefix}, {"pki_mount", v.PKIMount}, {"pki_role", v.PKIRole},
	} {
		if !validMount(m.val) {
			return ferr(f(m.field), "%q is not a Vault path (want segments of [A-Za-z0-9._-] separated by /)", m.val)
		}
	}
	if v.Timeout.D() < time.Second {
		return ferr(f("timeout"), "%v is shorter than 1s", v.Timeout.D())
	}
	return nil
}

func validMount(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validKeyName reports whether s is a key name both stores accept.
func validKeyName(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' || s[0] == '_' || s[0] == '-' {
		return false
	}
	return validMount(s) && !strings.Contains(s, "/")
}

// readCredential reads a token or secret ID file: it must not be readable
// by other users; one trailing newline is dropped.
func readCredential(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s has mode %v: other users may read it (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// StoreConfig turns v (checked) into a keystore.VaultConfig, reading the
// token or secret ID.
func (v *VaultSettings) StoreConfig() (keystore.VaultConfig, error) {
	c := keystore.VaultConfig{
		Address: v.Address, Namespace: v.Namespace, CACertFile: v.CACertFile, TLSServerName: v.TLSServerName,
		TransitMount: v.TransitMount, KVMount: v.KVMount, KVPrefix: v.KVPrefix, PKIMount: v.PKIMount, PKIRole: v.PKIRole,
		Timeout: v.Timeout.D(),
	}
	switch v.Auth {
	case "approle":
		sid, err := readCredential(v.SecretIDFile)
		if err != nil {
			return c, fmt.Errorf("vault secret_id_file: %w", err)
		}
		c.AppRole = &keystore.AppRoleAuth{MountPath: v.AppRoleMount, RoleID: v.RoleID, SecretID: sid}
	default:
		if v.TokenFile != "" {
			tok, err := readCredential(v.TokenFile)
			if err != nil {
				return c, fmt.Errorf("vault token_file: %w", err)
			}
			c.Token = tok
		} else {
			c.Token = os.Getenv("VAULT_TOKEN")
		}
	}
	return c, nil
}

// Open connects to Vault and logs in. logf hears about token renewal
// failures.
func (v *VaultSettings) Open(ctx context.Context, logf func(format string, args ...any)) (*keystore.VaultStore, error) {
	c, err := v.StoreConfig()
	if err != nil {
		return nil, err
	}
	c.OnAuthError = func(err error) { logf("vault: token renewal: %v", err) }
	return keystore.NewVaultStore(ctx, c)
}

// EnsureSigningKey returns a signer for key name, creating the key (of
// algorithm alg) when the store has none. With a least-privilege Vault
// token the creation is refused; the error then says how to create it.
// An existing key of another algorithm is an error.
func EnsureSigningKey(ctx context.Context, st keystore.Store, name string, alg keystore.Algorithm) (keystore.VersionedSigner, error) {
	s, err := st.Signer(ctx, name)
	if err == nil {
		var ok bool
		switch alg {
		case keystore.Ed25519:
			_, ok = s.Public().(ed25519.PublicKey)
		case keystore.ECDSAP256:
			_, ok = s.Public().(*ecdsa.PublicKey)
		}
		if !ok {
			return nil, fmt.Errorf("key store: key %s is a %T key, want %s", name, s.Public(), alg)
		}
		return s, nil
	}
	if !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("key store: key %s: %w", name, err)
	}
	if err := st.CreateSigningKey(ctx, name, alg); err != nil && !errors.Is(err, keystore.ErrExists) {
		return nil, fmt.Errorf("key store: key %s does not exist and could not be created (an operator creates it with `fedtune keys create --alg %s %s`, adding --keystore vault and the Vault flags for Vault): %w", name, alg, name, err)
	}
	return st.Signer(ctx, name)
}

// renamedStore maps the server's fixed key names to the configured ones.
type renamedStore struct {
	keystore.Store
	names map[string]string
}

func (r renamedStore) name(n string) string {
	if m, ok := r.names[n]; ok {
		return m
	}
	return n
}

func (r renamedStore) CreateSigningKey(ctx context.Context, name string, alg keystore.Algorithm) error {
	return r.Store.CreateSigningKey(ctx, r.name(name), alg)
}

func (r renamedStore) Signer(ctx context.Context, name string) (keystore.VersionedSigner, error) {
	return r.Store.Signer(ctx, r.name(name))
}

func (r renamedStore) Rotate(ctx context.Context, name string) (int, error) {
	return r.Store.Rotate(ctx, r.name(name))
}

func (r renamedStore) PublicKeys(ctx context.Context, name string) ([]keystore.PublicKey, error) {
	return r.Store.PublicKeys(ctx, r.name(name))
}

// certAuthority issues the federation's mTLS certificates: the built-in
// CA or a Vault PKI mount.
type certAuthority interface {
	// Issue signs a certificate for pub with the identity
	// fedtune://role/name, valid for ttl; hosts make it a server
	// certificate.
	Issue(pub crypto.PublicKey, role Role, name string, ttl time.Duration, hosts []string) (*x509.Certificate, error)
	// Cert is the root certificates chain to.
	Cert() *x509.Certificate
	// Pool holds only Cert.
	Pool() *x509.CertPool
}

// vaultCA issues certificates with a Vault PKI role. Vault signs
// certificate requests only (it never sees a bare public key), so the
// CSR whose key is being certified must be known: callers that hold the
// private key pass it with issueCSR; for the Enroll and Renew RPCs
// csrInterceptor remembers the request's CSR for the duration of the call.
type vaultCA struct {
	vs   *keystore.VaultStore
	root *x509.Certificate
	mu   sync.Mutex
	csrs map[string]*pendingCSR // by PKIX public key, during Enroll/Renew
}

type pendingCSR struct {
	der   []byte
	users int
}

func newVaultCA(ctx context.Context, vs *keystore.VaultStore) (*vaultCA, error) {
	roots, err := vs.Roots(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault PKI: %w", err)
	}
	if len(roots) != 1 {
		return nil, fmt.Errorf("vault PKI: want one issuing CA certificate, got %d", len(roots))
	}
	return &vaultCA{vs: vs, root: roots[0], csrs: map[string]*pendingCSR{}}, nil
}

func (v *vaultCA) Cert() *x509.Certificate { return v.root }

func (v *vaultCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(v.root)
	return p
}

func (v *vaultCA) Issue(pub crypto.PublicKey, role Role, name string, ttl time.Duration, hosts []string) (*x509.Certificate, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var csr []byte
	v.mu.Lock()
	if p := v.csrs[string(der)]; p != nil {
		csr = p.der
	}
	v.mu.Unlock()
	if csr == nil {
		return nil, fmt.Errorf("vault PKI: no certificate request for the %s:%s key (Vault signs requests only)", role, name)
	}
	return v.issueCSR(context.Background(), csr, pub, role, name, ttl, hosts)
}

// issueCSR has Vault sign csr (for pub) as fedtune://role/name and checks
// that the certificate names exactly that identity: a PKI role that copies
// names from the request (use_csr_sans) would let a site choose its own.
func (v *vaultCA) issueCSR(ctx context.Context, csr []byte, pub crypto.PublicKey, role Role, name string, ttl time.Duration, hosts []string) (*x509.Certificate, error) {
	id := IdentityURI(role, name)
	req := keystore.CertRequest{CommonName: string(role) + ":" + name, URIs: []*url.URL{id}, PublicKey: pub, CSR: csr, TTL: ttl}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			req.IPAddresses = append(req.IPAddresses, ip)
		} else {
			req.DNSNames = append(req.DNSNames, h)
		}
	}
	ic, err := v.vs.Issue(ctx, req)
	if err != nil {
		return nil, err
	}
	c := ic.Certificate
	if len(ic.Chain) != 0 {
		return nil, fmt.Errorf("vault PKI: certificate for %s comes with %d intermediates; fedtune wants the mount's issuer to sign directly", id, len(ic.Chain))
	}
	got, err := IdentityFromCert(c)
	if err != nil {
		return nil, fmt.Errorf("vault PKI: %w (set use_csr_sans=false on the PKI role)", err)
	}
	if got.Role != role || got.Name != name {
		return nil, fmt.Errorf("vault PKI: certificate names %s, want %s:%s (set use_csr_sans=false on the PKI role)", got, role, name)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: v.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("vault PKI: certificate for %s: %w", id, err)
	}
	return c, nil
}

// csrInterceptor remembers the CSR of an Enroll or Renew request while its
// handler runs, for vaultCA.Issue. It runs after authorization.
func (v *vaultCA) csrInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	var csr []byte
	switch r := req.(type) {
	case *pb.EnrollRequest:
		csr = r.Csr
	case *pb.RenewRequest:
		csr = r.Csr
	default:
		return h(ctx, req)
	}
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return h(ctx, req) // the handler refuses it with a precise error
	}
	key, err := x509.MarshalPKIXPublicKey(parsed.PublicKey)
	if err != nil {
		return h(ctx, req)
	}
	// Concurrent requests for one key share the first CSR: any CSR
	// signed by the key proves possession equally well.
	v.mu.Lock()
	p := v.csrs[string(key)]
	if p == nil {
		p = &pendingCSR{der: csr}
		v.csrs[string(key)] = p
	}
	p.users++
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		if p.users--; p.users == 0 {
			delete(v.csrs, string(key))
		}
		v.mu.Unlock()
	}()
	return h(ctx, req)
}

// initVaultCA uses the Vault PKI mount as the federation's certificate
// authority: its issuing CA is the only root for client certificates
// (written to DataDir/ca.pem for sites), and the server's own TLS
// certificate is signed by the PKI role.
func (s *Server) initVaultCA(ctx context.Context) error {
	vca, err := newVaultCA(ctx, s.vault)
	if err != nil {
		return err
	}
	s.ca = vca
	if err := atomicfile.Write(filepath.Join(s.cfg.DataDir, "ca.pem"), pemCert(vca.root.Raw), 0o644); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), s.rand)
	if err != nil {
		return err
	}
	cert, err := s.issueLocal(key, RoleServer, s.cfg.Federation, s.cfg.CertTTL.D(), s.cfg.ServerNames)
	if err != nil {
		return fmt.Errorf("server TLS certificate: %w", err)
	}
	s.tlsCert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	return nil
}

// issueLocal certifies a key this process holds.
func (s *Server) issueLocal(key *ecdsa.PrivateKey, role Role, name string, ttl time.Duration, hosts []string) (*x509.Certificate, error) {
	vca, ok := s.ca.(*vaultCA)
	if !ok {
		return s.ca.Issue(key.Public(), role, name, ttl, hosts)
	}
	csr, err := keystore.NewCSR(key, keystore.CertRequest{CommonName: string(role) + ":" + name})
	if err != nil {
		return nil, err
	}
	return vca.issueCSR(context.Background(), csr, key.Public(), role, name, ttl, hosts)
}

// unaryInterceptors is the server's unary chain: authentication,
// authorization and limits first, then (with Vault PKI) the CSR
// bookkeeping of vaultCA.
func (s *Server) unaryInterceptors() []grpc.UnaryServerInterceptor {
	ics := []grpc.UnaryServerInterceptor{s.unaryInterceptor}
	if vca, ok := s.ca.(*vaultCA); ok {
		ics = append(ics, vca.csrInterceptor)
	}
	return ics
}
