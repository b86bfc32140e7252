package cgroupmgr

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	"golang.org/x/sys/unix"
)

// CPUUsage reads a cgroup's cumulative CPU time in nanoseconds (what
// Stats reports as CPU.UsageNanos) from one small file: v1's
// cpuacct.usage, v2's cpu.stat. The stats lists answer from kept samples
// (cri/stats_samples.go) but read this anew on every call: a CPU rate is
// computed from two calls' usage and timestamps (crictl stats, kubelet's
// usage_nano_cores), which must differ; at 1,000 cgroups it costs a few
// milliseconds, the whole Stats over half a second. ErrNoCgroup when the
// cgroup is gone.
func (m *Manager) CPUUsage(cgroupPath string) (uint64, time.Time, error) {
	dir, err := Dir(cgroupPath)
	if err != nil {
		return 0, time.Time{}, err
	}
	if !filepath.IsAbs(dir) {
		// Relative to crid's own cgroup: the manager knows where.
		st, err := m.Stats(cgroupPath)
		if err != nil {
			return 0, time.Time{}, err
		}
		return st.CPU.UsageNanos, st.Timestamp, nil
	}
	at := time.Now()
	var n uint64
	if cgroups.IsCgroup2UnifiedMode() {
		n, err = readUsageV2(filepath.Join(fs2.UnifiedMountpoint, dir, "cpu.stat"))
	} else {
		var mnt string
		if mnt, err = m.cpuacctMount(); err == nil {
			n, err = readUint(filepath.Join(mnt, dir, "cpuacct.usage"))
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return 0, time.Time{}, ErrNoCgroup
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("cpu usage of cgroup %s: %w", cgroupPath, err)
	}
	return n, at, nil
}

// cpuacctMount finds the v1 cpuacct hierarchy once: looking it up reads
// mountinfo, which grows with every pod.
func (m *Manager) cpuacctMount() (string, error) {
	m.cpuacct.once.Do(func() {
		m.cpuacct.dir, m.cpuacct.err = cgroups.FindCgroupMountpoint("", "cpuacct")
	})
	return m.cpuacct.dir, m.cpuacct.err
}

// mountOnce is a hierarchy's mount point, looked up on first use.
type mountOnce struct {
	once sync.Once
	dir  string
	err  error
}

// readSmall reads a small file (a cgroup's cpu file) with three system
// calls on a stack buffer: os.ReadFile's os.File registers each cgroup
// file with the poller and allocates, a quarter of a stats list's CPU at
// 500 pods.
func readSmall(p string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: p, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

func readUint(p string) (uint64, error) {
	var buf [32]byte
	b, err := readSmall(p, buf[:])
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
}

// readUsageV2 reads usage_usec from a cpu.stat file, in nanoseconds (its
// first line; the file is a few hundred bytes).
func readUsageV2(p string) (uint64, error) {
	var buf [1024]byte
	b, err := readSmall(p, buf[:])
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("usage_usec ")); ok {
			us, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", p, err)
			}
			return us * 1000, nil
		}
	}
	return 0, fmt.Errorf("%s: no usage_usec", p)
}
