# crid: build, run and test. See README.md.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/_output/bin
# A semantic version, as kubelet parses the runtime's (it shows anything
# else as crid://Unknown): the release tag, else 0.0.0-<commit>.
VERSION := $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || echo 0.0.0-$$(git describe --always --dirty 2>/dev/null || echo dev))
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
# containers_image_openpgp keeps containers/image off gpgme (cgo);
# seccomp enables libcontainer's seccomp through libseccomp.
GOTAGS := containers_image_openpgp seccomp
GOFLAGS_BUILD := -tags '$(GOTAGS)' -ldflags '-X main.version=$(VERSION) -X main.gitCommit=$(COMMIT)'
STATICCHECK_VERSION := v0.8.2
export CGO_ENABLED := 1
# bridge/portmap exec iptables: the daemon needs the sbin dirs on PATH.
export PATH := /usr/local/sbin:/usr/sbin:/sbin:$(PATH)

.PHONY: all build run deps test unit fuzz e2e critest tools lint clean testbed bench install vm-test cluster-test cluster-test-vm node-e2e k8s-tools

all: build

# crid-pause, the built-in pod infra process: static, so it runs from the
# rootfs crid makes for it holding nothing else.
CC_PAUSE := gcc -static -Os -s -Wall -Wextra -Werror

# Stops at once, naming the Debian packages, if the cgo build cannot work.
build:
	@bash hack/build-prereqs.sh
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/crid ./cmd/crid
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/crid-monitor ./cmd/crid-monitor
	$(CC_PAUSE) -DVERSION='"$(VERSION)"' -o $(BIN)/crid-pause cmd/crid-pause/pause.c

# Installs what is missing, sets up the default pod network if the node has
# none, and runs crid in the foreground with its defaults, plus Prometheus
# metrics on loopback (METRICS_ADDRESS= serves none).
METRICS_ADDRESS ?= 127.0.0.1:9096
run: deps build
	bash hack/default-network.sh /etc/cni/net.d
	exec $(BIN)/crid --metrics-address '$(METRICS_ADDRESS)'

deps:
	bash hack/install-deps.sh

# Puts crid on this node: Debian packages and CNI plugins a node needs, the
# binaries into $(BINDIR), /etc/crid/crid.toml if none, the default pod
# network if none, crid.service when systemd is PID 1 (hack/install.sh).
# DESTDIR=/some/root stages everything there instead.
BINDIR ?= /usr/local/bin
install:
	CNI_BIN_DIR=$(DESTDIR)/opt/cni/bin bash hack/install-deps.sh node
	$(MAKE) build
	SRC_BIN=$(BIN) DESTDIR=$(DESTDIR) BINDIR=$(BINDIR) bash hack/install.sh

# Everything CI checks: lint, unit tests, end-to-end tests, conformance,
# the VM test bed and the cluster test (make node-e2e, about an hour on
# 2 cores, and make cluster-test-vm run apart).
# The test bed's registry, started on the way, is stopped at the end.
test: deps lint unit fuzz e2e critest vm-test cluster-test bench-smoke
	bash hack/registry.sh stop

# The test images and their registry on 127.0.0.1:5000 (unit tests of oci
# run containers from the busybox tree it stages).
testbed:
	bash hack/test-images.sh

unit: testbed
	$(GO) test -tags '$(GOTAGS)' -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e '/test/cluster$$')

# Every Go fuzz target of the tree (CRI configs to specs, the layer
# extractor, the monitor's frames, records, CRI logs...) for FUZZTIME each,
# one after the other (hack/fuzz.sh; FUZZ=regexp picks targets). A failing
# input lands in its package's testdata/fuzz/<Target>/: commit it with the
# fix. Heavy: flock -o /tmp/crid-heavy.lock make fuzz.
FUZZTIME ?= 20s
fuzz:
	GO=$(GO) GOTAGS='$(GOTAGS)' FUZZTIME=$(FUZZTIME) bash hack/fuzz.sh

# The suite takes about 10 minutes on 2 cores: more than go test's default
# 10-minute timeout, which cut a CI run.
e2e: build tools testbed
	CRID_BIN=$(BIN)/crid $(GO) test -tags '$(GOTAGS)' -count=1 -v -timeout 40m ./test/e2e 2>&1 | tee _output/e2e.log | grep -E '^(=== RUN|--- |    |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}

