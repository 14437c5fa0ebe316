package kernels

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// Register tile of the micro-kernel: it computes a gemmMR×gemmNR block of C
// from a packed gemmMR-row sliver of op(A) and a packed gemmNR-column sliver
// of op(B).
const (
	gemmMR = 6
	gemmNR = 16
)

// Cache blocking (BLIS, Van Zee and van de Geijn 2015, Fig. 2): a kc×gemmNR
// sliver of packed B stays in L1, an mc×kc block of packed A in L2 and a
// kc×nc panel of packed B in L3. mc is a multiple of gemmMR and nc of
// gemmNR. The values are those BLIS uses for AVX2 cores (Haswell, Zen).
const (
	gemmMC = 144
	gemmKC = 256
	gemmNC = 4080
)

// Below this many multiply-adds the packing would cost more than it saves
// and Sgemm runs the reference loop.
const gemmSmall = 4096

// Below this many multiply-adds per thread, a call does not split across
// threads: handing a block to another goroutine costs a few microseconds.
const gemmMinPerThread = 1 << 18

// Products with at most gemvRows rows and op(B) = bᵀ run as dot products,
// split into tasks of at least gemvCols columns.
const (
	gemvRows = 4
	gemvCols = 64
)

// maxThreads bounds the threads of one call.
const maxThreads = 1 << 10

// taskMask extracts a 24-bit task counter of gemmJob.state. A phase has at
// most max(⌈m/gemmMC⌉, 8·threads) tasks, far below 2²⁴ for any m that fits
// in memory.
const taskMask = 1<<24 - 1

// microKernel computes C[0:gemmMR, 0:gemmNR] = alpha*Â*B̂ + beta*C where Â
// is kc packed columns of gemmMR values and B̂ kc packed rows of gemmNR
// values (Â[p*gemmMR+r] = op(A)[r][p], B̂[p*gemmNR+j] = op(B)[p][j]). With
// beta == 0 it does not read C. c holds the tile's first element and rows
// are ldc apart.
type microKernel func(kc int, alpha float32, a, b []float32, beta float32, c []float32, ldc int)

// stridedKernel is microKernel reading A and B in place: Â(r, p) =
// a[r*rsA+p*csA] and B̂(p, j) = b[p*csB+j]. With rsA = 1, csA = gemmMR,
// csB = gemmNR it is microKernel on packed operands, and it does the same
// arithmetic in the same order.
type stridedKernel func(kc int, alpha float32, a []float32, rsA, csA int, b []float32, csB int, beta float32, c []float32, ldc int)

// native is the packed, cache-blocked SGEMM driver around one
// micro-kernel.
type native struct {
	name    string
	kernel  microKernel
	strided stridedKernel
	dot     func(x, y []float32) float32
}

var nativeBackend Backend = &native{name: "native", kernel: bestKernel, strided: bestStrided, dot: bestDot}

var nativeGoBackend Backend = &native{name: "native-go", kernel: kernelGo, strided: kernelGoStrided, dot: dotGo}

// Native returns the default backend: packed, cache-blocked SGEMM in Go,
// parallel over [Threads] goroutines, with the fastest micro-kernel the
// CPU supports ([NativeKernel] names it).
func Native() Backend { return nativeBackend }

// NativeGo returns the native backend with the pure-Go micro-kernel even
// where an assembly one exists: the baseline that measures what the
// assembly buys, and a reference for debugging it.
func NativeGo() Backend { return nativeGoBackend }

func (nb *native) Name() string { return nb.name }

