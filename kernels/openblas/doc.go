// Package openblas binds OpenBLAS's cblas_sgemm with cgo. It is compiled
// only with the build tag openblas (Debian package libopenblas-dev) and is
// used through kernels.OpenBLAS, the speed baseline of the native SGEMM.
//
// It is a package of its own because Go does not allow cgo and Go assembly
// in one package, and package kernels holds the assembly micro-kernel.
package openblas
