package model

import (
	"fmt"
	"unsafe"

	"github.com/fedtune/fedtune/kernels"
)

// probsBudget bounds the memory a training engine spends on keeping
// attention probabilities (nHeads·n² per example per layer) for the
// backward pass.
const probsBudget = 1 << 30

// segment is one example's rows in a packed batch.
type segment struct{ start, n, probs int } // probs: offset in the kept attention probabilities

// gradTarget receives the LoRA gradient contributed by rows [start, end).
type gradTarget[F kernels.Float] struct {
	start, end int
	g          []F
}

// engine runs the decoder in precision F over packed batches. float32 is
// the production path; float64 runs the same code for gradient checks.
// All buffers are allocated once, for maxTok rows and sequences of at most
// maxSeq tokens.
type engine[F kernels.Float] struct {
	d  dims
	w  *weights[F]
	lo *loraW[F] // nil: base model only

	maxTok, maxSeq int
	backward       bool // backward buffers allocated

	cos, sin []F // rotary table for positions [0, maxSeq)

	h                                     [][]F // L+1 residual streams
	hm, xn1, xn2, q, k, v, att, g, u, act [][]F // per layer
	rs1, rs2                              [][]F
	rsf, xnf                              []F
	lu, xd                                [][numMods][]F // LoRA x·Aᵀ and dropped-out inputs
	logits, lossRow, lse, dloss           []F
	ids, tgt                              []int
	segs                                  []segment
	counts                                []int
	tg                                    []gradTarget[F]

	dh, dx, dq, datt, dk, dv, dact, dg, du, dU, dxd []F
	scratch                                         [][]F // per attention worker
	probs                                           [][]F // per layer attention probabilities kept for backward; nil: recompute

	pool                 *pool
	workers, attnWorkers int
	jNorm                normJob[F]
	jNormBack            normBackJob[F]
	jSwiGLU              swigluJob[F]
	jSwiGLUBack          swigluBackJob[F]
	jLoss                lossJob[F]
	jLossBack            lossBackJob[F]
	jAttn                attnJob[F]

	dropSeed, dropStep uint64

	clock          func() int64 // nil: no timing
	gemmNS, attnNS int64
}

func newEngine[F kernels.Float](d dims, w *weights[F], lo *loraW[F], maxBatch, maxSeq int, backward bool) *engine[F] {
	N := maxBatch * maxSeq
	e := &engine[F]{d: d, w: w, lo: lo, maxTok: N, maxSeq: maxSeq, backward: backward}
	half := d.HD / 2
	e.cos, e.sin = make([]F, maxSeq*half), make([]F, maxSeq*half)
	kernels.RopeTable(e.cos, e.sin, w.invFreq, 0, maxSeq)
	mk := func(n int) [][]F {
		s := make([][]F, d.L)
		for i := range s {
			s[i] = make([]F, n)
		}
		return s
	}
	e.h = make([][]F, d.L+1)
	for i := range e.h {
		e.h[i] = make([]F, N*d.D)
	}
	e.hm, e.xn1, e.xn2 = mk(N*d.D), mk(N*d.D), mk(N*d.D)
	e.q, e.att = mk(N*d.QD), mk(N*d.QD)
	e.k, e.v = mk(N*d.KVD), mk(N*d.KVD)
	e.g, e.u, e.act = mk(N*d.I), mk(N*d.I), mk(N*d.I)
	e.rs1, e.rs2 = mk(N), mk(N)
	e.rsf, e.xnf = make([]F, N), make([]F, N*d.D)
	e.lu = make([][numMods][]F, d.L)
	e.xd = make([][numMods][]F, d.L)
	maxIn := max(d.D, d.QD, d.I)
	if lo != nil {
		for l := range e.lu {
			for m := 0; m < numMods; m++ {
				if lo.mods[l][m].B == nil {
					continue
				}
				_, in := d.shape(m)
				e.lu[l][m] = make([]F, N*lo.r)
				if backward && lo.dropout > 0 {
					e.xd[l][m] = make([]F, N*in)
				}
			}
		}
	}
	e.logits = make([]F, N*d.V)
	e.lossRow, e.lse, e.dloss = make([]F, N), make([]F, N), make([]F, N)
	e.ids, e.tgt = make([]int, N), make([]int, N)
	e.segs = make([]segment, 0, maxBatch)
	e.counts = make([]int, maxBatch)
	e.tg = make([]gradTarget[F], 0, maxBatch)
	// Keep the attention probabilities for the backward pass when they fit
	// in probsBudget bytes; otherwise recompute them there.
	size := int64(unsafe.Sizeof(F(0)))
	if np := d.H * maxBatch * maxSeq * maxSeq; backward && int64(np)*int64(d.L)*size <= probsBudget {
		e.probs = mk(np)
	}
	e.workers = defaultWorkers()
	e.pool = newPool(e.workers)
	perWorker := 2 * maxSeq * maxSeq
	e.attnWorkers = int(max(1, min(int64(e.workers), int64(maxBatch), probsBudget/4/(int64(perWorker)*size))))
	e.scratch = make([][]F, e.attnWorkers)
	for i := range e.scratch {
		e.scratch[i] = make([]F, perWorker)
	}
	e.jAttn.e = e
	if backward {
		e.dh, e.dx = make([]F, N*d.D), make([]F, N*d.D)
		e.dq, e.datt = make([]F, N*d.QD), make([]F, N*d.QD)
		e.dk, e.dv = make([]F, N*d.KVD), make([]F, N*d.KVD)
		e.dact, e.dg, e.du = make([]F, N*d.I), make([]F, N*d.I), make([]F, N*d.I)
		if lo != nil {
			e.dU = make([]F, N*lo.r)
			if lo.dropout > 0 {
				e.dxd = make([]F, N*maxIn)
			}
		}
	}
	return e
}

