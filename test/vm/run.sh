#!/usr/bin/env bash
# The VM test bed (`make vm-test`): boots a cgroup v2 guest under qemu (TCG:
# no KVM here) in two flavours and runs crid's cgroup e2e tests, critest and
# (systemd flavour) a standalone kubelet there:
#   systemd   systemd 252 as PID 1, crid as the service of contrib/crid.service
#             with cgroup_driver = "systemd"
#   cgroupfs  no systemd (test/vm/guest.sh is PID 1), cgroupfs on cgroup v2
#
# The guest's root is the host's / shared read-only over 9p with a tmpfs
# overlay on top, so every binary is built here and run there. /var/lib,
# with crid's root_dir, is an ext4 scratch disk of its own, as on a real
# node: overlay upper dirs cannot live on the overlay root, and Debian 12's
# 6.1 kernel cannot idmap an overlay or a tmpfs (6.3+), which
# user-namespaced pods' layers need. Steps:
#   1. apt-get download the kernel, kmod and busybox-static .debs into
#      _output/vm/cache (never installed on the host), extract them, depmod,
#      pack the initramfs (test/vm/init, busybox, the boot modules);
#   2. build crid, crid-monitor, the e2e test binary, junitcheck, critest
#      (hack/build-tools.sh) and kubelet (hack/kubelet) on the host; make sure
#      the test registry on 127.0.0.1:5000 serves the test images;
#   3. per flavour: boot (2 vCPUs, 2 GiB, cgroup v1 disabled) with the
#      results share _output/vm/results/<flavour>, a guestfwd rule to the
#      registry and a fresh sparse ext4 image _output/vm/crid-root.img
#      (mkfs.ext4 from e2fsprogs; removed after the boot) as /dev/vda (/var/lib),
#      wait (qemu is wrapped in timeout), then read the status file
#      the guest wrote: qemu's exit code says nothing;
#   4. print per flavour the e2e results and critest's summary line; exit 1
#      when any step failed or did not report.
#
# Needs root and qemu-system-x86 (hack/install-deps.sh installs it). Heavy:
# a guest keeps both cores busy for minutes; on a shared machine run it under
# `flock -o /tmp/crid-heavy.lock`. Knobs:
#   VM_FLAVOURS="systemd cgroupfs"   which guests to boot
#   VM_STEPS="e2e critest kubelet"   what each guest runs
#   VM_E2E_RUN=regexp                the e2e tests (default: the cgroup ones)
#   VM_TIMEOUT=900                   seconds one guest may take
#   VM_MEMORY=2048                   MiB of guest memory
# and, set by test/cluster/run.sh for the `cluster` step (make
# cluster-test-vm; systemd guest only): VM_CLUSTER_DIR (its vm.env, pki and
# test binary), VM_GUESTFWD_PORTS (host loopback ports the guest reaches at
# 10.0.2.100), VM_HOSTFWD (qemu hostfwd rules to the guest's kubelet).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
vmdir="$root/_output/vm"
cache="$vmdir/cache"
flavours="${VM_FLAVOURS:-systemd cgroupfs}"
steps="${VM_STEPS-e2e critest kubelet}"
# Every e2e test that creates, limits, reads or removes cgroups.
e2e_run="${VM_E2E_RUN:-^(TestContainerResourcesAndDevices|TestHugepageLimitWithoutController|TestContainerExitCodesAndReasons|TestContainerProcessConfig|TestContainersShareThePod|TestInfraProcess|TestCrictlPodCommands|TestSandboxLifecycle|TestSandboxBadInput|TestKilledDuringRunOrRemove|TestStats.*|TestUpdateContainerResources|TestVersionStatusRuntimeConfig|TestContainersSurviveDaemonAndMonitorKill)$}"
timeout_s="${VM_TIMEOUT:-900}"
memory="${VM_MEMORY:-2048}"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"

log() { printf 'vm-test: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 2
}
[[ $EUID -eq 0 ]] || die "must run as root"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: run hack/install-deps.sh"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found: install e2fsprogs"

# --- 1. guest kernel, kmod, busybox, initramfs ------------------------------------
mkdir -p "$cache" "$vmdir/bin"
kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')"
[[ -n "$kpkg" ]] || kpkg="$(find "$cache" -maxdepth 1 -name 'linux-image-*.deb' -printf '%f\n' | sed 's/_.*//' | sort | tail -n 1)"
[[ -n "$kpkg" ]] || die "cannot tell which linux-image package linux-image-amd64 points to (apt-get update?)"
kver="${kpkg#linux-image-}"
fetch() { # fetch PACKAGE: its .deb in the cache, downloaded once
	local pkg="$1" deb
	deb="$(find "$cache" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)"
	if [[ -z "$deb" ]]; then
		log "apt-get download $pkg"
		(cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2)
		deb="$(find "$cache" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)"
		[[ -n "$deb" ]] || die "apt-get download $pkg left no .deb"
	fi
	echo "$deb"
}
kdeb="$(fetch "$kpkg")"
kmoddeb="$(fetch kmod)"
bbdeb="$(fetch busybox-static)"

