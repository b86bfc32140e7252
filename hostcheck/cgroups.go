package hostcheck

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// cgroupLayout is the host's cgroup mounts as /proc/self/mountinfo shows them.
type cgroupLayout struct {
	// Mode is "v2", "hybrid", "v1" or "" (no cgroups mounted).
	Mode string
	// Unified is the mount point of the cgroup2 filesystem, if any.
	Unified string
	// V1 are the controllers of the v1 hierarchies that are mounted.
	V1  []string
	err error
}

// v1Controllers are the controller names a v1 hierarchy's mount options
// may carry, beside its flags.
var v1Controllers = []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"}

// cgroupLayout reads the cgroup mounts. The same three modes as
// cgroupmgr.Mode, found from mountinfo so fixtures can stand in for a host.
func (h *Host) cgroupLayout() cgroupLayout {
	b, err := os.ReadFile(h.path("/proc/self/mountinfo"))
	if err != nil {
		return cgroupLayout{err: err}
	}
	var l cgroupLayout
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, found := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !found || len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			if l.Unified == "" || f[4] == "/sys/fs/cgroup" {
				l.Unified = f[4]
			}
		case "cgroup":
			for _, opt := range strings.Split(g[2], ",") {
				if slices.Contains(v1Controllers, opt) {
					l.V1 = append(l.V1, opt)
				}
			}
		}
	}
	slices.Sort(l.V1)
	l.V1 = slices.Compact(l.V1)
	switch {
	case l.Unified == "/sys/fs/cgroup":
		l.Mode = "v2"
	case l.Unified != "" && len(l.V1) > 0:
		l.Mode = "hybrid"
	case len(l.V1) > 0:
		l.Mode = "v1"
	}
	return l
}

// CgroupMode reports the cgroup layout. v1 and hybrid work, but kubelet
// 1.35 and newer refuse them unless told otherwise, and v1 is frozen.
func (h *Host) CgroupMode(l cgroupLayout) Result {
	const name = "cgroup mode"
	switch l.Mode {
	case "v2":
		return ok(name, "v2 (unified)")
	case "hybrid":
		return warn(name, fmt.Sprintf("hybrid: v1 controllers, a v2 mount at %s", l.Unified),
			"boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2; on v1 set kubelet's failCgroupV1: false")
	case "v1":
		return warn(name, "v1", "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2; on v1 set kubelet's failCgroupV1: false")
	}
	if l.err != nil {
		return fail(name, fmt.Sprintf("cannot read mountinfo: %v", l.err), "mount /proc")
	}
	return fail(name, "no cgroup filesystem is mounted", "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)")
}

// Controllers crid cannot run pods without (limits and kubelet's QoS), and
// those it uses when present. On v1, libcontainer also needs devices.
var (
	requiredControllers = []string{"cpu", "memory", "pids"}
	wantedControllers   = []string{"cpuset", "io", "hugetlb"}
)

// CgroupControllers lists the controllers available: the mounted v1
// hierarchies and those of the cgroup2 root.
func (h *Host) CgroupControllers(l cgroupLayout) Result {
	const name = "cgroup controllers"
	if l.Mode == "" {
		return fail(name, "no cgroups", "see cgroup mode")
	}
	have := map[string]string{}
	for _, c := range l.V1 {
		have[c] = "v1"
	}
	if l.Unified != "" {
		b, err := os.ReadFile(h.path(l.Unified + "/cgroup.controllers"))
		if err != nil {
			return fail(name, fmt.Sprintf("cannot read %s/cgroup.controllers: %v", l.Unified, err), "mount cgroup2 with its controllers")
		}
		for _, c := range strings.Fields(string(b)) {
			if _, dup := have[c]; !dup {
				have[c] = "v2"
			}
		}
	}
	required := requiredControllers
	if l.Mode != "v2" {
		required = append(slices.Clone(required), "devices", "cpuacct", "freezer")
	}
	// v1 calls the io controller blkio.
	lacks := func(c string) bool { return have[c] == "" && (c != "io" || have["blkio"] == "") }
	var missing, absent []string
	for _, c := range required {
		if lacks(c) {
			missing = append(missing, c)
		}
	}
	for _, c := range wantedControllers {
		if lacks(c) {
			absent = append(absent, c)
		}
	}
	var list []string
	for c, where := range have {
		if l.Mode == "hybrid" && where == "v2" {
			c += "(v2)"
		}
		list = append(list, c)
	}
	slices.Sort(list)
	detail := strings.Join(list, " ")
	if len(missing) > 0 {
		return fail(name, fmt.Sprintf("%s; missing %s", detail, strings.Join(missing, " ")),
			"enable them (cgroup_enable= on the kernel command line, or mount their v1 hierarchies)")
	}
	if len(absent) > 0 {
		return warn(name, fmt.Sprintf("%s; without %s their limits and stats are dropped", detail, strings.Join(absent, " ")),
			"enable them if pods set those limits")
	}
	return ok(name, detail)
}

// CgroupDriver compares runtime.cgroup_driver with the init system: the
// systemd driver needs systemd as PID 1, and on a systemd host the cgroupfs
// driver leaves two managers of one cgroup tree.
func (h *Host) CgroupDriver() Result {
	const name = "cgroup driver"
	driver := h.Config.Runtime.CgroupDriver
	systemd := isDir(h.path("/run/systemd/system"))
	init := "PID 1 is not systemd"
	if systemd {
		init = "PID 1 is systemd"
	}
	switch {
	case driver == "systemd" && !systemd:
		return fail(name, fmt.Sprintf("runtime.cgroup_driver = systemd, but %s", init),
			`set runtime.cgroup_driver = "cgroupfs" (and cgroup_parent to a path such as "/crid"), and kubelet's cgroupDriver: cgroupfs`)
	case driver == "cgroupfs" && systemd:
		return warn(name, fmt.Sprintf("runtime.cgroup_driver = cgroupfs, but %s: two managers of one cgroup tree", init),
			`set runtime.cgroup_driver = "systemd", runtime.cgroup_parent = "crid.slice" and kubelet's cgroupDriver: systemd`)
	}
	return ok(name, fmt.Sprintf("runtime.cgroup_driver = %s; %s", driver, init))
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