func (nb *native) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if choosePath(transB, m, n, k) == pathRef {
		sgemmRef(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	t := Threads()
	if w := int64(m) * int64(n) * int64(k) / gemmMinPerThread; w < int64(t) {
		t = max(int(w), 1)
	}
	j := jobPool.Get().(*gemmJob)
	j.nb, j.threads = nb, min(t, maxThreads)
	j.transA, j.transB = transA, transB
	j.m, j.n, j.k = m, n, k
	j.alpha, j.beta = alpha, beta
	j.a, j.b, j.c = a, b, c
	j.lda, j.ldb, j.ldc = lda, ldb, ldc
	j.drive()
	j.a, j.b, j.c, j.pb, j.nb = nil, nil, nil, nil, nil
	j.gemv, j.allK = false, false
	jobPool.Put(j)
}

// drive runs the BLIS loop nest (Van Zee and van de Geijn 2015, Fig. 2):
// jc over nc-wide panels of C, pc over kc-deep slices of the product. For
// each (jc, pc) the threads first pack the kc×nc panel of op(B) together,
// then claim tasks, each an mc-row block of A (packed by the task) against
// a run of B slivers, and run the macro-kernel. Block rows start at
// multiples of gemmMR and sliver runs at multiples of gemmNR, and k is
// never split, so every element of C sees the same arithmetic whatever
// the thread count. Tasks are claimed dynamically, so a thread slowed by
// other load on the machine takes fewer of them.
func (j *gemmJob) drive() {
	owner := getWorkspace()
	defer putWorkspace(owner)
	path := choosePath(j.transB, j.m, j.n, j.k)
	if path == pathGemv {
		j.gemv = true
		j.run(min(4*j.threads, (j.n+gemvCols-1)/gemvCols), owner)
		return
	}
	j.directA = path == pathDirectA || path == pathDirectAB
	j.directB = path == pathDirectB || path == pathDirectAB
	// Even row blocks of at most gemmMC rows, so the last one is not a
	// sliver that leaves threads idle.
	mblocks := (j.m + gemmMC - 1) / gemmMC
	j.mc = roundUp((j.m+mblocks-1)/mblocks, gemmMR)
	j.mblocks = (j.m + j.mc - 1) / j.mc
	j.allK = j.directA || j.directB
	if j.allK {
		// Skinny: op(B) is either small (n ≤ 32, packed whole here, k
		// slice after k slice) or read in place, so one parallel phase
		// in which each task runs through all of k does it, instead of
		// two synchronised phases per k slice.
		j.jc, j.nc = 0, j.n
		j.nsl = (j.n + gemmNR - 1) / gemmNR
		j.nsplit = j.splitCols()
		if !j.directB {
			ldp := roundUp(j.n, gemmNR)
			j.pb = owner.bBuf(ldp * j.k)
			for pc := 0; pc < j.k; pc += gemmKC {
				packB(j.pb[pc*ldp:], j.transB, j.b, j.ldb, pc, min(gemmKC, j.k-pc), 0, j.n)
			}
		}
		j.run(j.mblocks*j.nsplit, owner)
		return
	}
	j.pb = owner.bBuf(min(gemmNC, roundUp(j.n, gemmNR)) * min(gemmKC, j.k))
	for jc := 0; jc < j.n; jc += gemmNC {
		j.jc, j.nc = jc, min(gemmNC, j.n-jc)
		j.nsl = (j.nc + gemmNR - 1) / gemmNR
		j.nsplit = j.splitCols()
		for pc := 0; pc < j.k; pc += gemmKC {
			j.pc, j.kc = pc, min(gemmKC, j.k-pc)
			j.stepBeta = j.beta
			if pc > 0 {
				j.stepBeta = 1 // later slices accumulate onto C
			}
			if !j.directB {
				j.packing = true
				j.run(min(j.threads, j.nsl), owner)
				j.packing = false
			}
			j.run(j.mblocks*j.nsplit, owner)
		}
	}
}

// gemmPath is the strategy of the native backend for one shape.
type gemmPath int

const (
	pathRef      gemmPath = iota // tiny: the reference loop
	pathGemv                     // ≤ gemvRows rows times Bᵀ: dot products with rows of b
	pathDirectA                  // n ≤ 2·gemmNR: A read in place, small B packed whole
	pathDirectB                  // m ≤ 4·gemmMR, B not transposed: B read in place
	pathDirectAB                 // both of the above
	pathBlocked                  // everything else: full packing and cache blocking
)

// choosePath picks the strategy for a product. Skinny products read one
// operand in place instead of packing it: with at most two slivers of B
// every element of A would be packed to be used once or twice, and
// likewise B with few rows of A (only without transB: the micro-kernel
// needs rows of op(B) contiguous).
func choosePath(transB bool, m, n, k int) gemmPath {
	switch directA, directB := n <= 2*gemmNR, !transB && m <= 4*gemmMR; {
	case int64(m)*int64(n)*int64(k) <= gemmSmall: // int64: no overflow where int has 32 bits
		return pathRef
	case transB && m <= gemvRows && n > 2*gemmNR:
		return pathGemv
	case directA && directB:
		return pathDirectAB
	case directA:
		return pathDirectA
	case directB:
		return pathDirectB
	}
	return pathBlocked
}

// splitCols returns how many runs of slivers to cut the current panel of
// op(B) into: about four tasks per thread, splitting columns only while
// each task keeps at least 8 slivers (128 columns) so that its packed A
// block is reused enough.
func (j *gemmJob) splitCols() int {
	if j.threads == 1 {
		return 1
	}
	want := (4*j.threads + j.mblocks - 1) / j.mblocks
	return max(1, min(want, j.nsl/8))
}

// task runs task idx of the current phase with the worker's workspace.
func (j *gemmJob) task(ws *workspace, idx int) {
	if j.gemv {
		j.gemvTask(ws, idx)
		return
	}
	if j.packing {
		parts := min(j.threads, j.nsl)
		s0, s1 := j.nsl*idx/parts, j.nsl*(idx+1)/parts
		c0 := s0 * gemmNR
		packB(j.pb[c0*j.kc:], j.transB, j.b, j.ldb, j.pc, j.kc, j.jc+c0, min(j.nc, s1*gemmNR)-c0)
		return
	}
	bi, bs := idx/j.nsplit, idx%j.nsplit
	i0 := bi * j.mc
	mc := min(j.mc, j.m-i0)
	s0, s1 := j.nsl*bs/j.nsplit, j.nsl*(bs+1)/j.nsplit
	c0 := s0 * gemmNR
	nc := min(j.nc, s1*gemmNR) - c0
	if !j.allK {
		j.macro(ws, i0, mc, c0, nc, j.pc, j.kc, j.stepBeta, j.pb)
		return
	}
	// One task covers every k slice of its block, in order.
	ldp := roundUp(j.n, gemmNR) // floats per k step of the packed op(B)
	for pc := 0; pc < j.k; pc += gemmKC {
		beta := j.beta
		if pc > 0 {
			beta = 1
		}
		var pb []float32
		if !j.directB {
			pb = j.pb[pc*ldp:]
		}
		j.macro(ws, i0, mc, c0, nc, pc, min(gemmKC, j.k-pc), beta, pb)
	}
}

// gemvTask computes a run of columns of C as dot products of the rows of
// op(A) with rows of b (op(B) = bᵀ). Each row of b is read once and used
// for all m ≤ gemvRows rows of op(A) while it is in L1.
func (j *gemmJob) gemvTask(ws *workspace, idx int) {
	parts := min(4*j.threads, (j.n+gemvCols-1)/gemvCols)
	j0, j1 := j.n*idx/parts, j.n*(idx+1)/parts
	k := j.k
	var rows [gemvRows][]float32
	if j.transA {
		// op(A)[i][p] = a[p*lda+i]: gather the rows once per task.
		g := ws.aBuf(j.m * k)
		for i := 0; i < j.m; i++ {
			for p := 0; p < k; p++ {
				g[i*k+p] = j.a[p*j.lda+i]
			}
			rows[i] = g[i*k : (i+1)*k]
		}
	} else {
		for i := 0; i < j.m; i++ {
			rows[i] = j.a[i*j.lda : i*j.lda+k]
		}
	}
	for col := j0; col < j1; col++ {
		brow := j.b[col*j.ldb : col*j.ldb+k]
		for i := 0; i < j.m; i++ {
			s := j.alpha * j.nb.dot(rows[i], brow)
			if j.beta != 0 {
				s += j.beta * j.c[i*j.ldc+col]
			}
			j.c[i*j.ldc+col] = s
		}
	}
}

// macro multiplies rows i0..i0+mc of op(A) with columns c0..c0+nc of the
// current panel of op(B) into C, walking gemmMR×gemmNR tiles: jr over B
// slivers (one sliver stays in L1), ir over A slivers. A is packed here
// unless it is read in place (directA); B was packed by the packing phase
// unless it is read in place (directB). In-place operands still pack their
// last, partial sliver, zero-padded. Tiles that stick out of C go through
// a scratch tile so that nothing outside the window is read or written.
func (j *gemmJob) macro(ws *workspace, i0, mc, c0, nc, pc, kc int, beta float32, pb []float32) {
	nb := j.nb
	var pa, edgeA, edgeB []float32
	if !j.directA {
		pa = ws.aBuf(roundUp(mc, gemmMR) * kc)
		packA(pa, j.transA, j.a, j.lda, i0, mc, pc, kc)
	} else if r := mc % gemmMR; r != 0 {
		edgeA = ws.edgeABuf(gemmMR * kc)
		packA(edgeA, j.transA, j.a, j.lda, i0+mc-r, r, pc, kc)
	}
	if r := nc % gemmNR; j.directB && r != 0 {
		edgeB = ws.edgeBBuf(gemmNR * kc)
		packB(edgeB, j.transB, j.b, j.ldb, pc, kc, j.jc+c0+nc-r, r)
	}
	alpha := j.alpha
	c := j.c[i0*j.ldc+j.jc+c0:]
	tmp := ws.tile[:]
	for jr := 0; jr < nc; jr += gemmNR {
		nr := min(gemmNR, nc-jr)
		bp, csB, packedB := []float32(nil), gemmNR, true
		switch {
		case !j.directB:
			bp = pb[(c0+jr)*kc:]
		case nr < gemmNR:
			bp = edgeB
		default: // op(B)[p][j] = b[p*ldb+j]
			bp, csB, packedB = j.b[pc*j.ldb+j.jc+c0+jr:], j.ldb, false
		}
		for ir := 0; ir < mc; ir += gemmMR {
			mr := min(gemmMR, mc-ir)
			ap, rsA, csA, packedA := []float32(nil), 1, gemmMR, true
			switch {
			case !j.directA:
				ap = pa[ir*kc:]
			case mr < gemmMR:
				ap = edgeA
			case j.transA: // op(A)[i][p] = a[p*lda+i]
				ap, csA, packedA = j.a[pc*j.lda+i0+ir:], j.lda, false
			default: // op(A)[i][p] = a[i*lda+p]
				ap, rsA, csA, packedA = j.a[(i0+ir)*j.lda+pc:], j.lda, 1, false
			}
			full := mr == gemmMR && nr == gemmNR
			cc, ldc, bet := c[ir*j.ldc+jr:], j.ldc, beta
			if !full {
				cc, ldc, bet = tmp, gemmNR, 0
			}
			if packedA && packedB {
				nb.kernel(kc, alpha, ap, bp, bet, cc, ldc)
			} else {
				nb.strided(kc, alpha, ap, rsA, csA, bp, csB, bet, cc, ldc)
			}
			if full {
				continue
			}
			for r := 0; r < mr; r++ {
				row := c[(ir+r)*j.ldc+jr : (ir+r)*j.ldc+jr+nr]
				t := tmp[r*gemmNR : r*gemmNR+nr]
				if beta == 0 {
					copy(row, t)
					continue
				}
				for x := range row {
					row[x] = t[x] + beta*row[x]
				}
			}
		}
	}
}

// packA copies the mc×kc block of op(A) at (ic, pc) into dst as ⌈mc/gemmMR⌉
// slivers; sliver s holds dst[s*gemmMR*kc + p*gemmMR + r] = op(A)[ic+s*gemmMR+r][pc+p],
// zero-padded past row mc.
func packA(dst []float32, trans bool, a []float32, lda, ic, mc, pc, kc int) {
	for ir := 0; ir < mc; ir += gemmMR {
		mr := min(gemmMR, mc-ir)
		d := dst[ir*kc : ir*kc+kc*gemmMR]
		i := ic + ir
		switch {
		case trans:
			// op(A)[i][p] = a[p*lda+i]: each p is a contiguous run of rows.
			for p := 0; p < kc; p++ {
				src := a[(pc+p)*lda+i:]
				dp := d[p*gemmMR : p*gemmMR+gemmMR]
				n := copy(dp[:mr], src[:mr])
				clear(dp[n:])
			}
		case mr == gemmMR:
			r0 := a[(i+0)*lda+pc:][:kc]
			r1 := a[(i+1)*lda+pc:][:kc]
			r2 := a[(i+2)*lda+pc:][:kc]
			r3 := a[(i+3)*lda+pc:][:kc]
			r4 := a[(i+4)*lda+pc:][:kc]
			r5 := a[(i+5)*lda+pc:][:kc]
			for p := range kc {
				dp := (*[gemmMR]float32)(d[p*gemmMR:])
				dp[0], dp[1], dp[2], dp[3], dp[4], dp[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
			}
		default:
			clear(d)
			for r := 0; r < mr; r++ {
				src := a[(i+r)*lda+pc:][:kc]
				for p, v := range src {
					d[p*gemmMR+r] = v
				}
			}
		}
	}
}

// packB copies the kc×nc block of op(B) at (pc, jc) into dst as
// ⌈nc/gemmNR⌉ slivers; sliver s holds dst[s*gemmNR*kc + p*gemmNR + j] =
// op(B)[pc+p][jc+s*gemmNR+j], zero-padded past column nc.
func packB(dst []float32, trans bool, b []float32, ldb, pc, kc, jc, nc int) {
	for jr := 0; jr < nc; jr += gemmNR {
		nr := min(gemmNR, nc-jr)
		d := dst[jr*kc : jr*kc+kc*gemmNR]
		j := jc + jr
		if !trans {
			// op(B)[p][j] = b[p*ldb+j]: contiguous runs of columns.
			for p := 0; p < kc; p++ {
				dp := d[p*gemmNR : p*gemmNR+gemmNR]
				n := copy(dp[:nr], b[(pc+p)*ldb+j:][:nr])
				clear(dp[n:])
			}
			continue
		}
		// op(B)[p][j] = b[j*ldb+p]: each column of op(B) is a row of b.
		if nr < gemmNR {
			clear(d)
		}
		for r := 0; r < nr; r++ {
			src := b[(j+r)*ldb+pc:][:kc]
			for p, v := range src {
				d[p*gemmNR+r] = v
			}
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// workspace holds one worker's packing buffers, aligned to 64 bytes, and
// the scratch tile for the edges of C.
type workspace struct {
	a, b         []float32
	edgeA, edgeB []float32
	tile         [gemmMR * gemmNR]float32
}

func (ws *workspace) edgeABuf(n int) []float32 {
	if cap(ws.edgeA) < n {
		ws.edgeA = alignedFloats(n)
	}
	return ws.edgeA[:n]
}

func (ws *workspace) edgeBBuf(n int) []float32 {
	if cap(ws.edgeB) < n {
		ws.edgeB = alignedFloats(n)
	}
	return ws.edgeB[:n]
}

const cacheLine = 16 // float32s per 64-byte line

func (ws *workspace) aBuf(n int) []float32 {
	if cap(ws.a) < n {
		ws.a = alignedFloats(n)
	}
	return ws.a[:n]
}

func (ws *workspace) bBuf(n int) []float32 {
	if cap(ws.b) < n {
		ws.b = alignedFloats(n)
	}
	return ws.b[:n]
}

func alignedFloats(n int) []float32 {
	buf := make([]float32, n+cacheLine)
	off := 0
	for addrMod64(&buf[off]) != 0 {
		off++
	}
	return buf[off : off+n : off+n]
}

// Workspaces live on a free list rather than in a sync.Pool so that the
// megabyte-sized packing buffers survive garbage collections.
var (
	wsMu   sync.Mutex
	wsFree []*workspace
)

func getWorkspace() *workspace {
	wsMu.Lock()
	defer wsMu.Unlock()
	if n := len(wsFree); n > 0 {
		ws := wsFree[n-1]
		wsFree = wsFree[:n-1]
		return ws
	}
	return new(workspace)
}

func putWorkspace(ws *workspace) {
	wsMu.Lock()
	wsFree = append(wsFree, ws)
	wsMu.Unlock()
}

// gemmJob is one Sgemm call of the native backend. Each phase of drive is
// a set of tasks that the caller and the workers claim from state
// (generation<<32 | tasks<<16 | next task); a worker holding a stale
// notification sees another generation and claims nothing, so jobs are
// reused without allocation.
type gemmJob struct {
	nb             *native
	threads        int
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int

	mc, mblocks int       // row blocks of A
	pb          []float32 // packed panel of op(B), shared by all tasks
	jc, nc, nsl int       // current column panel and its slivers
	nsplit      int       // sliver runs per row block
	pc, kc      int       // current k slice
	stepBeta    float32   // beta for this k slice
	packing     bool      // phase: pack B, or multiply
	directA     bool      // read A in place instead of packing it
	directB     bool      // read B in place (no packing phase)
	allK        bool      // one phase; each task runs through all of k
	gemv        bool      // one phase of dot products (few rows, Bᵀ)
	state       atomic.Uint64
	gen         uint16
	wg          sync.WaitGroup
}

var jobPool = sync.Pool{New: func() any { return new(gemmJob) }}

type jobNote struct {
	j   *gemmJob
	gen uint16
}

var (
	workerMu       sync.Mutex
	workerCount    int
	workersStarted atomic.Int64 // workerCount, readable without workerMu
	workerQueue    = make(chan jobNote, 1024)
)

// ensureWorkers starts worker goroutines until there are n of them. They
// live for the rest of the process, parked on the queue when idle.
func ensureWorkers(n int) {
	if int(workersStarted.Load()) >= n {
		return
	}
	workerMu.Lock()
	defer workerMu.Unlock()
	for ; workerCount < n; workerCount++ {
		workersStarted.Add(1)
		go func() {
			for note := range workerQueue {
				note.j.work(note.gen, nil)
			}
		}()
	}
}

// run executes tasks 0..tasks-1 of the current phase on up to j.threads
// threads (the caller among them, using ws) and returns when all are done.
func (j *gemmJob) run(tasks int, ws *workspace) {
	j.gen++
	j.wg.Add(tasks)
	j.state.Store(uint64(j.gen)<<48 | uint64(tasks)<<24) // publishes the phase's fields
	if helpers := min(j.threads, tasks) - 1; helpers > 0 {
		ensureWorkers(j.threads - 1)
		for range helpers {
			select {
			case workerQueue <- jobNote{j, j.gen}:
			default: // queue full: the threads already here do the work
			}
		}
	}
	j.work(j.gen, ws)
	j.wg.Wait()
}

// work claims and runs tasks of generation gen until none are left. A
// worker passes ws == nil and borrows a workspace for its first task.
func (j *gemmJob) work(gen uint16, ws *workspace) {
	borrowed := false
	for {
		s := j.state.Load()
		next, tasks := s&taskMask, s>>24&taskMask
		if uint16(s>>48) != gen || next >= tasks {
			break
		}
		if !j.state.CompareAndSwap(s, s+1) {
			continue
		}
		if ws == nil {
			ws, borrowed = getWorkspace(), true
		}
		j.task(ws, int(next))
		j.wg.Done()
	}
	if borrowed {
		putWorkspace(ws)
	}
}

func addrMod64(p *float32) uintptr { return uintptr(unsafe.Pointer(p)) % 64 }
