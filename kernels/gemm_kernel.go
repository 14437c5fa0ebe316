package kernels

// kernelGo is the pure-Go micro-kernel (see microKernel). Reference loop:
//
//	for r := 0; r < gemmMR; r++ {
//		for j := 0; j < gemmNR; j++ {
//			var s float32
//			for p := 0; p < kc; p++ {
//				s += a[p*gemmMR+r] * b[p*gemmNR+j]
//			}
//			c[r*ldc+j] = alpha*s + beta*c[r*ldc+j] // C not read when beta == 0
//		}
//	}
func kernelGo(kc int, alpha float32, a, b []float32, beta float32, c []float32, ldc int) {
	kernelGoStrided(kc, alpha, a, 1, gemmMR, b, gemmNR, beta, c, ldc)
}

// kernelGoStrided is the pure-Go stridedKernel: kernelGo with Â(r, p) =
// a[r*rsA+p*csA] and B̂(p, j) = b[p*csB+j]. It walks the tile in 2×4
// blocks whose eight sums stay in registers through the k loop.
func kernelGoStrided(kc int, alpha float32, a []float32, rsA, csA int, b []float32, csB int, beta float32, c []float32, ldc int) {
	_ = a[(gemmMR-1)*rsA+(kc-1)*csA]
	_ = b[(kc-1)*csB+gemmNR-1]
	_ = c[(gemmMR-1)*ldc+gemmNR-1]
	for r0 := 0; r0 < gemmMR; r0 += 2 {
		for j0 := 0; j0 < gemmNR; j0 += 4 {
			var c00, c01, c02, c03, c10, c11, c12, c13 float32
			ia0, ia1, ib := r0*rsA, (r0+1)*rsA, j0
			for range kc {
				a0, a1 := a[ia0], a[ia1]
				bp := b[ib : ib+4 : ib+4]
				b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
				c00 += a0 * b0
				c01 += a0 * b1
				c02 += a0 * b2
				c03 += a0 * b3
				c10 += a1 * b0
				c11 += a1 * b1
				c12 += a1 * b2
				c13 += a1 * b3
				ia0 += csA
				ia1 += csA
				ib += csB
			}
			storeRow4(c[r0*ldc+j0:], alpha, beta, c00, c01, c02, c03)
			storeRow4(c[(r0+1)*ldc+j0:], alpha, beta, c10, c11, c12, c13)
		}
	}
}

// storeRow4 sets c[0:4] = alpha*s + beta*c, not reading c when beta == 0.
func storeRow4(c []float32, alpha, beta, s0, s1, s2, s3 float32) {
	r := (*[4]float32)(c)
	if beta == 0 {
		r[0], r[1], r[2], r[3] = alpha*s0, alpha*s1, alpha*s2, alpha*s3
		return
	}
	r[0] = alpha*s0 + beta*r[0]
	r[1] = alpha*s1 + beta*r[1]
	r[2] = alpha*s2 + beta*r[2]
	r[3] = alpha*s3 + beta*r[3]
}

// dotGo returns Σ x[i]·y[i] over len(x) elements, with four partial sums
// (i mod 4) added at the end. y must be at least as long as x.
func dotGo(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}
