package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// fdStep is the central-difference step for float64 gradient checks: the
// truncation error is O(h²)≈1e-10 and the rounding error O(ε/h)≈1e-11.
const fdStep = 1e-5

// gradCheck compares analytic gradients with central finite differences of
// f at x, perturbing every element of x. It fails when an element's relative
// error |a−n|/max(|a|,|n|,floor) exceeds 1e-6.
func gradCheck(t *testing.T, name string, x []float64, analytic []float64, f func() float64) {
	t.Helper()
	if len(x) != len(analytic) {
		t.Fatalf("%s: %d parameters, %d gradients", name, len(x), len(analytic))
	}
	worst := 0.0
	for i := range x {
		orig := x[i]
		x[i] = orig + fdStep
		fp := f()
		x[i] = orig - fdStep
		fm := f()
		x[i] = orig
		num := (fp - fm) / (2 * fdStep)
		e := relErr(analytic[i], num)
		worst = math.Max(worst, e)
		if e > 1e-6 {
			t.Errorf("%s: d/dx[%d]: analytic %.12g, numeric %.12g (rel err %.3g)", name, i, analytic[i], num, e)
			return
		}
	}
	t.Logf("%s: %d gradients, worst relative error %.3g", name, len(x), worst)
}

func relErr(a, b float64) float64 {
	d := math.Abs(a - b)
	s := math.Max(math.Max(math.Abs(a), math.Abs(b)), 1e-7)
	return d / s
}

func randVec(r *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = scale * (2*r.Float64() - 1)
	}
	return v
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func TestSiLUGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randVec(r, 17, 4)
	c := randVec(r, 17, 1)
	y := make([]float64, 17)
	f := func() float64 { SiLU(y, x); return dot(c, y) }
	dx := make([]float64, 17)
	SiLUBackward(dx, c, x)
	gradCheck(t, "SiLU", x, dx, f)
}

func TestSwiGLUGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 23
	g, u, c := randVec(r, n, 4), randVec(r, n, 2), randVec(r, n, 1)
	y := make([]float64, n)
	f := func() float64 { SwiGLU(y, g, u); return dot(c, y) }
	dg, du := make([]float64, n), make([]float64, n)
	SwiGLUBackward(dg, du, c, g, u)
	gradCheck(t, "SwiGLU/g", g, dg, f)
	gradCheck(t, "SwiGLU/u", u, du, f)
}

func TestSoftmaxGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	rows, n := 3, 7
	x, c := randVec(r, rows*n, 3), randVec(r, rows*n, 1)
	y := make([]float64, rows*n)
	f := func() float64 { Softmax(y, x, rows, n); return dot(c, y) }
	f()
	dx := make([]float64, rows*n)
	SoftmaxBackward(dx, c, y, rows, n)
	gradCheck(t, "Softmax", x, dx, f)
}

func TestRMSNormGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	rows, dim := 3, 10
	x, w, c := randVec(r, rows*dim, 2), randVec(r, dim, 1.5), randVec(r, rows*dim, 1)
	y, rstd := make([]float64, rows*dim), make([]float64, rows)
	const eps = 1e-5
	f := func() float64 { RMSNorm(y, rstd, x, w, rows, dim, eps); return dot(c, y) }
	f()
	dx, dw := make([]float64, rows*dim), make([]float64, dim)
	RMSNormBackward(dx, dw, c, x, w, rstd, rows, dim)
	gradCheck(t, "RMSNorm/x", x, dx, f)
	gradCheck(t, "RMSNorm/w", w, dw, f)
}

func TestRoPEGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	rows, heads, hd := 5, 3, 8
	inv, err := RopeInvFreq(hd, 10000, nil)
	if err != nil {
		t.Fatal(err)
	}
	cos, sin := make([]float64, rows*hd/2), make([]float64, rows*hd/2)
	RopeTable(cos, sin, inv, 3, rows)
	x, c := randVec(r, rows*heads*hd, 1), randVec(r, rows*heads*hd, 1)
	y := make([]float64, len(x))
	f := func() float64 { copy(y, x); RoPE(y, rows, heads, hd, cos, sin); return dot(c, y) }
	dx := append([]float64(nil), c...)
	RoPEBackward(dx, rows, heads, hd, cos, sin)
	gradCheck(t, "RoPE", x, dx, f)
}

func TestEmbeddingGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	vocab, dim := 6, 4
	ids := []int{3, 0, 3, 5, 1, 3}
	table, c := randVec(r, vocab*dim, 1), randVec(r, len(ids)*dim, 1)
	y := make([]float64, len(ids)*dim)
	f := func() float64 { Embedding(y, table, ids, dim); return dot(c, y) }
	dt := make([]float64, vocab*dim)
	EmbeddingBackward(dt, c, ids, dim)
	gradCheck(t, "Embedding", table, dt, f)
}

