package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/audit/merkle"
	"github.com/fedtune/fedtune/audit/posixlog"
	"github.com/fedtune/fedtune/audit/report"
	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/dp/accounting"
)

// Layout of an audit directory made by `fedtune audit init`.
const (
	auditKeysDir     = "keys"        // encrypted key store with the checkpoint key
	auditLogDir      = "log"         // the tessera-backed log
	auditPolicyFile  = "policy.json" // log key, witness keys, quorum: exported with every bundle
	auditConfigFile  = "audit.json"  // federation id
	auditCheckpoint  = "audit-checkpoint"
	auditWaitTimeout = time.Minute
)

type auditConfig struct {
	Federation string `json:"federation"`
}

func init() {
	rootCmd.AddCommand(newAuditCmd())
}

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Tamper-evident audit trail: create, append, export, verify, report",
		Long: `The audit trail is a Merkle transparency log (RFC 6962) of canonical JSON
entries with signed checkpoints (C2SP tlog-checkpoint) that the sites cosign.
An exported bundle verifies offline, without trusting the aggregator.

The key store passphrase comes from FEDTUNE_PASSPHRASE or the file named by
FEDTUNE_PASSPHRASE_FILE.`,
		PersistentPreRun: func(*cobra.Command, []string) { posixlog.QuietLibraryLogs() },
	}
	cmd.AddCommand(newAuditInitCmd(), newAuditAppendCmd(), newAuditExportCmd(), newAuditVerifyCmd(), newAuditReportCmd(), newAuditProveCmd())
	return cmd
}

func newAuditInitCmd() *cobra.Command {
	var dir, origin, federation string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a new audit log and its checkpoint-signing key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--dir is required")
			}
			if origin == "" {
				origin = "fedtune.audit/" + federation
			}
			ctx := cmd.Context()
			pass, err := keystore.PassphraseFromEnv()
			if err != nil {
				return err
			}
			if des, err := os.ReadDir(dir); err == nil && len(des) > 0 {
				return fmt.Errorf("%s is not empty", dir)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			ks, err := keystore.InitFileStore(filepath.Join(dir, auditKeysDir), pass)
			if err != nil {
				return err
			}
			if err := ks.CreateSigningKey(ctx, auditCheckpoint, keystore.Ed25519); err != nil {
				return err
			}
			signer, err := ks.Signer(ctx, auditCheckpoint)
			if err != nil {
				return err
			}
			cfg, _ := json.MarshalIndent(auditConfig{Federation: federation}, "", "  ")
			if _, err := (&audit.Entry{Schema: audit.SchemaVersion, Kind: audit.FederationCreated, Federation: federation,
				Actor: audit.Actor{ID: "service:fedtune-cli", Auth: "local"}, Time: audit.FormatTime(time.Now()), Outcome: audit.OutcomeOK}).Marshal(); err != nil {
				return fmt.Errorf("--federation: %w", err)
			}
			if err := os.WriteFile(filepath.Join(dir, auditConfigFile), append(cfg, '\n'), 0o644); err != nil {
				return err
			}
			l, err := posixlog.Create(ctx, filepath.Join(dir, auditLogDir), posixlog.Options{Origin: origin, Signer: signer})
			if err != nil {
				return err
			}
			pol := audit.Policy{Log: l.VerifierKey().Encoded, Witnesses: []string{}, Quorum: 0}
			pj, _ := json.MarshalIndent(pol, "", "  ")
			if err := os.WriteFile(filepath.Join(dir, auditPolicyFile), append(pj, '\n'), 0o644); err != nil {
				l.Close(ctx)
				return err
			}
			if err := l.Close(ctx); err != nil {
				return err
			}
			out := map[string]any{"dir": dir, "origin": origin, "federation": federation, "log_key": pol.Log}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created audit log %s in %s\nlog key: %s\n", origin, dir, pol.Log)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the new log (must not exist or be empty)")
	cmd.Flags().StringVar(&origin, "origin", "", `log name, first line of every checkpoint (default "fedtune.audit/<federation>")`)
	cmd.Flags().StringVar(&federation, "federation", "default", "federation id recorded in entries")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// openAuditLog opens the key store and the log of an audit directory.
