package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fedtune/fedtune/crypto/secagg/bench"
)

func init() {
	benchCmd.AddCommand(newBenchSecaggCmd())
}

// secaggScaling is one extra thread count of `fedtune bench secagg
// --threads a,b,...`, relative to the first.
type secaggScaling struct {
	Threads       int     `json:"threads"`
	ClientMaskS   float64 `json:"client_mask_s"`
	KeystreamS    float64 `json:"keystream_s"`
	ServerUnmaskS float64 `json:"server_unmask_s"`
	// ServerSpeedup = server_unmask_s of the first thread count / this one.
	ServerSpeedup float64 `json:"server_speedup"`
	Exact         bool    `json:"exact"`
}

type secaggBenchOutput struct {
	*bench.Result
	Scaling []secaggScaling `json:"scaling,omitempty"`
}

func newBenchSecaggCmd() *cobra.Command {
	var (
		cfg     bench.Config
		threads []int
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "secagg",
		Short: "Measure a secure-aggregation round against raw AES-CTR keystream",
		Long: `Runs a whole secure-aggregation round in memory (N sites, vectors of M
uint32 words, D sites dropping out after ShareKeys, every message through
its wire encoding) and reports the time of one site's MaskedInput stage and
of the server's unmasking, each against raw AES-128-CTR keystream for the
same number of mask words measured in the same run with the same threads.
With --threads a,b the round is repeated per thread count and the server's
speed-up is reported. Exits with status 2 if the unmasked sum is not exact.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(threads) == 0 {
				return errors.New("--threads needs at least one value")
			}
			stderr := cmd.ErrOrStderr()
			var bar *progressbar.ProgressBar
			if f, ok := stderr.(*os.File); !jsonOut && ok && term.IsTerminal(int(f.Fd())) {
				bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(stderr),
					progressbar.OptionSpinnerType(14), progressbar.OptionClearOnFinish())
				cfg.Progress = func(step string) { bar.Describe(step); bar.Add(1) }
			}
			var out secaggBenchOutput
			for i, t := range threads {
				c := cfg
				c.Threads = t
				r, err := bench.Run(c)
				if err != nil {
					return err
				}
				if i == 0 {
					out.Result = r
					continue
				}
				out.Scaling = append(out.Scaling, secaggScaling{
					Threads: r.Threads, ClientMaskS: r.ClientMaskS, KeystreamS: r.KeystreamS,
					ServerUnmaskS: r.ServerUnmaskS, ServerSpeedup: out.ServerUnmaskS / r.ServerUnmaskS, Exact: r.Exact,
				})
			}
			if bar != nil {
				bar.Finish()
			}
			if jsonOut {
				if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			} else {
				printSecaggBench(cmd.OutOrStdout(), out)
			}
			exact := out.Exact
			for _, s := range out.Scaling {
				exact = exact && s.Exact
			}
			if !exact {
				return &exitError{code: 2, err: errors.New("bench secagg: the unmasked sum differs from the plain sum")}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Sites, "sites", 50, "number of sites N")
	fl.IntVar(&cfg.Params, "params", 1<<20, "vector length M in uint32 words")
	fl.IntVar(&cfg.Dropouts, "dropouts", 0, "sites that drop out after ShareKeys")
	fl.IntVar(&cfg.Threshold, "threshold", 0, "threshold T (0: ⌊2N/3⌋+1, lowered to N−dropouts if needed)")
	fl.BoolVar(&cfg.PQ, "pq", false, "post-quantum hybrid mode (X25519+ML-KEM-768, X-Wing HPKE)")
	fl.BoolVar(&cfg.MLDSA, "mldsa", false, "ML-DSA-65 identity signatures instead of Ed25519")
	fl.IntSliceVar(&threads, "threads", []int{0}, "mask-expansion threads, a comma list to measure scaling (0: all cores)")
	fl.BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func printSecaggBench(w io.Writer, o secaggBenchOutput) {
	r := o.Result
	fmt.Fprintf(w, "secure aggregation: N=%d T=%d M=%d dropouts=%d mode=%s sig=%s threads=%d\n",
		r.Sites, r.Threshold, r.Params, r.Dropouts, r.Mode, r.SigAlg, r.Threads)
	fmt.Fprintf(w, "  client MaskedInput   %9.4f s   %.3f× keystream (%.4f s for %d·M words)\n", r.ClientMaskS, r.ClientOverKeystream, r.KeystreamS, r.Sites)
	if r.ClientOverKeystreamCPU > 0 {
		fmt.Fprintf(w, "  in CPU time          %9.4f s   %.3f× keystream (%.4f s)\n", r.ClientMaskCPUS, r.ClientOverKeystreamCPU, r.KeystreamCPUS)
	}
	fmt.Fprintf(w, "  masking kernel only  %9.4f s   %.3f× keystream (%.3f× in CPU time)\n", r.MaskKernelS, r.KernelOverKeystream, r.KernelOverKeystreamCPU)
	fmt.Fprintf(w, "  server unmask        %9.4f s   %.3f× keystream for its %d words\n", r.ServerUnmaskS, r.ServerOverKeystream, r.ServerMaskWords)
	fmt.Fprintf(w, "  setup (all sites)    %9.4f s\n", r.SetupS)
	fmt.Fprintf(w, "  bytes per client     %d sent, %d received; expansion %.4f× of 4·M\n", r.BytesPerClient, r.BytesToClient, r.ExpansionFactor)
	fmt.Fprintf(w, "  survivors %d, exact %v\n", r.Survivors, r.Exact)
	for _, s := range o.Scaling {
		fmt.Fprintf(w, "  threads=%d: server unmask %.4f s (speed-up %.2f×), client %.4f s, keystream %.4f s, exact %v\n",
			s.Threads, s.ServerUnmaskS, s.ServerSpeedup, s.ClientMaskS, s.KeystreamS, s.Exact)
	}
}
