package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// mountTmpfs mounts a size-limited tmpfs at dir (made if missing): a
// filesystem a test can fill. It is unmounted when the test ends, after
// the daemon and its monitor are gone (cleanupDir unmounts whatever is
// left under the test's directory, deepest first, and removes it).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0711"); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
}

// newPodNodeOn is newPodNode with setup run on the test's directory before
// the daemon starts: mounts, more configuration appended to crid.toml.
func newPodNodeOn(t *testing.T, setup func(dir string)) *podNode {
	t.Helper()
	dir := newDirs(t)
	n := &podNode{dir: dir}
	n.writeConfig(t)
	setup(dir)
	n.daemon = startDaemonEnv(t, dir, nil, n.args()...)
	return n
}

// appendConfig adds TOML to the test's crid.toml.
func appendConfig(t *testing.T, dir, toml string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "crid.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + toml + "\n"); err != nil {
		t.Fatal(err)
	}
}

// removePodOnFs is removePod for a node with the test's own mounts under
// its directory: those stay, nothing else may.
func (n *podNode) removePodOnFs(t *testing.T, podID string, ownMounts int) {
	t.Helper()
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if s := n.hostState(t); s != (hostState{mounts: ownMounts}) {
		t.Fatalf("left behind (besides the test's %d mounts): %+v", ownMounts, s)
	}
	if c := n.ctrRecords(); c != 0 {
		t.Fatalf("%d container records left behind", c)
	}
}

// fillFs fills the filesystem holding dir with a file, returned for the
// test to remove ("freeing space").
func fillFs(t *testing.T, dir string) string {
	t.Helper()
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	for small := make([]byte, 512); ; { // the last partial chunk's room
		if _, err := f.Write(small); err != nil {
			break
		}
	}
	return filler
}

// stillServing fails unless the daemon answers a status and list calls.
func (n *podNode) stillServing(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if _, err := n.runtime().Status(ctx, &runtime.StatusRequest{}); err != nil {
		t.Fatalf("Status on a full disk: %v", err)
	}
	if _, err := n.runtime().ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil {
		t.Fatalf("ListPodSandbox on a full disk: %v", err)
	}
	if _, err := n.runtime().ListContainers(ctx, &runtime.ListContainersRequest{}); err != nil {
		t.Fatalf("ListContainers on a full disk: %v", err)
	}
	if _, err := n.images().ListImages(ctx, &runtime.ListImagesRequest{}); err != nil {
		t.Fatalf("ListImages on a full disk: %v", err)
	}
	if _, err := n.images().ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{}); err != nil {
		t.Fatalf("ImageFsInfo on a full disk: %v", err)
	}
}

func dirEntries(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// A pull into a full root_dir fails ResourceExhausted naming the image
// store, leaves no layer, scratch file or record a later pull or
// container could take up, the daemon serving all along; once space is
// freed the same pull succeeds and a container runs from it.
func TestFullDiskPull(t *testing.T) {
	var root string
	n := newPodNodeOn(t, func(dir string) {
		root = filepath.Join(dir, "root")
		mountTmpfs(t, root, "16m")
	})
	filler := fillFs(t, root)
	_, err := n.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}})
	store := filepath.Join(root, "images")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), store) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("pull into a full disk: %v; want ResourceExhausted naming %s", err, store)
	}
	t.Logf("pull into a full disk: %v", err)
	n.stillServing(t)
	for _, d := range []string{filepath.Join(store, "layers"), filepath.Join(store, "tmp"), filepath.Join(root, "records", "images")} {
		if names := dirEntries(d); len(names) != 0 {
			t.Fatalf("%s after the failed pull: %v", d, names)
		}
	}
	if resp, err := n.images().ImageStatus(context.Background(), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil || resp.Image != nil {
		t.Fatalf("image status after the failed pull: %v, %v", resp.GetImage(), err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.pullBusybox(t)
	pod := n.logPod("after-full")
	podID := n.run(t, pod)
	id := n.create(t, podID, pod, ctrConfig("c", "sleep", "3600"), true)
	if got := n.exec(t, id, "echo", "ok"); got != "ok" {
		t.Fatalf("exec in a container of the image pulled after freeing space: %q", got)
	}
	n.removePodOnFs(t, podID, 1)
}

// With root_dir full, the calls that must write a record fail
// ResourceExhausted naming the path and leave nothing behind; the records
// already there stay whole (a restarted daemon loads them all), and the
// same calls succeed once space is freed.
func TestFullDiskRecords(t *testing.T) {
	var root string
	n := newPodNodeOn(t, func(dir string) {
		root = filepath.Join(dir, "root")
		mountTmpfs(t, root, "32m")
	})
	n.pullBusybox(t)
	pod := n.logPod("before-full")
	podID := n.run(t, pod)
	first := n.create(t, podID, pod, ctrConfig("first", "sleep", "3600"), true)

	filler := fillFs(t, root)
	ctx := context.Background()
	full := n.logPod("while-full")
	_, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: full})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), root) {
		t.Fatalf("RunPodSandbox on a full disk: %v; want ResourceExhausted naming a path in %s", err, root)
	}
	t.Logf("RunPodSandbox on a full disk: %v", err)
	_, err = n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: ctrConfig("second", "sleep", "3600")})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), root) {
		t.Fatalf("CreateContainer on a full disk: %v; want ResourceExhausted naming a path in %s", err, root)
	}
	t.Logf("CreateContainer on a full disk: %v", err)
	n.stillServing(t)
	pods, err := n.runtime().ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Id != podID {
		t.Fatalf("pods after the failed calls: %v, %v; want only %s", pods.GetItems(), err, podID)
	}
	ctrs, err := n.runtime().ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil || len(ctrs.Containers) != 1 || ctrs.Containers[0].Id != first {
		t.Fatalf("containers after the failed calls: %v, %v; want only %s", ctrs.GetContainers(), err, first)
	}
	for _, kind := range []string{"sandboxes", "containers"} {
		for _, name := range dirEntries(filepath.Join(root, "records", kind)) {
			if strings.HasPrefix(name, ".") {
				t.Fatalf("temporary record file %s/%s left behind", kind, name)
			}
		}
	}

	// The records on disk are whole: a restart (with the disk still full)
	// finds the pod and its running container.
	n.restart(t)
	if st := n.ctrStatus(t, first); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after a restart on a full disk: %v", st.State)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	id := n.create(t, podID, pod, ctrConfig("second", "sleep", "3600"), true)
	if got := n.exec(t, id, "echo", "ok"); got != "ok" {
		t.Fatalf("exec after freeing space: %q", got)
	}
	n.removePodOnFs(t, podID, 1)
}