func openAuditLog(ctx context.Context, dir string) (*posixlog.Log, *auditConfig, error) {
	if dir == "" {
		return nil, nil, errors.New("--dir is required")
	}
	cb, err := os.ReadFile(filepath.Join(dir, auditConfigFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not an audit directory (run fedtune audit init): %w", dir, err)
	}
	var cfg auditConfig
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, auditConfigFile), err)
	}
	pass, err := keystore.PassphraseFromEnv()
	if err != nil {
		return nil, nil, err
	}
	ks, err := keystore.OpenFileStore(filepath.Join(dir, auditKeysDir), pass)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ks.Signer(ctx, auditCheckpoint)
	if err != nil {
		return nil, nil, err
	}
	l, err := posixlog.Open(ctx, filepath.Join(dir, auditLogDir), posixlog.Options{Signer: signer})
	if err != nil {
		return nil, nil, err
	}
	return l, &cfg, nil
}

// appendAndPublish appends e and waits for a signed checkpoint covering it.
func appendAndPublish(ctx context.Context, l *posixlog.Log, e *audit.Entry) (uint64, *audit.SignedCheckpoint, error) {
	idx, err := l.Append(ctx, e)
	if err != nil {
		return 0, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, auditWaitTimeout)
	defer cancel()
	cpb, err := l.AwaitCheckpoint(wctx, idx+1)
	if err != nil {
		return idx, nil, fmt.Errorf("entry %d appended, but no checkpoint covers it yet: %w", idx, err)
	}
	cp, err := audit.OpenCheckpoint(cpb, l.VerifierKey(), nil)
	if err != nil {
		// Cosignatures by witnesses unknown here are fine; only the log's signature matters.
		n, perr := audit.ParseNote(cpb)
		if perr != nil {
			return idx, nil, err
		}
		c, perr := audit.ParseCheckpoint(n.Text)
		if perr != nil {
			return idx, nil, err
		}
		return idx, &audit.SignedCheckpoint{Checkpoint: c, Note: n}, nil
	}
	return idx, cp, nil
}

func parseObject(s string) (audit.Object, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 {
		return audit.Object{}, fmt.Errorf("--object %q: want TYPE:ID or TYPE:ID:sha256:HEX", s)
	}
	o := audit.Object{Type: parts[0], ID: parts[1]}
	if len(parts) == 3 {
		o.Digest = parts[2]
	}
	return o, nil
}

