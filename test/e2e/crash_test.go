package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/failpoint"
)

// crashTally counts over the whole suite.
type crashTally struct {
	points, kills, halves, leaks int
}

// TestCrashInjection kills crid (or crid-monitor) with SIGKILL at every
// point of failpoint.Steps, inside the CRI call the step belongs to,
// starts crid again and checks that the object the call was making or
// unmaking either exists completely and works or is gone, after at most
// what kubelet would do (retry the call, stop and remove), and that the
// node then holds exactly what it held before the point: no mount,
// namespace pin, cgroup, veth, lease, iptables line, process, state dir,
// layer or record more or less.
func TestCrashInjection(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	lc := newLeakChecker(n)
	ctx := context.Background()
	// One pod and container through their whole life first, so the
	// monitor runs and every dir made at first use exists.
	warm := n.logPod("crash-warmup")
	warmID := n.run(t, warm)
	lc.pod(warmID)
	cid := n.create(t, warmID, warm, ctrConfig("c", "sleep", "3600"), true)
	if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: cid}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: warmID}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: warmID}); err != nil {
		t.Fatal(err)
	}
	n.daemon.stop(syscall.SIGTERM, 10*time.Second)

	var tally crashTally
	basePort := int32(30000 + rand.IntN(20000))
	start := time.Now()
	for i, step := range failpoint.Steps {
		t.Run(step.Name, func(t *testing.T) {
			tally.points++
			c := &crashCase{t: t, n: n, lc: lc, step: step, tally: &tally, name: fmt.Sprintf("crash-%d", i), hostPort: basePort + int32(i)}
			c.run()
		})
	}
	t.Logf("crash injection: %d points (of %d), %d kills, %d half objects, %d leaks (%s)",
		tally.points, len(failpoint.Steps), tally.kills, tally.halves, tally.leaks, time.Since(start).Round(time.Second))
	if tally.kills != tally.points || tally.halves != 0 || tally.leaks != 0 {
		t.Errorf("want a kill at each of the %d points and no half object or leak", tally.points)
	}
}

// crashCase is one point of the suite.
type crashCase struct {
	t        *testing.T
	n        *podNode
	lc       *leakChecker
	step     failpoint.Step
	tally    *crashTally
	name     string
	hostPort int32
	onceDir  string
	// bound ends every call of the point, so a call that hangs after a
	// crash fails the point instead of the suite.
	bound context.Context
}

func (c *crashCase) run() {
	t, n := c.t, c.n
	c.onceDir = t.TempDir()
	bound, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c.bound = bound
	if c.step.Process == failpoint.Monitor {
		// The monitor outlives the daemon: end the idle one (no container
		// exists between points) so the daemon starts one armed.
		for range 50 {
			if killMonitors(n.dir) == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	n.daemon = startDaemonEnv(t, n.dir, []string{
		failpoint.EnvVar + "=" + c.step.Name + "=kill", failpoint.OnceEnvVar + "=" + c.onceDir,
	}, n.args()...)
	defer func() {
		select {
		case <-n.exited:
		default:
			n.daemon.stop(syscall.SIGTERM, 10*time.Second)
		}
	}()
	before := c.lc.snapshot(t)

	switch c.step.RPC {
	case "RunPodSandbox":
		c.runPod()
	case "StopPodSandbox", "RemovePodSandbox":
		c.stopOrRemovePod()
	case "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "ExecSync":
		c.container()
	case "PullImage":
		c.pull()
	default:
		t.Fatalf("no crash scenario for RPC %s of step %s", c.step.RPC, c.step.Name)
	}
	if leaks := before.diff(c.lc.snapshot(t)); len(leaks) > 0 {
		c.tally.leaks += len(leaks)
		t.Errorf("LEAK after a kill at %s and kubelet's cleanup:\n  %s", c.step.Name, strings.Join(leaks, "\n  "))
	}
}

// call makes the CRI call that reaches the step, with the point armed,
// and waits for the process to die there; it then restarts crid unarmed
// (a killed monitor is started again by the daemon at its next call).
func (c *crashCase) call(f func(ctx context.Context) error) {
	t, n := c.t, c.n
	t.Helper()
	monitors := n.monitorPids()
	ctx, cancel := context.WithTimeout(c.bound, 60*time.Second)
	err := f(ctx)
	cancel()
	if _, statErr := os.Stat(filepath.Join(c.onceDir, c.step.Name)); statErr != nil {
		t.Fatalf("the %s call (%v) never reached point %s\n%s", c.step.RPC, err, c.step.Name, c.tail())
	}
	if c.step.Process == failpoint.Daemon {
		select {
		case <-n.exited:
		case <-time.After(10 * time.Second):
			t.Fatalf("crid still runs after point %s=kill", c.step.Name)
		}
		if err == nil {
			t.Fatalf("%s succeeded through a daemon killed at %s", c.step.RPC, c.step.Name)
		}
		c.tally.kills++
		n.daemon = startDaemon(t, n.dir, n.args()...)
		return
	}
	for _, pid := range monitors {
		if alive(pid) {
			t.Fatalf("monitor %d still runs after point %s=kill (call: %v)", pid, c.step.Name, err)
		}
	}
	if len(monitors) != 1 {
		t.Fatalf("%d monitors ran before the call, want 1", len(monitors))
	}
	c.tally.kills++
	t.Logf("%s through a monitor killed at %s: %v", c.step.RPC, c.step.Name, err)
}

// half records an object that exists but not completely.
func (c *crashCase) half(format string, args ...any) {
	c.t.Helper()
	c.tally.halves++
	c.t.Errorf("HALF OBJECT after a kill at %s: %s\n%s", c.step.Name, fmt.Sprintf(format, args...), c.tail())
}

// tail is the end of the daemon's log and of the monitor's.
func (c *crashCase) tail() string {
	last := func(s string, n int) string {
		if len(s) > n {
			return s[len(s)-n:]
		}
		return s
	}
	mon, _ := os.ReadFile(filepath.Join(c.n.dir, "run", "monitor", "monitor.log"))
	return last(c.n.log.String(), 4000) + "\n--- crid-monitor log:\n" + last(string(mon), 3000)
}

// podConfig is the pod of the point: sharing one PID namespace (so it has
// an infra process) and mapping a host port (so it has iptables rules).
func (c *crashCase) podConfig(infra bool) *runtime.PodSandboxConfig {
	pod := c.n.logPod(c.name)
	if infra {
		pod.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD
	}
	pod.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: c.hostPort}}
	c.lc.pod("", c.hostPort)
	return pod
}

