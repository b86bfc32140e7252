package events

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func ev(i int) Event {
	return Event{Type: ContainerStarted, ContainerID: fmt.Sprint(i), SandboxID: "pod"}
}

func TestOrderPerSubscriber(t *testing.T) {
	b := NewBroadcaster()
	subs := []*Subscription{b.Subscribe("a", 1000), b.Subscribe("b", 1000)}
	for i := range 500 {
		b.Publish(ev(i))
	}
	for _, s := range subs {
		for i := range 500 {
			e := <-s.Events()
			if e.ContainerID != fmt.Sprint(i) || e.At.IsZero() {
				t.Fatalf("%s: event %d is %+v", s.name, i, e)
			}
		}
		s.Close()
		if _, open := <-s.Events(); open || s.Err() != nil {
			t.Fatalf("after Close: open=%v err=%v", open, s.Err())
		}
	}
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers left", n)
	}
}

// A subscriber that does not read is dropped once its buffer is full; the
// publisher never waits and the others keep every event.
func TestSlowSubscriberDropped(t *testing.T) {
	b := NewBroadcaster()
	slow := b.Subscribe("slow", 4)
	fast := b.Subscribe("fast", 100)
	start := time.Now()
	for i := range 10 {
		b.Publish(ev(i))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("publishing to a stuck subscriber took %s", d)
	}
	var got []string
	for e := range slow.Events() {
		got = append(got, e.ContainerID)
	}
	if len(got) != 4 || got[0] != "0" || got[3] != "3" || !errors.Is(slow.Err(), ErrDropped) {
		t.Fatalf("slow subscriber got %v, err %v", got, slow.Err())
	}
	if len(fast.Events()) != 10 || b.Subscribers() != 1 {
		t.Fatalf("fast subscriber has %d events; %d subscribers", len(fast.Events()), b.Subscribers())
	}
	slow.Close() // after a drop: harmless
	b.Close()
	if !errors.Is(fast.Err(), ErrClosed) {
		t.Fatalf("after broadcaster Close: %v", fast.Err())
	}
	late := b.Subscribe("late", 1)
	if _, open := <-late.Events(); open || !errors.Is(late.Err(), ErrClosed) {
		t.Fatalf("subscribe after Close: open=%v err=%v", open, late.Err())
	}
	b.Publish(ev(0)) // goes nowhere, does not panic
}

// Concurrent publishers and subscribers that come and go leave no
// goroutine behind (the broadcaster starts none) and every reader ends.
func TestConcurrentNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	b := NewBroadcaster()
	var wg sync.WaitGroup
	for r := range 8 {
		s := b.Subscribe(fmt.Sprint("reader", r), 1+r*50)
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := -1
			for e := range s.Events() {
				var n int
				fmt.Sscan(e.ContainerID, &n)
				if n <= last {
					t.Errorf("out of order: %d after %d", n, last)
				}
				last = n
				if r == 0 {
					time.Sleep(time.Millisecond) // slow: gets dropped
				}
				if r == 1 && n > 100 {
					s.Close()
				}
			}
		}()
	}
	var pub sync.Mutex
	next := 0
	var pw sync.WaitGroup
	for range 4 {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for range 250 {
				// Numbers are taken and published under one lock, so the
				// order every reader sees must be increasing.
				pub.Lock()
				b.Publish(ev(next))
				next++
				pub.Unlock()
			}
		}()
	}
	pw.Wait()
	b.Close()
	wg.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines before, %d after", before, n)
	}
}
