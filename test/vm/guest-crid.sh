#!/bin/bash
# Configures and starts the guest's crid (called by guest-critest.sh and
# guest-kubelet.sh; a crid already up is left alone):
#   systemd   crid as the systemd service of contrib/crid.service, with
#             cgroup_driver = "systemd" (pods without a parent under
#             crid.slice)
#   cgroupfs  crid started in the background, cgroupfs on cgroup v2
# Its log goes to /vm-results/crid.log (journalctl under systemd).
set -uo pipefail
flavour="$1"
res=/vm-results
# shellcheck source=/dev/null
. "$res/params"
sock=/run/crid/crid.sock

if [[ -S $sock ]] && "$REPO/_output/bin/crictl" --runtime-endpoint "unix://$sock" version >/dev/null 2>&1; then
	exit 0
fi
mkdir -p /etc/crid /etc/cni/net.d /var/lib/crid-cni /var/lib/crid
# The root is an overlay itself, which cannot hold overlay upper dirs: the
# init mounted the ext4 scratch disk on /var/lib (a tmpfs here only as a
# fallback, without user namespaces before 6.3).
mountpoint -q /var/lib || mountpoint -q /var/lib/crid || mount -t tmpfs -o mode=0711 tmpfs /var/lib/crid
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
driver=cgroupfs
[[ "$flavour" == systemd ]] && driver=systemd
cat >/etc/crid/crid.toml <<EOF
# written by test/vm/guest-crid.sh; runtime.cgroup_parent is the driver's default
[image]
registries_conf = "/etc/crid/registries.conf"
sandbox_image = "registry.k8s.io/pause:3.10"

[runtime]
cgroup_driver = "$driver"

# critest's NRI specs connect here (guest-critest.sh passes -nri-socket);
# its synchronization specs hold Synchronize open for 2 s, as long as NRI's
# default request timeout.
[nri]
socket_path = "/run/nri/nri.sock"
plugin_request_timeout = "10s"
EOF

if [[ "$flavour" == systemd ]]; then
	systemctl start crid.service || {
		journalctl -u crid --no-pager >"$res/crid.log"
		exit 2
	}
else
	/usr/local/bin/crid -v=2 >"$res/crid.log" 2>&1 </dev/null &
fi
for _ in $(seq 1 300); do
	[[ -S $sock ]] && exit 0
	sleep 0.1
done
echo "crid's socket did not appear" >&2
[[ "$flavour" == systemd ]] && journalctl -u crid --no-pager >"$res/crid.log"
exit 2
