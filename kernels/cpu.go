package kernels

// NativeKernel describes the micro-kernel the [Native] backend runs on this
// machine and build, e.g. "avx2+fma 6x16 (amd64 assembly)".
func NativeKernel() string { return nativeKernelName }
