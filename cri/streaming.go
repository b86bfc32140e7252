package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"

	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/panicguard"
	"github.com/crid-dev/crid/podsandbox"
)

// streamServer is the HTTP server behind the Exec, Attach and PortForward
// URLs: kubelet's proxy (or crictl) connects to it with SPDY or websocket
// (streaming_ws.go). Each URL holds a single-use token that expires after a
// minute, so the listener stays on loopback by default.
type streamServer struct {
	srv    streaming.Server
	http   *http.Server
	l      net.Listener
	s      *Server
	idle   time.Duration
	tokens tokens
}

// newStreamServer serves the streaming endpoints on l; the URLs handed out
// name l's actual address (a configured port 0 picks a free one).
func newStreamServer(s *Server, l net.Listener, idle time.Duration) (*streamServer, error) {
	cfg := streaming.DefaultConfig
	cfg.Addr = l.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: "http", Host: l.Addr().String()}
	cfg.StreamIdleTimeout = idle
	srv, err := streaming.NewServer(cfg, &streamRuntime{s})
	if err != nil {
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	ss := &streamServer{srv: srv, l: l, s: s, idle: idle}
	ss.http = &http.Server{Handler: ss, ReadHeaderTimeout: 30 * time.Second}
	return ss, nil
}

// serve runs until close.
func (ss *streamServer) serve() {
	if err := ss.http.Serve(ss.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		klog.ErrorS(err, "Streaming server stopped", "address", ss.l.Addr().String())
	}
}

func (ss *streamServer) close() { _ = ss.http.Close() }

// streamRuntime carries the streams of the streaming server to the
// container manager and the pod's network namespace.
type streamRuntime struct{ s *Server }

// Exec runs the command with the client's streams. A non-zero exit goes
// back as an exit error, which the streaming package reports to the client
// as the command's exit code.
func (r *streamRuntime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	x, err := r.s.opts.Containers.Exec(ctx, containerID, cmd, streams(ctx, in, out, errw, tty, resize))
	if err != nil {
		klog.ErrorS(err, "Exec failed", "containerID", containerID)
		return toStatus(err)
	}
	if x.Code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command %q exited with %d", cmd, x.Code), Code: x.Code}
	}
	return nil
}

// Attach connects the client to the container's stdio until its output or
// the client's input ends.
func (r *streamRuntime) Attach(ctx context.Context, containerID string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if err := r.s.opts.Containers.Attach(ctx, containerID, streams(ctx, in, out, errw, tty, resize)); err != nil {
		klog.ErrorS(err, "Attach failed", "containerID", containerID)
		return toStatus(err)
	}
	return nil
}

// PortForward copies between the client's stream and a connection to the
// port on the pod's loopback, until either side ends.
func (r *streamRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := r.s.opts.Sandboxes.DialPort(dctx, podSandboxID, port)
	cancel()
	if err != nil {
		klog.ErrorS(err, "Port forward failed", "podSandboxID", podSandboxID, "port", port)
		return toStatus(err)
	}
	defer conn.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer panicguard.Recover("port forward relay", nil)
		_, _ = io.Copy(conn, stream)
		// The client finished sending: pass the half-close on.
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	})
	_, err = io.Copy(stream, conn)
	// The pod's side is done: closing both ends the other copy.
	stream.Close()
	conn.Close()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("port forward to %d in pod %s: %w", port, podSandboxID, err)
	}
	return nil
}

// streams adapts the streaming package's ends to the container manager's.
// Its resize channel is relayed until the package closes it; once ctx (the
// stream's request) ends, sizes are dropped rather than handed on, so a
// call that failed before reading them leaves no relay blocked behind.
func streams(ctx context.Context, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) oci.Streams {
	s := oci.Streams{TTY: tty}
	if in != nil {
		s.Stdin = in
	}
	if out != nil {
		s.Stdout = out
	}
	if errw != nil {
		s.Stderr = errw
	}
	if resize != nil {
		ch := make(chan oci.TerminalSize)
		panicguard.Go("resize relay", func() { // ends when the streaming package closes resize
			defer close(ch)
			for sz := range resize {
				select {
				case ch <- oci.TerminalSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
				}
			}
		})
		s.Resize = ch
	}
	return s
}

// Exec returns a URL of the streaming server running the command.
func (s *runtimeService) Exec(ctx context.Context, req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if len(req.GetCmd()) == 0 || req.GetCmd()[0] == "" {
		return nil, invalidArgument("cmd: must name a command")
	}
	if _, err := s.opts.Containers.Get(ctx, req.GetContainerId()); err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.stream.srv.GetExec(req)
	if err != nil {
		return nil, err
	}
	if err := s.stream.tokens.add(resp.GetUrl(), pendingStream{exec: req}); err != nil {
		return nil, status.Errorf(codes.ResourceExhausted, "exec: %v", err)
	}
	return resp, nil
}

// Attach returns a URL of the streaming server attached to the container.
func (s *runtimeService) Attach(ctx context.Context, req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	ctr, err := s.opts.Containers.Get(ctx, req.GetContainerId())
	if err != nil {
		return nil, toStatus(err)
	}
	if ctr.State != oci.StateRunning {
		return nil, toStatus(fmt.Errorf("%w: attach to container %s: it is %s, not running", oci.ErrFailedPrecondition, ctr.ID, ctr.State))
	}
	resp, err := s.stream.srv.GetAttach(req)
	if err != nil {
		return nil, err
	}
	if err := s.stream.tokens.add(resp.GetUrl(), pendingStream{attach: req}); err != nil {
		return nil, status.Errorf(codes.ResourceExhausted, "attach: %v", err)
	}
	return resp, nil
}

// PortForward returns a URL of the streaming server forwarding to the pod.
func (s *runtimeService) PortForward(_ context.Context, req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	sb, err := s.opts.Sandboxes.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, toStatus(err)
	}
	if sb.State != podsandbox.StateReady {
		return nil, toStatus(fmt.Errorf("%w: pod %s is %s", podsandbox.ErrNoNetwork, sb.ID, sb.State))
	}
	for i, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, invalidArgument("port[%d]: %d is not a TCP port", i, p)
		}
	}
	req.PodSandboxId = sb.ID
	resp, err := s.stream.srv.GetPortForward(req)
	if err != nil {
		return nil, err
	}
	if err := s.stream.tokens.add(resp.GetUrl(), pendingStream{}); err != nil {
		return nil, status.Errorf(codes.ResourceExhausted, "port forward: %v", err)
	}
	return resp, nil
}
