package monitor

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crid-dev/crid/oci/protocol"
)

func TestExitLog(t *testing.T) {
	var l exitLog
	ids, seq, reset, wait := l.since(0)
	if ids != nil || seq != 0 || reset || wait == nil {
		t.Fatalf("empty log: %v %d %v %v", ids, seq, reset, wait)
	}
	l.add("a")
	select {
	case <-wait:
	default:
		t.Fatal("add did not wake the waiter")
	}
	l.add("b")
	if ids, seq, reset, _ := l.since(0); !slices.Equal(ids, []string{"a", "b"}) || seq != 2 || reset {
		t.Fatalf("since 0: %v %d %v", ids, seq, reset)
	}
	if ids, _, _, _ := l.since(1); !slices.Equal(ids, []string{"b"}) {
		t.Fatalf("since 1: %v", ids)
	}
	if _, _, reset, _ := l.since(7); !reset {
		t.Fatal("a position ahead of the log must reset")
	}
	for i := range maxRecentExits + 10 {
		l.add(fmt.Sprint(i))
	}
	if _, _, reset, _ := l.since(1); !reset {
		t.Fatal("a position the log forgot must reset")
	}
	_, seq, _, _ = l.since(0)
	if ids, _, reset, _ := l.since(seq - 3); reset || len(ids) != 3 || ids[2] != fmt.Sprint(maxRecentExits+9) {
		t.Fatalf("recent: %v %v", ids, reset)
	}
	// What the log holds stays bounded however many exits go by: it is
	// a window, not a history.
	for i := range 20 * maxRecentExits {
		l.add(fmt.Sprint(i))
		if len(l.recent) > maxRecentExits || cap(l.recent) > 2*maxRecentExits {
			t.Fatalf("after %d more exits the log holds %d IDs (capacity %d), bound %d", i+1, len(l.recent), cap(l.recent), maxRecentExits)
		}
	}
}

func TestWaitExits(t *testing.T) {
	m := &Monitor{startedAt: time.Now()}
	r, err := m.waitExits(context.Background(), protocol.ExitsRequest{})
	if err != nil || !r.Reset || r.Epoch == "" {
		t.Fatalf("first call: %+v %v", r, err)
	}
	got := make(chan *protocol.ExitsReply, 1)
	go func() {
		r, _ := m.waitExits(context.Background(), protocol.ExitsRequest{Epoch: r.Epoch, After: r.Seq})
		got <- r
	}()
	time.Sleep(20 * time.Millisecond)
	m.exits.add("c1")
	select {
	case r := <-got:
		if r.Reset || !slices.Equal(r.IDs, []string{"c1"}) || r.Seq != 1 {
			t.Fatalf("after an exit: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitExits did not return after an exit")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.waitExits(ctx, protocol.ExitsRequest{Epoch: r.Epoch, After: 1}); err == nil {
		t.Fatal("a cancelled wait must fail")
	}
	if r, _ := m.waitExits(context.Background(), protocol.ExitsRequest{Epoch: "other", After: 1}); !r.Reset {
		t.Fatal("another monitor's epoch must reset")
	}
}
