package keystore

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// VaultConfig says how to reach Vault and where fedtune's keys live there.
// Build it explicitly (or with [VaultConfigFromEnv]); unlike the Vault CLI,
// [NewVaultStore] reads no environment variables of its own, so a stray
// VAULT_SKIP_VERIFY cannot turn off certificate checks.
type VaultConfig struct {
	// Address is Vault's URL, e.g. "https://vault.example:8200".
	Address string
	// Namespace is the Vault Enterprise namespace ("" for the root
	// namespace; Vault Community Edition has only that one).
	Namespace string

	// CACertFile and CACertPEM add a custom CA for Vault's TLS certificate
	// (either or both; the system roots are used when both are empty).
	CACertFile string
	CACertPEM  []byte
	// TLSServerName overrides the name checked in Vault's certificate.
	TLSServerName string

	// Token authenticates with a Vault token. If AppRole is set instead,
	// the store logs in with it. Exactly one of them must be set.
	Token   string
	AppRole *AppRoleAuth

	// TransitMount is the Transit engine's mount path ("transit").
	TransitMount string
	// KVMount is the KV version 2 mount ("secret"), KVPrefix the path
	// under it that holds fedtune's secrets ("fedtune").
	KVMount, KVPrefix string
	// PKIMount is the PKI engine's mount ("pki") and PKIRole the role used
	// when a CertRequest names none.
	PKIMount, PKIRole string

	// Timeout bounds each request to Vault (30s if zero).
	Timeout time.Duration

	// OnAuthError, if set, is called from the token-renewal goroutine when
	// renewal or re-login fails; the store keeps retrying AppRole logins.
	OnAuthError func(error)
}

// AppRoleAuth holds AppRole credentials (Vault's auth/approle method).
type AppRoleAuth struct {
	MountPath string // "approle" if empty
	RoleID    string
	SecretID  string
}

func (c *VaultConfig) withDefaults() VaultConfig {
	d := *c
	if d.TransitMount == "" {
		d.TransitMount = "transit"
	}
	if d.KVMount == "" {
		d.KVMount = "secret"
	}
	if d.KVPrefix == "" {
		d.KVPrefix = "fedtune"
	}
	if d.PKIMount == "" {
		d.PKIMount = "pki"
	}
	if d.PKIRole == "" {
		d.PKIRole = "fedtune"
	}
	if d.Timeout == 0 {
		d.Timeout = 30 * time.Second
	}
	return d
}

func (c *VaultConfig) validate() error {
	if c.Address == "" {
		return errors.New("keystore: vault: no address (set --vault-addr or VAULT_ADDR)")
	}
	if c.Token != "" && c.AppRole != nil {
		return errors.New("keystore: vault: both a token and AppRole credentials are set; use one")
	}
	if c.Token == "" && c.AppRole == nil {
		return errors.New("keystore: vault: no credentials (set VAULT_TOKEN or AppRole role and secret IDs)")
	}
	if c.AppRole != nil && (c.AppRole.RoleID == "" || c.AppRole.SecretID == "") {
		return errors.New("keystore: vault: AppRole needs both a role ID and a secret ID")
	}
	for _, m := range []struct{ name, v string }{
		{"TransitMount", c.TransitMount}, {"KVMount", c.KVMount}, {"KVPrefix", c.KVPrefix}, {"PKIMount", c.PKIMount},
	} {
		if strings.HasPrefix(m.v, "/") || strings.HasSuffix(m.v, "/") || strings.Contains(m.v, "..") {
			return fmt.Errorf("keystore: vault: %s %q: want a path without leading or trailing '/'", m.name, m.v)
		}
	}
	return nil
}

// VaultConfigFromEnv fills Address, Token, Namespace and CACertFile from
// the Vault CLI's variables VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE and
// VAULT_CACERT. Other settings keep their defaults.
func VaultConfigFromEnv() VaultConfig {
	return VaultConfig{
		Address:    os.Getenv("VAULT_ADDR"),
		Token:      os.Getenv("VAULT_TOKEN"),
		Namespace:  os.Getenv("VAULT_NAMESPACE"),
		CACertFile: os.Getenv("VAULT_CACERT"),
	}
}

