package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// sentinel marks memory a GEMM must not touch: a quiet NaN with a payload,
// compared bit for bit.
var sentinel = math.Float32frombits(0x7fc0beef)

const guardLen = 19

// guarded is a rows×cols matrix with row stride ld inside a buffer whose
// guard zones before and after, and padding columns cols..ld-1, hold the
// sentinel.
type guarded struct {
	buf              []float32
	rows, cols, ld   int
	n                int // elements from the first to the last of the window
	origWindow, orig []float32
}

func newGuarded(rng *rand.Rand, rows, cols, ld int) *guarded {
	n := 0
	if rows > 0 && cols > 0 {
		n = (rows-1)*ld + cols
	}
	g := &guarded{buf: make([]float32, n+2*guardLen), rows: rows, cols: cols, ld: ld, n: n}
	for i := range g.buf {
		g.buf[i] = sentinel
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			g.buf[guardLen+i*ld+j] = float32(rng.NormFloat64())
		}
	}
	g.orig = append([]float32(nil), g.buf...)
	return g
}

// data is the slice handed to the GEMM, capped so Go code cannot reslice
// into the guards.
func (g *guarded) data() []float32 { return g.buf[guardLen : guardLen+g.n : guardLen+g.n] }

func (g *guarded) at(i, j int) float32 { return g.buf[guardLen+i*g.ld+j] }

// inWindow reports whether buffer index x is element of the matrix.
func (g *guarded) inWindow(x int) bool {
	x -= guardLen
	if x < 0 || x >= g.n {
		return false
	}
	return x%g.ld < g.cols
}

// checkGuards fails t if anything outside the window changed.
func (g *guarded) checkGuards(t *testing.T, name string) {
	t.Helper()
	for x := range g.buf {
		if g.inWindow(x) {
			continue
		}
		if math.Float32bits(g.buf[x]) != math.Float32bits(g.orig[x]) {
			t.Fatalf("%s: element %d outside the window changed: %v", name, x-guardLen, g.buf[x])
		}
	}
}

// checkUnchanged fails t if anything in the buffer changed.
func (g *guarded) checkUnchanged(t *testing.T, name string) {
	t.Helper()
	for x := range g.buf {
		if math.Float32bits(g.buf[x]) != math.Float32bits(g.orig[x]) {
			t.Fatalf("%s: input element %d changed", name, x-guardLen)
		}
	}
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	padA, padB     int
	padC           int
	path           gemmPath // the native strategy the case is meant to exercise
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("tA=%v,tB=%v,m=%d,n=%d,k=%d,alpha=%v,beta=%v,pad=%d/%d/%d", tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.padA, tc.padB, tc.padC)
}

// runCase runs one GEMM through gemm on guarded operands and checks every
// element of C against a float64 evaluation of the reference loop, within
// the forward error bound of a k-term dot product (Higham, "Accuracy and
// Stability of Numerical Algorithms", 2nd ed., eq. (3.5)): |ĉ−c| ≤ γ (|α|
// Σ|a||b| + |β c|) with a generous γ = 2(k+3)u, u = 2⁻²⁴.
func runCase(t *testing.T, rng *rand.Rand, name string, tc gemmCase, gemm func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)) {
	t.Helper()
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	A := newGuarded(rng, ar, ac, ac+tc.padA)
	B := newGuarded(rng, br, bc, bc+tc.padB)
	C := newGuarded(rng, tc.m, tc.n, tc.n+tc.padC)
	if tc.beta == 0 {
		// beta == 0 must not read C: NaN there must not propagate.
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				C.buf[guardLen+i*C.ld+j] = float32(math.NaN())
			}
		}
		C.orig = append([]float32(nil), C.buf...)
	}
	opA := func(i, p int) float64 {
		if tc.transA {
			return float64(A.at(p, i))
		}
		return float64(A.at(i, p))
	}
	opB := func(p, j int) float64 {
		if tc.transB {
			return float64(B.at(j, p))
		}
		return float64(B.at(p, j))
	}
	gemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, A.data(), A.ld, B.data(), B.ld, tc.beta, C.data(), C.ld)
	A.checkUnchanged(t, name+" "+tc.String()+" A")
	B.checkUnchanged(t, name+" "+tc.String()+" B")
	C.checkGuards(t, name+" "+tc.String()+" C")
	gamma := 2 * float64(tc.k+3) * 0x1p-24
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			var s, abs float64
			for p := 0; p < tc.k; p++ {
				x := opA(i, p) * opB(p, j)
				s += x
				abs += math.Abs(x)
			}
			want := float64(tc.alpha) * s
			bound := math.Abs(float64(tc.alpha)) * abs
			if tc.beta != 0 {
				c0 := float64(C.orig[guardLen+i*C.ld+j])
				want += float64(tc.beta) * c0
				bound += math.Abs(float64(tc.beta) * c0)
			}
			got := float64(C.at(i, j))
			if math.IsNaN(got) || math.Abs(got-want) > gamma*bound+1e-30 {
				t.Fatalf("%s %v: C[%d][%d] = %v, want %v (bound %g)", name, tc, i, j, got, want, gamma*bound)
			}
		}
	}
}

