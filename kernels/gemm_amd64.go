//go:build !purego

package kernels

import "golang.org/x/sys/cpu"

// hasAVX2FMA reports whether the assembly micro-kernel can run: the CPU has
// AVX2 and FMA3 and the OS saves the YMM registers (x/sys/cpu checks
// XGETBV for the latter).
var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// bestKernel is the micro-kernel of the native backend.
var bestKernel microKernel = pickKernel()

func pickKernel() microKernel {
	if hasAVX2FMA {
		return kernelAVX2
	}
	return kernelGo
}

// bestStrided is the strided micro-kernel of the native backend.
var bestStrided stridedKernel = pickStrided()

func pickStrided() stridedKernel {
	if hasAVX2FMA {
		return kernelAVX2Strided
	}
	return kernelGoStrided
}

// nativeKernelName describes bestKernel.
var nativeKernelName = func() string {
	if hasAVX2FMA {
		return "avx2+fma 6x16 (amd64 assembly)"
	}
	return "go 6x16 (CPU lacks AVX2/FMA)"
}()

// kernelAVX2 is the microKernel in AVX2+FMA assembly: the 6×16 tile of C is
// held in twelve YMM registers, each step broadcasts one packed element of
// A and multiplies it into two YMM loads of packed B with VFMADD231PS.
func kernelAVX2(kc int, alpha float32, a, b []float32, beta float32, c []float32, ldc int) {
	_ = a[kc*gemmMR-1]
	_ = b[kc*gemmNR-1]
	_ = c[(gemmMR-1)*ldc+gemmNR-1]
	sgemmKernel6x16(kc, alpha, &a[0], &b[0], beta, &c[0], ldc)
}

//go:noescape
func sgemmKernel6x16(kc int, alpha float32, a, b *float32, beta float32, c *float32, ldc int)

// kernelAVX2Strided is the stridedKernel in AVX2+FMA assembly, the same
// arithmetic as kernelAVX2 with A and B read in place.
func kernelAVX2Strided(kc int, alpha float32, a []float32, rsA, csA int, b []float32, csB int, beta float32, c []float32, ldc int) {
	_ = a[(gemmMR-1)*rsA+(kc-1)*csA]
	_ = b[(kc-1)*csB+gemmNR-1]
	_ = c[(gemmMR-1)*ldc+gemmNR-1]
	sgemmKernel6x16Strided(kc, alpha, &a[0], rsA, csA, &b[0], csB, beta, &c[0], ldc)
}

//go:noescape
func sgemmKernel6x16Strided(kc int, alpha float32, a *float32, rsA, csA int, b *float32, csB int, beta float32, c *float32, ldc int)

// bestDot is the dot product of the native backend's matrix-vector path.
var bestDot = func() func(x, y []float32) float32 {
	if hasAVX2FMA {
		return dotAVX2
	}
	return dotGo
}()

// dotAVX2 is dotGo in AVX2+FMA assembly (a different summation order).
func dotAVX2(x, y []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	_ = y[len(x)-1]
	return sdotAVX2(len(x), &x[0], &y[0])
}

//go:noescape
func sdotAVX2(n int, x, y *float32) float32
