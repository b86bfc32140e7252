#!/usr/bin/env bash
# Stops `make build` at once, naming the Debian packages to install, when
# what the cgo build needs is missing: gcc and the C library headers
# (libcontainer's nsenter is C) and libseccomp through pkg-config (the
# seccomp build tag). Without this check the build fails a minute later,
# deep in a cgo compile, with a message that names neither.
set -euo pipefail

if ! command -v go >/dev/null; then
	echo "make build: go is not on PATH: install Go 1.26 or newer (see go.mod)" >&2
	exit 1
fi
missing=()
if ! command -v gcc >/dev/null; then
	missing+=(gcc libc6-dev)
elif ! echo '#include <stdlib.h>' | gcc -E -x c - >/dev/null 2>&1; then
	missing+=(libc6-dev)
fi
if ! command -v pkg-config >/dev/null; then
	missing+=(pkg-config libseccomp-dev)
elif ! pkg-config --exists libseccomp; then
	missing+=(libseccomp-dev)
fi
if ((${#missing[@]})); then
	echo "make build: missing Debian packages: ${missing[*]}" >&2
	echo "  run \`make deps\` (installs everything crid builds, runs and tests with), or apt-get install ${missing[*]}" >&2
	exit 1
fi
