package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/client"
	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/server"
	"github.com/fedtune/fedtune/synth"
	"github.com/spf13/cobra"
)

// demoSummary is what `fedtune demo --json` prints.
type demoSummary struct {
	Keystore         string                          `json:"keystore"`
	RoundsCompleted  int                             `json:"rounds_completed"`
	RoundsRequested  int                             `json:"rounds_requested"`
	Sites            []string                        `json:"sites"`
	Dropped          string                          `json:"dropped,omitempty"`
	EpsilonBySite    map[string]demoEpsilon          `json:"epsilon_by_site"`
	EvalLossBase     float64                         `json:"eval_loss_base"`
	EvalLossGlobal   float64                         `json:"eval_loss_global"`
	EvalLossLocal    float64                         `json:"eval_loss_local"`
	EvalLossBySite   map[string]demoLoss             `json:"eval_loss_by_site"`
	RoundsBySite     map[string][]client.RoundReport `json:"rounds_by_site"`
	AuditVerified    bool                            `json:"audit_verified"`
	AuditEntries     int                             `json:"audit_entries"`
	AuditCosigners   []string                        `json:"audit_cosigners"`
	AuditProblems    []string                        `json:"audit_problems,omitempty"`
	PublishedAdapter string                          `json:"published_adapter"`
	AdapterDigest    string                          `json:"adapter_digest"`
	AuditBundle      string                          `json:"audit_bundle"`
	WorkDir          string                          `json:"work_dir"`
	ElapsedSeconds   float64                         `json:"elapsed_seconds"`
}

type demoEpsilon struct {
	Spent     float64 `json:"spent"`
	Remaining float64 `json:"remaining"`
	Cap       float64 `json:"cap"`
	Delta     float64 `json:"delta"`
}

type demoLoss struct {
	Base   float64 `json:"base"`
	Local  float64 `json:"local_only"`
	Global float64 `json:"global"`
}