// pods lists the pods of the point's name.
func (c *crashCase) pods() []*runtime.PodSandbox {
	c.t.Helper()
	resp, err := c.n.runtime().ListPodSandbox(c.bound, &runtime.ListPodSandboxRequest{
		Filter: &runtime.PodSandboxFilter{LabelSelector: map[string]string{"pod": c.name}}})
	if err != nil {
		c.t.Fatalf("ListPodSandbox: %v", err)
	}
	for _, p := range resp.Items {
		c.lc.pod(p.Id)
	}
	return resp.Items
}

// podWorks checks a ready pod: its IP is on eth0 in its network
// namespace, its port mapping is in iptables, its infra runs.
func (c *crashCase) podWorks(id string, infra bool) error {
	st, err := c.n.runtime().PodSandboxStatus(c.bound, &runtime.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return err
	}
	if st.Status.State != runtime.PodSandboxState_SANDBOX_READY || st.Status.Network.GetIp() == "" {
		return fmt.Errorf("pod %s is %v with IP %q", id, st.Status.State, st.Status.Network.GetIp())
	}
	pin := filepath.Join(c.n.dir, "run", "sandboxes", id, "ns", "net")
	out, err := exec.Command("nsenter", "--net="+pin, "--", "ip", "-4", "-o", "addr", "show", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), st.Status.Network.Ip+"/") {
		return fmt.Errorf("eth0 of pod %s lacks %s: %v %s", id, st.Status.Network.Ip, err, out)
	}
	dnat := false
	for _, l := range c.lc.iptables(c.t) {
		if strings.Contains(l, fmt.Sprintf("--dport %d", c.hostPort)) && strings.Contains(l, "DNAT") || strings.Contains(l, st.Status.Network.Ip+":80") {
			dnat = true
		}
	}
	if !dnat {
		return fmt.Errorf("pod %s: no iptables DNAT of host port %d", id, c.hostPort)
	}
	if infra {
		if pid := c.n.infraPid(c.t, id); pid == 0 || !alive(pid) {
			return fmt.Errorf("pod %s: infra process %d is not running", id, pid)
		}
	}
	return nil
}

// podStopped checks a not-ready pod holds nothing of a running one: no
// namespace pin, veth, lease, iptables line or process.
func (c *crashCase) podStopped(id string) error {
	s := c.lc.snapshot(c.t)
	var left []string
	for _, k := range []string{"netns", "veths", "leases", "iptables", "processes"} {
		for _, e := range s[k] {
			if k == "processes" && strings.HasPrefix(e, "crid-monitor") {
				continue
			}
			left = append(left, k+": "+e)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("pod %s is not ready but holds %v", id, left)
	}
	return nil
}

// removePod is kubelet's end of a pod: stop, then remove.
func (c *crashCase) removePod(id string) {
	c.t.Helper()
	ctx := c.bound
	if _, err := c.n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		c.t.Errorf("StopPodSandbox %s after the restart: %v\n%s", id, err, c.tail())
	}
	if _, err := c.n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		c.t.Errorf("RemovePodSandbox %s after the restart: %v\n%s", id, err, c.tail())
	}
}

