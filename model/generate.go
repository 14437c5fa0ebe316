package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/fedtune/fedtune/kernels"
)

// GenerateOptions controls [Model.Generate].
type GenerateOptions struct {
	// MaxNewTokens is the most tokens to generate.
	MaxNewTokens int
	// Temperature divides the logits before sampling; 0 means greedy
	// decoding (argmax, ties to the lowest id).
	Temperature float64
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (nucleus sampling, Holtzman et al. 2020, eq. 2); 0 or 1
	// keeps all.
	TopP float64
	// Seed makes sampling reproducible. Sampling is not security relevant.
	Seed uint64
	// EOS lists end-of-sequence ids: generation stops after emitting one.
	EOS []int
	// OnToken, when not nil, is called with each new token as it is
	// chosen (for streaming output and progress).
	OnToken func(tok int)
}

// kvCache holds the keys (after RoPE) and values of every layer for the
// positions processed so far.
type kvCache[F kernels.Float] struct {
	k, v [][]F
	n    int
}

func newKVCache[F kernels.Float](d *dims, capacity int) *kvCache[F] {
	c := &kvCache[F]{k: make([][]F, d.L), v: make([][]F, d.L)}
	for l := range c.k {
		c.k[l] = make([]F, capacity*d.KVD)
		c.v[l] = make([]F, capacity*d.KVD)
	}
	return c
}

// decodeWork holds decode's buffers for chunks of up to rows tokens and
// caches of up to capacity positions.
type decodeWork[F kernels.Float] struct {
	x, xn, rs, q, att, g, u, lu, cos, sin, scratch, logits []F
}

func newDecodeWork[F kernels.Float](d *dims, r, rows, capacity int) *decodeWork[F] {
	return &decodeWork[F]{
		x: make([]F, rows*d.D), xn: make([]F, rows*d.D), rs: make([]F, rows),
		q: make([]F, rows*d.QD), att: make([]F, rows*d.QD), g: make([]F, rows*d.I), u: make([]F, rows*d.I),
		lu: make([]F, rows*r), cos: make([]F, rows*d.HD/2), sin: make([]F, rows*d.HD/2),
		scratch: make([]F, rows*capacity), logits: make([]F, rows*d.V),
	}
}

// decode runs tokens at positions c.n … c.n+len(tokens)−1 against the
// cache, appends their keys and values, and returns the logits of every
// new position (len(tokens)×V, valid until the next call). No dropout is
// applied. ws must have room for len(tokens) rows.
func (e *engine[F]) decode(c *kvCache[F], tokens []int, ws *decodeWork[F]) []F {
	d := &e.d
	n, pos := len(tokens), c.n
	D := d.D
	x, xn, rs := ws.x[:n*D], ws.xn[:n*D], ws.rs[:n]
	q, att := ws.q[:n*d.QD], ws.att[:n*d.QD]
	g, u := ws.g[:n*d.I], ws.u[:n*d.I]
	lu := ws.lu
	half := d.HD / 2
	cos, sin := ws.cos[:n*half], ws.sin[:n*half]
	kernels.RopeTable(cos, sin, e.w.invFreq, pos, n)
	scratch := ws.scratch[:n*(pos+n)]
	kernels.Embedding(x, e.w.embed, tokens, D)
	for l := 0; l < d.L; l++ {
		lw := &e.w.layers[l]
		k := c.k[l][pos*d.KVD : (pos+n)*d.KVD]
		v := c.v[l][pos*d.KVD : (pos+n)*d.KVD]
		kernels.RMSNorm(xn, rs, x, lw.inNorm, n, D, d.eps)
		e.linear(q, xn, n, l, modQ, false, lu, nil)
		e.linear(k, xn, n, l, modK, false, lu, nil)
		e.linear(v, xn, n, l, modV, false, lu, nil)
		kernels.RoPE(q, n, d.H, d.HD, cos, sin)
		kernels.RoPE(k, n, d.KV, d.HD, cos, sin)
		kernels.Attention(att, q, c.k[l][:(pos+n)*d.KVD], c.v[l][:(pos+n)*d.KVD], n, pos+n, d.H, d.KV, d.HD, scratch)
		e.linear(x, att, n, l, modO, true, lu, nil)
		kernels.RMSNorm(xn, rs, x, lw.postNorm, n, D, d.eps)
		e.linear(g, xn, n, l, modGate, false, lu, nil)
		e.linear(u, xn, n, l, modUp, false, lu, nil)
		kernels.SwiGLU(g, g, u)
		e.linear(x, g, n, l, modDown, true, lu, nil)
	}
	c.n += n
	kernels.RMSNorm(xn, rs, x, e.w.norm, n, D, d.eps)
	logits := ws.logits[:n*d.V]
	e.gemm(false, true, n, d.V, D, 1, xn, D, e.w.lmHead, D, 0, logits, d.V)
	return logits
}

