package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

// The samplers of the load tests (stress, soak, stuck filesystem): what a
// node's crid holds, read from /proc and the cgroup tree, so a run can be
// compared with its baseline. Mounts and cgroups are counted here by the
// node's own dir and cgroup parent only (the crash suite's leak checker
// counts more kinds of leftovers).

// pssKB is a process's proportional set size in kB (smaps_rollup), the
// share of memory it costs the node: shared pages count once overall.
func pssKB(pid int) (int, error) {
	return smapsKB(pid, "Pss")
}

// smapsKB reads one field of a process's smaps_rollup, in kB: Pss_Anon
// (heap, stacks) and Pss_File (the binary's pages) tell which kind grew.
func smapsKB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/smaps_rollup", field, pid)
}

// monitorMem is the monitor's own account of its memory: it logs a
// "Memory" line (runtime.MemStats, its goroutines and containers) on
// SIGUSR1. Zero if no line came within 2 s.
type monitorMem struct {
	containers, goroutines                       int
	heapAlloc, heapInuse, heapIdle, heapReleased int // bytes
	stackInuse, sys, heapObjects                 int
}

// monitorMemory asks the monitor pid for its Memory line and parses it.
func (n *podNode) monitorMemory(t *testing.T, pid int) monitorMem {
	t.Helper()
	path := filepath.Join(n.dir, "run", "monitor", "monitor.log")
	before, _ := os.ReadFile(path)
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatalf("SIGUSR1 to the monitor %d: %v", pid, err)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if len(b) <= len(before) {
			continue
		}
		for _, l := range strings.Split(string(b[len(before):]), "\n") {
			if !strings.Contains(l, "msg=Memory") {
				continue
			}
			var m monitorMem
			for _, f := range strings.Fields(l) {
				k, v, _ := strings.Cut(f, "=")
				x, _ := strconv.Atoi(v)
				switch k {
				case "containers":
					m.containers = x
				case "goroutines":
					m.goroutines = x
				case "heapAlloc":
					m.heapAlloc = x
				case "heapInuse":
					m.heapInuse = x
				case "heapIdle":
					m.heapIdle = x
				case "heapReleased":
					m.heapReleased = x
				case "stackInuse":
					m.stackInuse = x
				case "sys":
					m.sys = x
				case "heapObjects":
					m.heapObjects = x
				}
			}
			return m
		}
	}
	t.Logf("no Memory line from the monitor %d within 2 s", pid)
	return monitorMem{}
}

// cridProcs counts the node's crid processes: the daemon, the monitor and
// the stdio holders (every process whose command line names the node's dir).
func (n *podNode) cridProcs() int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	c := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), n.dir+"/") && strings.Contains(string(b), "crid") {
			c++
		}
	}
	return c
}

// podProcs counts the processes in the node's pod cgroups (infras,
// containers, execs); a process left after its pod is gone shows here.
func (n *podNode) podProcs() int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	c := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), strings.TrimSuffix(n.cgroupParent, ".slice")) {
			c++
		}
	}
	return c
}

// nodeMounts counts the mounts below the node's dir.
func (n *podNode) nodeMounts() int {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	c := 0
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], n.dir+"/") {
			c++
		}
	}
	return c
}

// nodeCgroups counts every cgroup below the node's parent (pods and their
// containers) in the memory hierarchy.
func (n *podNode) nodeCgroups(t *testing.T) int {
	t.Helper()
	c := 0
	_ = filepath.WalkDir(cgroupDir(t, "memory", n.cgroupParent), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			c++
		}
		return nil
	})
	return max(c-1, 0) // the parent itself
}

// sample is one reading of what a node's crid holds.
type sample struct {
	at                       time.Time
	label                    string
	daemonPSS, monitorPSS    int // kB
	goroutines               int
	daemonFDs, monitorFDs    int
	cridProcs, podProcs      int
	mounts, cgroups, pods    int
	containers               int
	monitorPid               int
	monitorAnon, monitorFile int // kB of the monitor's PSS
	monitorThreads           int
	mon                      monitorMem
}

// take reads the node's figures now, labelled for the table.
func (n *podNode) take(t *testing.T, label string) sample {
	t.Helper()
	mon := n.theMonitor(t)
	s := sample{at: time.Now(), label: label, monitorPid: mon}
	var err error
	if s.daemonPSS, err = pssKB(n.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if s.monitorPSS, err = pssKB(mon); err != nil {
		t.Fatal(err)
	}
	s.monitorAnon, _ = smapsKB(mon, "Pss_Anon")
	s.monitorFile, _ = smapsKB(mon, "Pss_File")
	s.mon = n.monitorMemory(t, mon)
	s.monitorThreads = threads(mon)
	s.goroutines = n.goroutines(t)
	s.daemonFDs, s.monitorFDs = fds(n.cmd.Process.Pid), fds(mon)
	s.cridProcs, s.podProcs = n.cridProcs(), n.podProcs()
	s.mounts, s.cgroups = n.nodeMounts(), n.nodeCgroups(t)
	recs, _ := os.ReadDir(filepath.Join(n.dir, "root", "records", "sandboxes"))
	s.pods = len(recs)
	s.containers = n.ctrRecords()
	return s
}

// counts are the figures that must come back exactly: every one but memory.
func (s sample) counts() [10]int {
	return [10]int{s.goroutines, s.daemonFDs, s.monitorFDs, s.cridProcs, s.podProcs, s.mounts, s.cgroups, s.pods, s.containers, s.monitorPid}
}

// sampleTable prints samples as a table, one row each.
func sampleTable(samples ...sample) string {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "sample\tdaemon PSS kB\tmonitor PSS kB\tgoroutines\tdaemon fds\tmonitor fds\tcrid procs\tpod procs\tmounts\tcgroups\tpod records\tctr records\t")
	for _, s := range samples {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.label, s.daemonPSS, s.monitorPSS, s.goroutines,
			s.daemonFDs, s.monitorFDs, s.cridProcs, s.podProcs, s.mounts, s.cgroups, s.pods, s.containers)
	}
	_ = w.Flush()
	return b.String()
}

// monitorTable prints the monitor's memory in each sample: its PSS split
// into anonymous and file pages, and its Go runtime's figures (kB), to
// tell a live heap that grows from pages not yet handed back.
func monitorTable(samples ...sample) string {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "sample\tmonitor PSS\tanon\tfile\theapAlloc\theapInuse\tidle kept\treleased\tstack\tsys\tobjects\tgoroutines\tthreads\tcontainers\t")
	for _, s := range samples {
		m := s.mon
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.label, s.monitorPSS, s.monitorAnon, s.monitorFile,
			m.heapAlloc>>10, m.heapInuse>>10, (m.heapIdle-m.heapReleased)>>10, m.heapReleased>>10, m.stackInuse>>10, m.sys>>10,
			m.heapObjects, m.goroutines, s.monitorThreads, m.containers)
	}
	_ = w.Flush()
	return b.String()
}

// settleTo samples until every count equals want's (goroutines, fds,
// processes, mounts, cgroups, records and the same monitor), or bound
// passes; it returns the last sample and whether they matched. Counts
// settle late: exits are reaped, idle connections and expired streaming
// tokens are dropped a moment after the calls that made them.
func (n *podNode) settleTo(t *testing.T, label string, want sample, bound time.Duration) (sample, bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		s := n.take(t, label)
		if s.counts() == want.counts() {
			return s, true
		}
		if time.Now().After(deadline) {
			return s, false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// threads is a process's count of OS threads (0 if it cannot be read).
func threads(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			c, _ := strconv.Atoi(strings.TrimSpace(v))
			return c
		}
	}
	return 0
}
