package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"
)

// wsStream runs one exec or attach URL with client-go's websocket executor
// (v5.channel.k8s.io, what kubectl and kubelet 1.31+ speak).
func wsStream(t *testing.T, rawURL string, opts remotecommand.StreamOptions) error {
	t.Helper()
	e, err := remotecommand.NewWebSocketExecutor(&rest.Config{}, "GET", rawURL)
	if err != nil {
		t.Fatalf("websocket executor for %s: %v", rawURL, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.StreamWithContext(ctx, opts)
}

// fixedSize is a terminal of one size, sent once; nil then ends the
// executor's resize loop.
type fixedSize struct{ sent bool }

func (f *fixedSize) Next() *remotecommand.TerminalSize {
	if f.sent {
		return nil
	}
	f.sent = true
	return &remotecommand.TerminalSize{Width: 123, Height: 45}
}

// Exec over websocket: output streams, the exit code, stdin whose end
// reaches the process (v5's close signal), a terminal of the client's size,
// and single-use URLs whatever the protocol.
func TestStreamingWebsocketExec(t *testing.T) {
	n := newPodNode(t)
	_, id := streamPod(t, n, "ws-exec", ctrConfig("sleeper", "sleep", "1000"))
	ctx := context.Background()
	execURL := func(req *runtime.ExecRequest) string {
		t.Helper()
		req.ContainerId = id
		resp, err := n.runtime().Exec(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Url
	}

	var stdout, stderr strings.Builder
	u := execURL(&runtime.ExecRequest{Cmd: []string{"sh", "-c", "echo to-out; echo to-err >&2; exit 3"}, Stdout: true, Stderr: true})
	err := wsStream(t, u, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	var exit utilexec.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
		t.Fatalf("exec exiting 3: error %v (%T), want exit code 3", err, err)
	}
	if stdout.String() != "to-out\n" || stderr.String() != "to-err\n" {
		t.Fatalf("exec: stdout %q, stderr %q", stdout.String(), stderr.String())
	}

	// The same URL again, over websocket or SPDY: refused.
	// (client-go's error does not carry the status: the 404 itself is
	// checked by TestServeHTTPRefusesUnknownTokens in cri.)
	if err := wsStream(t, u, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil || !strings.Contains(err.Error(), "unable to upgrade") {
		t.Fatalf("second use of an exec URL over websocket: %v, want the upgrade refused", err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", mustParseURL(t, u))
	if err != nil {
		t.Fatal(err)
	}
	if err := spdy.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Fatal("an exec URL used over websocket was accepted again over SPDY")
	}

	// stdin reaches the process, and its end is the process's EOF: without
	// v5's close signal cat would never end.
	stdout.Reset()
	u = execURL(&runtime.ExecRequest{Cmd: []string{"sh", "-c", "cat; echo done"}, Stdin: true, Stdout: true, Stderr: true})
	if err := wsStream(t, u, remotecommand.StreamOptions{Stdin: strings.NewReader("line one\nline two\n"), Stdout: &stdout, Stderr: io.Discard}); err != nil {
		t.Fatalf("exec with stdin: %v (output %q)", err, stdout.String())
	}
	if stdout.String() != "line one\nline two\ndone\n" {
		t.Fatalf("exec with stdin: %q", stdout.String())
	}

	// An older client speaking v4.channel.k8s.io (served by the streaming
	// package) still gets its output and exit code.
	stdout.Reset()
	u = execURL(&runtime.ExecRequest{Cmd: []string{"sh", "-c", "echo v4; exit 4"}, Stdout: true, Stderr: true})
	v4, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, "GET", u, "v4.channel.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	err = v4.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: io.Discard})
	if !errors.As(err, &exit) || exit.ExitStatus() != 4 || stdout.String() != "v4\n" {
		t.Fatalf("exec over v4.channel.k8s.io: %v, output %q; want exit code 4 and \"v4\\n\"", err, stdout.String())
	}

	// A terminal of the client's size.
	stdout.Reset()
	u = execURL(&runtime.ExecRequest{Cmd: []string{"sh", "-c", "sleep 0.5; tty; stty size"}, Stdout: true, Tty: true})
	if err := wsStream(t, u, remotecommand.StreamOptions{Stdout: &stdout, Tty: true, TerminalSizeQueue: &fixedSize{}}); err != nil {
		t.Fatalf("exec with a tty: %v (output %q)", err, stdout.String())
	}
	mustContain(t, "exec with a tty over websocket", stdout.String(), "/dev/pts/", "45 123")
}

// Attach over websocket: input reaches the container's shell, its answer
// comes back, and the end of the input ends the session.
func TestStreamingWebsocketAttach(t *testing.T) {
	n := newPodNode(t)
	sh := ctrConfig("shell", "sh")
	sh.Stdin = true
	_, id := streamPod(t, n, "ws-attach", sh)
	resp, err := n.runtime().Attach(context.Background(), &runtime.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { // the input stays open a moment so the answer arrives first
		time.Sleep(500 * time.Millisecond)
		fmt.Fprintln(pw, "echo hello from websocket attach")
		time.Sleep(1500 * time.Millisecond)
		pw.Close()
	}()
	var out syncBuffer
	if err := wsStream(t, resp.Url, remotecommand.StreamOptions{Stdin: pr, Stdout: &out, Stderr: io.Discard}); err != nil {
		t.Fatalf("attach: %v (output %q)", err, out.String())
	}
	if out.String() != "hello from websocket attach\n" {
		t.Fatalf("attach: output %q", out.String())
	}
}

// Port-forward with client-go's SPDY-over-websocket dialer (kubectl's
// default since 1.31): connections reach the pod's port and back, and a
// used URL is refused.
func TestStreamingWebsocketPortForward(t *testing.T) {
	n := newPodNode(t)
	podID := n.run(t, podConfig("ws-forward"))
	t.Cleanup(func() {
		_, _ = n.runtime().RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
	})
	l := listenInNetns(t, filepath.Join(n.dir, "run", "sandboxes", podID, "ns", "net"), 8080)
	go func() { // ends when the listener is closed at cleanup
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { // echoes one line
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "pod:%s", line)
			}()
		}
	}()
	resp, err := n.runtime().PortForward(context.Background(), &runtime.PortForwardRequest{PodSandboxId: podID, Port: []int32{8080}})
	if err != nil {
		t.Fatal(err)
	}
	dialer, err := portforward.NewSPDYOverWebsocketDialerForStreaming(mustParseURL(t, resp.Url), &rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	local := freePort(t)
	stop, ready := make(chan struct{}), make(chan struct{})
	var pfOut syncBuffer
	pf, err := portforward.NewForStreaming(dialer, []string{fmt.Sprintf("%d:8080", local)}, stop, ready, &pfOut, &pfOut)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }() // ends when stop is closed
	defer func() { close(stop); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward over websocket: %v\n%s", err, pfOut.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("port-forward over websocket never became ready\n%s", pfOut.String())
	}
	for i := range 3 {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", local), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "conn %d\n", i)
		got, err := io.ReadAll(c)
		c.Close()
		if want := fmt.Sprintf("pod:conn %d\n", i); string(got) != want {
			t.Fatalf("through the websocket tunnel: %q (%v), want %q\n%s", got, err, want, pfOut.String())
		}
	}

	// The URL was used: a second tunnel is refused.
	again, err := portforward.NewSPDYOverWebsocketDialerForStreaming(mustParseURL(t, resp.Url), &rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c, _, err := again.Dial("portforward.k8s.io"); err == nil {
		c.Close()
		t.Fatal("a used port-forward URL opened a second websocket tunnel")
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
