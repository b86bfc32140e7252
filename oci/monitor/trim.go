package monitor

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
)

// trimDelay is the quiet time after which the monitor returns free heap
// pages to the kernel.
const trimDelay = time.Second

// Every container start allocates a few hundred kB that is garbage once it
// returns (spec conversion, bootstrap data, JSON); Go's scavenger gives
// such pages back only slowly, and the monitor's memory counts against every
// pod on the node. So after a burst of work, once things are quiet, the
// monitor collects and releases them: one GC per burst, not per request.
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
			timer.Reset(trimDelay)
		case <-timer.C:
			debug.FreeOSMemory()
		}
	}
}
