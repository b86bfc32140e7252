#!/bin/bash
# The VM test bed's guest side (see test/vm/run.sh): runs in the guest, as
# PID 1 in the cgroupfs flavour or from crid-vm-tests.service under systemd.
# Everything it runs was built on the host and is read from the host's root
# over 9p; what it reports goes to /vm-results (a writable 9p share):
#   guest.log            this script's log
#   e2e.log              go test -v output of the cgroup e2e tests
#   critest.log, junit.xml, crid.log, junitcheck.txt
#   kubelet.log          the kubelet check (systemd flavour)
#   status               one "name rc" line per step, then "done"
# The host reads status; qemu's exit code says nothing.
set -uo pipefail

flavour="$(cat /etc/crid-vm-flavour)"
res=/vm-results
# shellcheck source=/dev/null
. "$res/params" # REPO VMDIR TESTBED E2E_RUN E2E_TIMEOUT STEPS (written by run.sh)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

exec >>"$res/guest.log" 2>&1
log() { printf 'guest %s [%s]: %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$flavour" "$*"; }
status() { echo "$1 $2" >>"$res/status"; }

poweroff_now() {
	sync
	if [[ $$ -eq 1 ]]; then
		echo o >/proc/sysrq-trigger
		sleep 30
	fi
	# Under systemd the unit's SuccessAction/FailureAction power off.
}

# --- what systemd would have set up -----------------------------------------
if [[ $$ -eq 1 ]]; then
	trap poweroff_now EXIT
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	mkdir -p /dev/pts /dev/shm /dev/mqueue
	mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
	mount -t mqueue mqueue /dev/mqueue
	mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
	mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
	# AppArmor's files (the kernel enforces it; crid and critest read and
	# load profiles there).
	mount -t securityfs securityfs /sys/kernel/security
	# Every controller for the tree below the root, as systemd does on
	# demand: cgroupfs managers need them enabled at each level.
	for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
		echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || log "cannot enable $c"
	done
	hostname crid-vm
	ln -sf /proc/self/fd /dev/fd
fi
log "start: cgroup $(stat -fc %T /sys/fs/cgroup), init $(cat /proc/1/comm), kernel $(uname -r)"
log "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"

# --- network: loopback, the user network, the registry proxy -----------------
ip link set lo up
modprobe virtio_net && sleep 0.5
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
# The test registry lives on the host's loopback; qemu's guestfwd carries
# 10.0.2.100:5000 there. The tests expect it on 127.0.0.1:5000, as on the
# host: a busybox nc server forwards each connection.
bb="$VMDIR/busybox"
"$bb" nc -ll -p 5000 -e "$bb" nc 10.0.2.100 5000 &
for _ in $(seq 1 50); do
	curl -fsS -m 5 -o /dev/null http://127.0.0.1:5000/v2/ && break
	sleep 0.2
done
if curl -fsS -m 5 -o /dev/null http://127.0.0.1:5000/v2/; then
	log "registry reachable through the proxy"
else
	log "registry NOT reachable"
fi
for m in overlay veth bridge br_netfilter; do modprobe "$m" || log "modprobe $m failed"; done

if [[ "$flavour" == systemd ]]; then
	export CRID_E2E_CGROUP_DRIVER=systemd
fi
export CRID_TESTBED_DIR="$TESTBED" CRID_TESTBED_READY=1

# --- e2e ----------------------------------------------------------------------
if [[ " $STEPS " == *" e2e "* ]]; then
	log "e2e: -run '$E2E_RUN'"
	start=$SECONDS
	(cd "$REPO/test/e2e" && CRID_BIN=/usr/local/bin/crid "$VMDIR/bin/e2e.test" \
		-test.v -test.count=1 -test.timeout="$E2E_TIMEOUT" -test.run "$E2E_RUN") >"$res/e2e.log" 2>&1
	rc=$?
	log "e2e: exit $rc after $((SECONDS - start))s"
	status e2e "$rc"
fi

# --- critest --------------------------------------------------------------------
if [[ " $STEPS " == *" critest "* ]]; then
	bash "$REPO/test/vm/guest-critest.sh" "$flavour"
	rc=$?
	log "critest: exit $rc"
	status critest "$rc"
fi

# --- kubelet --------------------------------------------------------------------
if [[ " $STEPS " == *" kubelet "* && "$flavour" == systemd ]]; then
	bash "$REPO/test/vm/guest-kubelet.sh"
	rc=$?
	log "kubelet: exit $rc"
	status kubelet "$rc"
fi

# --- cluster (make cluster-test-vm: the control plane runs on the host) -------------
if [[ " $STEPS " == *" cluster "* && "$flavour" == systemd ]]; then
	bash "$REPO/test/vm/guest-cluster.sh"
	rc=$?
	log "cluster: exit $rc"
	status cluster "$rc"
fi

log "done"
echo done >>"$res/status"
sync
if [[ $$ -ne 1 ]]; then
	# Under systemd: power off at once; the results are on the host already
	# (the share is mounted cache=none).
	systemctl poweroff --force --force
fi
