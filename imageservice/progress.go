package imageservice

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/crid-dev/crid/metrics"
)

// ErrNoProgress is the cause of a pull cancelled for want of bytes.
type ErrNoProgress struct {
	Registry string
	Timeout  time.Duration
}

func (e *ErrNoProgress) Error() string {
	return fmt.Sprintf("pull from registry %s made no progress for %s", e.Registry, e.Timeout)
}

// watchdog cancels a context when no progress is reported for a while:
// kubelet sets no deadline on PullImage, so a stalled registry would
// otherwise hold a pull forever.
type watchdog struct {
	timer   *time.Timer
	timeout time.Duration
}

// withWatchdog returns a context cancelled with ErrNoProgress when touch is
// not called for timeout, and a stop function that must be called.
func withWatchdog(ctx context.Context, timeout time.Duration, registry string) (context.Context, *watchdog, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{timeout: timeout}
	w.timer = time.AfterFunc(timeout, func() { cancel(&ErrNoProgress{Registry: registry, Timeout: timeout}) })
	return ctx, w, func() {
		w.timer.Stop()
		cancel(nil)
	}
}

func (w *watchdog) touch() { w.timer.Reset(w.timeout) }

// reader wraps r so every byte read counts as progress, and in the pull
// bytes metric.
func (w *watchdog) reader(r io.Reader) io.Reader { return &progressReader{r: r, w: w} }

type progressReader struct {
	r io.Reader
	w *watchdog
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.w.touch()
		metrics.PullBytes(n)
	}
	return n, err
}

// cause returns the reason ctx ended, preferring ErrNoProgress over the
// bare context.Canceled a stalled read reports.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && c != context.Canceled && ctx.Err() != nil {
		if _, ok := c.(*ErrNoProgress); ok {
			return c
		}
	}
	return err
}
