package kernels

import (
	"runtime"
	"sync/atomic"
)

// A Backend multiplies float32 matrices. [Sgemm] validates its arguments
// and handles the degenerate cases (m, n or k zero, alpha zero) before it
// calls the current backend, so an implementation may assume m, n, k ≥ 1,
// alpha ≠ 0 and slices long enough for the given leading dimensions.
type Backend interface {
	// Name identifies the backend in benchmark output, e.g. "native".
	Name() string
	// Sgemm has the contract of the package-level [Sgemm]: C is row-major,
	// beta == 0 never reads C, and elements outside the m×n window of C are
	// never written. It must be safe for concurrent use on distinct C.
	Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

// backendBox lets atomic.Pointer hold an interface value.
type backendBox struct{ b Backend }

var (
	current atomic.Pointer[backendBox]
	// threads is the configured thread count; 0 means runtime.GOMAXPROCS(0).
	threads atomic.Int64
)

func init() {
	current.Store(&backendBox{nativeBackend})
}

// SetBackend makes b the backend of [Sgemm] and returns the previous one.
// A nil b restores [Native]. It is safe to call concurrently with Sgemm;
// calls already running finish on the backend they started with.
func SetBackend(b Backend) (previous Backend) {
	if b == nil {
		b = nativeBackend
	}
	return current.Swap(&backendBox{b}).b
}

// CurrentBackend returns the backend [Sgemm] dispatches to.
func CurrentBackend() Backend {
	return current.Load().b
}

// SetThreads sets how many threads one Sgemm call may use and returns the
// previous setting. n ≤ 0 means runtime.GOMAXPROCS(0), read at each call;
// that is the default.
func SetThreads(n int) (previous int) {
	if n < 0 {
		n = 0
	}
	return int(threads.Swap(int64(n)))
}

// Threads returns the number of threads one Sgemm call may use: the value
// given to [SetThreads], or runtime.GOMAXPROCS(0) when none was.
func Threads() int {
	if n := threads.Load(); n > 0 {
		return int(n)
	}
	return runtime.GOMAXPROCS(0)
}
