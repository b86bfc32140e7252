package cgroupmgr

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/cgroups"
)

// fixture writes files (name → content) under dir.
func fixture(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeCgroupfs lets opencontainers/cgroups read plain files.
func fakeCgroupfs(t *testing.T) {
	cgroups.TestMode = true
	t.Cleanup(func() { cgroups.TestMode = false })
}

// A v1 container cgroup as the kernel lays it out (cpu and cpuacct as
// separate hierarchies, as on this project's machines).
func TestStatsV1Fixture(t *testing.T) {
	fakeCgroupfs(t)
	root := t.TempDir()
	paths := map[string]string{}
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "blkio"} {
		paths[c] = filepath.Join(root, c, "crid", "pod", "ctr")
	}
	fixture(t, paths["memory"], map[string]string{
		"memory.stat": "cache 1000\nrss 2000\nmapped_file 300\ninactive_file 100\n" +
			"total_cache 40960000\ntotal_rss 20480000\ntotal_mapped_file 4096\ntotal_swap 8192\n" +
			"total_pgfault 1234\ntotal_pgmajfault 12\ntotal_inactive_file 10240000\ntotal_active_file 30720000\n",
		"memory.usage_in_bytes":           "62914560\n",
		"memory.max_usage_in_bytes":       "70000000\n",
		"memory.failcnt":                  "3\n",
		"memory.limit_in_bytes":           "67108864\n",
		"memory.memsw.usage_in_bytes":     "62922752\n",
		"memory.memsw.max_usage_in_bytes": "70008192\n",
		"memory.memsw.failcnt":            "0\n",
		"memory.memsw.limit_in_bytes":     "134217728\n",
		"memory.kmem.usage_in_bytes":      "524288\n",
		"memory.kmem.max_usage_in_bytes":  "600000\n",
		"memory.kmem.failcnt":             "0\n",
		"memory.use_hierarchy":            "1\n",
		"memory.soft_limit_in_bytes":      "9223372036854771712\n",
		"memory.oom_control":              "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
	})
	fixture(t, paths["cpu"], map[string]string{
		"cpu.stat":          "nr_periods 50\nnr_throttled 7\nthrottled_time 350000000\n",
		"cpu.shares":        "1024\n",
		"cpu.cfs_period_us": "100000\n",
		"cpu.cfs_quota_us":  "20000\n",
	})
	fixture(t, paths["cpuacct"], map[string]string{
		"cpuacct.usage":            "3000000000\n",
		"cpuacct.stat":             "user 200\nsystem 100\n",
		"cpuacct.usage_percpu":     "1500000000 1500000000\n",
		"cpuacct.usage_all":        "cpu user system\n0 1000000000 500000000\n1 1000000000 500000000\n",
		"cpuacct.usage_percpu_sys": "500000000 500000000\n",
	})
	fixture(t, paths["pids"], map[string]string{"pids.current": "5\n", "pids.max": "max\n"})
	fixture(t, paths["blkio"], map[string]string{
		"blkio.throttle.io_serviced_recursive":      "8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:0 Async 0\n8:0 Total 30\nTotal 30\n",
		"blkio.throttle.io_service_bytes_recursive": "8:0 Read 40960\n8:0 Write 81920\n8:0 Total 122880\nTotal 122880\n",
	})

	st, err := statsV1(paths)
	if err != nil {
		t.Fatal(err)
	}
	if st.Timestamp.IsZero() {
		t.Error("no timestamp")
	}
	// cpuacct.stat is in USER_HZ ticks (100 per second here).
	wantCPU := CPUStats{UsageNanos: 3e9, UserNanos: 2e9, SystemNanos: 1e9, Periods: 50, ThrottledPeriods: 7, ThrottledNanos: 350000000}
	if st.CPU != wantCPU {
		t.Errorf("cpu %+v, want %+v", st.CPU, wantCPU)
	}
	m := st.Memory
	if m.Usage != 62914560 || m.WorkingSet != 62914560-10240000 || m.RSS != 20480000 || m.Cache != 40960000 ||
		m.MappedFile != 4096 || m.Swap != 8192 || m.Kernel != 524288 || m.Failcnt != 3 || m.OOMKills != 2 ||
		m.PageFaults != 1234 || m.MajorPageFaults != 12 || m.MaxUsage != 70000000 {
		t.Errorf("memory %+v", m)
	}
	if m.Limit != 67108864 || m.Available != 67108864-(62914560-10240000) {
		t.Errorf("limit %d available %d", m.Limit, m.Available)
	}
	if st.Pids != (PidsStats{Current: 5}) {
		t.Errorf("pids %+v", st.Pids)
	}
	if len(st.IO) != 1 || st.IO[0] != (IOStats{Major: 8, Minor: 0, ReadBytes: 40960, WriteBytes: 81920, Reads: 10, Writes: 20}) {
		t.Errorf("io %+v", st.IO)
	}
	wantSpec := Spec{CPUShares: 1024, CPUPeriod: 100000, CPUQuota: 20000, MemoryLimit: 67108864, MemorySwapLimit: 134217728}
	if st.Spec != wantSpec {
		t.Errorf("spec %+v, want %+v", st.Spec, wantSpec)
	}

	// Working set is floored at 0 when the inactive file cache exceeds
	// usage (accounting races); no limit means nothing available.
	fixture(t, paths["memory"], map[string]string{
		"memory.stat":           "total_inactive_file 99999999\n",
		"memory.limit_in_bytes": "9223372036854771712\n",
	})
	st, err = statsV1(paths)
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.WorkingSet != 0 || st.Memory.Limit != 0 || st.Memory.Available != 0 {
		t.Errorf("floored/unlimited: %+v", st.Memory)
	}

	// A cgroup that is gone is ErrNoCgroup, not zeros.
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := statsV1(paths); !errors.Is(err, ErrNoCgroup) {
		t.Errorf("missing cgroup: %v", err)
	}
}

