package kernels

import (
	"math"
	"testing"
)

// FuzzSgemm drives every backend with fuzzer-chosen shapes, transposes,
// leading dimensions, alpha and beta. Entries are multiples of 1/16 in
// [−8, 8) and k ≤ 200, so every partial sum is exact in float32 whatever
// the summation order or fused multiply-adds: each backend must match the
// int64 evaluation of the reference loop bit for bit, and leave the
// padding columns untouched.
func FuzzSgemm(f *testing.F) {
	f.Add([]byte{0, 7, 9, 13, 0, 0, 0, 1, 2, 3, 4, 5})
	f.Add([]byte{3, 40, 37, 200, 1, 2, 3, 0xff, 0x80, 0x7f})
	f.Add([]byte{0x15, 25, 33, 17, 3, 0, 1, 9, 9, 9})
	f.Add([]byte{0x2a, 6, 16, 64, 0, 0, 0, 0x10, 0x20, 0x30, 0x40})
	f.Add([]byte{0x3f, 1, 40, 150, 2, 2, 2, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 8 {
			return
		}
		flags := data[0]
		transA, transB := flags&1 != 0, flags&2 != 0
		alpha := [4]float32{1, -2, 0.5, 2}[flags>>2&3]
		beta := [4]float32{0, 1, -1, 2}[flags>>4&3]
		m, n, k := 1+int(data[1])%40, 1+int(data[2])%40, 1+int(data[3])%200
		padA, padB, padC := int(data[4])%4, int(data[5])%4, int(data[6])%4
		rest := data[7:]
		val := func(i int) int64 { return int64(byte(int(rest[i%len(rest)])+i*37)) - 128 } // in 1/16ths

		ar, ac := m, k
		if transA {
			ar, ac = k, m
		}
		br, bc := k, n
		if transB {
			br, bc = n, k
		}
		lda, ldb, ldc := ac+padA, bc+padB, n+padC
		ai := make([]int64, ar*ac)
		bi := make([]int64, br*bc)
		ci := make([]int64, m*n)
		for i := range ai {
			ai[i] = val(i)
		}
		for i := range bi {
			bi[i] = val(len(ai) + i)
		}
		for i := range ci {
			ci[i] = val(len(ai) + len(bi) + i)
		}
		fill := func(rows, cols, ld int, v []int64) []float32 {
			s := make([]float32, (rows-1)*ld+cols)
			for i := range s {
				s[i] = sentinel
			}
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					s[r*ld+c] = float32(v[r*cols+c]) / 16
				}
			}
			return s
		}
		a := fill(ar, ac, lda, ai)
		b := fill(br, bc, ldb, bi)
		for _, be := range backends() {
			c := fill(m, n, ldc, ci)
			if beta == 0 {
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						c[i*ldc+j] = float32(math.NaN())
					}
				}
			}
			gemmVia(be)(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var s int64 // in 1/256ths
					for p := 0; p < k; p++ {
						var x, y int64
						if transA {
							x = ai[p*ac+i]
						} else {
							x = ai[i*ac+p]
						}
						if transB {
							y = bi[j*bc+p]
						} else {
							y = bi[p*bc+j]
						}
						s += x * y
					}
					want := float32(float64(alpha)*float64(s)/256 + float64(beta)*float64(ci[i*n+j])/16)
					if beta == 0 {
						want = float32(float64(alpha) * float64(s) / 256)
					}
					if got := c[i*ldc+j]; math.Float32bits(got) != math.Float32bits(want) && !(got == 0 && want == 0) {
						t.Fatalf("%s tA=%v tB=%v %dx%dx%d alpha=%v beta=%v: C[%d][%d] = %v, want %v", be.Name(), transA, transB, m, n, k, alpha, beta, i, j, got, want)
					}
				}
				for j := n; j < ldc && i < m-1; j++ {
					if math.Float32bits(c[i*ldc+j]) != math.Float32bits(sentinel) {
						t.Fatalf("%s: padding C[%d][%d] overwritten with %v", be.Name(), i, j, c[i*ldc+j])
					}
				}
			}
		}
	})
}
