package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// soakBatch is the number of pods between two samples; the first sample,
// after the first batch, is the reference the end is held to.
const soakBatch = 100

// soakIdle is how long the node idles before the reference and the end.
const soakIdle = 5 * time.Second

// soakWorkers run pods side by side, as a node running jobs does.
const soakWorkers = 4

// TestSoakShort is the churn soak of issue 15 in make test's form: 300
// short-lived pods.
func TestSoakShort(t *testing.T) {
	soak(t, 300)
}

// TestSoak is the full churn soak (make soak): CRID_SOAK_PODS (2,000)
// job-like pods.
func TestSoak(t *testing.T) {
	pods := envInt("CRID_SOAK_PODS", 0)
	if pods == 0 {
		t.Skip("a soak of minutes: make soak sets CRID_SOAK_PODS")
	}
	soak(t, pods)
}

// soak runs total job-like pods through a node (run, create, start, wait
// for the exit, remove), soakWorkers at a time, and samples the node after
// every soakBatch pods with no pod in flight. At the end the daemon's
// goroutines and fds, the monitor's fds, the crid processes (daemon,
// monitor, holders), pod processes, mounts, cgroups and records must equal
// those after the first batch, and each process's PSS be within 5% of it.
func soak(t *testing.T, total int) {
	n := newPodNode(t)
	n.pullBusybox(t)
	var failed atomic.Bool
	one := func(name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rt := n.runtime()
		pod := n.logPod(name)
		r, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		if err != nil {
			return fmt.Errorf("RunPodSandbox %s: %w", name, err)
		}
		c, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: r.PodSandboxId, SandboxConfig: pod,
			Config: ctrConfig("job", "sh", "-c", "echo done; exit 0")})
		if err != nil {
			return fmt.Errorf("CreateContainer %s: %w", name, err)
		}
		if _, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			return fmt.Errorf("StartContainer %s: %w", name, err)
		}
		for {
			st, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: c.ContainerId})
			if err != nil {
				return fmt.Errorf("ContainerStatus %s: %w", name, err)
			}
			if st.Status.State == runtime.ContainerState_CONTAINER_EXITED {
				if st.Status.ExitCode != 0 {
					return fmt.Errorf("job %s exited %d (%s)", name, st.Status.ExitCode, st.Status.Message)
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: c.ContainerId}); err != nil {
			return fmt.Errorf("RemoveContainer %s: %w", name, err)
		}
		if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
			return fmt.Errorf("StopPodSandbox %s: %w", name, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
			return fmt.Errorf("RemovePodSandbox %s: %w", name, err)
		}
		return nil
	}
	batch := func(from, to int) {
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range soakWorkers {
			wg.Add(1)
			go func() { // ends when the batch's pods are taken
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < to && !failed.Load(); i = int(next.Add(1) - 1) {
					if err := one(fmt.Sprintf("job%d", i)); err != nil {
						failed.Store(true)
						t.Errorf("pod %d: %v", i, err)
					}
				}
			}()
		}
		wg.Wait()
		if failed.Load() {
			t.Fatalf("soak stopped at batch %d-%d\n%s", from, to, n.log)
		}
	}
	start := time.Now()
	batch(0, soakBatch)
	// Exits reaped and connections closed: the reference, once stable.
	// The reference and the end are both taken soakIdle after their
	// batch: an idle Go process hands freed heap back to the kernel
	// gradually, so the same idle time on both sides compares like with
	// like.
	time.Sleep(soakIdle)
	ref := n.take(t, fmt.Sprintf("after %d", soakBatch))
	samples := []sample{ref}
	for done := soakBatch; done < total; done += soakBatch {
		batch(done, min(done+soakBatch, total))
		samples = append(samples, n.take(t, fmt.Sprintf("after %d", min(done+soakBatch, total))))
	}
	took := time.Since(start)
	time.Sleep(soakIdle)
	end, same := n.settleTo(t, fmt.Sprintf("end (%d)", total), ref, 30*time.Second)
	samples = append(samples, end)
	pct := func(now, was int) float64 { return 100 * float64(now-was) / float64(was) }
	t.Logf("%d pods in %s (%.1f pods/s, %d at a time)\n%s", total, took.Round(time.Second), float64(total)/took.Seconds(), soakWorkers, sampleTable(samples...))
	t.Logf("the monitor's memory (kB; objects, goroutines and containers as counts):\n%s", monitorTable(samples...))
	t.Logf("end vs after %d: daemon PSS %+.1f%%, monitor PSS %+.1f%%", soakBatch, pct(end.daemonPSS, ref.daemonPSS), pct(end.monitorPSS, ref.monitorPSS))
	if !same {
		t.Errorf("counts at the end differ from those after %d pods:\n%s", soakBatch, sampleTable(ref, end))
	}
	if pct(end.daemonPSS, ref.daemonPSS) > 5 || pct(end.monitorPSS, ref.monitorPSS) > 5 {
		t.Errorf("memory grew more than 5%% from %d pods to %d:\n%s", soakBatch, total, sampleTable(ref, end))
	}
}