// cgroup v2 cannot run on this project's (v1 hybrid) machines: the v2 path
// is tested against a fixture shaped like a unified /sys/fs/cgroup leaf.
func TestStatsV2Fixture(t *testing.T) {
	fakeCgroupfs(t)
	dir := filepath.Join(t.TempDir(), "crid", "pod", "ctr")
	fixture(t, dir, map[string]string{
		"cgroup.controllers": "cpu memory pids io\n",
		"cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n" +
			"nr_periods 40\nnr_throttled 4\nthrottled_usec 120000\nnr_bursts 0\nburst_usec 0\n",
		"cpu.weight": "100\n",
		"cpu.max":    "20000 100000\n",
		"memory.stat": "anon 10485760\nfile 20971520\nkernel 1048576\nkernel_stack 65536\nslab 500000\n" +
			"file_mapped 2097152\ninactive_file 5242880\nactive_file 15728640\npgfault 4321\npgmajfault 21\n",
		"memory.current":      "33554432\n",
		"memory.max":          "67108864\n",
		"memory.peak":         "40000000\n",
		"memory.low":          "0\n",
		"memory.swap.current": "4096\n",
		"memory.swap.max":     "67108864\n",
		"memory.events":       "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n",
		"pids.current":        "3\n",
		"pids.max":            "1024\n",
		"io.stat":             "259:0 rbytes=8192 wbytes=16384 rios=2 wios=4 dbytes=0 dios=0\n",
		"cpu.pressure":        "some avg10=0.00 avg60=0.00 avg300=0.00 total=10\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
		"memory.pressure":     "some avg10=1.50 avg60=0.75 avg300=0.25 total=2000\nfull avg10=0.50 avg60=0.25 avg300=0.10 total=1000\n",
		"io.pressure":         "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n",
	})
	st, err := statsV2(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantCPU := CPUStats{UsageNanos: 2500000000, UserNanos: 2e9, SystemNanos: 5e8, Periods: 40, ThrottledPeriods: 4, ThrottledNanos: 120000000}
	if st.CPU != wantCPU {
		t.Errorf("cpu %+v, want %+v", st.CPU, wantCPU)
	}
	m := st.Memory
	if m.Usage != 33554432 || m.WorkingSet != 33554432-5242880 || m.RSS != 10485760 || m.Cache != 20971520 ||
		m.MappedFile != 2097152 || m.Kernel != 1048576 || m.Swap != 4096 || m.Failcnt != 9 || m.OOMKills != 1 ||
		m.PageFaults != 4321 || m.MajorPageFaults != 21 || m.MaxUsage != 40000000 {
		t.Errorf("memory %+v", m)
	}
	if m.Limit != 67108864 || m.Available != 67108864-(33554432-5242880) {
		t.Errorf("limit %d available %d", m.Limit, m.Available)
	}
	if st.Pids != (PidsStats{Current: 3, Limit: 1024}) {
		t.Errorf("pids %+v", st.Pids)
	}
	if len(st.IO) != 1 || st.IO[0] != (IOStats{Major: 259, ReadBytes: 8192, WriteBytes: 16384, Reads: 2, Writes: 4}) {
		t.Errorf("io %+v", st.IO)
	}
	// PSI, totals from µs to ns.
	wantPSI := &PSI{
		CPU:    Pressure{Some: PressureData{TotalNanos: 10000}, Full: PressureData{TotalNanos: 5000}},
		Memory: Pressure{Some: PressureData{TotalNanos: 2000000, Avg10: 1.5, Avg60: 0.75, Avg300: 0.25}, Full: PressureData{TotalNanos: 1000000, Avg10: 0.5, Avg60: 0.25, Avg300: 0.1}},
		IO:     Pressure{Some: PressureData{TotalNanos: 7000}, Full: PressureData{TotalNanos: 3000}},
	}
	if st.PSI == nil || *st.PSI != *wantPSI {
		t.Errorf("psi %+v, want %+v", st.PSI, wantPSI)
	}
	// cpu.weight converts back to shares, the inverse of runc's mapping.
	wantSpec := Spec{CPUShares: 1024, CPUPeriod: 100000, CPUQuota: 20000, MemoryLimit: 67108864, MemorySwapLimit: 2 * 67108864}
	if st.Spec != wantSpec {
		t.Errorf("spec %+v, want %+v", st.Spec, wantSpec)
	}

	// Unlimited v2 values ("max") read as 0 (none).
	fixture(t, dir, map[string]string{"memory.max": "max\n", "memory.swap.max": "max\n", "cpu.max": "max 100000\n", "pids.max": "max\n"})
	st, err = statsV2(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.Limit != 0 || st.Memory.Available != 0 || st.Spec.MemorySwapLimit != 0 || st.Spec.CPUQuota != -1 || st.Pids.Limit != 0 {
		t.Errorf("unlimited: %+v %+v %+v", st.Memory, st.Spec, st.Pids)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := statsV2(dir); !errors.Is(err, ErrNoCgroup) {
		t.Errorf("missing cgroup: %v", err)
	}
}

func TestWorkingSet(t *testing.T) {
	for _, c := range []struct{ usage, inactive, want uint64 }{{100, 30, 70}, {100, 100, 0}, {100, 200, 0}, {0, 0, 0}} {
		if got := workingSet(c.usage, c.inactive); got != c.want {
			t.Errorf("workingSet(%d, %d) = %d, want %d", c.usage, c.inactive, got, c.want)
		}
	}
}

// countProcesses reads /proc: this test process has threads and open
// descriptors; a pid that does not exist is skipped.
func TestCountProcesses(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps := countProcesses("/proc", []int{os.Getpid(), 1 << 30})
	if ps.Processes != 1 || ps.Threads < 1 || ps.FileDescriptors < 4 {
		t.Errorf("process stats %+v", ps)
	}
}

// weightToShares undoes the shares→weight conversion libcontainer applies,
// for the values kubelet sends (2 for BestEffort, 1024 per CPU, 102 for
// 100m).
func TestWeightToSharesInvertsRunc(t *testing.T) {
	for _, shares := range []uint64{2, 102, 512, 1024, 2048, 262144} {
		w := cgroups.ConvertCPUSharesToCgroupV2Value(shares)
		back := weightToShares(w)
		if cgroups.ConvertCPUSharesToCgroupV2Value(back) != w {
			t.Errorf("shares %d -> weight %d -> shares %d -> weight %d", shares, w, back, cgroups.ConvertCPUSharesToCgroupV2Value(back))
		}
	}
	if got := weightToShares(100); got != 1024 {
		t.Errorf("weight 100: %d shares, want 1024", got)
	}
}
