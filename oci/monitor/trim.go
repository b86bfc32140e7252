package monitor

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"syscall"
	"time"
)

// trimDelay is the quiet time after which the monitor returns free heap
// pages to the kernel.
const trimDelay = time.Second

// trimCheck is how often the monitor looks for free heap pages it still
// holds; more than trimSlack of them, once it has been quiet for
// trimDelay, are returned too.
const (
	trimCheck = 2 * time.Second
	trimSlack = 256 << 10
)

// Every container start allocates a few hundred kB that is garbage once it
// returns (spec conversion, bootstrap data, JSON); Go's scavenger gives
// such pages back only slowly, and the monitor's memory counts against every
// pod on the node. So after a burst of work, once things are quiet, the
// monitor collects and releases them: one GC per burst, not per request.
//
// A GC after that trim (the runtime's forced one every two minutes, or one
// that requests which are not bursts trigger) frees pages again, and the
// scavenger keeps them while the heap is under its 4 MB minimum goal, which
// the monitor's always is: so the monitor also trims whenever it finds more
// than trimSlack free while quiet. An idle monitor thus costs the same
// whenever it is measured (in the soak its PSS otherwise varied by 350 kB
// between two idle samples).
type trimmer struct{ kick chan struct{} }

func newTrimmer() *trimmer { return &trimmer{kick: make(chan struct{}, 1)} }

// touch notes that work happened.
func (t *trimmer) touch() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run trims trimDelay after the last touch, until ctx ends. SIGUSR1 logs
// the monitor's memory statistics, to tell what it costs per container.
func (t *trimmer) run(ctx context.Context, log *slog.Logger, containers func() int) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	check := time.NewTicker(trimCheck)
	defer check.Stop()
	lastWork := time.Now()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for {
		select {
		case <-usr1:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			log.Info("Memory", "containers", containers(), "goroutines", runtime.NumGoroutine(),
				"heapAlloc", ms.HeapAlloc, "heapInuse", ms.HeapInuse, "heapIdle", ms.HeapIdle, "heapReleased", ms.HeapReleased,
				"stackInuse", ms.StackInuse, "sys", ms.Sys, "heapObjects", ms.HeapObjects)
		case <-ctx.Done():
			timer.Stop()
			return
		case <-t.kick:
			lastWork = time.Now()
			timer.Reset(trimDelay)
		case <-timer.C:
			debug.FreeOSMemory()
		case now := <-check.C:
			if shouldTrim(now.Sub(lastWork), heapFree()) {
				debug.FreeOSMemory()
			}
		}
	}
}

// shouldTrim says whether free heap bytes held after idle time of quiet
// are worth a GC to return: not during a burst, nor for a few pages.
func shouldTrim(idle time.Duration, free uint64) bool {
	return idle >= trimDelay && free > trimSlack
}

// heapFree is the heap memory that is free but not yet returned to the
// kernel (runtime/metrics: cheap, no stop-the-world as ReadMemStats).
func heapFree() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
