package cgroupmgr

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/cgroups/fscommon"
)

// ErrNoCgroup is returned for stats of a cgroup that does not exist (a
// container not started yet whose cgroup is gone, or a removed pod).
var ErrNoCgroup = errors.New("cgroup does not exist")

// Stats is one sample of a cgroup's usage and limits, in the units
// cAdvisor and kubelet use (nanoseconds, bytes, counts).
type Stats struct {
	Timestamp time.Time
	CPU       CPUStats
	Memory    MemoryStats
	Pids      PidsStats
	// IO is per block device; empty when the kernel accounts none.
	IO   []IOStats
	Spec Spec
	// PSI is pressure stall information (cgroup v2 only; nil elsewhere
	// or when the kernel has PSI off).
	PSI *PSI
}

// PSI is the pressure of one cgroup per resource, from cpu.pressure,
// memory.pressure and io.pressure.
type PSI struct {
	CPU, Memory, IO Pressure
}

// Pressure is one resource's "some" (at least one task stalled) and
// "full" (all non-idle tasks stalled) lines.
type Pressure struct {
	Some, Full PressureData
}

// PressureData is one line of a pressure file.
type PressureData struct {
	// TotalNanos is the cumulative stall time (the file counts µs).
	TotalNanos uint64
	// Avg10, Avg60, Avg300 are the stalled share of the last 10, 60 and
	// 300 s, in percent.
	Avg10, Avg60, Avg300 float64
}

// CPUStats is cumulative CPU time and CFS throttling.
type CPUStats struct {
	UsageNanos, UserNanos, SystemNanos uint64
	// Periods, ThrottledPeriods and ThrottledNanos are the CFS bandwidth
	// counters (zero without a quota).
	Periods, ThrottledPeriods, ThrottledNanos uint64
}

// MemoryStats is memory use as cAdvisor reports it.
type MemoryStats struct {
	// Usage is all memory charged to the cgroup, page cache included.
	Usage, MaxUsage uint64
	// WorkingSet is Usage less the inactive file cache (floored at 0):
	// what kubelet evicts on and the OOM killer looks at.
	WorkingSet uint64
	// RSS is anonymous memory and swap cache; Cache the page cache.
	RSS, Cache, MappedFile, Kernel, Swap uint64
	// Failcnt counts hits of the limit (v1 memory.failcnt, v2 the "max"
	// event); OOMKills counts the OOM killer's kills in the cgroup.
	Failcnt, OOMKills uint64
	// PageFaults and MajorPageFaults are cumulative, for the whole tree.
	PageFaults, MajorPageFaults uint64
	// Limit is 0 when the cgroup has none; Available is then 0 too,
	// otherwise Limit − WorkingSet floored at 0.
	Limit, Available uint64
}

// PidsStats counts the tasks (threads) in the cgroup tree.
type PidsStats struct {
	// Current is the number of tasks; Limit is 0 for none.
	Current, Limit uint64
}

// IOStats is one block device's cumulative I/O.
type IOStats struct {
	Major, Minor                         uint64
	ReadBytes, WriteBytes, Reads, Writes uint64
}

// Spec is the limits set on the cgroup, read back from it.
type Spec struct {
	// CPUShares is the v1 share value (v2 weights are converted back).
	CPUShares uint64
	// CPUPeriod is the CFS period in microseconds; CPUQuota is -1 for
	// none.
	CPUPeriod uint64
	CPUQuota  int64
	// Memory limits in bytes; 0 means none. MemorySwapLimit is memory
	// plus swap, as v1's memsw.
	MemoryLimit, MemorySwapLimit, MemoryReservation uint64
}

// unlimitedV1 is the smallest value v1 reports for "no limit"
// (PAGE_COUNTER_MAX pages rounded, 9223372036854771712 on 4 KiB pages).
const unlimitedV1 = 1 << 62

// Stats reads a cgroup's usage: v1 through opencontainers/cgroups' fs
// manager (every hierarchy), v2 through fs2 (the unified dir). Only v1 runs
// on this project's machines; the v2 path is exercised by unit tests
// against fixture trees.
func (m *Manager) Stats(cgroupPath string) (*Stats, error) {
	mgr, err := m.manager(cgroupPath)
	if err != nil {
		return nil, err
	}
	var st *Stats
	if cgroups.IsCgroup2UnifiedMode() {
		st, err = statsV2(mgr.Path(""))
	} else {
		st, err = statsV1(mgr.GetPaths())
	}
	if err != nil {
		return nil, fmt.Errorf("stats of cgroup %s: %w", cgroupPath, err)
	}
	return st, nil
}

var statControllers = &cgroups.StatsOptions{Controllers: cgroups.CPU | cgroups.Memory | cgroups.Pids | cgroups.IO}

