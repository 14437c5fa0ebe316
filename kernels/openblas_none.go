//go:build !openblas

package kernels

// OpenBLAS returns the OpenBLAS backend, or nil: this binary was built
// without the build tag openblas.
func OpenBLAS() Backend { return nil }
