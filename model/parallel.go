package model

import (
	"runtime"
	"sync"

	"github.com/fedtune/fedtune/kernels"
)

// rangeJob is work over the items [0, n) that can be split into ranges;
// w identifies the range's worker (0 ≤ w < workers) for per-worker scratch.
type rangeJob interface{ run(w, lo, hi int) }

type poolTask struct {
	j         rangeJob
	w, lo, hi int
}

// pool runs rangeJobs on a fixed set of goroutines. Jobs are preallocated
// structs passed as interfaces, so dispatching allocates nothing. Each
// range is computed exactly as the serial loop would compute it, so
// results do not depend on the number of workers.
type pool struct {
	n        int
	work     chan poolTask
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// newPool starts n−1 worker goroutines (the caller is the n-th). They exit
// when stop is called.
func newPool(n int) *pool {
	p := &pool{n: n}
	if n > 1 {
		p.work = make(chan poolTask, n)
		for i := 1; i < n; i++ {
			go p.loop(p.work)
		}
	}
	return p
}

func (p *pool) loop(work chan poolTask) {
	for t := range work {
		t.j.run(t.w, t.lo, t.hi)
		p.wg.Done()
	}
}

// stop ends the workers; it may be called more than once.
func (p *pool) stop() {
	p.stopOnce.Do(func() {
		if p.work != nil {
			close(p.work)
		}
	})
}

// minParallelWork is the least number of scalar operations worth splitting
// across workers.
const minParallelWork = 1 << 15

// do runs j over [0, n) split into at most maxWorkers contiguous ranges,
// serially when the work (n·cost) is small.
func (p *pool) do(j rangeJob, n, cost, maxWorkers int) {
	k := min(p.n, n, maxWorkers)
	if k <= 1 || n*cost < minParallelWork {
		j.run(0, 0, n)
		return
	}
	p.wg.Add(k - 1)
	for w := 1; w < k; w++ {
		p.work <- poolTask{j, w, w * n / k, (w + 1) * n / k}
	}
	j.run(0, 0, n/k)
	p.wg.Wait()
}

func defaultWorkers() int { return max(1, min(runtime.GOMAXPROCS(0), kernels.Threads())) }

// Jobs of the engine. Their fields are set right before each dispatch.

type normJob[F kernels.Float] struct {
	dst, rstd, x, w []F
	dim             int
	eps             float64
}

func (j *normJob[F]) run(_, lo, hi int) {
	d := j.dim
	kernels.RMSNorm(j.dst[lo*d:hi*d], j.rstd[lo:hi], j.x[lo*d:hi*d], j.w, hi-lo, d, j.eps)
}

type normBackJob[F kernels.Float] struct {
	dx, dy, x, w, rstd []F
	dim                int
}

func (j *normBackJob[F]) run(_, lo, hi int) {
	d := j.dim
	kernels.RMSNormBackward(j.dx[lo*d:hi*d], nil, j.dy[lo*d:hi*d], j.x[lo*d:hi*d], j.w, j.rstd[lo:hi], hi-lo, d)
}

type swigluJob[F kernels.Float] struct{ dst, g, u []F }

func (j *swigluJob[F]) run(_, lo, hi int) { kernels.SwiGLU(j.dst[lo:hi], j.g[lo:hi], j.u[lo:hi]) }

type swigluBackJob[F kernels.Float] struct{ dg, du, dy, g, u []F }

func (j *swigluBackJob[F]) run(_, lo, hi int) {
	kernels.SwiGLUBackward(j.dg[lo:hi], j.du[lo:hi], j.dy[lo:hi], j.g[lo:hi], j.u[lo:hi])
}

type lossJob[F kernels.Float] struct {
	loss, lse, logits []F
	tgt               []int
	vocab             int
	fused             bool // CrossEntropySoftmax (training) or CrossEntropy
}

func (j *lossJob[F]) run(_, lo, hi int) {
	v := j.vocab
	if j.fused {
		kernels.CrossEntropySoftmax(j.loss[lo:hi], j.logits[lo*v:hi*v], j.tgt[lo:hi], hi-lo, v)
	} else {
		kernels.CrossEntropy(j.loss[lo:hi], j.lse[lo:hi], j.logits[lo*v:hi*v], j.tgt[lo:hi], hi-lo, v)
	}
}

type lossBackJob[F kernels.Float] struct {
	probs, dloss []F
	tgt          []int
	vocab        int
}

func (j *lossBackJob[F]) run(_, lo, hi int) {
	v := j.vocab
	kernels.CrossEntropySoftmaxBackward(j.probs[lo*v:hi*v], j.tgt[lo:hi], j.dloss[lo:hi], hi-lo, v)
}

// attnJob runs RoPE and attention (or their backward passes) for a range
// of the batch's examples.
type attnJob[F kernels.Float] struct {
	e        *engine[F]
	l        int
	keep     bool // forward: keep probabilities in e.probs
	backward bool
}

func (j *attnJob[F]) run(w, lo, hi int) {
	e, d, l := j.e, &j.e.d, j.l
	q, k, v := e.q[l], e.k[l], e.v[l]
	for _, s := range e.segs[lo:hi] {
		a, b := s.start*d.QD, (s.start+s.n)*d.QD
		c, f := s.start*d.KVD, (s.start+s.n)*d.KVD
		var probs []F
		if e.probs != nil && (j.keep || j.backward) {
			probs = e.probs[l][s.probs : s.probs+d.H*s.n*s.n]
		}
		if !j.backward {
			kernels.RoPE(q[a:b], s.n, d.H, d.HD, e.cos, e.sin)
			kernels.RoPE(k[c:f], s.n, d.KV, d.HD, e.cos, e.sin)
			if probs == nil {
				probs = e.scratch[w]
			}
			kernels.Attention(e.att[l][a:b], q[a:b], k[c:f], v[c:f], s.n, s.n, d.H, d.KV, d.HD, probs)
			continue
		}
		kernels.AttentionBackward(e.dq[a:b], e.dk[c:f], e.dv[c:f], e.datt[a:b], q[a:b], k[c:f], v[c:f], s.n, s.n, d.H, d.KV, d.HD, probs, e.scratch[w])
		kernels.RoPEBackward(e.dq[a:b], s.n, d.H, d.HD, e.cos, e.sin)
		kernels.RoPEBackward(e.dk[c:f], s.n, d.KV, d.HD, e.cos, e.sin)
	}
}
