#!/usr/bin/env bash
# make cluster-test: a single-node Kubernetes v1.37 cluster on this machine
# with crid as the node's container runtime, and the kubectl workflow run
# against it (the Go tests of test/cluster).
#
#   1. builds the Kubernetes binaries once (test/cluster/build.sh, cached in
#      _output/k8s/bin), crid, crictl, the test images and their registry
#      (hack/test-images.sh, with the Kubernetes test images);
#   2. writes certificates and kubeconfigs (test/cluster/pki) into a private
#      temp dir; every server listens on 127.0.0.1 on free ports, but for
#      kubelet, which must listen on the node's address: its port gets an
#      iptables INPUT rule dropping every packet that does not come from
#      this machine;
#   3. starts a basic-auth registry (a pull-through cache of the test
#      registry, for the imagePullSecret step), crid on its own root, run
#      dir, socket, cgroup root and CNI bridge (crid-cluster0, 10.87.0.0/16)
#      with registries.conf mirrors to the test registry, then etcd,
#      kube-apiserver, kube-controller-manager, kube-scheduler and kubelet
#      (containerRuntimeEndpoint = crid's socket, cgroupfs, failCgroupV1:
#      false, its own root dir, pod logs dir and cgroup root);
#   4. waits for the node to be Ready and checks that `kubectl get node -o
#      wide` shows crid://<crid's version> as its container runtime;
#   5. runs the workflow tests (go test ./test/cluster, CLUSTER_RUN to pick);
#   6. tears everything down, also on failure or Ctrl-C: pods, processes,
#      mounts, cgroups, iptables rules and chains, the sysctls kubelet
#      changes, the bridge, kubelet's /var/log/containers links, the temp dir
#      with the certificates; then checks that nothing is left and fails if
#      something is.
#
# With CLUSTER_NODE=vm (make cluster-test-vm) the node is the VM test bed's
# systemd guest (cgroup v2, systemd as PID 1, crid.service, kubelet with
# cgroupDriver systemd): this script runs the control plane and the
# basic-auth registry on the host as above, then boots the guest
# (test/vm/run.sh, step `cluster`), where test/vm/guest-cluster.sh starts
# crid and kubelet, registers the node and runs the same workflow tests;
# the guest reaches the host's API server and registry through qemu
# guestfwd rules, and the API server reaches kubelet through a hostfwd
# rule on 127.0.0.1: it dials the node by its name (address type
# Hostname), which a private /etc/hosts, bound in the API server's own
# mount namespace, maps to 127.0.0.1. (A hostfwd on the node's address does
# not do: slirp keeps a non-loopback client's address as the source of the
# forwarded connection, and the guest, holding that address itself, drops
# it as martian.)
#
# Needs root. Heavy: run it as `flock -o /tmp/crid-heavy.lock make cluster-test`.
# Environment:
#   CLUSTER_NODE=host|vm    where kubelet and crid run (default host)
#   CLUSTER_RUN=regexp      go test -run for the workflow tests (default all)
#   CLUSTER_KEEP=1          stop before the teardown until Enter is pressed
#   CRID_BIN=path           the crid binary (default _output/bin/crid)
#   REGISTRY_ADDR, CRID_TESTBED_DIR   as hack/test-images.sh
# Outputs in _output/cluster/: one log per component, test.log, node.txt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/_output/cluster"
kbin="$root/_output/k8s/bin"
crid_bin="${CRID_BIN:-$root/_output/bin/crid}"
crictl_bin="$root/_output/bin/crictl"
registry="${REGISTRY_ADDR:-127.0.0.1:5000}"
testbed="${CRID_TESTBED_DIR:-$root/_output/testbed}"
bridge="crid-cluster0"
subnet="10.87.0.0/16"
service_range="10.0.0.0/24"
node="crid-cluster-node"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

node_mode="${CLUSTER_NODE:-host}"
case "$node_mode" in
host) ;;
vm) out="$root/_output/cluster-vm" ;;
*)
	echo "cluster-test: CLUSTER_NODE=$node_mode: want host or vm" >&2
	exit 2
	;;
esac
LOG_PREFIX=cluster-test
[[ $node_mode == vm ]] && LOG_PREFIX=cluster-test-vm
OUT="$out"
# shellcheck source=test/cluster/lib.sh
. "$root/test/cluster/lib.sh"
[[ $EUID -eq 0 ]] || die "must run as root"

