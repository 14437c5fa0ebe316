// Package server is the aggregator: the gRPC services a federation's sites,
// its central team and its auditors call (proto/fedtune/v1), mutual TLS with
// a built-in federation CA (or a HashiCorp Vault PKI role), the durable
// round state in SQLite, the round driver with real timers, and publishing
// of global adapters.
//
// # Keys
//
// The configured key store (keystore.type "file" or "vault") holds the
// audit log's checkpoint key and the provenance key; with "vault" they are
// Transit keys and every certificate is signed by the Vault PKI role, and
// the data directory holds no long-term private key. PrepareVault sets up
// the mounts and the PKI role for a demo or a test.
//
// # Security
//
// Every connection is TLS 1.3 with X25519MLKEM768 preferred. Callers are
// identified by the URI SAN of a certificate from the federation CA
// (fedtune://site/<name>, fedtune://admin/<name>, fedtune://auditor/<name>);
// a chain of interceptors authenticates, authorizes by role, rate-limits and
// size-limits every RPC, and every refusal is written to the audit log as an
// access.denied entry. Sites enroll with a one-time token (stored hashed,
// compared in constant time) and get a short-lived certificate; revocation
// takes effect on the next RPC.
//
// # Persistence
//
// State changes are committed to SQLite (synchronous=FULL) and the audit log
// before the server acts on them. After a crash, a round that was in progress
// is aborted cleanly at start (round.aborted with the reason), except one
// whose global adapter was already computed and written: that round is
// completed, and its model.published entry is appended only if it is not
// already in the log. Nothing is counted twice: dp.spend entries and
// published versions are keyed by (round, site) and round.
package server

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/internal/atomicfile"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/fedtune/fedtune/crypto/keystore"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
)

// Options are the server's clock, randomness and logger; zero values mean
// time.Now, crypto/rand.Reader and a logger on stderr.
type Options struct {
	Now        func() time.Time
	Rand       io.Reader
	Log        *log.Logger
	Passphrase []byte // key store passphrase; from the environment when nil
	// Hooks lets tests stop the process at named points of a round.
	Hook func(point string)
}

// Key names in the key store.
const (
	keyCA    = "federation-ca"
	keyAudit = "audit-checkpoint"
	keyProv  = "provenance"
)

// Server is a running aggregator.
type Server struct {
	cfg     *Config
	st      *store
	keys    keystore.Store
	vault   *keystore.VaultStore // nil unless keystore.type is vault
	ca      certAuthority
	audit   AuditLog
	now     func() time.Time
	rand    io.Reader
	log     *log.Logger
	hook    func(string)
	metrics *metrics

	baseDigest string
	tlsCert    tls.Certificate

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter

	grpc   *grpc.Server
	health *health.Server
	rounds *roundDriver

	pb.UnimplementedFederationServer
}

