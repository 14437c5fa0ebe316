//go:build purego || !amd64

package kernels

// bestKernel is the micro-kernel of the native backend: pure Go on this
// build.
var bestKernel microKernel = kernelGo

var bestStrided stridedKernel = kernelGoStrided

var bestDot = dotGo

var nativeKernelName = "go 6x16 (pure Go build)"
