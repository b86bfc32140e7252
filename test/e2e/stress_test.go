package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// churnImage is pulled and removed while containers run from it: a real
// busybox under another name than the one every pod uses.
const churnImage = "public.ecr.aws/docker/library/busybox:1"

// stressCodes is the documented set of answers of each call the stress run
// makes, besides OK. A call the client cancelled (or gave a short deadline)
// may also end Canceled or DeadlineExceeded; a call that was not cancelled
// must never end DeadlineExceeded: it had minutes, so that is a hang.
//
//	NotFound            the id was removed (by this client or another one),
//	                    or the churn image was removed before CreateContainer
//	FailedPrecondition  the container is not in a state the call needs
//	                    (exec into an exited or created container, start of
//	                    a stopped one, create in a stopped pod, stats of a
//	                    container that is gone from the monitor)
var stressCodes = map[string][]codes.Code{
	"RunPodSandbox":       {},
	"CreateContainer":     {codes.NotFound, codes.FailedPrecondition},
	"StartContainer":      {codes.NotFound, codes.FailedPrecondition},
	"ExecSync":            {codes.NotFound, codes.FailedPrecondition},
	"Exec":                {codes.NotFound, codes.FailedPrecondition},
	"ExecSession":         {},
	"StopContainer":       {codes.NotFound},
	"RemoveContainer":     {codes.NotFound},
	"StopPodSandbox":      {codes.NotFound},
	"RemovePodSandbox":    {codes.NotFound},
	"ContainerStatus":     {codes.NotFound},
	"PodSandboxStatus":    {codes.NotFound},
	"ContainerStats":      {codes.NotFound, codes.FailedPrecondition},
	"PodSandboxStats":     {codes.NotFound, codes.FailedPrecondition},
	"ListContainers":      {},
	"ListPodSandbox":      {},
	"ListContainerStats":  {},
	"ListPodSandboxStats": {},
	"ImageStatus":         {},
	"PullImage":           {},
	"RemoveImage":         {},
}

// stressCallTimeout is every call's deadline: far beyond any call's cost
// on a loaded 2-core machine, so an answer past it is a hang.
const stressCallTimeout = 2 * time.Minute

// stressStats counts the run's calls and answers.
type stressStats struct {
	calls, cancelled, pods atomic.Int64
	mu                     sync.Mutex
	byMethod               map[string]map[codes.Code]int
	slowest                map[string]time.Duration
	bad                    []string
}

func (s *stressStats) record(method string, code codes.Code, cancelled bool, took time.Duration, err error) {
	s.calls.Add(1)
	if cancelled {
		s.cancelled.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byMethod[method] == nil {
		s.byMethod[method] = map[codes.Code]int{}
	}
	s.byMethod[method][code]++
	s.slowest[method] = max(s.slowest[method], took)
	ok := code == codes.OK
	for _, c := range stressCodes[method] {
		ok = ok || code == c
	}
	if cancelled && (code == codes.Canceled || code == codes.DeadlineExceeded) {
		ok = true
	}
	if took > stressCallTimeout+5*time.Second {
		ok = false
	}
	if !ok && len(s.bad) < 50 {
		s.bad = append(s.bad, fmt.Sprintf("%s: %v after %s (cancelled %v): %v", method, code, took.Round(time.Millisecond), cancelled, err))
	}
}

func (s *stressStats) table() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "call\tcalls\tslowest\tanswers")
	var methods []string
	for m := range s.byMethod {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		n := 0
		var answers []string
		for c, k := range s.byMethod[m] {
			n += k
			answers = append(answers, fmt.Sprintf("%v %d", c, k))
		}
		sort.Strings(answers)
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", m, n, s.slowest[m].Round(time.Millisecond), strings.Join(answers, ", "))
	}
	_ = w.Flush()
	return b.String()
}

// stressNode is the shared state of the clients: the ids that exist (or
// existed), for calls on another client's objects.
type stressNode struct {
	*podNode
	st   *stressStats
	mu   sync.Mutex
	pods []string
	ctrs []string
}

func (sn *stressNode) remember(pod, ctr string) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if pod != "" {
		sn.pods = append(sn.pods, pod)
	}
	if ctr != "" {
		sn.ctrs = append(sn.ctrs, ctr)
	}
}

// any returns a random pod and container id seen so far (maybe removed).
func (sn *stressNode) any(r *rand.Rand) (pod, ctr string) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if len(sn.pods) > 0 {
		pod = sn.pods[r.IntN(len(sn.pods))]
	}
	if len(sn.ctrs) > 0 {
		ctr = sn.ctrs[r.IntN(len(sn.ctrs))]
	}
	return pod, ctr
}

