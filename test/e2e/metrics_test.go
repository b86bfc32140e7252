package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// scrape is one GET /metrics of a daemon, parsed.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", addr, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: not the Prometheus text format: %v", addr, err)
	}
	return fams
}

// get returns the value of name{labels} (a histogram's count), 0 when the
// series does not exist; labels must name every label of the series.
func (s scrape) get(name string, labels ...string) float64 {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range s[name].GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func rpcCount(s scrape, method, code string) float64 {
	svc := "runtime.v1.RuntimeService"
	if strings.Contains(method, "Image") {
		svc = "runtime.v1.ImageService"
	}
	return s.get("crid_grpc_requests_total", "service", svc, "method", method, "code", code)
}

func rpcLatencies(s scrape, method string) float64 {
	svc := "runtime.v1.RuntimeService"
	if strings.Contains(method, "Image") {
		svc = "runtime.v1.ImageService"
	}
	return s.get("crid_grpc_request_duration_seconds", "service", svc, "method", method)
}

// registryBlobBytes is what a pull of repo:tag for this node's platform
// downloads from the test bed's registry: its config and layer blobs, by
// the sizes the registry's manifests give.
func registryBlobBytes(t *testing.T, repo, tag string) float64 {
	t.Helper()
	get := func(ref string, into any) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/v2/%s/manifests/%s", testRegistry, repo, ref), nil)
		req.Header.Set("Accept", strings.Join([]string{
			"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
			"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}, ", "))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("manifest %s:%s: %s", repo, ref, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatal(err)
		}
	}
	type desc struct {
		Digest   string `json:"digest"`
		Size     int64  `json:"size"`
		Platform struct {
			Architecture string `json:"architecture"`
			OS           string `json:"os"`
		} `json:"platform"`
	}
	var m struct {
		Manifests []desc `json:"manifests"`
		Config    desc   `json:"config"`
		Layers    []desc `json:"layers"`
	}
	get(tag, &m)
	for _, d := range m.Manifests {
		if d.Platform.OS == "linux" && d.Platform.Architecture == goruntime.GOARCH {
			m.Manifests = nil
			get(d.Digest, &m)
			break
		}
	}
	if m.Config.Size == 0 || len(m.Layers) == 0 {
		t.Fatalf("%s:%s: no manifest for linux/%s with a config and layers", repo, tag, goruntime.GOARCH)
	}
	total := m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return float64(total)
}

// The Prometheus endpoint of a real crid, enabled by [metrics] address in
// crid.toml, sees the counters move: RPCs by code and their latency, a
// pull's exact bytes, a failed pull, pod and container gauges through a
// pod's life, CNI ADD and DEL, an OOM kill and a monitor restart; Go
// runtime and process metrics are there. Given an empty address the daemon
// serves no endpoint, and an address it cannot bind stops it at start.
func TestMetrics(t *testing.T) {
	dir := newDirs(t)
	n := &podNode{dir: dir}
	n.writeConfig(t)
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "crid.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfgPath, string(cfg)+fmt.Sprintf("\n[metrics]\naddress = %q\n", addr))
	n.daemon = startDaemon(t, dir, n.args()...)
	ctx := context.Background()

	s := scrapeMetrics(t, addr)
	if v := rpcCount(s, "Version", "OK"); v < 1 {
		t.Errorf("the Version calls startDaemon made are not counted: %v", v)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_open_fds"} {
		if s.get(name) <= 0 {
			t.Errorf("%s = %v", name, s.get(name))
		}
	}
	for name := range s {
		if !strings.HasPrefix(name, "crid_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s has none of the prefixes crid_, go_, process_", name)
		}
	}
	if v := s.get("crid_pod_sandboxes", "state", "ready"); v != 0 {
		t.Errorf("ready pods on a fresh node: %v", v)
	}

	// A pull: exactly the registry's blob bytes, one duration, one OK.
	n.pullBusybox(t)
	after := scrapeMetrics(t, addr)
	wantBytes := registryBlobBytes(t, "e2e-test-images/busybox", "1.29-2")
	if got := after.get("crid_image_pull_bytes_total") - s.get("crid_image_pull_bytes_total"); got != wantBytes {
		t.Errorf("pull bytes %v, want the registry's %v", got, wantBytes)
	}
	if got := after.get("crid_image_pull_duration_seconds") - s.get("crid_image_pull_duration_seconds"); got != 1 {
		t.Errorf("pull durations observed: %v, want 1", got)
	}
	if got := rpcCount(after, "PullImage", "OK") - rpcCount(s, "PullImage", "OK"); got != 1 {
		t.Errorf("PullImage OK counted %v times, want 1", got)
	}
	if got := rpcLatencies(after, "PullImage") - rpcLatencies(s, "PullImage"); got != 1 {
		t.Errorf("PullImage latencies observed: %v, want 1", got)
	}

	// A failed pull: a failure, and the RPC under the code it got.
	s = after
	_, err = n.images().PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: testRegistry + "/e2e-test-images/busybox:no-such-tag"}})
	if err == nil {
		t.Fatal("pull of a missing tag succeeded")
	}
	code := status.Code(err).String()
	after = scrapeMetrics(t, addr)
	if got := after.get("crid_image_pull_failures_total") - s.get("crid_image_pull_failures_total"); got != 1 {
		t.Errorf("pull failures %v, want 1", got)
	}
	if got := rpcCount(after, "PullImage", code) - rpcCount(s, "PullImage", code); got != 1 {
		t.Errorf("PullImage %s counted %v times, want 1", code, got)
	}
	if got := after.get("crid_image_pull_duration_seconds") - s.get("crid_image_pull_duration_seconds"); got != 0 {
		t.Errorf("a failed pull was observed as a duration")
	}

	// A pod on the CNI network, a long-running container, and one the
	// memory limit kills.
	s = after
	pod := n.logPod("metrics")
	podID := n.run(t, pod)
	after = scrapeMetrics(t, addr)
	if got := after.get("crid_pod_sandboxes", "state", "ready"); got != 1 {
		t.Errorf("ready pods %v, want 1", got)
	}
	if got := after.get("crid_cni_operation_duration_seconds", "operation", "ADD") - s.get("crid_cni_operation_duration_seconds", "operation", "ADD"); got != 1 {
		t.Errorf("CNI ADDs observed: %v, want 1", got)
	}
	if got := after.get("crid_cni_operation_errors_total", "operation", "ADD"); got != 0 {
		t.Errorf("CNI ADD errors: %v", got)
	}
	if got := rpcLatencies(after, "RunPodSandbox"); got != 1 {
		t.Errorf("RunPodSandbox latencies observed: %v, want 1", got)
	}
	sleeper := n.create(t, podID, pod, ctrConfig("sleeper", "sleep", "1000"), true)
	s = scrapeMetrics(t, addr)
	if got := s.get("crid_containers", "state", "running"); got != 1 {
		t.Errorf("running containers %v, want 1", got)
	}
	oom := ctrConfig("oom", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
	oom.Linux.Resources.MemoryLimitInBytes = 32 << 20
	oom.Linux.Resources.MemorySwapLimitInBytes = 32 << 20
	oomID := n.create(t, podID, pod, oom, true)
	if st := n.waitExited(t, oomID, 20*time.Second); st.Reason != "OOMKilled" {
		t.Fatalf("the memory hog exited %d with reason %q, want OOMKilled", st.ExitCode, st.Reason)
	}
	after = scrapeMetrics(t, addr)
	if got := after.get("crid_container_oom_kills_total") - s.get("crid_container_oom_kills_total"); got != 1 {
		t.Errorf("OOM kills counted %v, want 1", got)
	}
	if r, x := after.get("crid_containers", "state", "running"), after.get("crid_containers", "state", "exited"); r != 1 || x != 1 {
		t.Errorf("containers running %v exited %v, want 1 and 1", r, x)
	}

	// kill -9 of the monitor: the restart is counted, the container runs on.
	s = after
	mons := n.monitorPids()
	if len(mons) != 1 {
		t.Fatalf("monitors for this node: %v", mons)
	}
	if err := syscall.Kill(mons[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		after = scrapeMetrics(t, addr)
		if after.get("crid_monitor_restarts_total")-s.get("crid_monitor_restarts_total") >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no monitor restart counted 15 s after kill -9 of the monitor\n%s", n.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := after.get("crid_monitor_restarts_total") - s.get("crid_monitor_restarts_total"); got != 1 {
		t.Errorf("monitor restarts %v, want 1", got)
	}
	if st := n.ctrStatus(t, sleeper); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("sleeper after the monitor kill: %v", st.State)
	}

	// Stop: the pod is not ready, its network deleted, its containers
	// exited; remove: nothing is left to count.
	s = after
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	after = scrapeMetrics(t, addr)
	if r, nr := after.get("crid_pod_sandboxes", "state", "ready"), after.get("crid_pod_sandboxes", "state", "notready"); r != 0 || nr != 1 {
		t.Errorf("after StopPodSandbox: ready %v notready %v, want 0 and 1", r, nr)
	}
	if got := after.get("crid_cni_operation_duration_seconds", "operation", "DEL") - s.get("crid_cni_operation_duration_seconds", "operation", "DEL"); got < 1 {
		t.Errorf("CNI DELs observed at stop: %v", got)
	}
	if got := after.get("crid_cni_operation_errors_total", "operation", "DEL"); got != 0 {
		t.Errorf("CNI DEL errors: %v", got)
	}
	if r, x := after.get("crid_containers", "state", "running"), after.get("crid_containers", "state", "exited"); r != 0 || x != 2 {
		t.Errorf("after StopPodSandbox: containers running %v exited %v, want 0 and 2", r, x)
	}
	n.removePod(t, podID)
	after = scrapeMetrics(t, addr)
	for _, f := range []struct{ name, state string }{{"crid_pod_sandboxes", "ready"}, {"crid_pod_sandboxes", "notready"}, {"crid_containers", "created"}, {"crid_containers", "running"}, {"crid_containers", "exited"}} {
		if got := after.get(f.name, "state", f.state); got != 0 {
			t.Errorf("after RemovePodSandbox: %s{state=%q} = %v", f.name, f.state, got)
		}
	}
	if got := rpcCount(after, "RemovePodSandbox", "OK"); got != 1 {
		t.Errorf("RemovePodSandbox OK counted %v times, want 1", got)
	}

	// An empty address (the flag over the file) serves nothing: the port
	// is free again once the old daemon is gone.
	n.daemon.stop(syscall.SIGTERM, 10*time.Second)
	n.daemon = startDaemon(t, dir, append(n.args(), "--metrics-address=")...)
	c := http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("a daemon with an empty metrics.address answers on %s: %s", addr, resp.Status)
	}
	n.daemon.stop(syscall.SIGTERM, 10*time.Second)

	// An address crid cannot bind stops it at start, naming the key.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exit, out := runCrid(t, append(baseArgs(dir), append(n.args(), "--metrics-address", l.Addr().String())...)...)
	if exit == 0 || !strings.Contains(out, "metrics.address") {
		t.Errorf("crid with a busy metrics address: exit %d\n%s", exit, out)
	}
}
