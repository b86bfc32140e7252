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
// beside this one and allocate and free heap of their own at any moment
// (two CI runs saw 2.8 and 3.4 MB free again right after FreeOSMemory), so
// 16 MB are dropped and what is checked is the fall FreeOSMemory causes:
// at least half of them, on the best of a few calls; noise of a few MB
// cannot make up for a heapFree that does not follow the returns.
func TestHeapFree(t *testing.T) {
	const dropped = 16 << 20
	garbage(dropped)
	runtime.GC()
	freed := heapFree()
	if freed < dropped/2 {
		t.Fatalf("heap free: %d kB after dropping %d MB and a GC, want at least half of it", freed>>10, dropped>>20)
	}
	after := freed
	for range 5 {
		debug.FreeOSMemory()
		if after = heapFree(); freed-min(after, freed) >= dropped/2 {
			return
		}
	}
	t.Fatalf("heap free: %d kB after dropping %d MB and a GC, still %d kB after FreeOSMemory (want a fall of at least %d kB)",
		freed>>10, dropped>>20, after>>10, dropped>>11)
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