# --- state for teardown ---------------------------------------------------
tmp=""
cleaned=0
chains_before=""
bridge_preexisted=0
logs_dir_preexisted=1
kubelet_dir_preexisted=1
started_registry=0
cgroup_root="/crid-cluster-$$"
guard_tag="crid-cluster-$$"

kubectl() { "$kbin/kubectl" --kubeconfig "$tmp/pki/admin.kubeconfig" "$@"; }
crictl() { "$crictl_bin" --config "$tmp/crictl.yaml" --timeout 30s "$@"; }

# teardown: undo everything, deepest first; safe to call twice.
teardown() {
	[[ $cleaned -eq 1 ]] && return 0
	cleaned=1
	trap '' INT TERM HUP
	set +e
	log "tearing down"
	if alive kube-apiserver; then
		# Workflow namespaces the tests did not delete: deleted while
		# kubelet still runs, so that pods end the way users end them.
		kubectl delete namespace -l crid-cluster-test --wait=true --timeout=90s >/dev/null 2>&1
	fi
	stop kubelet
	if alive crid; then
		# Whatever kubelet left, removed through crid, which undoes its own
		# mounts, namespaces, CNI leases and cgroups.
		crictl rmp --force --all >/dev/null 2>&1
	fi
	local c
	for c in kube-scheduler kube-controller-manager kube-apiserver etcd auth-registry crid; do
		stop "$c"
	done
	[[ -n "$tmp" ]] && kill_under "$tmp"
	remove_cgroup "$cgroup_root"
	[[ -n "$tmp" && -d "$tmp" ]] && unmount_under "$tmp"
	unguard
	[[ -n "$chains_before" ]] && remove_new_kube_chains "$chains_before"
	restore_kubelet_sysctls
	if [[ $bridge_preexisted -eq 0 ]] && ip link show "$bridge" >/dev/null 2>&1; then
		ip link del "$bridge"
	fi
	if [[ -n "$tmp" && -d /var/log/containers ]]; then
		find /var/log/containers -maxdepth 1 -type l -lname "$tmp/*" -delete
		[[ $logs_dir_preexisted -eq 0 ]] && rmdir /var/log/containers 2>/dev/null
	fi
	# kubelet makes its device-plugin socket under /var/lib/kubelet whatever
	# its --root-dir says.
	[[ $kubelet_dir_preexisted -eq 0 ]] && rm -rf /var/lib/kubelet
	if [[ -n "$tmp" && -d "$tmp" ]]; then
		rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp"; } || log "warning: cannot remove $tmp"
	fi
	if [[ $started_registry -eq 1 ]]; then
		bash hack/registry.sh stop >/dev/null 2>&1 || log "warning: hack/registry.sh stop failed"
	fi
	# What is left is a bug of this script or of crid: say so and fail.
	if [[ -n "$tmp" ]]; then
		check_left "processes" "$(pids_under "$tmp" | tr '\n' ' ')"
		check_left "mounts" "$(mounts_under "$tmp" | tr '\n' ' ')"
		check_left "temp dir" "$([[ -e "$tmp" ]] && echo "$tmp")"
		check_left "container log links" "$(find /var/log/containers -maxdepth 1 -lname "$tmp/*" 2>/dev/null | tr '\n' ' ')"
	fi
	check_left "cgroups" "$(cgroup_dirs "$cgroup_root" | tr '\n' ' ')"
	check_left "kubelet's directory" "$([[ $kubelet_dir_preexisted -eq 0 && -e /var/lib/kubelet ]] && echo /var/lib/kubelet)"
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

# --- build --------------------------------------------------------------------
[[ -x "$crid_bin" ]] || die "$crid_bin not found: run make build"
bash test/cluster/build.sh cluster
bash hack/build-tools.sh >/dev/null
mkdir -p "$out"
rm -f "$out"/*.log "$out"/node.txt

curl -fsS -m 2 -o /dev/null "http://$registry/v2/" 2>/dev/null || started_registry=1
K8S_BIN_DIR="$kbin" bash hack/test-images.sh -kubernetes >"$out/test-images.log" 2>&1 ||
	{ tail -n 20 "$out/test-images.log" >&2; die "hack/test-images.sh failed"; }

if [[ $node_mode == vm ]]; then
	# The guest sees the host's root (read-only), but has a /tmp of its own.
	tmp="$(mktemp -d "$out/run.XXXXXX")"
else
	tmp="$(mktemp -d /tmp/crid-cluster.XXXXXX)"
fi
chmod 711 "$tmp"
go build -o "$tmp/pki-gen" ./test/cluster/pki
go test -c -o "$tmp/cluster.test" ./test/cluster

# --- addresses ------------------------------------------------------------------
node_ip="$(ip -4 -o route get 192.0.2.254 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }')"
[[ -n "$node_ip" ]] || node_ip="$(ip -4 -o addr show scope global | awk '{ sub(/\/.*/, "", $4); print $4; exit }')"
[[ -n "$node_ip" ]] || die "this machine has no global IPv4 address for the node"
etcd_port="$(free_port 23790)"
etcd_peer_port="$(free_port $((etcd_port + 1)))"
api_port="$(free_port 16443)"
kubelet_port="$(free_port 11250)"
healthz_port="$(free_port $((kubelet_port + 1)))"
auth_port="$(free_port 15002)"
host_port="$(free_port 18080)" # the hostPort of TestDeleteLeavesNothing
log "node $node ($node_ip); etcd :$etcd_port, apiserver :$api_port, kubelet :$kubelet_port, auth registry :$auth_port"