stamp="$vmdir/.extracted"
want="$(basename "$kdeb") $(basename "$kmoddeb") $(basename "$bbdeb") $(sha256sum test/vm/init | cut -c1-16)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
	log "extracting $(basename "$kdeb"), kmod, busybox-static; building the initramfs"
	rm -rf "$vmdir/kernel" "$vmdir/kmod" "$vmdir/initramfs" "$vmdir/x"
	dpkg-deb -x "$kdeb" "$vmdir/kernel"
	dpkg-deb -x "$kmoddeb" "$vmdir/kmod"
	mkdir -p "$vmdir/x"
	dpkg-deb -x "$bbdeb" "$vmdir/x/bb"
	cp "$vmdir/x/bb/bin/busybox" "$vmdir/busybox"
	# The .deb ships no modules.dep; Debian's kmod makes it (the host has none).
	# (kmod picks its applet from argv[0]; the .deb's links are absolute.)
	(exec -a depmod "$vmdir/kmod/bin/kmod" -b "$vmdir/kernel" "$kver")
	ir="$vmdir/initramfs"
	mkdir -p "$ir/bin" "$ir/modules" "$ir/proc" "$ir/sys" "$ir/dev"
	cp "$vmdir/busybox" "$ir/bin/busybox"
	cp test/vm/init "$ir/init"
	chmod 0755 "$ir/init" "$ir/bin/busybox"
	for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
		netfs fscache 9pnet 9pnet_virtio 9p overlay virtio_blk crc16 mbcache jbd2 crc32c_generic ext4; do
		ko="$(find "$vmdir/kernel/lib/modules/$kver" -name "$m.ko" | head -n 1)"
		if [[ -n "$ko" ]]; then cp "$ko" "$ir/modules/"; fi # some are built in
	done
	(cd "$ir" && find . | "$vmdir/busybox" cpio -o -H newc 2>/dev/null | gzip -1 >"$vmdir/initramfs.cpio.gz")
	rm -rf "$vmdir/x"
	echo "$want" >"$stamp"
fi

# --- 2. binaries and the test registry ------------------------------------------------
log "building crid, crid-monitor, the e2e tests, junitcheck, critest, kubelet"
make -s build
cp _output/bin/crid _output/bin/crid-monitor _output/bin/crid-pause "$vmdir/bin/"
go test -c -tags 'containers_image_openpgp seccomp' -o "$vmdir/bin/e2e.test" ./test/e2e
go build -o "$vmdir/bin/junitcheck" ./test/critest/junitcheck
bash hack/build-tools.sh >&2
if [[ " $steps " == *" kubelet "* ]]; then
	kv="$(cd hack/kubelet && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
	kvmm="${kv#v}"
	vpkg=k8s.io/component-base/version
	(cd hack/kubelet && GOWORK=off CGO_ENABLED=0 go build -trimpath \
		-ldflags "-X $vpkg.gitVersion=$kv -X $vpkg.gitMajor=${kvmm%%.*} -X $vpkg.gitMinor=$(echo "$kvmm" | cut -d. -f2)" \
		-o "$vmdir/bin/kubelet" k8s.io/kubernetes/cmd/kubelet)
fi
testbed="${CRID_TESTBED_DIR:-$root/_output/testbed}"
registry_was_up=0
curl -fsS -m 2 -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null && registry_was_up=1
bash hack/test-images.sh >/dev/null

