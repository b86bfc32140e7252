package cluster

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sleeper is a pod of one busybox container that sleeps.
func sleeper(t *testing.T, ns, name string) *Pod {
	t.Helper()
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    command: ["sleep", "3600"]
`, name, busybox))
	return waitReady(t, ns, name)
}

// kubectl logs shows a container's output, logs -f follows it as it is
// written, and logs --previous shows the output of the container's
// previous run after a restart.
func TestLogs(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: counter
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    command: ["sh", "-c", "i=0; while true; do echo \"count $i\"; i=$((i+1)); sleep 0.3; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  containers:
  - name: main
    image: %[2]s
    command: ["sh", "-c", "echo \"run $(cat /proc/sys/kernel/random/uuid)\"; echo to-stderr >&2; sleep 4; exit 3"]
`, busybox, busybox))
	waitReady(t, ns, "counter")
	countRe := regexp.MustCompile(`^count (\d+)$`)
	var last int
	waitFor(t, time.Minute, "a few lines in kubectl logs", func() (bool, error) {
		lines := strings.Split(strings.TrimSpace(kubectl(t, "-n", ns, "logs", "counter")), "\n")
		if lines[0] != "count 0" {
			return false, fmt.Errorf("first line %q, want \"count 0\"", lines[0])
		}
		for i, l := range lines {
			m := countRe.FindStringSubmatch(l)
			if m == nil || m[1] != strconv.Itoa(i) {
				return false, fmt.Errorf("line %d is %q", i, l)
			}
		}
		last = len(lines) - 1
		return last >= 2, nil
	})
	// logs -f: lines written after kubectl started arrive.
	f := startKubectl(t, nil, "-n", ns, "logs", "-f", "counter")
	f.waitLine(t, time.Minute, regexp.MustCompile(fmt.Sprintf(`^count %d$`, last+5)))
	lines, _ := f.output()
	if lines[0] != "count 0" {
		t.Errorf("logs -f began with %q", lines[0])
	}
	f.stop()

	// --previous after a restart: each run prints its own UUID. A restart
	// between the reads would shift both: read again then.
	var c *ContainerStatus
	var prev, cur string
	for attempt := 0; ; attempt++ {
		waitFor(t, 2*time.Minute, "crasher restarted and running", func() (bool, error) {
			c = getPod(t, ns, "crasher").container("main")
			return c != nil && c.RestartCount >= 1 && c.State.Running != nil, nil
		})
		prev = kubectl(t, "-n", ns, "logs", "--previous", "crasher")
		cur = kubectl(t, "-n", ns, "logs", "crasher")
		if getPod(t, ns, "crasher").container("main").RestartCount == c.RestartCount {
			break
		}
		if attempt == 5 {
			t.Fatal("crasher restarted during every read of its logs")
		}
	}
	if c.LastState.Terminated == nil || c.LastState.Terminated.ExitCode != 3 || c.LastState.Terminated.Reason != "Error" {
		t.Errorf("last state %+v, want terminated with exit code 3, reason Error", c.LastState.Terminated)
	}
	runRe := regexp.MustCompile(`(?m)^run ([0-9a-f-]{36})$`)
	pm, cm := runRe.FindStringSubmatch(prev), runRe.FindStringSubmatch(cur)
	if pm == nil || cm == nil {
		t.Fatalf("logs --previous %q, logs %q: want a run line in each", prev, cur)
	}
	if pm[1] == cm[1] {
		t.Errorf("--previous shows the current run %s", cm[1])
	}
	if !strings.Contains(prev, "to-stderr") {
		t.Errorf("logs --previous lacks the stderr line: %q", prev)
	}
}

