// Package panicguard turns a panic in a goroutine that works for one
// request into an error for that request. A bug, or an input nobody
// foresaw, then fails its own call and is logged once with its stack; the
// daemon, and every other pod on the node, go on. Go cannot recover a
// panic from another goroutine, so every goroutine started on behalf of a
// request defers Recover (or is started with Go) itself.
package panicguard

import (
	"errors"
	"fmt"
	"runtime/debug"

	"k8s.io/klog/v2"
)

// ErrPanic marks an error that was a panic: callers map it to an internal
// error, never to the client's fault.
var ErrPanic = errors.New("internal error")

// Recover must be deferred directly by the goroutine it guards:
//
//	defer panicguard.Recover("unpack layer", &err)
//
// A panic is logged with its stack and stored in *err as an error wrapping
// ErrPanic that names what; without a panic *err is left as it is.
func Recover(what string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	e := fmt.Errorf("%w: panic in %s: %v", ErrPanic, what, r)
	klog.ErrorS(e, "Recovered from a panic", "in", what, "stack", string(debug.Stack()))
	if err != nil {
		*err = e
	}
}

// Go runs fn on a goroutine of its own that has no caller to report to
// (a relay, a watcher): a panic in it is logged with its stack and ends
// that goroutine only. The owner learns of the end the way it learns of
// any other end of fn (a closed channel, a closed connection).
func Go(what string, fn func()) {
	go func() {
		defer Recover(what, nil)
		fn()
	}()
}
