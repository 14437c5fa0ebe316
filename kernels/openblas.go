//go:build openblas

package kernels

import (
	"sync"

	"github.com/fedtune/fedtune/kernels/openblas"
)

// OpenBLAS returns the backend that calls OpenBLAS's cblas_sgemm (package
// [openblas], cgo, Debian package libopenblas-dev); this binary was built
// with the build tag openblas. It runs on [Threads] threads; OpenBLAS's
// thread count is process-wide, so it is set before a call whenever
// Threads changed.
func OpenBLAS() Backend { return openblasBackend{} }

type openblasBackend struct{}

func (openblasBackend) Name() string { return "openblas" }

var (
	openblasMu      sync.Mutex
	openblasThreads int
)

func (openblasBackend) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	t := Threads()
	openblasMu.Lock()
	if t != openblasThreads {
		openblas.SetThreads(t)
		openblasThreads = t
	}
	openblasMu.Unlock()
	openblas.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
