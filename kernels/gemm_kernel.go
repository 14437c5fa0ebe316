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
	var acc [gemmMR][gemmNR]float32
	a = a[:kc*gemmMR]
	b = b[:kc*gemmNR]
	for p := 0; p < kc; p++ {
		ap := (*[gemmMR]float32)(a[p*gemmMR:])
		bp := (*[gemmNR]float32)(b[p*gemmNR:])
		for r := range gemmMR {
			x := ap[r]
			row := &acc[r]
			for j := range gemmNR {
				row[j] += x * bp[j]
			}
		}
	}
	_ = c[(gemmMR-1)*ldc+gemmNR-1]
	for r := range gemmMR {
		row := (*[gemmNR]float32)(c[r*ldc:])
		if beta == 0 {
			for j := range gemmNR {
				row[j] = alpha * acc[r][j]
			}
			continue
		}
		for j := range gemmNR {
			row[j] = alpha*acc[r][j] + beta*row[j]
		}
	}
}

// kernelGoStrided is the pure-Go stridedKernel: kernelGo with Â(r, p) =
// a[r*rsA+p*csA] and B̂(p, j) = b[p*csB+j].
func kernelGoStrided(kc int, alpha float32, a []float32, rsA, csA int, b []float32, csB int, beta float32, c []float32, ldc int) {
	var acc [gemmMR][gemmNR]float32
	_ = a[(gemmMR-1)*rsA+(kc-1)*csA]
	_ = b[(kc-1)*csB+gemmNR-1]
	for p := 0; p < kc; p++ {
		bp := (*[gemmNR]float32)(b[p*csB:])
		for r := range gemmMR {
			x := a[r*rsA+p*csA]
			row := &acc[r]
			for j := range gemmNR {
				row[j] += x * bp[j]
			}
		}
	}
	_ = c[(gemmMR-1)*ldc+gemmNR-1]
	for r := range gemmMR {
		row := (*[gemmNR]float32)(c[r*ldc:])
		if beta == 0 {
			for j := range gemmNR {
				row[j] = alpha * acc[r][j]
			}
			continue
		}
		for j := range gemmNR {
			row[j] = alpha*acc[r][j] + beta*row[j]
		}
	}
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
