#!/usr/bin/env bash
# Writes crid's default pod network (bridge + host-local + portmap +
# loopback) into the CNI config dir, only when that dir holds no network:
# an operator's own configuration is never touched.
set -euo pipefail

CONF_DIR=${1:-/etc/cni/net.d}
mkdir -p "$CONF_DIR"
if compgen -G "$CONF_DIR/*.conf" >/dev/null || compgen -G "$CONF_DIR/*.conflist" >/dev/null || compgen -G "$CONF_DIR/*.json" >/dev/null; then
  exit 0
fi
echo "default-network: writing $CONF_DIR/10-crid-bridge.conflist"
cat > "$CONF_DIR/10-crid-bridge.conflist" <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "crid",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crid0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.88.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
JSON