// backends returns every backend this build can test.
func backends() []Backend {
	bs := []Backend{Native(), NativeGo()}
	if ob := OpenBLAS(); ob != nil {
		bs = append(bs, ob)
	}
	return bs
}

var testDims = []int{1, 2, 3, 5, 6, 7, 11, 16, 17, 31, 32, 33, 47, 97}

func TestSgemmShapes(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.Name(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			for _, transA := range []bool{false, true} {
				for _, transB := range []bool{false, true} {
					for _, m := range testDims {
						for _, n := range testDims {
							k := testDims[rng.IntN(len(testDims))]
							tc := gemmCase{transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, beta: 0}
							switch rng.IntN(4) {
							case 1:
								tc.alpha, tc.beta = -0.5, 1
							case 2:
								tc.alpha, tc.beta = 2.5, 0.75
							case 3:
								tc.padA, tc.padB, tc.padC = 1+rng.IntN(5), 1+rng.IntN(5), 1+rng.IntN(5)
							}
							runCase(t, rng, be.Name(), tc, gemmVia(be))
						}
					}
				}
			}
		})
	}
}

// gemmVia calls the package-level Sgemm (argument checks, degenerate
// cases) with be installed.
func gemmVia(be Backend) func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	return func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
		prev := SetBackend(be)
		defer SetBackend(prev)
		Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// TestSgemmBlocking crosses every cache-blocking boundary: m past gemmMC,
// k past gemmKC (so later k-slices accumulate with beta = 1), n past gemmNC,
// with leading dimensions wider than the rows and every alpha/beta class.
func TestSgemmBlocking(t *testing.T) {
	cases := []gemmCase{
		{m: 301, n: 45, k: 300, alpha: 1, beta: 0, padA: 3, padB: 1, padC: 2, path: pathBlocked},
		{transA: true, m: 150, n: 70, k: 513, alpha: -1.5, beta: 0.5, padA: 5, padC: 1, path: pathBlocked},
		{transB: true, m: 145, n: 33, k: 257, alpha: 1, beta: 1, padB: 7, path: pathBlocked},
		{transA: true, transB: true, m: 289, n: 49, k: 300, alpha: 0.25, beta: -2, padA: 1, padB: 2, padC: 3, path: pathBlocked},
		{m: 7, n: 4100, k: 9, alpha: 1, beta: 0, padC: 5, path: pathDirectB},
		{transB: true, m: 13, n: 4097, k: 20, alpha: 2, beta: 0.5, padB: 1, padC: 1, path: pathBlocked},
		{m: 1, n: 1000, k: 700, alpha: 1, beta: 0, path: pathDirectB},
		{transA: true, m: 1000, n: 1, k: 700, alpha: 1, beta: 0.5, path: pathDirectA},
		{m: 128, n: 128, k: 1, alpha: 3, beta: 0, path: pathBlocked},
		// Skinny products that read A in place (n ≤ 32) or B in place
		// (m ≤ 24, B not transposed), with partial slivers.
		{m: 301, n: 17, k: 600, alpha: 1, beta: 0.5, padA: 2, padC: 1, path: pathDirectA},
		{transA: true, m: 400, n: 32, k: 513, alpha: -1, beta: 0, padA: 1, path: pathDirectA},
		{transA: true, transB: true, m: 299, n: 16, k: 270, alpha: 1, beta: 1, padB: 3, path: pathDirectA},
		{m: 20, n: 1100, k: 300, alpha: 0.5, beta: 0, padB: 4, padC: 2, path: pathDirectB},
		{transA: true, m: 16, n: 519, k: 257, alpha: 1, beta: 2, padA: 1, padB: 1, path: pathDirectB},
		{m: 24, n: 30, k: 700, alpha: 1, beta: 0, path: pathDirectAB},
		// A few rows times Bᵀ: dot products.
		{transB: true, m: 1, n: 700, k: 700, alpha: 1, beta: 0, padB: 3, path: pathGemv},
		{transA: true, transB: true, m: 3, n: 100, k: 300, alpha: 2, beta: 0.5, padA: 1, padB: 1, padC: 4, path: pathGemv},
		{transB: true, m: 4, n: 33, k: 1000, alpha: -1, beta: 1, path: pathGemv},
	}
	for _, tc := range cases {
		if got := choosePath(tc.transB, tc.m, tc.n, tc.k); got != tc.path {
			t.Errorf("%v: native path %d, the case is meant for %d", tc, got, tc.path)
		}
	}
	for _, be := range backends() {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, tc := range cases {
			runCase(t, rng, be.Name(), tc, gemmVia(be))
		}
	}
}

