package oci

import (
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

// ExecStream runs a process in a running container with the client's
// streams wired to it (CRI Exec) and returns its exit. The process is
// killed when ctx ends or the client stops taking its output.
func (r *Runtime) ExecStream(ctx context.Context, id string, p *specs.Process, s Streams) (Exit, error) {
	p.Terminal = s.TTY
	var reply protocol.ExecStartReply
	fds, _, err := r.call(ctx, protocol.MethodExecStart, protocol.ExecStartRequest{ID: id, Process: p, Stdin: s.Stdin != nil}, nil, &reply, false)
	if err != nil {
		return Exit{}, fmt.Errorf("exec in container %s: %w", id, err)
	}
	files := map[string]*os.File{}
	for i, role := range reply.Stdio {
		if i < len(fds) {
			files[role] = fds[i]
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
			klog.V(2).InfoS("Killing exec", "containerID", id, "exec", reply.ExecID, "reason", why)
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, _, err := r.call(kctx, protocol.MethodExecKill, protocol.ExecKillRequest{ID: id, ExecID: reply.ExecID, Signal: int(syscall.SIGKILL)}, nil, nil, true); err != nil {
				klog.V(2).InfoS("Killing exec failed", "containerID", id, "exec", reply.ExecID, "err", err)
			}
		})
	}

	var out sync.WaitGroup
	copyOut := func(w io.Writer, f *os.File) {
		out.Go(func() {
			if err := copyOutput(w, f); err != nil {
				kill("client stopped reading: " + err.Error())
			}
		})
	}
	if pty := files[protocol.StdioPTY]; pty != nil {
		copyOut(s.Stdout, pty)
		if s.Stdin != nil {
			// A pty's input is the same file. The end of the client's
			// input is its terminal going away: closing the master (we
			// hold the only one) hangs the session up, as a closed
			// terminal does, so no shell lingers without a client.
			go copyInput(pty, s.Stdin, true)
		}
	} else {
		copyOut(s.Stdout, files[protocol.StdioStdout])
		copyOut(s.Stderr, files[protocol.StdioStderr])
		if in := files[protocol.StdioStdin]; in != nil {
			delete(files, protocol.StdioStdin) // closed by the copier at EOF
			go copyInput(in, s.Stdin, true)
		}
	}

	if s.Resize != nil {
		// Ends when the stream closes the channel.
		go resizeLoop(files[protocol.StdioPTY], s.Resize)
	}

	type waited struct {
		exit protocol.Exit
		err  error
	}
	done := make(chan waited, 1)
	go func() { // ends when the process exits or the monitor connection drops
		var x protocol.Exit
		_, _, err := r.call(context.WithoutCancel(ctx), protocol.MethodExecWait, protocol.ExecIDRequest{ID: id, ExecID: reply.ExecID}, nil, &x, false)
		done <- waited{x, err}
	}()
	var w waited
	select {
	case w = <-done:
	case <-ctx.Done():
		kill("request ended")
		w = <-done
	}
	// Output written before the exit still reaches the client.
	drained := make(chan struct{})
	go func() { out.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(outputGrace):
		for _, f := range files {
			f.Close() // unblocks the copiers
		}
		<-drained
	}
	if w.err != nil {
		return Exit{}, fmt.Errorf("exec in container %s: %w", id, w.err)
	}
	return *exitFrom(&w.exit), nil
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
	go func() { // ends at the output's EOF, a client write error or conn.Close
		buf := make([]byte, protocol.AttachMaxMessage)
		for {
			n, err := conn.Read(buf)
			if err != nil || n == 0 {
				ended <- "container output ended"
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
				ended <- "client stopped reading"
				return
			}
		}
	}()
	if s.Stdin != nil && input != nil {
		go func() { // ends at the client's EOF, or when input is closed on return
			copyInput(input, s.Stdin, false)
			if stdinOnce {
				if err := r.CloseStdin(context.WithoutCancel(ctx), id); err != nil {
					klog.V(2).InfoS("Closing stdin after attach", "containerID", id, "err", err)
				}
			}
			ended <- "client stdin ended"
		}()
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
		go resizeLoop(pty, s.Resize)
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
