package samplecache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// counter is a take function that counts its calls per key and returns
// the count as the sample.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *counter) take(key string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[key]++
	if key == "bad" {
		return 0, errors.New("unreadable")
	}
	return c.calls[key], nil
}

func (c *counter) n(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[key]
}

func newTestCache(period time.Duration) (*Cache[int], *counter, *time.Time) {
	cnt := &counter{}
	c := New(period, cnt.take)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	return c, cnt, &now
}

func TestGetTakesOnceThenAnswersFromTheCache(t *testing.T) {
	c, cnt, now := newTestCache(10 * time.Second)
	v, at, err := c.Get("a", false)
	if err != nil || v != 1 || !at.Equal(*now) {
		t.Fatalf("first Get: %d %v %v", v, at, err)
	}
	*now = now.Add(30 * time.Second) // older than a period: still the cached one
	if v, _, _ := c.Get("a", false); v != 1 || cnt.n("a") != 1 {
		t.Fatalf("second Get: %d after %d takes, want the first sample and no take", v, cnt.n("a"))
	}
	if _, _, err := c.Get("bad", false); err == nil {
		t.Fatal("a failed take gives no error")
	}
	if _, _, err := c.Get("bad", false); err == nil || cnt.n("bad") != 1 {
		t.Fatalf("the failure is not kept: %v after %d takes", err, cnt.n("bad"))
	}
}

func TestRefreshRetakesWhatIsDueAndForgetsTheUnasked(t *testing.T) {
	c, cnt, now := newTestCache(10 * time.Second)
	ctx := context.Background()
	c.Get("a", false)
	c.Get("b", false)
	*now = now.Add(5 * time.Second)
	c.Refresh(ctx)
	if cnt.n("a") != 1 {
		t.Fatalf("retaken before a period: %d takes", cnt.n("a"))
	}
	*now = now.Add(5 * time.Second)
	c.Refresh(ctx)
	if v, at, _ := c.Get("a", false); v != 2 || !at.Equal(*now) {
		t.Fatalf("after a period: sample %d taken %v, want 2 taken %v", v, at, *now)
	}
	// b is not asked for again: past the linger it is forgotten.
	for range 7 {
		*now = now.Add(10 * time.Second)
		c.Get("a", false)
		c.Refresh(ctx)
	}
	if c.Len() != 1 {
		t.Fatalf("%d keys kept, want only a (b unasked for 70 s)", c.Len())
	}
	if n := cnt.n("b"); n > 7 {
		t.Fatalf("b taken %d times", n)
	}
	if v, _, _ := c.Get("b", false); v != cnt.n("b") {
		t.Fatalf("a forgotten key is not sampled anew: %d", v)
	}
}

func TestSettledIsTakenOnceMoreThenKept(t *testing.T) {
	c, cnt, now := newTestCache(10 * time.Second)
	ctx := context.Background()
	c.Get("a", false)
	c.Get("a", true) // it has exited since
	c.Refresh(ctx)   // not a period old, but due: the exit is not in it
	if cnt.n("a") != 2 {
		t.Fatalf("%d takes, want the settling one", cnt.n("a"))
	}
	for range 3 {
		*now = now.Add(20 * time.Second)
		c.Get("a", true)
		c.Refresh(ctx)
	}
	if cnt.n("a") != 2 {
		t.Fatalf("a settled sample was retaken: %d takes", cnt.n("a"))
	}
	// Fresh still samples it (a single stats call).
	if v, _, _ := c.Fresh("a", true); v != 3 {
		t.Fatalf("Fresh gave %d", v)
	}
	if v, _, _ := c.Get("a", true); v != 3 {
		t.Fatalf("Get after Fresh gave %d, want the fresh sample", v)
	}
}

func TestSettledKeyAliveAgainIsRetaken(t *testing.T) {
	c, cnt, now := newTestCache(10 * time.Second)
	c.Get("a", true) // a stopped pod's cgroup
	*now = now.Add(time.Second)
	if v, _, _ := c.Get("a", false); v != 2 {
		t.Fatalf("a settled key asked for as alive gave the kept sample %d", v)
	}
	*now = now.Add(20 * time.Second)
	c.Refresh(context.Background())
	if cnt.n("a") != 3 {
		t.Fatalf("%d takes: no longer settled, it is retaken when due", cnt.n("a"))
	}
}

func TestWarmTakesWhatIsMissingOnce(t *testing.T) {
	c, cnt, _ := newTestCache(10 * time.Second)
	c.Get("a", false)
	keys := []string{"a", "b", "c", "d", "bad"}
	c.Warm(keys, 3)
	for _, k := range keys {
		if cnt.n(k) != 1 {
			t.Fatalf("%s taken %d times, want once", k, cnt.n(k))
		}
	}
	c.Warm(keys, 3)
	for _, k := range keys {
		if v, _, _ := c.Get(k, false); cnt.n(k) != 1 || (k != "bad" && v != 1) {
			t.Fatalf("after a second Warm and a Get, %s taken %d times (sample %d)", k, cnt.n(k), v)
		}
	}
}

func TestZeroPeriodSamplesEveryCall(t *testing.T) {
	c, cnt, _ := newTestCache(0)
	c.Get("a", false)
	c.Get("a", false)
	if cnt.n("a") != 2 || c.Len() != 0 {
		t.Fatalf("%d takes, %d kept; want 2 and none", cnt.n("a"), c.Len())
	}
	done := make(chan struct{})
	go func() { Run(context.Background(), 0, c); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run with a period of 0 does not return")
	}
}

func TestRunEndsWithItsContext(t *testing.T) {
	cnt := &counter{}
	c := New(40*time.Millisecond, cnt.take)
	c.Get("a", false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, 40*time.Millisecond, c); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); cnt.n("a") < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no pass retook the sample in 10 s")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run outlives its context")
	}
}
