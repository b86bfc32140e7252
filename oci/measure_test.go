package oci

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crid-dev/crid/oci/protocol"
)

// TestMeasure reports the monitor's memory, idle and with 20 sleeping
// containers, and create+start+wait timings of `true`. It asserts nothing
// about the numbers (they belong in benchmarks): set CRID_MEASURE=1.
func TestMeasure(t *testing.T) {
	if os.Getenv("CRID_MEASURE") == "" {
		t.Skip("set CRID_MEASURE=1 to measure")
	}
	e := newEnv(t)
	mon := e.r.MonitorPid()
	time.Sleep(3 * time.Second)
	idle := smaps(t, mon)
	const n = 20
	// One container first: it pages in the monitor's create path once,
	// which is not a per-container cost.
	for i := 0; i <= n; i++ {
		id := fmt.Sprintf("sleep%d", i)
		e.create(id, e.spec(id, "sleep", "1000"))
		if err := e.r.Start(ctx(t), id); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			time.Sleep(3 * time.Second)
			syscall.Kill(mon, syscall.SIGUSR1)
			one := smaps(t, mon)
			t.Logf("monitor idle: Rss %d kB Pss %d kB (Anonymous %d kB); with 1 container: Rss %d kB Pss %d kB (Anonymous %d kB)",
				idle["Rss"], idle["Pss"], idle["Anonymous"], one["Rss"], one["Pss"], one["Anonymous"])
			idle = one
		}
	}
	time.Sleep(3 * time.Second)
	busy := smaps(t, mon)
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", mon))
	fdkinds := map[string]int{}
	for _, fd := range fds {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", mon, fd.Name()))
		if i := strings.IndexAny(l, ":["); i > 0 {
			l = l[:i]
		}
		fdkinds[l]++
	}
	t.Logf("monitor fds with %d containers: %d %v", n+1, len(fds), fdkinds)
	t.Logf("monitor with %d sleeping containers: Rss %d kB Pss %d kB (Anonymous %d kB); marginal Pss %d kB per container",
		n+1, busy["Rss"], busy["Pss"], busy["Anonymous"], (busy["Pss"]-idle["Pss"])/n)
	syscall.Kill(mon, syscall.SIGUSR1)
	time.Sleep(100 * time.Millisecond)
	if b, err := os.ReadFile(protocol.LogPath(e.opts.RunDir)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "msg=Memory") {
				t.Logf("monitor %s", l)
			}
		}
	}
	if os.Getenv("CRID_MEASURE") == "log" {
		b, _ := os.ReadFile(e.opts.RunDir + "/monitor.log")
		t.Logf("monitor log:\n%s", b)
		sm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", mon))
		t.Logf("smaps:\n%s", sm)
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", mon))
		t.Logf("status:\n%s", st)
	}
	for i := 0; i <= n; i++ {
		if err := e.r.Delete(ctx(t), fmt.Sprintf("sleep%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var create, start, wait, total, del []time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("true%d", i)
		t0 := time.Now()
		e.create(id, e.spec(id, "true"))
		t1 := time.Now()
		if err := e.r.Start(ctx(t), id); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		if x, err := e.r.Wait(ctx(t), id); err != nil || x.Code != 0 {
			t.Fatalf("%+v %v", x, err)
		}
		t3 := time.Now()
		if err := e.r.Delete(ctx(t), id); err != nil {
			t.Fatal(err)
		}
		t4 := time.Now()
		create, start, wait = append(create, t1.Sub(t0)), append(start, t2.Sub(t1)), append(wait, t3.Sub(t2))
		total, del = append(total, t3.Sub(t0)), append(del, t4.Sub(t3))
	}
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{{"create+start+wait", total}, {"  create", create}, {"  start", start}, {"  wait", wait}, {"delete", del}} {
		slices.Sort(s.d)
		t.Logf("%-18s min %6.1f ms  p50 %6.1f ms  max %6.1f ms", s.name, ms(s.d[0]), ms(s.d[len(s.d)/2]), ms(s.d[len(s.d)-1]))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func smaps(t *testing.T, pid int) map[string]int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[2] == "kB" {
			var v int
			fmt.Sscan(f[1], &v)
			out[strings.TrimSuffix(f[0], ":")] = v
		}
	}
	return out
}