// New opens (or, on first start, creates) the server's data directory: the
// key store, the federation CA, the SQLite state and the audit log. It
// recovers a round interrupted by a crash before returning.
func New(ctx context.Context, cfg *Config, opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Log == nil {
		opts.Log = log.New(os.Stderr, "fedtune server: ", log.LstdFlags|log.Lmsgprefix)
	}
	if opts.Hook == nil {
		opts.Hook = func(string) {}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, now: opts.Now, rand: opts.Rand, log: opts.Log, hook: opts.Hook,
		metrics: &metrics{}, limiters: map[string]*rate.Limiter{}}
	var err error
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if err := s.openKeys(ctx, opts.Passphrase); err != nil {
		return nil, err
	}
	if s.baseDigest, err = DirDigest(cfg.BaseModel); err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	if s.st, err = openStore(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.vault != nil {
		err = s.initVaultCA(ctx)
	} else {
		err = s.initCA(ctx)
	}
	if err != nil {
		return nil, err
	}
	if s.audit, err = openAuditLog(ctx, filepath.Join(cfg.DataDir, "audit"), cfg.Federation, s.keys, s.now); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if err := s.firstStart(ctx); err != nil {
		return nil, err
	}
	s.rounds = newRoundDriver(s)
	if err := s.rounds.recover(ctx); err != nil {
		return nil, fmt.Errorf("recover interrupted round: %w", err)
	}
	ok = true
	return s, nil
}

// openKeys opens the configured key store and makes sure the checkpoint
// and provenance keys (and, for the file store, the federation CA key)
// exist.
func (s *Server) openKeys(ctx context.Context, pass []byte) error {
	kc := s.cfg.Keystore
	names := map[string]string{keyAudit: cmp.Or(kc.CheckpointKey, keyAudit), keyProv: cmp.Or(kc.ProvenanceKey, keyProv)}
	switch kc.Type {
	case "vault":
		vs, err := kc.Vault.Open(ctx, s.log.Printf)
		if err != nil {
			return fmt.Errorf("keystore.vault: %w", err)
		}
		s.vault = vs
		s.keys = renamedStore{Store: vs, names: names}
	default:
		var err error
		if pass == nil {
			if pass, err = keystore.PassphraseFromEnv(); err != nil {
				return err
			}
		}
		fs, err := openOrInitKeys(kc.Dir, pass)
		if err != nil {
			return err
		}
		if err := fs.CreateSigningKey(ctx, keyCA, keystore.Ed25519); err != nil && !errors.Is(err, keystore.ErrExists) {
			return fmt.Errorf("key store: create %s: %w", keyCA, err)
		}
		s.keys = renamedStore{Store: fs, names: names}
	}
	for _, k := range []string{keyAudit, keyProv} {
		if _, err := EnsureSigningKey(ctx, s.keys, k, keystore.Ed25519); err != nil {
			return err
		}
	}
	return nil
}

func openOrInitKeys(dir string, pass []byte) (*keystore.FileStore, error) {
	if _, err := os.Stat(filepath.Join(dir, keystore.FileName)); errors.Is(err, fs.ErrNotExist) {
		return keystore.InitFileStore(dir, pass)
	}
	return keystore.OpenFileStore(dir, pass)
}

// initCA loads the federation CA certificate from the database (creating it
// on first start) and issues this process's server certificate.
func (s *Server) initCA(ctx context.Context) error {
	fs, ok := s.keys.(renamedStore).Store.(*keystore.FileStore)
	if !ok {
		return errors.New("the built-in federation CA needs the file key store")
	}
	signer, err := fs.CryptoSigner(ctx, keyCA)
	if err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	der, err := s.st.getMeta(ctx, "ca_cert")
	if err != nil {
		return err
	}
	ca, newDER, err := NewCA(signer, der, s.cfg.Federation, s.rand, s.now)
	if err != nil {
		return err
	}
	if der == nil {
		if err := s.st.putMeta(ctx, "ca_cert", newDER); err != nil {
			return err
		}
	}
	s.ca = ca
	if err := atomicfile.Write(filepath.Join(s.cfg.DataDir, "ca.pem"), pemCert(newDER), 0o644); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), s.rand)
	if err != nil {
		return err
	}
	cert, err := ca.Issue(key.Public(), RoleServer, s.cfg.Federation, s.cfg.CertTTL.D(), s.cfg.ServerNames)
	if err != nil {
		return err
	}
	s.tlsCert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	return nil
}

// firstStart writes the admin and auditor credentials and invites the
// configured sites that are not yet known.
func (s *Server) firstStart(ctx context.Context) error {
	for _, role := range []Role{RoleAdmin, RoleAuditor} {
		if err := s.writeCredentials(role); err != nil {
			return err
		}
	}
	have, err := s.st.getMeta(ctx, "federation")
	if err != nil {
		return err
	}
	if have == nil {
		if _, err := s.record(ctx, Event{Kind: audit.FederationCreated,
			Objects: []audit.Object{{Type: "model", ID: "base", Digest: s.baseDigest}}}); err != nil {
			return err
		}
		if err := s.st.putMeta(ctx, "federation", []byte(s.cfg.Federation)); err != nil {
			return err
		}
	} else if string(have) != s.cfg.Federation {
		return fmt.Errorf("data_dir %s belongs to federation %q, config says %q", s.cfg.DataDir, have, s.cfg.Federation)
	}
	for _, site := range s.cfg.Sites {
		row, err := s.st.site(ctx, site)
		if err != nil {
			return err
		}
		if row != nil {
			continue
		}
		tok, _, err := s.inviteSite(ctx, site, Identity{Role: RoleServer})
		if err != nil {
			return err
		}
		dir := filepath.Join(s.cfg.DataDir, "tokens")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(dir, site+".token"), []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// writeCredentials issues a fresh certificate for the local admin or
// auditor into DataDir/credentials/<role>/ (cert.pem, key.pem, ca.pem).
func (s *Server) writeCredentials(role Role) error {
	dir := filepath.Join(s.cfg.DataDir, "credentials", string(role))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), s.rand)
	if err != nil {
		return err
	}
	cert, err := s.issueLocal(key, role, "local", 30*24*time.Hour, nil)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "cert.pem"), pemCert(cert.Raw), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "ca.pem"), pemCert(s.ca.Cert().Raw), 0o600)
}