// VaultStore is a [Store] and a [CertIssuer] backed by HashiCorp Vault:
// signing keys in the Transit engine (created non-exportable, so the
// private keys never leave Vault), secrets in a KV version 2 mount,
// certificates from a PKI mount.
//
// Signatures pin key_version, so a signer's public key and its signatures
// always match, across rotations. A renewable token (from AppRole, or given
// directly) is renewed in the background by Vault's LifetimeWatcher; an
// AppRole login is repeated when the token reaches its maximum TTL. Close
// stops that.
type VaultStore struct {
	cfg    VaultConfig
	client *vault.Client

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

var (
	_ Store      = (*VaultStore)(nil)
	_ CertIssuer = (*VaultStore)(nil)
)

// NewVaultStore connects to Vault, authenticates and starts token renewal.
func NewVaultStore(ctx context.Context, cfg VaultConfig) (*VaultStore, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("keystore: vault: %w", vc.Error)
	}
	vc.Address = cfg.Address
	vc.Timeout = cfg.Timeout
	vc.MaxRetries = 2
	tr, ok := vc.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, errors.New("keystore: vault: unexpected HTTP transport")
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLSServerName}
	if cfg.CACertFile != "" || len(cfg.CACertPEM) > 0 {
		pool := x509.NewCertPool()
		if cfg.CACertFile != "" {
			b, err := os.ReadFile(cfg.CACertFile)
			if err != nil {
				return nil, fmt.Errorf("keystore: vault CA certificate: %w", err)
			}
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("keystore: vault CA certificate %s: no PEM certificate found", cfg.CACertFile)
			}
		}
		if len(cfg.CACertPEM) > 0 && !pool.AppendCertsFromPEM(cfg.CACertPEM) {
			return nil, errors.New("keystore: vault CA certificate: no PEM certificate found in CACertPEM")
		}
		tlsConf.RootCAs = pool
	}
	tr.TLSClientConfig = tlsConf
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("keystore: vault: %w", err)
	}
	// NewClient reads VAULT_TOKEN and VAULT_NAMESPACE; use only cfg.
	client.ClearToken()
	client.ClearNamespace()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}
	s := &VaultStore{cfg: cfg, client: client, stop: make(chan struct{}), done: make(chan struct{})}

	var auth *vault.Secret
	if cfg.AppRole != nil {
		if auth, err = s.appRoleLogin(ctx); err != nil {
			return nil, err
		}
	} else {
		client.SetToken(cfg.Token)
		self, err := client.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, vaultErr("looking up the token", err)
		}
		renewable, _ := self.TokenIsRenewable()
		ttl, _ := self.TokenTTL()
		if renewable && ttl > 0 {
			auth = &vault.Secret{Auth: &vault.SecretAuth{ClientToken: cfg.Token, Renewable: true, LeaseDuration: int(ttl.Seconds())}}
		}
	}
	go s.renew(auth)
	return s, nil
}

// Client returns the underlying Vault client, for operations this package
// does not wrap. It carries the store's token.
func (s *VaultStore) Client() *vault.Client { return s.client }

// Close stops token renewal. It does not revoke the token.
func (s *VaultStore) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// String describes the store without credentials.
func (s *VaultStore) String() string {
	ns := ""
	if s.cfg.Namespace != "" {
		ns = " namespace " + s.cfg.Namespace
	}
	return fmt.Sprintf("keystore.VaultStore(%s%s)", s.cfg.Address, ns)
}

// Format prints String for every verb, so no fmt verb shows the token.
func (s *VaultStore) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

