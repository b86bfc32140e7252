#!/usr/bin/env bash
# Builds the test tools pinned by hack/tools/go.mod into _output/bin:
#   _output/bin/crictl   go build   sigs.k8s.io/cri-tools/cmd/crictl
#   _output/bin/critest  go test -c sigs.k8s.io/cri-tools/cmd/critest
# with the flags of cri-tools' own Makefile (CGO_ENABLED=0, -trimpath,
# -X sigs.k8s.io/cri-tools/pkg/version.Version=<version without the v>), so
# `crictl --version` and `critest -version` report the pinned version.
# A binary newer than hack/tools/go.mod and go.sum is not rebuilt; FORCE=1
# rebuilds. Heavy when cold (about a few minutes on 2 cores): on a shared
# machine run it under `flock -o /tmp/crid-heavy.lock`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/hack/tools"
bin="$root/_output/bin"
mkdir -p "$bin"

pkg=sigs.k8s.io/cri-tools
cd "$tools"
version="$(go list -m -f '{{.Version}}' "$pkg")"
version="${version#v}"
ldflags="-X $pkg/pkg/version.Version=$version"

# fresh BIN: true when BIN exists and is newer than the tools module files.
fresh() {
	[[ "${FORCE:-0}" != 1 && -x "$1" && "$1" -nt "$tools/go.sum" && "$1" -nt "$tools/go.mod" ]]
}

export CGO_ENABLED=0
if fresh "$bin/crictl"; then
	echo "build-tools: $bin/crictl is up to date"
else
	echo "build-tools: building crictl $version"
	go build -trimpath -ldflags "$ldflags" -o "$bin/crictl.tmp" "$pkg/cmd/crictl"
	mv -f "$bin/crictl.tmp" "$bin/crictl"
fi
if fresh "$bin/critest"; then
	echo "build-tools: $bin/critest is up to date"
else
	echo "build-tools: building critest $version"
	go test -c -trimpath -ldflags "$ldflags" -o "$bin/critest.tmp" "$pkg/cmd/critest"
	mv -f "$bin/critest.tmp" "$bin/critest"
fi
