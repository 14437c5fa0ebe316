package kernels

import "math"

// Attention computes causal scaled dot-product attention (Vaswani et al.
// 2017, eq. 1: softmax(QKᵀ/√d)V) with grouped-query heads (Ainslie et al.
// 2023): query head h reads key/value head h/(nHeads/nKV).
//
// q and out are nq×(nHeads·headDim), k and v are nk×(nKV·headDim), all
// row-major with heads side by side as in the q_proj/k_proj/v_proj outputs
// of a Llama layer. The queries are the last nq of nk positions: query i
// sits at position off = nk−nq+i and attends keys 0 … off, so nq == nk is a
// whole sequence and nq < nk continues one held in a key/value cache.
// probs receives the attention probabilities: it must hold at least nq·nk
// elements (reused for every head), or nHeads·nq·nk to keep head h's nq×nk
// probabilities at probs[h·nq·nk:] for [AttentionBackward]. Reference loop:
//
//	for h := 0; h < nHeads; h++ {
//		g := h / (nHeads / nKV)
//		for i := 0; i < nq; i++ {
//			off := nk - nq + i
//			for j := 0; j <= off; j++ {
//				s[j] = dot(q[i, h, :], k[j, g, :]) / sqrt(headDim)
//			}
//			p := softmax(s[:off+1])
//			for d := 0; d < headDim; d++ {
//				out[i, h, d] = Σ_{j≤off} p[j] * v[j, g, d]
//			}
//		}
//	}
func Attention[F Float](out, q, k, v []F, nq, nk, nHeads, nKV, headDim int, probs []F) {
	checkAttention(len(out), len(q), len(k), len(v), nq, nk, nHeads, nKV, headDim)
	if len(probs) < nq*nk {
		panic("kernels: Attention probs too short")
	}
	if nq == 0 {
		return
	}
	qd, kd := nHeads*headDim, nKV*headDim
	group := nHeads / nKV
	scale := F(1 / math.Sqrt(float64(headDim)))
	keep := len(probs) >= nHeads*nq*nk
	for h := 0; h < nHeads; h++ {
		g := h / group
		p := probs[:nq*nk]
		if keep {
			p = probs[h*nq*nk : (h+1)*nq*nk]
		}
		attentionProbs(p, q[h*headDim:], k[g*headDim:], nq, nk, qd, kd, headDim, scale)
		// out_h = P V_g, by query blocks: block rows see keys [0, kn) only.
		for q0 := 0; q0 < nq; q0 += attnBlock {
			q1, kn := causalBlock(q0, nq, nk)
			Gemm(false, false, q1-q0, headDim, kn, 1, p[q0*nk:], nk, v[g*headDim:], kd, 0, out[q0*qd+h*headDim:], qd)
		}
	}
}

// attnBlock is the number of query rows attention processes at a time.
// Causality lets a block skip the keys after its last row, which halves
// the work of long sequences.
var attnBlock = 64

// causalBlock returns the end of the query block starting at q0 and the
// number of keys its rows attend.
func causalBlock(q0, nq, nk int) (q1, kn int) {
	q1 = min(q0+attnBlock, nq)
	return q1, nk - nq + q1
}

// attentionProbs writes P = causal softmax(scale·Q_h K_gᵀ) into p (nq×nk),
// with zeros above the causal diagonal.
func attentionProbs[F Float](p, qh, kg []F, nq, nk, qd, kd, headDim int, scale F) {
	for q0 := 0; q0 < nq; q0 += attnBlock {
		q1, kn := causalBlock(q0, nq, nk)
		Gemm(false, true, q1-q0, kn, headDim, scale, qh[q0*qd:], qd, kg, kd, 0, p[q0*nk:], nk)
	}
	for i := 0; i < nq; i++ {
		off := nk - nq + i
		row := p[i*nk : i*nk+nk]
		softmaxRow(row[:off+1], row[:off+1])
		clear(row[off+1:])
	}
}

