package cgroupmgr

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// CPUUsage reads what Stats reports as CPU.UsageNanos: a process that
// burns CPU in a cgroup is counted by both, the one-file read in order
// with the full one; a gone cgroup is ErrNoCgroup.
func TestCPUUsageAgreesWithStats(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	m, p := testCgroup(t)
	if err := m.Create(p); err != nil {
		t.Fatal(err)
	}
	// A shell that is moved into the cgroup, then burns some CPU and exits.
	burn := exec.Command("sh", "-c", `read go; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done`)
	in, err := burn.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := burn.Start(); err != nil {
		t.Fatal(err)
	}
	mgr, err := m.manager(p)
	if err == nil {
		err = mgr.Apply(burn.Process.Pid)
	}
	if err != nil {
		_ = burn.Process.Kill()
		_ = burn.Wait()
		t.Fatal(err)
	}
	_, _ = in.Write([]byte("go\n"))
	_ = in.Close()
	if err := burn.Wait(); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	n, at, err := m.CPUUsage(p)
	if err != nil || n == 0 || at.Before(before) {
		t.Fatalf("CPUUsage: %d at %v, %v", n, at, err)
	}
	st, err := m.Stats(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPU.UsageNanos != n {
		t.Fatalf("CPUUsage %d, Stats %d: nothing runs there any more, they must agree", n, st.CPU.UsageNanos)
	}
	if err := m.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.CPUUsage(p); !errors.Is(err, ErrNoCgroup) {
		t.Fatalf("CPUUsage of a removed cgroup: %v, want ErrNoCgroup", err)
	}
}

func TestReadUsageV2(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cpu.stat")
	if err := os.WriteFile(f, []byte("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := readUsageV2(f); err != nil || n != 1234567*1000 {
		t.Fatalf("readUsageV2: %d, %v", n, err)
	}
	if err := os.WriteFile(f, []byte("user_usec "+strconv.Itoa(1)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readUsageV2(f); err == nil {
		t.Fatal("a cpu.stat without usage_usec read as fine")
	}
}
