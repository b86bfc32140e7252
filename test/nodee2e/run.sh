#!/usr/bin/env bash
# make node-e2e: Kubernetes' node conformance suite (the [NodeConformance]
# specs of k8s.io/kubernetes v1.37.2 test/e2e_node) against a private crid.
#
#   1. builds e2e_node.test, kubelet and ginkgo once (test/cluster/build.sh,
#      cached in _output/k8s/bin: the suite starts the kubelet beside its own
#      binary), crid, crictl, the test images with Kubernetes' own
#      (hack/test-images.sh -kubernetes) and their registry;
#   2. starts crid on a private temp dir (socket, root, run dir, cgroup
#      parent, CNI bridge crid-nodee2e0 on 10.86.0.0/16), its registries.conf
#      mirroring registry.k8s.io to the test registry, with the runtime
#      handler the RuntimeClass specs name (test-handler) beside runc, and
#      pulls every test image through it (the suite's own pre-pull wants
#      images this test bed does not build: --prepull-images=false);
#   3. guards kubelet's ports 10250 and 10255 (it listens on every address)
#      with iptables rules dropping what does not come from this machine;
#   4. runs the suite with ginkgo's CLI, NODE_E2E_NODES processes in
#      parallel, focus [NodeConformance], skip NODE_E2E_SKIP; the suite
#      starts etcd, an API server and a namespace controller in-process on
#      127.0.0.1:6443 and kubelet (cgroupfs, failCgroupV1: false) as a
#      child; systemd-run is kept off its PATH, since this machine's PID 1 is
#      not systemd;
#   5. tears down, also on failure or Ctrl-C: crid's pods, processes,
#      mounts, /var/lib/kubelet, /var/log/pods, /var/log/containers, the
#      kubepods cgroups, the sysctls and iptables chains kubelet changes, the
#      guard rules, the bridge, the temp dir; checks nothing is left;
#   6. exits with test/critest/junitcheck's verdict on the JUnit report:
#      "node-e2e: N passed, N failed, N skipped" and the ratchet of
#      test/nodee2e/expected-pass.txt and cannot-pass.txt.
#
# Needs root. Heavy: `flock -o /tmp/crid-heavy.lock make node-e2e`.
# Environment:
#   NODE_E2E_NODES=4         parallel ginkgo processes
#   NODE_E2E_FOCUS, NODE_E2E_SKIP   override the filters (the ratchet then
#                            fails: every spec must be run or counted)
#   NODE_E2E_TIMEOUT=3h      ginkgo's suite timeout
#   CRID_BIN, REGISTRY_ADDR, CRID_TESTBED_DIR   as make critest
# Outputs in _output/node-e2e/: junit*.xml, suite.log, crid.log, kubelet
# logs (the suite's report dir), junitcheck.txt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/_output/node-e2e"
kbin="$root/_output/k8s/bin"
crid_bin="${CRID_BIN:-$root/_output/bin/crid}"
crictl_bin="$root/_output/bin/crictl"
registry="${REGISTRY_ADDR:-127.0.0.1:5000}"
testbed="${CRID_TESTBED_DIR:-$root/_output/testbed}"
bridge="crid-nodee2e0"
subnet="10.86.0.0/16"
nodes="${NODE_E2E_NODES:-4}"
# As containerd's node e2e job: the conformance specs, minus those that
# cannot share a node with others or are known to flake.
focus="${NODE_E2E_FOCUS:-\[NodeConformance\]}"
skip="${NODE_E2E_SKIP:-\[Flaky\]|\[Slow\]|\[Serial\]|\[Disruptive\]}"
suite_timeout="${NODE_E2E_TIMEOUT:-3h}"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

LOG_PREFIX=node-e2e
OUT="$out"
# shellcheck source=test/cluster/lib.sh
. "$root/test/cluster/lib.sh"
[[ $EUID -eq 0 ]] || die "must run as root"

tmp=""
cleaned=0
chains_before=""
bridge_preexisted=0
started_registry=0
guard_tag="crid-nodee2e-$$"
cgroup_parent="/crid-nodee2e-$$"
# What kubelet makes on the host; removed only when this run created it.
host_dirs=(/var/lib/kubelet /var/log/pods /var/log/containers)
declare -A host_dir_preexisted=()
keys_before=""

crictl() { "$crictl_bin" --config "$tmp/crictl.yaml" --timeout 60s "$@"; }

