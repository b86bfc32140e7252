package monitor

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestShouldTrim(t *testing.T) {
	for _, c := range []struct {
		idle time.Duration
		free uint64
		want bool
	}{
		{0, 4 << 20, false}, // a burst goes on: no GC in its middle
		{trimDelay - time.Millisecond, 4 << 20, false},
		{trimDelay, 4 << 20, true},    // quiet, with pages to give back
		{time.Hour, trimSlack, false}, // a few pages are not worth a GC
		{time.Hour, trimSlack + 1, true},
	} {
		if got := shouldTrim(c.idle, c.free); got != c.want {
			t.Errorf("shouldTrim(%v, %d) = %v, want %v", c.idle, c.free, got, c.want)
		}
	}
}

// heapFree must see the pages a GC frees and FreeOSMemory returns, or the
// idle check would never (or always) trim. The package's other tests run
// beside this one and free heap of their own at any moment, so the return
// is checked on the best of a few FreeOSMemory calls, and as "most of what
// was freed is gone" (a CI run saw 2.8 MB left of 8.3 MB).
func TestHeapFree(t *testing.T) {
	garbage(8 << 20)
	runtime.GC()
	freed := heapFree()
	if freed <= trimSlack {
		t.Fatalf("heap free: %d kB after dropping 8 MB and a GC, want > %d kB", freed>>10, trimSlack>>10)
	}
	bound := max(trimSlack, freed/4)
	after := freed
	for range 5 {
		debug.FreeOSMemory()
		if after = heapFree(); after <= bound {
			return
		}
	}
	t.Fatalf("heap free: %d kB after dropping 8 MB and a GC, still %d kB after FreeOSMemory (want <= %d kB)",
		freed>>10, after>>10, bound>>10)
}

// sink keeps garbage's allocations on the heap.
var sink [][]byte

// garbage allocates n bytes in 16 kB pieces and drops them.
func garbage(n int) {
	for range n / (16 << 10) {
		sink = append(sink, make([]byte, 16<<10))
	}
	sink = nil
}
