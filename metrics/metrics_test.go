package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// gather returns the families of a fresh registry over src, by name.
func gather(t *testing.T, src Sources) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	mfs, err := NewRegistry(src).Gather()
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out, err
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// Every metric crid defines is named by Prometheus' conventions (promlint:
// units in the name, _total on counters, no reserved suffixes), carries the
// crid_ prefix, and the Go runtime and process metrics are there too.
func TestNamesFollowConventions(t *testing.T) {
	// Every vector gets a child, so the linter sees every family.
	RPC("/runtime.v1.RuntimeService/Version", "OK", time.Millisecond)
	PullBytes(1)
	PullDone(time.Second, nil)
	PullDone(time.Second, errors.New("x"))
	OOMKill()
	MonitorRestart()
	src := Sources{Pods: func() map[string]int { return map[string]int{"ready": 1} }, Containers: func() map[string]int { return map[string]int{"running": 1} }}
	reg := NewRegistry(src)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	fams, err := gather(t, src)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"crid_grpc_requests_total", "crid_grpc_request_duration_seconds",
		"crid_image_pull_bytes_total", "crid_image_pull_duration_seconds", "crid_image_pull_failures_total",
		"crid_cni_operation_duration_seconds", "crid_cni_operation_errors_total",
		"crid_container_oom_kills_total", "crid_monitor_restarts_total",
		"crid_pod_sandboxes", "crid_containers",
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_open_fds",
	}
	for _, name := range want {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, "crid_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("%s: not crid_, go_ or process_", name)
		}
	}
}

// RPC counts a call under its service, method and code, and observes its
// duration under service and method.
func TestRPC(t *testing.T) {
	svc, method := "runtime.v1.ImageService", "PullImage"
	before := testutil.ToFloat64(rpcRequests.WithLabelValues(svc, method, "NotFound"))
	RPC("/"+svc+"/"+method, "NotFound", 3*time.Second)
	if got := testutil.ToFloat64(rpcRequests.WithLabelValues(svc, method, "NotFound")); got != before+1 {
		t.Errorf("requests{code=NotFound}: %v, want %v", got, before+1)
	}
	fams, _ := gather(t, Sources{})
	var found bool
	for _, m := range fams["crid_grpc_request_duration_seconds"].GetMetric() {
		l := labelsOf(m)
		if l["service"] != svc || l["method"] != method {
			continue
		}
		found = true
		h := m.GetHistogram()
		if h.GetSampleCount() < 1 || h.GetSampleSum() < 3 {
			t.Errorf("duration histogram: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
		}
		// 3 s falls in the 5 s bucket, not the 2.5 s one.
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 2.5 && b.GetCumulativeCount() == h.GetSampleCount() {
				t.Errorf("3 s counted at or below 2.5 s: %v", b)
			}
		}
	}
	if !found {
		t.Errorf("no duration series for %s/%s", svc, method)
	}
	if s, m := splitMethod("bogus"); s != "unknown" || m != "bogus" {
		t.Errorf("splitMethod(bogus) = %q, %q", s, m)
	}
}

// A failed pull is counted as a failure and leaves the duration histogram
// alone; a successful one is observed; bytes add up.
func TestPull(t *testing.T) {
	fails, count, bytes := testutil.ToFloat64(pullFailures), histCount(t, pullDuration), testutil.ToFloat64(pullBytes)
	PullDone(time.Second, errors.New("no such tag"))
	if got := testutil.ToFloat64(pullFailures); got != fails+1 {
		t.Errorf("failures %v, want %v", got, fails+1)
	}
	if got := histCount(t, pullDuration); got != count {
		t.Errorf("a failed pull was observed in the duration: %d, was %d", got, count)
	}
	PullDone(2*time.Second, nil)
	if got := histCount(t, pullDuration); got != count+1 {
		t.Errorf("duration count %d, want %d", got, count+1)
	}
	PullBytes(1000)
	PullBytes(0)
	PullBytes(-5)
	if got := testutil.ToFloat64(pullBytes); got != bytes+1000 {
		t.Errorf("bytes %v, want %v", got, bytes+1000)
	}
}