// TestSgemmExactIntegers is a known-answer test independent of summation
// order: small integers whose products and partial sums stay below 2²⁴ are
// exact in float32, so every backend must return the integer product
// computed in int64, bit for bit.
func TestSgemmExactIntegers(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, be := range backends() {
		for _, sh := range [][3]int{{2, 3, 4}, {37, 41, 600}, {200, 130, 300}, {64, 64, 64}} {
			for tr := 0; tr < 4; tr++ {
				m, n, k := sh[0], sh[1], sh[2]
				transA, transB := tr&1 != 0, tr&2 != 0
				ai := make([]int64, m*k)
				bi := make([]int64, k*n)
				for x := range ai {
					ai[x] = int64(rng.IntN(17) - 8)
				}
				for x := range bi {
					bi[x] = int64(rng.IntN(17) - 8)
				}
				a := make([]float32, m*k)
				b := make([]float32, k*n)
				lda, ldb := k, n
				for i := 0; i < m; i++ {
					for p := 0; p < k; p++ {
						if transA {
							a[p*m+i] = float32(ai[i*k+p])
						} else {
							a[i*k+p] = float32(ai[i*k+p])
						}
					}
				}
				if transA {
					lda = m
				}
				for p := 0; p < k; p++ {
					for j := 0; j < n; j++ {
						if transB {
							b[j*k+p] = float32(bi[p*n+j])
						} else {
							b[p*n+j] = float32(bi[p*n+j])
						}
					}
				}
				if transB {
					ldb = k
				}
				c := make([]float32, m*n)
				for x := range c {
					c[x] = 3
				}
				gemmVia(be)(transA, transB, m, n, k, 2, a, lda, b, ldb, -1, c, n)
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						var s int64
						for p := 0; p < k; p++ {
							s += ai[i*k+p] * bi[p*n+j]
						}
						if want := float32(2*s - 3); c[i*n+j] != want {
							t.Fatalf("%s %dx%dx%d tA=%v tB=%v: C[%d][%d] = %v, want %v", be.Name(), m, n, k, transA, transB, i, j, c[i*n+j], want)
						}
					}
				}
			}
		}
	}
}

