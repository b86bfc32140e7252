package panicguard

import (
	"errors"
	"strings"
	"testing"
)

func TestRecoverTurnsPanicIntoError(t *testing.T) {
	run := func() (err error) {
		defer Recover("test step", &err)
		var m map[string]int
		//lint:ignore SA5000 the nil-map write is the runtime panic under test
		m["x"] = 1
		return nil
	}
	err := run()
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "test step") {
		t.Fatalf("err = %v, want ErrPanic naming the step", err)
	}
}

func TestRecoverKeepsErrorWithoutPanic(t *testing.T) {
	want := errors.New("plain")
	run := func() (err error) {
		defer Recover("test step", &err)
		return want
	}
	if err := run(); err != want {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func TestGoEndsOnlyItsGoroutine(t *testing.T) {
	done := make(chan struct{})
	Go("relay", func() {
		defer close(done)
		panic("boom")
	})
	<-done // the process is still here: the panic was recovered
}