tools:
	bash hack/build-tools.sh

# Issue 15's load run (test/e2e TestStress): 50 clients, at least 10,000
# mixed calls over at least 100 pods, 5% cancelled; prints the calls and
# answers per RPC and the daemon's figures before, after and after the
# sweep. Heavy: flock -o /tmp/crid-heavy.lock make stress.
STRESS_CALLS ?= 10000
STRESS_CLIENTS ?= 50
STRESS_PODS ?= 100
.PHONY: stress soak
stress: build testbed
	CRID_BIN=$(BIN)/crid CRID_STRESS_CALLS=$(STRESS_CALLS) CRID_STRESS_CLIENTS=$(STRESS_CLIENTS) CRID_STRESS_PODS=$(STRESS_PODS) \
		$(GO) test -tags '$(GOTAGS)' -count=1 -v -timeout 10m -run 'TestStress$$' ./test/e2e

# The churn soak (test/e2e TestSoak): SOAK_PODS short-lived job-like pods,
# sampled every 100; make e2e runs its short form, TestSoakShort (300).
SOAK_PODS ?= 2000
soak: build testbed
	CRID_BIN=$(BIN)/crid CRID_SOAK_PODS=$(SOAK_PODS) \
		$(GO) test -tags '$(GOTAGS)' -count=1 -v -timeout 15m -run 'TestSoak$$' ./test/e2e

# The VM test bed (test/vm/run.sh): cgroup v2 guests under qemu, one with
# systemd and the systemd cgroup driver (and kubelet), one with cgroupfs;
# e2e cgroup tests and critest in each. Knobs: VM_FLAVOURS, VM_STEPS.
vm-test: build tools testbed
	bash test/vm/run.sh

critest: build tools
	bash test/critest/run.sh

# The Kubernetes binaries of cluster-test and node-e2e, from hack/kubelet
# (k8s.io/kubernetes v1.37.2), built once into _output/k8s/bin.
k8s-tools:
	bash test/cluster/build.sh all

# A single-node Kubernetes cluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet) with crid as the node's
# runtime, and the kubectl workflow against it (test/cluster/run.sh).
cluster-test: build tools
	bash test/cluster/run.sh

# The same cluster test with the node in the VM test bed's systemd guest
# (cgroup v2, systemd as PID 1, cgroupDriver systemd); the control plane
# stays on this machine (test/cluster/run.sh, CLUSTER_NODE=vm).
cluster-test-vm: build tools
	CLUSTER_NODE=vm bash test/cluster/run.sh

# Kubernetes' node conformance suite ([NodeConformance] of test/e2e_node,
# v1.37.2) against a private crid, with its ratchet (test/nodee2e/run.sh).
node-e2e: build tools
	bash test/nodee2e/run.sh

$(BIN)/staticcheck-$(STATICCHECK_VERSION):
	mkdir -p $(BIN)
	GOBIN=$(BIN) CGO_ENABLED=0 $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(BIN)/staticcheck $@

lint: $(BIN)/staticcheck-$(STATICCHECK_VERSION)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags '$(GOTAGS)' ./...
	$(BIN)/staticcheck-$(STATICCHECK_VERSION) -tags '$(GOTAGS)' ./...

clean:
	rm -rf _output

# crid and Debian's containerd measured side by side on this machine
# (hack/bench/run.sh). Heavy: flock -o /tmp/crid-heavy.lock make bench.
# Flags through BENCH_FLAGS, e.g. BENCH_FLAGS='-runtimes=crid -pods=20'.
# The full run (the sweep to 1,000 pods, 20,000 dead containers, pulls,
# floors; containerd bounded by -containerd-max-pods/-max-dead) takes an
# hour or more on 2 cores.
.PHONY: bench bench-smoke
bench: build
	bash hack/bench/run.sh $(BENCH_FLAGS)

# The bench's code end to end on crid alone, small: one level of 10 pods,
# 20 dead containers, the floors. It checks that the report and the plot
# are produced, never a timing.
bench-smoke: build
	bash hack/bench/run.sh -smoke $(BENCH_FLAGS)