// inviteSite creates a one-time enrollment token for site: 32 random bytes,
// base64url; only its SHA-256 is stored.
func (s *Server) inviteSite(ctx context.Context, site string, by Identity) (string, time.Time, error) {
	if !validName(site) {
		return "", time.Time{}, fmt.Errorf("%q is not a valid site name (want 1-64 of [a-z0-9._-])", site)
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", time.Time{}, err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	exp := s.now().Add(s.cfg.TokenTTL.D())
	if err := s.st.inviteSite(ctx, site, []byte(tok), exp); err != nil {
		return "", time.Time{}, err
	}
	if _, err := s.record(ctx, Event{Kind: audit.SiteAdded, Actor: actorID(by), Auth: authMethod(by), Site: &audit.Site{ID: site}}); err != nil {
		return "", time.Time{}, err
	}
	return tok, exp, nil
}

// Close releases the database, the audit log and the Vault session.
func (s *Server) Close() error {
	var errs []error
	if s.vault != nil {
		defer s.vault.Close()
	}
	if s.audit != nil {
		errs = append(errs, s.audit.Close())
	}
	if s.st != nil {
		errs = append(errs, s.st.Close())
	}
	return errors.Join(errs...)
}

// BaseModelDigest is the digest sites must find for their base model.
func (s *Server) BaseModelDigest() string { return s.baseDigest }

// Serve runs the gRPC server on lis (and /metrics when configured) until
// ctx is done, then shuts down gracefully: health NOT_SERVING, GracefulStop
// with a deadline, then Stop.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	max := s.cfg.Limits.MaxMessageBytes
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(ServerTLSConfig(s.tlsCert, s.ca.Pool()))),
		grpc.ChainUnaryInterceptor(s.unaryInterceptors()...),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		// gRPC's own hard cap is 2× the configured limit, so that messages
		// between the two reach the interceptor and are refused with an
		// audit entry; anything larger is cut off by gRPC itself.
		grpc.MaxRecvMsgSize(2*max),
		grpc.MaxSendMsgSize(max),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	pb.RegisterFederationServer(s.grpc, s)
	pb.RegisterAdminServer(s.grpc, &adminService{s: s})
	pb.RegisterAuditServer(s.grpc, &auditService{s: s})
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus("fedtune.v1.Federation", healthpb.HealthCheckResponse_SERVING)

	var httpSrv *http.Server
	if s.cfg.MetricsListen != "" {
		mlis, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics_listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/metrics", s.serveMetrics)
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go httpSrv.Serve(mlis)
	}
	rctx, cancelRounds := context.WithCancel(context.Background())
	defer cancelRounds()
	go s.rounds.run(rctx)

	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	s.log.Printf("federation %s serving on %s (base model %s)", s.cfg.Federation, lis.Addr(), s.baseDigest)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.health.Shutdown() // NOT_SERVING for every service
	cancelRounds()
	s.rounds.wakeAll()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.grpc.Stop()
	}
	if httpSrv != nil {
		httpSrv.Close()
	}
	return nil
}

// Run loads nothing and starts nothing else: it listens on cfg.Listen and
// serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	lis, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return s.Serve(ctx, lis)
}

func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	write := func(name, help, label string, c *counterVec) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		snap := c.snapshot()
		keys := make([]string, 0, len(snap))
		for k := range snap {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s{%s=%q} %g\n", name, label, k, snap[k])
		}
	}
	write("fedtune_rpcs_total", "RPCs accepted by method.", "method", &s.metrics.rpcs)
	write("fedtune_denied_total", "RPCs refused by status code.", "code", &s.metrics.denied)
	write("fedtune_rounds_total", "Rounds finished by outcome.", "outcome", &s.metrics.rounds)
	write("fedtune_received_bytes_total", "Payload bytes received by kind.", "kind", &s.metrics.bytes)
	cur := s.rounds.current()
	fmt.Fprintf(w, "# HELP fedtune_round Current round number.\n# TYPE fedtune_round gauge\nfedtune_round %d\n", cur.GetRound())
	fmt.Fprintf(w, "# HELP fedtune_round_stage Stage of the current round (proto Stage).\n# TYPE fedtune_round_stage gauge\nfedtune_round_stage %d\n", cur.GetStage())
	if size, err := s.audit.Size(); err == nil {
		fmt.Fprintf(w, "# HELP fedtune_audit_entries Audit log size.\n# TYPE fedtune_audit_entries gauge\nfedtune_audit_entries %d\n", size)
	}
}

// DirDigest is the digest of a model or adapter directory:
// "sha256:" + hex SHA-256 over, for each regular file in name order,
// name ‖ 0x00 ‖ decimal length ‖ 0x00 ‖ SHA-256(contents). Sites and the
// aggregator compute it the same way to pin the base model.
func DirDigest(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		fh := sha256.New()
		size, err := io.Copy(fh, f)
		f.Close()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", e.Name(), size)
		h.Write(fh.Sum(nil))
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("%s: no files", dir)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