func newAuditAppendCmd() *cobra.Command {
	var dir, kind, actor, auth, message, reason, outcome, entryFile, at string
	var round int64
	var objects []string
	var refs []uint
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "append --dir DIR --kind KIND --actor user:NAME --message TEXT",
		Short: "Append an entry (officers record reviews this way) and wait for a checkpoint",
		Long: `Append one entry to the log and wait until a signed checkpoint covers it.

Either describe the entry with flags, or pass a complete entry (JSON, for
example a dp.spend that a site signed) with --entry FILE ("-" for stdin).
Entries must not contain personal data: actors are pseudonyms such as
user:officer-7, and messages are short operational notes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var e audit.Entry
			if entryFile != "" {
				if cmd.Flags().Changed("kind") || cmd.Flags().Changed("actor") || cmd.Flags().Changed("message") {
					return errors.New("--entry cannot be combined with --kind, --actor or --message")
				}
				var data []byte
				var err error
				if entryFile == "-" {
					data, err = io.ReadAll(cmd.InOrStdin())
				} else {
					data, err = os.ReadFile(entryFile)
				}
				if err != nil {
					return err
				}
				dec := json.NewDecoder(bytes.NewReader(data))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&e); err != nil {
					return fmt.Errorf("%s: %w", entryFile, err)
				}
			}
			l, cfg, err := openAuditLog(ctx, dir)
			if err != nil {
				return err
			}
			defer l.Close(ctx)
			if entryFile == "" {
				if kind == "" || actor == "" {
					return errors.New("--kind and --actor are required (or --entry FILE)")
				}
				t := time.Now()
				if at != "" {
					if t, err = time.Parse(time.RFC3339Nano, at); err != nil {
						return fmt.Errorf("--time: %w", err)
					}
				}
				e = audit.Entry{Schema: audit.SchemaVersion, Kind: audit.Kind(kind), Federation: cfg.Federation,
					Actor: audit.Actor{ID: actor, Auth: auth}, Time: audit.FormatTime(t), Outcome: audit.Outcome(outcome),
					Reason: reason, Message: message}
				if round >= 0 {
					r := uint64(round)
					e.Round = &r
				}
				for _, s := range objects {
					o, err := parseObject(s)
					if err != nil {
						return err
					}
					e.Objects = append(e.Objects, o)
				}
				for _, r := range refs {
					e.Refs = append(e.Refs, uint64(r))
				}
			}
			idx, cp, err := appendAndPublish(ctx, l, &e)
			if err != nil {
				return err
			}
			out := map[string]any{"index": idx, "tree_size": cp.Size, "root_hash": fmt.Sprintf("%x", cp.Root[:])}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "appended entry %d; checkpoint size %d, root %x\n", idx, cp.Size, cp.Root[:])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "audit directory")
	f.StringVar(&kind, "kind", "", "entry kind, e.g. review.performed")
	f.StringVar(&actor, "actor", "", "who: user:NAME, site:ID, service:NAME or witness:NAME (a pseudonym)")
	f.StringVar(&auth, "auth", "local", "how the actor authenticated: local, mtls, signature, token, none")
	f.StringVar(&message, "message", "", "short note (no personal data)")
	f.StringVar(&reason, "reason", "", "reason, for refusals, denials, aborts")
	f.StringVar(&outcome, "outcome", "ok", "ok, denied, refused, failed or aborted")
	f.Int64Var(&round, "round", -1, "round number, for round-scoped kinds")
	f.StringArrayVar(&objects, "object", nil, "object TYPE:ID or TYPE:ID:sha256:HEX (repeatable)")
	f.UintSliceVar(&refs, "ref", nil, "index of an earlier entry this one refers to (repeatable)")
	f.StringVar(&entryFile, "entry", "", `append this JSON entry instead ("-" for stdin)`)
	f.StringVar(&at, "time", "", "entry time, RFC 3339 (default now)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAuditExportCmd() *cobra.Command {
	var dir, out, actor string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "export --dir DIR --out BUNDLE",
		Short: "Record an export.performed entry, then export everything as an offline bundle",
		Long: `Write a bundle directory: entries.jsonl (one canonical entry per line),
checkpoints/ (every signed checkpoint with its cosignatures) and policy.json
(the log key, the witness keys and the quorum). The export itself is
recorded first, so the bundle contains its own export.performed entry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			ctx := cmd.Context()
			pb, err := os.ReadFile(filepath.Join(dir, auditPolicyFile))
			if err != nil {
				return err
			}
			pol, err := audit.ParsePolicy(pb)
			if err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(dir, auditPolicyFile), err)
			}
			l, cfg, err := openAuditLog(ctx, dir)
			if err != nil {
				return err
			}
			defer l.Close(ctx)
			if pol.Log.Encoded != l.VerifierKey().Encoded {
				return fmt.Errorf("%s names log key %s, but the log signs with %s", filepath.Join(dir, auditPolicyFile), pol.Log.Encoded, l.VerifierKey().Encoded)
			}
			e := &audit.Entry{Schema: audit.SchemaVersion, Kind: audit.ExportPerformed, Federation: cfg.Federation,
				Actor: audit.Actor{ID: actor, Auth: "local"}, Time: audit.FormatTime(time.Now()), Outcome: audit.OutcomeOK,
				Objects: []audit.Object{{Type: "export", ID: filepath.Base(out)}}}
			idx, cp, err := appendAndPublish(ctx, l, e)
			if err != nil {
				return err
			}
			b, err := l.Export(ctx, out, cp.Size, pol.Policy())
			if err != nil {
				return err
			}
			res := map[string]any{"bundle": out, "entries": cp.Size, "checkpoints": len(b.Checkpoints), "export_entry": idx, "root_hash": fmt.Sprintf("%x", cp.Root[:])}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %d entries and %d checkpoints to %s (export recorded as entry %d)\n", cp.Size, len(b.Checkpoints), out, idx)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "audit directory")
	cmd.Flags().StringVar(&out, "out", "", "bundle directory to create")
	cmd.Flags().StringVar(&actor, "actor", "service:fedtune-cli", "who exports (a pseudonym), recorded in the export.performed entry")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// verifyBundle reads and verifies a bundle with an optional policy file,
