#!/usr/bin/env bash
# Regenerates admin/adminpb from admin/adminpb/admin.proto. Only for a change
# of the .proto: the generated code is committed, so builds and CI need no
# protoc. Needs Debian's protobuf-compiler; installs the two Go plugins at
# the versions the committed code was made with into _output/protoc-bin.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
bin=$PWD/_output/protoc-bin
mkdir -p "$bin"
GOBIN=$bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN=$bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
PATH=$bin:$PATH protoc -I admin/adminpb \
	--go_out=admin/adminpb --go_opt=paths=source_relative \
	--go-grpc_out=admin/adminpb --go-grpc_opt=paths=source_relative \
	admin/adminpb/admin.proto