// kubectl exec -it gives the command a terminal whose size follows the
// user's: a resize reaches the container; the exit code comes back.
func TestExecTerminalResize(t *testing.T) {
	ns := namespace(t)
	sleeper(t, ns, "shell")
	tm := openTerminal(t, 24, 80)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := kubectlCmd(ctx, "-n", ns, "exec", "-it", "shell", "--", "sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tm.slave, tm.slave, tm.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// $((6*7)) and the sed prefix keep the typed command's echo from
	// matching what the command prints.
	tm.write(t, "tty | sed 's/^/TTY=/'; stty size | sed 's/^/SIZE=/'; echo X$((6*7))\n")
	off := tm.waitOutput(t, 0, "SIZE=24 80")
	if !regexp.MustCompile(`TTY=/dev/pts/\d+`).MatchString(tm.output()) {
		t.Errorf("the command has no terminal: %q", tm.output())
	}
	off = tm.waitOutput(t, off, "X42")
	tm.resize(t, 40, 120)
	// The resize travels asynchronously: ask until it shows.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(tm.output()[off:], "SIZE=40 120") {
		if time.Now().After(deadline) {
			t.Fatalf("the resize to 40x120 did not reach the container: %q", tm.output()[off:])
		}
		tm.write(t, "stty size | sed 's/^/SIZE=/'\n")
		time.Sleep(500 * time.Millisecond)
	}
	tm.write(t, "exit 7\n")
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Errorf("kubectl exec -it ended with %v, want exit code 7", err)
		}
	case <-ctx.Done():
		t.Fatalf("kubectl exec -it did not end after exit 7: %q", tm.output())
	}
}

// kubectl exec -i passes stdin through; exit codes come back as kubectl's.
func TestExecStdinAndExitCodes(t *testing.T) {
	ns := namespace(t)
	sleeper(t, ns, "target")
	data := make([]byte, 3<<20+17)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	r := kubectlResult(t, data, "-n", ns, "exec", "-i", "target", "--", "sh", "-c", "cat >/tmp/in && md5sum </tmp/in && wc -c </tmp/in")
	if r.code != 0 {
		t.Fatalf("exec -i: %s", r)
	}
	want := hex.EncodeToString(sum[:]) + "  -\n" + strconv.Itoa(len(data)) + "\n"
	if r.stdout != want {
		t.Errorf("exec -i output %q, want %q", r.stdout, want)
	}
	for _, c := range []struct {
		cmd  []string
		code int
	}{
		{[]string{"true"}, 0},
		{[]string{"false"}, 1},
		{[]string{"sh", "-c", "exit 42"}, 42},
		{[]string{"sh", "-c", "kill -9 $$"}, 137},
	} {
		r := kubectlResult(t, nil, append([]string{"-n", ns, "exec", "target", "--"}, c.cmd...)...)
		if r.code != c.code {
			t.Errorf("exec %q: exit %d, want %d (%s)", c.cmd, r.code, c.code, r)
		}
		if c.code != 0 && !strings.Contains(r.stderr, fmt.Sprintf("command terminated with exit code %d", c.code)) {
			t.Errorf("exec %q: stderr %q does not report exit code %d", c.cmd, r.stderr, c.code)
		}
	}
	r = kubectlResult(t, nil, "-n", ns, "exec", "target", "--", "/does-not-exist")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "does-not-exist") {
		t.Errorf("exec of a missing binary: %s; want a failure naming it", r)
	}
}

