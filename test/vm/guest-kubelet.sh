#!/bin/bash
# kubelet v1.37 (built on the host from hack/kubelet) in standalone mode on
# the systemd guest, as a node runs it: cgroupDriver systemd (which crid's
# RuntimeConfig also reports), the default failCgroupV1, crid as its
# runtime. A static pod with requests and limits on the pod network must
# reach Running with its limits in the v2 files of its QoS and pod slices
# (and, with 256 MiB of zram swap and LimitedSwap, the no-swap kubelet asks
# for a static pod)
# and its container's scope; deleting the manifest must remove the pod and
# leave no slice, scope or cgroup of it. Writes /vm-results/kubelet-result.txt
# and /vm-results/kubelet.log; exits non-zero when a check fails.
set -uo pipefail
res=/vm-results
# shellcheck source=/dev/null
. "$res/params"
sock=/run/crid/crid.sock
out="$res/kubelet-result.txt"
: >"$out"
failed=0
log() { printf 'guest %s [systemd] kubelet: %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }
check() { # check WHAT GOT WANT
	if [[ "$2" == "$3" ]]; then
		echo "ok: $1 = $2" >>"$out"
	else
		echo "FAIL: $1 = '$2', want '$3'" >>"$out"
		failed=1
	fi
}
# crictl warns on stderr without a config file: give it one.
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n' "$sock" "$sock" >/etc/crictl.yaml
crictl() { "$REPO/_output/bin/crictl" "$@"; }
# wait_for SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
	local n=$(($1 * 2))
	shift
	for _ in $(seq 1 "$n"); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	return 1
}
finish() {
	systemctl stop kubelet.service >/dev/null 2>&1
	journalctl -u kubelet --no-pager >"$res/kubelet.log" 2>&1
	if [[ $failed -eq 0 ]]; then echo "kubelet: passed" >>"$out"; else echo "kubelet: FAILED" >>"$out"; fi
	exit "$failed"
}

bash "$REPO/test/vm/guest-crid.sh" systemd || {
	echo "FAIL: crid did not start" >>"$out"
	failed=1
	finish
}
for d in /var/lib/kubelet /var/log/pods /var/log/containers; do
	mkdir -p "$d"
	mountpoint -q "$d" || mount -t tmpfs tmpfs "$d"
done
# Swap, so that kubelet's LimitedSwap (KEP-2400) gives the Burstable pod
# some: 256 MiB of zram (no disk to spare in the guest).
if ! grep -q zram0 /proc/swaps; then
	modprobe zram num_devices=1 && echo 256M >/sys/block/zram0/disksize &&
		mkswap /dev/zram0 >/dev/null && swapon /dev/zram0 || log "no zram swap"
fi
mkdir -p /etc/kubernetes/manifests
cat >/var/lib/kubelet/config.yaml <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
staticPodPath: /etc/kubernetes/manifests
fileCheckFrequency: 2s
syncFrequency: 5s
enableServer: false
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
memorySwap: {swapBehavior: LimitedSwap}
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "20Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
[[ -f /etc/resolv.conf ]] || echo "nameserver 10.0.2.3" >/etc/resolv.conf
log "starting kubelet $("$VMDIR/bin/kubelet" --version 2>/dev/null)"
systemd-run --unit=kubelet --description="kubelet (VM test bed)" -p Restart=no \
	"$VMDIR/bin/kubelet" --config=/var/lib/kubelet/config.yaml --hostname-override=crid-vm --v=2
if ! wait_for 120 curl -fsS http://127.0.0.1:10248/healthz; then
	echo "FAIL: kubelet's healthz did not answer within 120 s" >>"$out"
	failed=1
	finish
fi
echo "ok: kubelet $("$VMDIR/bin/kubelet" --version) healthy, cgroupDriver systemd" >>"$out"

cat >/etc/kubernetes/manifests/vmtest.yaml <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: vmtest
  namespace: default
spec:
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/busybox:1.29-2
    command: ["sh", "-c", "sleep 3600"]
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 200m, memory: 64Mi}
EOF
running() { [[ -n "$(crictl ps --name web --state Running -q 2>/dev/null)" ]]; }
if ! wait_for 240 running; then
	echo "FAIL: the static pod's container is not Running after 240 s" >>"$out"
	crictl pods >>"$out" 2>&1
	crictl ps -a >>"$out" 2>&1
	failed=1
	finish
