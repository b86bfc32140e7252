package protocol

import "path/filepath"

// Files of the monitor under the run directory. The lock is held by the live
// monitor for its whole life, so "is a monitor running" is a non-blocking
// flock away, with no pid file to go stale.
const (
	SocketName = "monitor.sock"
	LockName   = "monitor.lock"
	LogName    = "monitor.log"
	// LibcontainerDir holds libcontainer's own state (state.json, exec
	// fifo) per container.
	LibcontainerDir = "libcontainer"
)

// SocketPath is the monitor's socket under runDir.
func SocketPath(runDir string) string { return filepath.Join(runDir, SocketName) }

// LockPath is the monitor's lock file under runDir.
func LockPath(runDir string) string { return filepath.Join(runDir, LockName) }

// LogPath is where the monitor's own diagnostics go.
func LogPath(runDir string) string { return filepath.Join(runDir, LogName) }
