package cri

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/cni"
	"github.com/crid-dev/crid/config"
)

func startServer(t *testing.T) runtime.RuntimeServiceClient {
	t.Helper()
	return startServerWith(t, config.Default())
}

// startServerWith serves cfg on a temp socket until the test ends; dial
// options are added to the client's.
func startServerWith(t *testing.T, cfg config.Config, dial ...grpc.DialOption) runtime.RuntimeServiceClient {
	t.Helper()
	cg, err := cgroupmgr.New("cgroupfs")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Config: cfg, Version: "test", CNI: cni.New(t.TempDir(), []string{t.TempDir()}, t.TempDir()), Cgroups: cg, StreamListener: sl})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "crid.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	conn, err := grpc.NewClient("unix://"+sock, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dial...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-done
	})
	return runtime.NewRuntimeServiceClient(conn)
}

func TestServerRPCs(t *testing.T) {
	c := startServer(t)
	ctx := context.Background()

	v, err := c.Version(ctx, &runtime.VersionRequest{})
	if err != nil || v.RuntimeName != "crid" || v.RuntimeVersion != "test" || v.RuntimeApiVersion != "v1" {
		t.Fatalf("version %v, %v", v, err)
	}
	st, err := c.Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtime.RuntimeCondition{}
	for _, cond := range st.Status.Conditions {
		conds[cond.Type] = cond
	}
	if !conds[runtime.RuntimeReady].GetStatus() {
		t.Fatalf("runtime not ready: %v", conds)
	}
	if n := conds[runtime.NetworkReady]; n.GetStatus() || n.Reason != "NetworkPluginNotReady" || n.Message == "" {
		t.Fatalf("network condition with no CNI config: %v", n)
	}
	if st.Info["config"] == "" {
		t.Fatal("verbose status lacks the config")
	}
	rc, err := c.RuntimeConfig(ctx, &runtime.RuntimeConfigRequest{})
	if err != nil || rc.Linux.CgroupDriver != runtime.CgroupDriver_CGROUPFS {
		t.Fatalf("runtime config %v, %v", rc, err)
	}
	_, err = c.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed request: %v", err)
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/Version"}
	resp, err := unaryInterceptor(context.Background(), &runtime.VersionRequest{}, info, func(context.Context, any) (any, error) {
		panic("boom")
	})
	if resp != nil || status.Code(err) != codes.Internal {
		t.Fatalf("panic gave %v, %v; want codes.Internal", resp, err)
	}
}

func TestInterceptorRejectsBeforeHandler(t *testing.T) {
	called := false
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/StopContainer"}
	_, err := unaryInterceptor(context.Background(), &runtime.StopContainerRequest{}, info, func(context.Context, any) (any, error) {
		called = true
		return nil, nil
	})
	if called || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("handler called=%v, err=%v", called, err)
	}
}
