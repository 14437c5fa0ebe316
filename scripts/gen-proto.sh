#!/usr/bin/env bash
# Regenerates the Go code for proto/fedtune/v1/*.proto.
#
#   scripts/gen-proto.sh
#
# Installs protoc (Debian package protobuf-compiler, when missing) and the two
# Go plugins at pinned versions into $(go env GOPATH)/bin, then runs protoc.
# The generated *.pb.go files are committed; never edit them by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned generator versions: protoc-gen-go matches the google.golang.org/protobuf
# runtime in go.mod; protoc-gen-go-grpc emits code for grpc >= 1.64.
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1

if ! command -v protoc >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq protobuf-compiler >/dev/null
  fi
fi

GOBIN="$(go env GOPATH)/bin"
export PATH="$GOBIN:$PATH"
go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"

protoc --proto_path=proto \
  --go_out=proto --go_opt=paths=source_relative \
  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
  proto/fedtune/v1/*.proto
echo "generated: $(ls proto/fedtune/v1/*.pb.go | tr '\n' ' ')"
