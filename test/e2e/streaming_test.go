package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crictlCmd is crictl against d, for tests that feed it input or need its
// exit status.
func crictlCmd(d *daemon, args ...string) *exec.Cmd {
	bin := filepath.Join(repoRoot, "_output", "bin", "crictl")
	ep := "unix://" + d.socket
	return exec.Command(bin, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
}

// streamPod runs a pod with one running container of cfg.
func streamPod(t *testing.T, n *podNode, name string, cfg *runtime.ContainerConfig) (podID, ctrID string) {
	t.Helper()
	n.pullBusybox(t)
	pod := n.logPod(name)
	podID = n.run(t, pod)
	t.Cleanup(func() {
		_, _ = n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	return podID, n.create(t, podID, pod, cfg, true)
}

// Exec through the streaming server: output streams, exit codes, stdin,
// and a terminal with the client's window size.
func TestStreamingExec(t *testing.T) {
	n := newPodNode(t)
	_, id := streamPod(t, n, "exec", ctrConfig("sleeper", "sleep", "1000"))

	cmd := crictlCmd(n.daemon, "exec", id, "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatal("exec of a command exiting 3: crictl succeeded")
	}
	if stdout.String() != "to-out\n" || !strings.Contains(stderr.String(), "to-err\n") || !strings.Contains(stderr.String(), "3") {
		t.Fatalf("exec: stdout %q, stderr %q", stdout.String(), stderr.String())
	}

	// stdin reaches the process, and its end is the process's EOF.
	cmd = crictlCmd(n.daemon, "exec", "-i", id, "sh", "-c", "cat; echo done")
	cmd.Stdin = strings.NewReader("line one\nline two\n")
	out, err := cmd.Output()
	if err != nil || string(out) != "line one\nline two\ndone\n" {
		t.Fatalf("exec -i: %q, %v", out, err)
	}

	// A terminal: the process sees a tty of the client's size. script(1)
	// gives crictl a terminal of its own.
	inner := fmt.Sprintf("stty cols 123 rows 45; %s --runtime-endpoint unix://%s exec -it %s sh -c 'tty; stty size'",
		filepath.Join(repoRoot, "_output", "bin", "crictl"), n.socket, id)
	out, err = exec.Command("script", "-qec", inner, "/dev/null").Output()
	if err != nil {
		t.Fatalf("exec -it: %v\n%s", err, out)
	}
	mustContain(t, "exec -it", string(out), "/dev/pts/", "45 123")
}

// Attach to a container's stdio: input to a shell reading stdin, output of
// a terminal container, and a clear error for a stopped container.
func TestStreamingAttach(t *testing.T) {
	n := newPodNode(t)
	sh := ctrConfig("shell", "sh")
	sh.Stdin = true
	podID, id := streamPod(t, n, "attach", sh)

	// The client's input goes to the shell; its answer comes back. The
	// input stays open a moment so the answer arrives before the end.
	pr, pw := io.Pipe()
	cmd := crictlCmd(n.daemon, "attach", "-i", id)
	cmd.Stdin = pr
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(500 * time.Millisecond)
		fmt.Fprintln(pw, "echo hello from attach")
		time.Sleep(1500 * time.Millisecond)
		pw.Close()
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("attach: %v (output %q)", err, out.String())
	}
	if out.String() != "hello from attach\n" {
		t.Fatalf("attach output %q", out.String())
	}
	// Not stdin_once: the shell still runs after the client left.
	if st := n.ctrStatus(t, id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after detach the container is %v", st.State)
	}

	// A terminal container: output comes through the pty, to several
	// clients at once.
	tty := ctrConfig("ticker", "sh", "-c", "while true; do echo tick; sleep 0.2; done")
	tty.Tty = true
	pod := n.logPod("attach")
	tid := n.create(t, podID, pod, tty, true)
	var wg sync.WaitGroup
	outs := make([]string, 3)
	for i := range outs {
		wg.Go(func() {
			c := crictlCmd(n.daemon, "attach", tid)
			b, _ := startAndKillAfter(c, 1500*time.Millisecond)
			outs[i] = b
		})
	}
	wg.Wait()
	for i, o := range outs {
		if !strings.Contains(o, "tick") {
			t.Errorf("attach client %d to a tty container got %q", i, o)
		}
	}

	// stdin_once: the end of the attached client's input is the end of the
	// container's: the shell reads EOF and exits 0.
	once := ctrConfig("once", "sh")
	once.Stdin, once.StdinOnce = true, true
	oid := n.create(t, podID, pod, once, true)
	oc := crictlCmd(n.daemon, "attach", "-i", oid)
	oc.Stdin = strings.NewReader("echo bye\n")
	if out, err := oc.Output(); err != nil {
		t.Fatalf("attach to a stdin_once container: %v (%q)", err, out)
	}
	if st := n.waitExited(t, oid, 10*time.Second); st.ExitCode != 0 {
		t.Fatalf("stdin_once container after its client's EOF: exit %d (%s)", st.ExitCode, st.Reason)
	}
	waitLog(t, filepath.Join(pod.LogDirectory, "once.log"), "bye", 5*time.Second)

	// A stopped container cannot be attached to.
	if _, err := n.runtime().StopContainer(context.Background(), &runtime.StopContainerRequest{ContainerId: tid, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := n.runtime().Attach(context.Background(), &runtime.AttachRequest{ContainerId: tid, Stdout: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Attach to a stopped container: %v, want FailedPrecondition", err)
	}
}

// startAndKillAfter runs c for d, then kills it, and returns its output.
func startAndKillAfter(c *exec.Cmd, d time.Duration) (string, error) {
	var out syncBuffer
	c.Stdout = &out
	if err := c.Start(); err != nil {
		return "", err
	}
	time.AfterFunc(d, func() { _ = c.Process.Kill() })
	err := c.Wait()
	return out.String(), err
}

// Port forwarding into the pod's network namespace: two ports, concurrent
// connections on each, and a closed port that fails only its connection.
func TestStreamingPortForward(t *testing.T) {
	n := newPodNode(t)
	podID := n.run(t, podConfig("forward"))
	t.Cleanup(func() {
		_, _ = n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	pin := filepath.Join(n.dir, "run", "sandboxes", podID, "ns", "net")
	for _, port := range []int{8080, 8081} {
		l := listenInNetns(t, pin, port)
		go func() { // ends when the listener is closed at cleanup
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { // echoes one line, tagged with the port
					defer c.Close()
					line, _ := bufio.NewReader(c).ReadString('\n')
					fmt.Fprintf(c, "%d:%s", port, line)
				}()
			}
		}()
	}
	local1, local2, local3 := freePort(t), freePort(t), freePort(t)
	pf := crictlCmd(n.daemon, "port-forward", podID, fmt.Sprintf("%d:8080", local1), fmt.Sprintf("%d:8081", local2))
	var pfOut syncBuffer
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	waitDial(t, local1)

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 10 {
		for _, p := range []struct{ local, remote int }{{local1, 8080}, {local2, 8081}} {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", p.local), 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "conn %d\n", i)
				got, err := io.ReadAll(c)
				if want := fmt.Sprintf("%d:conn %d\n", p.remote, i); string(got) != want {
					errs <- fmt.Errorf("through port %d: %q (%v), want %q", p.remote, got, err, want)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", local1), 5*time.Second)
	if err != nil {
		t.Fatalf("after concurrent connections: %v\n%s", err, pfOut.String())
	}
	fmt.Fprintf(c, "again\n")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if got, _ := io.ReadAll(c); string(got) != "8080:again\n" {
		t.Fatalf("after concurrent connections: %q\n%s", got, pfOut.String())
	}
	c.Close()

	// Nothing listens on 9 in the pod: the connection gets no data and
	// the client is told why (client-go then ends the session: its
	// policy since Kubernetes 1.31).
	closed := crictlCmd(n.daemon, "port-forward", podID, fmt.Sprintf("%d:9", local3))
	var closedOut syncBuffer
	closed.Stdout, closed.Stderr = &closedOut, &closedOut
	if err := closed.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = closed.Process.Kill(); _ = closed.Wait() }()
	waitDial(t, local3)
	if c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", local3), 5*time.Second); err == nil {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		got, _ := io.ReadAll(c)
		c.Close()
		if len(got) != 0 {
			t.Fatalf("a closed port answered %q", got)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(closedOut.String(), "connection refused") {
		if time.Now().After(deadline) {
			t.Fatalf("port-forward to a closed port: the client was not told why:\n%s", closedOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A stopped pod has no network to forward into.
	if _, err := n.runtime().StopPodSandbox(context.Background(), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	_, err = n.runtime().PortForward(context.Background(), &runtime.PortForwardRequest{PodSandboxId: podID, Port: []int32{8080}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("PortForward to a stopped pod: %v, want FailedPrecondition", err)
	}
}

// freePort is a loopback port nothing listens on now (the kernel's pick,
// so never one an outgoing connection holds, as a random one in the
// ephemeral range could be: crictl port-forward then failed to listen).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitDial(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port-forward never listened on %d: %v", port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The streaming URLs: on loopback, and each token serves once.
func TestStreamingURLs(t *testing.T) {
	n := newPodNode(t)
	_, id := streamPod(t, n, "urls", ctrConfig("sleeper", "sleep", "1000"))
	ctx := context.Background()
	resp, err := n.runtime().Exec(ctx, &runtime.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(u.Host); host != "127.0.0.1" {
		t.Fatalf("streaming URL %s is not on loopback", resp.Url)
	}
	// A plain request uses the token up (it fails for lack of an upgrade)…
	r1, err := http.Post(resp.Url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r1.Body.Close()
	// …so the same URL is unknown afterwards.
	r2, err := http.Post(resp.Url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusNotFound {
		t.Fatalf("second use of a streaming token: %s, want 404 (first: %s)", r2.Status, r1.Status)
	}

	// Bad input is refused at the RPC.
	if _, err := n.runtime().Exec(ctx, &runtime.ExecRequest{ContainerId: id, Stdout: true}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Exec without a command: %v, want InvalidArgument", err)
	}
	if _, err := n.runtime().Exec(ctx, &runtime.ExecRequest{ContainerId: "no-such-container", Cmd: []string{"true"}, Stdout: true}); status.Code(err) != codes.NotFound {
		t.Fatalf("Exec in an unknown container: %v, want NotFound", err)
	}
}

// A client that goes away mid-stream leaves no process in the container
// and no descriptor in the daemon.
func TestStreamingBrokenClientLeaksNothing(t *testing.T) {
	n := newPodNode(t)
	_, id := streamPod(t, n, "broken", ctrConfig("sleeper", "sleep", "1000"))
	fds := func() int {
		e, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", n.cmd.Process.Pid))
		return len(e)
	}
	goroutines := func() int {
		resp, err := n.runtime().Status(context.Background(), &runtime.StatusRequest{Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		g, err := strconv.Atoi(resp.Info["goroutines"])
		if err != nil {
			t.Fatalf("Status verbose goroutines %q: %v", resp.Info["goroutines"], err)
		}
		return g
	}
	// Warm up the paths (monitor connection, streaming listener).
	crictl(t, n.daemon, "exec", id, "true")
	time.Sleep(500 * time.Millisecond)
	before, procsBefore, goBefore := fds(), len(ctrPids(t, id)), goroutines()

	// A terminal session (crictl under script(1), resized once), killed
	// with its whole process group.
	tty := fmt.Sprintf("%s --runtime-endpoint unix://%s exec -it %s sh -c 'stty size; cat'",
		filepath.Join(repoRoot, "_output", "bin", "crictl"), n.socket, id)
	for _, c := range []func() *exec.Cmd{
		func() *exec.Cmd { return crictlCmd(n.daemon, "exec", "-i", id, "cat") }, // waits on stdin
		func() *exec.Cmd { return crictlCmd(n.daemon, "exec", id, "yes") },       // writes without end
		func() *exec.Cmd { return exec.Command("script", "-qec", "stty cols 90 rows 30; "+tty, "/dev/null") },
	} {
		for range 3 {
			c := c()
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			stdin, err := c.StdinPipe() // left open: the client dies first
			if err != nil {
				t.Fatal(err)
			}
			c.Stdout = io.Discard
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			// The session must be live (its process in the container)
			// before the client dies, or nothing is tested.
			for deadline := time.Now().Add(10 * time.Second); len(ctrPids(t, id)) <= procsBefore; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
					t.Fatalf("%v: no exec process appeared in the container", c.Args)
				}
			}
			time.Sleep(300 * time.Millisecond)
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			_ = c.Wait()
			stdin.Close()
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs, open, gor := len(ctrPids(t, id)), fds(), goroutines()
		if procs == procsBefore && open <= before && gor <= goBefore {
			t.Logf("after 9 broken clients: %d processes in the container, %d daemon fds, %d goroutines (before: %d, %d, %d)", procs, open, gor, procsBefore, before, goBefore)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after broken clients: %d processes in the container (before %d), %d daemon fds (before %d), %d goroutines (before %d)", procs, procsBefore, open, before, gor, goBefore)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// An idle stream is closed after stream.idle_timeout: the client ends, and
// the exec reading its stdin gets EOF and exits.
func TestStreamingIdleTimeout(t *testing.T) {
	n := newPodNode(t)
	f, err := os.OpenFile(filepath.Join(n.dir, "crid.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "[stream]\nidle_timeout = \"2s\"\n")
	f.Close()
	n.restart(t)
	_, id := streamPod(t, n, "idle", ctrConfig("sleeper", "sleep", "1000"))

	c := crictlCmd(n.daemon, "exec", "-i", id, "cat")
	stdin, err := c.StdinPipe() // open and silent: the stream idles
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	start := time.Now()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
		t.Logf("idle exec stream closed after %s", time.Since(start).Round(10*time.Millisecond))
	case <-time.After(30 * time.Second):
		_ = c.Process.Kill()
		<-done
		t.Fatal("an idle exec stream outlived a 2 s idle timeout by 30 s")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(ctrPids(t, id)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the exec outlived its closed stream: %d processes in the container", len(ctrPids(t, id)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
