// Command fedtune is privacy-preserving federated fine-tuning of language
// models in one binary: the aggregator (fedtune server), the site client
// (fedtune client), local DP training (fedtune train), the audit tools
// (fedtune audit) and a one-command demo (fedtune demo).
//
// Each subcommand lives in its own file of this package and registers itself
// on rootCmd (or benchCmd) from an init function. Commands stay thin: they
// parse flags, call into the library packages and print; `--json` gives
// output for machines.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:           "fedtune",
	Short:         "Privacy-preserving federated fine-tuning of language models",
	SilenceUsage:  true,
	SilenceErrors: true,
}

// benchCmd groups the benchmarks; each reports ratios against a baseline
// measured in the same run.
var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "Benchmarks that report ratios against a baseline measured in the same run",
}

func init() {
	rootCmd.AddCommand(benchCmd)
}

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "fedtune: %v\n", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
