package kernels

import (
	"math"
	"unsafe"
)

// Float is the element type of the generic transformer operations: float32
// for training and inference, float64 for reference computations and
// gradient checks. The same code runs in both precisions.
type Float interface{ float32 | float64 }

// Gemm is [Sgemm] for float32 and [Dgemm] for float64: C = alpha*op(A)*op(B)
// + beta*C, row-major, with the same contract. It lets code written over
// [Float] reach the fast float32 path.
func Gemm[F Float](transA, transB bool, m, n, k int, alpha F, a []F, lda int, b []F, ldb int, beta F, c []F, ldc int) {
	var zero F
	switch any(zero).(type) {
	case float32:
		Sgemm(transA, transB, m, n, k, float32(alpha), opsAs[float32](a), lda, opsAs[float32](b), ldb, float32(beta), opsAs[float32](c), ldc)
	case float64:
		Dgemm(transA, transB, m, n, k, float64(alpha), opsAs[float64](a), lda, opsAs[float64](b), ldb, float64(beta), opsAs[float64](c), ldc)
	}
}

// opsAs reinterprets s as a slice of T; F and T are the same type at every
// call site (selected by a type switch), so this is a no-op view.
func opsAs[T, F Float](s []F) []T {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&s[0])), len(s))
}

// expF is e^x in the precision of F: math.Exp for float64, [expf32] for
// float32. unsafe.Sizeof is a constant in each instantiation, so the branch
// is resolved at compile time.
func expF[F Float](x F) F {
	if unsafe.Sizeof(x) == 4 {
		return F(expf32(float32(x)))
	}
	return F(math.Exp(float64(x)))
}

