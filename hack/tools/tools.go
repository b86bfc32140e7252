//go:build tools

// Package tools pins the versions of the test tools crid's conformance test
// bed builds (critest and crictl from sigs.k8s.io/cri-tools), in a module of
// their own so that the main module's dependency graph stays clean.
// hack/build-tools.sh builds them from this module.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
	_ "sigs.k8s.io/cri-tools/pkg/benchmark"
	_ "sigs.k8s.io/cri-tools/pkg/framework"
	_ "sigs.k8s.io/cri-tools/pkg/validate"
)