fi
cid="$(crictl ps --name web --state Running -q | head -n 1)"
pid="$(crictl pods --name vmtest -q | head -n 1)"
log "pod $pid container $cid running"
echo "ok: static pod vmtest Running (sandbox ${pid:0:13}, container ${cid:0:13})" >>"$out"
ip="$(crictl inspectp "$pid" | sed -n 's/^ *"ip": "\([0-9.]*\)".*/\1/p' | head -n 1)"
check "pod IP on the pod network 10.88.0.0/16" "${ip%.*.*}" "10.88"

# The QoS and pod slices kubelet made, and crid's scope for the container.
cg=/sys/fs/cgroup
check "kubepods.slice exists" "$([[ -d $cg/kubepods.slice ]] && echo yes)" yes
podslice="$(find "$cg/kubepods.slice/kubepods-burstable.slice" -maxdepth 1 -name 'kubepods-burstable-pod*.slice' | head -n 1)"
check "pod slice under kubepods-burstable.slice" "$([[ -n $podslice ]] && echo yes)" yes
scope="$podslice/crid-$cid.scope"
check "container scope crid-<id>.scope in the pod slice" "$([[ -d $scope ]] && echo yes)" yes
check "systemd unit of the scope" "$(systemctl is-active "crid-$cid.scope")" active
check "pod slice memory.max" "$(cat "$podslice/memory.max" 2>&1)" 67108864
check "pod slice cpu.max" "$(cat "$podslice/cpu.max" 2>&1)" "20000 100000"
check "container memory.max" "$(cat "$scope/memory.max" 2>&1)" 67108864
check "container cpu.max" "$(cat "$scope/cpu.max" 2>&1)" "20000 100000"
# 100m is 102 shares; runc's shares -> weight conversion.
want_weight="$(awk 'BEGIN { l = log(102) / log(2); e = (l * l + 125 * l) / 612 - 7 / 34; w = exp(e * log(10)); print (w == int(w)) ? w : int(w) + 1 }')"
check "container cpu.weight (102 shares)" "$(cat "$scope/cpu.weight" 2>&1)" "$want_weight"
check "container memory.oom.group (kubelet asks for it on v2)" "$(cat "$scope/memory.oom.group" 2>&1)" 1
# Swap: kubelet gives a static pod none even under LimitedSwap (static
# pods are critical pods, KEP-2400), and says so with memory.swap.max=0 in
# linux.resources.unified; with swap on the node a scope left alone would
# read "max", so 0 shows crid applied it.
check "swap on the node (zram)" "$([[ $(awk '/^SwapTotal:/ { print $2 }' /proc/meminfo) -gt 0 ]] && echo yes)" yes
check "container memory.swap.max (static pod: no swap)" "$(cat "$scope/memory.swap.max" 2>&1)" 0
check "burstable QoS slice has a cpu.weight" "$([[ -f $cg/kubepods.slice/kubepods-burstable.slice/cpu.weight ]] && echo yes)" yes
check "container sees its own cgroup namespace" "$(crictl exec "$cid" cat /proc/self/cgroup)" "0::/"

# Deleting the manifest removes the pod and everything of it.
rm -f /etc/kubernetes/manifests/vmtest.yaml
gone() { [[ -z "$(crictl pods -q 2>/dev/null)" ]]; }
if wait_for 180 gone; then
	echo "ok: pod removed after its manifest was deleted" >>"$out"
else
	echo "FAIL: pods left 180 s after the manifest was deleted: $(crictl pods 2>&1)" >>"$out"
	failed=1
fi
check "pod slice directory left" "$([[ -n $podslice && -d $podslice ]] && echo "$podslice")" ""
check "crid scopes left" "$(systemctl list-units --all --plain --no-legend 'crid-*.scope' | awk '{ print $1 }' | tr '\n' ' ')" ""
check "pod slices left" "$(systemctl list-units --all --plain --no-legend 'kubepods-burstable-pod*.slice' | awk '{ print $1 }' | tr '\n' ' ')" ""
finish
