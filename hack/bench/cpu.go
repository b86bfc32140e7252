package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports here.
const clockTicks = 100

// cpuTicks returns utime+stime of pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse stat of %d", pid)
	}
	// After "(comm)": state(3) ppid(4) ... utime(14) stime(15).
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parse stat of %d: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse stat of %d: utime %q stime %q", pid, f[11], f[12])
	}
	return u + s, nil
}

// CPUUse is the CPU a runtime's processes used over a window, in percent
// of one core.
type CPUUse struct {
	WindowSeconds float64 `json:"window_seconds"`
	DaemonPct     float64 `json:"daemon_pct"`
	HelpersPct    float64 `json:"helpers_pct"` // crid-monitor, or every shim
	Helpers       int     `json:"helpers"`
}

// measureCPU reads the CPU time of the daemon and the helpers (monitor or
// shims) at the start and the end of window. A helper that appears or goes
// during the window is left out of the sum.
func measureCPU(ctx context.Context, o *options, owned func(string) bool, window time.Duration) (CPUUse, error) {
	read := func() (map[int]int64, error) {
		kinds, _, err := runtimeProcs(o, owned)
		if err != nil {
			return nil, err
		}
		ticks := map[int]int64{}
		for pid, kind := range kinds {
			if kind != kindDaemon && kind != kindHelper {
				continue
			}
			if t, err := cpuTicks(pid); err == nil {
				ticks[pid] = t
			}
		}
		return ticks, nil
	}
	var use CPUUse
	before, err := read()
	if err != nil {
		return use, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return use, ctx.Err()
	case <-time.After(window):
	}
	after, err := read()
	if err != nil {
		return use, err
	}
	secs := time.Since(start).Seconds()
	use.WindowSeconds = secs
	if _, ok := after[o.daemonPid]; !ok {
		return use, fmt.Errorf("daemon pid %d gone during the CPU window", o.daemonPid)
	}
	pct := func(d int64) float64 { return float64(d) / clockTicks / secs * 100 }
	for pid, t1 := range after {
		t0, ok := before[pid]
		if !ok {
			continue
		}
		if pid == o.daemonPid {
			use.DaemonPct = pct(t1 - t0)
		} else {
			use.HelpersPct += pct(t1 - t0)
			use.Helpers++
		}
	}
	return use, nil
}
