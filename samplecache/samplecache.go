// Package samplecache keeps the latest sample of each key (a cgroup's
// stats, a writable layer's usage, a pod's interface counters) and retakes
// it in the background while someone keeps asking for it. kubelet lists
// the stats of every pod and container every few seconds; sampling a
// thousand cgroups, walking a thousand writable layers and entering a
// thousand network namespaces on each call took over a second per list
// at 1,000 pods. With the cache a list costs a map lookup per item, and
// the samples cost one pass per period whatever the number of callers.
package samplecache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Cache holds the samples of one kind.
type Cache[V any] struct {
	take   func(key string) (V, error)
	period time.Duration
	linger time.Duration
	now    func() time.Time

	mu sync.Mutex
	m  map[string]*entry[V]
}

type entry[V any] struct {
	v     V
	err   error
	taken time.Time // when the sample was taken
	asked time.Time // the last Get or Fresh
	// settled: what the key names no longer changes (an exited
	// container), the sample is kept as it is; settle: a Get said so,
	// one more take settles it.
	settled, settle bool
}

// New returns a cache whose samples are retaken once they are period old,
// by take. A period of 0 or less keeps nothing: every Get takes a sample.
func New[V any](period time.Duration, take func(key string) (V, error)) *Cache[V] {
	return &Cache[V]{
		take:   take,
		period: period,
		// Long enough to span a few of kubelet's stats cycles (10 s), so
		// that a key stays warm between them.
		linger: max(6*period, time.Minute),
		now:    time.Now,
		m:      map[string]*entry[V]{},
	}
}

// Get returns key's latest sample and when it was taken; a key seen for
// the first time is sampled now. settled says that what key names no
// longer changes: the sample is retaken once more, then kept.
func (c *Cache[V]) Get(key string, settled bool) (V, time.Time, error) {
	if c.period <= 0 {
		return c.Fresh(key, settled)
	}
	c.mu.Lock()
	if e := c.m[key]; e != nil && e.settled && !settled {
		// Alive again: a key reused by a new object (a pod sandbox made
		// again in its pod's cgroup). What was kept is not its sample.
		e.settled = false
		c.mu.Unlock()
		return c.Fresh(key, false)
	}
	if e := c.m[key]; e != nil {
		e.asked = c.now()
		if settled && !e.settled {
			e.settle = true
		}
		v, at, err := e.v, e.taken, e.err
		c.mu.Unlock()
		return v, at, err
	}
	c.mu.Unlock()
	return c.Fresh(key, settled)
}

// Fresh samples key now, keeps the sample, and returns it.
func (c *Cache[V]) Fresh(key string, settled bool) (V, time.Time, error) {
	at := c.now()
	v, err := c.take(key)
	if c.period > 0 {
		c.store(key, v, err, at, settled, true)
	}
	return v, at, err
}

// store keeps a sample unless a newer one is there already; asked marks
// key as wanted now.
func (c *Cache[V]) store(key string, v V, err error, taken time.Time, settled, asked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil {
		if !asked {
			return // forgotten while it was being taken
		}
		e = &entry[V]{}
		c.m[key] = e
	}
	if asked {
		e.asked = taken
	}
	if taken.Before(e.taken) {
		return
	}
	e.v, e.err, e.taken = v, err, taken
	if settled {
		e.settled, e.settle = true, false
	}
}

// Warm takes, workers at a time, the samples of the keys it does not hold
// yet, and keeps them: a list's first call (after a restart, or a pause
// longer than the linger) would otherwise take every one of them in turn.
func (c *Cache[V]) Warm(keys []string, workers int) {
	if c.period <= 0 {
		return
	}
	var missing []string
	c.mu.Lock()
	for _, k := range keys {
		if c.m[k] == nil {
			missing = append(missing, k)
		}
	}
	c.mu.Unlock()
	if len(missing) < 2 || workers < 2 {
		return // the Gets take them
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(workers, len(missing)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(missing)); i = next.Add(1) - 1 {
				c.Fresh(missing[i], false)
			}
		})
	}
	wg.Wait()
}

// Len is how many keys the cache holds.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Refresher is a cache's background pass.
type Refresher interface {
	Refresh(ctx context.Context)
}

// Run makes a pass of every cache, one after the other, a quarter period
// apart, until ctx ends: each retakes its samples that are a period old
// and were asked for within the last linger (a minute, or six periods),
// and forgets the others. Nothing asked for means nothing done: an idle
// node pays only the ticks. One goroutine for all caches: a pass at 1,000
// pods costs part of one core, never more.
func Run(ctx context.Context, period time.Duration, caches ...Refresher) {
	if period <= 0 {
		return
	}
	t := time.NewTicker(period / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, c := range caches {
			c.Refresh(ctx)
		}
	}
}

// Refresh is one pass of Run: it retakes what is due, one key after the
// other.
func (c *Cache[V]) Refresh(ctx context.Context) {
	type due struct {
		key    string
		settle bool
	}
	now := c.now()
	var keys []due
	c.mu.Lock()
	for k, e := range c.m {
		switch {
		case now.Sub(e.asked) > c.linger:
			delete(c.m, k)
		case e.settle || (!e.settled && now.Sub(e.taken) >= c.period):
			keys = append(keys, due{k, e.settle})
		}
	}
	c.mu.Unlock()
	for _, d := range keys {
		if ctx.Err() != nil {
			return
		}
		at := c.now()
		v, err := c.take(d.key)
		c.store(d.key, v, err, at, d.settle, false)
	}
}