func (s *VaultStore) appRoleLogin(ctx context.Context) (*vault.Secret, error) {
	ar := s.cfg.AppRole
	mount := ar.MountPath
	if mount == "" {
		mount = "approle"
	}
	// Log in on a clone without a token, so that the old (possibly expired)
	// token is not sent and requests of other goroutines keep theirs.
	lc, err := s.client.Clone()
	if err != nil {
		return nil, vaultErr("AppRole login", err)
	}
	lc.ClearToken()     // Clone calls NewClient, which reads VAULT_TOKEN
	lc.ClearNamespace() // and VAULT_NAMESPACE
	if s.cfg.Namespace != "" {
		lc.SetNamespace(s.cfg.Namespace)
	}
	sec, err := lc.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{
		"role_id": ar.RoleID, "secret_id": ar.SecretID,
	})
	if err != nil {
		return nil, vaultErr("AppRole login", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, errors.New("keystore: vault: AppRole login returned no token")
	}
	s.client.SetToken(sec.Auth.ClientToken)
	return sec, nil
}

// renew keeps the token alive until Close. auth is nil when the token
// needs no renewal (a root token, say).
func (s *VaultStore) renew(auth *vault.Secret) {
	defer close(s.done)
	report := func(err error) {
		if s.cfg.OnAuthError != nil && err != nil {
			s.cfg.OnAuthError(err)
		}
	}
	backoff := time.Second
	for {
		if auth == nil || !auth.Auth.Renewable {
			if s.cfg.AppRole == nil || auth == nil || auth.Auth.LeaseDuration <= 0 {
				<-s.stop // nothing expires
				return
			}
			// A non-renewable AppRole token: log in again shortly before
			// it expires.
			wait := time.Duration(auth.Auth.LeaseDuration) * time.Second * 2 / 3
			select {
			case <-s.stop:
				return
			case <-time.After(wait):
			}
		} else {
			w, err := s.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: auth})
			if err != nil {
				report(vaultErr("token renewal", err))
				<-s.stop
				return
			}
			go w.Start()
			stopped := false
		watch:
			for {
				select {
				case <-s.stop:
					w.Stop()
					stopped = true
					break watch
				case err := <-w.DoneCh():
					// Max TTL reached or renewal failed.
					if err != nil {
						report(vaultErr("token renewal", err))
					}
					break watch
				case <-w.RenewCh():
				}
			}
			if stopped {
				return
			}
			if s.cfg.AppRole == nil {
				report(errors.New("keystore: vault: token can no longer be renewed; restart with a new token"))
				<-s.stop
				return
			}
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
			a, err := s.appRoleLogin(ctx)
			cancel()
			if err == nil {
				auth, backoff = a, time.Second
				break
			}
			report(err)
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	}
}

// vaultErr wraps a Vault client error. Vault's messages name the request
// path and the server's reasons; they never echo request bodies.
func vaultErr(what string, err error) error {
	var re *vault.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return fmt.Errorf("keystore: vault: %s: %w (%v)", what, ErrNotFound, strings.Join(re.Errors, "; "))
	}
	return fmt.Errorf("keystore: vault: %s: %w", what, err)
}

func (s *VaultStore) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// errNotSigningKey marks a Transit key of a type fedtune does not sign
// with (an encryption key of another application, say).
var errNotSigningKey = errors.New("not a signing key")

// transitKey is what Vault says about a Transit key.
type transitKey struct {
	alg      Algorithm
	latest   int
	minDec   int
	pubs     map[int]crypto.PublicKey
	versions []int
}

