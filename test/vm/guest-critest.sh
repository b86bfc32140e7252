#!/bin/bash
# critest v1.37.0 in the VM guest (called by test/vm/guest.sh), against a
# crid configured for the flavour:
#   systemd   crid as the systemd service of contrib/crid.service, with
#             cgroup_driver = "systemd" (pods under crid.slice)
#   cgroupfs  crid started by this script, cgroupfs on cgroup v2
# The report is checked against the same ratchet lists as on the host
# (test/critest/expected-pass.txt, cannot-pass.txt) by the junitcheck built
# on the host. The guest is thrown away afterwards: nothing is cleaned up.
set -uo pipefail
flavour="$1"
res=/vm-results
# shellcheck source=/dev/null
. "$res/params"
log() { printf 'guest %s [%s] critest: %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$flavour" "$*"; }

mkdir -p /etc/crid /etc/cni/net.d /var/lib/crid-cni /var/lib/crid
# The root is an overlay itself, which cannot hold overlay upper dirs.
mountpoint -q /var/lib/crid || mount -t tmpfs -o mode=0711 tmpfs /var/lib/crid
sed -e "s|@MIRROR@|127.0.0.1:5000|g" "$REPO/hack/registries-mirror.conf.in" >/etc/crid/registries.conf
rm -f /etc/cni/net.d/*
cat >/etc/cni/net.d/10-crid.conflist <<EOF
{
  "cniVersion": "1.0.0",
  "name": "crid",
  "plugins": [
    {
      "type": "bridge", "bridge": "crid0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "/var/lib/crid-cni",
                "ranges": [[{ "subnet": "10.88.0.0/16" }]], "routes": [{ "dst": "0.0.0.0/0" }] }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
if [[ "$flavour" == systemd ]]; then
	driver=systemd parent=crid.slice
else
	driver=cgroupfs parent=/crid
fi
cat >/etc/crid/crid.toml <<EOF
# written by test/vm/guest-critest.sh
[image]
registries_conf = "/etc/crid/registries.conf"
sandbox_image = "registry.k8s.io/pause:3.10"

[runtime]
cgroup_driver = "$driver"
cgroup_parent = "$parent"
EOF
# critest's host-port spec dials 127.0.0.1:<hostPort>.
sysctl -q -w net.ipv4.conf.all.route_localnet=1
iptables -t nat -A POSTROUTING -s 127.0.0.0/8 -o crid0 -j MASQUERADE

sock=/run/crid/crid.sock
if [[ "$flavour" == systemd ]]; then
	systemctl start crid.service || { journalctl -u crid --no-pager | tail -n 50 >"$res/crid.log"; exit 2; }
	log "crid.service: $(systemctl show -p ActiveState,ControlGroup,Delegate crid.service | tr '\n' ' ')"
else
	/usr/local/bin/crid -v=2 >"$res/crid.log" 2>&1 </dev/null &
fi
for _ in $(seq 1 300); do
	[[ -S $sock ]] && break
	sleep 0.1
done
[[ -S $sock ]] || {
	log "crid's socket did not appear"
	[[ "$flavour" == systemd ]] && journalctl -u crid --no-pager >"$res/crid.log"
	exit 2
}

start=$SECONDS
"$REPO/_output/bin/critest" -runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock" \
	-ginkgo.junit-report="$res/junit.xml" -ginkgo.timeout=30m -ginkgo.no-color \
	>"$res/critest.log" 2>&1 </dev/null
rc=$?
log "critest exited $rc after $((SECONDS - start))s"
if [[ "$flavour" == systemd ]]; then
	log "crid.service after the run: $(systemctl show -p ActiveState,NRestarts crid.service | tr '\n' ' ')"
	journalctl -u crid --no-pager >"$res/crid.log"
fi
[[ -f "$res/junit.xml" ]] || exit 2
# The host's lists, with one difference: the guest kernel has AppArmor, so
# its specs run, and fail only because critest loads its profiles with
# `sudo apparmor_parser`, which the guest (the host's root) lacks.
sed -e 's/| cannot apply: AppArmor is absent from this kernel.*$/| cannot apply: critest loads its profiles with `sudo apparmor_parser`; the test bed has neither sudo nor the apparmor package (the CRI-completeness issue)/' \
	"$REPO/test/critest/cannot-pass.txt" >/tmp/cannot-pass.txt
"$VMDIR/bin/junitcheck" -expected-pass "$REPO/test/critest/expected-pass.txt" \
	-cannot-pass /tmp/cannot-pass.txt "$res/junit.xml" >"$res/junitcheck.txt" 2>&1