func (c *crashCase) runPod() {
	t, n := c.t, c.n
	pod := c.podConfig(true)
	c.call(func(ctx context.Context) error {
		resp, err := n.runtime().RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		c.lc.pod(resp.GetPodSandboxId())
		return err
	})
	switch pods := c.pods(); len(pods) {
	case 0:
		// Gone: kubelet runs the pod again, which must work.
		resp, err := n.runtime().RunPodSandbox(c.bound, &runtime.RunPodSandboxRequest{Config: pod})
		if err != nil {
			t.Errorf("RunPodSandbox again after the restart: %v\n%s", err, c.tail())
			return
		}
		c.lc.pod(resp.PodSandboxId)
		if err := c.podWorks(resp.PodSandboxId, true); err != nil {
			t.Errorf("pod run again after the restart: %v", err)
		}
		c.removePod(resp.PodSandboxId)
	case 1:
		if err := c.podWorks(pods[0].Id, true); err != nil {
			c.half("%v", err)
		}
		c.removePod(pods[0].Id)
	default:
		c.half("%d pods of one name", len(pods))
		for _, p := range pods {
			c.removePod(p.Id)
		}
	}
}

func (c *crashCase) stopOrRemovePod() {
	t, n := c.t, c.n
	pod := c.podConfig(true)
	id := n.run(t, pod)
	c.lc.pod(id)
	n.create(t, id, pod, ctrConfig("c", "sleep", "3600"), true)
	c.call(func(ctx context.Context) error {
		var err error
		if c.step.RPC == "StopPodSandbox" {
			_, err = n.runtime().StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id})
		} else {
			_, err = n.runtime().RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id})
		}
		return err
	})
	pods := c.pods()
	if len(pods) == 1 {
		// Whole either way: still running and working, or stopped with
		// nothing of a running pod left.
		if pods[0].State == runtime.PodSandboxState_SANDBOX_READY {
			if err := c.podWorks(id, true); err != nil {
				c.half("%v", err)
			}
		} else if err := c.podStopped(id); err != nil {
			c.half("%v", err)
		}
	}
	if len(pods) > 1 {
		c.half("%d pods of one name", len(pods))
	}
	if c.step.RPC == "StopPodSandbox" && len(pods) == 1 {
		// kubelet stops it again; then it must be stopped whole.
		if _, err := n.runtime().StopPodSandbox(c.bound, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("StopPodSandbox again after the restart: %v\n%s", err, c.tail())
		} else if err := c.podStopped(id); err != nil {
			c.half("after the second stop: %v", err)
		}
	}
	if len(pods) == 0 && c.step.RPC == "StopPodSandbox" {
		c.half("StopPodSandbox removed the pod")
	}
	for _, p := range pods {
		c.removePod(p.Id)
	}
}

