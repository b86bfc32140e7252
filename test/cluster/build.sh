#!/usr/bin/env bash
# Builds the Kubernetes binaries of make cluster-test and make node-e2e from
# the tools module hack/kubelet (k8s.io/kubernetes v1.37.2, staging modules
# replaced by their published v0.37.2 releases; etcd's server v3.7.0) into
# _output/k8s/bin:
#
#   etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
#   agnhost                  (k8s.io/kubernetes/test/images/agnhost; agnhost-files/:
#                            porter's localhost.crt/.key, which its image adds,
#                            and the html/ of kitten and nautilus, built on it)
#   e2e_node.test            (go test -c k8s.io/kubernetes/test/e2e_node)
#   ginkgo                   (github.com/onsi/ginkgo/v2/ginkgo, the version e2e_node uses)
#
#   test/cluster/build.sh [all|cluster|node-e2e]   (default all)
#
# As upstream builds them: CGO_ENABLED=0, -trimpath, GOWORK=off, with the
# version stamped the way kubernetes' hack/lib/version.sh does, so that
# `kubectl version` and the node's kubeletVersion say v1.37.2. A binary
# newer than hack/kubelet/go.mod and go.sum is not rebuilt; FORCE=1 rebuilds.
# Heavy when cold (about 10 min for e2e_node.test on 2 cores; the others
# then reuse most of the build cache): run it under
# `flock -o /tmp/crid-heavy.lock`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mod="$root/hack/kubelet"
bin="${K8S_BIN_DIR:-$root/_output/k8s/bin}"
what="${1:-all}"
mkdir -p "$bin"

log() { printf 'k8s-build: %s\n' "$*" >&2; }

fresh() {
	[[ "${FORCE:-0}" != 1 && -x "$1" && "$1" -nt "$mod/go.sum" && "$1" -nt "$mod/go.mod" ]]
}

cd "$mod"
export GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
kv="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
ev="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
# kubernetes' hack/lib/version.sh stamps these into component-base (and the
# client-go copy kubectl reports).
kflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kflags+=" -X $p.gitVersion=$kv -X $p.gitMajor=${kv%%.*} -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	minor="${kv#*.}"
	kflags+=" -X $p.gitMinor=${minor%%.*}"
done
kflags="${kflags# }"

# build NAME PKG: go build PKG into $bin/NAME unless it is current.
build() {
	local name="$1" pkg="$2" ldflags="${3:-$kflags}" start
	if fresh "$bin/$name"; then
		log "$name is up to date"
		return 0
	fi
	log "building $name ($pkg)"
	start=$(date +%s)
	go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg"
	mv -f "$bin/$name.tmp" "$bin/$name"
	log "built $name in $(($(date +%s) - start))s"
}

case "$what" in
all | cluster)
	build etcd go.etcd.io/etcd/server/v3 "-X go.etcd.io/etcd/api/v3/version.GitSHA=${ev}"
	for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
		build "$c" "k8s.io/kubernetes/cmd/$c"
	done
	build agnhost k8s.io/kubernetes/test/images/agnhost "-s -w"
	# The files agnhost's Dockerfile adds beside the binary (porter's TLS
	# pair) and those of the images built on agnhost (kitten, nautilus),
	# for hack/test-images.sh -kubernetes.
	kdir="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images"
	mkdir -p "$bin/agnhost-files/kitten" "$bin/agnhost-files/nautilus"
	install -m 0644 "$kdir/agnhost/porter/localhost.crt" "$kdir/agnhost/porter/localhost.key" "$bin/agnhost-files/"
	install -m 0644 "$kdir/kitten/html/kitten.jpg" "$kdir/kitten/html/data.json" "$bin/agnhost-files/kitten/"
	install -m 0644 "$kdir/nautilus/html/nautilus.jpg" "$kdir/nautilus/html/data.json" "$bin/agnhost-files/nautilus/"
	;;&
all | node-e2e)
	build kubelet k8s.io/kubernetes/cmd/kubelet
	# ginkgo's CLI runs the suite's specs in parallel processes.
	build ginkgo github.com/onsi/ginkgo/v2/ginkgo "-s -w"
	if fresh "$bin/e2e_node.test"; then
		log "e2e_node.test is up to date"
	else
		log "building e2e_node.test (k8s.io/kubernetes/test/e2e_node; about 10 min cold)"
		start=$(date +%s)
		go test -c -trimpath -ldflags "$kflags" -o "$bin/e2e_node.test.tmp" k8s.io/kubernetes/test/e2e_node
		mv -f "$bin/e2e_node.test.tmp" "$bin/e2e_node.test"
		log "built e2e_node.test in $(($(date +%s) - start))s"
	fi
	;;
all | cluster | node-e2e) ;;
*)
	echo "usage: $0 [all|cluster|node-e2e]" >&2
	exit 2
	;;
esac
