package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedtune/fedtune/dp/accounting"
	"github.com/fedtune/fedtune/dp/ledger"
	"github.com/fedtune/fedtune/dp/ledger/ledgerfs"
	"github.com/fedtune/fedtune/dp/noise"
)

func init() {
	rootCmd.AddCommand(newDPCmd())
	benchCmd.AddCommand(newBenchNoiseCmd())
}

func newDPCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dp",
		Short: "Privacy accounting and the site's privacy ledger",
	}
	led := &cobra.Command{Use: "ledger", Short: "Create and inspect a site's privacy ledger"}
	led.AddCommand(newLedgerInitCmd(), newLedgerShowCmd())
	cmd.AddCommand(led, newEpsilonCmd(), newCalibrateCmd())
	return cmd
}

func newLedgerInitCmd() *cobra.Command {
	var (
		siteDir       string
		capEps, delta float64
		jsonOut       bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the privacy ledger of a site data directory with a cap (ε, δ)",
		Long: `Creates privacy-ledger.jsonl and privacy-ledger.head in --site-dir. Every
later DP run on this site's data (fedtune train, fedtune client) records its
privacy event there before touching the data, and is refused if the
cumulative ε, composed with the PLD accountant, would exceed --epsilon-cap at
--delta.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if siteDir == "" {
				return fmt.Errorf("--site-dir is required")
			}
			l, err := ledger.Create(ledgerfs.Dir{Path: siteDir}, ledger.Config{EpsilonCap: capEps, Delta: delta}, time.Now())
			if err != nil {
				return fmt.Errorf("%s: %w", siteDir, err)
			}
			return printLedger(cmd.OutOrStdout(), siteDir, l, jsonOut)
		},
	}
	f := cmd.Flags()
	f.StringVar(&siteDir, "site-dir", "", "site data directory that holds the ledger")
	f.Float64Var(&capEps, "epsilon-cap", 0, "lifetime ε cap for this site's data")
	f.Float64Var(&delta, "delta", 0, "δ at which ε is computed (should be below 1/records)")
	f.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newLedgerShowCmd() *cobra.Command {
	var (
		siteDir string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Verify and print a site's privacy ledger",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if siteDir == "" {
				return fmt.Errorf("--site-dir is required")
			}
			l, err := ledger.Open(ledgerfs.Dir{Path: siteDir})
			if err != nil {
				return fmt.Errorf("%s: %w", siteDir, err)
			}
			return printLedger(cmd.OutOrStdout(), siteDir, l, jsonOut)
		},
	}
	cmd.Flags().StringVar(&siteDir, "site-dir", "", "site data directory that holds the ledger")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

// ledgerEvent is one spend in `fedtune dp ledger show --json`.
type ledgerEvent struct {
	Seq           uint64          `json:"seq"`
	Time          string          `json:"time"`
	RunID         string          `json:"run_id"`
	Purpose       string          `json:"purpose,omitempty"`
	Dataset       string          `json:"dataset,omitempty"`
	DatasetSHA256 string          `json:"dataset_sha256,omitempty"`
	Records       int             `json:"records,omitempty"`
	Event         json.RawMessage `json:"event"`
	Params        json.RawMessage `json:"params,omitempty"`
	EpsilonAfter  float64         `json:"epsilon_after"`
	Hash          string          `json:"hash"`
}

type ledgerSummary struct {
	SiteDir          string        `json:"site_dir"`
	EpsilonSpent     float64       `json:"epsilon_spent"`
	EpsilonCap       float64       `json:"epsilon_cap"`
	EpsilonRemaining float64       `json:"epsilon_remaining"`
	Delta            float64       `json:"delta"`
	Accountant       string        `json:"accountant"`
	Created          string        `json:"created"`
	Head             string        `json:"head"`
	Events           []ledgerEvent `json:"events"`
}

func printLedger(w io.Writer, dir string, l *ledger.Ledger, jsonOut bool) error {
	entries := l.Entries()
	s := ledgerSummary{
		SiteDir: dir, EpsilonSpent: l.Spent(), EpsilonCap: l.Config().EpsilonCap,
		EpsilonRemaining: l.Remaining(), Delta: l.Config().Delta, Accountant: "pld",
		Created: entries[0].Time, Head: entries[len(entries)-1].Hash, Events: []ledgerEvent{},
	}
	for _, e := range entries[1:] {
		s.Events = append(s.Events, ledgerEvent{Seq: e.Seq, Time: e.Time, RunID: e.RunID, Purpose: e.Purpose,
			Dataset: e.Dataset, DatasetSHA256: e.DatasetSHA256, Records: e.Records, Event: e.Event,
			Params: e.Params, EpsilonAfter: e.EpsilonAfter, Hash: e.Hash})
	}
	if jsonOut {
		return writeJSON(w, s)
	}
	fmt.Fprintf(w, "privacy ledger %s (created %s)\n", dir, s.Created)
	fmt.Fprintf(w, "ε spent %.4f of cap %.4f at δ=%g (PLD accountant); remaining %.4f\n", s.EpsilonSpent, s.EpsilonCap, s.Delta, s.EpsilonRemaining)
	fmt.Fprintf(w, "%d events, head %s\n", len(s.Events), s.Head)
	for _, e := range s.Events {
		fmt.Fprintf(w, "  #%d %s run %s %s %s records=%d ε after=%.4f\n    %s\n", e.Seq, e.Time, e.RunID, e.Purpose, e.Dataset, e.Records, e.EpsilonAfter, e.Event)
	}
	return nil
}

func newEpsilonCmd() *cobra.Command {
	var (
		q, sigma, delta   float64
		steps             int
		acct              string
		jsonOut, extended bool
	)
	cmd := &cobra.Command{
		Use:   "epsilon",
		Short: "ε of DP-SGD: T steps of the Poisson-subsampled Gaussian mechanism",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := accounting.ParseAccountant(acct)
			if err != nil {
				return fmt.Errorf("--accountant: %w", err)
			}
			e := accounting.DPSGD(q, sigma, steps)
			if err := accounting.Validate(e); err != nil {
				return fmt.Errorf("--sampling-rate/--noise-multiplier/--steps: %w", err)
			}
			if steps < 1 {
				return fmt.Errorf("--steps: want ≥ 1, got %d", steps)
			}
			var eps float64
			if extended && a == accounting.AccountantRDP {
				eps, err = accounting.EpsilonRDP(e, delta, accounting.ExtendedOrders())
			} else {
				eps, err = accounting.Epsilon(a, e, delta)
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"epsilon": eps, "delta": delta, "accountant": acct,
					"sampling_rate": q, "noise_multiplier": sigma, "steps": steps})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ε = %.6f at δ = %g (%s; q=%g, σ=%g, %d steps)\n", eps, delta, acct, q, sigma, steps)
			return nil
		},
	}
	f := cmd.Flags()
	f.Float64Var(&q, "sampling-rate", 0, "Poisson sampling rate q = expected batch size / records")
	f.Float64Var(&sigma, "noise-multiplier", 0, "noise multiplier σ (noise std / clipping norm)")
	f.IntVar(&steps, "steps", 0, "number of steps T")
	f.Float64Var(&delta, "delta", 1e-5, "δ")
	f.StringVar(&acct, "accountant", "pld", "accountant: rdp or pld")
	f.BoolVar(&extended, "extended-orders", false, "rdp: also use orders 64…256, 512 and 1024 (helps for tiny ε or δ)")
	f.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newCalibrateCmd() *cobra.Command {
	var (
		q, eps, delta float64
		steps         int
		acct          string
		jsonOut       bool
	)
	cmd := &cobra.Command{
		Use:   "calibrate",
		Short: "Smallest noise multiplier that meets a target (ε, δ)",
		Long: `Bisects the noise multiplier σ and returns the safe end of the bracket:
ε(σ) ≤ --epsilon always holds for the printed σ.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := accounting.ParseAccountant(acct)
			if err != nil {
				return fmt.Errorf("--accountant: %w", err)
			}
			sigma, err := accounting.Calibrate(a, q, steps, eps, delta, nil)
			if err != nil {
				return err
			}
			got, err := accounting.Epsilon(a, accounting.DPSGD(q, sigma, steps), delta)
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"noise_multiplier": sigma, "epsilon": got,
					"target_epsilon": eps, "delta": delta, "accountant": acct, "sampling_rate": q, "steps": steps})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "σ = %.6f gives ε = %.6f ≤ %g at δ = %g (%s)\n", sigma, got, eps, delta, acct)
			return nil
		},
	}
	f := cmd.Flags()
	f.Float64Var(&q, "sampling-rate", 0, "Poisson sampling rate q = expected batch size / records")
	f.IntVar(&steps, "steps", 0, "number of steps T")
	f.Float64Var(&eps, "epsilon", 0, "target ε")
	f.Float64Var(&delta, "delta", 1e-5, "δ")
	f.StringVar(&acct, "accountant", "pld", "accountant: rdp or pld")
	f.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func newBenchNoiseCmd() *cobra.Command {
	var (
		n       int
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "noise",
		Short: "Throughput of the DP noise sampler against raw ChaCha8 output",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 {
				return fmt.Errorf("--samples: want ≥ 1, got %d", n)
			}
			tp := noise.MeasureThroughput(n, time.Now)
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), tp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "snapped Gaussian: %.1f M samples/s on one core; %.2f× the time of one ChaCha8 Uint64 (%.1f M/s)\n",
				tp.SamplesPerSecond/1e6, tp.SamplerOverChaCha8Uint64, tp.BaselineUint64PerSecond/1e6)
			return nil
		},
	}
	cmd.Flags().IntVar(&n, "samples", 1<<24, "number of samples to time")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}
