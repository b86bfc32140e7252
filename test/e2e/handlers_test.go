package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Runtime handlers come from the configuration: Status lists each (and ""
// for the default) with its features, a pod names one and gets its
// options (here: test-handler gives every pod an infra process), and an
// unknown one is refused naming the configured ones.
func TestRuntimeHandlersFromConfig(t *testing.T) {
	dir := newDirs(t)
	n := &podNode{dir: dir}
	n.writeConfig(t) // ends in the [runtime] table
	cfgPath := filepath.Join(dir, "crid.toml")
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfgPath, string(base)+"infra = \"when-needed\"\n[runtime.handlers.test-handler]\ninfra = \"always\"\n[runtime.handlers.other]\n")
	n.daemon = startDaemon(t, dir, n.args()...)
	ctx := context.Background()

	st, err := n.runtime().Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range st.RuntimeHandlers {
		names = append(names, h.Name)
		if !h.GetFeatures().GetRecursiveReadOnlyMounts() || h.GetFeatures().GetUserNamespaces() {
			t.Errorf("handler %q features %+v, want recursive read-only mounts and no user namespaces", h.Name, h.Features)
		}
	}
	if got := strings.Join(names, ","); got != ",other,runc,test-handler" {
		t.Errorf("Status handlers %q, want \"\", other, runc, test-handler", got)
	}

	for _, tc := range []struct {
		handler string
		infra   bool
	}{{"", false}, {"runc", false}, {"other", false}, {"test-handler", true}} {
		name := "h-" + tc.handler // a host name too: no trailing '-'
		if tc.handler == "" {
			name = "h-default"
		}
		cfg := podConfig(name)
		resp, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: tc.handler})
		if err != nil {
			t.Fatalf("RunPodSandbox with handler %q: %v\n%s", tc.handler, err, n.log)
		}
		if got := n.status(t, resp.PodSandboxId).RuntimeHandler; got != tc.handler {
			t.Errorf("handler %q: status says %q", tc.handler, got)
		}
		if pid := n.infraPid(t, resp.PodSandboxId); (pid != 0) != tc.infra {
			t.Errorf("handler %q: infra pid %d, want an infra process: %v", tc.handler, pid, tc.infra)
		}
		if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}

	_, err = n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podConfig("kata"), RuntimeHandler: "kata"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("unknown handler: %v, want InvalidArgument", err)
	}
	mustContain(t, "unknown handler", err.Error(), "runtime_handler", `"kata"`, "test-handler")
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
}

// A handler table with a bad name or option, or a default naming no
// handler, stops crid at start naming the key.
func TestBadRuntimeHandlerConfigIsRefused(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"[runtime.handlers.Test_Handler]\n", "runtime.handlers"},
		{"[runtime.handlers.test-handler]\ninfra = \"never\"\n", "runtime.handlers.test-handler.infra"},
		{"[runtime]\ndefault_handler = \"kata\"\n", "runtime.default_handler"},
		{"[runtime.handlers.x]\nruntime_path = \"/usr/bin/runc\"\n", `unknown key "runtime.handlers.x.runtime_path"`},
	} {
		dir := newDirs(t)
		writeFile(t, filepath.Join(dir, "crid.toml"), tc.body)
		code, out := runCrid(t, baseArgs(dir)...)
		if code == 0 {
			t.Fatalf("config %q accepted", tc.body)
		}
		mustContain(t, "refusal", out, tc.want)
	}
}
