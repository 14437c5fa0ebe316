package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// attentionRef is the reference loop of Attention's doc comment.
func attentionRef(out, q, k, v []float64, nq, nk, nHeads, nKV, hd int) {
	qd, kd := nHeads*hd, nKV*hd
	for h := 0; h < nHeads; h++ {
		g := h / (nHeads / nKV)
		for i := 0; i < nq; i++ {
			off := nk - nq + i
			s := make([]float64, off+1)
			for j := 0; j <= off; j++ {
				var d float64
				for x := 0; x < hd; x++ {
					d += q[i*qd+h*hd+x] * k[j*kd+g*hd+x]
				}
				s[j] = d / math.Sqrt(float64(hd))
			}
			Softmax(s, s, 1, off+1)
			for x := 0; x < hd; x++ {
				var o float64
				for j := 0; j <= off; j++ {
					o += s[j] * v[j*kd+g*hd+x]
				}
				out[i*qd+h*hd+x] = o
			}
		}
	}
}

// withAttnBlock runs f with query blocks of b rows.
func withAttnBlock(b int, f func()) {
	defer func(old int) { attnBlock = old }(attnBlock)
	attnBlock = b
	f()
}

func TestAttentionMatchesReference(t *testing.T) {
	for _, b := range []int{64, 1, 2, 3} {
		withAttnBlock(b, func() { testAttentionMatchesReference(t) })
	}
}

func testAttentionMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, c := range [][5]int{{7, 7, 4, 2, 8}, {1, 9, 4, 1, 8}, {4, 10, 6, 3, 4}} {
		nq, nk, heads, kv, hd := c[0], c[1], c[2], c[3], c[4]
		q, k, v := randVec(r, nq*heads*hd, 2), randVec(r, nk*kv*hd, 2), randVec(r, nk*kv*hd, 2)
		got, want := make([]float64, nq*heads*hd), make([]float64, nq*heads*hd)
		attentionRef(want, q, k, v, nq, nk, heads, kv, hd)
		for _, np := range []int{nq * nk, heads * nq * nk} { // shared or kept probabilities
			Attention(got, q, k, v, nq, nk, heads, kv, hd, make([]float64, np))
			for i := range got {
				if math.Abs(got[i]-want[i]) > 1e-12 {
					t.Fatalf("%v: out[%d] = %v, want %v", c, i, got[i], want[i])
				}
			}
		}
	}
}

// TestAttentionCacheConsistency checks that attending the last rows of a
// sequence through a cache gives the rows of the full computation.
func TestAttentionCacheConsistency(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	n, heads, kv, hd := 9, 4, 2, 4
	q, k, v := randVec(r, n*heads*hd, 1), randVec(r, n*kv*hd, 1), randVec(r, n*kv*hd, 1)
	full := make([]float64, n*heads*hd)
	Attention(full, q, k, v, n, n, heads, kv, hd, make([]float64, n*n))
	for nk := 1; nk <= n; nk++ {
		one := make([]float64, heads*hd)
		Attention(one, q[(nk-1)*heads*hd:nk*heads*hd], k[:nk*kv*hd], v[:nk*kv*hd], 1, nk, heads, kv, hd, make([]float64, nk))
		for i := range one {
			if math.Abs(one[i]-full[(nk-1)*heads*hd+i]) > 1e-13 {
				t.Fatalf("position %d: cached %v, full %v", nk-1, one[i], full[(nk-1)*heads*hd+i])
			}
		}
	}
}

// TestAttentionFloat32 compares the float32 path with float64.
func TestAttentionFloat32(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	n, heads, kv, hd := 8, 4, 2, 8
	q, k, v := randVec(r, n*heads*hd, 1), randVec(r, n*kv*hd, 1), randVec(r, n*kv*hd, 1)
	want := make([]float64, n*heads*hd)
	Attention(want, q, k, v, n, n, heads, kv, hd, make([]float64, n*n))
	got := make([]float32, len(want))
	Attention(got, f32s(q), f32s(k), f32s(v), n, n, heads, kv, hd, make([]float32, n*n))
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > 1e-5 {
			t.Fatalf("out[%d]: float32 %v, float64 %v", i, got[i], want[i])
		}
	}
}

func f32s(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}
