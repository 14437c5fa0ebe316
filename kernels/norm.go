package kernels

import "math"

// RMSNorm normalizes each row of x (rows×dim) by its root mean square and
// scales it by w (Zhang & Sennrich 2019, "Root Mean Square Layer
// Normalization", eq. 4), as Llama's LlamaRMSNorm does. rstd receives the
// per-row factor 1/sqrt(mean(x²)+eps) that [RMSNormBackward] needs.
// Reference loop:
//
//	for r := 0; r < rows; r++ {
//		var ss float64
//		for j := 0; j < dim; j++ {
//			ss += x[r*dim+j] * x[r*dim+j]
//		}
//		rstd[r] = 1 / sqrt(ss/dim + eps)
//		for j := 0; j < dim; j++ {
//			dst[r*dim+j] = x[r*dim+j] * rstd[r] * w[j]
//		}
//	}
//
// dst may alias x.
func RMSNorm[F Float](dst, rstd, x, w []F, rows, dim int, eps float64) {
	if len(dst) < rows*dim || len(x) < rows*dim || len(rstd) < rows || len(w) != dim {
		panic("kernels: RMSNorm length mismatch")
	}
	for r := 0; r < rows; r++ {
		xr := x[r*dim : r*dim+dim]
		var ss float64
		for _, v := range xr {
			ss += float64(v) * float64(v)
		}
		rs := 1 / math.Sqrt(ss/float64(dim)+eps) // eq. 4: RMS(a) = sqrt(mean(a²)), plus eps
		rstd[r] = F(rs)
		dr := dst[r*dim : r*dim+dim]
		for j, v := range xr {
			dr[j] = F(float64(v)*rs) * w[j]
		}
	}
}

// RMSNormBackward adds the input gradient of [RMSNorm] to dx and, when dw is
// not nil, adds the weight gradient to dw. With y = x·ρ·w and
// ρ = (mean(x²)+eps)^(-1/2):
//
//	dx_j += ρ·w_j·dy_j − ρ³/dim · x_j · Σ_k w_k·dy_k·x_k
//	dw_j += Σ_rows dy_j·x_j·ρ
//
// Reference loop:
//
//	for r := 0; r < rows; r++ {
//		var s float64
//		for k := 0; k < dim; k++ {
//			s += w[k] * dy[r*dim+k] * x[r*dim+k]
//		}
//		ρ := rstd[r]
//		for j := 0; j < dim; j++ {
//			dx[r*dim+j] += ρ*w[j]*dy[r*dim+j] - ρ*ρ*ρ/dim*x[r*dim+j]*s
//			if dw != nil {
//				dw[j] += dy[r*dim+j] * x[r*dim+j] * ρ
//			}
//		}
//	}
func RMSNormBackward[F Float](dx, dw, dy, x, w, rstd []F, rows, dim int) {
	if len(dx) < rows*dim || len(dy) < rows*dim || len(x) < rows*dim || len(rstd) < rows || len(w) != dim || (dw != nil && len(dw) != dim) {
		panic("kernels: RMSNormBackward length mismatch")
	}
	for r := 0; r < rows; r++ {
		xr, dyr, dxr := x[r*dim:r*dim+dim], dy[r*dim:r*dim+dim], dx[r*dim:r*dim+dim]
		var s float64
		for k := range xr {
			s += float64(w[k]) * float64(dyr[k]) * float64(xr[k])
		}
		rho := float64(rstd[r])
		c := rho * rho * rho / float64(dim) * s
		for j := range xr {
			dxr[j] += F(rho*float64(w[j])*float64(dyr[j]) - c*float64(xr[j]))
		}
		if dw != nil {
			for j := range xr {
				dw[j] += F(float64(dyr[j]) * float64(xr[j]) * rho)
			}
		}
	}
}