// kubectl attach -i reaches the stdin of a running container's main
// process and shows its output.
func TestAttach(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    stdin: true
    command: ["sh", "-c", "echo ready; while read l; do echo \"got:$l\"; done; echo stdin-closed"]
`, busybox))
	waitReady(t, ns, "reader")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	a := startKubectl(t, pr, "-n", ns, "attach", "-i", "reader", "-c", "main")
	pr.Close()
	// Lines written before attach is connected would be lost to it (they go
	// to the log only): send until one comes back.
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(pw, "hello-%d\n", i); err != nil {
			t.Fatalf("write to kubectl attach: %v", err)
		}
		lines, stderr := a.output()
		if slicesContainsPrefix(lines, "got:hello-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing came back through attach: stdout %q, stderr %q", lines, stderr)
		}
		time.Sleep(time.Second)
	}
	if _, err := fmt.Fprintln(pw, "marker-after-attach"); err != nil {
		t.Fatal(err)
	}
	a.waitLine(t, 30*time.Second, regexp.MustCompile(`^got:marker-after-attach$`))
	if logs := kubectl(t, "-n", ns, "logs", "reader"); !strings.Contains(logs, "got:marker-after-attach") {
		t.Errorf("the container's log lacks what attach sent: %q", logs)
	}
}

func slicesContainsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// kubectl port-forward serves many connections, several at once, through
// one session.
func TestPortForward(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: pf
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: %s
    args: ["netexec", "--http-port=8080"]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
`, agnhost))
	waitReady(t, ns, "pf")
	pf := startKubectl(t, nil, "-n", ns, "port-forward", "pod/pf", ":8080")
	port := pf.waitLine(t, time.Minute, regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> 8080$`))[1]
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (string, error) {
		resp, err := client.Get("http://127.0.0.1:" + port + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return string(b), nil
	}
	big := strings.Repeat("0123456789abcdef", 4096)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("conn-%d-%s", i, big[:i*1000])
			got, err := get("/echo?msg=" + msg)
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
				return
			}
			if got != msg {
				errs <- fmt.Errorf("connection %d: echo of %d bytes came back as %d bytes", i, len(msg), len(got))
			}
		}()
		if i%8 == 7 {
			wg.Wait() // batches of 8 concurrent connections
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if host, err := get("/hostname"); err != nil || host != "pf" {
		t.Errorf("hostname through port-forward: %q, %v", host, err)
	}
}

func md5File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// kubectl cp copies a file and a directory into a container and out of it.
func TestCopy(t *testing.T) {
	ns := namespace(t)
	sleeper(t, ns, "box")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.bin")
	data := make([]byte, 2<<20+5)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "cp", in, ns+"/box:/tmp/in.bin", "-c", "main")
	got := strings.Fields(execIn(t, ns, "box", "main", "md5sum", "/tmp/in.bin"))[0]
	if want := md5File(t, in); got != want {
		t.Errorf("copied in: md5 %s in the container, %s here", got, want)
	}

	execIn(t, ns, "box", "main", "sh", "-c", "mkdir -p /tmp/out/sub && dd if=/dev/urandom of=/tmp/out/sub/blob bs=1024 count=1500 2>/dev/null && echo hello >/tmp/out/note")
	remote := strings.Fields(execIn(t, ns, "box", "main", "md5sum", "/tmp/out/sub/blob"))[0]
	kubectl(t, "cp", ns+"/box:/tmp/out/sub/blob", filepath.Join(dir, "blob"), "-c", "main")
	if got := md5File(t, filepath.Join(dir, "blob")); got != remote {
		t.Errorf("copied out: md5 %s here, %s in the container", got, remote)
	}
	kubectl(t, "cp", ns+"/box:/tmp/out", filepath.Join(dir, "out"), "-c", "main")
	if got := md5File(t, filepath.Join(dir, "out", "sub", "blob")); got != remote {
		t.Errorf("copied directory: blob md5 %s, want %s", got, remote)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out", "note")); err != nil || string(b) != "hello\n" {
		t.Errorf("copied directory: note %q, %v", b, err)
	}
}

// kubectl debug adds an ephemeral container to a running pod; with
// --target it shares the target container's process namespace.
func TestDebugEphemeralContainer(t *testing.T) {
	ns := namespace(t)
	sleeper(t, ns, "app")
	kubectl(t, "-n", ns, "debug", "app", "--image="+busybox, "--target=main", "--container=dbg", "--", "sleep", "7200")
	var p *Pod
	waitFor(t, 2*time.Minute, "the ephemeral container running", func() (bool, error) {
		p = getPod(t, ns, "app")
		c := p.container("dbg")
		if c != nil && c.State.Terminated != nil {
			return false, fmt.Errorf("ephemeral container terminated: %+v", c.State.Terminated)
		}
		return c != nil && c.State.Running != nil, nil
	})
	ps := execIn(t, ns, "app", "dbg", "ps", "-o", "pid,args")
	if !regexp.MustCompile(`(?m)^\s*1\s+sleep 3600$`).MatchString(ps) {
		t.Errorf("the debug container does not see the target's process as PID 1:\n%s", ps)
	}
	if !strings.Contains(ps, "sleep 7200") {
		t.Errorf("the debug container does not see its own process:\n%s", ps)
	}
	// The target keeps running, and the pod lists both.
	if c := p.container("main"); c == nil || c.State.Running == nil || c.RestartCount != 0 {
		t.Errorf("target container after debug: %+v", c)
	}
	out := kubectl(t, "-n", ns, "get", "pod", "app", "-o", "jsonpath={.spec.ephemeralContainers[*].name}")
	if out != "dbg" {
		t.Errorf("ephemeral containers in the spec: %q", out)
	}
	if !bytes.Contains([]byte(crictl(t, "ps", "--name", "dbg", "-q", "--label", "io.kubernetes.pod.namespace="+ns)), []byte(p.container("dbg").id())) {
		t.Errorf("crid does not list the ephemeral container %s", p.container("dbg").id())
	}
}
