package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/cgroupmgr"
)

// The tests run on this machine's cgroup v1 hybrid layout with the cgroupfs
// driver, and in the VM test bed (test/vm) on cgroup v2 with either driver:
// CRID_E2E_CGROUP_DRIVER=systemd makes every daemon use the systemd driver.
// These helpers read the files each layout has, so the same assertions run
// everywhere.

// e2eCgroupDriver is the cgroup driver the test daemons use.
func e2eCgroupDriver() string {
	if d := os.Getenv("CRID_E2E_CGROUP_DRIVER"); d != "" {
		return d
	}
	return "cgroupfs"
}

func systemdDriver() bool { return e2eCgroupDriver() == "systemd" }

// cgroupV2 reports whether /sys/fs/cgroup is the unified hierarchy.
func cgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// driverArgs are the daemon flags for the driver under test.
func driverArgs() []string {
	if systemdDriver() {
		return []string{"--cgroup-driver", "systemd"}
	}
	return nil
}

// newCgroupParent names a private pod cgroup parent for a test's daemon:
// a path for cgroupfs, a slice (nested in crid.slice) for systemd.
func newCgroupParent() string {
	if systemdDriver() {
		return fmt.Sprintf("crid-e2e%08x.slice", rand.Uint32())
	}
	return fmt.Sprintf("/crid-e2e-%08x", rand.Uint32())
}

// childCgroup names a cgroup below parent the way the driver nests them.
func childCgroup(parent, name string) string {
	if systemdDriver() {
		return strings.TrimSuffix(parent, ".slice") + "-" + name + ".slice"
	}
	return parent + "/" + name
}

// cgroupRel is the directory of a recorded cgroup path (a cgroupfs path, a
// systemd slice or slice:crid:id) relative to a hierarchy's mount.
func cgroupRel(t *testing.T, cg string) string {
	t.Helper()
	dir, err := cgroupmgr.Dir(cg)
	if err != nil {
		t.Fatalf("cgroup path %q: %v", cg, err)
	}
	return dir
}

// cgroupDir is where a cgroup's files of controller are: the unified dir
// on v2, the controller's hierarchy on v1.
func cgroupDir(t *testing.T, controller, cg string) string {
	t.Helper()
	if cgroupV2() {
		return filepath.Join("/sys/fs/cgroup", cgroupRel(t, cg))
	}
	return filepath.Join("/sys/fs/cgroup", controller, cgroupRel(t, cg))
}

// cgroupFile reads a file of a cgroup (in controller's hierarchy on v1).
func cgroupFile(t *testing.T, controller, cg, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cgroupDir(t, controller, cg), file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Limits as v1 spells them, read from v1 or v2 files.

// memoryLimit is memory.limit_in_bytes (v1) or memory.max (v2), "max"
// for none on either.
func memoryLimit(t *testing.T, cg string) string {
	t.Helper()
	if cgroupV2() {
		return cgroupFile(t, "memory", cg, "memory.max")
	}
	v := cgroupFile(t, "memory", cg, "memory.limit_in_bytes")
	if n, err := strconv.ParseUint(v, 10, 64); err == nil && n >= 1<<62 {
		return "max"
	}
	return v
}

// cpuQuota is cpu.cfs_quota_us (v1) or cpu.max's first field (v2), "-1"
// for none.
func cpuQuota(t *testing.T, cg string) string {
	t.Helper()
	if cgroupV2() {
		q := strings.Fields(cgroupFile(t, "cpu", cg, "cpu.max"))[0]
		if q == "max" {
			return "-1"
		}
		return q
	}
	return cgroupFile(t, "cpu", cg, "cpu.cfs_quota_us")
}

// wantCPUShares checks cpu.shares (v1) or the cpu.weight runc converts
// shares to (v2).
func wantCPUShares(t *testing.T, cg string, shares uint64) {
	t.Helper()
	if cgroupV2() {
		want := strconv.FormatUint(cgroups.ConvertCPUSharesToCgroupV2Value(shares), 10)
		if got := cgroupFile(t, "cpu", cg, "cpu.weight"); got != want {
			t.Fatalf("cpu.weight of %s: %s, want %s (shares %d)", cg, got, want, shares)
		}
		return
	}
	if got := cgroupFile(t, "cpu", cg, "cpu.shares"); got != strconv.FormatUint(shares, 10) {
		t.Fatalf("cpu.shares of %s: %s, want %d", cg, got, shares)
	}
}

// pidCgroups maps each controller to pid's cgroup path from
// /proc/<pid>/cgroup; on v2 the single path is under "" and under every
// controller name the tests ask for.
func pidCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			out[""] = f[2]
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			out[c] = f[2]
		}
	}
	if cgroupV2() {
		for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "devices", "cpuset", "hugetlb", "blkio"} {
			out[c] = out[""]
		}
	}
	return out
}

// systemdUnits lists the loaded systemd units whose names start with
// prefix (slices and scopes crid created), none without systemd.
func systemdUnits(t *testing.T, prefix string) []string {
	t.Helper()
	if !systemdDriver() {
		return nil
	}
	out, err := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", prefix+"*").Output()
	if err != nil {
		t.Fatalf("systemctl list-units: %v", err)
	}
	var units []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	return units
}

// podSep joins "pod" and a sandbox ID in the name of a pod cgroup crid
// creates itself: pod-<id> (cgroupfs), <parent>-pod<id>.slice (systemd).
func podSep() string {
	if systemdDriver() {
		return ""
	}
	return "-"
}

// removeCgroupTree ends what a failed test left running in its private
// cgroup parent (only its own pods live there) and removes the cgroups,
// deepest first, in every hierarchy; with systemd it stops the slices
// first (which stops every unit in them).
func removeCgroupTree(t *testing.T, parent string) {
	if systemdDriver() {
		units := systemdUnits(t, strings.TrimSuffix(parent, ".slice"))
		if len(units) > 0 {
			if out, err := exec.Command("systemctl", append([]string{"stop"}, units...)...).CombinedOutput(); err != nil {
				t.Logf("cleanup: systemctl stop %v: %v %s", units, err, out)
			}
		}
	}
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	if cgroupV2() {
		roots = []string{"/sys/fs/cgroup"}
	}
	var dirs []string
	for _, r := range roots {
		_ = filepath.WalkDir(filepath.Join(r, cgroupRel(t, parent)), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			dirs = append(dirs, p)
			procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(procs)) {
				if pid, err := strconv.Atoi(f); err == nil {
					t.Logf("cleanup: killing %d left in %s", pid, p)
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
			return nil
		})
	}
	if len(dirs) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}
