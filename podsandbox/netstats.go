package podsandbox

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/panicguard"
)

// InterfaceStats is one network interface's cumulative counters.
type InterfaceStats struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// DefaultInterface is the pod's interface CNI creates, the one kubelet
// reports as the pod's network.
const DefaultInterface = "eth0"

// NetworkStats reads the counters of every interface but loopback in the
// network namespace pinned at netns (a pod's Namespaces["net"]). It enters
// the namespace from a thread of its own that is never handed back to the
// Go scheduler, so no other goroutine runs in the pod's network.
func NetworkStats(netns string) ([]InterfaceStats, error) {
	type result struct {
		stats []InterfaceStats
		err   error
	}
	done := make(chan result, 1)
	go func() { // ends with netDevIn; the caller waits for it
		var r result
		defer func() { done <- r }()
		defer panicguard.Recover("pod network stats", &r.err)
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		r.stats, r.err = netDevIn(netns)
	}()
	r := <-done
	return r.stats, r.err
}

func netDevIn(netns string) ([]InterfaceStats, error) {
	fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", netns, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter network namespace %s: %w", netns, err)
	}
	f, err := os.Open("/proc/thread-self/net/dev")
	if err != nil {
		return nil, fmt.Errorf("network stats of %s: %w", netns, err)
	}
	defer f.Close()
	s, err := parseNetDev(f)
	if err != nil {
		return nil, fmt.Errorf("network stats of %s: %w", netns, err)
	}
	return s, nil
}

// parseNetDev reads /proc/net/dev: two header lines, then
// "name: rx bytes packets errs drop fifo frame compressed multicast
// tx bytes packets errs drop fifo colls carrier compressed".
func parseNetDev(r io.Reader) ([]InterfaceStats, error) {
	var out []InterfaceStats
	sc := bufio.NewScanner(r)
	for line := 0; sc.Scan(); line++ {
		if line < 2 {
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("malformed line %q", sc.Text())
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("malformed line %q", sc.Text())
		}
		var v [16]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("malformed line %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		if name == "lo" {
			continue
		}
		out = append(out, InterfaceStats{
			Name:    name,
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