// load packs a batch into ids, tgt and segs after validating it. Targets
// are shifted: row t of an example predicts Labels[t+1]; its last row
// predicts nothing.
func (e *engine[F]) load(batch []Example) (T int, err error) {
	if len(batch) > cap(e.segs) {
		return 0, fmt.Errorf("batch of %d examples exceeds the trainer's MaxBatch %d", len(batch), cap(e.segs))
	}
	e.segs = e.segs[:0]
	for i, ex := range batch {
		n := len(ex.InputIDs)
		if len(ex.Labels) != n {
			return 0, fmt.Errorf("example %d: %d input ids but %d labels", i, n, len(ex.Labels))
		}
		if n > e.maxSeq {
			return 0, fmt.Errorf("example %d: %d tokens exceed MaxSeq %d", i, n, e.maxSeq)
		}
		if err := e.d.checkLen(n); err != nil {
			return 0, fmt.Errorf("example %d: %v", i, err)
		}
		for t, id := range ex.InputIDs {
			if id < 0 || id >= e.d.V {
				return 0, fmt.Errorf("example %d input_ids: token %d at position %d is outside the vocabulary [0, %d)", i, id, t, e.d.V)
			}
		}
		cnt := 0
		for t, y := range ex.Labels {
			if y != kernels.IgnoreIndex && (y < 0 || y >= e.d.V) {
				return 0, fmt.Errorf("example %d: label %d at position %d is neither -100 nor in the vocabulary [0, %d)", i, y, t, e.d.V)
			}
			if t > 0 && y != kernels.IgnoreIndex {
				cnt++
			}
		}
		probsOff := 0
		if len(e.segs) > 0 {
			last := e.segs[len(e.segs)-1]
			probsOff = last.probs + e.d.H*last.n*last.n
		}
		copy(e.ids[T:], ex.InputIDs)
		for t := 0; t < n; t++ {
			if t+1 < n {
				e.tgt[T+t] = ex.Labels[t+1]
			} else {
				e.tgt[T+t] = kernels.IgnoreIndex
			}
		}
		e.segs = append(e.segs, segment{T, n, probsOff})
		e.counts[i] = cnt
		T += n
	}
	return T, nil
}

