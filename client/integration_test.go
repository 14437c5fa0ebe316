package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/server"
	"github.com/fedtune/fedtune/synth"
)

var pass = []byte("integration test passphrase")

// baseModel is built once per test binary.
var (
	baseOnce sync.Once
	baseDir  string
	baseErr  error
)

func sharedBaseModel(t *testing.T) string {
	t.Helper()
	baseOnce.Do(func() {
		baseDir, baseErr = os.MkdirTemp("", "fedtune-base-")
		if baseErr == nil {
			baseErr = synth.InitBaseModel(baseDir, synth.DefaultModelOptions())
		}
	})
	if baseErr != nil {
		t.Fatal(baseErr)
	}
	return baseDir
}

// federation is a running aggregator plus the configs of its sites.
type federation struct {
	t      *testing.T
	dir    string
	srv    *server.Server
	addr   string
	cancel context.CancelFunc
	done   chan error
	sites  []string
	cfg    *server.Config
}

func newFederation(t *testing.T, sites []string, mutate func(*server.Config)) *federation {
	t.Helper()
	base := sharedBaseModel(t)
	dir := t.TempDir()
	cfg := &server.Config{
		Federation: "test-fed", Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "server"), BaseModel: base,
		Sites: sites,
		Round: server.RoundConfig{NoiseMultiplier: 1.0, ExpectedBatchSize: 8, Steps: 2, Threshold: 2, MinSites: len(sites),
			LoraRank: 2, FFA: true, ASeed: 7, LearningRate: 0.05,
			StageTimeout: server.Duration(5 * time.Second), TrainTimeout: server.Duration(60 * time.Second)},
	}
	cfg.SetDefaults()
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	fastKeystore(t, cfg.Keystore.Dir)
	f := &federation{t: t, dir: dir, sites: sites, cfg: cfg}
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *federation) start() {
	f.t.Helper()
	srv, err := server.New(context.Background(), f.cfg, server.Options{Passphrase: pass})
	if err != nil {
		f.t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.srv, f.addr, f.cancel, f.done = srv, lis.Addr().String(), cancel, make(chan error, 1)
	go func() { f.done <- srv.Serve(ctx, lis) }()
}

func (f *federation) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	<-f.done
	f.srv.Close()
	f.cancel = nil
}

// siteConfig writes synthetic data for a site and returns its config.
func (f *federation) siteConfig(site string, records int) *Config {
	f.t.Helper()
	return f.siteConfigDigest(site, records, f.srv.BaseModelDigest())
}

func (f *federation) siteConfigDigest(site string, records int, digest string) *Config {
	f.t.Helper()
	sdir := filepath.Join(f.dir, "sites", site)
	os.MkdirAll(sdir, 0o700)
	recs, err := synth.Generate(synth.Options{Domain: synth.Medical, Site: site, Records: records, Seed: 1})
	if err != nil {
		f.t.Fatal(err)
	}
	data := filepath.Join(sdir, "train.jsonl")
	fh, _ := os.Create(data)
	synth.Write(fh, recs)
	fh.Close()
	fastKeystore(f.t, filepath.Join(sdir, "state", "keys"))
	return &Config{
		Site: site, Server: f.addr, ServerName: "localhost", CAFile: filepath.Join(f.cfg.DataDir, "ca.pem"),
		TokenFile: filepath.Join(f.cfg.DataDir, "tokens", site+".token"), DataDir: filepath.Join(sdir, "state"),
		Data: data, BaseModel: f.cfg.BaseModel, MaxSeq: 48, Rounds: 1,
		Policy: Policy{AllowedBaseModels: []string{digest}, MaxEpsilonPerRound: 50, EpsilonCap: 100, Delta: 1e-5},
	}
}

func runSites(t *testing.T, ctx context.Context, cfgs []*Config) ([]*Summary, []error) {
	t.Helper()
	sums := make([]*Summary, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := New(ctx, c, Options{Passphrase: pass})
			if err != nil {
				errs[i] = err
				return
			}
			defer cl.Close()
			sums[i], errs[i] = cl.Run(ctx)
		}()
	}
	wg.Wait()
	return sums, errs
}

// auditEntries exports the audit log and verifies it offline.
func (f *federation) auditEntries(t *testing.T) []*audit.Entry {
	t.Helper()
	b, _, err := f.srv.ExportAudit(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res := audit.Verify(b, audit.VerifyOptions{Epsilon: accounting.EpsilonFromEventsJSON})
	if !res.OK {
		t.Fatalf("audit verify: %+v", res.Problems)
	}
	return res.Parsed
}

func count(es []*audit.Entry, kind audit.Kind) int {
	n := 0
	for _, e := range es {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func TestFullRound(t *testing.T) {
	sites := []string{"site-a", "site-b", "site-c"}
	f := newFederation(t, sites, func(c *server.Config) { c.Schedule.Rounds = 1 })
	var cfgs []*Config
	for _, s := range sites {
		cfgs = append(cfgs, f.siteConfig(s, 60))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sums, errs := runSites(t, ctx, cfgs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", sites[i], err)
		}
		if len(sums[i].Rounds) != 1 || sums[i].Rounds[0].Outcome != "completed" {
			b, _ := json.Marshal(sums[i])
			t.Fatalf("%s: %s", sites[i], b)
		}
		if sums[i].AdapterVersion != 1 || sums[i].EpsilonSpent <= 0 {
			t.Fatalf("%s: adapter v%d ε %g", sites[i], sums[i].AdapterVersion, sums[i].EpsilonSpent)
		}
	}
	es := f.auditEntries(t)
	for kind, want := range map[audit.Kind]int{audit.SiteEnrolled: 3, audit.RoundOpened: 1, audit.DPSpendKind: 3, audit.ModelPublished: 1, audit.AggregateProduced: 1} {
		if got := count(es, kind); got != want {
			t.Errorf("%d %s entries, want %d", got, kind, want)
		}
	}
	pub := filepath.Join(f.cfg.DataDir, "published", "v1")
	for _, name := range []string{"adapter_config.json", "adapter_model.safetensors", "provenance.json", "provenance.sig"} {
		if _, err := os.Stat(filepath.Join(pub, name)); err != nil {
			t.Error(err)
		}
	}
	fmt.Println(len(es), "audit entries")
}

// fastKeystore creates a key store with a cheap scrypt cost, so that tests
// do not spend seconds deriving keys; the code under test opens it as usual.
func fastKeystore(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, keystore.FileName)); err == nil {
		return
	}
	if _, err := keystore.InitFileStoreWith(dir, pass, keystore.FileOptions{ScryptLogN: 10}); err != nil {
		t.Fatal(err)
	}
}
