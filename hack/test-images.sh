#!/usr/bin/env bash
# Builds every image critest v1.37.0 pulls (and crid's sandbox image,
# registry.k8s.io/pause:3.10) and pushes them to the local registry on
# 127.0.0.1:5000, starting it when it does not answer. Then writes
# _output/testbed/registries.conf, which mirrors critest's upstream
# registries to it. See docs/test-images.md.
#
#   hack/test-images.sh [testimages flags: -v, -latest-aliases, -list, -dry-run, -kubernetes]
#
# Steps, each skipped when its output is current:
#   1. apt-get download busybox (Debian's dynamic build: the static one runs
#      applets without PATH lookup, which defeats critest's MaskedPaths spec)
#      into _output/testbed/cache/;
#   2. stage bin/busybox and the glibc files ldd says it loads;
#   3. gcc -static the small C programs of hack/testimages/csrc (pause,
#      the setuid nnp, the nginx/httpd look-alike);
#   4. build and run hack/testimages, which assembles deterministic layers
#      and pushes only what the registry lacks: a second run pushes nothing.
#
# Environment: REGISTRY_ADDR (default 127.0.0.1:5000), CRID_TESTBED_DIR
# (default <repo>/_output/testbed).
set -euo pipefail
umask 022

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
testbed="${CRID_TESTBED_DIR:-$root/_output/testbed}"
addr="${REGISTRY_ADDR:-127.0.0.1:5000}"
cache="$testbed/cache"
stage="$testbed/stage"
csrc="$root/hack/testimages/csrc"
export CRID_TESTBED_DIR="$testbed" REGISTRY_ADDR="$addr"

die() {
	echo "test-images: $*" >&2
	exit 1
}

# One run at a time per test bed: concurrent runs (test/critest/run.sh
# calls this script) would rebuild the stage under each other's feet.
mkdir -p "$cache" "$stage/bin" "$testbed/bin"
exec 9>"$testbed/.test-images.lock"
flock 9

case " $* " in
*" -list "* | *" -dry-run "*) ;; # nothing to push: no registry needed
*) "$root/hack/registry.sh" start 9>&- ;; # the registry must not inherit the lock
esac

# 1. Debian's busybox package.
deb="$(find "$cache" -maxdepth 1 -name 'busybox_*.deb' | sort | tail -n 1)"
if [[ -z "$deb" ]]; then
	echo "test-images: apt-get download busybox"
	# The download runs as root: tell apt so instead of letting it warn
	# that its _apt sandbox user cannot write to the cache directory.
	(cd "$cache" && apt-get download -q -o APT::Sandbox::User=root busybox)
	deb="$(find "$cache" -maxdepth 1 -name 'busybox_*.deb' | sort | tail -n 1)"
	[[ -n "$deb" ]] || die "apt-get download busybox left no .deb in $cache"
fi

