package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fedtune/fedtune/synth"
	"github.com/spf13/cobra"
)

var dataCmd = &cobra.Command{
	Use:   "data",
	Short: "Site datasets: generate synthetic records",
}

func init() {
	var (
		domain, site, out string
		records           int
		seed              int64
		asJSON            bool
	)
	synthCmd := &cobra.Command{
		Use:   "synth --domain medical|finance --site NAME --records N --out FILE",
		Short: "Write synthetic, non-IID JSONL records for one site (no real personal data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			recs, err := synth.Generate(synth.Options{Domain: synth.Domain(domain), Site: site, Records: records, Seed: seed})
			if err != nil {
				return err
			}
			if err := writeRecordsAtomic(out, recs); err != nil {
				return err
			}
			mix, _ := synth.Mix(synth.Domain(domain), site, seed)
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{
					"out": out, "records": records, "domain": domain, "site": site, "seed": seed, "topic_mix": mix,
				})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d %s records for site %s to %s\ntopic mix:", records, domain, site, out)
			for _, m := range mix {
				fmt.Fprintf(cmd.OutOrStdout(), " %s=%.2f", m.Topic, m.Weight)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	f := synthCmd.Flags()
	f.StringVar(&domain, "domain", "medical", "record domain: medical or finance")
	f.StringVar(&site, "site", "", "site name (selects the site's topic mix)")
	f.IntVar(&records, "records", 1000, "number of records")
	f.StringVar(&out, "out", "", "output JSONL file")
	f.Int64Var(&seed, "seed", 1, "generator seed (output is deterministic by seed)")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary")
	dataCmd.AddCommand(synthCmd)
	rootCmd.AddCommand(dataCmd)
}

// writeRecordsAtomic writes records to path through a temporary file.
func writeRecordsAtomic(path string, recs []synth.Record) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".synth-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := synth.Write(tmp, recs); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