// container drives the container calls (and ExecSync): a pod without an
// infra (its own PID namespace per container) and one container, made up
// to the state the call needs.
func (c *crashCase) container() {
	t, n := c.t, c.n
	ctx := c.bound
	pod := c.podConfig(false)
	podID := n.run(t, pod)
	c.lc.pod(podID)
	podOnly := c.lc.snapshot(t)
	cfg := ctrConfig("c", "sleep", "3600")
	id := ""
	if c.step.RPC != "CreateContainer" {
		id = n.create(t, podID, pod, cfg, c.step.RPC != "StartContainer")
	}
	c.call(func(ctx context.Context) error {
		switch c.step.RPC {
		case "CreateContainer":
			resp, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
			if err == nil {
				id = resp.ContainerId
			}
			return err
		case "StartContainer":
			_, err := n.runtime().StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id})
			return err
		case "StopContainer":
			_, err := n.runtime().StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 10})
			return err
		case "RemoveContainer":
			_, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id})
			return err
		default:
			resp, err := n.runtime().ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", "ok"}, Timeout: 10})
			if err == nil && resp.ExitCode != 0 {
				err = fmt.Errorf("exit code %d, stderr %q", resp.ExitCode, resp.Stderr)
			}
			return err
		}
	})
	if err := c.podWorks(podID, false); err != nil {
		c.half("the pod of the container: %v", err)
	}
	list, err := n.runtime().ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	switch {
	case len(list.Containers) > 1:
		c.half("%d containers of one name", len(list.Containers))
	case len(list.Containers) == 1:
		id = list.Containers[0].Id
		c.containerWhole(id)
	case c.step.RPC == "CreateContainer":
		// Gone: kubelet creates it again, under the same name.
		resp, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
		if err != nil {
			t.Errorf("CreateContainer again after the restart: %v\n%s", err, c.tail())
			break
		}
		id = resp.ContainerId
		c.containerWhole(id)
	case c.step.RPC != "RemoveContainer":
		c.half("container %s is gone after %s", id, c.step.RPC)
	}
	list, _ = n.runtime().ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	for _, ctr := range list.GetContainers() {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := n.runtime().StopContainer(sctx, &runtime.StopContainerRequest{ContainerId: ctr.Id, Timeout: 2})
		cancel()
		if err != nil {
			t.Errorf("StopContainer after the restart: %v\n%s", err, c.tail())
		}
		if pids := ctrPids(t, ctr.Id); len(pids) > 0 {
			c.half("container %s stopped but processes %v run", ctr.Id, pids)
		}
		if _, err := n.runtime().RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: ctr.Id}); err != nil {
			t.Errorf("RemoveContainer after the restart: %v\n%s", err, c.tail())
		}
	}
	if leaks := podOnly.diff(c.lc.snapshot(t)); len(leaks) > 0 {
		c.tally.leaks += len(leaks)
		t.Errorf("LEAK of the container after a kill at %s and its removal:\n  %s", c.step.Name, strings.Join(leaks, "\n  "))
	}
	c.removePod(podID)
}

// containerWhole checks a container that exists after the crash: created
// and startable, or running and answering an exec, or exited with its
// processes gone; the state a call left it in (a stop's exited, a
// start's running) is what kubelet sees next.
func (c *crashCase) containerWhole(id string) {
	t, n := c.t, c.n
	ctx := c.bound
	st := n.ctrStatus(t, id)
	switch st.State {
	case runtime.ContainerState_CONTAINER_CREATED:
		if c.step.RPC == "StopContainer" || c.step.RPC == "ExecSync" || c.step.RPC == "RemoveContainer" {
			c.half("container %s was running and is CREATED", id)
			return
		}
		if _, err := n.runtime().StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
			c.half("container %s is CREATED but does not start: %v", id, err)
			return
		}
		fallthrough
	case runtime.ContainerState_CONTAINER_RUNNING:
		resp, err := n.runtime().ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", "ok"}, Timeout: 10})
		if err != nil || strings.TrimSpace(string(resp.Stdout)) != "ok" {
			c.half("container %s is RUNNING but exec fails: %v %q", id, err, resp.GetStdout())
		}
		if len(ctrPids(t, id)) == 0 {
			c.half("container %s is RUNNING with no process", id)
		}
	case runtime.ContainerState_CONTAINER_EXITED:
		if c.step.RPC != "StopContainer" && c.step.RPC != "RemoveContainer" {
			c.half("container %s exited (%d %s %s) after a kill in %s", id, st.ExitCode, st.Reason, st.Message, c.step.RPC)
		}
		if pids := ctrPids(t, id); len(pids) > 0 {
			c.half("container %s is EXITED but processes %v run", id, pids)
		}
	default:
		c.half("container %s is %v", id, st.State)
	}
}

// pull removes busybox (no container uses it between points) and pulls it
// with the point armed; after the restart it is there whole or kubelet
// pulls it again. The layer and record names compared by the leak check
// prove the image whole.
func (c *crashCase) pull() {
	t, n := c.t, c.n
	img := &runtime.ImageSpec{Image: busybox}
	if _, err := n.images().RemoveImage(c.bound, &runtime.RemoveImageRequest{Image: img}); err != nil {
		t.Fatalf("RemoveImage: %v", err)
	}
	c.call(func(ctx context.Context) error {
		_, err := n.images().PullImage(ctx, &runtime.PullImageRequest{Image: img})
		return err
	})
	st, err := n.images().ImageStatus(c.bound, &runtime.ImageStatusRequest{Image: img})
	if err != nil {
		t.Fatalf("ImageStatus: %v", err)
	}
	if st.Image == nil {
		n.pullBusybox(t)
	}
	// The image works: a container runs from it.
	pod := c.podConfig(false)
	podID := n.run(t, pod)
	c.lc.pod(podID)
	id := n.create(t, podID, pod, ctrConfig("c", "sleep", "3600"), true)
	c.containerWhole(id)
	c.removePod(podID)
}