// expf32 is e^x in float32 arithmetic, after Cephes expf (Moshier 1992):
// x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 minimax polynomial,
// scaled by 2^n. Relative error below 2⁻²² on the range where the result is
// a normal float32; results below the normal range flush to 0.
func expf32(x float32) float32 {
	if !(x >= -87.33654) {
		if x != x {
			return x // NaN
		}
		return 0
	}
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	// n = round(x/ln2): adding 1.5·2²³ leaves the rounded integer in the
	// low mantissa bits.
	t := x*1.44269504088896341 + 12582912
	n := int32(math.Float32bits(t)) - 0x4B400000
	fn := t - 12582912
	r := x - fn*0.693359375  // ln2 split in two parts
	r -= fn * -2.12194440e-4 // for an exact n·ln2
	z := r * r
	y := ((((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r+5.0000001201e-1)*z + r) + 1
	if n > 127 { // 2^128 is not a float32: scale in two steps
		return y * 2 * math.Float32frombits(uint32(n+126)<<23)
	}
	return y * math.Float32frombits(uint32(n+127)<<23) // 2^n
}

// sigmoid is 1/(1+e^−x) in the precision of F.
func sigmoid[F Float](x F) F { return 1 / (1 + expF(-x)) }

// SiLU computes dst = x·σ(x) elementwise (Elfwing et al. 2018, eq. 1;
// Hendrycks & Gimpel's GELU paper calls it SiLU). Reference loop:
//
//	for i := range x {
//		dst[i] = x[i] / (1 + exp(-x[i]))
//	}
//
// dst may alias x.
func SiLU[F Float](dst, x []F) {
	if len(dst) != len(x) {
		panic("kernels: SiLU length mismatch")
	}
	for i, v := range x {
		dst[i] = v * sigmoid(v)
	}
}

// SiLUBackward computes dx = dy·dSiLU/dx, with
// d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))). Reference loop:
//
//	for i := range x {
//		s := 1 / (1 + exp(-x[i]))
//		dx[i] = dy[i] * s * (1 + x[i]*(1-s))
//	}
//
// dx may alias dy.
func SiLUBackward[F Float](dx, dy, x []F) {
	if len(dx) != len(x) || len(dy) != len(x) {
		panic("kernels: SiLUBackward length mismatch")
	}
	for i, v := range x {
		s := sigmoid(v)
		dx[i] = dy[i] * s * (1 + v*(1-s))
	}
}

// SwiGLU computes the gated feed-forward activation of Llama
// (Shazeer 2020, "GLU Variants Improve Transformer", eq. 6 with Swish₁):
// dst = SiLU(g) ⊙ u. Reference loop:
//
//	for i := range g {
//		dst[i] = g[i] / (1 + exp(-g[i])) * u[i]
//	}
//
// dst may alias g or u.
func SwiGLU[F Float](dst, g, u []F) {
	if len(dst) != len(g) || len(u) != len(g) {
		panic("kernels: SwiGLU length mismatch")
	}
	for i, v := range g {
		dst[i] = v * sigmoid(v) * u[i]
	}
}

// SwiGLUBackward computes the gradients of dst = SiLU(g) ⊙ u. Reference loop:
//
//	for i := range g {
//		s := 1 / (1 + exp(-g[i]))
//		dg[i] = dy[i] * u[i] * s * (1 + g[i]*(1-s))
//		du[i] = dy[i] * g[i] * s
//	}
//
// dg and du are overwritten; dg may alias g and du may alias u (each input
// element is read before its output is written).
func SwiGLUBackward[F Float](dg, du, dy, g, u []F) {
	n := len(g)
	if len(dg) != n || len(du) != n || len(dy) != n || len(u) != n {
		panic("kernels: SwiGLUBackward length mismatch")
	}
	for i := 0; i < n; i++ {
		gv, uv, dyv := g[i], u[i], dy[i]
		s := sigmoid(gv)
		dg[i] = dyv * uv * s * (1 + gv*(1-s))
		du[i] = dyv * gv * s
	}
}

// Softmax computes a numerically stable softmax of each of the rows of x
// (rows×n, row-major). Reference loop:
//
//	for r := 0; r < rows; r++ {
//		m := max(x[r*n : r*n+n])
//		var z float64
//		for j := 0; j < n; j++ {
//			z += exp(x[r*n+j] - m)
//		}
//		for j := 0; j < n; j++ {
//			dst[r*n+j] = exp(x[r*n+j]-m) / z
//		}
//	}
//
// dst may alias x.
func Softmax[F Float](dst, x []F, rows, n int) {
	if len(x) < rows*n || len(dst) < rows*n {
		panic("kernels: Softmax slice too short")
	}
	for r := 0; r < rows; r++ {
		softmaxRow(dst[r*n:r*n+n], x[r*n:r*n+n])
	}
}

func softmaxRow[F Float](dst, x []F) {
	if len(x) == 0 {
		return
	}
	m := x[0]
	for _, v := range x[1:] {
		if v > m {
			m = v
		}
	}
	var z float64
	for j, v := range x {
		e := expF(v - m)
		dst[j] = e
		z += float64(e)
	}
	inv := 1 / z
	for j := range dst {
		dst[j] = F(float64(dst[j]) * inv)
	}
}

// SoftmaxBackward computes dx from dy for y = Softmax(x):
// dx = y ⊙ (dy − ⟨dy, y⟩) per row. Reference loop:
//
//	for r := 0; r < rows; r++ {
//		var s float64
//		for j := 0; j < n; j++ {
//			s += dy[r*n+j] * y[r*n+j]
//		}
//		for j := 0; j < n; j++ {
//			dx[r*n+j] = y[r*n+j] * (dy[r*n+j] - s)
//		}
//	}
//
// dx may alias dy.
func SoftmaxBackward[F Float](dx, dy, y []F, rows, n int) {
	if len(dx) < rows*n || len(dy) < rows*n || len(y) < rows*n {
		panic("kernels: SoftmaxBackward slice too short")
	}
	for r := 0; r < rows; r++ {
		softmaxBackRow(dx[r*n:r*n+n], dy[r*n:r*n+n], y[r*n:r*n+n])
	}
}

func softmaxBackRow[F Float](dx, dy, y []F) {
	var s float64
	for j := range y {
		s += float64(dy[j]) * float64(y[j])
	}
	for j := range y {
		dx[j] = F(float64(y[j]) * (float64(dy[j]) - s))
	}
}

// Embedding gathers rows of table (vocab×dim) into dst (len(ids)×dim).
// Reference loop:
//
//	for t, id := range ids {
//		copy(dst[t*dim:(t+1)*dim], table[id*dim:(id+1)*dim])
//	}
//
// An id outside [0, len(table)/dim) panics; callers validate token ids.
func Embedding[F Float](dst, table []F, ids []int, dim int) {
	if len(dst) < len(ids)*dim {
		panic("kernels: Embedding dst too short")
	}
	vocab := len(table) / dim
	for t, id := range ids {
		if id < 0 || id >= vocab {
			panic("kernels: Embedding id out of range")
		}
		copy(dst[t*dim:(t+1)*dim], table[id*dim:(id+1)*dim])
	}
}

// EmbeddingBackward scatter-adds dy (len(ids)×dim) into the table gradient.
// Reference loop:
//
//	for t, id := range ids {
//		for j := 0; j < dim; j++ {
//			dtable[id*dim+j] += dy[t*dim+j]
//		}
//	}
func EmbeddingBackward[F Float](dtable, dy []F, ids []int, dim int) {
	if len(dy) < len(ids)*dim {
		panic("kernels: EmbeddingBackward dy too short")
	}
	vocab := len(dtable) / dim
	for t, id := range ids {
		if id < 0 || id >= vocab {
			panic("kernels: EmbeddingBackward id out of range")
		}
		row := dtable[id*dim : (id+1)*dim]
		for j, v := range dy[t*dim : (t+1)*dim] {
			row[j] += v
		}
	}
}