teardown() {
	[[ $cleaned -eq 1 ]] && return 0
	cleaned=1
	trap '' INT TERM HUP
	set +e
	log "tearing down"
	stop suite
	# The suite stops its kubelet when it ends; one it left is found by its
	# root dir and config in the temp dir.
	[[ -n "$tmp" ]] && kill_under "$tmp/work"
	if alive crid; then
		crictl rmp --force --all >/dev/null 2>&1
	fi
	stop crid
	[[ -n "$tmp" ]] && kill_under "$tmp"
	remove_cgroup /kubepods
	remove_cgroup "$cgroup_parent"
	local d
	for d in "${host_dirs[@]}"; do
		[[ "${host_dir_preexisted[$d]:-1}" == 1 ]] && continue
		unmount_under "$d"
		rm -rf "$d" 2>/dev/null || log "warning: cannot remove $d"
	done
	[[ -n "$tmp" && -d "$tmp" ]] && unmount_under "$tmp"
	unguard
	[[ -n "$chains_before" ]] && remove_new_kube_chains "$chains_before"
	restore_kubelet_sysctls
	if [[ $bridge_preexisted -eq 0 ]] && ip link show "$bridge" >/dev/null 2>&1; then
		ip link del "$bridge"
	fi
	# The suite's API server writes its service-account key to /tmp.
	if [[ -n "$keys_before" ]]; then
		local f
		for f in /tmp/insecure_test_key*; do
			[[ -e "$f" ]] && ! grep -qxF "$f" <<<"$keys_before" && rm -f "$f"
		done
	fi
	if [[ -n "$tmp" && -d "$tmp" ]]; then
		rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp"; } || log "warning: cannot remove $tmp"
	fi
	if [[ $started_registry -eq 1 ]]; then
		bash hack/registry.sh stop >/dev/null 2>&1 || log "warning: hack/registry.sh stop failed"
	fi
	if [[ -n "$tmp" ]]; then
		check_left "processes" "$(pids_under "$tmp" | tr '\n' ' ')"
		check_left "mounts" "$(mounts_under "$tmp" | tr '\n' ' ')"
		check_left "temp dir" "$([[ -e "$tmp" ]] && echo "$tmp")"
	fi
	for d in "${host_dirs[@]}"; do
		[[ "${host_dir_preexisted[$d]:-1}" == 0 && -e "$d" ]] && check_left "kubelet's directories" "$d"
	done
	check_left "cgroups" "$(cgroup_dirs /kubepods; cgroup_dirs "$cgroup_parent")"
	check_left "bridge" "$([[ $bridge_preexisted -eq 0 ]] && ip -br link show "$bridge" 2>/dev/null)"
	check_left "iptables guard rules" "$(guards_left "$guard_tag")"
	if [[ -n "$chains_before" ]]; then
		check_left "iptables chains" "$(iptables_chains | grep -vxF "$chains_before" | grep ' KUBE-' | tr '\n' ' ')"
	fi
	check_left "sysctls" "$(changed_sysctls | tr '\n' ' ')"
	[[ $leftovers -eq 0 ]] && log "teardown complete: nothing left"
	set -e
}

