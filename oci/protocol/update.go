package protocol

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Methods for resource updates and exit notifications. Kept beside their
// messages; the daemon's exit watcher holds one exits call at a time, so
// watching every container costs one request slot, not one per container.
const (
	MethodUpdate = "update" // UpdateRequest → {}: new cgroup limits for a live container
	MethodExits  = "exits"  // ExitsRequest → ExitsReply, once an exit after the request's sequence is recorded
)

// UpdateRequest replaces the cgroup limits of a created or running
// container. A nil field of Resources keeps the current value.
type UpdateRequest struct {
	ID        string                `json:"id"`
	Resources *specs.LinuxResources `json:"resources"`
}

// ExitsRequest asks for the containers that exited after sequence After of
// the monitor instance named Epoch. An empty or different Epoch (a new
// monitor), or an After older than the monitor remembers, gets a reply
// with Reset at once: the caller must then look at every container.
type ExitsRequest struct {
	Epoch string `json:"epoch,omitempty"`
	After uint64 `json:"after"`
}

// ExitsReply lists the IDs of the containers whose exits were recorded
// after the request's sequence, up to Seq, in order.
type ExitsReply struct {
	Epoch string   `json:"epoch"`
	Seq   uint64   `json:"seq"`
	IDs   []string `json:"ids,omitempty"`
	Reset bool     `json:"reset,omitempty"`
}
