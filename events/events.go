// Package events carries the lifecycle events of pods and containers from
// the packages that own them (oci, podsandbox) to whoever listens (the CRI's
// GetContainerEvents). A Broadcaster never blocks its publishers: each
// subscriber has a bounded buffer, and a subscriber that lets it fill up is
// dropped (its channel closed, a line logged) rather than slowing crid.
package events

import (
	"errors"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Type is what happened, in the CRI's four kinds.
type Type int

// Event types.
const (
	ContainerCreated Type = iota + 1
	ContainerStarted
	ContainerStopped
	ContainerDeleted
)

func (t Type) String() string {
	switch t {
	case ContainerCreated:
		return "created"
	case ContainerStarted:
		return "started"
	case ContainerStopped:
		return "stopped"
	case ContainerDeleted:
		return "deleted"
	}
	return "unknown"
}

// Event is one lifecycle change. A pod sandbox's own events have
// ContainerID equal to SandboxID, as containerd sends them.
type Event struct {
	Type        Type
	ContainerID string
	SandboxID   string
	At          time.Time
}

// Sandbox reports whether the event is about a pod sandbox itself.
func (e Event) Sandbox() bool { return e.ContainerID == e.SandboxID }

// Publisher is what the owners of pods and containers publish to. Publish
// must not block; a Broadcaster's does not, and a nil Publisher is allowed
// by the packages that take one.
type Publisher interface {
	Publish(Event)
}

// Why a subscription ended.
var (
	ErrDropped = errors.New("event subscriber dropped: it did not keep up with the events")
	ErrClosed  = errors.New("event broadcaster closed")
)

// Broadcaster fans events out to subscribers, in publish order.
type Broadcaster struct {
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewBroadcaster returns a broadcaster with no subscribers.
func NewBroadcaster() *Broadcaster {
	return &Broadcaster{subs: map[*Subscription]struct{}{}}
}

// Subscription receives the events published after it was made.
type Subscription struct {
	b    *Broadcaster
	name string
	ch   chan Event
	err  error // set, under b.mu, when ch is closed
}

// Subscribe adds a subscriber whose buffer holds up to buffer events
// (at least 1). name identifies it in the log line of a drop.
func (b *Broadcaster) Subscribe(name string, buffer int) *Subscription {
	s := &Subscription{b: b, name: name, ch: make(chan Event, max(buffer, 1))}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.err = ErrClosed
		close(s.ch)
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Publish hands e to every subscriber without waiting: a subscriber whose
// buffer is full is dropped.
func (b *Broadcaster) Publish(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			klog.InfoS("Dropping an event subscriber that does not keep up", "subscriber", s.name, "buffered", cap(s.ch))
			s.endLocked(ErrDropped)
		}
	}
}

// Subscribers counts the current subscribers.
func (b *Broadcaster) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends every subscription with ErrClosed; later subscriptions end at
// once and later publishes go nowhere.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		s.endLocked(ErrClosed)
	}
}

func (s *Subscription) endLocked(err error) {
	if _, ok := s.b.subs[s]; !ok {
		return
	}
	delete(s.b.subs, s)
	s.err = err
	close(s.ch)
}

// Events delivers the events; it is closed when the subscription ends
// (Close, a drop, or the broadcaster's Close), after which Err says why.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Err is nil while the subscription lasts or after the subscriber's own
// Close, ErrDropped after a drop, ErrClosed after the broadcaster's Close.
func (s *Subscription) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.err
}

// Close ends the subscription; it is idempotent.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.endLocked(nil)
}
