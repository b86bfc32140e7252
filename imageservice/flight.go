package imageservice

import (
	"context"
	"sync"

	"github.com/crid-dev/crid/panicguard"
)

// flightGroup runs one call per key at a time and shares its result with
// every caller that asks for the same key meanwhile. Unlike a plain
// singleflight, the call runs on its own context, cancelled only when every
// caller waiting for it has gone: one impatient client cannot fail the
// others' pull, and the last one leaving stops the download.
type flightGroup[V any] struct {
	mu sync.Mutex
	m  map[string]*flight[V]
}

type flight[V any] struct {
	done    chan struct{}
	val     V
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Do returns fn's result for key, joining a call in flight if there is one.
func (g *flightGroup[V]) Do(ctx context.Context, key string, fn func(context.Context) (V, error)) (V, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight[V]{}
	}
	f, ok := g.m[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight[V]{done: make(chan struct{}), cancel: cancel}
		g.m[key] = f
		go func() {
			defer cancel()
			f.val, f.err = guarded(fctx, key, fn)
			g.mu.Lock()
			if g.m[key] == f {
				delete(g.m, key)
			}
			g.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody wants the result: stop the call, and let the next
			// caller start afresh rather than join a dying flight.
			f.cancel()
			if g.m[key] == f {
				delete(g.m, key)
			}
		}
		g.mu.Unlock()
		var zero V
		return zero, ctx.Err()
	}
}

// guarded runs fn, turning a panic into the error of this call alone: the
// flight's goroutine is the pull's, and nobody else would recover it.
func guarded[V any](ctx context.Context, key string, fn func(context.Context) (V, error)) (v V, err error) {
	defer panicguard.Recover("pull "+key, &err)
	return fn(ctx)
}