// TestSgemmSmallKnownAnswer pins a product worked by hand.
func TestSgemmSmallKnownAnswer(t *testing.T) {
	a := []float32{1, 2, 3, 4, 5, 6}                        // 2×3
	b := []float32{7, 8, 9, 10, 11, 12}                     // 3×2
	want := []float32{58, 64, 139, 154}                     // a·b
	wantT := []float32{39, 49, 59, 54, 68, 82, 69, 87, 105} // aᵀ·bᵀ is 3×3: (b·a)ᵀ
	for _, be := range backends() {
		c := make([]float32, 4)
		gemmVia(be)(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2)
		for i := range want {
			if c[i] != want[i] {
				t.Fatalf("%s: a·b = %v, want %v", be.Name(), c, want)
			}
		}
		c = make([]float32, 9)
		gemmVia(be)(true, true, 3, 3, 2, 1, a, 3, b, 2, 0, c, 3)
		for i := range wantT {
			if c[i] != wantT[i] {
				t.Fatalf("%s: aᵀ·bᵀ = %v, want %v", be.Name(), c, wantT)
			}
		}
	}
}

// TestSgemmDegenerate covers alpha == 0 and k == 0 (C = beta*C, A and B
// unread) and empty m or n (nothing touched).
func TestSgemmDegenerate(t *testing.T) {
	nan := float32(math.NaN())
	for _, be := range backends() {
		g := gemmVia(be)
		a := []float32{nan, nan, nan, nan}
		c := []float32{1, 2, 3, 4}
		g(false, false, 2, 2, 2, 0, a, 2, a, 2, 0.5, c, 2)
		if c[0] != 0.5 || c[3] != 2 {
			t.Fatalf("%s: alpha=0: C = %v, want beta*C", be.Name(), c)
		}
		c = []float32{nan, nan, nan, nan}
		g(false, false, 2, 2, 2, 0, a, 2, a, 2, 0, c, 2)
		for _, v := range c {
			if v != 0 {
				t.Fatalf("%s: alpha=0, beta=0: C = %v, want zeros", be.Name(), c)
			}
		}
		c = []float32{1, 2, sentinel, 3, 4}
		g(false, false, 2, 2, 0, 1, nil, 0, nil, 2, 2, c, 3)
		if c[0] != 2 || c[1] != 4 || c[3] != 6 || c[4] != 8 || math.Float32bits(c[2]) != math.Float32bits(sentinel) {
			t.Fatalf("%s: k=0: C = %v, want 2*C with padding untouched", be.Name(), c)
		}
		g(false, false, 0, 5, 3, 1, nil, 3, make([]float32, 15), 5, 0, nil, 5)
		g(true, true, 4, 0, 3, 1, make([]float32, 12), 4, nil, 3, 0, nil, 0)
	}
}

func TestSgemmPanicsOnBadArguments(t *testing.T) {
	ok := make([]float32, 64)
	for _, tc := range []struct {
		name string
		call func()
		want string
	}{
		{"short a", func() { Sgemm(false, false, 4, 4, 4, 1, ok[:15], 4, ok, 4, 0, ok, 4) }, "len(a)=15, need at least 16"},
		{"short b transposed", func() { Sgemm(false, true, 4, 3, 4, 1, ok, 4, ok[:11], 4, 0, ok, 4) }, "len(b)=11, need at least 12"},
		{"short c", func() { Sgemm(false, false, 4, 4, 4, 1, ok, 4, ok, 4, 0, ok[:10], 4) }, "len(c)=10"},
		{"lda too small", func() { Sgemm(false, false, 4, 4, 4, 1, ok, 3, ok, 4, 0, ok, 4) }, "lda=3, need at least 4"},
		{"lda transposed", func() { Sgemm(true, false, 5, 4, 4, 1, ok, 4, ok, 4, 0, ok, 5) }, "lda=4, need at least 5"},
		{"negative", func() { Sgemm(false, false, -1, 4, 4, 1, ok, 4, ok, 4, 0, ok, 4) }, "negative dimension"},
		{"dgemm short c", func() {
			Dgemm(false, false, 2, 2, 2, 1, make([]float64, 4), 2, make([]float64, 4), 2, 0, make([]float64, 3), 2)
		}, "Dgemm: len(c)=3"},
	} {
		func() {
			defer func() {
				r := recover()
				s, _ := r.(string)
				if !strings.Contains(s, tc.want) {
					t.Errorf("%s: panic %v, want one mentioning %q", tc.name, r, tc.want)
				}
			}()
			tc.call()
		}()
	}
}