func init() {
	var (
		sites, rounds, records, steps int
		drop, dir, domain             string
		asJSON, keep                  bool
		ks, vaultAddr, vaultTokenFile string
		vaultCACert                   string
	)
	cmd := &cobra.Command{
		Use:   "demo [--sites 3] [--rounds 3] [--drop SITE@STAGE] [--json]",
		Short: "Run a whole federation on loopback: aggregator and sites as separate processes with mTLS",
		Long: `Run a whole federation on this machine with the embedded defaults: a tiny
Llama-architecture base model and tokenizer, synthetic non-IID records for each
site, the aggregator and every site as separate processes talking gRPC over
mutual TLS 1.3 on 127.0.0.1, DP-SGD at every site, secure aggregation, a
published global adapter per round, and finally an exported and verified audit
log. --drop SITE@STAGE makes one site vanish at a stage of the first round
(advertise_keys, share_keys, masked_input, consistency_check, unmask).

--keystore vault keeps every key in HashiCorp Vault instead of encrypted key
files: the demo (with the operator token from VAULT_TOKEN or
--vault-token-file) enables the transit, secret (KV v2) and pki mounts if they
are missing, creates a root CA and the PKI role "fedtune" there, creates the
Transit keys of the aggregator and of every site, and runs each process with
its own short-lived token restricted to its role's least-privilege policy.
Certificates come from Vault PKI; site secrets (TLS key, enrollment token)
live in KV v2 under fedtune-demo/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), demoOptions{
				sites: sites, rounds: rounds, records: records, steps: steps, drop: drop, dir: dir, domain: domain, json: asJSON, keep: keep,
				keystore: ks, vaultAddr: vaultAddr, vaultTokenFile: vaultTokenFile, vaultCACert: vaultCACert})
		},
	}
	f := cmd.Flags()
	f.IntVar(&sites, "sites", 3, "number of sites (2..20)")
	f.IntVar(&rounds, "rounds", 3, "number of rounds (1..20)")
	f.IntVar(&records, "records", 240, "training records per site")
	f.IntVar(&steps, "steps", 8, "DP-SGD steps per site per round")
	f.StringVar(&drop, "drop", "", "SITE@STAGE: make a site drop out at a stage of the first round")
	f.StringVar(&dir, "dir", "", "working directory (default: a new temporary directory, kept)")
	f.StringVar(&domain, "domain", "medical", "synthetic record domain: medical or finance")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	f.BoolVar(&keep, "keep", true, "keep the working directory")
	f.StringVar(&ks, "keystore", "file", "where the keys live: file (encrypted key files) or vault")
	f.StringVar(&vaultAddr, "vault-addr", os.Getenv("VAULT_ADDR"), "Vault address for --keystore vault (default $VAULT_ADDR)")
	f.StringVar(&vaultTokenFile, "vault-token-file", "", "file holding the Vault operator token (default: $VAULT_TOKEN)")
	f.StringVar(&vaultCACert, "vault-cacert", os.Getenv("VAULT_CACERT"), "PEM CA of Vault's TLS certificate (default $VAULT_CACERT)")
	rootCmd.AddCommand(cmd)
}

type demoOptions struct {
	sites, rounds, records, steps int
	drop, dir, domain             string
	json, keep                    bool
	// keystore is "file" (default) or "vault"; the vault fields are used
	// with "vault".
	keystore                               string
	vaultAddr, vaultTokenFile, vaultCACert string
}

func runDemo(ctx context.Context, stdout, stderr io.Writer, o demoOptions) error {
	start := time.Now()
	if o.sites < 2 || o.sites > 20 {
		return fmt.Errorf("--sites %d out of range 2..20", o.sites)
	}
	if o.rounds < 1 || o.rounds > 20 {
		return fmt.Errorf("--rounds %d out of range 1..20", o.rounds)
	}
	if o.records < 40 {
		return fmt.Errorf("--records %d: need at least 40", o.records)
	}
	switch o.keystore {
	case "", "file", "vault":
	default:
		return fmt.Errorf("--keystore %q: want file or vault", o.keystore)
	}
	names := make([]string, o.sites)
	for i := range names {
		names[i] = fmt.Sprintf("site-%c", 'a'+i)
	}
	dropSite, dropStage := "", ""
	if o.drop != "" {
		var ok bool
		dropSite, dropStage, ok = strings.Cut(o.drop, "@")
		if !ok || !contains(names, dropSite) {
			return fmt.Errorf("--drop %q: want SITE@STAGE with SITE one of %s", o.drop, strings.Join(names, ", "))
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fedtune-demo-"); err != nil {
			return err
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		if !o.json {
			fmt.Fprintf(stderr, "demo: "+format+"\n", args...)
		}
	}
	// A fresh passphrase for the demo's key stores, passed to the child
	// processes in their environment.
	pb := make([]byte, 16)
	rand.Read(pb)
	pass := hex.EncodeToString(pb)
	env := append(os.Environ(), "FEDTUNE_PASSPHRASE="+pass)
	env = filterEnv(env, "FEDTUNE_PASSPHRASE_FILE")

	logf("working directory %s", dir)
	base := filepath.Join(dir, "base-model")
	if err := synth.InitBaseModel(base, synth.DefaultModelOptions()); err != nil {
		return err
	}
	digest, err := server.DirDigest(base)
	if err != nil {
		return err
	}
	logf("base model %s (%s)", base, digest)
	port, err := freePort()
	if err != nil {
		return err
	}
	srvDir := filepath.Join(dir, "aggregator")
	os.MkdirAll(srvDir, 0o700)
	var dv *demoVault
	if o.keystore == "vault" {
		if dv, err = newDemoVault(ctx, o, dir, names, logf); err != nil {
			return err
		}
		defer dv.Close(context.WithoutCancel(ctx))
		// The processes use their own tokens only, never the operator's.
		env = filterEnv(env, "VAULT_TOKEN")
	}
	threshold := o.sites/2 + 1
	minSites := o.sites
	scfg := map[string]any{
		"federation": "demo", "listen": fmt.Sprintf("127.0.0.1:%d", port), "data_dir": filepath.Join(srvDir, "data"),
		"base_model": base, "sites": names,
		"round": map[string]any{"lora_rank": 4, "lora_alpha": 8, "target_modules": []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, "ffa": true, "a_seed": 42,
			"noise_multiplier": 0.8, "expected_batch_size": max(4, o.records/15), "steps": o.steps, "max_grad_norm": 1.0, "delta": 1e-5,
			"learning_rate": 0.5, "clip_norm": 10.0, "threshold": threshold, "min_sites": minSites,
			"stage_timeout": "8s", "train_timeout": "90s", "server_optimizer": "fedavg", "server_lr": 1.0},
		"schedule": map[string]any{"rounds": o.rounds, "interval": "1s"},
	}
	if dv != nil {
		scfg["keystore"] = dv.server
	}
	scfgPath := filepath.Join(srvDir, "server.json")
	if err := writeJSONFile(scfgPath, scfg); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	srvLog, _ := os.Create(filepath.Join(srvDir, "server.log"))
	defer srvLog.Close()
	srvProc := exec.CommandContext(ctx, exe, "server", "--config", scfgPath)
	srvProc.Env, srvProc.Stdout, srvProc.Stderr = env, srvLog, srvLog
	srvProc.Cancel = func() error { return srvProc.Process.Signal(syscall.SIGTERM) }
	srvProc.WaitDelay = 15 * time.Second
	if err := srvProc.Start(); err != nil {
		return err
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srvProc.Wait() }()
	stopServer := func() {
		if srvProc.ProcessState == nil {
			srvProc.Process.Signal(syscall.SIGTERM)
			select {
			case <-srvDone:
			case <-time.After(15 * time.Second):
				srvProc.Process.Kill()
				<-srvDone
			}
		}
	}
	defer stopServer()
	// Wait for the aggregator to listen (it writes tokens and ca.pem first).
	if err := waitListen(ctx, fmt.Sprintf("127.0.0.1:%d", port), srvDone); err != nil {
		return fmt.Errorf("aggregator did not start (see %s): %w", filepath.Join(srvDir, "server.log"), err)
	}
	logf("aggregator listening on 127.0.0.1:%d (log: %s)", port, filepath.Join(srvDir, "server.log"))
	if dv != nil {
		if err := dv.putEnrollmentTokens(ctx, filepath.Join(srvDir, "data", "tokens")); err != nil {
			return err
		}
	}

	// Sites: data, config, process.
	type siteRun struct {
		name string
		out  bytes.Buffer
		err  error
	}
	runs := make([]*siteRun, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		sdir := filepath.Join(dir, name)
		os.MkdirAll(sdir, 0o700)
		recs, err := synth.Generate(synth.Options{Domain: synth.Domain(o.domain), Site: name, Records: o.records + o.records/4, Seed: 1})
		if err != nil {
			return err
		}
		if err := writeJSONL(filepath.Join(sdir, "train.jsonl"), recs[:o.records]); err != nil {
			return err
		}
		if err := writeJSONL(filepath.Join(sdir, "eval.jsonl"), recs[o.records:]); err != nil {
			return err
		}
		ccfg := map[string]any{
			"site": name, "server": fmt.Sprintf("127.0.0.1:%d", port), "server_name": "localhost",
			"ca_file": filepath.Join(srvDir, "data", "ca.pem"), "token_file": filepath.Join(srvDir, "data", "tokens", name+".token"),
			"data_dir": filepath.Join(sdir, "state"), "data": filepath.Join(sdir, "train.jsonl"), "eval_data": filepath.Join(sdir, "eval.jsonl"),
			"base_model": base, "max_seq": 48, "rounds": o.rounds,
			"policy": map[string]any{"allowed_base_models": []string{digest}, "max_epsilon_per_round": 5.0, "epsilon_cap": 20.0, "delta": 1e-5},
		}
		if name == dropSite {
			ccfg["drop_at"] = dropStage
		}
		if dv != nil {
			ccfg["keystore"] = dv.sites[name]
			delete(ccfg, "token_file") // the token is a Vault KV secret
		}
		cpath := filepath.Join(sdir, "client.json")
		if err := writeJSONFile(cpath, ccfg); err != nil {
			return err
		}
		r := &siteRun{name: name}
		runs[i] = r
		logFile, _ := os.Create(filepath.Join(sdir, "client.log"))
		p := exec.CommandContext(ctx, exe, "client", "--config", cpath, "--json")
		p.Env, p.Stdout, p.Stderr = env, &r.out, logFile
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer logFile.Close()
			r.err = p.Run()
		}()
	}
	logf("%d sites started; running %d rounds", len(names), o.rounds)
	wg.Wait()
	sum := demoSummary{Sites: names, RoundsRequested: o.rounds, EpsilonBySite: map[string]demoEpsilon{}, EvalLossBySite: map[string]demoLoss{},
		RoundsBySite: map[string][]client.RoundReport{}, WorkDir: dir, Dropped: o.drop, Keystore: cmp.Or(o.keystore, "file")}
	var nb, ng, nl float64
	for _, r := range runs {
		if r.err != nil {
			return fmt.Errorf("site %s failed: %v (see %s)", r.name, r.err, filepath.Join(dir, r.name, "client.log"))
		}
		var cs client.Summary
		if err := json.Unmarshal(r.out.Bytes(), &cs); err != nil {
			return fmt.Errorf("site %s: summary: %w", r.name, err)
		}
		sum.EpsilonBySite[r.name] = demoEpsilon{Spent: cs.EpsilonSpent, Remaining: cs.EpsilonLeft, Cap: cs.EpsilonCap, Delta: cs.Delta}
		sum.EvalLossBySite[r.name] = demoLoss{Base: cs.EvalLossBase, Local: cs.EvalLossLocal, Global: cs.EvalLossGlobal}
		sum.RoundsBySite[r.name] = cs.Rounds
		sum.EvalLossBase += cs.EvalLossBase
		nb++
		if cs.EvalLossGlobal > 0 {
			sum.EvalLossGlobal += cs.EvalLossGlobal
			ng++
		}
		if cs.EvalLossLocal > 0 {
			sum.EvalLossLocal += cs.EvalLossLocal
			nl++
		}
	}
	sum.EvalLossBase /= max(nb, 1)
	sum.EvalLossGlobal /= max(ng, 1)
	sum.EvalLossLocal /= max(nl, 1)
	stopServer()
	logf("sites finished; exporting and verifying the audit log")

	// Export the audit log with the aggregator stopped, then verify it
	// offline, as a compliance officer would.
	cfg, err := server.LoadConfig(scfgPath)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, cfg, server.Options{Passphrase: []byte(pass), Log: quietLogger()})
	if err != nil {
		return err
	}
	bundleDir := filepath.Join(dir, "audit-bundle")
	os.RemoveAll(bundleDir)
	bundle, _, err := srv.ExportAudit(ctx, bundleDir)
	if err == nil {
		var pubs []server.PublishedInfo
		pubs, err = srv.Published(ctx)
		sum.RoundsCompleted = len(pubs)
		if len(pubs) > 0 {
			sum.PublishedAdapter, sum.AdapterDigest = pubs[len(pubs)-1].Dir, pubs[len(pubs)-1].Digest
		}
	}
	srv.Close()
	if err != nil {
		return err
	}
	res := audit.Verify(bundle, audit.VerifyOptions{Epsilon: accounting.EpsilonFromEventsJSON})
	sum.AuditVerified, sum.AuditEntries, sum.AuditCosigners, sum.AuditBundle = res.OK, res.Entries, res.Cosigners, bundleDir
	for _, p := range res.Problems {
		sum.AuditProblems = append(sum.AuditProblems, fmt.Sprint(p))
	}
	sum.ElapsedSeconds = time.Since(start).Seconds()
	if o.json {
		return writeJSON(stdout, sum)
	}
	printDemo(stdout, &sum)
	return nil
}

func printDemo(w io.Writer, s *demoSummary) {
	fmt.Fprintf(w, "\nfedtune demo: %d of %d rounds completed with %d sites in %.0fs (keys: %s)\n", s.RoundsCompleted, s.RoundsRequested, len(s.Sites), s.ElapsedSeconds, s.Keystore)
	if s.Dropped != "" {
		fmt.Fprintf(w, "dropped: %s (secure aggregation continued without it)\n", s.Dropped)
	}
	fmt.Fprintf(w, "\n%-8s %9s %9s %9s %11s %11s %11s\n", "site", "ε spent", "ε left", "ε cap", "loss base", "loss local", "loss global")
	names := append([]string(nil), s.Sites...)
	sort.Strings(names)
	for _, n := range names {
		e, l := s.EpsilonBySite[n], s.EvalLossBySite[n]
		fmt.Fprintf(w, "%-8s %9.3f %9.3f %9.3f %11.4f %11.4f %11.4f\n", n, e.Spent, e.Remaining, e.Cap, l.Base, l.Local, l.Global)
	}
	fmt.Fprintf(w, "%-8s %9s %9s %9s %11.4f %11.4f %11.4f\n", "mean", "", "", "", s.EvalLossBase, s.EvalLossLocal, s.EvalLossGlobal)
	fmt.Fprintf(w, "\n(ε at δ = 1e-5 per record, composed with the PLD accountant; losses are mean next-token\ncross-entropy on each site's held-out records; \"local\" is the site's adapter after its own\nlast local training, before aggregation)\n")
	v := "VERIFIED"
	if !s.AuditVerified {
		v = "FAILED: " + strings.Join(s.AuditProblems, "; ")
	}
	fmt.Fprintf(w, "\naudit log: %d entries, cosigned by %s: %s\n", s.AuditEntries, strings.Join(s.AuditCosigners, ", "), v)
	fmt.Fprintf(w, "\noutputs:\n  global adapter (PEFT):  %s\n  adapter digest:         %s\n  audit bundle:           %s\n  everything:             %s\n",
		s.PublishedAdapter, s.AdapterDigest, s.AuditBundle, s.WorkDir)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func filterEnv(env []string, drop string) []string {
	out := env[:0]
	for _, e := range env {
		if !strings.HasPrefix(e, drop+"=") {
			out = append(out, e)
		}
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListen(ctx context.Context, addr string, died <-chan error) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-died:
			return fmt.Errorf("exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

func writeJSONL(path string, recs []synth.Record) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := synth.Write(f, recs); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func quietLogger() *log.Logger { return log.New(io.Discard, "", 0) }