// Logits runs tokens through the model with adapter a (nil: the base
// model) and returns one row of vocabulary logits per position.
func (m *Model) Logits(a *Adapter, tokens []int) ([][]float32, error) {
	if err := m.d.checkTokens("tokens", tokens); err != nil {
		return nil, err
	}
	if err := m.d.checkLen(len(tokens)); err != nil {
		return nil, err
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("tokens: empty")
	}
	a.check(m)
	e := newEngine(m.d, &m.w, loraOf(a), 1, len(tokens), false)
	defer e.pool.stop()
	labels := make([]int, len(tokens))
	for i := range labels {
		labels[i] = kernels.IgnoreIndex
	}
	T, err := e.load([]Example{{InputIDs: tokens, Labels: labels}})
	if err != nil {
		return nil, err
	}
	e.forward(T, false)
	out := make([][]float32, T)
	for i := range out {
		out[i] = e.logits[i*m.d.V : (i+1)*m.d.V : (i+1)*m.d.V]
	}
	return out, nil
}

func loraOf(a *Adapter) *loraW[float32] {
	if a == nil {
		return nil
	}
	return &a.lw
}

// Generate continues prompt with adapter a (nil: the base model), using a
// key/value cache, and returns the new tokens (ending with an EOS id when
// one was produced).
func (m *Model) Generate(a *Adapter, prompt []int, opts GenerateOptions) ([]int, error) {
	return m.generate(a, prompt, opts, nil)
}

// generate is Generate with a hook that sees the logits each new token was
// drawn from.
func (m *Model) generate(a *Adapter, prompt []int, opts GenerateOptions, seen func([]float32)) ([]int, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	if err := m.d.checkTokens("prompt", prompt); err != nil {
		return nil, err
	}
	if opts.MaxNewTokens < 0 {
		return nil, fmt.Errorf("generate: MaxNewTokens %d is negative", opts.MaxNewTokens)
	}
	if opts.Temperature < 0 || math.IsNaN(opts.Temperature) {
		return nil, fmt.Errorf("generate: temperature %v is negative", opts.Temperature)
	}
	if opts.TopP < 0 || opts.TopP > 1 || math.IsNaN(opts.TopP) {
		return nil, fmt.Errorf("generate: top-p %v is outside [0, 1]", opts.TopP)
	}
	total := len(prompt) + opts.MaxNewTokens
	if err := m.d.checkLen(total); err != nil {
		return nil, err
	}
	a.check(m)
	e := &engine[float32]{d: m.d, w: &m.w, lo: loraOf(a)}
	cache := newKVCache[float32](&m.d, total)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x6765_6e65_7261_7465))
	r := 0
	if a != nil {
		r = a.Config.R
	}
	ws := newDecodeWork[float32](&m.d, r, len(prompt), total)
	var out []int
	logits := e.decode(cache, prompt, ws)
	last := logits[(len(prompt)-1)*m.d.V:]
	probs := make([]float64, m.d.V)
	idx := make([]int, m.d.V)
	var next [1]int
	for len(out) < opts.MaxNewTokens {
		if seen != nil {
			seen(last)
		}
		tok := sample(last, opts, rng, probs, idx)
		out = append(out, tok)
		if opts.OnToken != nil {
			opts.OnToken(tok)
		}
		if slices.Contains(opts.EOS, tok) || len(out) == opts.MaxNewTokens {
			break
		}
		next[0] = tok
		last = e.decode(cache, next[:], ws)
	}
	return out, nil
}

// sample draws a token from logits: argmax when greedy, else softmax of
// logits/temperature restricted to the top-p nucleus.
func sample(logits []float32, o GenerateOptions, rng *rand.Rand, probs []float64, idx []int) int {
	if o.Temperature == 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var z float64
	for i, v := range logits {
		probs[i] = math.Exp((float64(v) - mx) / o.Temperature)
		z += probs[i]
		idx[i] = i
	}
	for i := range probs {
		probs[i] /= z
	}
	n := len(probs)
	if o.TopP > 0 && o.TopP < 1 {
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case probs[a] > probs[b]:
				return -1
			case probs[a] < probs[b]:
				return 1
			}
			return 0
		})
		var cum float64
		for i, t := range idx {
			cum += probs[t]
			if cum >= o.TopP {
				n = i + 1
				break
			}
		}
	}
	var mass float64
	for _, t := range idx[:n] {
		mass += probs[t]
	}
	u := rng.Float64() * mass
	for _, t := range idx[:n] {
		u -= probs[t]
		if u < 0 {
			return t
		}
	}
	return idx[n-1]
}
