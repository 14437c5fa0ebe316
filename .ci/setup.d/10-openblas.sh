# shellcheck shell=bash
# Sourced by .ci/run. OpenBLAS is the speed baseline of the native SGEMM
# (build tag openblas, cgo). Installs Debian's libopenblas-dev (and a C
# compiler for cgo) when missing, then runs the kernels tests with the tag
# so that the OpenBLAS backend keeps building and agreeing with the native
# one. Takes a few seconds once the package is installed.

fedtune_openblas_setup() {
  local need=()
  dpkg -s libopenblas-dev >/dev/null 2>&1 || need+=(libopenblas-dev)
  command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
  if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || return 1
  fi
  CGO_ENABLED=1 go test -count=1 -tags openblas ./kernels/...
}
fedtune_openblas_setup
