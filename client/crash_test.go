package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/server"
)

// TestMain lets the test binary double as an aggregator process for the
// crash test: with FEDTUNE_TEST_SERVER set it runs the server from that
// config and kills itself with SIGKILL at the point FEDTUNE_CRASH_AT.
func TestMain(m *testing.M) {
	if path := os.Getenv("FEDTUNE_TEST_SERVER"); path != "" {
		os.Exit(crashServerMain(path, os.Getenv("FEDTUNE_CRASH_AT")))
	}
	os.Exit(m.Run())
}

func crashServerMain(path, point string) int {
	cfg, err := server.LoadConfig(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, server.Options{Passphrase: pass, Hook: func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// The aggregator is killed with SIGKILL at several points of a round; on
// restart the round is either completed (its adapter was already written)
// or aborted, model.published appears at most once, and the audit log
// verifies and agrees with the database.
func TestCrashRecovery(t *testing.T) {
	points := []struct {
		point     string
		published int
	}{
		{"round.opened", 0},
		{"stage.finished.STAGE_SHARE_KEYS", 0},
		{"publish.written", 1},
		{"aggregate.recorded", 1},
		{"published.recorded", 1},
	}
	for _, p := range points {
		t.Run(p.point, func(t *testing.T) {
			sites := []string{"site-a", "site-b", "site-c"}
			base := sharedBaseModel(t)
			dir := t.TempDir()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			cfg := &server.Config{Federation: "crash", Listen: addr, DataDir: filepath.Join(dir, "server"), BaseModel: base, Sites: sites,
				Round: server.RoundConfig{NoiseMultiplier: 1, ExpectedBatchSize: 8, Steps: 2, Threshold: 2, MinSites: 3, LoraRank: 2, FFA: true,
					StageTimeout: server.Duration(5 * time.Second), TrainTimeout: server.Duration(30 * time.Second)},
				Schedule: server.ScheduleConfig{Rounds: 1}}
			cfg.SetDefaults()
			fastKeystore(t, cfg.Keystore.Dir)
			raw, _ := json.Marshal(cfg)
			cfgPath := filepath.Join(dir, "server.json")
			os.WriteFile(cfgPath, raw, 0o600)

			proc := exec.Command(os.Args[0], "-test.run=^$")
			proc.Env = append(os.Environ(), "FEDTUNE_TEST_SERVER="+cfgPath, "FEDTUNE_CRASH_AT="+p.point)
			logf, _ := os.Create(filepath.Join(dir, "server.log"))
			defer logf.Close()
			proc.Stdout, proc.Stderr = logf, logf
			if err := proc.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { proc.Wait(); close(exited) }()
			defer proc.Process.Kill()
			for deadline := time.Now().Add(30 * time.Second); ; {
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("server did not start")
				}
				time.Sleep(50 * time.Millisecond)
			}
			f := &federation{t: t, dir: dir, cfg: cfg, addr: addr}
			var cfgs []*Config
			for _, s := range sites {
				c := f.siteConfigDigest(s, 40, mustDigest(t, base))
				cfgs = append(cfgs, c)
			}
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-exited:
				case <-time.After(90 * time.Second):
				}
				cancel()
			}()
			runSites(t, ctx, cfgs)
			cancel()
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("server still running; it never reached %s", p.point)
			}
			if proc.ProcessState == nil || proc.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("server was not killed at %s: %v", p.point, proc.ProcessState)
			}

			// Restart: recovery runs in New.
			srv, err := server.New(context.Background(), cfg, server.Options{Passphrase: pass})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			pubs, err := srv.Published(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(pubs) != p.published {
				t.Fatalf("%d published versions after restart, want %d", len(pubs), p.published)
			}
			if p.published == 1 {
				got, err := server.DirDigest(pubs[0].Dir)
				if err != nil || got != pubs[0].Digest {
					t.Fatalf("published dir digest %s (%v), database says %s", got, err, pubs[0].Digest)
				}
			}
			f.srv = srv
			es := f.auditEntries(t)
			if n := count(es, audit.ModelPublished); n != p.published {
				t.Fatalf("%d model.published entries, want %d", n, p.published)
			}
			if p.published == 0 && count(es, audit.RoundAborted) != 1 {
				t.Fatalf("interrupted round not aborted in the audit log")
			}
			seen := map[string]bool{}
			for _, e := range es {
				if e.Kind == audit.DPSpendKind {
					k := fmt.Sprint(*e.Round, e.DP.Site)
					if seen[k] {
						t.Fatalf("dp.spend counted twice: %s", k)
					}
					seen[k] = true
				}
			}
		})
	}
}

func mustDigest(t *testing.T, dir string) string {
	t.Helper()
	d, err := server.DirDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
