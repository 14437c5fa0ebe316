// Package kernels holds the float32 tensor math of the training engine:
// matrix multiplication and the transformer operations with their backward
// passes. It does no I/O. All matrices are dense and row-major; the
// destination comes first and the caller allocates. Mismatched lengths are
// programmer errors and panic.
//
// # Matrix multiplication
//
// [Sgemm] is the one entry point the rest of the engine uses. It dispatches
// to the current [Backend], by default [Native]: a cache-blocked, packed
// SGEMM in the style of BLIS (Van Zee and van de Geijn, "BLIS: A Framework
// for Rapidly Instantiating BLAS Functionality", ACM TOMS 41(3), 2015) with
// an AVX2+FMA assembly micro-kernel on amd64 and a pure-Go micro-kernel
// elsewhere or under the build tag purego. With the build tag openblas,
// [OpenBLAS] returns a backend that calls cblas_sgemm; it is the speed
// baseline of `fedtune bench gemm`.
//
// The native backend splits C into blocks of whole rows or columns, never
// the k dimension, so every element of C is summed in the same order
// whatever the thread count: for a given shape, results are bit-identical
// for 1 and for N threads. They are not bit-identical across backends,
// between the assembly and the pure-Go micro-kernel (different
// fused-multiply-add use), or between shapes (a 1×n product takes a
// matrix-vector path, so its row may differ in the last bits from the
// same row inside an m×n product).
package kernels

import "fmt"

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where
// op(X) is X or Xᵀ as transA/transB say, op(A) is m×k, op(B) is k×n and C is
// m×n. lda, ldb and ldc are the row strides. Reference loop:
//
//	for i := 0; i < m; i++ {
//		for j := 0; j < n; j++ {
//			var s float32
//			for p := 0; p < k; p++ {
//				s += opA(i, p) * opB(p, j)
//			}
//			c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
//		}
//	}
//
// With beta == 0, C is not read (NaNs in C do not propagate). With
// alpha == 0 or k == 0, A and B are not read and C becomes beta*C, as in
// BLAS. Elements of C outside the m×n window (columns n..ldc-1 of a row)
// are never touched.
//
// Sgemm panics if a dimension is negative, a leading dimension is smaller
// than the row width it strides over, or a slice is too short. It is safe
// for concurrent use on distinct C.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm("Sgemm", transA, transB, m, n, k, lda, len(a), ldb, len(b), ldc, len(c))
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	CurrentBackend().Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkGemm panics with a precise message when the arguments of a GEMM
// call do not describe matrices that fit in the given slices.
func checkGemm(fn string, transA, transB bool, m, n, k, lda, la, ldb, lb, ldc, lc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: %s: negative dimension m=%d n=%d k=%d", fn, m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMatrix(fn, "a", "lda", ar, ac, lda, la)
	checkMatrix(fn, "b", "ldb", br, bc, ldb, lb)
	checkMatrix(fn, "c", "ldc", m, n, ldc, lc)
}

// checkMatrix checks one rows×cols row-major matrix with stride ld stored in
// a slice of length l.
func checkMatrix(fn, name, ldName string, rows, cols, ld, l int) {
	if ld < cols || ld < 0 {
		panic(fmt.Sprintf("kernels: %s: %s=%d, need at least %d for a %d×%d matrix %s", fn, ldName, ld, cols, rows, cols, name))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; l < need {
		panic(fmt.Sprintf("kernels: %s: len(%s)=%d, need at least %d for a %d×%d matrix with %s=%d", fn, name, l, need, rows, cols, ldName, ld))
	}
}

// scaleC sets C = beta*C over the m×n window, without reading C when
// beta == 0.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// sgemmRef is the reference loop of Sgemm's doc comment, used for small
// problems and as the oracle of the tests.
func sgemmRef(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				var x, y float32
				if transA {
					x = a[p*lda+i]
				} else {
					x = a[i*lda+p]
				}
				if transB {
					y = b[j*ldb+p]
				} else {
					y = b[p*ldb+j]
				}
				s += x * y
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}

// Dgemm is Sgemm in float64, used for reference computations and gradient
// checks. Same contract and reference loop as Sgemm. It is single-threaded
// and evaluates the reference loop exactly: every element is summed over p
// in increasing order and then scaled, only the loops are reordered for
// contiguous access, so results are bit-identical to the loop as written.
func Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	checkGemm("Dgemm", transA, transB, m, n, k, lda, len(a), ldb, len(b), ldc, len(c))
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			if beta == 0 {
				clear(row)
				continue
			}
			for j := range row {
				row[j] *= beta
			}
		}
		return
	}
	var arow, acc []float64
	if transA {
		arow = make([]float64, k)
	}
	if !transB {
		acc = make([]float64, n)
	}
	for i := 0; i < m; i++ {
		// arow = row i of op(A).
		if transA {
			for p := range arow {
				arow[p] = a[p*lda+i]
			}
		} else {
			arow = a[i*lda : i*lda+k]
		}
		crow := c[i*ldc : i*ldc+n]
		if transB {
			// op(B)[p][j] = b[j*ldb+p]: column j of op(B) is a row of b.
			for j := range crow {
				brow := b[j*ldb : j*ldb+k]
				var s float64
				for p, x := range arow {
					s += x * brow[p]
				}
				if beta == 0 {
					crow[j] = alpha * s
				} else {
					crow[j] = alpha*s + beta*crow[j]
				}
			}
			continue
		}
		// op(B)[p][j] = b[p*ldb+j]: accumulate the n sums of row i side by
		// side, each still over p in increasing order.
		clear(acc)
		for p, x := range arow {
			brow := b[p*ldb : p*ldb+n]
			for j, y := range brow {
				acc[j] += x * y
			}
		}
		for j, s := range acc {
			if beta == 0 {
				crow[j] = alpha * s
			} else {
				crow[j] = alpha*s + beta*crow[j]
			}
		}
	}
}
