package cluster

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// terminal is a pseudo-terminal pair: the test holds the master, a kubectl
// started with tty as its controlling terminal holds the slave, as a user's
// shell would.
type terminal struct {
	master, slave *os.File
	mu            sync.Mutex
	out           strings.Builder
	done          chan struct{}
}

func openTerminal(t *testing.T, rows, cols uint16) *terminal {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	tm := &terminal{master: m, slave: s, done: make(chan struct{})}
	tm.resize(t, rows, cols)
	go func() {
		defer close(tm.done)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		s.Close()
		m.Close()
		<-tm.done
	})
	return tm
}

// resize sets the window size; the kernel sends SIGWINCH to the terminal's
// foreground process group (kubectl), which sends it on to the container.
func (tm *terminal) resize(t *testing.T, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(tm.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatalf("TIOCSWINSZ: %v", err)
	}
}

func (tm *terminal) write(t *testing.T, s string) {
	t.Helper()
	if _, err := tm.master.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// output returns everything the terminal has shown.
func (tm *terminal) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// waitOutput waits until the terminal has shown want after offset and
// returns the offset past it.
func (tm *terminal) waitOutput(t *testing.T, offset int, want string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := tm.output()
		if i := strings.Index(out[offset:], want); i >= 0 {
			return offset + i + len(want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the terminal did not show %q within 30s; it showed %q", want, out[offset:])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
