package oci

import (
	"context"
	"errors"
	"time"

	"k8s.io/klog/v2"
)

// pollInterval is how often the watcher looks at every live container when
// the monitor cannot report exits (an older monitor without the exits
// method, still running from before an upgrade).
const pollInterval = 2 * time.Second

// watchExits keeps the records of containers that exit on their own up to
// date (and publishes their STOPPED events) without anyone asking. It holds
// one exits request on the monitor at a time, whatever the number of
// containers: a wait per container would take one of the monitor's bounded
// request slots each. After a Reset (the first call, a monitor restart, or
// falling behind) it refreshes every live container, which also covers
// exits that happened while the daemon was down. It returns when ctx ends.
func (c *Containers) watchExits(ctx context.Context) {
	var (
		epoch string
		seq   uint64
		poll  bool
	)
	for backoff := 100 * time.Millisecond; ctx.Err() == nil; {
		if poll {
			c.refreshLive(ctx)
			if !sleep(ctx, pollInterval) {
				return
			}
			continue
		}
		b, err := c.rt.WaitExits(ctx, epoch, seq)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrInvalidArgument) {
			klog.InfoS("crid-monitor does not report exits; polling containers instead", "interval", pollInterval, "err", err)
			poll = true
			continue
		}
		if err != nil {
			klog.ErrorS(err, "Watching container exits", "retryIn", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			epoch = "" // look at everything once the monitor answers
			continue
		}
		backoff = 100 * time.Millisecond
		if b.Reset {
			c.refreshLive(ctx)
		} else {
			c.refreshIDs(ctx, b.IDs)
		}
		epoch, seq = b.Epoch, b.Seq
	}
}

// refreshLive refreshes every container not known to have exited.
func (c *Containers) refreshLive(ctx context.Context) {
	c.mu.Lock()
	var live []string
	for id, ctr := range c.m {
		if ctr.State != StateExited {
			live = append(live, id)
		}
	}
	c.mu.Unlock()
	c.refreshIDs(ctx, live)
}

// refreshIDs refreshes the named containers crid manages; other IDs (infra
// containers, containers being created or removed) are skipped.
func (c *Containers) refreshIDs(ctx context.Context, ids []string) {
	for _, id := range ids {
		c.mu.Lock()
		ctr := c.m[id]
		skip := ctr == nil || c.busy[id] || ctr.State == StateExited
		c.mu.Unlock()
		if skip {
			continue
		}
		if _, err := c.refresh(ctx, ctr); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Reading the state of a container", "containerID", id)
		}
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
