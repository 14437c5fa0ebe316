package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedtune/fedtune/aggregator"
	"github.com/fedtune/fedtune/crypto/keystore"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"github.com/fedtune/fedtune/server"
	"github.com/fedtune/fedtune/trainer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

type memSigner struct{ k ed25519.PrivateKey }

func (m memSigner) Public() crypto.PublicKey { return m.k.Public() }
func (m memSigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(m.k, msg), nil
}
func (m memSigner) KeyVersion() int { return 1 }

var _ keystore.VersionedSigner = memSigner{}

// TestLoad100Sites runs one round with 100 simulated sites against one
// aggregator on loopback: each site enrolls over mTLS and runs the real
// secure-aggregation client with a random small update; training is
// measured separately on one site's data, so the report separates protocol
// overhead from training. Enable with FEDTUNE_LOAD_TEST=1 (FEDTUNE_LOAD_SITES
// changes the number of sites).
func TestLoad100Sites(t *testing.T) {
	if os.Getenv("FEDTUNE_LOAD_TEST") != "1" {
		t.Skip("set FEDTUNE_LOAD_TEST=1 to run the 100-site load test")
	}
	n := 100
	if s := os.Getenv("FEDTUNE_LOAD_SITES"); s != "" {
		fmt.Sscan(s, &n)
	}
	sites := make([]string, n)
	for i := range sites {
		sites[i] = fmt.Sprintf("site-%03d", i)
	}
	f := newFederation(t, sites, func(c *server.Config) {
		c.Round.Threshold = n/2 + 1
		c.Round.LoraRank = 4
		c.Round.TargetModules = []string{"q_proj", "v_proj"}
		c.Round.StageTimeout = server.Duration(60 * time.Second)
		c.Round.TrainTimeout = server.Duration(120 * time.Second)
		c.Limits.RatePerSecond = 1000
		c.Limits.Burst = 1000
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	caPEM, _ := os.ReadFile(filepath.Join(f.cfg.DataDir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	// Enroll every site.
	clients := make([]*Client, n)
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, name := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i], errs[i] = enrollSimulated(ctx, f, name, roots)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", sites[i], err)
		}
	}
	enroll := time.Since(t0)

	admin := pb.NewAdminClient(f.dialAs(t, filepath.Join(f.cfg.DataDir, "credentials", "admin")))
	st, err := admin.OpenRound(ctx, &pb.OpenRoundRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.Config
	t1 := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			upd := make([]float32, cfg.Params)
			for j := range upd {
				upd[j] = float32(j%7) * 1e-3
			}
			var seed [32]byte
			copy(seed[:], cfg.RoundSeed)
			enc, err := aggregator.Encode(server.AggregatorConfig(cfg), upd, seed, rand.Reader)
			if err == nil {
				err = c.secagg(ctx, cfg, enc.Vec)
			}
			if err == nil {
				var s *pb.RoundStatus
				s, err = c.waitRoundEnd(ctx, cfg.Round)
				if err == nil && s.Stage != pb.Stage_STAGE_DONE {
					err = fmt.Errorf("round ended in %s: %s", s.Stage, s.AbortReason)
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	round := time.Since(t1)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", sites[i], err)
		}
	}

	// Training cost of one site's round with the same DP configuration, for
	// comparison (sites train in parallel, each on its own machine).
	base := sharedBaseModel(t)
	sc := f.siteConfig("site-000", 200)
	cl, err := New(ctx, sc, Options{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tc := cl.trainConfig(cfg, "")
	tc.SiteDir, tc.OutDir = "", t.TempDir()
	t2 := time.Now()
	if _, err := trainer.Run(ctx, tc); err != nil {
		t.Fatal(err)
	}
	train := time.Since(t2)
	_ = base
	bytes := 4 * cfg.PaddedLen
	t.Logf("load test: %d sites, %d adapter parameters (%d words padded, %d bytes masked input per site)", n, cfg.Params, cfg.PaddedLen, bytes)
	t.Logf("enrollment of all sites: %.2fs", enroll.Seconds())
	t.Logf("round (secure aggregation of all sites + unmask + publish): %.2fs", round.Seconds())
	t.Logf("one site's local training (trainer.Run, 2 DP-SGD steps, batch 8): %.2fs; protocol share of a round if sites train in parallel: %.0f%%",
		train.Seconds(), 100*round.Seconds()/(round.Seconds()+train.Seconds()))
	if out := os.Getenv("FEDTUNE_LOAD_REPORT"); out != "" {
		os.WriteFile(out, []byte(fmt.Sprintf("sites=%d params=%d enroll_s=%.3f round_s=%.3f train_s=%.3f\n", n, cfg.Params, enroll.Seconds(), round.Seconds(), train.Seconds())), 0o644)
	}
	if !strings.HasPrefix(cfg.Federation, "test") {
		t.Fatal("unexpected federation")
	}
}

// enrollSimulated enrolls a site with in-memory keys (no key store, no
// ledger, no data): enough to run the protocol.
func enrollSimulated(ctx context.Context, f *federation, name string, roots *x509.CertPool) (*Client, error) {
	tok, err := os.ReadFile(filepath.Join(f.cfg.DataDir, "tokens", name+".token"))
	if err != nil {
		return nil, err
	}
	tlsKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, idKey, _ := ed25519.GenerateKey(rand.Reader)
	csr, err := keystore.NewCSR(tlsKey, keystore.CertRequest{CommonName: name})
	if err != nil {
		return nil, err
	}
	ik, _ := x509.MarshalPKIXPublicKey(idKey.Public())
	anon, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(server.ClientTLSConfig(nil, roots, "localhost"))))
	if err != nil {
		return nil, err
	}
	defer anon.Close()
	resp, err := pb.NewFederationClient(anon).Enroll(ctx, &pb.EnrollRequest{Site: name, Token: strings.TrimSpace(string(tok)), Csr: csr, IdentityKey: ik})
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{resp.Certificate}, PrivateKey: tlsKey}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(server.ClientTLSConfig(&cert, roots, "localhost"))))
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: &Config{Site: name}, opts: Options{Rand: rand.Reader}, ident: memSigner{idKey}, conn: conn, fed: pb.NewFederationClient(conn)}
	return c, nil
}
