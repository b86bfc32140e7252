package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fuseGate freezes a test filesystem: while frozen, every lookup and
// getattr blocks until thawed (or interrupted), as a hung NFS or FUSE
// volume does.
type fuseGate struct {
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{}
}

func (g *fuseGate) freeze() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.frozen {
		g.frozen, g.thaw = true, make(chan struct{})
	}
}

func (g *fuseGate) unfreeze() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.frozen {
		g.frozen = false
		close(g.thaw)
	}
}

// wait blocks while frozen; an interrupted request (its caller killed)
// ends with EINTR.
func (g *fuseGate) wait(ctx context.Context) syscall.Errno {
	g.mu.Lock()
	frozen, thaw := g.frozen, g.thaw
	g.mu.Unlock()
	if !frozen {
		return 0
	}
	select {
	case <-thaw:
		return 0
	case <-ctx.Done():
		return syscall.EINTR
	}
}

// gateDir is a directory of the test filesystem whose lookups and
// attributes wait on the gate.
type gateDir struct {
	fs.Inode
	gate *fuseGate
}

var (
	_ fs.NodeGetattrer = (*gateDir)(nil)
	_ fs.NodeLookuper  = (*gateDir)(nil)
)

func (d *gateDir) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if e := d.gate.wait(ctx); e != 0 {
		return e
	}
	out.Mode = syscall.S_IFDIR | 0o755
	return 0
}

func (d *gateDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := d.gate.wait(ctx); e != 0 {
		return nil, e
	}
	ch := d.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	if ch.IsDir() {
		out.Mode = syscall.S_IFDIR | 0o755
	} else {
		out.Mode = syscall.S_IFREG | 0o644
	}
	return ch, 0
}

// OnAdd makes the tree: vol/ holding data.
func (d *gateDir) OnAdd(ctx context.Context) {
	if d.IsRoot() {
		vol := d.NewPersistentInode(ctx, &gateDir{gate: d.gate}, fs.StableAttr{Mode: syscall.S_IFDIR})
		d.AddChild("vol", vol, false)
		data := vol.NewPersistentInode(ctx, &fs.MemRegularFile{Data: []byte("volume data\n"), Attr: fuse.Attr{Mode: 0o644}}, fs.StableAttr{})
		vol.AddChild("data", data, false)
	}
}

// serveStuckFS mounts the test filesystem at dir and returns its gate and
// an unmount that the test calls (and cleanup repeats harmlessly).
func serveStuckFS(t *testing.T, dir string) (*fuseGate, func()) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gate := &fuseGate{}
	zero := time.Duration(0)
	srv, err := fs.Mount(dir, &gateDir{gate: gate}, &fs.Options{
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		// mount(2) directly: the tests run as root, and the machine has no
		// fusermount.
		MountOptions: fuse.MountOptions{AllowOther: true, FsName: "crid-stuckfs", Name: "stuckfs", DirectMountStrict: true},
	})
	if err != nil {
		t.Fatalf("mount the test FUSE filesystem: %v", err)
	}
	var once sync.Once
	unmount := func() {
		once.Do(func() {
			gate.unfreeze()
			if err := srv.Unmount(); err != nil {
				t.Logf("unmount %s: %v; detaching it", dir, err)
				_ = syscall.Unmount(dir, syscall.MNT_DETACH)
			}
			srv.Wait()
		})
	}
	t.Cleanup(unmount)
	return gate, unmount
}

// podLatency runs a pod with a container through RunPodSandbox,
// CreateContainer, StartContainer and ContainerStatus, each under a 30 s
// deadline (kubelet's is 2 minutes), and returns each call's time.
func podLatency(t *testing.T, n *podNode, name string) map[string]time.Duration {
	t.Helper()
	rt := n.runtime()
	took := map[string]time.Duration{}
	timed := func(what string, fn func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		if err := fn(ctx); err != nil {
			t.Fatalf("%s of pod %s while another pod's volume hangs: %v", what, name, err)
		}
		took[what] = time.Since(start)
	}
	pod := n.logPod(name)
	var podID, ctrID string
	timed("RunPodSandbox", func(ctx context.Context) error {
		r, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		podID = r.GetPodSandboxId()
		return err
	})
	timed("CreateContainer", func(ctx context.Context) error {
		r, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: ctrConfig("app", "sleep", "3600")})
		ctrID = r.GetContainerId()
		return err
	})
	timed("StartContainer", func(ctx context.Context) error {
		_, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctrID})
		return err
	})
	timed("ContainerStatus", func(ctx context.Context) error {
		_, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctrID})
		return err
	})
	timed("RemovePodSandbox", func(ctx context.Context) error {
		if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			return err
		}
		_, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
		return err
	})
	return took
}

