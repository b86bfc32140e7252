// Package cluster holds the kubectl workflow that make cluster-test runs
// against a single-node Kubernetes v1.37 cluster whose node runs crid
// (test/cluster/run.sh starts it and writes CLUSTER_ENV). Every step goes
// the way users' steps go: kubectl -> kube-apiserver -> kubelet -> crid,
// with kubectl's default transports. Each test works in a namespace of its
// own, deleted at its end; the node-side checks (cgroups, mounts, crid's
// pods) read the host directly, as the test runs on the node.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Images the workflow runs, all served by the test registry through crid's
// mirror configuration under their upstream names.
const (
	busybox = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
)

// env is the cluster the run script started.
var env map[string]string

func TestMain(m *testing.M) {
	path := os.Getenv("CLUSTER_ENV")
	if path == "" {
		fmt.Fprintln(os.Stderr, "test/cluster runs against the cluster that test/cluster/run.sh starts (make cluster-test); CLUSTER_ENV is not set")
		os.Exit(1)
	}
	var err error
	if env, err = readEnv(path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func readEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the cluster's environment: %w", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	for _, k := range []string{"KUBECTL", "KUBECONFIG", "NODE", "CGROUP_ROOT", "CRID_SOCKET", "CRICTL", "CRICTL_CONFIG", "HOST_DIR", "AUTH_REGISTRY", "AUTH_USER", "AUTH_PASS",
		"NODE_IP", "HOST_PORT", "KUBELET_ROOT", "CNI_IPAM", "CNI_NETWORK", "BRIDGE", "CRID_ROOT", "CRID_RUN", "POD_LOGS", "CGROUP_DRIVER"} {
		if m[k] == "" {
			return nil, fmt.Errorf("%s: %s is not set", path, k)
		}
	}
	return m, nil
}

// result is one finished kubectl (or crictl) run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// kubectlCmd is kubectl with the cluster's admin kubeconfig.
func kubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, env["KUBECTL"], append([]string{"--kubeconfig", env["KUBECONFIG"]}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs cmd with stdin and returns what it did; an error only when it
// could not run or was killed.
func run(cmd *exec.Cmd, stdin []byte) (result, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
		err = nil
	default:
		return r, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, r)
	}
	return r, err
}

