#!/usr/bin/env bash
# `make install`: puts a built crid on this node.
#   - crid, crid-monitor and crid-pause into $BINDIR (default /usr/local/bin), side by
#     side: crid starts the crid-monitor and crid-pause beside itself;
#   - /etc/crid/crid.toml from `crid config --default`, only if there is none
#     (an operator's file is never overwritten);
#   - the default pod network (hack/default-network.sh: only when the CNI
#     config dir holds no network);
#   - contrib/crid.service into /etc/systemd/system when systemd is PID 1
#     (then `systemctl daemon-reload`), or always into a DESTDIR staging tree.
# The CNI plugins are installed before this runs (hack/install-deps.sh node).
# Environment: SRC_BIN (the built binaries, default _output/bin), DESTDIR
# (a staging root: nothing is started or reloaded), BINDIR, CONFDIR (/etc/crid),
# CNI_CONF_DIR (/etc/cni/net.d), UNITDIR (/etc/systemd/system).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="${SRC_BIN:-$root/_output/bin}"
dest="${DESTDIR:-}"
bindir="${BINDIR:-/usr/local/bin}"
confdir="${CONFDIR:-/etc/crid}"
cniconf="${CNI_CONF_DIR:-/etc/cni/net.d}"
unitdir="${UNITDIR:-/etc/systemd/system}"

for b in crid crid-monitor crid-pause; do
	[[ -x "$src/$b" ]] || { echo "install: $src/$b is missing: run make build" >&2; exit 1; }
done
install -d -m 0755 "$dest$bindir"
# Install under a temporary name and rename: a running crid-monitor keeps
# its binary, and a half-copied file is never executed.
for b in crid crid-monitor crid-pause; do
	install -m 0755 "$src/$b" "$dest$bindir/.$b.new"
	mv -f "$dest$bindir/.$b.new" "$dest$bindir/$b"
	echo "install: $dest$bindir/$b"
done

install -d -m 0755 "$dest$confdir"
if [[ -e "$dest$confdir/crid.toml" ]]; then
	echo "install: $dest$confdir/crid.toml exists, left as it is (crid config --default shows the defaults)"
else
	"$dest$bindir/crid" config --default > "$dest$confdir/.crid.toml.new"
	chmod 0644 "$dest$confdir/.crid.toml.new"
	mv "$dest$confdir/.crid.toml.new" "$dest$confdir/crid.toml"
	echo "install: $dest$confdir/crid.toml (the defaults)"
fi

bash "$root/hack/default-network.sh" "$dest$cniconf"

if [[ -n "$dest" || -d /run/systemd/system ]]; then
	install -d -m 0755 "$dest$unitdir"
	sed "s#/usr/local/bin/crid#$bindir/crid#" "$root/contrib/crid.service" > "$dest$unitdir/.crid.service.new"
	chmod 0644 "$dest$unitdir/.crid.service.new"
	mv "$dest$unitdir/.crid.service.new" "$dest$unitdir/crid.service"
	echo "install: $dest$unitdir/crid.service"
	if [[ -z "$dest" ]]; then
		systemctl daemon-reload
		echo "install: start it with: systemctl enable --now crid"
	fi
else
	echo "install: PID 1 is not systemd: no unit installed; start $bindir/crid from your init system"
fi
echo "install: check the node with: $bindir/crid check"
