//go:build tools

// Package kubelet pins the Kubernetes binaries crid is tested under, in a
// module of its own: k8s.io/kubernetes lists its staging modules at v0.0.0,
// so this module replaces each with the published release of the same minor
// version. test/vm/build.sh builds kubelet from here for the VM test bed;
// test/cluster/build.sh builds the control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler), kubelet, kubectl, the node e2e
// suite (test/e2e_node) with the ginkgo CLI that runs it in parallel, and
// agnhost, for make cluster-test and make node-e2e.
package kubelet

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/e2e_node"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