// TestStuckFilesystem is issue 15 item 4's hung volume: a container whose
// bind-mount source sits on a filesystem that stopped answering may hang
// its own CreateContainer, but another pod's calls go on, kubelet's retry
// of the name after its deadline is told which attempt holds the name and
// where it is stuck, the retry succeeds once the filesystem answers, and
// unmounting the filesystem leaves nothing of crid's behind.
func TestStuckFilesystem(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	// Outside the node's dir, so the node's mount count leaves it out.
	mnt := filepath.Join(t.TempDir(), "stuckfs")
	gate, unmount := serveStuckFS(t, mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "vol", "data")); err != nil || string(b) != "volume data\n" {
		t.Fatalf("the test filesystem does not serve: %q %v", b, err)
	}
	// The reference once a pod has come and gone (the first pod starts
	// what the daemon and the monitor keep: connections, pipes).
	unloaded := podLatency(t, n, "calm0")
	before := n.take(t, "before")

	rt := n.runtime()
	pod := n.logPod("stuck")
	podID := n.run(t, pod)
	cfg := ctrConfig("web", "sleep", "3600")
	cfg.Mounts = []*runtime.Mount{{HostPath: filepath.Join(mnt, "vol"), ContainerPath: "/vol"}}
	create := func(bound time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		r, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
		return r.GetContainerId(), err
	}

	gate.freeze()
	stuckAt := time.Now()
	// kubelet's first attempt, with a short deadline of its own.
	if _, err := create(5 * time.Second); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("CreateContainer with its source frozen: %v, want DeadlineExceeded", err)
	}
	// Another pod, meanwhile, at its normal speed.
	loaded := podLatency(t, n, "calm1")
	var rows []string
	for _, call := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "ContainerStatus", "RemovePodSandbox"} {
		rows = append(rows, fmt.Sprintf("  %-17s unloaded %8s   one pod's volume hung %8s", call, unloaded[call].Round(time.Millisecond), loaded[call].Round(time.Millisecond)))
	}
	t.Logf("another pod's calls:\n%s", strings.Join(rows, "\n"))

	// kubelet retries the same name: the answer names the stuck attempt.
	_, err := create(5 * time.Second)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("retry of the name while the first attempt hangs: %v, want AlreadyExists naming the attempt", err)
	}
	msg := status.Convert(err).Message()
	t.Logf("retry after %s: %s", time.Since(stuckAt).Round(time.Second), msg)
	mustContain(t, "the retry's error", msg, "being created by an attempt", "started at", "bind-mount sources")

	// The filesystem answers again: the stuck attempt unwinds, a retry
	// creates the container and it runs.
	gate.unfreeze()
	var ctrID string
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctrID, err = create(30 * time.Second)
		if err == nil {
			break
		}
		if status.Code(err) != codes.AlreadyExists || time.Now().After(deadline) {
			t.Fatalf("retry after the filesystem answers again: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := rt.StartContainer(context.Background(), &runtime.StartContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if st := n.ctrStatus(t, ctrID); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after the retry: %v", st.State)
	}
	if _, err := rt.StopPodSandbox(context.Background(), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}

	// The filesystem goes: nothing of crid's is left on it or beside it
	// (mounts, pod and crid processes, cgroups, records, goroutines, fds).
	unmount()
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), mnt) {
		t.Fatalf("the test filesystem is still mounted at %s", mnt)
	}
	// Mounts, processes, cgroups, records, goroutines and the daemon's
	// fds as before; the monitor's fds are left out: its pool of idle log
	// staging pipes (up to 4) follows what containers logged, not leaks.
	left := func(s sample) [9]int {
		return [9]int{s.mounts, s.cridProcs, s.podProcs, s.cgroups, s.pods, s.containers, s.goroutines, s.daemonFDs, s.monitorPid}
	}
	var after sample
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		after = n.take(t, "after")
		if left(after) == left(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind after the stuck filesystem went:\n%s", sampleTable(before, after))
		}
	}
	t.Logf("before the filesystem and after it went:\n%s", sampleTable(before, after))
}