// kubectlResult runs kubectl (bounded to 3 minutes) and returns its result.
func kubectlResult(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := run(kubectlCmd(ctx, args...), stdin)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// kubectl runs kubectl, fails the test unless it exits 0, returns stdout.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	r := kubectlResult(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// apply creates the objects of a YAML document in ns.
func apply(t *testing.T, ns, yaml string) {
	t.Helper()
	r := kubectlResult(t, []byte(yaml), "-n", ns, "apply", "-f", "-")
	if r.code != 0 {
		t.Fatalf("kubectl apply: %s\n%s", r, yaml)
	}
}

// crictl runs crictl against the node's crid.
func crictl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := run(exec.CommandContext(ctx, env["CRICTL"], append([]string{"--config", env["CRICTL_CONFIG"]}, args...)...), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 {
		t.Fatalf("crictl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

var nsSeq struct {
	sync.Mutex
	n int
}

// namespace creates a namespace for the test, labelled so that the run
// script's teardown finds it, and deletes it (waiting for its pods to end)
// when the test ends.
func namespace(t *testing.T) string {
	t.Helper()
	nsSeq.Lock()
	nsSeq.n++
	n := nsSeq.n
	nsSeq.Unlock()
	name := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	name = fmt.Sprintf("%s-%d", strings.Trim(name, "-"), n)
	if len(name) > 60 {
		name = name[:60]
	}
	apply(t, "default", fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n    crid-cluster-test: %q\n", name, "true"))
	// The namespace's default service account must exist before pods can
	// be created in it (the service account admission plugin).
	waitFor(t, time.Minute, "service account default in "+name, func() (bool, error) {
		r := kubectlResult(t, nil, "-n", name, "get", "serviceaccount", "default")
		return r.code == 0, nil
	})
	t.Cleanup(func() {
		r := kubectlResult(t, nil, "delete", "namespace", name, "--ignore-not-found", "--wait=true", "--timeout=120s")
		if r.code != 0 {
			t.Errorf("delete namespace %s: %s", name, r)
		}
	})
	return name
}

// waitFor polls cond every half second until it is true, failing the test
// after limit (a bound against hangs, not a timing assertion) or on error.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, limit)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitReady waits until the pod is Ready and returns it.
func waitReady(t *testing.T, ns, pod string) *Pod {
	t.Helper()
	r := kubectlResult(t, nil, "-n", ns, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=150s")
	if r.code != 0 {
		t.Fatalf("pod %s/%s is not Ready: %s\n%s", ns, pod, r, describe(t, ns, "pod/"+pod))
	}
	return getPod(t, ns, pod)
}

// describe returns kubectl describe's view of an object, for failures.
func describe(t *testing.T, ns, obj string) string {
	t.Helper()
	return kubectlResult(t, nil, "-n", ns, "describe", obj).stdout
}

// Pod is the part of a pod's status the tests read.
type Pod struct {
	Metadata struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase                      string            `json:"phase"`
		PodIP                      string            `json:"podIP"`
		QOSClass                   string            `json:"qosClass"`
		ContainerStatuses          []ContainerStatus `json:"containerStatuses"`
		InitContainerStatuses      []ContainerStatus `json:"initContainerStatuses"`
		EphemeralContainerStatuses []ContainerStatus `json:"ephemeralContainerStatuses"`
	} `json:"status"`
}

// ContainerStatus is one container's status.
type ContainerStatus struct {
	Name         string         `json:"name"`
	ContainerID  string         `json:"containerID"`
	Ready        bool           `json:"ready"`
	Started      *bool          `json:"started"`
	RestartCount int            `json:"restartCount"`
	State        ContainerState `json:"state"`
	LastState    ContainerState `json:"lastState"`
}

// ContainerState is a container's state or last state.
type ContainerState struct {
	Waiting *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"waiting"`
	Running *struct {
		StartedAt string `json:"startedAt"`
	} `json:"running"`
	Terminated *struct {
		ExitCode   int    `json:"exitCode"`
		Reason     string `json:"reason"`
		StartedAt  string `json:"startedAt"`
		FinishedAt string `json:"finishedAt"`
	} `json:"terminated"`
}

func getPod(t *testing.T, ns, name string) *Pod {
	t.Helper()
	var p Pod
	if err := json.Unmarshal([]byte(kubectl(t, "-n", ns, "get", "pod", name, "-o", "json")), &p); err != nil {
		t.Fatalf("decode pod %s/%s: %v", ns, name, err)
	}
	return &p
}

// container returns the status of the named container of any kind.
func (p *Pod) container(name string) *ContainerStatus {
	for _, l := range [][]ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for i := range l {
			if l[i].Name == name {
				return &l[i]
			}
		}
	}
	return nil
}

// containerID is the runtime's ID of a container status ("crid://ID").
func (c *ContainerStatus) id() string {
	_, id, _ := strings.Cut(c.ContainerID, "://")
	return id
}

// exec runs a command in a pod's container through kubectl exec.
func execIn(t *testing.T, ns, pod, container string, cmd ...string) string {
	t.Helper()
	args := []string{"-n", ns, "exec", pod}
	if container != "" {
		args = append(args, "-c", container)
	}
	return kubectl(t, append(append(args, "--"), cmd...)...)
}

// background is a long-running kubectl (logs -f, port-forward, attach):
// its stdout is read line by line into lines.
type background struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	mu     sync.Mutex
	lines  []string
	stderr bytes.Buffer
	done   chan struct{}
}

// startKubectl starts kubectl in the background; it is killed when the test ends.
func startKubectl(t *testing.T, stdin *os.File, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cmd: kubectlCmd(ctx, args...), cancel: cancel, done: make(chan struct{})}
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b.cmd.Stderr = &syncWriter{mu: &b.mu, w: &b.stderr}
	if stdin != nil {
		b.cmd.Stdin = stdin
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.mu.Lock()
			b.lines = append(b.lines, sc.Text())
			b.mu.Unlock()
		}
	}()
	t.Cleanup(b.stop)
	return b
}

func (b *background) stop() {
	b.cancel()
	<-b.done
	_ = b.cmd.Wait()
}

// output returns the lines read so far and stderr.
func (b *background) output() ([]string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...), b.stderr.String()
}

// waitLine waits for a line matching re and returns its submatches.
func (b *background) waitLine(t *testing.T, limit time.Duration, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	waitFor(t, limit, fmt.Sprintf("a line matching %q from %s", re, strings.Join(b.cmd.Args[3:], " ")), func() (bool, error) {
		lines, stderr := b.output()
		for _, l := range lines {
			if m = re.FindStringSubmatch(l); m != nil {
				return true, nil
			}
		}
		select {
		case <-b.done:
			return false, fmt.Errorf("kubectl ended; stdout %q, stderr %q", lines, stderr)
		default:
		}
		return false, nil
	})
	return m
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// hostDir is a directory on the node for a test's hostPath volume.
func hostDir(t *testing.T, ns string) string {
	t.Helper()
	dir := filepath.Join(env["HOST_DIR"], ns)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