// showing a progress bar when stderr is a terminal.
func verifyBundle(cmd *cobra.Command, path, policyFile string, recompute, quiet bool) (*audit.Result, error) {
	b, err := audit.ReadBundle(path)
	if err != nil {
		return nil, err
	}
	opts := audit.VerifyOptions{}
	if recompute {
		opts.Epsilon = accounting.EpsilonFromEventsJSON
	}
	if policyFile != "" {
		pb, err := os.ReadFile(policyFile)
		if err != nil {
			return nil, err
		}
		if opts.Policy, err = audit.ParsePolicy(pb); err != nil {
			return nil, fmt.Errorf("%s: %w", policyFile, err)
		}
	}
	if f, ok := cmd.ErrOrStderr().(*os.File); !quiet && ok && term.IsTerminal(int(f.Fd())) {
		lines, _ := audit.EntryLines(b.Entries)
		bar := progressbar.NewOptions(len(lines), progressbar.OptionSetWriter(f),
			progressbar.OptionSetDescription("verifying entries"), progressbar.OptionClearOnFinish())
		opts.Progress = func(n int) { bar.Add(n) }
		defer bar.Finish()
	}
	return audit.Verify(b, opts), nil
}

func newAuditVerifyCmd() *cobra.Command {
	var policyFile string
	var asJSON, noEpsilon bool
	cmd := &cobra.Command{
		Use:   "verify BUNDLE",
		Short: "Verify an exported bundle offline; exit 0 only if everything holds",
		Long: `Rebuild the Merkle tree from the entries and check it against every signed
checkpoint, every signature and cosignature, the witness quorum, the sites'
signatures on their dp.spend entries, and each site's cumulative ε (recomputed
with the PLD accountant from the recorded DP events). Prints every problem
with its entry index or file, and exits 1 if there is any.

Pass --policy with the log and witness keys you obtained independently;
without it the bundle's own policy.json is used, which only shows that the
bundle is self-consistent.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := verifyBundle(cmd, args[0], policyFile, !noEpsilon, asJSON)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, r); err != nil {
					return err
				}
			} else {
				if r.OK {
					fmt.Fprintf(w, "OK: %d entries; checkpoint size %d, root %s; cosigned by %d witness(es) (quorum %d); keys from the %s policy\n",
						r.Entries, r.TreeSize, r.RootHash, len(r.Cosigners), r.Quorum, r.PolicySource)
				} else {
					fmt.Fprintf(w, "FAILED: %d problem(s)\n", len(r.Problems))
					for _, p := range r.Problems {
						fmt.Fprintf(w, "  %s\n", p)
					}
				}
				for _, n := range r.Notes {
					fmt.Fprintf(w, "note: %s\n", n)
				}
			}
			if !r.OK {
				return &exitError{code: 1, err: fmt.Errorf("bundle %s failed verification (%d problems)", args[0], len(r.Problems))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&policyFile, "policy", "", "trusted policy file (log key, witness keys, quorum)")
	cmd.Flags().BoolVar(&noEpsilon, "no-epsilon", false, "skip recomputing ε from DP events (faster; caps and monotonicity still checked)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newAuditReportCmd() *cobra.Command {
	var policyFile, format, out string
	var noEpsilon bool
	cmd := &cobra.Command{
		Use:   "report BUNDLE --format md|html|csv",
		Short: "Render a verified bundle: rounds, participants, privacy ledger, models, denials",
		Long: `Verify the bundle, then write a report: the verdict, the rounds timeline,
the participants, each site's privacy ledger (HTML adds an inline SVG chart
of cumulative ε), published models with digests, denials and anomalies. CSV
gives one row per entry. Exits 1 after writing if the bundle failed
verification.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := verifyBundle(cmd, args[0], policyFile, !noEpsilon, false)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := report.Render(&buf, format, r); err != nil {
				return err
			}
			if out == "" || out == "-" {
				if _, err := cmd.OutOrStdout().Write(buf.Bytes()); err != nil {
					return err
				}
			} else if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return err
			}
			if !r.OK {
				return &exitError{code: 1, err: fmt.Errorf("report written, but bundle %s failed verification (%d problems)", args[0], len(r.Problems))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&policyFile, "policy", "", "trusted policy file (log key, witness keys, quorum)")
	cmd.Flags().StringVar(&format, "format", "md", "md, html or csv")
	cmd.Flags().StringVarP(&out, "out", "o", "", "output file (default stdout)")
	cmd.Flags().BoolVar(&noEpsilon, "no-epsilon", false, "skip recomputing ε from DP events")
	return cmd
}