// TestSgemmThreadsBitIdentical checks the promise of the package doc: the
// native backend never splits k, so the result does not depend on the
// thread count.
func TestSgemmThreadsBitIdentical(t *testing.T) {
	defer SetThreads(SetThreads(0))
	rng := rand.New(rand.NewPCG(7, 8))
	for _, sh := range [][3]int{{257, 263, 300}, {1000, 17, 129}, {13, 999, 260}} {
		m, n, k := sh[0], sh[1], sh[2]
		a := randSlice(rng, m*k)
		b := randSlice(rng, k*n)
		c0 := randSlice(rng, m*n)
		var first []float32
		for _, th := range []int{1, 2, 3, 4, 7, 16} {
			SetThreads(th)
			c := append([]float32(nil), c0...)
			Native().Sgemm(false, true, m, n, k, 1.5, a, k, b, k, 0.5, c, n)
			if first == nil {
				first = c
				continue
			}
			for x := range c {
				if math.Float32bits(c[x]) != math.Float32bits(first[x]) {
					t.Fatalf("%dx%dx%d: threads=%d differs from threads=1 at %d: %v vs %v", m, n, k, th, x, c[x], first[x])
				}
			}
		}
	}
}

// TestSgemmConcurrent runs many multi-threaded Sgemm calls at once (sharing
// the worker pool and packing buffers) and requires each to match its
// single-call result bit for bit.
func TestSgemmConcurrent(t *testing.T) {
	defer SetThreads(SetThreads(4))
	rng := rand.New(rand.NewPCG(9, 10))
	const calls = 24
	type call struct {
		m, n, k int
		a, b    []float32
		want    []float32
	}
	cs := make([]call, calls)
	for i := range cs {
		m, n, k := 50+rng.IntN(150), 40+rng.IntN(200), 30+rng.IntN(300)
		cs[i] = call{m: m, n: n, k: k, a: randSlice(rng, m*k), b: randSlice(rng, k*n), want: make([]float32, m*n)}
		Sgemm(false, false, m, n, k, 1, cs[i].a, k, cs[i].b, n, 0, cs[i].want, n)
	}
	var wg sync.WaitGroup
	errs := make(chan string, calls*3)
	for round := 0; round < 3; round++ {
		for i := range cs {
			wg.Add(1)
			go func(c call) {
				defer wg.Done()
				got := make([]float32, c.m*c.n)
				Sgemm(false, false, c.m, c.n, c.k, 1, c.a, c.k, c.b, c.n, 0, got, c.n)
				for x := range got {
					if math.Float32bits(got[x]) != math.Float32bits(c.want[x]) {
						errs <- fmt.Sprintf("%dx%dx%d: element %d = %v, want %v", c.m, c.n, c.k, x, got[x], c.want[x])
						return
					}
				}
			}(cs[i])
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestSgemmNoAllocs: the training loop calls Sgemm thousands of times per
// step; in steady state a call must not allocate.
func TestSgemmNoAllocs(t *testing.T) {
	defer SetThreads(SetThreads(2))
	rng := rand.New(rand.NewPCG(11, 12))
	m, n, k := 96, 80, 128
	a, b, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
	Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
	if allocs := testing.AllocsPerRun(50, func() {
		Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
	}); allocs > 0 {
		t.Errorf("Sgemm allocated %v times per call, want 0", allocs)
	}
}

// TestMicroKernels compares the micro-kernel this machine runs with the
// pure-Go one and with its reference loop, with guards around C.
// TestStridedKernels runs the strided micro-kernels on operands read in
// place (A row-major and transposed, B with a wide stride) and requires
// the same bits as the packed kernel on the packed copies: the two do the
// same arithmetic in the same order.
func TestStridedKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, kc := range []int{1, 3, 4, 7, 64, 255} {
		for _, transA := range []bool{false, true} {
			for _, kern := range []struct {
				name    string
				packed  microKernel
				strided stridedKernel
			}{{"best", bestKernel, bestStrided}, {"go", kernelGo, kernelGoStrided}} {
				lda := kc + 3
				rsA, csA := lda, 1
				if transA {
					lda = gemmMR + 2
					rsA, csA = 1, lda
				}
				a := randSlice(rng, 5*rsA+(kc-1)*csA+1)
				ldb := gemmNR + 5
				b := randSlice(rng, (kc-1)*ldb+gemmNR)
				pa := make([]float32, kc*gemmMR)
				pb := make([]float32, kc*gemmNR)
				for p := 0; p < kc; p++ {
					for r := 0; r < gemmMR; r++ {
						pa[p*gemmMR+r] = a[r*rsA+p*csA]
					}
					copy(pb[p*gemmNR:(p+1)*gemmNR], b[p*ldb:])
				}
				for _, beta := range []float32{0, 0.5} {
					c0 := randSlice(rng, gemmMR*gemmNR)
					want := append([]float32(nil), c0...)
					kern.packed(kc, 1.25, pa, pb, beta, want, gemmNR)
					C := newGuarded(rng, gemmMR, gemmNR, gemmNR+2)
					for r := 0; r < gemmMR; r++ {
						copy(C.buf[guardLen+r*C.ld:], c0[r*gemmNR:(r+1)*gemmNR])
					}
					C.orig = append([]float32(nil), C.buf...)
					kern.strided(kc, 1.25, a, rsA, csA, b, ldb, beta, C.data(), C.ld)
					C.checkGuards(t, kern.name+" strided")
					for r := 0; r < gemmMR; r++ {
						for x := 0; x < gemmNR; x++ {
							if got := C.at(r, x); math.Float32bits(got) != math.Float32bits(want[r*gemmNR+x]) {
								t.Fatalf("%s kc=%d transA=%v beta=%v: strided C[%d][%d] = %v, packed gives %v", kern.name, kc, transA, beta, r, x, got, want[r*gemmNR+x])
							}
						}
					}
				}
			}
		}
	}
}

func TestDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for n := 0; n <= 100; n++ {
		x, y := randSlice(rng, n), randSlice(rng, n+1)
		var want, bound float64
		for i := 0; i < n; i++ {
			want += float64(x[i]) * float64(y[i])
			bound += math.Abs(float64(x[i]) * float64(y[i]))
		}
		for _, d := range []struct {
			name string
			f    func(x, y []float32) float32
		}{{"best", bestDot}, {"go", dotGo}} {
			got := float64(d.f(x, y))
			if math.Abs(got-want) > 2*float64(n+3)*0x1p-24*bound {
				t.Fatalf("%s: n=%d: dot = %v, want %v", d.name, n, got, want)
			}
		}
	}
}

func TestMicroKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, kc := range []int{1, 2, 3, 4, 5, 8, 13, 256} {
		for _, beta := range []float32{0, 1, -0.5} {
			a := randSlice(rng, kc*gemmMR)
			b := randSlice(rng, kc*gemmNR)
			const ldc = gemmNR + 3
			for _, kern := range []struct {
				name string
				f    microKernel
			}{{"best", bestKernel}, {"go", kernelGo}} {
				C := newGuarded(rng, gemmMR, gemmNR, ldc)
				if beta == 0 {
					for i := 0; i < gemmMR; i++ {
						for j := 0; j < gemmNR; j++ {
							C.buf[guardLen+i*ldc+j] = float32(math.Inf(1))
						}
					}
					C.orig = append([]float32(nil), C.buf...)
				}
				kern.f(kc, 0.75, a, b, beta, C.data(), ldc)
				C.checkGuards(t, kern.name)
				for r := 0; r < gemmMR; r++ {
					for j := 0; j < gemmNR; j++ {
						var s, abs float64
						for p := 0; p < kc; p++ {
							x := float64(a[p*gemmMR+r]) * float64(b[p*gemmNR+j])
							s += x
							abs += math.Abs(x)
						}
						want := 0.75 * s
						bound := 0.75 * abs
						if beta != 0 {
							c0 := float64(C.orig[guardLen+r*ldc+j])
							want += float64(beta) * c0
							bound += math.Abs(float64(beta) * c0)
						}
						got := float64(C.at(r, j))
						if math.Abs(got-want) > 2*float64(kc+3)*0x1p-24*bound {
							t.Fatalf("%s kc=%d beta=%v: C[%d][%d] = %v, want %v", kern.name, kc, beta, r, j, got, want)
						}
					}
				}
			}
		}
	}
}

