package protocol

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExitFromStatus turns a wait status into an Exit. memoryCgroup, when set, is
// the container's memory cgroup directory: a non-zero OOM-kill counter there
// marks the exit as OOMKilled, as containerd reports any OOM kill in the
// container's cgroup. Reading a counter is cheaper than an eventfd and a
// goroutine per container, and it is right whoever reaps the init.
func ExitFromStatus(ws syscall.WaitStatus, at time.Time, memoryCgroup, reapedBy string) Exit {
	e := Exit{At: at.UTC(), ReapedBy: reapedBy}
	switch {
	case ws.Exited():
		e.Code = ws.ExitStatus()
	case ws.Signaled():
		e.Signal = int(ws.Signal())
		e.Code = 128 + e.Signal
	default:
		e.Code = 255
		e.Unknown = true
	}
	if memoryCgroup != "" && OOMKills(memoryCgroup) > 0 {
		e.OOMKilled = true
	}
	return e
}

// OOMKills returns the OOM-kill counter of a memory cgroup (v1
// memory.oom_control or v2 memory.events), 0 when it cannot be read.
func OOMKills(dir string) uint64 {
	for _, name := range []string{"memory.events", "memory.oom_control"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := bytes.Cut(sc.Bytes(), []byte{' '})
			if ok && string(k) == "oom_kill" {
				n, _ := strconv.ParseUint(string(v), 10, 64)
				return n
			}
		}
	}
	return 0
}

// ProcStartTime returns a process's start time in clock ticks since boot
// (field 22 of /proc/<pid>/stat), which with the pid identifies a process
// across pid reuse, and its state letter (Z for a zombie).
func ProcStartTime(pid int) (start uint64, state byte, err error) {
	fields, err := procStat(pid)
	if err != nil {
		return 0, 0, err
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, syscall.EINVAL
	}
	return start, fields[0][0], nil
}

// ZombieStatus returns the wait status of the process (pid, start) while it
// is a zombie, from field 52 of /proc/<pid>/stat (exit_code, Linux 3.5+),
// which is there for any reader allowed to ptrace-read it, not only for
// the parent. ok is false when pid is not that process or not a zombie
// (still running, or reaped already). The kernel shows 0 to a reader
// without ptrace access: callers must hold CAP_SYS_PTRACE.
func ZombieStatus(pid int, start uint64) (ws syscall.WaitStatus, ok bool) {
	fields, err := procStat(pid)
	if err != nil || len(fields) < 50 || fields[0][0] != 'Z' {
		return 0, false
	}
	if st, err := strconv.ParseUint(string(fields[19]), 10, 64); err != nil || st != start {
		return 0, false
	}
	code, err := strconv.ParseUint(string(fields[49]), 10, 32)
	if err != nil {
		return 0, false
	}
	return syscall.WaitStatus(code), true
}

// procStat returns the fields of /proc/<pid>/stat from field 3 (state)
// on: fields[i] is field i+3.
func procStat(pid int) ([][]byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	// comm (field 2) may hold spaces and parentheses: parse after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return nil, syscall.EINVAL
	}
	fields := bytes.Fields(b[i+2:])
	// field 22 (start time) is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return nil, syscall.EINVAL
	}
	return fields, nil
}

// EndedStatus reads the wait status of an ended process (pid, start)
// through its pidfd f: from /proc while it is a zombie (only when proc: the
// kernel shows exit code 0 to a reader without CAP_SYS_PTRACE), from the
// pidfd once it is reaped (PIDFD_GET_INFO with PIDFD_INFO_EXIT, Linux
// 6.15+). The reap can fall between the two reads, so they are tried a few
// times. The monitor and the stdio holder both see exits of inits they may
// not be the parent of.
func EndedStatus(f *os.File, pid int, start uint64, proc bool) (syscall.WaitStatus, bool) {
	for range 5 {
		if proc {
			if ws, ok := ZombieStatus(pid, start); ok {
				return ws, true
			}
		}
		if ws, ok := pidfdExitStatus(f); ok {
			return ws, true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, false
}

func pidfdExitStatus(f *os.File) (syscall.WaitStatus, bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_EXIT}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlPidfdInfo(int(fd), &info) }); err != nil || ioErr != nil {
		return 0, false
	}
	if info.Mask&unix.PIDFD_INFO_EXIT == 0 {
		return 0, false
	}
	return syscall.WaitStatus(info.Exit_code), true
}

// WaitEnded waits until the pidfd f of (pid, start) says its process
// ended, or ctx ends (which closes f). Go's poller waits on the pidfd
// without a thread; a pidfd that cannot be polled falls back to looking
// at /proc every 100 ms.
func WaitEnded(ctx context.Context, f *os.File, pid int, start uint64) error {
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	first := true
	err = rc.Read(func(uintptr) bool {
		if first {
			first = false
			return false // wait for readability
		}
		return true
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		return nil
	}
	// Not pollable after all: fall back to looking.
	for {
		if st, state, err := ProcStartTime(pid); err != nil || st != start || state == 'Z' || state == 'X' {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