"$tmp/pki-gen" -dir "$tmp/pki" -node "$node" -node-ip "$node_ip" -apiserver "https://127.0.0.1:$api_port" -service-ip "${service_range%.0/*}.1"
pki="$tmp/pki"

# --- host changes that teardown undoes ------------------------------------------
chains_before="$(iptables_chains)"
[[ -n "$chains_before" ]] || chains_before="none"
if [[ $node_mode == vm ]]; then
	# qemu listens on 127.0.0.1 for the guest's kubelet: nothing to guard.
	:
else
	[[ -e "/sys/class/net/$bridge" ]] && die "bridge $bridge exists: another cluster test runs (or one leaked it)"
	[[ -d /var/log/containers ]] || logs_dir_preexisted=0
	[[ -e /var/lib/kubelet ]] || kubelet_dir_preexisted=0
	save_kubelet_sysctls
	# kubelet listens on the node's address, and the workflow's hostPort is
	# DNATed from it: only this machine may reach either.
	guard_port "$guard_tag" "$kubelet_port" "$host_port"
	# kubelet's cgroup root, in every hierarchy (kubelet checks it exists).
	for h in /sys/fs/cgroup/*/; do
		[[ -e "$h/cgroup.procs" ]] && mkdir -p "$h${cgroup_root#/}"
	done
fi

# --- the auth registry ------------------------------------------------------------
auth_user="crid"
auth_pass="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$tmp/auth-registry"
htpasswd -Bbn "$auth_user" "$auth_pass" >"$tmp/auth-registry/htpasswd" 2>/dev/null
cat >"$tmp/auth-registry/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $tmp/auth-registry/data
http:
  addr: 127.0.0.1:$auth_port
auth:
  htpasswd:
    realm: crid-cluster
    path: $tmp/auth-registry/htpasswd
proxy:
  remoteurl: http://$registry
EOF
start auth-registry docker-registry serve "$tmp/auth-registry/config.yml"

# --- crid (on the host; the guest node starts its own) -----------------------------
start_crid() {
	mkdir -p "$tmp/net.d" "$tmp/crid-root" "$tmp/crid-run"
	{
		cat "$testbed/registries.conf"
		printf '\n# written by test/cluster/run.sh: the basic-auth registry\n[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$auth_port"
	} >"$tmp/registries.conf"
	write_cni_conflist "$tmp/net.d/10-crid-cluster.conflist" crid-cluster "$bridge" "$subnet" "$tmp/cni-ipam"
	cni_bin_dirs='"/opt/cni/bin"'
	[[ -d "$root/_output/cni/bin" ]] && cni_bin_dirs="\"$root/_output/cni/bin\", $cni_bin_dirs"
	cat >"$tmp/crid.toml" <<EOF
# written by test/cluster/run.sh
socket = "$tmp/crid.sock"
root_dir = "$tmp/crid-root"
run_dir = "$tmp/crid-run"

[image]
registries_conf = "$tmp/registries.conf"

[network]
cni_conf_dir = "$tmp/net.d"
cni_bin_dirs = [$cni_bin_dirs]

[runtime]
cgroup_driver = "cgroupfs"
cgroup_parent = "$cgroup_root/crid"
EOF
	printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n' "$tmp/crid.sock" "$tmp/crid.sock" >"$tmp/crictl.yaml"
	start crid "$crid_bin" --config "$tmp/crid.toml" -v=2
	wait_until 30 "crid's socket" test -S "$tmp/crid.sock"
}
[[ $node_mode == host ]] && start_crid

# --- control plane ---------------------------------------------------------------------
start etcd "$kbin/etcd" --name crid-cluster --data-dir "$tmp/etcd" \
	--listen-client-urls "https://127.0.0.1:$etcd_port" --advertise-client-urls "https://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
	--initial-cluster "crid-cluster=http://127.0.0.1:$etcd_peer_port" \
	--cert-file "$pki/etcd-server.crt" --key-file "$pki/etcd-server.key" \
	--trusted-ca-file "$pki/ca.crt" --client-cert-auth --unsafe-no-fsync
etcd_health() {
	curl -fsS -m 2 --cacert "$pki/ca.crt" --cert "$pki/apiserver-etcd-client.crt" --key "$pki/apiserver-etcd-client.key" \
		"https://127.0.0.1:$etcd_port/health" | grep -q '"health":"true"'
}
wait_until 30 "etcd health" etcd_health

apiserver=("$kbin/kube-apiserver")
kubelet_address_types=InternalIP
if [[ $node_mode == vm ]]; then
	{
		cat /etc/hosts
		printf '127.0.0.1\t%s\n' "$node"
	} >"$tmp/hosts"
	# shellcheck disable=SC2016
	apiserver=(unshare -m --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$tmp/hosts" "$kbin/kube-apiserver")
	kubelet_address_types=Hostname
fi
start kube-apiserver "${apiserver[@]}" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
	--etcd-servers "https://127.0.0.1:$etcd_port" \
	--etcd-cafile "$pki/ca.crt" --etcd-certfile "$pki/apiserver-etcd-client.crt" --etcd-keyfile "$pki/apiserver-etcd-client.key" \
	--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
	--client-ca-file "$pki/ca.crt" \
	--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
	--kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types "$kubelet_address_types" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
	--service-cluster-ip-range "$service_range" \
	--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
	--allow-privileged=true --endpoint-reconciler-type none --profiling=false --v=2
apiserver_ready() { curl -fsS -m 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$api_port/readyz" | grep -qx ok; }
wait_until 90 "kube-apiserver readiness" apiserver_ready

start kube-controller-manager "$kbin/kube-controller-manager" \
	--kubeconfig "$pki/controller-manager.kubeconfig" \
	--authentication-kubeconfig "$pki/controller-manager.kubeconfig" --authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
	--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" --use-service-account-credentials \
	--service-cluster-ip-range "$service_range" --profiling=false --v=2
start kube-scheduler "$kbin/kube-scheduler" \
	--kubeconfig "$pki/scheduler.kubeconfig" \
	--authentication-kubeconfig "$pki/scheduler.kubeconfig" --authorization-kubeconfig "$pki/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --profiling=false --v=2

# --- the node in the VM guest ---------------------------------------------------------------
if [[ $node_mode == vm ]]; then
	cat >"$tmp/vm.env" <<ENV
KBIN=$kbin
PKI=$pki
NODE=$node
NODE_IP=10.0.2.15
API_PORT=$api_port
AUTH_PORT=$auth_port
AUTH_USER=$auth_user
AUTH_PASS=$auth_pass
KUBELET_PORT=$kubelet_port
HOST_PORT=$host_port
CLUSTER_RUN='${CLUSTER_RUN:-}'
ENV
	log "booting the systemd guest as the node (test/vm/run.sh, step cluster)"
	start_tests=$(date +%s)
	set +e
	VM_FLAVOURS=systemd VM_STEPS=cluster VM_CLUSTER_DIR="$tmp" VM_TIMEOUT="${VM_TIMEOUT:-5400}" VM_MEMORY="${VM_MEMORY:-4096}" \
		VM_GUESTFWD_PORTS="$api_port $auth_port" VM_HOSTFWD="tcp:127.0.0.1:$kubelet_port-:$kubelet_port" \
		bash test/vm/run.sh
	test_rc=$?
	set -e
	res="$root/_output/vm/results/systemd"
	for f in cluster-test.log kubelet.log crid.log node.txt guest.log console.log; do
		[[ -f "$res/$f" ]] && cp "$res/$f" "$out/guest-$f"
	done
	log "the guest node: exit $test_rc after $(($(date +%s) - start_tests))s (logs $out/guest-*)"
	exit "$test_rc"
fi

# --- kubelet -------------------------------------------------------------------------------
mkdir -p "$tmp/kubelet" "$tmp/pod-logs"
cat >"$tmp/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$tmp/crid.sock
imageServiceEndpoint: unix://$tmp/crid.sock
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_root
failCgroupV1: false
failSwapOn: false
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
tlsCertFile: $pki/kubelet-server.crt
tlsPrivateKeyFile: $pki/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
podLogsDir: $tmp/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
start kubelet "$kbin/kubelet" --config "$tmp/kubelet-config.yaml" --kubeconfig "$pki/kubelet.kubeconfig" \
	--root-dir "$tmp/kubelet" --hostname-override "$node" --node-ip "$node_ip" --v=2

node_ready() {
	[[ "$(kubectl get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
for ((i = 0; i < 240; i++)); do
	node_ready 2>/dev/null && break
	for c in crid etcd kube-apiserver kube-controller-manager kube-scheduler kubelet; do
		alive "$c" || { tail -n 30 "$out/$c.log" >&2; die "$c exited"; }
	done
	sleep 0.5
done
node_ready || { tail -n 30 "$out/kubelet.log" >&2; die "node $node is not Ready after 120s"; }
kubectl get node -o wide | tee "$out/node.txt"
want="crid://$(crictl version | awk '$1 == "RuntimeVersion:" { print $2 }')"
got="$(kubectl get node "$node" -o 'jsonpath={.status.nodeInfo.containerRuntimeVersion}')"
[[ "$got" == "$want" ]] || die "the node's container runtime is '$got', want '$want'"
grep -qF "$want" "$out/node.txt" || die "kubectl get node -o wide does not show $want"
log "node $node Ready with container runtime $got"

# --- the workflow ---------------------------------------------------------------------------
cat >"$tmp/cluster.env" <<EOF
KUBECTL=$kbin/kubectl
KUBECONFIG=$pki/admin.kubeconfig
NODE=$node
NODE_IP=$node_ip
CGROUP_ROOT=$cgroup_root
CRID_SOCKET=$tmp/crid.sock
CRID_ROOT=$tmp/crid-root
CRID_RUN=$tmp/crid-run
CRICTL=$crictl_bin
CRICTL_CONFIG=$tmp/crictl.yaml
POD_LOGS=$tmp/pod-logs
HOST_DIR=$tmp/host
REGISTRY=$registry
AUTH_REGISTRY=127.0.0.1:$auth_port
AUTH_USER=$auth_user
AUTH_PASS=$auth_pass
HOST_PORT=$host_port
KUBELET_ROOT=$tmp/kubelet
CNI_IPAM=$tmp/cni-ipam
CNI_NETWORK=crid-cluster
BRIDGE=$bridge
CGROUP_DRIVER=cgroupfs
EOF
mkdir -p "$tmp/host"
start_tests=$(date +%s)
set +e
(cd test/cluster && CLUSTER_ENV="$tmp/cluster.env" "$tmp/cluster.test" -test.v -test.count=1 -test.timeout 60m \
	${CLUSTER_RUN:+-test.run "$CLUSTER_RUN"} 2>&1) | tee "$out/test.log" | grep --line-buffered -E '^(=== RUN|--- |    |PASS|FAIL|ok|panic)'
test_rc=${PIPESTATUS[0]}
set -e
log "workflow tests: exit $test_rc after $(($(date +%s) - start_tests))s (log $out/test.log)"
if [[ "${CLUSTER_KEEP:-0}" == 1 ]]; then
	log "CLUSTER_KEEP=1: KUBECONFIG=$pki/admin.kubeconfig; press Enter to tear down"
	read -r _
fi
exit "$test_rc"