var lostMarker = regexp.MustCompile(`(?m)^\S+ stderr F \[crid: (\d+) bytes of output lost: no space left on device\]$`)

// A container whose log directory fills up keeps running (its progress
// counter goes on), the daemon serves, and once space is freed its log
// resumes on its own, the lost span marked by one entry that counts its
// bytes, with later lines after it.
func TestFullDiskLog(t *testing.T) {
	var logs string
	n := newPodNodeOn(t, func(dir string) {
		logs = filepath.Join(dir, "logs")
		mountTmpfs(t, logs, "1m")
	})
	n.pullBusybox(t)
	pod := podConfig("full-log")
	pod.LogDirectory = filepath.Join(logs, "pod")
	podID := n.run(t, pod)
	cfg := ctrConfig("talker", "sh", "-c", `i=0; while :; do echo "line $i $(head -c 200 /dev/zero | tr '\0' x)"; echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; i=$((i+1)); sleep 0.02; done`)
	id := n.create(t, podID, pod, cfg, true)
	logPath := filepath.Join(pod.LogDirectory, cfg.LogPath)
	count := func() int {
		t.Helper()
		c, err := strconv.Atoi(n.exec(t, id, "cat", "/tmp/count"))
		if err != nil {
			t.Fatalf("progress counter: %v", err)
		}
		return c
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 30 s", what)
			}
		}
	}
	waitFor("log lines", func() bool { b, _ := os.ReadFile(logPath); return strings.Count(string(b), "\n") >= 5 })

	filler := fillFs(t, logs)
	full := count()
	waitFor("progress on a full disk", func() bool { return count() >= full+100 }) // 100 lines: 20 KB the disk cannot take
	n.stillServing(t)
	if st := n.ctrStatus(t, id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container on a full log disk: %v", st.State)
	}
	lostFrom := count()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var log string
	waitFor("marker and resumed lines", func() bool {
		b, _ := os.ReadFile(logPath)
		log = string(b)
		m := lostMarker.FindStringIndex(log)
		return m != nil && strings.Count(log[m[1]:], "\n") >= 5
	})
	if c := len(lostMarker.FindAllString(log, -1)); c != 1 {
		t.Fatalf("%d loss markers, want 1", c)
	}
	m := lostMarker.FindStringSubmatchIndex(log)
	lost, _ := strconv.Atoi(log[m[2]:m[3]])
	// The log's last page took up to 4 KiB more after the filler:
	// the rest of 100 lines of 200-odd bytes was lost.
	if lost < 100*200-4096 {
		t.Fatalf("marker counts %d bytes lost, want at least the %d lines written while full (%d bytes each) less a page", lost, 100, 200)
	}
	// Every line is a whole entry of the talker's, in order, or the
	// marker, but for at most one the disk cut short (ended by a
	// newline so the next entry stands on its own).
	lineNo := regexp.MustCompile(`^\S+ stdout F line (\d+) x{200}$`)
	last, torn := -1, 0
	for _, l := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if lostMarker.MatchString(l) {
			continue
		}
		sm := lineNo.FindStringSubmatch(l)
		if sm == nil {
			if torn++; torn > 1 {
				t.Fatalf("malformed log line %.120q (a second one)", l)
			}
			continue
		}
		k, _ := strconv.Atoi(sm[1])
		if k <= last {
			t.Fatalf("line %d after line %d", k, last)
		}
		last = k
	}
	if last < lostFrom {
		t.Fatalf("last logged line %d, want one written after space was freed (≥ %d)", last, lostFrom)
	}
	t.Logf("log: %d bytes lost while full, marked; resumed up to line %d", lost, last)
	n.removePodOnFs(t, podID, 1)
}