func TestBackendSwitch(t *testing.T) {
	if CurrentBackend() != Native() {
		t.Fatalf("default backend %q, want native", CurrentBackend().Name())
	}
	prev := SetBackend(NativeGo())
	if prev != Native() || CurrentBackend().Name() != "native-go" {
		t.Fatalf("SetBackend: previous %q, current %q", prev.Name(), CurrentBackend().Name())
	}
	SetBackend(nil)
	if CurrentBackend() != Native() {
		t.Fatalf("SetBackend(nil) left %q, want native", CurrentBackend().Name())
	}
	old := SetThreads(3)
	if Threads() != 3 {
		t.Fatalf("Threads() = %d after SetThreads(3)", Threads())
	}
	SetThreads(old)
	if NativeKernel() == "" {
		t.Fatal("NativeKernel() is empty")
	}
}

func TestDgemm(t *testing.T) {
	// Known answer, all four transposes: A = [1 2 3; 4 5 6], B = [7 8; 9 10; 11 12].
	a := []float64{1, 2, 3, 4, 5, 6}
	at := []float64{1, 4, 2, 5, 3, 6}
	b := []float64{7, 8, 9, 10, 11, 12}
	bt := []float64{7, 9, 11, 8, 10, 12}
	want := []float64{58 - 1, 64 - 1, 139 - 1, 154 - 1} // a·b − C with C = 1
	for tr := 0; tr < 4; tr++ {
		transA, transB := tr&1 != 0, tr&2 != 0
		aa, lda := a, 3
		if transA {
			aa, lda = at, 2
		}
		bb, ldb := b, 2
		if transB {
			bb, ldb = bt, 3
		}
		c := []float64{1, 1, 1, 1}
		Dgemm(transA, transB, 2, 2, 3, 1, aa, lda, bb, ldb, -1, c, 2)
		for i := range c {
			if c[i] != want[i] {
				t.Fatalf("tA=%v tB=%v: C = %v, want %v", transA, transB, c, want)
			}
		}
	}
	c := []float64{math.NaN(), math.NaN()}
	Dgemm(false, false, 1, 2, 3, 2, a, 3, b, 2, 0, c, 2)
	if c[0] != 116 || c[1] != 128 {
		t.Fatalf("beta=0 with NaN in C: %v", c)
	}
}