// call runs fn under the call deadline; with cancelRate it cancels the
// call from the client side after a random 0-50 ms, as kubelet's own
// timeouts and a restarting kubelet do.
func (sn *stressNode) call(r *rand.Rand, cancelRate float64, method string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), stressCallTimeout)
	defer cancel()
	cancelled := r.Float64() < cancelRate
	if cancelled {
		t := time.AfterFunc(time.Duration(r.IntN(50))*time.Millisecond, cancel)
		defer t.Stop()
	}
	start := time.Now()
	err := fn(ctx)
	sn.st.record(method, status.Code(err), cancelled, time.Since(start), err)
	return err
}

// cycle is one client's pod from run to removal, with reads and writes on
// its own and other clients' objects in between.
func (sn *stressNode) cycle(r *rand.Rand, name string, cancelRate float64) {
	rt := sn.runtime()
	pod := sn.logPod(name)
	var podID string
	if sn.call(r, cancelRate, "RunPodSandbox", func(ctx context.Context) error {
		resp, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		podID = resp.GetPodSandboxId()
		return err
	}) != nil {
		return // a cancelled run may still have made the pod: the final sweep removes it
	}
	sn.st.pods.Add(1)
	sn.remember(podID, "")
	image := busybox
	if r.IntN(4) == 0 {
		image = churnImage
	}
	cfg := ctrConfig("c", "sh", "-c", "trap 'exit 0' TERM; while :; do echo tick; sleep 0.2; done")
	cfg.Image = &runtime.ImageSpec{Image: image}
	var ctrID string
	if sn.call(r, cancelRate, "CreateContainer", func(ctx context.Context) error {
		resp, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
		ctrID = resp.GetContainerId()
		return err
	}) == nil {
		sn.remember("", ctrID)
		_ = sn.call(r, cancelRate, "StartContainer", func(ctx context.Context) error {
			_, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctrID})
			return err
		})
	}
	for range 10 + r.IntN(30) {
		sn.op(r, cancelRate, podID, ctrID)
	}
	if ctrID != "" {
		_ = sn.call(r, cancelRate, "StopContainer", func(ctx context.Context) error {
			_, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: ctrID, Timeout: int64(r.IntN(3))})
			return err
		})
		_ = sn.call(r, cancelRate, "RemoveContainer", func(ctx context.Context) error {
			_, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: ctrID})
			return err
		})
	}
	_ = sn.call(r, cancelRate, "StopPodSandbox", func(ctx context.Context) error {
		_, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID})
		return err
	})
	_ = sn.call(r, cancelRate, "RemovePodSandbox", func(ctx context.Context) error {
		_, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
		return err
	})
}

