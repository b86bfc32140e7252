package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ctrConfig is a busybox container config running cmd, logging to
// <name>.log under the pod's log directory.
func ctrConfig(name string, cmd ...string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: busybox},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux:    &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{}, Resources: &runtime.LinuxContainerResources{}},
	}
}

// logPod is podConfig with a log directory under the node's dir.
func (n *podNode) logPod(name string) *runtime.PodSandboxConfig {
	cfg := podConfig(name)
	cfg.LogDirectory = filepath.Join(n.dir, "logs", name)
	return cfg
}

func (n *podNode) pullBusybox(t *testing.T) {
	t.Helper()
	if _, err := n.images().PullImage(context.Background(), &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatal(err)
	}
}

// create creates (and, with start, starts) the container of cfg.
func (n *podNode) create(t *testing.T, podID string, pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig, start bool) string {
	t.Helper()
	ctx := context.Background()
	resp, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v\n%s", cfg.Metadata.Name, err, n.log)
	}
	if start {
		if _, err := n.runtime().StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Fatalf("StartContainer %s: %v\n%s", cfg.Metadata.Name, err, n.log)
		}
	}
	return resp.ContainerId
}

func (n *podNode) ctrStatus(t *testing.T, id string) *runtime.ContainerStatus {
	t.Helper()
	resp, err := n.runtime().ContainerStatus(context.Background(), &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return resp.Status
}

// waitExited waits for the container to exit and returns its status.
func (n *podNode) waitExited(t *testing.T, id string, bound time.Duration) *runtime.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		st := n.ctrStatus(t, id)
		if st.State == runtime.ContainerState_CONTAINER_EXITED {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %v after %s\n%s", id, st.State, bound, n.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removePod removes the pod and checks nothing is left on the host.
func (n *podNode) removePod(t *testing.T, podID string) {
	t.Helper()
	if _, err := n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if s := n.hostState(t); s != (hostState{}) {
		t.Fatalf("left behind: %+v", s)
	}
	if c := n.ctrRecords(); c != 0 {
		t.Fatalf("%d container records left behind", c)
	}
}

// ctrRecords counts the container records on disk.
func (n *podNode) ctrRecords() int {
	recs, _ := os.ReadDir(filepath.Join(n.dir, "root", "records", "containers"))
	return len(recs)
}

// rootfsDirs counts the rootfs dirs on disk.
func (n *podNode) rootfsDirs() int {
	dirs, _ := os.ReadDir(filepath.Join(n.dir, "root", "rootfs"))
	return len(dirs)
}

// ctrPids returns the host pids in the container's cgroup, its init first.
func ctrPids(t *testing.T, id string) []int {
	t.Helper()
	in := map[int]int{} // pid -> ppid
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), id) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if !alive(pid) {
			continue
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		s := string(st)
		if i := strings.LastIndex(s, ")"); i > 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 {
				in[pid], _ = strconv.Atoi(f[1])
			}
		}
	}
	var pids []int
	for pid, ppid := range in {
		if _, ok := in[ppid]; !ok {
			pids = append([]int{pid}, pids...)
		} else {
			pids = append(pids, pid)
		}
	}
	return pids
}

// initPid is the host pid of the container's init process.
func initPid(t *testing.T, id string) int {
	t.Helper()
	p := ctrPids(t, id)
	if len(p) == 0 {
		t.Fatalf("no process of container %s on the host", id)
	}
	return p[0]
}

// logEntry is one line of a CRI-format log.
type logEntry struct {
	time        time.Time
	stream, tag string
	text        string
}

var criLogLine = regexp.MustCompile(`^(\S+) (stdout|stderr) (P|F) (.*)$`)

// readCRILog parses a CRI-format log, failing on a malformed line.
func readCRILog(t *testing.T, path string) []logEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := criLogLine.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("%s: not a CRI log line: %.200q", path, sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("%s: bad timestamp %q: %v", path, m[1], err)
		}
		out = append(out, logEntry{ts, m[2], m[3], m[4]})
	}
	return out
}

// fullLines joins partial entries per stream into the lines the container
// wrote; output that ended without a newline (a last P entry) is a last line.
func fullLines(entries []logEntry) map[string][]string {
	lines := map[string][]string{}
	partial := map[string]string{}
	for _, e := range entries {
		partial[e.stream] += e.text
		if e.tag == "F" {
			lines[e.stream] = append(lines[e.stream], partial[e.stream])
			partial[e.stream] = ""
		}
	}
	for stream, rest := range partial {
		if rest != "" {
			lines[stream] = append(lines[stream], rest)
		}
	}
	return lines
}

// waitLog waits until the file at path contains want.
func waitLog(t *testing.T, path, want string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never got %q; it holds:\n%.2000s", path, want, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
