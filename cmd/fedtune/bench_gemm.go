package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fedtune/fedtune/kernels"
)

func init() {
	benchCmd.AddCommand(newBenchGemmCmd())
}

// gemmBenchResult is the output of `fedtune bench gemm --json`. The
// OpenBLAS fields are present only in binaries built with -tags openblas.
type gemmBenchResult struct {
	M       int    `json:"m"`
	N       int    `json:"n"`
	K       int    `json:"k"`
	TransA  bool   `json:"trans_a"`
	TransB  bool   `json:"trans_b"`
	Threads int    `json:"threads"`
	Runs    int    `json:"runs"`
	Kernel  string `json:"kernel"`

	NativeGFLOPS   float64 `json:"native_gflops"`
	NativeGoGFLOPS float64 `json:"native_go_gflops"`
	// NativeOverNativeGo is what the assembly micro-kernel buys over the
	// pure-Go one inside the same blocked driver.
	NativeOverNativeGo float64 `json:"native_over_native_go"`

	OpenBLASGFLOPS     *float64 `json:"openblas_gflops,omitempty"`
	NativeOverOpenBLAS *float64 `json:"native_over_openblas,omitempty"`
}

func newBenchGemmCmd() *cobra.Command {
	var (
		m, n, k, threads, runs int
		transA, transB         bool
		jsonOut                bool
	)
	cmd := &cobra.Command{
		Use:   "gemm",
		Short: "Measure SGEMM GFLOP/s of the native backend against its baselines",
		Long: `Times C = A·B (float32, row-major) with the native backend, the same driver
with the pure-Go micro-kernel, and OpenBLAS when the binary was built with
-tags openblas. The backends alternate within each run, so all of them see
the same machine load; each reports its best run, and the ratios compare
them. Before timing, every backend's result is checked against the pure-Go
one within the float32 rounding bound.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct {
				name string
				v    int
			}{{"--m", m}, {"--n", n}, {"--k", k}, {"--runs", runs}} {
				if f.v < 1 {
					return fmt.Errorf("%s: want a positive integer, got %d", f.name, f.v)
				}
			}
			if threads < 0 {
				return fmt.Errorf("--threads: want 0 (all cores) or a positive integer, got %d", threads)
			}
			defer kernels.SetThreads(kernels.SetThreads(threads))
			res, err := benchGemm(cmd.ErrOrStderr(), !jsonOut, m, n, k, transA, transB, runs)
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return printGemmBench(cmd.OutOrStdout(), res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&m, "m", 1024, "rows of C")
	f.IntVar(&n, "n", 1024, "columns of C")
	f.IntVar(&k, "k", 1024, "inner dimension")
	f.BoolVar(&transA, "trans-a", false, "multiply by Aᵀ (A stored k×m)")
	f.BoolVar(&transB, "trans-b", false, "multiply by Bᵀ (B stored n×k)")
	f.IntVar(&threads, "threads", 0, "threads per SGEMM call (0: GOMAXPROCS)")
	f.IntVar(&runs, "runs", 5, "timed runs per backend; the best counts")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func benchGemm(stderr io.Writer, progress bool, m, n, k int, transA, transB bool, runs int) (*gemmBenchResult, error) {
	rng := rand.New(rand.NewPCG(uint64(m), uint64(n)<<32|uint64(k))) // benchmark data, not a secret
	a := make([]float32, m*k)
	b := make([]float32, k*n)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	backends := []kernels.Backend{kernels.Native(), kernels.NativeGo()}
	if ob := kernels.OpenBLAS(); ob != nil {
		backends = append(backends, ob)
	}
	if err := checkBackends(backends, transA, transB, m, n, k, a, lda, b, ldb); err != nil {
		return nil, err
	}

	var bar *progressbar.ProgressBar
	if f, ok := stderr.(*os.File); progress && ok && term.IsTerminal(int(f.Fd())) {
		bar = progressbar.NewOptions(runs*len(backends),
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(fmt.Sprintf("sgemm %d×%d×%d", m, n, k)),
			progressbar.OptionClearOnFinish())
		defer bar.Finish()
	}

	c := make([]float32, m*n)
	call := func(be kernels.Backend) {
		be.Sgemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, n)
	}
	// Each sample repeats the call until it lasts about 25ms, so that tiny
	// sizes are not timer noise; the repeat count comes from a warm-up.
	reps := make([]int, len(backends))
	for i, be := range backends {
		start := time.Now()
		call(be)
		d := time.Since(start)
		reps[i] = max(1, int(25*time.Millisecond/max(d, time.Microsecond)))
	}
	best := make([]time.Duration, len(backends))
	for r := 0; r < runs; r++ {
		for i, be := range backends {
			start := time.Now()
			for range reps[i] {
				call(be)
			}
			d := time.Since(start) / time.Duration(reps[i])
			if r == 0 || d < best[i] {
				best[i] = d
			}
			if bar != nil {
				bar.Add(1)
			}
		}
	}
	flops := 2 * float64(m) * float64(n) * float64(k)
	gflops := func(i int) float64 { return flops / best[i].Seconds() / 1e9 }
	res := &gemmBenchResult{
		M: m, N: n, K: k, TransA: transA, TransB: transB,
		Threads: kernels.Threads(), Runs: runs, Kernel: kernels.NativeKernel(),
		NativeGFLOPS:   gflops(0),
		NativeGoGFLOPS: gflops(1),
	}
	res.NativeOverNativeGo = res.NativeGFLOPS / res.NativeGoGFLOPS
	if len(backends) > 2 {
		g := gflops(2)
		r := res.NativeGFLOPS / g
		res.OpenBLASGFLOPS, res.NativeOverOpenBLAS = &g, &r
	}
	return res, nil
}

// checkBackends runs every backend once and compares its C with the
// pure-Go micro-kernel's, element by element, within the forward error
// bound of a k-term float32 dot product (Higham, "Accuracy and Stability of
// Numerical Algorithms", eq. (3.5)): |ĉ−c| ≤ 2·γ_k·Σ|a||b|, γ_k ≈ k·2⁻²⁴.
func checkBackends(backends []kernels.Backend, transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int) error {
	absA := make([]float32, len(a))
	absB := make([]float32, len(b))
	for i, v := range a {
		absA[i] = float32(math.Abs(float64(v)))
	}
	for i, v := range b {
		absB[i] = float32(math.Abs(float64(v)))
	}
	bound := make([]float32, m*n)
	kernels.NativeGo().Sgemm(transA, transB, m, n, k, 1, absA, lda, absB, ldb, 0, bound, n)
	want := make([]float32, m*n)
	kernels.NativeGo().Sgemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, want, n)
	got := make([]float32, m*n)
	tol := 2 * 2 * float64(k+3) * 0x1p-24
	for _, be := range backends {
		be.Sgemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, got, n)
		for i := range got {
			if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= tol*float64(bound[i])*1.01+1e-30) {
				return fmt.Errorf("backend %s: C[%d][%d] = %v, pure-Go kernel gives %v: beyond the rounding bound", be.Name(), i/n, i%n, got[i], want[i])
			}
		}
	}
	return nil
}

func printGemmBench(w io.Writer, r *gemmBenchResult) error {
	op := func(t bool, s string) string {
		if t {
			return s + "ᵀ"
		}
		return s
	}
	fmt.Fprintf(w, "sgemm C = %s·%s, %d×%d×%d, %d threads, best of %d runs\n", op(r.TransA, "A"), op(r.TransB, "B"), r.M, r.N, r.K, r.Threads, r.Runs)
	fmt.Fprintf(w, "kernel: %s\n", r.Kernel)
	fmt.Fprintf(w, "  native     %8.2f GFLOP/s\n", r.NativeGFLOPS)
	fmt.Fprintf(w, "  native-go  %8.2f GFLOP/s   native/native-go = %.2f\n", r.NativeGoGFLOPS, r.NativeOverNativeGo)
	if r.OpenBLASGFLOPS != nil {
		fmt.Fprintf(w, "  openblas   %8.2f GFLOP/s   native/openblas  = %.2f\n", *r.OpenBLASGFLOPS, *r.NativeOverOpenBLAS)
	}
	return nil
}