# 2. busybox and the glibc files it loads, at the paths ldd names, rebuilt
# every run (cheap) so that a host glibc update reaches the images.
broot="$stage/busybox-root"
tmp="$(mktemp -d "$stage/.busybox.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/deb"
mkdir -p "$tmp/root/bin"
cp "$tmp/deb/bin/busybox" "$tmp/root/bin/busybox"
chmod 0755 "$tmp/root/bin/busybox"
# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
# "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
libs="$(ldd "$tmp/root/bin/busybox" | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }')"
[[ -n "$libs" ]] || die "ldd found no libraries for busybox: is it the dynamic build?"
for lib in $libs; do
	mkdir -p "$tmp/root$(dirname "$lib")"
	if [[ -L "$lib" ]]; then
		# e.g. /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2:
		# keep the link and copy its target.
		target="$(readlink "$lib")"
		ln -s "$target" "$tmp/root$lib"
		[[ "$target" == /* ]] || target="$(dirname "$lib")/$target"
		mkdir -p "$tmp/root$(dirname "$target")"
		cp -L "$lib" "$tmp/root$target"
	else
		cp -L "$lib" "$tmp/root$lib"
	fi
done
rm -rf "$broot"
mv "$tmp/root" "$broot"

# 3. Static C programs, rebuilt when their source or this script changes.
compile() {
	local src="$1" out="$2"
	shift 2
	if [[ -x "$out" && "$out" -nt "$src" && "$out" -nt "${BASH_SOURCE[0]}" ]]; then
		return 0
	fi
	echo "test-images: gcc -static $(basename "$src") -> $(basename "$out")"
	gcc -static -Os -s -Wall -Wextra -Werror "$@" -o "$out.tmp" "$src"
	mv -f "$out.tmp" "$out"
}
command -v gcc >/dev/null || die "gcc not found: apt-get install gcc libc6-dev"
compile "$csrc/pause.c" "$stage/bin/pause-3.9" -DVERSION='"3.9"'
compile "$csrc/pause.c" "$stage/bin/pause-3.10" -DVERSION='"3.10"'
compile "$csrc/nnp.c" "$stage/bin/nnp"
compile "$csrc/webserver.c" "$stage/bin/webserver"

# 3b. With -kubernetes, the inputs of Kubernetes' e2e images
# (hack/testimages/kubernetes.go): agnhost and porter's TLS pair from
# test/cluster/build.sh's output (K8S_BIN_DIR, default _output/k8s/bin),
# the host's curl and the libraries it loads, pause 3.10.2.
case " $* " in
*" -kubernetes "*)
	kbin="${K8S_BIN_DIR:-$root/_output/k8s/bin}"
	[[ -x "$kbin/agnhost" && -f "$kbin/agnhost-files/localhost.crt" ]] ||
		die "-kubernetes needs $kbin/agnhost and agnhost-files/: run test/cluster/build.sh"
	compile "$csrc/pause.c" "$stage/bin/pause-3.10.2" -DVERSION='"3.10.2"'
	compile "$csrc/nmeter.c" "$stage/bin/nmeter"
	cp "$kbin/agnhost" "$stage/bin/agnhost.tmp" && mv -f "$stage/bin/agnhost.tmp" "$stage/bin/agnhost"
	rm -rf "$stage/agnhost"
	cp -r "$kbin/agnhost-files" "$stage/agnhost"
	command -v curl >/dev/null || die "curl not found: apt-get install curl"
	# agnhost's image (alpine) has curl: the host's, with what
	# busybox-root lacks of the libraries it loads (glibc itself is
	# already there).
	croot="$tmp/curl-root"
	mkdir -p "$croot/usr/bin"
	cp "$(command -v curl)" "$croot/usr/bin/curl"
	for lib in $(ldd "$(command -v curl)" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'); do
		[[ -e "$broot$lib" ]] && continue
		mkdir -p "$croot$(dirname "$lib")"
		cp -L "$lib" "$croot$lib"
	done
	# bash: agnhost's (alpine) has it, and the node suite's probe specs run
	# /bin/bash there; the e2e busybox image gets it as its sh (see
	# hack/testimages/kubernetes.go). The host's, with the libraries
	# busybox-root lacks.
	shroot="$tmp/bash-root"
	mkdir -p "$shroot/bin"
	cp /bin/bash "$shroot/bin/bash"
	for lib in $(ldd /bin/bash | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'); do
		[[ -e "$broot$lib" ]] && continue
		mkdir -p "$shroot$(dirname "$lib")"
		cp -L "$lib" "$shroot$lib"
	done
	rm -rf "$stage/bash-root"
	mv "$shroot" "$stage/bash-root"
	# And netcat-openbsd, as upstream's: the node suite's UDP specs run
	# `nc -u`, which Debian's busybox nc lacks. From Debian's .debs (never
	# installed on the host), with the libraries busybox-root lacks.
	mkdir -p "$tmp/nc"
	for pkg in netcat-openbsd libbsd0 libmd0; do
		ncdeb="$(find "$cache" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)"
		if [[ -z "$ncdeb" ]]; then
			echo "test-images: apt-get download $pkg"
			(cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg")
			ncdeb="$(find "$cache" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)"
			[[ -n "$ncdeb" ]] || die "apt-get download $pkg left no .deb in $cache"
		fi
		dpkg-deb -x "$ncdeb" "$tmp/nc"
	done
	cp "$tmp/nc/bin/nc.openbsd" "$croot/usr/bin/nc"
	# Under their sonames, beside busybox-root's glibc.
	mkdir -p "$croot/lib/x86_64-linux-gnu"
	for lib in libbsd.so.0 libmd.so.0; do
		[[ -e "$croot/lib/x86_64-linux-gnu/$lib" ]] ||
			cp -L "$tmp/nc/usr/lib/x86_64-linux-gnu/$lib" "$croot/lib/x86_64-linux-gnu/$lib"
	done
	rm -rf "$stage/curl-root"
	mv "$croot" "$stage/curl-root"
	;;
esac

# 4. The builder (standard library only; a cached go build takes a second).
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$testbed/bin/testimages" ./hack/testimages)
"$testbed/bin/testimages" -registry "$addr" -stage "$stage" "$@"

sed "s|@MIRROR@|$addr|g" "$root/hack/registries-mirror.conf.in" >"$tmp/registries.conf"
mv -f "$tmp/registries.conf" "$testbed/registries.conf"
echo "test-images: registries.conf mirroring critest's registries to $addr: $testbed/registries.conf"
