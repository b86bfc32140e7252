package oci

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/oci/protocol"
	"github.com/crid-dev/crid/panicguard"
)

// TerminalSize is a client terminal's size, for a pty's window.
type TerminalSize struct {
	Width, Height uint16
}

// Streams are a streaming client's ends. Nil readers and writers are not
// used; with a terminal, Stderr is unused (a pty has one output).
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	Resize         <-chan TerminalSize
}

// outputGrace bounds how long a finished exec waits for its output to
// drain: a background child of the exec may keep the pipes open forever.
const outputGrace = 2 * time.Second

// killWait bounds how long an exec killed because its request ended waits
// for the monitor to report the exit before the session is dropped (the
// monitor then kills and forgets it on its own).
const killWait = 10 * time.Second

// DefaultMaxExecOutput is kubelet's cap on ExecSync output per stream
// (containerd and CRI-O cap the same): more is dropped, and the result
// says Truncated.
const DefaultMaxExecOutput = 16 << 20

// ExecStream runs a process in a running container with the client's
// streams wired to it (CRI Exec) and returns its exit. The process is
// killed when ctx ends or the client stops taking its output.
func (r *Runtime) ExecStream(ctx context.Context, id string, p *specs.Process, s Streams) (Exit, error) {
	x, _, err := r.runExec(ctx, id, p, s)
	return x, err
}

// Exec runs a process in a running container and returns its output and
// exit (CRI ExecSync). A process outliving Timeout (or ctx) is killed and
// the result says TimedOut. Output is read here, from the process's own
// pipes, and capped per stream at MaxOutput: the monitor never holds it,
// and no amount of it can exceed a protocol frame.
func (r *Runtime) Exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	if req.Process == nil {
		return ExecResult{}, fmt.Errorf("%w: exec in container %s: no process", ErrInvalidArgument, req.ID)
	}
	timeout := req.Timeout
	if dl, ok := ctx.Deadline(); ok {
		// Leave time to kill and report before ctx ends.
		if left := timeUntil(dl) - execReplyMargin; left > 0 && (timeout == 0 || left < timeout) {
			timeout = left
		}
	}
	maxOut := req.MaxOutput
	if maxOut <= 0 {
		maxOut = DefaultMaxExecOutput
	}
	stdout, stderr := &capped{max: maxOut}, &capped{max: maxOut}
	s := Streams{Stdout: stdout, Stderr: stderr}
	if len(req.Stdin) > 0 {
		s.Stdin = bytes.NewReader(req.Stdin)
	}
	p := *req.Process
	xctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		xctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	x, killed, err := r.runExec(xctx, req.ID, &p, s)
	if ctx.Err() != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", req.ID, ctx.Err())
	}
	if err != nil {
		return ExecResult{}, err
	}
	return ExecResult{
		Exit: x, Stdout: stdout.b, Stderr: stderr.b,
		TimedOut: killed && xctx.Err() != nil, Truncated: stdout.dropped || stderr.dropped,
	}, nil
}