func TestCrossEntropyGrad(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	rows, vocab := 5, 9
	labels := []int{2, IgnoreIndex, 8, 0, 2}
	logits := randVec(r, rows*vocab, 4)
	dloss := randVec(r, rows, 1)
	loss, lse := make([]float64, rows), make([]float64, rows)
	f := func() float64 { CrossEntropy(loss, lse, logits, labels, rows, vocab); return dot(dloss, loss) }
	f()
	if loss[1] != 0 {
		t.Fatalf("ignored row has loss %v", loss[1])
	}
	d := make([]float64, rows*vocab)
	CrossEntropyBackward(d, logits, lse, labels, dloss, rows, vocab)
	gradCheck(t, "CrossEntropy", logits, d, f)

	// In place: dlogits aliasing logits gives the same gradient.
	f()
	CrossEntropyBackward(d, logits, lse, labels, dloss, rows, vocab)
	in := append([]float64(nil), logits...)
	CrossEntropyBackward(in, in, lse, labels, dloss, rows, vocab)
	for i := range in {
		if in[i] != d[i] {
			t.Fatalf("in-place backward differs at %d: %v vs %v", i, in[i], d[i])
		}
	}

	// The fused variant gives the same losses and gradient.
	fused := append([]float64(nil), logits...)
	floss := make([]float64, rows)
	CrossEntropySoftmax(floss, fused, labels, rows, vocab)
	CrossEntropySoftmaxBackward(fused, labels, dloss, rows, vocab)
	for r := range loss {
		if math.Abs(floss[r]-loss[r]) > 1e-14*math.Max(1, loss[r]) {
			t.Errorf("fused loss %d: %v vs %v", r, floss[r], loss[r])
		}
	}
	for i := range fused {
		if math.Abs(fused[i]-d[i]) > 1e-15 {
			t.Fatalf("fused gradient %d: %v vs %v", i, fused[i], d[i])
		}
	}
}

func TestAttentionGrad(t *testing.T) {
	for _, b := range []int{64, 2, 3} {
		t.Run(fmt.Sprintf("block%d", b), func(t *testing.T) {
			withAttnBlock(b, func() { testAttentionGrad(t) })
		})
	}
}

func testAttentionGrad(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		nq, nk, heads, kv, d int
	}{
		{"MHA", 5, 5, 2, 2, 4},
		{"GQA", 6, 6, 4, 2, 4},
		{"MQA", 4, 4, 3, 1, 2},
		{"GQA-cached", 3, 7, 4, 2, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(15, uint64(tc.nq*100+tc.heads)))
			qd, kd := tc.heads*tc.d, tc.kv*tc.d
			q, k, v := randVec(r, tc.nq*qd, 1), randVec(r, tc.nk*kd, 1), randVec(r, tc.nk*kd, 1)
			c := randVec(r, tc.nq*qd, 1)
			out := make([]float64, tc.nq*qd)
			scratch := make([]float64, 2*tc.nq*tc.nk)
			f := func() float64 {
				Attention(out, q, k, v, tc.nq, tc.nk, tc.heads, tc.kv, tc.d, scratch)
				return dot(c, out)
			}
			for _, keep := range []bool{false, true} {
				dq, dk, dv := make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
				for i := range dk { // must be overwritten, not accumulated
					dk[i], dv[i] = 7, 7
				}
				var probs []float64
				if keep {
					probs = make([]float64, tc.heads*tc.nq*tc.nk)
					Attention(out, q, k, v, tc.nq, tc.nk, tc.heads, tc.kv, tc.d, probs)
				}
				AttentionBackward(dq, dk, dv, c, q, k, v, tc.nq, tc.nk, tc.heads, tc.kv, tc.d, probs, scratch)
				gradCheck(t, "q", q, dq, f)
				gradCheck(t, "k", k, dk, f)
				gradCheck(t, "v", v, dv, f)
			}
		})
	}
}

// TestExpF32 compares the float32 exponential with math.Exp.
func TestExpF32(t *testing.T) {
	worst := 0.0
	for x := -87.0; x <= 88.5; x += 0.001 {
		got := float64(expf32(float32(x)))
		want := math.Exp(float64(float32(x)))
		e := math.Abs(got-want) / want
		worst = math.Max(worst, e)
		if e > 4e-7 {
			t.Fatalf("expf32(%v) = %v, want %v (rel err %.3g)", float32(x), got, want, e)
		}
	}
	t.Logf("worst relative error %.3g", worst)
	if expf32(-100) != 0 || !math.IsInf(float64(expf32(100)), 1) || expf32(0) != 1 {
		t.Error("edge cases")
	}
	if nan := float32(math.NaN()); expf32(nan) == expf32(nan) {
		t.Error("NaN not propagated")
	}
}

func BenchmarkExp(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = -float32(i) / 256
	}
	b.Run("expf32", func(b *testing.B) {
		var s float32
		for i := 0; i < b.N; i++ {
			for _, v := range x {
				s += expf32(v)
			}
		}
		_ = s
	})
	b.Run("math.Exp", func(b *testing.B) {
		var s float64
		for i := 0; i < b.N; i++ {
			for _, v := range x {
				s += math.Exp(float64(v))
			}
		}
		_ = s
	})
}
