package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container's exit code and reason: Error for a non-zero exit,
// Completed for zero, OOMKilled when the memory limit kills it.
func TestContainerExitCodesAndReasons(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("exits")
	podID := n.run(t, pod)
	oom := ctrConfig("oom", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
	oom.Linux.Resources.MemoryLimitInBytes = 32 << 20
	oom.Linux.Resources.MemorySwapLimitInBytes = 32 << 20
	for _, tc := range []struct {
		cfg    *runtime.ContainerConfig
		code   int32
		reason string
	}{
		{ctrConfig("fails", "sh", "-c", "exit 3"), 3, "Error"},
		{ctrConfig("succeeds", "true"), 0, "Completed"},
		{oom, 137, "OOMKilled"},
	} {
		id := n.create(t, podID, pod, tc.cfg, true)
		st := n.waitExited(t, id, 20*time.Second)
		if st.ExitCode != tc.code || st.Reason != tc.reason {
			t.Errorf("%s: exit %d reason %q message %q, want %d %q", tc.cfg.Metadata.Name, st.ExitCode, st.Reason, st.Message, tc.code, tc.reason)
		}
		if st.FinishedAt == 0 || st.FinishedAt < st.StartedAt {
			t.Errorf("%s: started %d finished %d", tc.cfg.Metadata.Name, st.StartedAt, st.FinishedAt)
		}
	}
	n.removePod(t, podID)
}

// An exited container's rootfs leaves the host's mount table (kubelet keeps
// exited containers, thousands on a busy node, and each mount left would be
// copied into every new container's mount namespace) while its writable
// layer stays: its files are still counted, and RemoveContainer removes
// them. The same holds for an exit seen by a restarted daemon.
func TestExitedContainerRootfsUnmounted(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("unmounted")
	podID := n.run(t, pod)
	rootfsMounted := func(id string) bool {
		mi, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(mi), id)
	}
	waitUnmounted := func(id string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); rootfsMounted(id); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("rootfs of exited container %s still mounted after 20 s", id)
			}
		}
	}

	id := n.create(t, podID, pod, ctrConfig("writes", "sh", "-c", "dd if=/dev/zero of=/blob bs=1M count=2 2>/dev/null"), true)
	st := n.waitExited(t, id, 20*time.Second)
	waitUnmounted(id)
	if u := n.ctrStats(t, id).GetWritableLayer().GetUsedBytes().GetValue(); u < 2*mib {
		t.Fatalf("writable layer of the exited container: %d bytes, want its 2 MiB kept", u)
	}
	// Nor does the monitor keep its log open: a descriptor per exited
	// container ran it out of them at 20,000.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		holders := openersOf(t, st.LogPath, n.monitorPids())
		if len(holders) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the monitor still holds the exited container's log %s: %v", st.LogPath, holders)
		}
	}
	if _, err := n.runtime().ReopenContainerLog(context.Background(), &runtime.ReopenContainerLogRequest{ContainerId: id}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ReopenContainerLog of an exited container: %v, want FailedPrecondition", err)
	}

	// Exits while the daemon is down: seen on its start.
	sleeper := n.create(t, podID, pod, ctrConfig("sleeper", "sleep", "3600"), true)
	if !rootfsMounted(sleeper) {
		t.Fatal("a running container's rootfs is not mounted")
	}
	if log := n.ctrStatus(t, sleeper).LogPath; len(openersOf(t, log, n.monitorPids())) == 0 {
		t.Fatalf("the monitor does not hold a running container's log %q: the check above would see nothing", log)
	}
	n.daemon.stop(syscall.SIGKILL, 5*time.Second)
	pid := initPid(t, sleeper)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the container's process %d: %v", pid, err)
	}
	n.daemon = startDaemonEnv(t, n.dir, nil, n.args()...)
	n.waitExited(t, sleeper, 20*time.Second)
	waitUnmounted(sleeper)

	for _, c := range []string{id, sleeper} {
		if _, err := n.runtime().RemoveContainer(context.Background(), &runtime.RemoveContainerRequest{ContainerId: c}); err != nil {
			t.Fatalf("RemoveContainer %s: %v", c, err)
		}
	}
	n.removePod(t, podID)
}

// openersOf lists the descriptors of pids that are open on path.
func openersOf(t *testing.T, path string, pids []int) []string {
	t.Helper()
	var out []string
	for _, pid := range pids {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && l == path {
				out = append(out, fd)
			}
		}
	}
	return out
}
