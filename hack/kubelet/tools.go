//go:build tools

// Package kubelet pins the kubelet that the VM test bed (test/vm) runs in
// standalone mode on its cgroup v2 + systemd guest, in a module of its own:
// k8s.io/kubernetes lists its staging modules at v0.0.0, so this module
// replaces each with the published release of the same minor version.
// test/vm/build.sh builds it from here.
package kubelet

import _ "k8s.io/kubernetes/cmd/kubelet"
