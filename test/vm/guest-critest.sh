#!/bin/bash
# critest v1.37.0 in the VM guest (called by test/vm/guest.sh), against the
# guest's crid (test/vm/guest-crid.sh: the systemd service with the systemd
# driver, or cgroupfs on v2). The report is checked against the same ratchet
# lists as on the host (test/critest/expected-pass.txt, cannot-pass.txt) by
# the junitcheck built on the host. The guest is thrown away afterwards:
# nothing is cleaned up.
set -uo pipefail
flavour="$1"
res=/vm-results
# shellcheck source=/dev/null
. "$res/params"
log() { printf 'guest %s [%s] critest: %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$flavour" "$*"; }
sock=/run/crid/crid.sock

bash "$REPO/test/vm/guest-crid.sh" "$flavour" || exit 2
if [[ "$flavour" == systemd ]]; then
	log "crid.service: $(systemctl show -p ActiveState,ControlGroup,Delegate,KillMode crid.service | tr '\n' ' ')"
fi
# critest's host-port spec dials 127.0.0.1:<hostPort>.
sysctl -q -w net.ipv4.conf.all.route_localnet=1
iptables -t nat -A POSTROUTING -s 127.0.0.0/8 -o crid0 -j MASQUERADE

# sudo (critest's `sudo apparmor_parser`) warns on stderr when the host
# name does not resolve, and critest takes any stderr as a failed load.
grep -qw "$(hostname)" /etc/hosts || echo "127.0.1.1 $(hostname)" >>/etc/hosts

start=$SECONDS
"$REPO/_output/bin/critest" -runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock" \
	-nri-socket /run/nri/nri.sock \
	-ginkgo.junit-report="$res/junit.xml" -ginkgo.timeout=30m -ginkgo.no-color \
	>"$res/critest.log" 2>&1 </dev/null
rc=$?
log "critest exited $rc after $((SECONDS - start))s"
if [[ "$flavour" == systemd ]]; then
	log "crid.service after the run: $(systemctl show -p ActiveState,NRestarts crid.service | tr '\n' ' ')"
	journalctl -u crid --no-pager >"$res/crid.log"
fi
[[ -f "$res/junit.xml" ]] || exit 2
# The host's lists, with one difference: the guest kernel has AppArmor
# (Debian's, on by default), so critest runs its 9 AppArmor specs there and
# they must pass (it loads its test profiles with `sudo apparmor_parser`:
# Debian's sudo and apparmor, from hack/install-deps.sh, on the host's root).
# On the host they stay "cannot apply": its kernel has no AppArmor.
aa='^\[k8s\.io\] AppArmor .* \| cannot apply: AppArmor is absent from this kernel'
grep -E "$aa" "$REPO/test/critest/cannot-pass.txt" | sed 's/ | .*$//' >/tmp/apparmor-specs.txt
log "AppArmor: $(cat /sys/module/apparmor/parameters/enabled 2>&1), $(wc -l </tmp/apparmor-specs.txt) specs expected to pass; $(/usr/local/bin/crid check 2>&1 | grep -i apparmor)"
cat "$REPO/test/critest/expected-pass.txt" /tmp/apparmor-specs.txt >/tmp/expected-pass.txt
grep -vE "$aa" "$REPO/test/critest/cannot-pass.txt" >/tmp/cannot-pass.txt
# The 6 UserNamespaces specs pass on the guest's 6.1 kernel too: crid's
# root_dir is ext4 there (idmapped layers); the pods' /dev/shm and files,
# on tmpfs, which 6.1 cannot idmap, are owned by the pods' mapped root.
"$VMDIR/bin/junitcheck" -expected-pass /tmp/expected-pass.txt \
	-cannot-pass /tmp/cannot-pass.txt "$res/junit.xml" >"$res/junitcheck.txt" 2>&1
