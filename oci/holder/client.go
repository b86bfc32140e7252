package holder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/protocol"
)

// Client is the monitor's connection to the holder.
type Client struct {
	c   *protocol.Client
	Pid int // the holder's pid
}

// Done is closed when the connection ends (the holder died).
func (c *Client) Done() <-chan struct{} { return c.c.Done() }

// Close ends the connection; the holder keeps what it holds.
func (c *Client) Close() error { return c.c.Close() }

// Connect dials the holder serving runDir, starting one (binary hold …,
// in its own session) when none is alive. The holder started is a child
// of the caller, which must reap it (the monitor's reaper does).
func Connect(ctx context.Context, binary, runDir, stateDir string) (*Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for spawned := false; ; {
		c, err := protocol.Dial(ctx, SocketPath(runDir))
		if err == nil {
			var hello HelloReply
			if _, err := c.Call(ctx, MethodHello, struct{}{}, nil, &hello); err != nil {
				c.Close()
				return nil, fmt.Errorf("holder hello: %w", err)
			}
			return &Client{c: c, Pid: hello.Pid}, nil
		}
		alive, lerr := lockHeld(LockPath(runDir))
		if lerr != nil {
			return nil, lerr
		}
		if !alive && !spawned {
			if err := spawn(ctx, binary, runDir, stateDir); err != nil {
				return nil, err
			}
			spawned = true
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("holder on %s does not answer: %w", SocketPath(runDir), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Hold hands the holder duplicates of a container's output ends (the
// caller keeps and closes files) and names its init.
func (c *Client) Hold(ctx context.Context, req HoldRequest, files []*os.File) error {
	if _, err := c.c.Call(ctx, MethodHold, req, files, nil); err != nil {
		return fmt.Errorf("holder: hold %s: %w", req.ID, err)
	}
	return nil
}

// Take returns duplicates of what the holder keeps for a container, by
// role; nil when it keeps nothing.
func (c *Client) Take(ctx context.Context, id string) (map[string]*os.File, error) {
	var reply TakeReply
	fds, err := c.c.Call(ctx, MethodTake, IDRequest{ID: id}, nil, &reply)
	if err != nil {
		return nil, fmt.Errorf("holder: take %s: %w", id, err)
	}
	if !reply.Held || len(reply.Stdio) != len(fds) {
		protocol.CloseFiles(fds)
		return nil, nil
	}
	out := make(map[string]*os.File, len(fds))
	for i, role := range reply.Stdio {
		if out[role] != nil {
			protocol.CloseFiles(fds)
			return nil, fmt.Errorf("holder: take %s: role %q twice", id, role)
		}
		out[role] = fds[i]
	}
	return out, nil
}

// Release makes the holder forget a container.
func (c *Client) Release(ctx context.Context, id string) error {
	if _, err := c.c.Call(ctx, MethodRelease, IDRequest{ID: id}, nil, nil); err != nil {
		return fmt.Errorf("holder: release %s: %w", id, err)
	}
	return nil
}

// lockHeld tries the holder's lock: held means a holder lives.
func lockHeld(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("open holder lock: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return true, nil
		}
		return false, fmt.Errorf("try holder lock: %w", err)
	}
	return false, nil
}

// spawn starts a holder and waits until it serves its socket.
func spawn(ctx context.Context, binary, runDir, stateDir string) error {
	logf, err := os.OpenFile(LogPath(runDir), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open holder log: %w", err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start holder: %w", err)
	}
	defer readyR.Close()
	cmd := exec.Command(binary, "hold", "--run-dir", runDir, "--state-dir", stateDir, "--ready-fd", "3")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("start holder %s: %w", binary, err)
	}
	// Our reaper (the monitor's wait4(-1)) collects it when it ends.
	_ = cmd.Process.Release()
	if dl, ok := ctx.Deadline(); ok {
		_ = readyR.SetReadDeadline(dl)
	}
	b := make([]byte, 512)
	n, _ := readyR.Read(b)
	if m := string(b[:max(n, 0)]); m != "ok\n" {
		if m == "" {
			m = "exited or hung before serving; see " + LogPath(runDir)
		}
		return fmt.Errorf("holder %s: %s", binary, m)
	}
	return nil
}