# --- 3. boot each flavour --------------------------------------------------------------
results_root="$vmdir/results"
rm -rf "$results_root"
qemu_pid=""
disk="$vmdir/crid-root.img"
cleanup() {
	if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -KILL "$qemu_pid" 2>/dev/null || true
	fi
	rm -f "$disk"
	if [[ $registry_was_up -eq 0 ]]; then bash hack/registry.sh stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

boot() {
	local flavour="$1" res="$results_root/$1"
	mkdir -p "$res"
	cat >"$res/params" <<EOF
REPO=$root
VMDIR=$vmdir
TESTBED=$testbed
E2E_RUN='$e2e_run'
E2E_TIMEOUT=20m
STEPS='$steps'
CLUSTER_DIR='${VM_CLUSTER_DIR:-}'
EOF
	# The cluster step's forwards (test/cluster/run.sh sets them): host
	# loopback ports the guest reaches at 10.0.2.100, and hostfwd rules.
	local netdev="user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:5000-cmd:$vmdir/busybox nc 127.0.0.1 5000" p
	for p in ${VM_GUESTFWD_PORTS:-}; do
		netdev+=",guestfwd=tcp:10.0.2.100:$p-cmd:$vmdir/busybox nc 127.0.0.1 $p"
	done
	for p in ${VM_HOSTFWD:-}; do
		netdev+=",hostfwd=$p"
	done
	local append="console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init cgroup_no_v1=all"
	append+=" systemd.unified_cgroup_hierarchy=1 systemd.show_status=0"
	append+=" crid.flavour=$flavour crid.repo=$root crid.vmdir=$vmdir crid.kver=$kver"
	# crid's root_dir: sparse, so it costs only what the guest writes.
	rm -f "$disk"
	truncate -s 16G "$disk"
	mkfs.ext4 -q -F -L crid-root "$disk"
	log "booting the $flavour guest (log: $res/console.log)"
	local start=$SECONDS rc=0
	timeout --signal=KILL "$timeout_s" qemu-system-x86_64 \
		-accel tcg,thread=multi -cpu max -smp 2 -m "$memory" \
		-nographic -no-reboot -monitor none -serial "file:$res/console.log" \
		-kernel "$vmdir/kernel/boot/vmlinuz-$kver" -initrd "$vmdir/initramfs.cpio.gz" -append "$append" \
		-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
		-virtfs "local,path=$res,mount_tag=results,security_model=passthrough" \
		-netdev "$netdev" \
		-device virtio-net-pci,netdev=n0 \
		-drive "file=$disk,if=virtio,format=raw,cache=unsafe" </dev/null >"$res/qemu.log" 2>&1 &
	qemu_pid=$!
	wait "$qemu_pid" || rc=$?
	qemu_pid=""
	rm -f "$disk"
	log "$flavour guest ended after $((SECONDS - start))s (qemu/timeout exit $rc: not a test result)"
}

summary() {
	local flavour="$1" res="$results_root/$1" ok=1 step
	echo "=== $flavour flavour (cgroup v2$([[ $flavour == systemd ]] && echo ', systemd as PID 1, cgroup_driver=systemd' || echo ', no systemd, cgroup_driver=cgroupfs'))"
	if ! grep -qx done "$res/status" 2>/dev/null; then
		echo "FAIL: the guest did not finish (see $res/console.log, $res/guest.log)"
		tail -n 20 "$res/guest.log" 2>/dev/null || tail -n 20 "$res/console.log" 2>/dev/null
		ok=0
	fi
	for step in $steps; do
		[[ ($step == kubelet || $step == cluster) && $flavour != systemd ]] && continue
		local rc
		rc="$(awk -v s="$step" '$1 == s { print $2 }' "$res/status" 2>/dev/null | tail -n 1)"
		case "$step" in
		e2e)
			if [[ -f "$res/e2e.log" ]]; then
				grep -E '^--- (PASS|FAIL|SKIP)' "$res/e2e.log" | sed 's/^/  /'
				echo "  e2e: $(grep -c '^--- PASS' "$res/e2e.log") passed, $(grep -c '^--- FAIL' "$res/e2e.log") failed, $(grep -c '^--- SKIP' "$res/e2e.log") skipped"
			fi
			;;
		critest)
			[[ -f "$res/junitcheck.txt" ]] && sed 's/^/  /' "$res/junitcheck.txt" | tail -n 15
			;;
		kubelet)
			[[ -f "$res/kubelet-result.txt" ]] && sed 's/^/  /' "$res/kubelet-result.txt"
			;;
		cluster)
			[[ -f "$res/cluster-result.txt" ]] && sed 's/^/  /' "$res/cluster-result.txt"
			;;
		esac
		if [[ -z "$rc" ]]; then
			echo "  FAIL: $step did not report"
			ok=0
		elif [[ "$rc" != 0 ]]; then
			echo "  FAIL: $step exit $rc"
			ok=0
		else
			echo "  ok: $step"
		fi
	done
	[[ $ok -eq 1 ]]
}

total_start=$SECONDS
for f in $flavours; do
	boot "$f"
done
failed=0
for f in $flavours; do
	summary "$f" || failed=1
done
log "vm-test took $((SECONDS - total_start))s of guest time"
exit "$failed"