func init() {
	benchCmd.AddCommand(newAuditBenchCmd())
}

// auditBenchResult is the output of `fedtune bench audit`: each speed is
// a ratio to plain SHA-256 over the same bytes, measured in the same run.
type auditBenchResult struct {
	AppendEntries     int     `json:"append_entries"`
	AppendBatch       int     `json:"append_batch"`
	AppendBytes       int     `json:"append_bytes"`
	AppendSeconds     float64 `json:"append_seconds"`
	AppendSHA256Secs  float64 `json:"append_sha256_seconds"`
	AppendRatio       float64 `json:"append_ratio_vs_sha256"`
	AppendEntriesPerS float64 `json:"append_entries_per_second"`
	VerifyEntries     int     `json:"verify_entries"`
	VerifyBytes       int     `json:"verify_bytes"`
	VerifyCheckpoints int     `json:"verify_checkpoints"`
	VerifySeconds     float64 `json:"verify_seconds"`
	VerifySHA256Secs  float64 `json:"verify_sha256_seconds"`
	VerifyRatio       float64 `json:"verify_ratio_vs_sha256"`
	VerifyWorkers     int     `json:"verify_workers"`
}

// sha256Seconds times plain SHA-256 over data (best of three).
func sha256Seconds(data []byte) float64 {
	best := 0.0
	for i := 0; i < 3; i++ {
		start := time.Now()
		sum := sha256.Sum256(data)
		d := time.Since(start).Seconds()
		_ = sum
		if i == 0 || d < best {
			best = d
		}
	}
	return best
}

// benchEntry is a typical entry: round events, accepted updates, reviews.
func benchEntry(i int, t0 time.Time) *audit.Entry {
	r := uint64(i / 1000)
	e := &audit.Entry{Schema: audit.SchemaVersion, Federation: "fed-bench", Round: &r,
		Actor: audit.Actor{ID: fmt.Sprintf("site:site-%03d", i%100), Auth: "mtls"}, Time: audit.FormatTime(t0.Add(time.Duration(i) * time.Millisecond)),
		Outcome: audit.OutcomeOK}
	switch i % 4 {
	case 0:
		e.Kind = audit.UpdateAccepted
		e.Objects = []audit.Object{{Type: "update", ID: fmt.Sprintf("r%d-u%d", r, i), Digest: fmt.Sprintf("sha256:%064x", i)}}
	case 1:
		e.Kind = audit.SecAggDropout
		e.Reason = "missed the masked-input deadline"
	case 2:
		e.Kind = audit.AggregateProduced
		e.Actor = audit.Actor{ID: "service:aggregator", Auth: "local"}
		e.Objects = []audit.Object{{Type: "aggregate", ID: fmt.Sprintf("round-%d", r), Digest: fmt.Sprintf("sha256:%064x", i*7)}}
	default:
		e.Kind = audit.ReviewPerformed
		e.Round = nil
		e.Actor = audit.Actor{ID: "user:officer-2", Auth: "local"}
		e.Message = "spot check of the round's update digests against the sites' receipts"
	}
	return e
}

// benchSigner is an in-memory Ed25519 key for benchmarks only.
type benchSigner struct{ k ed25519.PrivateKey }

func (s benchSigner) Public() crypto.PublicKey { return s.k.Public() }
func (s benchSigner) Sign(_ context.Context, m []byte) ([]byte, error) {
	return ed25519.Sign(s.k, m), nil
}

