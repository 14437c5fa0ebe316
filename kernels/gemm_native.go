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

// maxBlocks bounds how many blocks one call splits into (the block counter
// of gemmJob.state has 16 bits).
const maxBlocks = 1 << 15

// microKernel computes C[0:gemmMR, 0:gemmNR] = alpha*Â*B̂ + beta*C where Â
// is kc packed columns of gemmMR values and B̂ kc packed rows of gemmNR
// values (Â[p*gemmMR+r] = op(A)[r][p], B̂[p*gemmNR+j] = op(B)[p][j]). With
// beta == 0 it does not read C. c holds the tile's first element and rows
// are ldc apart.
type microKernel func(kc int, alpha float32, a, b []float32, beta float32, c []float32, ldc int)

// native is the packed, cache-blocked SGEMM driver around one
// micro-kernel.
type native struct {
	name   string
	kernel microKernel
}

var nativeBackend Backend = &native{name: "native", kernel: bestKernel}

var nativeGoBackend Backend = &native{name: "native-go", kernel: kernelGo}

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
	if m*n*k <= gemmSmall {
		sgemmRef(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	t := Threads()
	if w := m * n * k / gemmMinPerThread; w < t {
		t = max(w, 1)
	}
	t = min(t, maxBlocks)
	mt := (m + gemmMR - 1) / gemmMR
	nt := (n + gemmNR - 1) / gemmNR
	tm, tn := splitGrid(t, mt, nt)
	if tm*tn == 1 {
		ws := getWorkspace()
		nb.block(ws, transA, transB, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		putWorkspace(ws)
		return
	}
	j := jobPool.Get().(*gemmJob)
	j.nb = nb
	j.transA, j.transB = transA, transB
	j.m, j.n, j.k = m, n, k
	j.alpha, j.beta = alpha, beta
	j.a, j.b, j.c = a, b, c
	j.lda, j.ldb, j.ldc = lda, ldb, ldc
	j.tm, j.tn, j.mt, j.nt = tm, tn, mt, nt
	j.run(tm * tn)
	j.a, j.b, j.c, j.nb = nil, nil, nil, nil
	jobPool.Put(j)
}

// splitGrid chooses tm×tn ≤ t worker blocks over a grid of mt×nt register
// tiles. It minimises the largest block (tiles per worker), then the
// packing that blocks repeat (each of the tn block columns packs all m rows
// of A, each of the tm block rows all n columns of B), then prefers to
// split n.
func splitGrid(t, mt, nt int) (tm, tn int) {
	bestLoad, bestPack := -1, 0
	for cm := 1; cm <= t; cm++ {
		cn := t / cm
		if cm > mt || cn > nt || cn < 1 {
			continue
		}
		load := ((mt + cm - 1) / cm) * ((nt + cn - 1) / cn)
		pack := cn*mt*gemmMR + cm*nt*gemmNR
		if bestLoad < 0 || load < bestLoad || (load == bestLoad && (pack < bestPack || (pack == bestPack && cn > tn))) {
			bestLoad, bestPack, tm, tn = load, pack, cm, cn
		}
	}
	if bestLoad < 0 {
		return 1, 1
	}
	return tm, tn
}

// block computes rows i0..i1 and columns j0..j1 of C with the BLIS loop
// nest: jc over nc-wide panels, pc over kc-deep slices (packing B), ic over
// mc-tall blocks (packing A), then the macro-kernel. i0 is a multiple of
// gemmMR and j0 of gemmNR, so register tiles sit on the same global grid
// for any split and results do not depend on the thread count.
func (nb *native) block(ws *workspace, transA, transB bool, i0, i1, j0, j1, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ncMax := min(gemmNC, roundUp(j1-j0, gemmNR))
	kcMax := min(gemmKC, k)
	mcMax := min(gemmMC, roundUp(i1-i0, gemmMR))
	pb := ws.bBuf(ncMax * kcMax)
	pa := ws.aBuf(mcMax * kcMax)
	for jc := j0; jc < j1; jc += gemmNC {
		nc := min(gemmNC, j1-jc)
		for pc := 0; pc < k; pc += gemmKC {
			kc := min(gemmKC, k-pc)
			packB(pb, transB, b, ldb, pc, kc, jc, nc)
			bet := beta
			if pc > 0 {
				bet = 1
			}
			for ic := i0; ic < i1; ic += gemmMC {
				mc := min(gemmMC, i1-ic)
				packA(pa, transA, a, lda, ic, mc, pc, kc)
				nb.macro(ws, kc, mc, nc, alpha, pa, pb, bet, c[ic*ldc+jc:], ldc)
			}
		}
	}
}

// macro runs the micro-kernel over an mc×nc block of C from packed A and
// B. Tiles that stick out of C go through a scratch tile so that nothing
// outside the window is read or written.
func (nb *native) macro(ws *workspace, kc, mc, nc int, alpha float32, pa, pb []float32, beta float32, c []float32, ldc int) {
	tmp := &ws.tile
	for jr := 0; jr < nc; jr += gemmNR {
		nr := min(gemmNR, nc-jr)
		bp := pb[jr*kc : jr*kc+kc*gemmNR]
		for ir := 0; ir < mc; ir += gemmMR {
			mr := min(gemmMR, mc-ir)
			ap := pa[ir*kc : ir*kc+kc*gemmMR]
			if mr == gemmMR && nr == gemmNR {
				nb.kernel(kc, alpha, ap, bp, beta, c[ir*ldc+jr:], ldc)
				continue
			}
			nb.kernel(kc, alpha, ap, bp, 0, tmp[:], gemmNR)
			for r := 0; r < mr; r++ {
				row := c[(ir+r)*ldc+jr : (ir+r)*ldc+jr+nr]
				t := tmp[r*gemmNR : r*gemmNR+nr]
				if beta == 0 {
					copy(row, t)
					continue
				}
				for j := range row {
					row[j] = t[j] + beta*row[j]
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
	a, b []float32
	tile [gemmMR * gemmNR]float32
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

// gemmJob is one parallel Sgemm call split into tm×tn blocks. The caller
// and the workers claim blocks from state (generation<<32 | blocks<<16 |
// next block); a worker holding a stale notification sees another
// generation and claims nothing, so jobs can be reused without allocation.
type gemmJob struct {
	nb             *native
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
	tm, tn, mt, nt int

	state atomic.Uint64
	gen   uint32
	wg    sync.WaitGroup
}

var jobPool = sync.Pool{New: func() any { return new(gemmJob) }}

type jobNote struct {
	j   *gemmJob
	gen uint32
}

var (
	workerMu    sync.Mutex
	workerCount int
	workerQueue = make(chan jobNote, 1024)
)

// ensureWorkers starts worker goroutines until there are n of them. They
// live for the rest of the process, parked on the queue when idle.
func ensureWorkers(n int) {
	workerMu.Lock()
	defer workerMu.Unlock()
	for ; workerCount < n; workerCount++ {
		go func() {
			for note := range workerQueue {
				note.j.work(note.gen)
			}
		}()
	}
}

func (j *gemmJob) run(blocks int) {
	j.gen++
	j.wg.Add(blocks)
	j.state.Store(uint64(j.gen)<<32 | uint64(blocks)<<16) // publishes the fields above
	ensureWorkers(blocks - 1)
	for range blocks - 1 {
		select {
		case workerQueue <- jobNote{j, j.gen}:
		default: // queue full: the caller does the work itself
		}
	}
	j.work(j.gen)
	j.wg.Wait()
}

// work claims and computes blocks of generation gen until none are left.
func (j *gemmJob) work(gen uint32) {
	var ws *workspace
	for {
		s := j.state.Load()
		next, blocks := s&0xffff, s>>16&0xffff
		if uint32(s>>32) != gen || next >= blocks {
			break
		}
		if !j.state.CompareAndSwap(s, s+1) {
			continue
		}
		if ws == nil {
			ws = getWorkspace()
		}
		j.doBlock(ws, int(next))
		j.wg.Done()
	}
	if ws != nil {
		putWorkspace(ws)
	}
}

// doBlock computes block idx of the tm×tn grid. Block edges fall on
// register-tile boundaries.
func (j *gemmJob) doBlock(ws *workspace, idx int) {
	bi, bj := idx/j.tn, idx%j.tn
	i0 := min(j.m, j.mt*bi/j.tm*gemmMR)
	i1 := min(j.m, j.mt*(bi+1)/j.tm*gemmMR)
	j0 := min(j.n, j.nt*bj/j.tn*gemmNR)
	j1 := min(j.n, j.nt*(bj+1)/j.tn*gemmNR)
	if i0 >= i1 || j0 >= j1 {
		return
	}
	j.nb.block(ws, j.transA, j.transB, i0, i1, j0, j1, j.k, j.alpha, j.a, j.lda, j.b, j.ldb, j.beta, j.c, j.ldc)
}

func addrMod64(p *float32) uintptr { return uintptr(unsafe.Pointer(p)) % 64 }
