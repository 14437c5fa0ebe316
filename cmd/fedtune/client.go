package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fedtune/fedtune/client"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func init() {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "client --config FILE",
		Short: "Run a site: enroll, check each round against the site policy, train with DP-SGD, aggregate securely",
		Long: `Run a site. On first start the client creates its encrypted key store
(passphrase from FEDTUNE_PASSPHRASE or FEDTUNE_PASSPHRASE_FILE) and privacy ledger
in data_dir, enrolls with the one-time token, then takes part in rounds until
stopped (or until "rounds" rounds were handled). It prints a summary at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return fmt.Errorf("--config is required")
			}
			cfg, err := client.LoadConfig(configPath)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts := client.Options{}
			if !asJSON && term.IsTerminal(int(os.Stderr.Fd())) {
				var bar *progressbar.ProgressBar
				var cur uint64
				opts.Progress = func(round uint64, step, steps int, loss float64) {
					if bar == nil || round != cur {
						cur = round
						bar = progressbar.NewOptions(steps, progressbar.OptionSetWriter(os.Stderr),
							progressbar.OptionSetDescription(fmt.Sprintf("round %d DP-SGD", round)), progressbar.OptionClearOnFinish())
					}
					bar.Describe(fmt.Sprintf("round %d DP-SGD loss %.3f", round, loss))
					bar.Set(step)
				}
			}
			c, err := client.New(ctx, cfg, opts)
			if err != nil {
				return err
			}
			defer c.Close()
			sum, err := c.Run(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), sum)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "site %s\n", sum.Site)
			for _, r := range sum.Rounds {
				fmt.Fprintf(w, "  round %d: %s %s\n", r.Round, r.Outcome, r.Reason)
			}
			fmt.Fprintf(w, "  ε spent %.3f of %.3f (δ = %g), %.3f left\n", sum.EpsilonSpent, sum.EpsilonCap, sum.Delta, sum.EpsilonLeft)
			if sum.AdapterDir != "" {
				fmt.Fprintf(w, "  global adapter v%d in %s\n", sum.AdapterVersion, sum.AdapterDir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "client configuration file (JSON, // comments allowed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	rootCmd.AddCommand(cmd)
}