func runAuditBench(ctx context.Context, appendN, batch, verifyN int, tmp string) (*auditBenchResult, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer := benchSigner{k}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	res := &auditBenchResult{AppendEntries: appendN, AppendBatch: batch, VerifyEntries: verifyN, VerifyWorkers: runtime.GOMAXPROCS(0)}

	// Append: batches of entries, each batch followed by a signed checkpoint.
	l, err := posixlog.Create(ctx, filepath.Join(tmp, "log"), posixlog.Options{Origin: "fedtune/bench", Signer: signer, BatchMaxSize: uint(batch)})
	if err != nil {
		return nil, err
	}
	var all bytes.Buffer
	datas := make([][]byte, appendN)
	for i := range datas {
		if datas[i], err = benchEntry(i, t0).Marshal(); err != nil {
			return nil, err
		}
		all.Write(datas[i])
	}
	start := time.Now()
	for lo := 0; lo < appendN; lo += batch {
		hi := min(lo+batch, appendN)
		fs := make([]func() (uint64, error), 0, hi-lo)
		for i := lo; i < hi; i++ {
			fs = append(fs, l.AppendRawAsync(ctx, datas[i]))
		}
		for _, f := range fs {
			if _, err := f(); err != nil {
				return nil, err
			}
		}
		if _, err := l.AwaitCheckpoint(ctx, uint64(hi)); err != nil {
			return nil, err
		}
	}
	res.AppendSeconds = time.Since(start).Seconds()
	if err := l.Close(ctx); err != nil {
		return nil, err
	}
	res.AppendBytes = all.Len()
	res.AppendSHA256Secs = sha256Seconds(all.Bytes())
	res.AppendRatio = res.AppendSHA256Secs / res.AppendSeconds
	res.AppendEntriesPerS = float64(appendN) / res.AppendSeconds

	// Verify: a bundle of verifyN entries with a checkpoint every 1000.
	ns, err := audit.NewNoteSigner(ctx, "fedtune/bench", signer)
	if err != nil {
		return nil, err
	}
	var tree merkle.Builder
	var b audit.Bundle
	var buf bytes.Buffer
	for i := 0; i < verifyN; i++ {
		d, err := benchEntry(i, t0).Marshal()
		if err != nil {
			return nil, err
		}
		buf.Write(d)
		buf.WriteByte('\n')
		tree.AppendLeafHash(merkle.LeafHash(d))
		if (i+1)%1000 == 0 || i == verifyN-1 {
			text := audit.Checkpoint{Origin: ns.Name(), Size: tree.Size(), Root: tree.Root()}.Marshal()
			sig, err := ns.Sign(text)
			if err != nil {
				return nil, err
			}
			n := audit.Note{Text: text, Sigs: []audit.NoteSignature{{Name: ns.Name(), KeyHash: ns.KeyHash(), Sig: sig}}}
			b.Checkpoints = append(b.Checkpoints, audit.BundleFile{Name: audit.CheckpointFileName(tree.Size()), Data: n.Marshal()})
		}
	}
	b.Entries = buf.Bytes()
	pol := audit.Policy{Log: ns.VerifierKey().Encoded, Witnesses: []string{}}
	pp, err := pol.Parse()
	if err != nil {
		return nil, err
	}
	res.VerifyBytes = len(b.Entries)
	res.VerifyCheckpoints = len(b.Checkpoints)
	start = time.Now()
	r := audit.Verify(&b, audit.VerifyOptions{Policy: pp})
	res.VerifySeconds = time.Since(start).Seconds()
	if !r.OK {
		return nil, fmt.Errorf("benchmark bundle did not verify: %v", r.Problems[0])
	}
	res.VerifySHA256Secs = sha256Seconds(b.Entries)
	res.VerifyRatio = res.VerifySHA256Secs / res.VerifySeconds
	return res, nil
}