// dgemmRef is Dgemm's reference loop as its doc comment writes it.
func dgemmRef(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var x, y float64
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

// TestDgemmMatchesReferenceLoop: Dgemm reorders the loops but must give
// the reference loop's bits, for every transpose, stride and beta.
func TestDgemmMatchesReferenceLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	for _, sh := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 13, 29}, {40, 33, 64}, {6, 70, 3}} {
		m, n, k := sh[0], sh[1], sh[2]
		for tr := 0; tr < 4; tr++ {
			transA, transB := tr&1 != 0, tr&2 != 0
			for _, beta := range []float64{0, 1, -0.3} {
				lda, ldb, ldc := k+2, n+1, n+3
				if transA {
					lda = m + 2
				}
				if transB {
					ldb = k + 1
				}
				ar, br := m, k
				if transA {
					ar = k
				}
				if transB {
					br = n
				}
				a := make([]float64, ar*lda)
				b := make([]float64, br*ldb)
				c := make([]float64, m*ldc)
				for _, s := range [][]float64{a, b, c} {
					for x := range s {
						s[x] = rng.NormFloat64()
					}
				}
				want := append([]float64(nil), c...)
				dgemmRef(transA, transB, m, n, k, 0.7, a, lda, b, ldb, beta, want, ldc)
				Dgemm(transA, transB, m, n, k, 0.7, a, lda, b, ldb, beta, c, ldc)
				for x := range c {
					if math.Float64bits(c[x]) != math.Float64bits(want[x]) {
						t.Fatalf("%dx%dx%d tA=%v tB=%v beta=%v: element %d = %v, reference loop %v", m, n, k, transA, transB, beta, x, c[x], want[x])
					}
				}
			}
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}
