package client

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/fedtune/fedtune/aggregator"
	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/audit/merkle"
	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/dp/ledger"
	"github.com/fedtune/fedtune/dp/ledger/ledgerfs"
	"github.com/fedtune/fedtune/internal/atomicfile"
	"github.com/fedtune/fedtune/model"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"github.com/fedtune/fedtune/server"
	"github.com/fedtune/fedtune/trainer"
)

// Key names in the site's key store.
const (
	keyIdentity = "site-identity" // Ed25519: secagg messages, dp.spend, cosignatures
	keyTLS      = "site-tls"      // ECDSA P-256: the mTLS key
)

// Options are the client's clock, randomness and logger.
type Options struct {
	Now        func() time.Time
	Rand       io.Reader
	Log        *log.Logger
	Passphrase []byte
	// Progress, when set, receives training progress.
	Progress func(round uint64, step, steps int, loss float64)
}

// RoundReport is what happened in one round at this site.
type RoundReport struct {
	Round    uint64  `json:"round"`
	Outcome  string  `json:"outcome"` // completed, refused, dropped, aborted, missed
	Reason   string  `json:"reason,omitempty"`
	Epsilon  float64 `json:"epsilon_round,omitempty"`
	Spent    float64 `json:"epsilon_spent,omitempty"`
	Adapter  uint64  `json:"adapter_version,omitempty"`
	Cosigned uint64  `json:"cosigned_size,omitempty"`
}

// Summary is the site's view after Run returns.
type Summary struct {
	Site           string        `json:"site"`
	Rounds         []RoundReport `json:"rounds"`
	EpsilonSpent   float64       `json:"epsilon_spent"`
	EpsilonCap     float64       `json:"epsilon_cap"`
	EpsilonLeft    float64       `json:"epsilon_remaining"`
	Delta          float64       `json:"delta"`
	AdapterVersion uint64        `json:"adapter_version"`
	AdapterDir     string        `json:"adapter_dir,omitempty"`
	EvalLossBase   float64       `json:"eval_loss_base,omitempty"`
	EvalLossLocal  float64       `json:"eval_loss_local,omitempty"`
	EvalLossGlobal float64       `json:"eval_loss_global,omitempty"`
}

// state is what the client remembers across restarts (DataDir/state.json).
type state struct {
	Enrolled      bool        `json:"enrolled"`
	LastRound     uint64      `json:"last_round"` // newest round handled (joined, refused or skipped)
	RoundsJoined  int         `json:"rounds_joined"`
	WitnessSize   uint64      `json:"witness_size"`
	WitnessRoot   merkle.Hash `json:"witness_root"`
	LogKey        string      `json:"log_key"`
	Adapter       uint64      `json:"adapter_version"`
	LocalAdapter  string      `json:"local_adapter,omitempty"`
	ExpectedBatch int         `json:"-"`
}

// Client is one site's federation client.
type Client struct {
	cfg    *Config
	opts   Options
	keys   keystore.Store
	vault  *keystore.VaultStore // nil unless keystore.type is vault
	ident  keystore.VersionedSigner
	tlsKey crypto.Signer
	roots  *x509.CertPool
	st     state
	ledger *ledger.Ledger
	model  *model.Model
	data   *trainer.Dataset
	eval   *trainer.Dataset
	digest string

	conn *grpc.ClientConn
	fed  pb.FederationClient
	wit  *audit.Witness
	log  *log.Logger
}