on_exit() {
	local rc=$?
	teardown
	[[ $leftovers -ne 0 && $rc -eq 0 ]] && rc=1
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# --- preconditions: nothing else may own what the suite uses ------------------
for p in 6443 10248 10250 10255; do
	port_free "$p" || die "port $p is in use: the suite's API server and kubelet need it"
done
[[ -z "$(cgroup_dirs /kubepods)" ]] || die "/kubepods cgroups exist: another kubelet runs on this machine"
for d in "${host_dirs[@]}"; do
	if [[ -e "$d" ]]; then host_dir_preexisted[$d]=1; else host_dir_preexisted[$d]=0; fi
done
[[ "${host_dir_preexisted[/var/lib/kubelet]}" == 0 ]] || die "/var/lib/kubelet exists: another kubelet uses this machine (or a run leaked it)"
[[ -e "/sys/class/net/$bridge" ]] && die "bridge $bridge exists: another node e2e run (or one leaked it)"

# --- build --------------------------------------------------------------------
[[ -x "$crid_bin" ]] || die "$crid_bin not found: run make build"
bash test/cluster/build.sh node-e2e
bash test/cluster/build.sh cluster >/dev/null # agnhost, for the images
bash hack/build-tools.sh >/dev/null
mkdir -p "$out"
rm -rf "${out:?}"/*

curl -fsS -m 2 -o /dev/null "http://$registry/v2/" 2>/dev/null || started_registry=1
K8S_BIN_DIR="$kbin" bash hack/test-images.sh -kubernetes >"$out/test-images.log" 2>&1 ||
	{ tail -n 20 "$out/test-images.log" >&2; die "hack/test-images.sh failed"; }

tmp="$(mktemp -d /tmp/crid-nodee2e.XXXXXX)"
chmod 711 "$tmp"
go build -o "$tmp/junitcheck" ./test/critest/junitcheck

# --- host changes that teardown undoes ------------------------------------------
chains_before="$(iptables_chains)"
[[ -n "$chains_before" ]] || chains_before="none"
keys_before="$(ls -d /tmp/insecure_test_key* 2>/dev/null || true)"
[[ -n "$keys_before" ]] || keys_before="none"
save_kubelet_sysctls
guard_port "$guard_tag" 10250 10255

# --- crid -------------------------------------------------------------------------
mkdir -p "$tmp/net.d" "$tmp/crid-root" "$tmp/crid-run" "$tmp/work"
write_cni_conflist "$tmp/net.d/10-crid-nodee2e.conflist" crid-nodee2e "$bridge" "$subnet" "$tmp/cni-ipam"
cni_bin_dirs='"/opt/cni/bin"'
[[ -d "$root/_output/cni/bin" ]] && cni_bin_dirs="\"$root/_output/cni/bin\", $cni_bin_dirs"
cat >"$tmp/crid.toml" <<EOF
# written by test/nodee2e/run.sh
socket = "$tmp/crid.sock"
root_dir = "$tmp/crid-root"
run_dir = "$tmp/crid-run"

[image]
registries_conf = "$testbed/registries.conf"

[network]
cni_conf_dir = "$tmp/net.d"
cni_bin_dirs = [$cni_bin_dirs]

[runtime]
cgroup_driver = "cgroupfs"
cgroup_parent = "$cgroup_parent"

# The handler of the suite's RuntimeClass specs, as containerd's and CRI-O's
# node e2e jobs configure one.
[runtime.handlers.test-handler]
EOF
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n' "$tmp/crid.sock" "$tmp/crid.sock" >"$tmp/crictl.yaml"
start crid "$crid_bin" --config "$tmp/crid.toml" -v=2
wait_until 30 "crid's socket" test -S "$tmp/crid.sock"

# Every image of the test bed's Kubernetes catalog, pulled through crid (and
# its mirror configuration) before the suite starts.
images="$(K8S_BIN_DIR="$kbin" bash hack/test-images.sh -kubernetes -list 2>/dev/null | awk 'NR > 1 && $1 ~ /^registry\.k8s\.io\// { print $1 }' | sort -u)"
[[ -n "$images" ]] || die "hack/test-images.sh -kubernetes -list named no image"
for img in $images; do
	crictl pull "$img" >/dev/null || die "crictl pull $img failed"
done
log "pulled $(wc -w <<<"$images") images through crid"

# --- the suite ------------------------------------------------------------------------
cat >"$tmp/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /
failCgroupV1: false
failSwapOn: false
podCIDR: "10.100.0.0/24"
volumeStatsAggPeriod: 10s
fileCheckFrequency: 10s
evictionPressureTransitionPeriod: 30s
evictionHard:
  memory.available: 250Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
evictionMinimumReclaim:
  nodefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
# PATH without systemd-run: the suite would start kubelet through it.
mkdir -p "$tmp/path"
for f in /usr/bin/*; do
	case "$(basename "$f")" in systemd-run | systemctl) continue ;; esac
	ln -s "$f" "$tmp/path/$(basename "$f")"
done
suite_path="/usr/local/sbin:/usr/sbin:/sbin:$tmp/path"

ginkgo_args=(
	--nodes="$nodes" --timeout="$suite_timeout" --no-color
	--focus="$focus" --skip="$skip"
	--junit-report=junit.xml --output-dir="$out"
	--poll-progress-after=300s --poll-progress-interval=120s
)
suite_args=(
	--container-runtime-endpoint="unix://$tmp/crid.sock"
	--image-service-endpoint="unix://$tmp/crid.sock"
	--prepull-images=false
	--kubelet-config-file="$tmp/kubelet-config.yaml"
	--kubelet-flags="--system-cgroups= --kubelet-cgroups= --runtime-cgroups="
	--report-dir="$out"
	--node-name="$(hostname)"
)
log "running the suite: $nodes processes, focus $focus, skip $skip (log $out/suite.log)"
start_suite=$(date +%s)
(cd "$tmp/work" && PATH="$suite_path" TMPDIR="$tmp" "$kbin/ginkgo" "${ginkgo_args[@]}" "$kbin/e2e_node.test" -- "${suite_args[@]}") >"$out/suite.log" 2>&1 </dev/null &
pids[suite]=$!
suite_rc=0
wait "${pids[suite]}" || suite_rc=$?
unset "pids[suite]"
log "the suite exited $suite_rc after $(($(date +%s) - start_suite))s"
grep -E '^(Ran [0-9]+ of [0-9]+ Specs|FAIL!|SUCCESS!|Test Suite (Passed|Failed))' "$out/suite.log" >&2 || true
[[ -f "$out/junit.xml" ]] || die "the suite wrote no JUnit report (exit $suite_rc); see $out/suite.log"

check_rc=0
"$tmp/junitcheck" -name node-e2e -allowed-focus "$focus" -allowed-skip "$skip" \
	-expected-pass test/nodee2e/expected-pass.txt -cannot-pass test/nodee2e/cannot-pass.txt \
	"$out/junit.xml" >"$out/junitcheck.txt" 2>&1 || check_rc=$?
teardown
cat "$out/junitcheck.txt"
exit "$check_rc"