func (s *VaultStore) readKey(ctx context.Context, name string) (*transitKey, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.client.Logical().ReadWithContext(ctx, s.cfg.TransitMount+"/keys/"+name)
	if err != nil {
		return nil, vaultErr("reading transit key "+name, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("keystore: vault: transit key %q: %w", name, ErrNotFound)
	}
	return parseTransitKey(name, sec.Data)
}

func parseTransitKey(name string, d map[string]any) (*transitKey, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("keystore: vault: transit key %q: %s", name, fmt.Sprintf(format, args...))
	}
	k := &transitKey{pubs: map[int]crypto.PublicKey{}}
	typ, _ := d["type"].(string)
	switch typ {
	case "ed25519":
		k.alg = Ed25519
	case "ecdsa-p256":
		k.alg = ECDSAP256
	default:
		return nil, fmt.Errorf("%w: %w", bad("type %q is not a signing type fedtune uses (want ed25519 or ecdsa-p256)", typ), errNotSigningKey)
	}
	var err error
	if k.latest, err = jsonInt(d["latest_version"]); err != nil {
		return nil, bad("latest_version: %v", err)
	}
	if k.minDec, err = jsonInt(d["min_decryption_version"]); err != nil {
		k.minDec = 1
	}
	keys, ok := d["keys"].(map[string]any)
	if !ok {
		return nil, bad("no keys field")
	}
	for vs, raw := range keys {
		v, err := strconv.Atoi(vs)
		if err != nil {
			return nil, bad("version %q is not a number", vs)
		}
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, bad("version %d: no public key", v)
		}
		pubStr, _ := m["public_key"].(string)
		var pub crypto.PublicKey
		switch k.alg {
		case Ed25519:
			b, err := base64.StdEncoding.DecodeString(pubStr)
			if err != nil || len(b) != ed25519.PublicKeySize {
				return nil, bad("version %d: public_key is not a base64 Ed25519 key", v)
			}
			pub = ed25519.PublicKey(b)
		case ECDSAP256:
			if pub, err = ParsePublicKeyPEM([]byte(pubStr)); err != nil {
				return nil, bad("version %d: %v", v, err)
			}
			if a, _ := algorithmOf(pub); a != ECDSAP256 {
				return nil, bad("version %d: public key is not P-256", v)
			}
		}
		k.pubs[v] = pub
		k.versions = append(k.versions, v)
	}
	sort.Ints(k.versions)
	if _, ok := k.pubs[k.latest]; !ok {
		return nil, bad("latest_version %d has no public key", k.latest)
	}
	return k, nil
}

func jsonInt(v any) (int, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err
	case float64:
		return int(n), nil
	case int:
		return n, nil
	}
	return 0, fmt.Errorf("not a number: %T", v)
}

