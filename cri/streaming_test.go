package cri

import (
	"context"
	"testing"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// The resize relay hands sizes on while its request lasts; once the request
// has ended (an exec that failed before it read any) it drops them, so
// neither it nor the streaming package's sender blocks, and it ends when
// the package closes its channel.
func TestResizeRelayNeverBlocksAfterItsRequest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	resize := make(chan remotecommand.TerminalSize)
	s := streams(ctx, nil, nil, nil, true, resize)
	send := func(what string) {
		t.Helper()
		select {
		case resize <- remotecommand.TerminalSize{Width: 80, Height: 24}:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the relay does not take sizes", what)
		}
	}
	send("first size")
	select {
	case sz := <-s.Resize:
		if sz.Width != 80 || sz.Height != 24 {
			t.Fatalf("relayed %+v", sz)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the size was not relayed")
	}
	// Nobody reads s.Resize any more: the request ended.
	send("size in flight")
	cancel()
	for i := range 3 {
		send("size after the request " + string(rune('0'+i)))
	}
	close(resize)
	select {
	case _, ok := <-s.Resize:
		for ok {
			_, ok = <-s.Resize
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relay outlived the package's channel")
	}
}
