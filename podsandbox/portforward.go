package podsandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/panicguard"
)

// ErrNoNetwork says a pod has no network namespace to reach (it was
// stopped).
var ErrNoNetwork = errors.New("pod sandbox has no network namespace")

// DialPort connects to port on the pod's loopback, from inside its network
// namespace (CRI PortForward), trying IPv4 then IPv6 as kubelet's dockershim
// and containerd do. A host-network pod is reached on the node's loopback.
func (m *Manager) DialPort(ctx context.Context, idOrPrefix string, port int32) (net.Conn, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("%w: port %d is not a TCP port", ErrInvalid, port)
	}
	sb, err := m.Get(idOrPrefix)
	if err != nil {
		return nil, err
	}
	if sb.State != StateReady {
		return nil, fmt.Errorf("%w: pod %s is %s", ErrNoNetwork, sb.ID, sb.State)
	}
	nsPath := sb.Namespaces[string(nsNet)]
	if nsPath == "" && !sb.HostNetwork() {
		return nil, fmt.Errorf("%w: pod %s", ErrNoNetwork, sb.ID)
	}
	dial := func() (net.Conn, error) {
		var d net.Dialer
		p := strconv.Itoa(int(port))
		c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
		if err4 == nil {
			return c, nil
		}
		c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
		if err6 == nil {
			return c, nil
		}
		return nil, fmt.Errorf("connect to port %d in pod %s: %w", port, sb.ID, err4)
	}
	if nsPath == "" {
		return dial()
	}
	return inNetns(nsPath, dial)
}

// inNetns runs dial on a thread moved into the network namespace at path:
// sockets belong to the namespace of the thread that creates them. The
// thread goes back to its namespace after, or dies with its goroutine when
// it cannot.
func inNetns(path string, dial func() (net.Conn, error)) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() { // ends when dial returns (bounded by its context)
		var r result
		defer func() { ch <- r }()
		// A panic leaves the thread locked: it dies with the goroutine.
		defer panicguard.Recover("port-forward dial in the pod", &r.err)
		runtime.LockOSThread()
		c, restored, err := dialFromThread(path, dial)
		if restored {
			runtime.UnlockOSThread()
		}
		r = result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func dialFromThread(path string, dial func() (net.Conn, error)) (c net.Conn, restored bool, err error) {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		return nil, true, fmt.Errorf("%w: open %s: %v", ErrNoNetwork, path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	c, err = dial()
	restored = unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil
	return c, restored, err
}