// op is one random call between a pod's start and its end.
func (sn *stressNode) op(r *rand.Rand, cancelRate float64, podID, ctrID string) {
	rt, img := sn.runtime(), sn.images()
	otherPod, otherCtr := sn.any(r)
	pick := func(own, other string) string {
		if own == "" || r.IntN(4) == 0 {
			return other
		}
		return own
	}
	switch k := r.IntN(100); {
	case k < 12:
		_ = sn.call(r, cancelRate, "ExecSync", func(ctx context.Context) error {
			_, err := rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: pick(ctrID, otherCtr), Cmd: []string{"echo", "hi"}, Timeout: 30})
			return err
		})
	case k < 18:
		var url string
		if sn.call(r, cancelRate, "Exec", func(ctx context.Context) error {
			resp, err := rt.Exec(ctx, &runtime.ExecRequest{ContainerId: pick(ctrID, otherCtr), Cmd: []string{"echo", "hi"}, Stdout: true})
			url = resp.GetUrl()
			return err
		}) == nil && r.IntN(2) == 0 {
			// Half the URLs are used (the rest expire unused).
			_ = sn.call(r, cancelRate, "ExecSession", func(ctx context.Context) error {
				s, err := openSession(ctx, url, false, false)
				if err != nil && ctx.Err() != nil {
					return status.FromContextError(ctx.Err()).Err()
				}
				if err != nil {
					return status.Error(codes.Unknown, err.Error())
				}
				defer s.close()
				if _, err := s.status(time.Minute); err != nil {
					return status.Error(codes.DeadlineExceeded, err.Error())
				}
				return nil
			})
		}
	case k < 28:
		_ = sn.call(r, cancelRate, "ContainerStatus", func(ctx context.Context) error {
			_, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: pick(ctrID, otherCtr), Verbose: r.IntN(2) == 0})
			return err
		})
	case k < 38:
		_ = sn.call(r, cancelRate, "PodSandboxStatus", func(ctx context.Context) error {
			_, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pick(podID, otherPod), Verbose: r.IntN(2) == 0})
			return err
		})
	case k < 46:
		_ = sn.call(r, cancelRate, "ContainerStats", func(ctx context.Context) error {
			_, err := rt.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: pick(ctrID, otherCtr)})
			return err
		})
	case k < 54:
		_ = sn.call(r, cancelRate, "PodSandboxStats", func(ctx context.Context) error {
			_, err := rt.PodSandboxStats(ctx, &runtime.PodSandboxStatsRequest{PodSandboxId: pick(podID, otherPod)})
			return err
		})
	case k < 61:
		_ = sn.call(r, cancelRate, "ListContainers", func(ctx context.Context) error {
			_, err := rt.ListContainers(ctx, &runtime.ListContainersRequest{})
			return err
		})
	case k < 68:
		_ = sn.call(r, cancelRate, "ListPodSandbox", func(ctx context.Context) error {
			_, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
			return err
		})
	case k < 72:
		_ = sn.call(r, cancelRate, "ListContainerStats", func(ctx context.Context) error {
			_, err := rt.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{})
			return err
		})
	case k < 76:
		_ = sn.call(r, cancelRate, "ListPodSandboxStats", func(ctx context.Context) error {
			_, err := rt.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{})
			return err
		})
	case k < 82:
		_ = sn.call(r, cancelRate, "ImageStatus", func(ctx context.Context) error {
			_, err := img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: churnImage}})
			return err
		})
	case k < 88:
		// Pulled while other clients remove it.
		_ = sn.call(r, cancelRate, "PullImage", func(ctx context.Context) error {
			_, err := img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: churnImage}})
			return err
		})
	case k < 93:
		// Removed while containers run from it and others pull it.
		_ = sn.call(r, cancelRate, "RemoveImage", func(ctx context.Context) error {
			_, err := img.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: churnImage}})
			return err
		})
	case k < 96:
		// Another client's container stopped under it.
		_ = sn.call(r, cancelRate, "StopContainer", func(ctx context.Context) error {
			_, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: otherCtr, Timeout: 0})
			return err
		})
	case k < 98:
		_ = sn.call(r, cancelRate, "RemoveContainer", func(ctx context.Context) error {
			_, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: otherCtr})
			return err
		})
	default:
		_ = sn.call(r, cancelRate, "StopPodSandbox", func(ctx context.Context) error {
			_, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: otherPod})
			return err
		})
	}
}

// sweep removes every pod and container left (cancelled runs and creates
// may have made some: the server may finish a call its client gave up
// on), without cancellations, until two lists a second apart are empty.
func (sn *stressNode) sweep(t *testing.T) {
	t.Helper()
	for empty := 0; empty < 2; {
		if sn.sweepOnce(t) {
			empty++
		} else {
			empty = 0
		}
		time.Sleep(time.Second)
	}
}

// sweepOnce removes what is listed now and reports whether nothing was.
func (sn *stressNode) sweepOnce(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ctrs, err := sn.runtime().ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ctrs.Containers {
		if _, err := sn.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			t.Errorf("sweep: RemoveContainer %s: %v", c.Id, err)
		}
	}
	pods, err := sn.runtime().ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if _, err := sn.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("sweep: StopPodSandbox %s: %v", p.Id, err)
		}
		if _, err := sn.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("sweep: RemovePodSandbox %s: %v", p.Id, err)
		}
	}
	return len(ctrs.Containers) == 0 && len(pods.Items) == 0
}

