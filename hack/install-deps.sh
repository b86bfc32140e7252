#!/usr/bin/env bash
# Installs what building, running and testing crid needs on Debian 12:
# Debian packages (only those missing, so a warm run takes a second) and the
# CNI plugins, built from the Go module into /opt/cni/bin.
#
#   hack/install-deps.sh        everything (make deps: build, run, test)
#   hack/install-deps.sh node   only what a node builds and runs crid with
#                               (make install): no test registry
set -euo pipefail

PACKAGES=(
  gcc libc6-dev pkg-config      # cgo (libcontainer's nsenter)
  libseccomp-dev                # seccomp for libcontainer (build and run time)
  iptables                      # bridge ipMasq and portmap exec iptables
  apparmor                      # apparmor_parser loads crid-default where the kernel has AppArmor
)
if [[ "${1:-}" != node ]]; then
  PACKAGES+=(
    curl                          # the test scripts probe the registry
    docker-registry apache2-utils # the test registry and its htpasswd auth
    qemu-system-x86               # the VM test bed (test/vm, make vm-test)
    sudo                          # critest loads its AppArmor test profiles with `sudo apparmor_parser`
  )
fi
CNI_PLUGINS_VERSION=v1.9.1
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$CNI_BIN_DIR/.crid-plugins-version"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$CNI_PLUGINS_VERSION" ]]; then
  echo "install-deps: building CNI plugins $CNI_PLUGINS_VERSION into $CNI_BIN_DIR"
  mkdir -p "$CNI_BIN_DIR"
  mod=github.com/containernetworking/plugins/plugins
  GOBIN="$CNI_BIN_DIR" CGO_ENABLED=0 go install \
    "$mod/main/bridge@$CNI_PLUGINS_VERSION" \
    "$mod/main/loopback@$CNI_PLUGINS_VERSION" \
    "$mod/ipam/host-local@$CNI_PLUGINS_VERSION" \
    "$mod/meta/portmap@$CNI_PLUGINS_VERSION"
  echo "$CNI_PLUGINS_VERSION" > "$stamp"
fi