// statsV1 reads the v1 hierarchies in paths (controller → directory).
func statsV1(paths map[string]string) (*Stats, error) {
	if !dirExists(paths["memory"]) && !dirExists(paths["cpuacct"]) {
		return nil, ErrNoCgroup
	}
	mgr, err := fs.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{}}, paths)
	if err != nil {
		return nil, err
	}
	raw, err := mgr.Stats(statControllers)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoCgroup
		}
		return nil, err
	}
	st := &Stats{Timestamp: time.Now()}
	convertCommon(raw, st)
	ms, mem := raw.MemoryStats.Stats, &st.Memory
	mem.Usage, mem.MaxUsage, mem.Failcnt = raw.MemoryStats.Usage.Usage, raw.MemoryStats.Usage.MaxUsage, raw.MemoryStats.Usage.Failcnt
	mem.RSS, mem.Cache, mem.MappedFile, mem.Swap = ms["total_rss"], ms["total_cache"], ms["total_mapped_file"], ms["total_swap"]
	mem.PageFaults, mem.MajorPageFaults = ms["total_pgfault"], ms["total_pgmajfault"]
	mem.Kernel = raw.MemoryStats.KernelUsage.Usage
	mem.WorkingSet = workingSet(mem.Usage, ms["total_inactive_file"])
	mem.Limit = limitV1(raw.MemoryStats.Usage.Limit)
	if p := paths["memory"]; p != "" {
		if n, err := fs.OOMKillCount(p); err == nil {
			mem.OOMKills = n
		}
		if v, err := fscommon.GetCgroupParamUint(p, "memory.soft_limit_in_bytes"); err == nil {
			st.Spec.MemoryReservation = limitV1(v)
		}
	}
	st.Spec.MemoryLimit = mem.Limit
	st.Spec.MemorySwapLimit = limitV1(raw.MemoryStats.SwapUsage.Limit)
	if p := paths["cpu"]; p != "" {
		st.Spec.CPUShares, _ = fscommon.GetCgroupParamUint(p, "cpu.shares")
		st.Spec.CPUPeriod, _ = fscommon.GetCgroupParamUint(p, "cpu.cfs_period_us")
		if q, err := fscommon.GetCgroupParamInt(p, "cpu.cfs_quota_us"); err == nil {
			st.Spec.CPUQuota = q
		} else {
			st.Spec.CPUQuota = -1
		}
	}
	finish(st)
	return st, nil
}

// statsV2 reads a unified-hierarchy cgroup directory.
func statsV2(dir string) (*Stats, error) {
	if !dirExists(dir) {
		return nil, ErrNoCgroup
	}
	mgr, err := fs2.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{}}, dir)
	if err != nil {
		return nil, err
	}
	raw, err := mgr.Stats(statControllers)
	if err != nil {
		if !dirExists(dir) {
			return nil, ErrNoCgroup
		}
		return nil, err
	}
	st := &Stats{Timestamp: time.Now()}
	convertCommon(raw, st)
	ms, mem := raw.MemoryStats.Stats, &st.Memory
	mem.Usage, mem.MaxUsage = raw.MemoryStats.Usage.Usage, raw.MemoryStats.Usage.MaxUsage
	mem.RSS, mem.Cache, mem.MappedFile = ms["anon"], ms["file"], ms["file_mapped"]
	mem.Swap = raw.MemoryStats.SwapOnlyUsage.Usage
	mem.PageFaults, mem.MajorPageFaults = ms["pgfault"], ms["pgmajfault"]
	if k, ok := ms["kernel"]; ok {
		mem.Kernel = k
	} else {
		mem.Kernel = ms["kernel_stack"] + ms["slab"] + ms["sock"] + ms["pagetables"]
	}
	mem.WorkingSet = workingSet(mem.Usage, ms["inactive_file"])
	mem.Limit = limitV2(raw.MemoryStats.Usage.Limit)
	mem.Failcnt, _ = fscommon.GetValueByKey(dir, "memory.events", "max")
	mem.OOMKills, _ = fscommon.GetValueByKey(dir, "memory.events", "oom_kill")
	st.Spec.MemoryLimit = mem.Limit
	if mem.Limit != 0 {
		// memory.swap.max is swap alone; report memory+swap as v1 does.
		if s := limitV2(raw.MemoryStats.SwapOnlyUsage.Limit); s != 0 {
			st.Spec.MemorySwapLimit = mem.Limit + s
		}
	}
	if v, err := fscommon.GetCgroupParamString(dir, "memory.low"); err == nil {
		st.Spec.MemoryReservation = parseMaxV2(v)
	}
	st.Spec.CPUShares, st.Spec.CPUPeriod, st.Spec.CPUQuota = cpuSpecV2(dir)
	if c, m, io := raw.CpuStats.PSI, raw.MemoryStats.PSI, raw.BlkioStats.PSI; c != nil || m != nil || io != nil {
		st.PSI = &PSI{CPU: pressure(c), Memory: pressure(m), IO: pressure(io)}
	}
	finish(st)
	return st, nil
}