// leftovers names the records left on disk and the daemon's log lines
// about them, for a failure message.
func (n *podNode) leftovers() string {
	var b strings.Builder
	for _, kind := range []string{"sandboxes", "containers"} {
		recs, _ := os.ReadDir(filepath.Join(n.dir, "root", "records", kind))
		for _, r := range recs {
			id := strings.TrimSuffix(r.Name(), filepath.Ext(r.Name()))
			fmt.Fprintf(&b, "%s record %s:\n", kind, r.Name())
			for _, l := range strings.Split(n.log.String(), "\n") {
				if len(id) >= 12 && strings.Contains(l, id[:12]) {
					fmt.Fprintf(&b, "  %.400s\n", l)
				}
			}
		}
	}
	return b.String()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestStress is issue 15's load run (make stress): CRID_STRESS_CLIENTS
// clients (50) make at least CRID_STRESS_CALLS mixed calls (10,000) over at
// least CRID_STRESS_PODS pods (100), 5% of them cancelled by the client.
// Every answer must be in the call's documented set (stressCodes) and come
// within its deadline; after a sweep, the daemon's goroutines and fds, the
// monitor's fds, the crid and pod processes, mounts, cgroups and records
// are back at the baseline taken before the run, and the memory of each
// process within stressMemSlackKB of it.
func TestStress(t *testing.T) {
	target := envInt("CRID_STRESS_CALLS", 0)
	if target == 0 {
		t.Skip("a load run of minutes: make stress sets CRID_STRESS_CALLS")
	}
	clients := envInt("CRID_STRESS_CLIENTS", 50)
	minPods := envInt("CRID_STRESS_PODS", 100)
	const cancelRate = 0.05
	n := newPodNode(t)
	n.pullBusybox(t)
	if _, err := n.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: churnImage}}); err != nil {
		t.Fatal(err)
	}
	st := &stressStats{byMethod: map[string]map[codes.Code]int{}, slowest: map[string]time.Duration{}}
	sn := &stressNode{podNode: n, st: st}
	// Warm-up cycles start what the daemon starts once (streaming
	// server, CNI and monitor connections), and fill the monitor's pool of
	// idle log staging pipes (crilog keeps up to 4, 8 fds) with logging
	// containers side by side, before the baseline.
	var warm sync.WaitGroup
	for i := range 8 {
		warm.Add(1)
		go func() { // ends with its pod
			defer warm.Done()
			sn.cycle(rand.New(rand.NewPCG(1, uint64(i))), fmt.Sprintf("warm%d", i), 0)
		}()
	}
	warm.Wait()
	sn.sweep(t)
	time.Sleep(2 * time.Second)
	base := n.take(t, "baseline")

	start := time.Now()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() { // ends when the run has its calls and pods
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; st.calls.Load() < int64(target) || st.pods.Load() < int64(minPods); i++ {
				select {
				case <-n.exited:
					return
				default:
				}
				sn.cycle(r, fmt.Sprintf("s%d-%d", w, i), cancelRate)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	select {
	case <-n.exited:
		t.Fatalf("crid exited under load: %v\n%s", n.cmd.ProcessState, n.log)
	default:
	}
	after := n.take(t, "after run")
	sn.sweep(t)
	// The churn image as at the baseline (records count images too).
	if _, err := n.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: churnImage}}); err != nil {
		t.Fatal(err)
	}
	// Unused exec URLs expire after a minute; then everything must be back.
	settled, same := n.settleTo(t, "after sweep", base, 3*time.Minute)
	t.Logf("%d clients, %d calls (%d cancelled by the client) over %d pods in %s (%.0f calls/s)\n%s",
		clients, st.calls.Load(), st.cancelled.Load(), st.pods.Load(), took.Round(time.Second), float64(st.calls.Load())/took.Seconds(), st.table())
	t.Logf("figures:\n%s", sampleTable(base, after, settled))
	t.Logf("memory after the sweep vs the baseline: daemon %+d kB, monitor %+d kB (bound +%d kB each)",
		settled.daemonPSS-base.daemonPSS, settled.monitorPSS-base.monitorPSS, stressMemSlackKB)
	if len(st.bad) > 0 {
		t.Errorf("%d answers outside the documented set or deadline:\n%s", len(st.bad), strings.Join(st.bad, "\n"))
	}
	if st.calls.Load() < int64(target) || st.pods.Load() < int64(minPods) {
		t.Errorf("the run made %d calls over %d pods, want %d over %d", st.calls.Load(), st.pods.Load(), target, minPods)
	}
	if !same {
		t.Errorf("counts not back at the baseline after the sweep:\n%s\n%s", sampleTable(base, settled), n.leftovers())
	}
	if settled.daemonPSS > base.daemonPSS+stressMemSlackKB || settled.monitorPSS > base.monitorPSS+stressMemSlackKB {
		t.Errorf("memory beyond the bound after the sweep:\n%s", sampleTable(base, settled))
	}
}

// stressMemSlackKB bounds a process's PSS growth over a stress run: Go
// keeps freed heap for minutes before returning it to the kernel, so a
// run's peak stays resident for a while; a leak of the run's objects
// (10,000 calls, 100+ pods) would exceed it.
const stressMemSlackKB = 48 * 1024
