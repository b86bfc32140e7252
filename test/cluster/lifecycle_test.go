package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Init containers run to completion one after the other, then the sidecar
// (a restartable init container) starts and keeps running, then the main
// container starts: each writes to a shared emptyDir, and the main
// container sees the others' lines in that order.
func TestInitContainersAndSidecar(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: ordered
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: work
    emptyDir: {}
  initContainers:
  - name: init-1
    image: %[1]s
    command: ["sh", "-c", "echo init-1 >>/work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: init-2
    image: %[1]s
    command: ["sh", "-c", "grep -qx init-1 /work/order && echo init-2 >>/work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: sidecar
    image: %[1]s
    restartPolicy: Always
    command: ["sh", "-c", "echo sidecar >>/work/order; while true; do date +%%s >/work/sidecar-alive; sleep 1; done"]
    startupProbe:
      exec: {command: ["grep", "-qx", "sidecar", "/work/order"]}
      periodSeconds: 1
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: %[1]s
    command: ["sh", "-c", "cat /work/order; echo main >>/work/order; sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
`, busybox))
	p := waitReady(t, ns, "ordered")
	logs := kubectl(t, "-n", ns, "logs", "ordered", "-c", "main")
	if logs != "init-1\ninit-2\nsidecar\n" {
		t.Errorf("the main container saw %q, want init-1, init-2, sidecar in order", logs)
	}
	for _, name := range []string{"init-1", "init-2"} {
		c := p.container(name)
		if c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 || c.State.Terminated.Reason != "Completed" {
			t.Errorf("%s: %+v, want terminated Completed with exit code 0", name, c)
		}
	}
	sc := p.container("sidecar")
	if sc == nil || sc.State.Running == nil || sc.Started == nil || !*sc.Started || sc.RestartCount != 0 {
		t.Errorf("sidecar: %+v, want running, started, no restart", sc)
	}
	// The sidecar keeps running beside the main container.
	first := execIn(t, ns, "ordered", "main", "cat", "/work/sidecar-alive")
	waitFor(t, 30*time.Second, "the sidecar's next heartbeat", func() (bool, error) {
		return execIn(t, ns, "ordered", "main", "cat", "/work/sidecar-alive") != first, nil
	})
	if order := execIn(t, ns, "ordered", "main", "cat", "/work/order"); order != "init-1\ninit-2\nsidecar\nmain\n" {
		t.Errorf("order file %q", order)
	}
}

// cgroupV2 is true on a unified (v2-only) host.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupFile reads a cgroup interface file of the cgroup at path (relative
// to the hierarchy root), from the v1 hierarchy of controller or from the
// unified one.
func cgroupFile(t *testing.T, controller, path, file string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", controller, path)
	if cgroupV2() {
		dir = filepath.Join("/sys/fs/cgroup", path)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("read cgroup file: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// systemdDriver is true when kubelet and crid use the systemd cgroup driver
// (the VM guest's run): slices and scopes instead of plain directories.
func systemdDriver() bool { return env["CGROUP_DRIVER"] == "systemd" }

// podCgroup is the cgroup kubelet makes for a pod of QoS class qos ("" for
// Guaranteed, "burstable", "besteffort"), relative to the hierarchy root.
func podCgroup(qos, uid string) string {
	if !systemdDriver() {
		return filepath.Join(env["CGROUP_ROOT"], "kubepods", qos, "pod"+uid)
	}
	slice := "kubepods"
	dir := "/kubepods.slice"
	if qos != "" {
		slice += "-" + qos
		dir = filepath.Join(dir, slice+".slice")
	}
	return filepath.Join(dir, slice+"-pod"+strings.ReplaceAll(uid, "-", "_")+".slice")
}

// containerCgroup is crid's cgroup of a container in the pod cgroup podCg.
func containerCgroup(podCg, id string) string {
	if systemdDriver() {
		return filepath.Join(podCg, "crid-"+id+".scope")
	}
	return filepath.Join(podCg, id)
}

// Requests and limits give each pod its QoS class, and the class and the
// values are in the pod's cgroup files (kubelet's) and its container's
// (crid's), under kubelet's cgroup root.
func TestQoSClassesInCgroups(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: guaranteed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %[1]s
    command: ["sleep", "3600"]
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: 100m, memory: 64Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: burstable
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %[1]s
    command: ["sleep", "3600"]
    resources:
      requests: {cpu: 50m, memory: 32Mi}
      limits: {memory: 128Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: besteffort
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %[1]s
    command: ["sleep", "3600"]
`, busybox))
	cases := []struct {
		pod, qos, class string
		memory          int64 // bytes; 0: unlimited
		quota           int64 // cpu quota in µs per 100 ms period; 0: none
		shares          int64 // v1 cpu.shares
	}{
		{"guaranteed", "Guaranteed", "", 64 << 20, 10000, 102},
		{"burstable", "Burstable", "burstable", 128 << 20, 0, 51},
		{"besteffort", "BestEffort", "besteffort", 0, 0, 2},
	}
	for _, c := range cases {
		p := waitReady(t, ns, c.pod)
		if p.Status.QOSClass != c.qos {
			t.Errorf("%s: QoS class %q, want %q", c.pod, p.Status.QOSClass, c.qos)
		}
		podCg := podCgroup(c.class, p.Metadata.UID)
		ctrCg := containerCgroup(podCg, p.container("main").id())
		for _, cg := range []struct{ what, path string }{{"pod", podCg}, {"container", ctrCg}} {
			if cgroupV2() {
				mem := cgroupFile(t, "", cg.path, "memory.max")
				want := "max"
				if c.memory != 0 {
					want = strconv.FormatInt(c.memory, 10)
				}
				if mem != want {
					t.Errorf("%s %s memory.max = %s, want %s", c.pod, cg.what, mem, want)
				}
				quota := strings.Fields(cgroupFile(t, "", cg.path, "cpu.max"))[0]
				want = "max"
				if c.quota != 0 {
					want = strconv.FormatInt(c.quota, 10)
				}
				if quota != want {
					t.Errorf("%s %s cpu.max quota = %s, want %s", c.pod, cg.what, quota, want)
				}
				continue
			}
			mem, _ := strconv.ParseInt(cgroupFile(t, "memory", cg.path, "memory.limit_in_bytes"), 10, 64)
			if c.memory == 0 && mem < 1<<62 || c.memory != 0 && mem != c.memory {
				t.Errorf("%s %s memory.limit_in_bytes = %d, want %d (0: unlimited)", c.pod, cg.what, mem, c.memory)
			}
			quota := cgroupFile(t, "cpu", cg.path, "cpu.cfs_quota_us")
			want := "-1"
			if c.quota != 0 {
				want = strconv.FormatInt(c.quota, 10)
			}
			if quota != want {
				t.Errorf("%s %s cpu.cfs_quota_us = %s, want %s", c.pod, cg.what, quota, want)
			}
			if shares := cgroupFile(t, "cpu", cg.path, "cpu.shares"); shares != strconv.FormatInt(c.shares, 10) {
				t.Errorf("%s %s cpu.shares = %s, want %d", c.pod, cg.what, shares, c.shares)
			}
		}
	}
	// The BestEffort class's own cgroup gets the minimum share.
	if !cgroupV2() {
		if shares := cgroupFile(t, "cpu", filepath.Join(env["CGROUP_ROOT"], "kubepods/besteffort"), "cpu.shares"); shares != "2" {
			t.Errorf("kubepods/besteffort cpu.shares = %s, want 2", shares)
		}
	}
}

// A container that outgrows its memory limit is OOM-killed and reported
// with reason OOMKilled and exit code 137.
func TestOOMKilled(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: %s
    command: ["sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done"]
    resources:
      limits: {memory: 32Mi}
`, busybox))
	var p *Pod
	waitFor(t, 2*time.Minute, "the hog's pod Failed", func() (bool, error) {
		p = getPod(t, ns, "hog")
		if p.Status.Phase == "Succeeded" {
			return false, fmt.Errorf("the hog's pod succeeded")
		}
		return p.Status.Phase == "Failed", nil
	})
	c := p.container("main")
	if c == nil || c.State.Terminated == nil || c.State.Terminated.Reason != "OOMKilled" || c.State.Terminated.ExitCode != 137 {
		t.Errorf("container %+v, want terminated with reason OOMKilled, exit code 137", c)
	}
}

// Deleting a pod runs its preStop hook to its end, then sends SIGTERM,
// which the container handles: it is never SIGKILLed, as everything fits
// in terminationGracePeriodSeconds. The pod and container write each step
// to a hostPath file.
func TestPreStopGracefulTermination(t *testing.T) {
	ns := namespace(t)
	dir := hostDir(t, ns)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: graceful
spec:
  terminationGracePeriodSeconds: 30
  volumes:
  - name: host
    hostPath: {path: %s, type: Directory}
  containers:
  - name: main
    image: %s
    command: ["sh", "-c", "trap 'echo sigterm >>/host/events; exit 0' TERM; echo started >>/host/events; while true; do sleep 0.2; done"]
    volumeMounts: [{name: host, mountPath: /host}]
    lifecycle:
      preStop:
        exec:
          command: ["sh", "-c", "echo prestop-begin >>/host/events; sleep 3; echo prestop-end >>/host/events"]
`, dir, busybox))
	p := waitReady(t, ns, "graceful")
	id := p.container("main").id()
	kubectl(t, "-n", ns, "delete", "pod", "graceful", "--wait=true", "--timeout=60s")
	b, err := os.ReadFile(filepath.Join(dir, "events"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "started\nprestop-begin\nprestop-end\nsigterm\n" {
		t.Errorf("events %q, want started, prestop-begin, prestop-end, sigterm", got)
	}
	// crid recorded the container's own exit (0, from the trap), not a kill.
	waitFor(t, time.Minute, "the container's exit in crid", func() (bool, error) {
		out := crictl(t, "ps", "-a", "-q", "--id", id)
		if strings.TrimSpace(out) == "" {
			return true, nil // already removed by kubelet
		}
		state := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}} {{.status.exitCode}}", id)
		if strings.HasPrefix(state, "CONTAINER_EXITED") {
			if strings.TrimSpace(state) != "CONTAINER_EXITED 0" {
				return false, fmt.Errorf("container ended as %q, want exit code 0", state)
			}
			return true, nil
		}
		return false, nil
	})
}