// New prepares a client: key store, privacy ledger, model and data. It
// does not contact the aggregator.
func New(ctx context.Context, cfg *Config, opts Options) (*Client, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Log == nil {
		opts.Log = log.New(os.Stderr, "fedtune client "+cfg.Site+": ", log.LstdFlags|log.Lmsgprefix)
	}
	// Key store defaults, also for a Config built without SetDefaults.
	cc := *cfg
	cc.Keystore.setDefaults(cc.Site)
	cfg = &cc
	c := &Client{cfg: cfg, opts: opts, log: opts.Log}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	var err error
	if cfg.Keystore.Type == "vault" {
		err = c.openVaultKeys(ctx)
	} else {
		err = c.openFileKeys(ctx)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	c.roots = x509.NewCertPool()
	if !c.roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate", cfg.CAFile)
	}
	if raw, err := os.ReadFile(c.path("state.json")); err == nil {
		if err := json.Unmarshal(raw, &c.st); err != nil {
			return nil, fmt.Errorf("%s: %w", c.path("state.json"), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	ls := ledgerfs.Dir{Path: filepath.Join(cfg.DataDir, "ledger")}
	if err := os.MkdirAll(ls.Path, 0o700); err != nil {
		return nil, err
	}
	c.ledger, err = ledger.Open(ls)
	if errors.Is(err, ledger.ErrNotExist) {
		c.ledger, err = ledger.Create(ls, ledger.Config{EpsilonCap: cfg.Policy.EpsilonCap, Delta: cfg.Policy.Delta}, opts.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("privacy ledger: %w", err)
	}
	if c.digest, err = server.DirDigest(cfg.BaseModel); err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	if c.model, err = model.Load(cfg.BaseModel); err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	tok, err := LoadTokenizer(cfg.BaseModel)
	if err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	if c.data, err = LoadDataset(cfg.Data, tok, cfg.MaxSeq); err != nil {
		return nil, err
	}
	if cfg.EvalData != "" {
		if c.eval, err = LoadDataset(cfg.EvalData, tok, cfg.MaxSeq); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// openFileKeys opens (or creates) the encrypted key store in
// DataDir/keys with the identity key and the mTLS key.
func (c *Client) openFileKeys(ctx context.Context) error {
	pass := c.opts.Passphrase
	var err error
	if pass == nil {
		if pass, err = keystore.PassphraseFromEnv(); err != nil {
			return err
		}
	}
	kdir := filepath.Join(c.cfg.DataDir, "keys")
	var fst *keystore.FileStore
	if _, err := os.Stat(filepath.Join(kdir, keystore.FileName)); errors.Is(err, fs.ErrNotExist) {
		fst, err = keystore.InitFileStore(kdir, pass)
		if err != nil {
			return err
		}
	} else if fst, err = keystore.OpenFileStore(kdir, pass); err != nil {
		return err
	}
	c.keys = fst
	if c.ident, err = server.EnsureSigningKey(ctx, fst, c.cfg.Keystore.IdentityKey, keystore.Ed25519); err != nil {
		return err
	}
	if _, err := server.EnsureSigningKey(ctx, fst, keyTLS, keystore.ECDSAP256); err != nil {
		return err
	}
	c.tlsKey, err = fst.CryptoSigner(ctx, keyTLS)
	return err
}

func (c *Client) path(name string) string { return filepath.Join(c.cfg.DataDir, name) }

func (c *Client) saveState() error {
	b, err := json.MarshalIndent(&c.st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(c.path("state.json"), b, 0o600)
}

// Close releases the connection and the Vault session.
func (c *Client) Close() error {
	if c.vault != nil {
		c.vault.Close()
		c.vault = nil
	}
	if c.conn != nil {
		return c.conn.Close()
	}
	return nil
}

// connect dials the aggregator with the site certificate when it has one.
func (c *Client) connect() error {
	if c.conn != nil {
		c.conn.Close()
	}
	var cert *tls.Certificate
	if der, err := os.ReadFile(c.path("cert.pem")); err == nil {
		b, _ := pem.Decode(der)
		if b == nil {
			return fmt.Errorf("%s: no PEM certificate", c.path("cert.pem"))
		}
		cert = &tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: c.tlsKey}
	}
	conn, err := grpc.NewClient(c.cfg.Server,
		grpc.WithTransportCredentials(credentials.NewTLS(server.ClientTLSConfig(cert, c.roots, c.cfg.ServerName))),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return err
	}
	c.conn, c.fed = conn, pb.NewFederationClient(conn)
	return nil
}

// enroll exchanges the one-time token for a certificate.
func (c *Client) enroll(ctx context.Context) error {
	tok, err := c.enrollmentToken(ctx)
	if err != nil {
		return err
	}
	csr, err := keystore.NewCSR(c.tlsKey, keystore.CertRequest{CommonName: "site:" + c.cfg.Site, URIs: nil})
	if err != nil {
		return err
	}
	ik, err := x509.MarshalPKIXPublicKey(c.ident.Public())
	if err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	resp, err := c.fed.Enroll(ctx, &pb.EnrollRequest{Site: c.cfg.Site, Token: tok, Csr: csr, IdentityKey: ik})
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	return c.storeCert(resp)
}

func (c *Client) storeCert(resp *pb.EnrollResponse) error {
	if err := atomicfile.Write(c.path("cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: resp.Certificate}), 0o600); err != nil {
		return err
	}
	c.st.Enrolled = true
	if c.st.LogKey == "" {
		c.st.LogKey = string(resp.LogPublicKey)
	} else if c.st.LogKey != string(resp.LogPublicKey) {
		return fmt.Errorf("the aggregator's audit log key changed from %s to %s", c.st.LogKey, resp.LogPublicKey)
	}
	if err := c.saveState(); err != nil {
		return err
	}
	return c.connect()
}

// renewIfDue renews the certificate in the second half of its lifetime.
func (c *Client) renewIfDue(ctx context.Context) error {
	der, err := os.ReadFile(c.path("cert.pem"))
	if err != nil {
		return err
	}
	b, _ := pem.Decode(der)
	if b == nil {
		return fmt.Errorf("%s: no PEM certificate", c.path("cert.pem"))
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return err
	}
	now := c.opts.Now()
	if now.Before(cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)) {
		return nil
	}
	csr, err := keystore.NewCSR(c.tlsKey, keystore.CertRequest{CommonName: "site:" + c.cfg.Site})
	if err != nil {
		return err
	}
	resp, err := c.fed.Renew(ctx, &pb.RenewRequest{Csr: csr})
	if err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	c.log.Printf("certificate renewed until %s", time.Unix(resp.NotAfterUnix, 0).UTC().Format(time.RFC3339))
	return c.storeCert(resp)
}

// Run enrolls if needed, then takes part in rounds until ctx is done or
// cfg.Rounds rounds were handled. Transient connection errors are retried
// with exponential backoff.
func (c *Client) Run(ctx context.Context) (*Summary, error) {
	sum := &Summary{Site: c.cfg.Site}
	if !c.st.Enrolled {
		if err := c.enroll(ctx); err != nil {
			return nil, err
		}
		c.log.Printf("enrolled")
	} else if err := c.connect(); err != nil {
		return nil, err
	}
	lk, err := audit.ParseVerifierKey(c.st.LogKey)
	if err != nil {
		return nil, fmt.Errorf("audit log key: %w", err)
	}
	if c.wit, err = audit.NewWitness(server.WitnessName(c.cfg.Site), c.ident, lk, c.opts.Now); err != nil {
		return nil, err
	}
	if c.st.WitnessSize > 0 {
		c.wit.SetState(c.st.WitnessSize, c.st.WitnessRoot)
	}
	handled := 0
	known := &pb.GetRoundRequest{}
	fails := 0
	for c.cfg.Rounds == 0 || handled < c.cfg.Rounds {
		if err := ctx.Err(); err != nil {
			break
		}
		if err := c.renewIfDue(ctx); err != nil {
			if fatal(err) {
				return nil, err
			}
		}
		st, err := c.fed.GetRound(ctx, &pb.GetRoundRequest{Round: known.Round, KnownStage: known.KnownStage, WaitMs: 20000})
		if err != nil {
			if fatal(err) || ctx.Err() != nil {
				if ctx.Err() != nil {
					break
				}
				return nil, err
			}
			fails++
			c.log.Printf("aggregator unreachable (%v); retrying in %v", status.Convert(err).Message(), backoff(fails))
			select {
			case <-time.After(backoff(fails)):
			case <-ctx.Done():
			}
			continue
		}
		fails = 0
		known = &pb.GetRoundRequest{Round: st.Round, KnownStage: st.Stage}
		if st.Round == 0 || st.Round <= c.st.LastRound || st.Config == nil {
			continue
		}
		var rep RoundReport
		switch {
		case st.Stage != pb.Stage_STAGE_ADVERTISE_KEYS || !slices.Contains(st.Config.Sites, c.cfg.Site):
			rep = RoundReport{Round: st.Round, Outcome: "missed", Reason: "joined after the round's first stage or not invited"}
		default:
			rep = c.round(ctx, st.Config)
		}
		c.st.LastRound = st.Round
		if err := c.saveState(); err != nil {
			return nil, err
		}
		c.log.Printf("round %d: %s %s", rep.Round, rep.Outcome, rep.Reason)
		sum.Rounds = append(sum.Rounds, rep)
		if rep.Outcome != "missed" {
			handled++
		}
	}
	return c.summarize(sum)
}

// fatal reports errors that retrying cannot fix.
func fatal(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument:
		return true
	}
	return false
}

// trainConfig is the trainer configuration of a round at this site.
func (c *Client) trainConfig(cfg *pb.RoundConfig, initAdapter string) trainer.Config {
	l, d := cfg.Lora, cfg.Dp
	return trainer.Config{
		ModelDir: c.cfg.BaseModel, Model: c.model, DataPath: c.cfg.Data,
		OutDir:          c.path(filepath.Join("rounds", fmt.Sprintf("round-%d", cfg.Round))),
		SiteDir:         c.path("ledger"),
		InitAdapter:     initAdapter,
		LoRA:            model.LoRAConfig{R: int(l.Rank), Alpha: l.Alpha, TargetModules: l.TargetModules, FFA: l.Ffa, ASeed: l.ASeed},
		NoiseMultiplier: d.NoiseMultiplier, Delta: c.ledger.Config().Delta, Accountant: accounting.AccountantPLD,
		ExpectedBatchSize: int(d.ExpectedBatchSize), MaxGradNorm: d.MaxGradNorm, Steps: int(d.Steps),
		MaxLength: c.cfg.MaxSeq, Optimizer: "sgd", LR: d.LearningRate, Schedule: "constant",
		CheckpointEvery: max(int(d.Steps)/4, 1),
		Entropy:         c.opts.Rand, Now: c.opts.Now,
		Purpose: fmt.Sprintf("federation %s round %d", cfg.Federation, cfg.Round),
	}
}

// policyCheck returns the round's projected privacy cost, or the reason to
// refuse it. It reads only the ledger and the line count of the data.
func (c *Client) policyCheck(cfg *pb.RoundConfig) (*trainer.Plan, string) {
	p := c.cfg.Policy
	if !slices.Contains(p.AllowedBaseModels, cfg.BaseModelDigest) {
		return nil, fmt.Sprintf("base model %s is not in policy.allowed_base_models", cfg.BaseModelDigest)
	}
	if cfg.BaseModelDigest != c.digest {
		return nil, fmt.Sprintf("local base model is %s, round uses %s", c.digest, cfg.BaseModelDigest)
	}
	if p.MaxRounds > 0 && c.st.RoundsJoined >= p.MaxRounds {
		return nil, fmt.Sprintf("site already joined policy.max_rounds = %d rounds", p.MaxRounds)
	}
	d := cfg.Dp
	if d == nil || d.NoiseMultiplier <= 0 || d.Steps == 0 || d.ExpectedBatchSize == 0 || cfg.Lora == nil {
		return nil, "round has no DP-SGD configuration"
	}
	if n := len(c.data.Examples); int(d.ExpectedBatchSize) > n {
		return nil, fmt.Sprintf("expected batch %d exceeds the site's %d records", d.ExpectedBatchSize, n)
	}
	plan, err := trainer.Projected(c.trainConfig(cfg, ""))
	if err != nil {
		var be *ledger.BudgetError
		if errors.As(err, &be) {
			return nil, budgetReason(be)
		}
		return nil, fmt.Sprintf("privacy accounting: %v", err)
	}
	if plan.Epsilon > p.MaxEpsilonPerRound {
		return nil, fmt.Sprintf("round spends ε = %.3f at δ = %g, above policy.max_epsilon_per_round %.3f", plan.Epsilon, plan.Delta, p.MaxEpsilonPerRound)
	}
	return plan, ""
}

// budgetReason words a refused spend.
func budgetReason(be *ledger.BudgetError) string {
	return fmt.Sprintf("projected cumulative ε %.3f exceeds the ledger cap %.3f (spent %.3f)", be.Projected, be.Cap, be.Spent)
}

// identSigner adapts the key store's identity key to secagg.Signer.
type identSigner struct {
	ctx context.Context
	s   keystore.Signer
}

func (i identSigner) Sign(m []byte) ([]byte, error) { return i.s.Sign(i.ctx, m) }

// round takes part in one round.
func (c *Client) round(ctx context.Context, cfg *pb.RoundConfig) RoundReport {
	rep := RoundReport{Round: cfg.Round}
	c.log.Printf("round %d: opened with %d sites; checking it against the site policy", cfg.Round, len(cfg.Sites))
	plan, reason := c.policyCheck(cfg)
	if reason != "" {
		rep.Outcome, rep.Reason = "refused", reason
		if _, err := c.fed.Refuse(ctx, &pb.RefuseRequest{Round: cfg.Round, Reason: reason}); err != nil {
			rep.Reason += fmt.Sprintf(" (telling the aggregator failed: %v)", err)
		}
		return rep
	}
	rep.Epsilon = plan.Epsilon
	fail := func(outcome string, err error) RoundReport {
		rep.Outcome, rep.Reason = outcome, err.Error()
		return rep
	}
	refuse := func(reason string) RoundReport {
		rep.Outcome, rep.Reason = "refused", reason
		if _, err := c.fed.Refuse(ctx, &pb.RefuseRequest{Round: cfg.Round, Reason: reason}); err != nil {
			rep.Reason += fmt.Sprintf(" (telling the aggregator failed: %v)", err)
		}
		return rep
	}
	// Start from the global adapter of the round.
	global, gdir, err := c.globalAdapter(ctx, cfg)
	if err != nil {
		return fail("aborted", err)
	}
	tcfg := c.trainConfig(cfg, gdir)
	if _, err := os.Stat(filepath.Join(tcfg.OutDir, "adapter_model.safetensors")); err == nil {
		return fail("dropped", errors.New("this round's training finished before a restart; its secure-aggregation state is gone, so the site sits this round out"))
	}
	c.st.RoundsJoined++
	if err := c.saveState(); err != nil {
		return fail("aborted", err)
	}
	// trainer.Run records the spend in the ledger (refusing anything over
	// the cap) before it reads a record, and resumes an interrupted run
	// without spending twice.
	t0 := time.Now()
	tcfg.Progress = func(p trainer.Progress) {
		if c.opts.Progress != nil {
			c.opts.Progress(cfg.Round, p.Step, p.Steps, p.Loss)
		}
	}
	report, err := trainer.Run(ctx, tcfg)
	if err != nil {
		var be *ledger.BudgetError
		if errors.As(err, &be) {
			return refuse(budgetReason(be))
		}
		return fail("aborted", fmt.Errorf("training: %w", err))
	}
	if report.Ledger == nil {
		return fail("aborted", errors.New("training ran without the site's privacy ledger"))
	}
	spent := report.Ledger.Projected
	rep.Spent = spent
	c.log.Printf("round %d: %d DP-SGD steps in %.1fs (train loss %.4f → %.4f, ε this round %.3f, cumulative %.3f)",
		cfg.Round, report.Steps, time.Since(t0).Seconds(), report.TrainLossFirst, report.TrainLossLast, plan.Epsilon, spent)
	local, err := model.LoadAdapter(tcfg.OutDir, c.model)
	if err != nil {
		return fail("aborted", fmt.Errorf("trained adapter: %w", err))
	}
	c.st.LocalAdapter = tcfg.OutDir
	t1 := time.Now()
	defer func() {
		c.log.Printf("round %d: secure aggregation and publication took %.1fs", cfg.Round, time.Since(t1).Seconds())
	}()
	// The signed dp.spend entry.
	if err := c.submitSpend(ctx, cfg, report.Event, spent); err != nil {
		return fail("aborted", fmt.Errorf("dp.spend: %w", err))
	}
	// Update = local − global, encoded into ℤ_{2^32}.
	delta := make([]float32, local.NumTrainable())
	lw, gw := local.Trainable(), global.Trainable()
	for i := range delta {
		delta[i] = lw[i] - gw[i]
	}
	var seed [32]byte
	copy(seed[:], cfg.RoundSeed)
	enc, err := aggregator.Encode(server.AggregatorConfig(cfg), delta, seed, c.opts.Rand)
	if err != nil {
		return fail("aborted", fmt.Errorf("encode update: %w", err))
	}
	if err := c.secagg(ctx, cfg, enc.Vec); err != nil {
		var d *dropErr
		if errors.As(err, &d) {
			return fail("dropped", err)
		}
		return fail("aborted", err)
	}
	// Wait for publication, then cosign and download.
	st, err := c.waitRoundEnd(ctx, cfg.Round)
	if err != nil {
		return fail("aborted", err)
	}
	if st.Stage != pb.Stage_STAGE_DONE {
		return fail("aborted", fmt.Errorf("round ended in %s: %s", st.Stage, st.AbortReason))
	}
	rep.Adapter = st.AdapterVersion
	if size, err := c.cosign(ctx); err != nil {
		c.log.Printf("cosign: %v", err)
	} else {
		rep.Cosigned = size
	}
	if _, err := c.fetchAdapter(ctx, st.AdapterVersion); err != nil {
		return fail("aborted", fmt.Errorf("download adapter v%d: %w", st.AdapterVersion, err))
	}
	rep.Outcome = "completed"
	return rep
}

type dropErr struct{ stage string }

func (d *dropErr) Error() string { return "site dropped out at stage " + d.stage + " (drop_at)" }

func (c *Client) submitSpend(ctx context.Context, cfg *pb.RoundConfig, evJSON json.RawMessage, spent float64) error {
	if len(evJSON) == 0 {
		return errors.New("training report has no privacy event")
	}
	round := cfg.Round
	e := &audit.Entry{Schema: audit.SchemaVersion, Kind: audit.DPSpendKind, Federation: cfg.Federation, Round: &round,
		Actor: audit.Actor{ID: "site:" + c.cfg.Site, Auth: "signature"}, Time: audit.FormatTime(c.opts.Now()), Outcome: audit.OutcomeOK,
		DP: &audit.DPSpend{Site: c.cfg.Site, Events: evJSON, Delta: c.ledger.Config().Delta, EpsilonCumulative: spent, EpsilonCap: c.ledger.Config().EpsilonCap}}
	if err := e.SignAsSite(ctx, c.ident); err != nil {
		return err
	}
	data, err := e.Marshal()
	if err != nil {
		return err
	}
	_, err = c.fed.SubmitDPSpend(ctx, &pb.DPSpend{Round: round, Entry: data})
	return err
}

// secagg runs the client state machine through the five stages.
func (c *Client) secagg(ctx context.Context, cfg *pb.RoundConfig, vec []uint32) error {
	self := slices.Index(cfg.Sites, c.cfg.Site) + 1
	params := secagg.Params{FederationID: cfg.Federation, Round: cfg.Round, N: len(cfg.Sites), T: int(cfg.Threshold),
		VectorLen: int(cfg.PaddedLen), PQ: cfg.Pq, SigAlg: secagg.Ed25519}
	sc, err := secagg.NewClient(params, secagg.SiteID(self), identSigner{ctx, c.ident}, secagg.Roster(cfg.Roster), c.opts.Rand)
	if err != nil {
		return err
	}
	drop := func(stage string) error {
		if c.cfg.DropAt == stage && c.st.RoundsJoined == 1 {
			return &dropErr{stage}
		}
		return nil
	}
	submit := func(stage pb.Stage, m secagg.Message) ([]byte, error) {
		if _, err := c.fed.SubmitSecAgg(ctx, &pb.SecAggMessage{Round: cfg.Round, Stage: stage, Payload: m.Marshal()}); err != nil {
			return nil, fmt.Errorf("stage %s: %w", stage, err)
		}
		return c.await(ctx, cfg.Round, stage)
	}
	if err := drop("advertise_keys"); err != nil {
		return err
	}
	ak, err := sc.AdvertiseKeys()
	if err != nil {
		return err
	}
	out, err := submit(pb.Stage_STAGE_ADVERTISE_KEYS, ak)
	if err != nil {
		return err
	}
	kl, err := secagg.UnmarshalKeyList(out)
	if err != nil {
		return err
	}
	if err := drop("share_keys"); err != nil {
		return err
	}
	sk, err := sc.ShareKeys(kl)
	if err != nil {
		return err
	}
	if out, err = submit(pb.Stage_STAGE_SHARE_KEYS, sk); err != nil {
		return err
	}
	relay, err := secagg.UnmarshalShareKeysRelay(out)
	if err != nil {
		return err
	}
	if err := drop("masked_input"); err != nil {
		return err
	}
	mi, err := sc.MaskedInput(relay, vec)
	if err != nil {
		return err
	}
	if err := c.upload(ctx, cfg, mi); err != nil {
		return err
	}
	if out, err = c.await(ctx, cfg.Round, pb.Stage_STAGE_MASKED_INPUT); err != nil {
		return err
	}
	sl, err := secagg.UnmarshalSurvivorList(out)
	if err != nil {
		return err
	}
	if err := drop("consistency_check"); err != nil {
		return err
	}
	cs, err := sc.ConsistencyCheck(sl)
	if err != nil {
		return err
	}
	if out, err = submit(pb.Stage_STAGE_CONSISTENCY_CHECK, cs); err != nil {
		return err
	}
	cc, err := secagg.UnmarshalConsistencyCertificate(out)
	if err != nil {
		return err
	}
	if err := drop("unmask"); err != nil {
		return err
	}
	us, err := sc.Unmask(cc)
	if err != nil {
		return err
	}
	_, err = c.fed.SubmitSecAgg(ctx, &pb.SecAggMessage{Round: cfg.Round, Stage: pb.Stage_STAGE_UNMASK, Payload: us.Marshal()})
	return err
}

// upload streams a masked input in chunks below the server's message limit.
func (c *Client) upload(ctx context.Context, cfg *pb.RoundConfig, mi *secagg.MaskedInput) error {
	stream, err := c.fed.UploadMaskedInput(ctx)
	if err != nil {
		return err
	}
	chunk := int(cfg.ChunkWords)
	if chunk <= 0 {
		chunk = 1 << 16
	}
	v := mi.Vector
	for off := 0; off == 0 || off < len(v); off += chunk {
		m := &pb.MaskedInputChunk{Round: cfg.Round, Offset: uint64(off), Words: v[off:min(off+chunk, len(v))]}
		if off == 0 {
			m.Header, m.TotalWords = mi.MarshalHeader(), uint64(len(v))
		}
		if err := stream.Send(m); err != nil {
			break // the status comes with CloseAndRecv
		}
	}
	_, err = stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("upload masked input: %w", err)
	}
	return nil
}

// await long-polls for this site's output of a stage.
func (c *Client) await(ctx context.Context, round uint64, stage pb.Stage) ([]byte, error) {
	for {
		out, err := c.fed.AwaitStage(ctx, &pb.AwaitStageRequest{Round: round, Stage: stage, WaitMs: 20000})
		if err != nil {
			return nil, fmt.Errorf("await %s: %w", stage, err)
		}
		if out.AbortReason != "" {
			return nil, fmt.Errorf("round %d: %s", round, out.AbortReason)
		}
		if out.Ready {
			return out.Payload, nil
		}
	}
}

func (c *Client) waitRoundEnd(ctx context.Context, round uint64) (*pb.RoundStatus, error) {
	known := &pb.GetRoundRequest{Round: round, KnownStage: pb.Stage_STAGE_UNMASK}
	for {
		st, err := c.fed.GetRound(ctx, &pb.GetRoundRequest{Round: known.Round, KnownStage: known.KnownStage, WaitMs: 20000})
		if err != nil {
			return nil, err
		}
		if st.Round != round || st.Stage == pb.Stage_STAGE_DONE || st.Stage == pb.Stage_STAGE_ABORTED {
			if st.Round != round {
				return nil, fmt.Errorf("round %d ended without a status (now round %d)", round, st.Round)
			}
			return st, nil
		}
		known = &pb.GetRoundRequest{Round: st.Round, KnownStage: st.Stage}
	}
}

// cosign verifies the newest checkpoint against the last one this site
// saw and returns its cosignature.
func (c *Client) cosign(ctx context.Context) (uint64, error) {
	cp, err := c.fed.GetCheckpoint(ctx, &pb.GetCheckpointRequest{FromSize: c.st.WitnessSize})
	if err != nil {
		return 0, err
	}
	proof := make([]merkle.Hash, len(cp.ConsistencyProof))
	for i, h := range cp.ConsistencyProof {
		if len(h) != merkle.HashSize {
			return 0, fmt.Errorf("consistency proof hash %d has %d bytes", i, len(h))
		}
		copy(proof[i][:], h)
	}
	line, err := c.wit.Cosign(ctx, cp.Note, proof)
	if err != nil {
		return 0, fmt.Errorf("checkpoint of size %d: %w", cp.Size, err)
	}
	if _, err := c.fed.Cosign(ctx, &pb.CosignRequest{Cosignature: line, Size: cp.Size, Note: cp.Note}); err != nil {
		return 0, err
	}
	c.st.WitnessSize, c.st.WitnessRoot = c.wit.State()
	return cp.Size, c.saveState()
}

// globalAdapter returns the adapter the round starts from: version
// cfg.AdapterVersion, downloaded if needed, or a fresh one for version 0.
func (c *Client) globalAdapter(ctx context.Context, cfg *pb.RoundConfig) (*model.Adapter, string, error) {
	if cfg.AdapterVersion == 0 {
		l := cfg.Lora
		a, err := model.NewAdapter(c.model, model.LoRAConfig{R: int(l.Rank), Alpha: l.Alpha, TargetModules: l.TargetModules, FFA: l.Ffa, ASeed: l.ASeed})
		return a, "", err
	}
	dir, err := c.fetchAdapter(ctx, cfg.AdapterVersion)
	if err != nil {
		return nil, "", err
	}
	a, err := model.LoadAdapter(dir, c.model)
	if err != nil {
		return nil, "", err
	}
	if a.NumTrainable() != int(cfg.Params) {
		return nil, "", fmt.Errorf("adapter v%d has %d trainable parameters, round says %d", cfg.AdapterVersion, a.NumTrainable(), cfg.Params)
	}
	return a, dir, nil
}

// fetchAdapter downloads a published adapter into DataDir/global/v<N>,
// checking the directory digest.
func (c *Client) fetchAdapter(ctx context.Context, version uint64) (string, error) {
	dir := c.path(filepath.Join("global", fmt.Sprintf("v%d", version)))
	if _, err := os.Stat(filepath.Join(dir, "adapter_model.safetensors")); err == nil {
		return dir, nil
	}
	stream, err := c.fed.FetchAdapter(ctx, &pb.FetchAdapterRequest{Version: version})
	if err != nil {
		return "", err
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", err
	}
	files := map[string][]byte{}
	digest := ""
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		if m.Name == "" || strings.ContainsAny(m.Name, `/\`) || strings.HasPrefix(m.Name, ".") {
			return "", fmt.Errorf("bad file name %q in adapter stream", m.Name)
		}
		files[m.Name] = append(files[m.Name], m.Data...)
		if m.Last {
			digest = m.Digest
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o600); err != nil {
			return "", err
		}
	}
	got, err := server.DirDigest(tmp)
	if err != nil {
		return "", err
	}
	if got != digest {
		return "", fmt.Errorf("adapter v%d digest %s, aggregator announced %s", version, got, digest)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	c.st.Adapter = version
	return dir, c.saveState()
}

// summarize fills the privacy and evaluation numbers.
func (c *Client) summarize(sum *Summary) (*Summary, error) {
	// The trainer appends to the ledger through its own handle: re-read it.
	if l, err := ledger.Open(ledgerfs.Dir{Path: c.path("ledger")}); err == nil {
		c.ledger = l
	} else {
		return nil, fmt.Errorf("privacy ledger: %w", err)
	}
	sum.EpsilonSpent = c.ledger.Spent()
	sum.EpsilonCap = c.ledger.Config().EpsilonCap
	sum.EpsilonLeft = max(sum.EpsilonCap-sum.EpsilonSpent, 0)
	sum.Delta = c.ledger.Config().Delta
	sum.AdapterVersion = c.st.Adapter
	if c.eval == nil {
		return sum, nil
	}
	lc := model.LoRAConfig{R: 1, Alpha: 1, TargetModules: []string{"q_proj"}}
	base, err := model.NewAdapter(c.model, lc)
	if err != nil {
		return nil, err
	}
	if sum.EvalLossBase, err = EvalLoss(c.model, base, c.eval.Examples, c.cfg.MaxSeq); err != nil {
		return nil, err
	}
	if c.st.Adapter > 0 {
		dir := c.path(filepath.Join("global", fmt.Sprintf("v%d", c.st.Adapter)))
		a, err := model.LoadAdapter(dir, c.model)
		if err != nil {
			return nil, err
		}
		sum.AdapterDir = dir
		if sum.EvalLossGlobal, err = EvalLoss(c.model, a, c.eval.Examples, c.cfg.MaxSeq); err != nil {
			return nil, err
		}
	}
	if c.st.LocalAdapter != "" {
		if a, err := model.LoadAdapter(c.st.LocalAdapter, c.model); err == nil {
			sum.EvalLossLocal, _ = EvalLoss(c.model, a, c.eval.Examples, c.cfg.MaxSeq)
		}
	}
	return sum, nil
}
