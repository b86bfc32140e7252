package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// hostProbe counts what pods can leave behind on the host, restricted to
// what belongs to this benchmark: its bridge, its CNI network name and
// lease dir, its work dir, its cgroup parent, its marked processes.
type hostProbe struct {
	o *options
	// netnsBefore are the /run/netns entries present when the run began;
	// containerd 1.6 pins pod network namespaces there (cni-<uuid>).
	netnsBefore map[string]bool
	baseline    hostState
}

// hostState is one reading of the host.
type hostState map[string]int

// The resources a hostState counts.
const (
	resVeths     = "veths on the bridge"
	resMounts    = "mounts under the work dir"
	resNetns     = "new /run/netns entries"
	resLeases    = "IP leases"
	resIptables  = "iptables nat rules"
	resCgroups   = "cgroups under the parent"
	resProcesses = "pod processes"
	resShims     = "shims"
	resCNICache  = "CNI result cache entries"
)

func newHostProbe(o *options) *hostProbe {
	h := &hostProbe{o: o, netnsBefore: map[string]bool{}}
	for _, n := range listDir("/run/netns") {
		h.netnsBefore[n] = true
	}
	h.baseline = h.read()
	return h
}

func listDir(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// read counts every resource; a resource that cannot be read counts 0.
func (h *hostProbe) read() hostState {
	o := h.o
	s := hostState{}
	if o.bridge != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "ip", "-o", "link", "show", "master", o.bridge).Output()
		cancel()
		if err == nil {
			s[resVeths] = strings.Count(string(out), "\n")
		}
	}
	if o.workDir != "" {
		if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			for _, line := range strings.Split(string(mi), "\n") {
				// "id parent major:minor root mountpoint ..."
				f := strings.Fields(line)
				if len(f) > 4 && strings.HasPrefix(f[4], o.workDir+"/") {
					s[resMounts]++
				}
			}
		}
	}
	for _, n := range listDir("/run/netns") {
		if !h.netnsBefore[n] {
			s[resNetns]++
		}
	}
	if o.ipamDir != "" && o.netName != "" {
		for _, n := range listDir(filepath.Join(o.ipamDir, o.netName)) {
			if n != "lock" && !strings.HasPrefix(n, "last_reserved_ip") {
				s[resLeases]++
			}
		}
	}
	if o.netName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
		cancel()
		if err == nil {
			// the bridge's ipMasq and portmap rules carry
			// `--comment "name: \"<net>\" id: \"<container>\""`.
			s[resIptables] = strings.Count(string(out), `name: \"`+o.netName+`\"`)
		}
		for _, n := range listDir("/var/lib/cni/results") {
			if strings.HasPrefix(n, o.netName+"-") {
				s[resCNICache]++
			}
		}
	}
	if o.cgroupParent != "" {
		root := filepath.Join("/sys/fs/cgroup/memory", o.cgroupParent)
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != root {
				s[resCgroups]++
			}
			return nil
		})
	}
	if procs, err := readProcs(o.marker); err == nil {
		for _, p := range procs {
			switch {
			case p.inCgroup(o.cgroupParent):
				s[resProcesses]++
			case strings.HasPrefix(p.exe, "containerd-shim") && (p.marked || strings.Contains(p.cmdline, o.workDir)):
				s[resShims]++
			}
		}
	}
	return s
}

// LeakReport is what a teardown left behind compared with the start of
// the run.
type LeakReport struct {
	Clean bool     `json:"clean"`
	Items []string `json:"items,omitempty"` // "3 veths on the bridge"
}

func (r *LeakReport) String() string {
	if r == nil {
		return "not checked"
	}
	if r.Clean {
		return "none"
	}
	return strings.Join(r.Items, ", ")
}

// leaks compares the host with the baseline, waiting up to bound for
// asynchronous cleanup (a shim exiting, a lazy unmount) to finish.
func (h *hostProbe) leaks(ctx context.Context, bound time.Duration) *LeakReport {
	deadline := time.Now().Add(bound)
	for {
		now := h.read()
		var items []string
		for res, n := range now {
			if d := n - h.baseline[res]; d > 0 {
				items = append(items, fmt.Sprintf("%d %s", d, res))
			}
		}
		sort.Strings(items)
		if len(items) == 0 {
			return &LeakReport{Clean: true}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return &LeakReport{Items: items}
		}
		time.Sleep(250 * time.Millisecond)
	}
}
