package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/kernels"
)

func runBenchGemm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newBenchGemmCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestBenchGemmJSON(t *testing.T) {
	before := kernels.Threads()
	out, err := runBenchGemm(t, "--m", "40", "--n", "33", "--k", "70", "--threads", "2", "--runs", "2", "--trans-b", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	for key, want := range map[string]float64{"m": 40, "n": 33, "k": 70, "threads": 2, "runs": 2} {
		if got, _ := res[key].(float64); got != want {
			t.Errorf("%s = %v, want %v", key, res[key], want)
		}
	}
	if res["trans_b"] != true || res["trans_a"] != false {
		t.Errorf("trans_a/trans_b = %v/%v, want false/true", res["trans_a"], res["trans_b"])
	}
	for _, key := range []string{"native_gflops", "native_go_gflops", "native_over_native_go"} {
		if v, _ := res[key].(float64); !(v > 0) {
			t.Errorf("%s = %v, want a positive number", key, res[key])
		}
	}
	_, hasOB := res["openblas_gflops"]
	_, hasRatio := res["native_over_openblas"]
	if want := kernels.OpenBLAS() != nil; hasOB != want || hasRatio != want {
		t.Errorf("openblas fields present = %v/%v, want %v (built with openblas: %v)", hasOB, hasRatio, want, want)
	}
	if kernels.Threads() != before {
		t.Errorf("the command left Threads() = %d, was %d", kernels.Threads(), before)
	}
}

func TestBenchGemmText(t *testing.T) {
	out, err := runBenchGemm(t, "--m", "17", "--n", "9", "--k", "300", "--runs", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"17×9×300", "native ", "GFLOP/s", kernels.NativeKernel()} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchGemmBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--m", "0"}, "--m: want a positive integer, got 0"},
		{[]string{"--k", "-3"}, "--k: want a positive integer, got -3"},
		{[]string{"--runs", "0"}, "--runs: want a positive integer"},
		{[]string{"--threads", "-1"}, "--threads: want 0 (all cores) or a positive integer, got -1"},
		{[]string{"extra"}, "unknown command"},
	} {
		_, err := runBenchGemm(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// offByOne is a backend that gets one element wrong: checkBackends must
// catch it before anything is timed.
type offByOne struct{}

func (offByOne) Name() string { return "off-by-one" }

func (offByOne) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	kernels.Native().Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	c[2*ldc+3] += 0.5
}

func TestCheckBackendsCatchesWrongResult(t *testing.T) {
	m, n, k := 8, 8, 64
	a := make([]float32, m*k)
	b := make([]float32, k*n)
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	for i := range b {
		b[i] = float32(i%5) - 2
	}
	if err := checkBackends([]kernels.Backend{kernels.Native()}, false, false, m, n, k, a, k, b, n); err != nil {
		t.Fatalf("native backend rejected: %v", err)
	}
	err := checkBackends([]kernels.Backend{kernels.Native(), offByOne{}}, false, false, m, n, k, a, k, b, n)
	if err == nil || !strings.Contains(err.Error(), "backend off-by-one: C[2][3]") {
		t.Fatalf("error %v, want one naming backend off-by-one and C[2][3]", err)
	}
}