func histCount(t *testing.T, h interface{ Write(*dto.Metric) error }) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// CNI observes both operations, counts errors per operation, and has both
// series from the start.
func TestCNI(t *testing.T) {
	fams, _ := gather(t, Sources{})
	ops := map[string]bool{}
	for _, m := range fams["crid_cni_operation_errors_total"].GetMetric() {
		ops[labelsOf(m)["operation"]] = true
	}
	if !ops[CNIAdd] || !ops[CNIDel] {
		t.Errorf("CNI error series at start: %v", ops)
	}
	addErrs, delErrs := testutil.ToFloat64(cniErrors.WithLabelValues(CNIAdd)), testutil.ToFloat64(cniErrors.WithLabelValues(CNIDel))
	CNI(CNIAdd, 400*time.Millisecond, nil)
	CNI(CNIDel, 10*time.Millisecond, errors.New("plugin failed"))
	if got := testutil.ToFloat64(cniErrors.WithLabelValues(CNIAdd)); got != addErrs {
		t.Errorf("ADD errors %v after a good ADD, was %v", got, addErrs)
	}
	if got := testutil.ToFloat64(cniErrors.WithLabelValues(CNIDel)); got != delErrs+1 {
		t.Errorf("DEL errors %v, want %v", got, delErrs+1)
	}
}

// The state gauges are read from the sources at every scrape; a source
// that panics fails its own family in the scrape, not the process, and
// the rest is still gathered.
func TestStateGaugesReadAtScrape(t *testing.T) {
	var running atomic.Int64
	src := Sources{
		Pods:       func() map[string]int { return map[string]int{"ready": 2, "notready": 0} },
		Containers: func() map[string]int { return map[string]int{"running": int(running.Load()), "exited": 1} },
	}
	reg := NewRegistry(src)
	value := func(name, state string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == name && labelsOf(m)["state"] == state {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no %s{state=%q}", name, state)
		return 0
	}
	if v := value("crid_containers", "running"); v != 0 {
		t.Errorf("running %v, want 0", v)
	}
	running.Store(3)
	if v := value("crid_containers", "running"); v != 3 {
		t.Errorf("running %v after the source changed, want 3", v)
	}
	if v := value("crid_pod_sandboxes", "ready"); v != 2 {
		t.Errorf("ready pods %v, want 2", v)
	}
	if v := value("crid_pod_sandboxes", "notready"); v != 0 {
		t.Errorf("notready pods %v, want 0", v)
	}

	fams, err := gather(t, Sources{Pods: func() map[string]int { panic("boom") }, Containers: src.Containers})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("gather with a panicking source: %v", err)
	}
	if fams["crid_containers"] == nil || fams["go_goroutines"] == nil {
		t.Errorf("the other families were lost with the panicking source")
	}
}

// The endpoint serves the text format on GET /metrics only, and Shutdown
// ends Serve without an error.
func TestServer(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Sources{Pods: func() map[string]int { return map[string]int{"ready": 7} }})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	base := "http://" + s.Addr().String()

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("GET /metrics: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`crid_pod_sandboxes{state="ready"} 7`, "# TYPE crid_grpc_request_duration_seconds histogram", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	for _, c := range []struct{ method, path string }{{"GET", "/"}, {"GET", "/debug/pprof/"}, {"POST", "/metrics"}} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s %s: %s", c.method, c.path, resp.Status)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := http.Get(base + "/metrics"); err == nil {
		t.Errorf("still serving after Shutdown")
	}
}

// A bad or busy address fails Listen naming the key.
func TestListenErrors(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Sources{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.l.Close()
	for _, addr := range []string{s.Addr().String(), "256.1.1.1:80", "nohostport"} {
		if _, err := Listen(addr, Sources{}); err == nil || !strings.Contains(err.Error(), "metrics.address") {
			t.Errorf("Listen(%q): %v", addr, err)
		}
	}
}

// The cost of reporting on the request path: one RPC (a counter and a
// histogram under a vector's read lock), one CNI observation, one pull
// read. Compare with a pod start (hundreds of milliseconds).
func BenchmarkRPC(b *testing.B) {
	for b.Loop() {
		RPC("/runtime.v1.RuntimeService/RunPodSandbox", "OK", 300*time.Millisecond)
	}
}

func BenchmarkRPCParallel(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			RPC("/runtime.v1.RuntimeService/RunPodSandbox", "OK", 300*time.Millisecond)
		}
	})
}

func BenchmarkCNI(b *testing.B) {
	for b.Loop() {
		CNI(CNIAdd, 400*time.Millisecond, nil)
	}
}

func BenchmarkPullBytes(b *testing.B) {
	for b.Loop() {
		PullBytes(32 << 10)
	}
}

// A scrape of a node with a few hundred pods' worth of state.
func BenchmarkScrape(b *testing.B) {
	for i := range 50 {
		RPC("/runtime.v1.RuntimeService/M"+string(rune('a'+i%26)), "OK", time.Millisecond)
	}
	reg := NewRegistry(Sources{
		Pods:       func() map[string]int { return map[string]int{"ready": 300, "notready": 10} },
		Containers: func() map[string]int { return map[string]int{"created": 1, "running": 300, "exited": 20} },
	})
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
