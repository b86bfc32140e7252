package monitor

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/oci/protocol"
)

// pipe returns a pipe whose monitor-side end is nonblocking (registered
// with Go's poller, so Close interrupts a pending Read or Write) and whose
// container-side end is blocking, as programs expect of their stdio. The
// two ends are separate open file descriptions, so the modes don't leak.
func pipe(monitorReads bool) (monitorEnd, childEnd *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	mine, theirs := p[0], p[1]
	if !monitorReads {
		mine, theirs = p[1], p[0]
	}
	if err := unix.SetNonblock(mine, true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	return os.NewFile(uintptr(mine), "pipe"), os.NewFile(uintptr(theirs), "pipe"), nil
}

// stdioSet is a container's stdio while it is being created: the ends the
// monitor keeps (by role) and the ends handed to the init, closed once it
// has started.
type stdioSet struct {
	mine    map[string]*os.File
	child   []*os.File
	console *os.File // our end of the console socket, for a tty
}

func (s *stdioSet) closeChild() {
	protocol.CloseFiles(s.child)
	s.child = nil
	if s.console != nil {
		s.console.Close()
		s.console = nil
	}
}

func (s *stdioSet) closeAll() {
	s.closeChild()
	for _, f := range s.mine {
		f.Close()
	}
	s.mine = nil
}

// newStdio prepares pipes (or, with tty, a console socket) and wires them
// into the process. Without stdin the container reads /dev/null.
func newStdio(stdin, tty bool) (s *stdioSet, in, out, errw, consoleChild *os.File, err error) {
	s = &stdioSet{mine: map[string]*os.File{}}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	if tty {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, nil, nil, nil, nil, fmt.Errorf("console socket: %w", err)
		}
		s.console = os.NewFile(uintptr(fds[0]), "console-parent")
		consoleChild = os.NewFile(uintptr(fds[1]), "console-child")
		s.child = append(s.child, consoleChild)
		return s, nil, nil, nil, consoleChild, nil
	}
	if stdin {
		w, r, err := pipe(false)
		if err != nil {
			return nil, nil, nil, nil, nil, err
		}
		s.mine[protocol.StdioStdin], in = w, r
		s.child = append(s.child, r)
	}
	for _, role := range []string{protocol.StdioStdout, protocol.StdioStderr} {
		r, w, err := pipe(true)
		if err != nil {
			return nil, nil, nil, nil, nil, err
		}
		s.mine[role] = r
		s.child = append(s.child, w)
		if role == protocol.StdioStdout {
			out = w
		} else {
			errw = w
		}
	}
	return s, in, out, errw, nil, nil
}

// receiveConsole takes the terminal master the init sent over the console
// socket during its setup, which precedes Start's return. For a log the
// terminal stops translating "\n" to "\r\n"; an interactive exec keeps
// it, as a terminal on the client's side expects.
func (s *stdioSet) receiveConsole(forLog bool) error {
	rc, err := s.console.SyscallConn()
	if err != nil {
		return err
	}
	var (
		fds  []int
		rerr error
	)
	cerr := rc.Control(func(fd uintptr) {
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		if err != nil {
			rerr = err
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			rerr = fmt.Errorf("no console descriptor in message (%v)", err)
			return
		}
		fds, rerr = unix.ParseUnixRights(&msgs[0])
	})
	if err := errors.Join(cerr, rerr); err != nil {
		return fmt.Errorf("receive console: %w", err)
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return fmt.Errorf("receive console: %d descriptors", len(fds))
	}
	pty := fds[0]
	// The container's "\n" should reach the log as "\n", not "\r\n".
	if t, err := unix.IoctlGetTermios(pty, unix.TCGETS); err == nil && forLog {
		t.Oflag &^= unix.ONLCR
		_ = unix.IoctlSetTermios(pty, unix.TCSETS, t)
	}
	if err := unix.SetNonblock(pty, true); err != nil {
		unix.Close(pty)
		return fmt.Errorf("receive console: %w", err)
	}
	s.mine[protocol.StdioPTY] = os.NewFile(uintptr(pty), "pty")
	return nil
}

// dupAll duplicates files for the daemon, in role order.
func dupAll(files map[string]*os.File) (roles []string, dups []*os.File, err error) {
	for _, role := range []string{protocol.StdioStdin, protocol.StdioStdout, protocol.StdioStderr, protocol.StdioPTY} {
		f := files[role]
		if f == nil {
			continue
		}
		d, err := protocol.Dup(f, true)
		if err != nil {
			protocol.CloseFiles(dups)
			return nil, nil, fmt.Errorf("duplicate %s: %w", role, err)
		}
		roles = append(roles, role)
		dups = append(dups, d)
	}
	return roles, dups, nil
}