// AttentionBackward computes the gradients of [Attention] with respect to
// q, k and v from dout, overwriting dq, dk and dv (shaped like q, k, v).
// With P the causal attention probabilities of head h and S = P's logits:
//
//	dV_g += Pᵀ·dO_h
//	dP    = dO_h·V_gᵀ
//	dS    = P ⊙ (dP − rowsum(P ⊙ dP))          (softmax backward)
//	dQ_h  = dS·K_g / √headDim
//	dK_g += dSᵀ·Q_h / √headDim
//
// probs holds the nHeads·nq·nk probabilities kept by [Attention], or is nil
// to recompute them from q and k. scratch must hold at least nq·nk
// elements, 2·nq·nk when probs is nil.
func AttentionBackward[F Float](dq, dk, dv, dout, q, k, v []F, nq, nk, nHeads, nKV, headDim int, probs, scratch []F) {
	checkAttention(len(dout), len(q), len(k), len(v), nq, nk, nHeads, nKV, headDim)
	if len(dq) < nq*nHeads*headDim || len(dk) < nk*nKV*headDim || len(dv) < nk*nKV*headDim {
		panic("kernels: AttentionBackward gradient slices too short")
	}
	if (probs == nil && len(scratch) < 2*nq*nk) || len(scratch) < nq*nk || (probs != nil && len(probs) < nHeads*nq*nk) {
		panic("kernels: AttentionBackward probs or scratch too short")
	}
	qd, kd := nHeads*headDim, nKV*headDim
	clear(dk[:nk*kd])
	clear(dv[:nk*kd])
	if nq == 0 {
		return
	}
	group := nHeads / nKV
	scale := F(1 / math.Sqrt(float64(headDim)))
	dp := scratch[:nq*nk]
	for h := 0; h < nHeads; h++ {
		g := h / group
		var p []F
		if probs != nil {
			p = probs[h*nq*nk : (h+1)*nq*nk]
		} else {
			p = scratch[nq*nk : 2*nq*nk]
			attentionProbs(p, q[h*headDim:], k[g*headDim:], nq, nk, qd, kd, headDim, scale)
		}
		for q0 := 0; q0 < nq; q0 += attnBlock {
			q1, kn := causalBlock(q0, nq, nk)
			m := q1 - q0
			Gemm(true, false, kn, headDim, m, 1, p[q0*nk:], nk, dout[q0*qd+h*headDim:], qd, 1, dv[g*headDim:], kd)
			Gemm(false, true, m, kn, headDim, 1, dout[q0*qd+h*headDim:], qd, v[g*headDim:], kd, 0, dp[q0*nk:], nk)
			for i := q0; i < q1; i++ {
				off := nk - nq + i
				softmaxBackRow(dp[i*nk:i*nk+off+1], dp[i*nk:i*nk+off+1], p[i*nk:i*nk+off+1])
				clear(dp[i*nk+off+1 : i*nk+kn])
			}
			Gemm(false, false, m, headDim, kn, scale, dp[q0*nk:], nk, k[g*headDim:], kd, 0, dq[q0*qd+h*headDim:], qd)
			Gemm(true, false, kn, headDim, m, scale, dp[q0*nk:], nk, q[q0*qd+h*headDim:], qd, 1, dk[g*headDim:], kd)
		}
	}
}

func checkAttention(lout, lq, lk, lv, nq, nk, nHeads, nKV, headDim int) {
	if nHeads <= 0 || nKV <= 0 || nHeads%nKV != 0 || headDim <= 0 {
		panic("kernels: Attention head counts: nKV must divide nHeads")
	}
	if nq < 0 || nq > nk {
		panic("kernels: Attention needs 0 ≤ nq ≤ nk")
	}
	if lout < nq*nHeads*headDim || lq < nq*nHeads*headDim || lk < nk*nKV*headDim || lv < nk*nKV*headDim {
		panic("kernels: Attention slices too short")
	}
}