// CreateSigningKey implements [Store]: a Transit key of type ed25519 or
// ecdsa-p256, not exportable and without plaintext backup.
func (s *VaultStore) CreateSigningKey(ctx context.Context, name string, alg Algorithm) error {
	alg, err := ParseAlgorithm(string(alg))
	if err != nil {
		return err
	}
	if _, err := s.readKey(ctx, name); err == nil {
		return fmt.Errorf("keystore: vault: transit key %q: %w", name, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err = s.client.Logical().WriteWithContext(ctx, s.cfg.TransitMount+"/keys/"+name, map[string]any{
		"type":                   string(alg),
		"exportable":             false,
		"allow_plaintext_backup": false,
	})
	if err != nil {
		return vaultErr("creating transit key "+name, err)
	}
	return nil
}

// Rotate implements [Store].
func (s *VaultStore) Rotate(ctx context.Context, name string) (int, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.client.Logical().WriteWithContext(cctx, s.cfg.TransitMount+"/keys/"+name+"/rotate", nil)
	if err != nil {
		return 0, vaultErr("rotating transit key "+name, err)
	}
	// Vault 1.x returns the key's description; older ones return nothing.
	if sec != nil && sec.Data != nil {
		if k, err := parseTransitKey(name, sec.Data); err == nil {
			return k.latest, nil
		}
	}
	k, err := s.readKey(ctx, name)
	if err != nil {
		return 0, err
	}
	return k.latest, nil
}

// PublicKeys implements [Store]. Versions below the key's
// min_decryption_version are still listed: Vault keeps their public keys.
func (s *VaultStore) PublicKeys(ctx context.Context, name string) ([]PublicKey, error) {
	k, err := s.readKey(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []PublicKey
	for _, v := range k.versions {
		out = append(out, PublicKey{Name: name, Version: v, Algorithm: k.alg, Key: k.pubs[v]})
	}
	return out, nil
}

// List implements [Store]: the Transit keys of a type fedtune signs with.
func (s *VaultStore) List(ctx context.Context) ([]KeyInfo, error) {
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.client.Logical().ListWithContext(cctx, s.cfg.TransitMount+"/keys")
	if err != nil {
		return nil, vaultErr("listing transit keys", err)
	}
	var out []KeyInfo
	if sec == nil || sec.Data == nil {
		return out, nil
	}
	names, _ := sec.Data["keys"].([]any)
	for _, n := range names {
		name, _ := n.(string)
		if checkName(name) != nil {
			continue
		}
		k, err := s.readKey(ctx, name)
		if err != nil {
			if errors.Is(err, errNotSigningKey) {
				continue // an encryption key of some other application
			}
			return nil, err
		}
		out = append(out, KeyInfo{Name: name, Algorithm: k.alg, CurrentVersion: k.latest, Versions: k.versions})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Signer implements [Store]. The signer is pinned to the version current
// now: every request it makes carries key_version.
func (s *VaultStore) Signer(ctx context.Context, name string) (VersionedSigner, error) {
	k, err := s.readKey(ctx, name)
	if err != nil {
		return nil, err
	}
	return &vaultSigner{s: s, name: name, version: k.latest, alg: k.alg, pub: k.pubs[k.latest]}, nil
}

// CryptoSigner returns a crypto.Signer for the current version of a Transit
// key, for x509 APIs (creating a CSR with a key that stays in Vault, say).
// Its Sign calls Vault with a background context bounded by the store's
// timeout.
func (s *VaultStore) CryptoSigner(ctx context.Context, name string) (crypto.Signer, error) {
	vs, err := s.Signer(ctx, name)
	if err != nil {
		return nil, err
	}
	return &vaultCryptoSigner{vs.(*vaultSigner)}, nil
}

type vaultSigner struct {
	s       *VaultStore
	name    string
	version int
	alg     Algorithm
	pub     crypto.PublicKey
}

func (v *vaultSigner) Public() crypto.PublicKey { return v.pub }
func (v *vaultSigner) KeyVersion() int          { return v.version }
func (v *vaultSigner) String() string {
	return fmt.Sprintf("keystore.VaultSigner(%s v%d %s)", v.name, v.version, v.alg)
}

// Sign implements [Signer] with transit/sign/<name>. For Ed25519 the
// result is the raw 64-byte RFC 8032 signature; for ECDSA P-256 the ASN.1
// DER signature over SHA-256(message).
func (v *vaultSigner) Sign(ctx context.Context, message []byte) ([]byte, error) {
	return v.sign(ctx, message, false)
}

func (v *vaultSigner) sign(ctx context.Context, input []byte, prehashed bool) ([]byte, error) {
	req := map[string]any{
		"input":       base64.StdEncoding.EncodeToString(input),
		"key_version": v.version,
	}
	if v.alg == ECDSAP256 {
		req["hash_algorithm"] = "sha2-256"
		req["marshaling_algorithm"] = "asn1"
		req["prehashed"] = prehashed
	}
	ctx, cancel := v.s.ctx(ctx)
	defer cancel()
	sec, err := v.s.client.Logical().WriteWithContext(ctx, v.s.cfg.TransitMount+"/sign/"+v.name, req)
	if err != nil {
		return nil, vaultErr("signing with transit key "+v.name, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("keystore: vault: transit/sign/%s returned no signature", v.name)
	}
	str, _ := sec.Data["signature"].(string)
	// "vault:v<version>:<base64 signature>"
	parts := strings.SplitN(str, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || parts[1] != "v"+strconv.Itoa(v.version) {
		return nil, fmt.Errorf("keystore: vault: transit/sign/%s: signature is not of the form vault:v%d:<base64>", v.name, v.version)
	}
	sig, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("keystore: vault: transit/sign/%s: signature is not base64", v.name)
	}
	if v.alg == Ed25519 && len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("keystore: vault: transit/sign/%s: Ed25519 signature is %d bytes, want 64", v.name, len(sig))
	}
	return sig, nil
}

type vaultCryptoSigner struct{ v *vaultSigner }

func (c *vaultCryptoSigner) Public() crypto.PublicKey { return c.v.pub }
func (c *vaultCryptoSigner) String() string           { return c.v.String() }

func (c *vaultCryptoSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	switch c.v.alg {
	case Ed25519:
		if opts.HashFunc() != crypto.Hash(0) {
			return nil, fmt.Errorf("keystore: vault: Ed25519 key %q signs whole messages (crypto.Hash(0)), not %v digests", c.v.name, opts.HashFunc())
		}
		return c.v.sign(context.Background(), digest, false)
	case ECDSAP256:
		if opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
			return nil, fmt.Errorf("keystore: vault: ECDSA key %q signs SHA-256 digests only", c.v.name)
		}
		return c.v.sign(context.Background(), digest, true)
	}
	return nil, fmt.Errorf("keystore: vault: key %q: unsupported algorithm", c.v.name)
}

// PutSecret implements [Store]: KV v2 at <KVMount>/data/<KVPrefix>/<name>,
// field "value" holding base64.
func (s *VaultStore) PutSecret(ctx context.Context, name string, value []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.client.KVv2(s.cfg.KVMount).Put(ctx, s.cfg.KVPrefix+"/"+name, map[string]any{
		"value": base64.StdEncoding.EncodeToString(value),
	})
	if err != nil {
		return vaultErr("writing secret "+name, err)
	}
	return nil
}

// GetSecret implements [Store].
func (s *VaultStore) GetSecret(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.client.KVv2(s.cfg.KVMount).Get(ctx, s.cfg.KVPrefix+"/"+name)
	if errors.Is(err, vault.ErrSecretNotFound) {
		return nil, fmt.Errorf("keystore: vault: secret %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, vaultErr("reading secret "+name, err)
	}
	str, ok := sec.Data["value"].(string)
	if !ok {
		return nil, fmt.Errorf("keystore: vault: secret %q has no string field \"value\" (not written by fedtune?)", name)
	}
	b, err := base64.StdEncoding.DecodeString(str)
	if err != nil {
		return nil, fmt.Errorf("keystore: vault: secret %q: field \"value\" is not base64", name)
	}
	return b, nil
}

// Issue implements [CertIssuer] with <PKIMount>/sign/<role>. req.CSR is
// required: Vault signs requests and never sees the subject's private key.
// The role (req.Role, or PKIRole) decides which names and TTLs Vault
// allows.
func (s *VaultStore) Issue(ctx context.Context, req CertRequest) (*IssuedCert, error) {
	if len(req.CSR) == 0 {
		return nil, fmt.Errorf("keystore: vault PKI: certificate for %q: Vault signs certificate requests only; set CertRequest.CSR (see NewCSR)", req.CommonName)
	}
	csr, err := parseCSR(req)
	if err != nil {
		return nil, err
	}
	role := req.Role
	if role == "" {
		role = s.cfg.PKIRole
	}
	if err := checkName(role); err != nil {
		return nil, fmt.Errorf("keystore: vault PKI role: %w", err)
	}
	body := map[string]any{
		"csr":         string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req.CSR})),
		"common_name": req.CommonName,
		"format":      "pem",
	}
	if len(req.DNSNames) > 0 {
		body["alt_names"] = strings.Join(req.DNSNames, ",")
	}
	if len(req.IPAddresses) > 0 {
		ips := make([]string, len(req.IPAddresses))
		for i, ip := range req.IPAddresses {
			ips[i] = ip.String()
		}
		body["ip_sans"] = strings.Join(ips, ",")
	}
	if len(req.URIs) > 0 {
		uris := make([]string, len(req.URIs))
		for i, u := range req.URIs {
			uris[i] = u.String()
		}
		body["uri_sans"] = strings.Join(uris, ",")
	}
	if req.TTL > 0 {
		body["ttl"] = fmt.Sprintf("%ds", int64(req.TTL/time.Second))
	}
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.client.Logical().WriteWithContext(cctx, s.cfg.PKIMount+"/sign/"+role, body)
	if err != nil {
		return nil, vaultErr(fmt.Sprintf("PKI signing certificate for %q with role %s", req.CommonName, role), err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("keystore: vault PKI: %s/sign/%s returned nothing", s.cfg.PKIMount, role)
	}
	certPEM, _ := sec.Data["certificate"].(string)
	certs, err := parseCertsPEM([]byte(certPEM))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("keystore: vault PKI: %s/sign/%s: no certificate in the response", s.cfg.PKIMount, role)
	}
	leaf := certs[0]
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := leaf.PublicKey.(equaler); !ok || !e.Equal(csr.PublicKey) {
		return nil, fmt.Errorf("keystore: vault PKI: issued certificate for %q does not hold the requested key", req.CommonName)
	}
	out := &IssuedCert{Certificate: leaf}
	var chain []*x509.Certificate
	if raw, ok := sec.Data["ca_chain"].([]any); ok {
		for _, r := range raw {
			if p, ok := r.(string); ok {
				cs, err := parseCertsPEM([]byte(p))
				if err != nil {
					return nil, fmt.Errorf("keystore: vault PKI: ca_chain: %v", err)
				}
				chain = append(chain, cs...)
			}
		}
	} else if p, ok := sec.Data["issuing_ca"].(string); ok {
		if chain, err = parseCertsPEM([]byte(p)); err != nil {
			return nil, fmt.Errorf("keystore: vault PKI: issuing_ca: %v", err)
		}
	}
	for _, c := range chain {
		// Self-signed certificates are roots: they go in Roots, not the chain.
		if c.CheckSignatureFrom(c) == nil && string(c.RawIssuer) == string(c.RawSubject) {
			continue
		}
		out.Chain = append(out.Chain, c)
	}
	return out, nil
}

// Roots implements [CertIssuer]: the certificate of the PKI mount's default
// issuer (a root, or an intermediate used as the federation's trust
// anchor).
func (s *VaultStore) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.client.Logical().ReadWithContext(ctx, s.cfg.PKIMount+"/cert/ca")
	if err != nil {
		return nil, vaultErr("reading PKI CA certificate", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("keystore: vault PKI: %s has no CA certificate (generate or import one first)", s.cfg.PKIMount)
	}
	p, _ := sec.Data["certificate"].(string)
	certs, err := parseCertsPEM([]byte(p))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("keystore: vault PKI: %s/cert/ca: no certificate", s.cfg.PKIMount)
	}
	return certs[:1], nil
}

// Revoke revokes the certificate with the given serial number in the PKI
// mount; the next CRL lists it.
func (s *VaultStore) Revoke(ctx context.Context, serial *big.Int) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.client.Logical().WriteWithContext(ctx, s.cfg.PKIMount+"/revoke", map[string]any{
		"serial_number": serialHex(serial),
	})
	if err != nil {
		return vaultErr("revoking certificate "+serialHex(serial), err)
	}
	return nil
}

// CRL returns the PKI mount's current certificate revocation list, its
// signature checked against Roots.
func (s *VaultStore) CRL(ctx context.Context) (*x509.RevocationList, error) {
	roots, err := s.Roots(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.client.Logical().ReadWithContext(cctx, s.cfg.PKIMount+"/cert/crl")
	if err != nil {
		return nil, vaultErr("reading CRL", err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("keystore: vault PKI: %s has no CRL", s.cfg.PKIMount)
	}
	p, _ := sec.Data["certificate"].(string)
	b, _ := pem.Decode([]byte(p))
	if b == nil || b.Type != "X509 CRL" {
		return nil, fmt.Errorf("keystore: vault PKI: %s/cert/crl: no X509 CRL PEM block", s.cfg.PKIMount)
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keystore: vault PKI: CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(roots[0]); err != nil {
		return nil, fmt.Errorf("keystore: vault PKI: CRL signature: %w", err)
	}
	return crl, nil
}

func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
