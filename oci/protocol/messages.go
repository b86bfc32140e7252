package protocol

import (
	"encoding/json"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Version changes whenever a message changes incompatibly; the daemon checks
// it in the hello reply and refuses a monitor that speaks another version.
const Version = 1

// Methods. Every request gets exactly one reply with the same ID; replies may
// come in any order, so a blocking wait never holds up other calls.
//
// Calls that wait for as long as a container or a process lives (wait, and
// the streamed exec's exec_start, exec_wait and exec_kill) are made on a
// connection of their own, one per waiting request, which the daemon closes
// when the request ends: however many execs are held open, the daemon's
// main connection keeps its request slots for lifecycle calls, and what a
// connection started (an exec) is killed and forgotten when it closes. The
// one long wait on the main connection is exits, a single outstanding
// request however many containers there are.
const (
	MethodHello      = "hello"       // → HelloReply
	MethodCreate     = "create"      // CreateRequest → CreateReply + stdio fds
	MethodStart      = "start"       // IDRequest → StartReply
	MethodKill       = "kill"        // KillRequest → {}
	MethodWait       = "wait"        // IDRequest → Exit, when the container has exited and its output is drained
	MethodState      = "state"       // IDRequest → State
	MethodDelete     = "delete"      // IDRequest → {}; kills a live container first; unknown IDs succeed
	MethodList       = "list"        // {} → ListReply
	MethodReopenLog  = "reopen_log"  // IDRequest → {}
	MethodAdopt      = "adopt"       // AdoptRequest + fds → {}: hands stdio back to a restarted monitor
	MethodAdoptDone  = "adopt_done"  // {} → {}: the daemon has handed back every pipe it kept; nothing more comes
	MethodStdio      = "stdio"       // IDRequest → StdioReply + fds: duplicates for a restarted daemon
	MethodCloseStdin = "close_stdin" // IDRequest → {}
	MethodExecStart  = "exec_start"  // ExecStartRequest → ExecStartReply + stdio fds; the exec lives as long as this connection
	MethodExecWait   = "exec_wait"   // ExecIDRequest → Exit, when the process has exited
	MethodExecKill   = "exec_kill"   // ExecKillRequest → {}
	MethodAttach     = "attach"      // IDRequest → {} + one output socket
)

// Stdio roles name the descriptors that travel with create, adopt and stdio
// messages, in order. The daemon keeps the read ends of the output pipes (and
// the write end of stdin) so that the pipes outlive a crashed monitor and no
// byte is lost: the container blocks on a full pipe until a new monitor
// drains it.
const (
	StdioStdin  = "stdin"  // write end of the container's stdin pipe
	StdioStdout = "stdout" // read end of the container's stdout pipe
	StdioStderr = "stderr" // read end of the container's stderr pipe
	StdioPTY    = "pty"    // the terminal's master side (output and input)
)

// Message is the envelope of every frame. A request has a Method; a reply
// has the request's ID and either a Body or an Error.
type Message struct {
	ID     uint64          `json:"id"`
	Method string          `json:"method,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Code classifies an error so the daemon can map it to a gRPC code.
type Code string

// Error codes.
const (
	CodeNotFound           Code = "not_found"
	CodeAlreadyExists      Code = "already_exists"
	CodeInvalidArgument    Code = "invalid_argument"
	CodeFailedPrecondition Code = "failed_precondition"
	CodeInternal           Code = "internal"
)

// Error is a failed reply.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// HelloReply identifies the monitor.
type HelloReply struct {
	Version   int       `json:"version"`
	Pid       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
}

// CreateRequest creates a container whose init stops before the user
// process (CRI CreateContainer).
type CreateRequest struct {
	ID   string      `json:"id"`
	Spec *specs.Spec `json:"spec"`
	// LogPath is the CRI log file; empty discards the output.
	LogPath string `json:"logPath,omitempty"`
	// MaxLogLine splits longer lines into partial (P) entries; 0 means
	// the monitor's default.
	MaxLogLine int  `json:"maxLogLine,omitempty"`
	Stdin      bool `json:"stdin,omitempty"`
	StdinOnce  bool `json:"stdinOnce,omitempty"`
	TTY        bool `json:"tty,omitempty"`
}

// CreateReply carries the init's pid; the frame carries duplicates of the
// stdio descriptors named by Stdio, for the daemon to keep.
type CreateReply struct {
	Pid           int      `json:"pid"`
	InitStartTime uint64   `json:"initStartTime"`
	Stdio         []string `json:"stdio,omitempty"`
}

// IDRequest names a container.
type IDRequest struct {
	ID string `json:"id"`
}

// StartReply says when the user process was released.
type StartReply struct {
	StartedAt time.Time `json:"startedAt"`
}

// KillRequest signals the container's init, or every process of its cgroup
// when All is set.
type KillRequest struct {
	ID     string `json:"id"`
	Signal int    `json:"signal"`
	All    bool   `json:"all,omitempty"`
}

// Container states.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// State describes one container.
type State struct {
	ID            string    `json:"id"`
	Status        string    `json:"status"`
	Pid           int       `json:"pid,omitempty"`
	InitStartTime uint64    `json:"initStartTime,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	LogPath       string    `json:"logPath,omitempty"`
	// Message says what is wrong with a running container that its
	// status alone cannot: its output no longer reaches its log.
	Message string `json:"message,omitempty"`
	// Exit is set once the container has stopped.
	Exit *Exit `json:"exit,omitempty"`
}

// Exit is how a container ended. It is also the durable exit file.
type Exit struct {
	// Code follows the shell convention containerd and CRI-O use:
	// the exit status, or 128+signal for a process killed by a signal.
	Code      int       `json:"code"`
	Signal    int       `json:"signal,omitempty"`
	OOMKilled bool      `json:"oomKilled,omitempty"`
	At        time.Time `json:"at"`
	// Unknown says the exit could not be observed (the init was reaped
	// by someone that did not record it); Code is then 255.
	Unknown bool `json:"unknown,omitempty"`
	// ReapedBy says which process recorded it: "monitor" or "daemon".
	ReapedBy string `json:"reapedBy,omitempty"`
}

// ListReply lists every container the monitor manages.
type ListReply struct {
	Containers []State `json:"containers"`
}

// AdoptRequest hands stdio descriptors (named by Stdio, in frame order) back
// to a monitor that lost them in a crash.
type AdoptRequest struct {
	ID    string   `json:"id"`
	Stdio []string `json:"stdio"`
}

// StdioReply names the duplicated descriptors that travel with it.
type StdioReply struct {
	Stdio []string `json:"stdio,omitempty"`
}

// ExecStartRequest starts a process in a running container and hands its
// stdio to the daemon (CRI Exec and ExecSync): the daemon copies between
// the client (or its output buffers) and the descriptors, and waits with
// exec_wait. Output never travels in frames, so no size of it can break
// the connection. The process belongs to the connection that started it:
// when that connection ends before exec_wait collected the exit, the
// monitor kills the process and forgets it.
type ExecStartRequest struct {
	ID      string         `json:"id"`
	Process *specs.Process `json:"process"` // Terminal asks for a pty
	Stdin   bool           `json:"stdin,omitempty"`
}

// ExecStartReply names the exec and the descriptors that travel with it
// (stdin, stdout, stderr pipes, or the pty master).
type ExecStartReply struct {
	ExecID string   `json:"execId"`
	Pid    int      `json:"pid"`
	Stdio  []string `json:"stdio"`
}

// ExecIDRequest names one streamed exec.
type ExecIDRequest struct {
	ID     string `json:"id"`
	ExecID string `json:"execId"`
}

// ExecKillRequest signals a streamed exec (its client went away).
type ExecKillRequest struct {
	ID     string `json:"id"`
	ExecID string `json:"execId"`
	Signal int    `json:"signal"`
}

// Attach output travels as one SOCK_SEQPACKET message per read from the
// container's output: the first byte names the stream, the rest is data.
// The monitor never blocks on a slow reader: a full socket drops the
// client (the socket is closed). The socket reaches EOF when the
// container's output does.
const (
	AttachStdout byte = 1
	AttachStderr byte = 2
	// AttachMaxMessage bounds a message, tag included: longer reads are
	// sent in several.
	AttachMaxMessage = 64 << 10
)