func pressure(p *cgroups.PSIStats) Pressure {
	if p == nil {
		return Pressure{}
	}
	line := func(d cgroups.PSIData) PressureData {
		return PressureData{TotalNanos: d.Total * 1000, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return Pressure{Some: line(p.Some), Full: line(p.Full)}
}

// convertCommon copies what v1 and v2 report alike.
func convertCommon(raw *cgroups.Stats, st *Stats) {
	cpu := raw.CpuStats
	st.CPU = CPUStats{
		UsageNanos: cpu.CpuUsage.TotalUsage, UserNanos: cpu.CpuUsage.UsageInUsermode, SystemNanos: cpu.CpuUsage.UsageInKernelmode,
		Periods: cpu.ThrottlingData.Periods, ThrottledPeriods: cpu.ThrottlingData.ThrottledPeriods, ThrottledNanos: cpu.ThrottlingData.ThrottledTime,
	}
	st.Pids = PidsStats{Current: raw.PidsStats.Current, Limit: raw.PidsStats.Limit}
	byDev := map[[2]uint64]*IOStats{}
	dev := func(e cgroups.BlkioStatEntry) *IOStats {
		k := [2]uint64{e.Major, e.Minor}
		if byDev[k] == nil {
			byDev[k] = &IOStats{Major: e.Major, Minor: e.Minor}
		}
		return byDev[k]
	}
	for _, e := range raw.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			dev(e).ReadBytes += e.Value
		case "write":
			dev(e).WriteBytes += e.Value
		}
	}
	for _, e := range raw.BlkioStats.IoServicedRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			dev(e).Reads += e.Value
		case "write":
			dev(e).Writes += e.Value
		}
	}
	for _, d := range byDev {
		st.IO = append(st.IO, *d)
	}
	sort.Slice(st.IO, func(i, j int) bool {
		a, b := st.IO[i], st.IO[j]
		return a.Major < b.Major || (a.Major == b.Major && a.Minor < b.Minor)
	})
}

// finish derives what depends on the limit.
func finish(st *Stats) {
	if m := &st.Memory; m.Limit > m.WorkingSet {
		m.Available = m.Limit - m.WorkingSet
	}
}

// workingSet is usage less the inactive file cache, as kubelet and
// cAdvisor compute it, floored at 0.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}

func limitV1(v uint64) uint64 {
	if v >= unlimitedV1 {
		return 0
	}
	return v
}

func limitV2(v uint64) uint64 {
	if v == math.MaxUint64 {
		return 0
	}
	return v
}

// parseMaxV2 reads a v2 byte value where "max" means none (0).
func parseMaxV2(s string) uint64 {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// cpuSpecV2 reads cpu.weight (converted to v1 shares, the inverse of
// runc's shares→weight mapping) and cpu.max ("$quota $period").
func cpuSpecV2(dir string) (shares, period uint64, quota int64) {
	quota = -1
	if w, err := fscommon.GetCgroupParamUint(dir, "cpu.weight"); err == nil && w >= 1 && w <= 10000 {
		shares = weightToShares(w)
	}
	if s, err := fscommon.GetCgroupParamString(dir, "cpu.max"); err == nil {
		f := strings.Fields(s)
		if len(f) == 2 {
			if f[0] != "max" {
				if q, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					quota = q
				}
			}
			period, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return shares, period, quota
}

func dirExists(p string) bool {
	if p == "" {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// ProcessStats counts what the processes of a cgroup tree hold, as
// cAdvisor's process metrics do.
type ProcessStats struct {
	Processes, Threads, FileDescriptors, Sockets uint64
}

// Processes counts the processes of a cgroup tree and their threads, open
// file descriptors and sockets from /proc. Processes that exit meanwhile
// are skipped.
func (m *Manager) Processes(cgroupPath string) (ProcessStats, error) {
	mgr, err := m.manager(cgroupPath)
	if err != nil {
		return ProcessStats{}, err
	}
	pids, err := mgr.GetAllPids()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ProcessStats{}, ErrNoCgroup
		}
		return ProcessStats{}, fmt.Errorf("processes of cgroup %s: %w", cgroupPath, err)
	}
	return countProcesses("/proc", pids), nil
}

// countProcesses reads the threads and descriptors of pids under procRoot.
func countProcesses(procRoot string, pids []int) ProcessStats {
	var ps ProcessStats
	for _, pid := range pids {
		dir := procRoot + "/" + strconv.Itoa(pid)
		tasks, err := os.ReadDir(dir + "/task")
		if err != nil {
			continue // exited
		}
		ps.Processes++
		ps.Threads += uint64(len(tasks))
		fds, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			ps.FileDescriptors++
			if l, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:") {
				ps.Sockets++
			}
		}
	}
	return ps
}

// weightToShares inverts opencontainers/cgroups' shares→weight mapping
// (ConvertCPUSharesToCgroupV2Value, runc ≥ 1.3): weight = 10^((l²+125l)/612
// − 7/34) with l = log2(shares), so 1024 shares are weight 100 and back.
// (The linear mapping of older runc and cAdvisor read 100 as 2597 shares.)
func weightToShares(w uint64) uint64 {
	switch {
	case w <= 1:
		return 2
	case w >= 10000:
		return 262144
	}
	e := math.Log10(float64(w)) + 7.0/34.0
	l := (-125 + math.Sqrt(125*125+4*612*e)) / 2
	// The largest shares that map to w (the mapping rounds up).
	return uint64(math.Floor(math.Exp2(l) + 1e-6))
}