// runExec starts p in container id on a session of its own, copies between
// s and the process's stdio until it exits and its output is drained (at
// most outputGrace longer), and returns its exit. It kills the process when
// ctx ends or a write to the client fails, and says so in killed. Every
// goroutine it starts for the copies ends by its return, except the input
// copier, which ends when the client's input does.
func (r *Runtime) runExec(ctx context.Context, id string, p *specs.Process, s Streams) (_ Exit, killed bool, _ error) {
	p.Terminal = s.TTY
	sess, err := r.session(ctx)
	if err != nil {
		return Exit{}, false, fmt.Errorf("exec in container %s: %w", id, err)
	}
	// Closing the session also kills the process if it still runs.
	defer sess.Close()
	var reply protocol.ExecStartReply
	fds, err := sess.Call(ctx, protocol.MethodExecStart, protocol.ExecStartRequest{ID: id, Process: p, Stdin: s.Stdin != nil}, nil, &reply)
	if err != nil {
		return Exit{}, false, fmt.Errorf("exec in container %s: %w", id, mapError(err))
	}
	files := map[string]*os.File{}
	for i, f := range fds {
		if i < len(reply.Stdio) && files[reply.Stdio[i]] == nil {
			files[reply.Stdio[i]] = f
		} else {
			f.Close()
		}
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	// A client gone away (its stream failing) or ctx ending kills the
	// process; kill is sent at most once.
	var killOnce sync.Once
	kill := func(why string) {
		killOnce.Do(func() {
			killed = true
			klog.V(2).InfoS("Killing exec", "containerID", id, "exec", reply.ExecID, "reason", why)
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := sess.Call(kctx, protocol.MethodExecKill, protocol.ExecKillRequest{ID: id, ExecID: reply.ExecID, Signal: int(syscall.SIGKILL)}, nil, nil); err != nil {
				klog.V(2).InfoS("Killing exec failed", "containerID", id, "exec", reply.ExecID, "err", err)
			}
		})
	}

	var out sync.WaitGroup
	copyOut := func(w io.Writer, f *os.File) {
		out.Go(func() {
			var err error
			defer func() {
				if err != nil {
					kill("client stopped reading: " + err.Error())
				}
			}()
			defer panicguard.Recover("exec output relay", &err)
			err = copyOutput(w, f)
		})
	}
	if pty := files[protocol.StdioPTY]; pty != nil {
		copyOut(s.Stdout, pty)
		if s.Stdin != nil {
			// A pty's input is the same file. The end of the client's
			// input is its terminal going away: closing the master (we
			// hold the only one) hangs the session up, as a closed
			// terminal does, so no shell lingers without a client.
			panicguard.Go("exec input relay", func() { copyInput(pty, s.Stdin, true) })
		}
	} else {
		copyOut(s.Stdout, files[protocol.StdioStdout])
		copyOut(s.Stderr, files[protocol.StdioStderr])
		if in := files[protocol.StdioStdin]; in != nil {
			// Closed by the copier at the client's EOF, so the process
			// reads EOF; else by the return, which ends a copier
			// blocked on a full pipe.
			panicguard.Go("exec input relay", func() { copyInput(in, s.Stdin, true) })
		}
	}

	if s.Resize != nil {
		// Ends when the stream closes the channel.
		pty := files[protocol.StdioPTY]
		panicguard.Go("exec resize relay", func() { resizeLoop(pty, s.Resize) })
	}

	type waited struct {
		exit protocol.Exit
		err  error
	}
	done := make(chan waited, 1)
	go func() { // ends when the process exits or the session closes
		var w waited
		defer func() { done <- w }()
		defer panicguard.Recover("exec wait", &w.err)
		_, w.err = sess.Call(context.WithoutCancel(ctx), protocol.MethodExecWait, protocol.ExecIDRequest{ID: id, ExecID: reply.ExecID}, nil, &w.exit)
	}()
	var w waited
	select {
	case w = <-done:
	case <-ctx.Done():
		kill("request ended")
		t := time.NewTimer(killWait)
		select {
		case w = <-done:
		case <-t.C:
			sess.Close()
			w = <-done
		}
		t.Stop()
	}
	// Output written before the exit still reaches the client.
	drained := make(chan struct{})
	panicguard.Go("exec output drain", func() { out.Wait(); close(drained) })
	t := time.NewTimer(outputGrace)
	select {
	case <-drained:
	case <-t.C:
		for _, f := range files {
			f.Close() // unblocks the copiers
		}
		<-drained
	}
	t.Stop()
	if w.err != nil {
		return Exit{}, killed, fmt.Errorf("exec in container %s: %w", id, mapError(w.err))
	}
	return *exitFrom(&w.exit), killed, nil
}

// capped keeps the first max bytes written to it and drops the rest, so a
// chatty process can neither block nor exhaust the daemon.
type capped struct {
	max     int
	b       []byte
	dropped bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room < len(p) {
		c.b = append(c.b, p[:max(room, 0)]...)
		c.dropped = true
	} else {
		c.b = append(c.b, p...)
	}
	return len(p), nil
}

// Attach wires the client's streams to a running container's stdio (CRI
// Attach): output from now on, input into its stdin (or terminal). It
// returns when the container's output ends, the client's stdin ends, the
// client stops reading, or ctx ends. With stdinOnce, the end of the
// client's stdin closes the container's.
func (r *Runtime) Attach(ctx context.Context, id string, stdinOnce bool, s Streams) error {
	fds, _, err := r.call(ctx, protocol.MethodAttach, protocol.IDRequest{ID: id}, nil, nil, true)
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	if len(fds) != 1 {
		protocol.CloseFiles(fds)
		return fmt.Errorf("attach to container %s: monitor sent %d descriptors", id, len(fds))
	}
	conn, err := net.FileConn(fds[0])
	fds[0].Close()
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	defer conn.Close()

	var input *os.File
	if s.Stdin != nil || s.Resize != nil {
		r.mu.Lock()
		if t := r.tracked[id]; t != nil {
			role := protocol.StdioStdin
			if s.TTY {
				role = protocol.StdioPTY
			}
			if f := t.stdio[role]; f != nil {
				// Our own duplicate: closing it on return leaves the
				// container's stdin alone.
				input, err = protocol.Dup(f, true)
			}
		}
		r.mu.Unlock()
		if err != nil {
			return fmt.Errorf("attach to container %s: %w", id, err)
		}
	}
	if input != nil {
		defer input.Close()
	}

	ended := make(chan string, 3)
	panicguard.Go("attach output relay", func() { // ends at the output's EOF, a client write error or conn.Close
		why := "relay failed"
		defer func() { ended <- why }()
		buf := make([]byte, protocol.AttachMaxMessage)
		for {
			n, err := conn.Read(buf)
			if err != nil || n == 0 {
				why = "container output ended"
				return
			}
			w := s.Stdout
			if buf[0] == protocol.AttachStderr && !s.TTY {
				w = s.Stderr
			}
			if w == nil {
				continue
			}
			if _, err := w.Write(buf[1:n]); err != nil {
				why = "client stopped reading"
				return
			}
		}
	})
	if s.Stdin != nil && input != nil {
		panicguard.Go("attach input relay", func() { // ends at the client's EOF, or when input is closed on return
			why := "relay failed"
			defer func() { ended <- why }()
			copyInput(input, s.Stdin, false)
			if stdinOnce {
				if err := r.CloseStdin(context.WithoutCancel(ctx), id); err != nil {
					klog.V(2).InfoS("Closing stdin after attach", "containerID", id, "err", err)
				}
			}
			why = "client stdin ended"
		})
	} else if s.Stdin != nil {
		klog.V(2).InfoS("Attach asked for stdin but the container has none open", "containerID", id)
	}
	if s.Resize != nil {
		// Ends when the stream closes the channel; only a terminal
		// container has a window to size.
		var pty *os.File
		if s.TTY {
			pty = input
		}
		panicguard.Go("attach resize relay", func() { resizeLoop(pty, s.Resize) })
	}
	select {
	case why := <-ended:
		klog.V(2).InfoS("Attach ended", "containerID", id, "reason", why)
	case <-ctx.Done():
	}
	return nil
}

// copyOutput copies a process's output to the client until EOF (for a pty,
// EIO once its last writer is gone) or until the file is closed. Only a
// failed write is an error: the client went away.
func copyOutput(w io.Writer, f *os.File) error {
	if f == nil {
		return nil
	}
	if w == nil {
		w = io.Discard
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return nil
		}
	}
}

// copyInput copies the client's input into a process's stdin; closeAtEOF
// closes it then, so the process reads EOF.
func copyInput(dst *os.File, src io.Reader, closeAtEOF bool) {
	_, _ = io.Copy(dst, src)
	if closeAtEOF {
		dst.Close()
	}
}

// resizeLoop applies the client's window sizes to a pty (nil: none) and
// drains the channel until it closes (the stream ended): a size nobody
// takes would block its sender.
func resizeLoop(pty *os.File, sizes <-chan TerminalSize) {
	for sz := range sizes {
		if pty == nil {
			continue
		}
		rc, err := pty.SyscallConn()
		if err != nil {
			pty = nil // closed: keep draining
			continue
		}
		_ = rc.Control(func(fd uintptr) {
			_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
		})
	}
}
