#!/bin/bash
# The cluster test's node in the systemd guest (make cluster-test-vm): crid
# as crid.service and kubelet v1.37 as a systemd unit, cgroupDriver systemd
# on cgroup v2, registered with the control plane that test/cluster/run.sh
# runs on the host; then the kubectl workflow tests (test/cluster) run
# here, beside the node, so that they can look at its cgroups, mounts and
# files. The host's side is reached through qemu's user network:
#   - the API server and the basic-auth registry listen on the host's
#     loopback; guestfwd rules carry 10.0.2.100:PORT there, and a busybox nc
#     per port listens on the guest's own PORT, so that the kubeconfigs'
#     https://127.0.0.1:PORT work unchanged;
#   - the API server reaches kubelet by the node's name, which its own
#     /etc/hosts maps to 127.0.0.1, where a hostfwd rule carries
#     KUBELET_PORT to the guest; the node's address (NODE_IP) is the
#     guest's own 10.0.2.15.
# Reads $CLUSTER_DIR/vm.env (written by test/cluster/run.sh); writes
# /vm-results/cluster-result.txt, cluster-test.log, kubelet.log.
set -uo pipefail
res=/vm-results
# shellcheck source=/dev/null
. "$res/params"
# shellcheck source=/dev/null
. "$CLUSTER_DIR/vm.env"
sock=/run/crid/crid.sock
out="$res/cluster-result.txt"
: >"$out"
failed=0
log() { printf 'guest %s [systemd] cluster: %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }
fail() {
	echo "FAIL: $*" >>"$out"
	failed=1
}
wait_for() { # wait_for SECONDS COMMAND...
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
	journalctl -u crid --no-pager >"$res/crid.log" 2>&1
	if [[ $failed -eq 0 ]]; then echo "cluster: passed" >>"$out"; else echo "cluster: FAILED" >>"$out"; fi
	exit "$failed"
}
kubectl() { "$KBIN/kubectl" --kubeconfig "$PKI/admin.kubeconfig" "$@"; }

# --- the host's servers, on the guest's loopback ---------------------------------
bb="$VMDIR/busybox"
for p in $API_PORT $AUTH_PORT; do
	"$bb" nc -ll -p "$p" -e "$bb" nc 10.0.2.100 "$p" &
done
api_up() { curl -fsS -m 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$API_PORT/readyz"; }
wait_for 60 api_up || {
	fail "the API server on the host is not reachable through the forward"
	finish
}
echo "ok: the host's API server answers on 127.0.0.1:$API_PORT" >>"$out"

# --- crid and kubelet ---------------------------------------------------------------
bash "$REPO/test/vm/guest-crid.sh" systemd || {
	fail "crid did not start"
	finish
}
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n' "$sock" "$sock" >/etc/crictl.yaml
for d in /var/lib/kubelet /var/log/pods /var/log/containers; do
	mkdir -p "$d"
done
cat >/var/lib/kubelet/config.yaml <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
cgroupDriver: systemd
failSwapOn: false
address: 0.0.0.0
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
[[ -f /etc/resolv.conf ]] || echo "nameserver 10.0.2.3" >/etc/resolv.conf
log "starting kubelet $("$KBIN/kubelet" --version 2>/dev/null) against the host's API server"
systemd-run --unit=kubelet --description="kubelet (cluster test node)" -p Restart=no \
	"$KBIN/kubelet" --config=/var/lib/kubelet/config.yaml --kubeconfig="$PKI/kubelet.kubeconfig" \
	--hostname-override="$NODE" --node-ip="$NODE_IP" --v=2
node_ready() { [[ "$(kubectl get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
if ! wait_for 240 node_ready; then
	fail "node $NODE is not Ready 240 s after kubelet started"
	finish
fi
kubectl get node -o wide >"$res/node.txt" 2>&1
want="crid://$("$REPO/_output/bin/crictl" version | awk '$1 == "RuntimeVersion:" { print $2 }')"
got="$(kubectl get node "$NODE" -o 'jsonpath={.status.nodeInfo.containerRuntimeVersion}')"
if [[ "$got" == "$want" ]] && grep -qF "$want" "$res/node.txt"; then
	echo "ok: node $NODE Ready, kubectl get node -o wide shows $got" >>"$out"
else
	fail "the node's container runtime is '$got', want '$want'"
fi
# kubelet's cgroup driver shows in what it made: QoS slices, not a
# kubepods directory.
if [[ -d /sys/fs/cgroup/kubepods.slice && ! -e /sys/fs/cgroup/kubepods ]]; then
	echo "ok: kubelet's pods live under kubepods.slice (cgroupDriver systemd)" >>"$out"
else
	fail "no kubepods.slice under /sys/fs/cgroup: kubelet is not on the systemd cgroup driver"
fi

# --- the workflow ---------------------------------------------------------------------
mkdir -p /tmp/cluster-host
cat >/tmp/cluster.env <<EOF
KUBECTL=$KBIN/kubectl
KUBECONFIG=$PKI/admin.kubeconfig
NODE=$NODE
NODE_IP=$NODE_IP
CGROUP_ROOT=/
CGROUP_DRIVER=systemd
CRID_SOCKET=$sock
CRID_ROOT=/var/lib/crid
CRID_RUN=/run/crid
CRICTL=$REPO/_output/bin/crictl
CRICTL_CONFIG=/etc/crictl.yaml
POD_LOGS=/var/log/pods
HOST_DIR=/tmp/cluster-host
REGISTRY=127.0.0.1:5000
AUTH_REGISTRY=127.0.0.1:$AUTH_PORT
AUTH_USER=$AUTH_USER
AUTH_PASS=$AUTH_PASS
HOST_PORT=$HOST_PORT
KUBELET_ROOT=/var/lib/kubelet
CNI_IPAM=/var/lib/crid-cni
CNI_NETWORK=crid
BRIDGE=crid0
EOF
log "workflow tests: -run '${CLUSTER_RUN:-all}'"
start=$SECONDS
(cd "$REPO/test/cluster" && CLUSTER_ENV=/tmp/cluster.env HOME=/root "$CLUSTER_DIR/cluster.test" -test.v -test.count=1 \
	-test.timeout 80m ${CLUSTER_RUN:+-test.run "$CLUSTER_RUN"}) >"$res/cluster-test.log" 2>&1
rc=$?
log "workflow tests: exit $rc after $((SECONDS - start))s"
grep -E '^--- (PASS|FAIL|SKIP)' "$res/cluster-test.log" >>"$out"
echo "workflow: $(grep -c '^--- PASS' "$res/cluster-test.log") passed, $(grep -c '^--- FAIL' "$res/cluster-test.log") failed, $(grep -c '^--- SKIP' "$res/cluster-test.log") skipped (exit $rc, $((SECONDS - start)) s)" >>"$out"
[[ $rc -eq 0 ]] || fail "workflow tests exit $rc"
finish