func (e *engine[F]) gemm(tA, tB bool, m, n, k int, alpha F, a []F, lda int, b []F, ldb int, beta F, c []F, ldc int) {
	if e.clock == nil {
		kernels.Gemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	t0 := e.clock()
	kernels.Gemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	e.gemmNS += e.clock() - t0
}

// dropoutKeep decides whether element (row, col) of the input of LoRA
// projection (l, m) survives dropout at the current step: a
// SplitMix64-style hash of (seed, step, l, m, row, col) compared with p.
// Dropout needs reproducibility, not secrecy; the masks carry no privacy
// guarantee and need none.
func dropoutKeep(seed, step uint64, l, m, row, col int, p float64) bool {
	x := seed ^ mix64(step+0x9e3779b97f4a7c15*uint64(l*numMods+m+1))
	x = mix64(x ^ uint64(row)<<32 ^ uint64(col))
	return float64(x>>11)/(1<<53) >= p
}

func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// dropout writes the inverted-dropout image of x (T×in) into xd: kept
// elements scaled by 1/(1−p) (Srivastava et al. 2014, §10 as in
// torch.nn.Dropout), dropped ones zero.
func (e *engine[F]) dropout(xd, x []F, T, in, l, m int) {
	p := e.lo.dropout
	inv := F(1 / (1 - p))
	for r := 0; r < T; r++ {
		for j := 0; j < in; j++ {
			if dropoutKeep(e.dropSeed, e.dropStep, l, m, r, j, p) {
				xd[r*in+j] = x[r*in+j] * inv
			} else {
				xd[r*in+j] = 0
			}
		}
	}
}

// dropoutBack adds the dropout mask's transpose applied to g into dx.
func (e *engine[F]) dropoutBack(dx, g []F, T, in, l, m int) {
	p := e.lo.dropout
	inv := F(1 / (1 - p))
	for r := 0; r < T; r++ {
		for j := 0; j < in; j++ {
			if dropoutKeep(e.dropSeed, e.dropStep, l, m, r, j, p) {
				dx[r*in+j] += g[r*in+j] * inv
			}
		}
	}
}

// linear computes y = x·Wᵀ + b + scale·drop(x)·Aᵀ·Bᵀ for T rows (Hu et al.
// 2021, eq. 3: h = W₀x + BAx, scaled by α/r), adding into y when acc.
// xd, when not nil, receives drop(x); u receives drop(x)·Aᵀ.
func (e *engine[F]) linear(y, x []F, T, l, m int, acc bool, u, xd []F) {
	out, in := e.d.shape(m)
	lw := &e.w.layers[l]
	var beta F
	if acc {
		beta = 1
	}
	e.gemm(false, true, T, out, in, 1, x, in, lw.w[m], in, beta, y, out)
	if b := lw.b[m]; b != nil {
		for r := 0; r < T; r++ {
			row := y[r*out : r*out+out]
			for j, v := range b {
				row[j] += v
			}
		}
	}
	if e.lo == nil || e.lo.mods[l][m].B == nil {
		return
	}
	lm := &e.lo.mods[l][m]
	r := e.lo.r
	xs := x
	if xd != nil {
		e.dropout(xd[:T*in], x, T, in, l, m)
		xs = xd
	}
	e.gemm(false, true, T, r, in, 1, xs, in, lm.A, in, 0, u, r)
	e.gemm(false, true, T, out, r, e.lo.scale, u, r, lm.B, r, 1, y, out)
}

// linearBack propagates dy (T×out) through [engine.linear]: it writes (or
// with acc adds) dx = dy·W + scale·mask⊙((dy·B)·A) when dx is not nil, and
// writes the LoRA gradients of each target's rows into its slice:
//
//	dB = scale · dyᵀ·u          (out×r)
//	dA = (scale · dy·B)ᵀ·drop(x) (r×in)
func (e *engine[F]) linearBack(dx []F, acc bool, dy, x []F, T, l, m int) {
	out, in := e.d.shape(m)
	lw := &e.w.layers[l]
	if dx != nil {
		var beta F
		if acc {
			beta = 1
		}
		e.gemm(false, false, T, in, out, 1, dy, out, lw.w[m], in, beta, dx, in)
	}
	if e.lo == nil || e.lo.mods[l][m].B == nil {
		return
	}
	lm := &e.lo.mods[l][m]
	r := e.lo.r
	u, xs := e.lu[l][m], x
	if e.xd[l][m] != nil {
		xs = e.xd[l][m]
	}
	dU := e.dU[:T*r]
	e.gemm(false, false, T, r, out, e.lo.scale, dy, out, lm.B, r, 0, dU, r)
	for _, t := range e.tg {
		n := t.end - t.start
		gB := t.g[lm.offB : lm.offB+out*r]
		var gA []F
		if lm.offA >= 0 {
			gA = t.g[lm.offA : lm.offA+r*in]
		}
		if n == 0 {
			clear(gB)
			clear(gA)
			continue
		}
		e.gemm(true, false, out, r, n, e.lo.scale, dy[t.start*out:], out, u[t.start*r:], r, 0, gB, r)
		if gA != nil {
			e.gemm(true, false, r, in, n, 1, dU[t.start*r:], r, xs[t.start*in:], in, 0, gA, in)
		}
	}
	if dx == nil {
		return
	}
	if e.xd[l][m] == nil {
		e.gemm(false, false, T, in, r, 1, dU, r, lm.A, in, 1, dx, in)
		return
	}
	tmp := e.dxd[:T*in]
	e.gemm(false, false, T, in, r, 1, dU, r, lm.A, in, 0, tmp, in)
	e.dropoutBack(dx, tmp, T, in, l, m)
}

// forward runs the packed batch loaded by [engine.load] and leaves
// per-row losses in lossRow. With train, LoRA dropout is applied and
// dropped inputs kept for backward.
func (e *engine[F]) forward(T int, train bool) {
	d := &e.d
	D := d.D
	kernels.Embedding(e.h[0][:T*D], e.w.embed, e.ids[:T], D)
	for l := 0; l < d.L; l++ {
		lw := &e.w.layers[l]
		h, hm, xn1, xn2 := e.h[l][:T*D], e.hm[l][:T*D], e.xn1[l][:T*D], e.xn2[l][:T*D]
		q, k, v, att := e.q[l][:T*d.QD], e.k[l][:T*d.KVD], e.v[l][:T*d.KVD], e.att[l][:T*d.QD]
		g, u, act := e.g[l][:T*d.I], e.u[l][:T*d.I], e.act[l][:T*d.I]
		xd := func(m int) []F {
			if train && e.lo != nil && e.lo.dropout > 0 {
				return e.xd[l][m]
			}
			return nil
		}
		e.norm(xn1, e.rs1[l], h, lw.inNorm, T)
		e.linear(q, xn1, T, l, modQ, false, e.lu[l][modQ], xd(modQ))
		e.linear(k, xn1, T, l, modK, false, e.lu[l][modK], xd(modK))
		e.linear(v, xn1, T, l, modV, false, e.lu[l][modV], xd(modV))
		var t0 int64
		if e.clock != nil {
			t0 = e.clock()
		}
		e.jAttn.l, e.jAttn.keep, e.jAttn.backward = l, train, false
		e.pool.do(&e.jAttn, len(e.segs), T*d.QD, e.attnWorkers)
		if e.clock != nil {
			e.attnNS += e.clock() - t0
		}
		copy(hm, h)
		e.linear(hm, att, T, l, modO, true, e.lu[l][modO], xd(modO))
		e.norm(xn2, e.rs2[l], hm, lw.postNorm, T)
		e.linear(g, xn2, T, l, modGate, false, e.lu[l][modGate], xd(modGate))
		e.linear(u, xn2, T, l, modUp, false, e.lu[l][modUp], xd(modUp))
		j := &e.jSwiGLU
		j.dst, j.g, j.u = act, g, u
		e.pool.do(j, len(act), 8, e.workers)
		copy(e.h[l+1][:T*D], hm)
		e.linear(e.h[l+1][:T*D], act, T, l, modDown, true, e.lu[l][modDown], xd(modDown))
	}
	e.norm(e.xnf[:T*D], e.rsf, e.h[d.L][:T*D], e.w.norm, T)
	e.gemm(false, true, T, d.V, D, 1, e.xnf, D, e.w.lmHead, D, 0, e.logits, d.V)
	// With train, CrossEntropySoftmax leaves softmax probabilities in the
	// logits for backwardPass.
	jl := &e.jLoss
	jl.loss, jl.lse, jl.logits, jl.tgt, jl.vocab, jl.fused = e.lossRow, e.lse, e.logits, e.tgt, d.V, train
	e.pool.do(jl, T, 3*d.V, e.workers)
}

// norm is kernels.RMSNorm over T rows of width D, split across workers.
func (e *engine[F]) norm(dst, rstd, x, w []F, T int) {
	j := &e.jNorm
	j.dst, j.rstd, j.x, j.w, j.dim, j.eps = dst, rstd, x, w, e.d.D, e.d.eps
	e.pool.do(j, T, 4*e.d.D, e.workers)
}

// normBack is kernels.RMSNormBackward (adding into dx, no weight gradient)
// over T rows, split across workers.
func (e *engine[F]) normBack(dx, dy, x, w, rstd []F, T int) {
	j := &e.jNormBack
	j.dx, j.dy, j.x, j.w, j.rstd, j.dim = dx, dy, x, w, rstd, e.d.D
	e.pool.do(j, T, 6*e.d.D, e.workers)
}

// losses writes each example's mean target-token loss.
func (e *engine[F]) losses(out []float64) {
	for i, s := range e.segs {
		var sum float64
		for r := s.start; r < s.start+s.n; r++ {
			sum += float64(e.lossRow[r])
		}
		if e.counts[i] > 0 {
			out[i] = sum / float64(e.counts[i])
		} else {
			out[i] = 0
		}
	}
}

// backwardPass propagates the gradient of Σ_i loss_i (loss_i the mean over
// example i's target tokens) from the logits down to every LoRA matrix,
// writing the gradients into the targets in e.tg. It follows a forward
// pass with train set, whose probabilities it overwrites with their
// gradient.
func (e *engine[F]) backwardPass(T int) {
	d := &e.d
	D := d.D
	for i, s := range e.segs {
		var w F
		if e.counts[i] > 0 {
			w = 1 / F(e.counts[i])
		}
		for r := s.start; r < s.start+s.n; r++ {
			e.dloss[r] = w
		}
	}
	jb := &e.jLossBack
	jb.probs, jb.dloss, jb.tgt, jb.vocab = e.logits, e.dloss, e.tgt, d.V
	e.pool.do(jb, T, d.V, e.workers)
	dh, dx := e.dh[:T*D], e.dx[:T*D]
	e.gemm(false, false, T, D, d.V, 1, e.logits, d.V, e.w.lmHead, D, 0, dx, D)
	clear(dh)
	e.normBack(dh, dx, e.h[d.L][:T*D], e.w.norm, e.rsf, T)
	dq, dk, dv, datt := e.dq[:T*d.QD], e.dk[:T*d.KVD], e.dv[:T*d.KVD], e.datt[:T*d.QD]
	dact, dg, du := e.dact[:T*d.I], e.dg[:T*d.I], e.du[:T*d.I]
	for l := d.L - 1; l >= 0; l-- {
		lw := &e.w.layers[l]
		// h[l+1] = hm + down(SwiGLU(gate(xn2), up(xn2))), xn2 = norm(hm)
		e.linearBack(dact, false, dh, e.act[l][:T*d.I], T, l, modDown)
		js := &e.jSwiGLUBack
		js.dg, js.du, js.dy, js.g, js.u = dg, du, dact, e.g[l][:T*d.I], e.u[l][:T*d.I]
		e.pool.do(js, len(dg), 10, e.workers)
		e.linearBack(dx, false, dg, e.xn2[l][:T*D], T, l, modGate)
		e.linearBack(dx, true, du, e.xn2[l][:T*D], T, l, modUp)
		e.normBack(dh, dx, e.hm[l][:T*D], lw.postNorm, e.rs2[l], T)
		// hm = h + o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1))), xn1 = norm(h)
		e.linearBack(datt, false, dh, e.att[l][:T*d.QD], T, l, modO)
		var t0 int64
		if e.clock != nil {
			t0 = e.clock()
		}
		e.jAttn.l, e.jAttn.keep, e.jAttn.backward = l, false, true
		e.pool.do(&e.jAttn, len(e.segs), T*d.QD, e.attnWorkers)
		if e.clock != nil {
			e.attnNS += e.clock() - t0
		}
		var dxl []F // the embeddings are frozen: layer 0 needs no input gradient
		if l > 0 {
			dxl = dx
		}
		e.linearBack(dxl, false, dq, e.xn1[l][:T*D], T, l, modQ)
		e.linearBack(dxl, true, dk, e.xn1[l][:T*D], T, l, modK)
		e.linearBack(dxl, true, dv, e.xn1[l][:T*D], T, l, modV)
		if l > 0 {
			e.normBack(dh, dx, e.h[l][:T*D], lw.inNorm, e.rs1[l], T)
		}
	}
}
