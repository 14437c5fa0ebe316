package kernels

import "math"

// IgnoreIndex is the label that contributes no loss, as in PyTorch's
// CrossEntropyLoss and Hugging Face's label convention.
const IgnoreIndex = -100

// CrossEntropy computes, for each row r of logits (rows×vocab), the
// log-sum-exp lse[r] and the negative log-likelihood of labels[r]:
// loss[r] = lse[r] − logits[r, labels[r]]. Rows labelled [IgnoreIndex] get
// loss 0 and lse 0. Reference loop:
//
//	for r := 0; r < rows; r++ {
//		if labels[r] == IgnoreIndex {
//			loss[r], lse[r] = 0, 0
//			continue
//		}
//		m := max(logits[r, :])
//		lse[r] = m + log(Σ_j exp(logits[r, j] - m))
//		loss[r] = lse[r] - logits[r, labels[r]]
//	}
//
// A label outside [0, vocab) other than IgnoreIndex panics; callers
// validate labels.
func CrossEntropy[F Float](loss, lse, logits []F, labels []int, rows, vocab int) {
	if len(loss) < rows || len(lse) < rows || len(labels) < rows || len(logits) < rows*vocab {
		panic("kernels: CrossEntropy length mismatch")
	}
	for r := 0; r < rows; r++ {
		y := labels[r]
		if y == IgnoreIndex {
			loss[r], lse[r] = 0, 0
			continue
		}
		if y < 0 || y >= vocab {
			panic("kernels: CrossEntropy label out of range")
		}
		row := logits[r*vocab : r*vocab+vocab]
		m := row[0]
		for _, v := range row[1:] {
			if v > m {
				m = v
			}
		}
		var z float64
		for _, v := range row {
			z += float64(expF(v - m))
		}
		l := float64(m) + math.Log(z)
		lse[r] = F(l)
		loss[r] = F(l - float64(row[y]))
	}
}

// CrossEntropyBackward writes the gradient of Σ_r dloss[r]·loss[r] with
// respect to logits: dlogits[r, j] = dloss[r]·(softmax(logits[r])_j − [j ==
// labels[r]]), using the lse from [CrossEntropy]. Rows labelled
// [IgnoreIndex] get zeros. dlogits may be the same slice as logits (the
// gradient then overwrites the logits in place). Reference loop:
//
//	for r := 0; r < rows; r++ {
//		for j := 0; j < vocab; j++ {
//			if labels[r] == IgnoreIndex {
//				dlogits[r, j] = 0
//				continue
//			}
//			dlogits[r, j] = dloss[r] * exp(logits[r, j] - lse[r])
//			if j == labels[r] {
//				dlogits[r, j] -= dloss[r]
//			}
//		}
//	}
func CrossEntropyBackward[F Float](dlogits, logits, lse []F, labels []int, dloss []F, rows, vocab int) {
	if len(dlogits) < rows*vocab || len(logits) < rows*vocab || len(lse) < rows || len(labels) < rows || len(dloss) < rows {
		panic("kernels: CrossEntropyBackward length mismatch")
	}
	for r := 0; r < rows; r++ {
		d := dlogits[r*vocab : r*vocab+vocab]
		y := labels[r]
		if y == IgnoreIndex || dloss[r] == 0 {
			clear(d)
			continue
		}
		if y < 0 || y >= vocab {
			panic("kernels: CrossEntropyBackward label out of range")
		}
		row := logits[r*vocab : r*vocab+vocab]
		l, g := lse[r], dloss[r]
		for j, v := range row {
			d[j] = g * expF(v-l)
		}
		d[y] -= dloss[r]
	}
}

// CrossEntropySoftmax is [CrossEntropy] that also replaces each scored row
// of logits by its softmax, for [CrossEntropySoftmaxBackward]; rows
// labelled [IgnoreIndex] are left as they are. It computes each
// exponential once for the forward and backward passes together.
func CrossEntropySoftmax[F Float](loss, logits []F, labels []int, rows, vocab int) {
	if len(loss) < rows || len(labels) < rows || len(logits) < rows*vocab {
		panic("kernels: CrossEntropySoftmax length mismatch")
	}
	for r := 0; r < rows; r++ {
		y := labels[r]
		if y == IgnoreIndex {
			loss[r] = 0
			continue
		}
		if y < 0 || y >= vocab {
			panic("kernels: CrossEntropySoftmax label out of range")
		}
		row := logits[r*vocab : r*vocab+vocab]
		m := row[0]
		for _, v := range row[1:] {
			if v > m {
				m = v
			}
		}
		zy := row[y] - m
		var z float64
		for j, v := range row {
			e := expF(v - m)
			row[j] = e
			z += float64(e)
		}
		loss[r] = F(math.Log(z) - float64(zy)) // −log softmax_y = log Σ e^(x_j−m) − (x_y−m)
		inv := F(1 / z)
		for j := range row {
			row[j] *= inv
		}
	}
}

// CrossEntropySoftmaxBackward turns the probabilities left by
// [CrossEntropySoftmax] into the gradient of Σ_r dloss[r]·loss[r], in place:
// probs[r, j] = dloss[r]·(probs[r, j] − [j == labels[r]]), and zero rows
// for [IgnoreIndex].
func CrossEntropySoftmaxBackward[F Float](probs []F, labels []int, dloss []F, rows, vocab int) {
	if len(probs) < rows*vocab || len(labels) < rows || len(dloss) < rows {
		panic("kernels: CrossEntropySoftmaxBackward length mismatch")
	}
	for r := 0; r < rows; r++ {
		row := probs[r*vocab : r*vocab+vocab]
		y := labels[r]
		if y == IgnoreIndex || dloss[r] == 0 {
			clear(row)
			continue
		}
		g := dloss[r]
		for j := range row {
			row[j] *= g
		}
		row[y] -= g
	}
}