func newAuditBenchCmd() *cobra.Command {
	var appendN, batch, verifyN int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Audit log append (checkpoint per batch) and verify throughput, as ratios to SHA-256 over the same bytes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			posixlog.QuietLibraryLogs()
			tmp, err := os.MkdirTemp("", "fedtune-bench-audit-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			res, err := runAuditBench(cmd.Context(), appendN, batch, verifyN, tmp)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "append: %d entries (%d bytes) in batches of %d, a signed checkpoint per batch: %.3fs (%.0f entries/s); SHA-256 over the same bytes %.6fs; ratio %.4f×\n",
				res.AppendEntries, res.AppendBytes, res.AppendBatch, res.AppendSeconds, res.AppendEntriesPerS, res.AppendSHA256Secs, res.AppendRatio)
			fmt.Fprintf(w, "verify: %d entries (%d bytes), %d checkpoints, %d workers: %.3fs; SHA-256 over the same bytes %.6fs; ratio %.4f×\n",
				res.VerifyEntries, res.VerifyBytes, res.VerifyCheckpoints, res.VerifyWorkers, res.VerifySeconds, res.VerifySHA256Secs, res.VerifyRatio)
			return nil
		},
	}
	cmd.Flags().IntVar(&appendN, "append-entries", 20000, "entries to append")
	cmd.Flags().IntVar(&batch, "batch", 1000, "entries per batch (one checkpoint each)")
	cmd.Flags().IntVar(&verifyN, "verify-entries", 100000, "entries in the verified bundle")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func hexHashes(hs []merkle.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = fmt.Sprintf("%x", h[:])
	}
	return out
}

func newAuditProveCmd() *cobra.Command {
	var dir string
	var index, size, from int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "prove --dir DIR (--index N | --from M) [--size S]",
		Short: "Print an RFC 6962 inclusion proof of an entry, or a consistency proof between two sizes",
		Long: `With --index, prove that entry N is in the tree of size S (default: the latest
checkpoint); with --from, prove that the tree of size M is a prefix of the tree of
size S. The proof is checked against the log's roots before it is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (index < 0) == (from < 0) {
				return errors.New("give exactly one of --index and --from")
			}
			ctx := cmd.Context()
			l, _, err := openAuditLog(ctx, dir)
			if err != nil {
				return err
			}
			defer l.Close(ctx)
			cur, err := l.Size(ctx)
			if err != nil {
				return err
			}
			s := uint64(size)
			if size < 0 {
				s = cur
			}
			root, err := l.RootAt(ctx, s)
			if err != nil {
				return err
			}
			out := map[string]any{"tree_size": s, "root_hash": fmt.Sprintf("%x", root[:])}
			if index >= 0 {
				data, err := l.Entry(ctx, uint64(index))
				if err != nil {
					return err
				}
				p, err := l.InclusionProof(ctx, uint64(index), s)
				if err != nil {
					return err
				}
				leaf := merkle.LeafHash(data)
				if err := merkle.VerifyInclusion(leaf, uint64(index), s, p, root); err != nil {
					return err
				}
				out["index"], out["leaf_hash"], out["inclusion_proof"] = index, fmt.Sprintf("%x", leaf[:]), hexHashes(p)
			} else {
				p, err := l.ConsistencyProof(ctx, uint64(from), s)
				if err != nil {
					return err
				}
				r1, err := l.RootAt(ctx, uint64(from))
				if err != nil {
					return err
				}
				if err := merkle.VerifyConsistency(uint64(from), s, r1, root, p); err != nil {
					return err
				}
				out["from_size"], out["from_root_hash"], out["consistency_proof"] = from, fmt.Sprintf("%x", r1[:]), hexHashes(p)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			w := cmd.OutOrStdout()
			if index >= 0 {
				fmt.Fprintf(w, "entry %d (leaf %s) is in the tree of size %d, root %s:\n", index, out["leaf_hash"], s, out["root_hash"])
				for _, h := range out["inclusion_proof"].([]string) {
					fmt.Fprintln(w, h)
				}
				return nil
			}
			fmt.Fprintf(w, "the tree of size %d (root %s) is a prefix of the tree of size %d (root %s):\n", from, out["from_root_hash"], s, out["root_hash"])
			for _, h := range out["consistency_proof"].([]string) {
				fmt.Fprintln(w, h)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "audit directory")
	cmd.Flags().Int64Var(&index, "index", -1, "entry index for an inclusion proof")
	cmd.Flags().Int64Var(&from, "from", -1, "older tree size for a consistency proof (> 0)")
	cmd.Flags().Int64Var(&size, "size", -1, "tree size (default: the latest checkpoint)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
