package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// proc is one process as /proc shows it.
type proc struct {
	pid, ppid int
	exe       string   // base name of /proc/<pid>/exe ("" for kernel threads or when gone)
	cmdline   string   // NULs replaced by spaces
	cgroups   []string // the paths of /proc/<pid>/cgroup, one per hierarchy
	marked    bool     // its environment carries the benchmark's marker
}

// readProcs reads every process. marker, when not empty, is looked for in
// each environment as CRID_BENCH_RUN=<marker>.
func readProcs(marker string) (map[int]*proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	want := []byte("CRID_BENCH_RUN=" + marker + "\x00")
	procs := map[int]*proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readProc(pid)
		if err != nil {
			continue // gone meanwhile, or a kernel thread
		}
		if marker != "" {
			if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
				p.marked = bytes.Contains(append(env, 0), want)
			}
		}
		procs[pid] = p
	}
	return procs, nil
}

func readProc(pid int) (*proc, error) {
	dir := fmt.Sprintf("/proc/%d", pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return nil, fmt.Errorf("read stat: %w", err)
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse %s/stat", dir)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return nil, fmt.Errorf("parse %s/stat", dir)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return nil, fmt.Errorf("parse %s/stat: %w", dir, err)
	}
	p := &proc{pid: pid, ppid: ppid}
	if exe, err := os.Readlink(dir + "/exe"); err == nil {
		p.exe = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	}
	if cmd, err := os.ReadFile(dir + "/cmdline"); err == nil {
		p.cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
	}
	if cg, err := os.ReadFile(dir + "/cgroup"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
			// "N:controllers:/path"
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 {
				p.cgroups = append(p.cgroups, parts[2])
			}
		}
	}
	return p, nil
}

// inCgroup reports whether p sits in parent or below it in any hierarchy.
func (p *proc) inCgroup(parent string) bool {
	if parent == "" || parent == "/" {
		return false
	}
	for _, c := range p.cgroups {
		if c == parent || strings.HasPrefix(c, parent+"/") {
			return true
		}
	}
	return false
}

// leafContains reports whether the last element of one of p's cgroup paths
// contains one of ids (containers live in …/<id> or …-<id>.scope).
func (p *proc) leafContains(owned func(string) bool) bool {
	for _, c := range p.cgroups {
		leaf := filepath.Base(c)
		leaf = strings.TrimSuffix(leaf, ".scope")
		if i := strings.LastIndexAny(leaf, "-:"); i >= 0 {
			if owned(leaf[i+1:]) {
				return true
			}
		}
		if owned(leaf) {
			return true
		}
	}
	return false
}

// pss returns the proportional set size of pid in kB.
func pss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, fmt.Errorf("open smaps_rollup: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// "Pss:                1234 kB"
		if rest, found := strings.CutPrefix(s.Text(), "Pss:"); found {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse Pss of %d: %w", pid, err)
			}
			return kb, nil
		}
	}
	if err := s.Err(); err != nil {
		return 0, fmt.Errorf("read smaps_rollup of %d: %w", pid, err)
	}
	return 0, fmt.Errorf("no Pss line in /proc/%d/smaps_rollup", pid)
}

// Process kinds of a runtime, for the memory breakdown.
const (
	kindDaemon   = "daemon"
	kindHelper   = "shim/monitor" // containerd-shim-runc-v2, crid-monitor
	kindInfra    = "pause/infra"  // in the pods' cgroups, not a container's
	kindOther    = "other"        // anything else the runtime runs (runc, CNI plugins) caught in passing
	kindWorkload = "workload"     // the containers' own processes: not counted
)

func isHelper(p *proc) bool {
	return strings.HasPrefix(p.exe, "containerd-shim") || strings.HasPrefix(p.exe, "crid-monitor") ||
		strings.HasPrefix(p.exe, "conmon")
}

