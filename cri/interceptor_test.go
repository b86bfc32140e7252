package cri

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/metrics/metricstest"
)

// Every RPC is counted under its service, method and the code it was
// answered with — refused requests and panics included — and its latency
// observed.
func TestRPCMetrics(t *testing.T) {
	const svc = "runtime.v1.RuntimeService"
	count := func(method, code string) float64 {
		return metricstest.Value(t, "crid_grpc_requests_total", map[string]string{"service": svc, "method": method, "code": code})
	}
	latency := func(method string) float64 {
		return metricstest.Value(t, "crid_grpc_request_duration_seconds", map[string]string{"service": svc, "method": method})
	}
	versionOK, statusBad, versionLat := count("Version", "OK"), count("PodSandboxStatus", "InvalidArgument"), latency("Version")
	panics := count("ListImages", "Internal")

	c := startServer(t)
	ctx := context.Background()
	for range 2 {
		if _, err := c.Version(ctx, &runtime.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{}); err == nil {
		t.Fatal("a request without an ID was accepted")
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/" + svc + "/ListImages"}
	_, _ = unaryInterceptor(ctx, &runtime.ListImagesRequest{}, info, func(context.Context, any) (any, error) { panic("boom") })

	if got := count("Version", "OK"); got != versionOK+2 {
		t.Errorf("Version OK counted %v, want %v", got, versionOK+2)
	}
	if got := latency("Version"); got != versionLat+2 {
		t.Errorf("Version latency observed %v times, want %v", got, versionLat+2)
	}
	if got := count("PodSandboxStatus", "InvalidArgument"); got != statusBad+1 {
		t.Errorf("refused PodSandboxStatus counted %v, want %v", got, statusBad+1)
	}
	if got := count("ListImages", "Internal"); got != panics+1 {
		t.Errorf("panicking handler counted %v, want %v", got, panics+1)
	}
}
