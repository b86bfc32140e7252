package oci

import (
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crid-dev/crid/oci/protocol"
)

// CreateRequest describes a container to create.
type CreateRequest struct {
	ID string
	// Spec is complete: an absolute Root.Path on a mounted rootfs, an
	// absolute Linux.CgroupsPath, namespace paths to join.
	Spec *specs.Spec
	// LogPath receives stdout and stderr in the CRI log format; empty
	// discards them.
	LogPath string
	// MaxLogLine splits longer lines; 0 is the monitor's default.
	MaxLogLine int
	Stdin      bool
	StdinOnce  bool
	TTY        bool
}

// Status is a container's lifecycle state.
type Status string

// Statuses.
const (
	Created Status = protocol.StatusCreated
	Running Status = protocol.StatusRunning
	Stopped Status = protocol.StatusStopped
)

// State describes a container.
type State struct {
	ID        string
	Status    Status
	Pid       int
	CreatedAt time.Time
	StartedAt time.Time // zero until started
	LogPath   string
	Message   string // what is wrong with a running container, for its CRI status
	Exit      *Exit  // set once stopped
}

// Exit is how a container's init ended.
type Exit struct {
	// Code is the exit status, or 128+signal when killed by a signal.
	Code       int
	Signal     syscall.Signal // 0 unless killed by a signal
	OOMKilled  bool
	FinishedAt time.Time
	// Unknown: the exit could not be observed (Code is then 255).
	Unknown bool
}

// ExecRequest runs a command in a running container.
type ExecRequest struct {
	ID      string
	Process *specs.Process
	Stdin   []byte
	// Timeout kills the process when exceeded; 0 means none (the
	// context's deadline still applies).
	Timeout time.Duration
	// MaxOutput bounds each output stream; 0 means 16 MiB.
	MaxOutput int
}

// ExecResult is an exec's outcome.
type ExecResult struct {
	Exit      Exit
	Stdout    []byte
	Stderr    []byte
	TimedOut  bool
	Truncated bool
}

func exitFrom(e *protocol.Exit) *Exit {
	if e == nil {
		return nil
	}
	return &Exit{Code: e.Code, Signal: syscall.Signal(e.Signal), OOMKilled: e.OOMKilled, FinishedAt: e.At, Unknown: e.Unknown}
}

func stateFrom(s protocol.State) State {
	return State{
		ID:        s.ID,
		Status:    Status(s.Status),
		Pid:       s.Pid,
		CreatedAt: s.CreatedAt,
		StartedAt: s.StartedAt,
		LogPath:   s.LogPath,
		Message:   s.Message,
		Exit:      exitFrom(s.Exit),
	}
}