// runtimeProcs finds the processes a runtime runs for this benchmark: the
// daemon and its descendants, processes carrying the marker in their
// environment (containerd's shims are re-parented to init; the marker is
// inherited from the daemon), processes whose command line names the
// benchmark's work dir, processes in the benchmark's cgroup parent, and all
// their descendants. The benchmark itself and its ancestors are left out.
func runtimeProcs(o *options, owned func(string) bool) (map[int]string, map[int]*proc, error) {
	procs, err := readProcs(o.marker)
	if err != nil {
		return nil, nil, err
	}
	skip := map[int]bool{}
	for pid := os.Getpid(); pid > 1; {
		skip[pid] = true
		p, ok := procs[pid]
		if !ok {
			break
		}
		pid = p.ppid
	}
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	set := map[int]bool{}
	var add func(pid int)
	add = func(pid int) {
		if set[pid] || skip[pid] {
			return
		}
		if _, ok := procs[pid]; !ok {
			return
		}
		set[pid] = true
		for _, c := range children[pid] {
			add(c)
		}
	}
	add(o.daemonPid)
	for _, p := range procs {
		if p.marked || (o.workDir != "" && strings.Contains(p.cmdline, o.workDir)) || p.inCgroup(o.cgroupParent) {
			add(p.pid)
		}
	}
	kinds := map[int]string{}
	for pid := range set {
		p := procs[pid]
		switch {
		case pid == o.daemonPid:
			kinds[pid] = kindDaemon
		case isHelper(p):
			kinds[pid] = kindHelper
		case p.leafContains(owned):
			kinds[pid] = kindWorkload
		case p.inCgroup(o.cgroupParent):
			kinds[pid] = kindInfra
		default:
			kinds[pid] = kindOther
		}
	}
	return kinds, procs, nil
}

// Snapshot is the PSS of a runtime's processes at one moment, in kB.
type Snapshot struct {
	DaemonKB   int64 `json:"daemon_kb"`
	HelpersKB  int64 `json:"helpers_kb"`
	Helpers    int   `json:"helpers"`
	InfraKB    int64 `json:"infra_kb"`
	Infra      int   `json:"infra"`
	OtherKB    int64 `json:"other_kb"`
	Other      int   `json:"other"`
	TotalKB    int64 `json:"total_kb"`    // daemon + helpers + infra + other
	Workload   int   `json:"workload"`    // container processes, not counted
	WorkloadKB int64 `json:"workload_kb"` // for reference only
	// OtherCmds names the "other" processes, which are usually transient.
	OtherCmds []string `json:"other_cmds,omitempty"`
}

func takeSnapshot(o *options, owned func(string) bool) (Snapshot, error) {
	var s Snapshot
	kinds, procs, err := runtimeProcs(o, owned)
	if err != nil {
		return s, err
	}
	if _, ok := kinds[o.daemonPid]; !ok {
		return s, fmt.Errorf("daemon pid %d is not running", o.daemonPid)
	}
	for pid, kind := range kinds {
		kb, err := pss(pid)
		if err != nil {
			if kind == kindDaemon {
				return s, err
			}
			continue // exited meanwhile
		}
		switch kind {
		case kindDaemon:
			s.DaemonKB += kb
		case kindHelper:
			s.HelpersKB += kb
			s.Helpers++
		case kindInfra:
			s.InfraKB += kb
			s.Infra++
		case kindOther:
			s.OtherKB += kb
			s.Other++
			s.OtherCmds = append(s.OtherCmds, fmt.Sprintf("%d:%s", pid, truncate(procs[pid].cmdline, 60)))
		case kindWorkload:
			s.WorkloadKB += kb
			s.Workload++
		}
	}
	s.TotalKB = s.DaemonKB + s.HelpersKB + s.InfraKB + s.OtherKB
	return s, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// execOutput runs a command and returns what it printed; its stderr goes
// into the error.
func execOutput(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// A daemon the command starts must not keep our pipe open.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, firstLine(stderr.String()))
	}
	return string(out), nil
}
