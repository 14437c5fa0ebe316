//go:build openblas

package openblas

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import "unsafe"

// SetThreads sets the size of OpenBLAS's thread pool
// (openblas_set_num_threads). The setting is process-wide.
func SetThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

// Sgemm calls cblas_sgemm in row-major order: C = alpha*op(A)*op(B) +
// beta*C with op(A) m×k, op(B) k×n. The caller guarantees m, n, k ≥ 1,
// leading dimensions at least the row widths, and slices that hold the
// matrices (kernels.Sgemm checks all of this before it gets here).
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans), C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans)
	if transA {
		ta = C.CblasTrans
	}
	if transB {
		tb = C.CblasTrans
	}
	C.cblas_sgemm(C.CblasRowMajor, ta, tb,
		C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(unsafe.Pointer(&a[0])), C.blasint(lda),
		(*C.float)(unsafe.Pointer(&b[0])), C.blasint(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.blasint(ldc))
}
