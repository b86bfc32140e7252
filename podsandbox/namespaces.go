package podsandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crid-dev/crid/panicguard"
)

// nsKind is a namespace a pod owns and pins.
type nsKind string

const (
	nsNet nsKind = "net"
	nsIPC nsKind = "ipc"
	nsUTS nsKind = "uts"
	// nsPID is pinned from the infra process, which creates it (infrawatch.go).
	nsPID nsKind = "pid"
)

var cloneFlags = map[nsKind]int{nsNet: unix.CLONE_NEWNET, nsIPC: unix.CLONE_NEWIPC, nsUTS: unix.CLONE_NEWUTS}

// nsSetup is what is written inside new namespaces before they are pinned.
type nsSetup struct {
	hostname string
	// sysctls are namespaced sysctls: /proc/sys resolves net.* and the IPC
	// ones against the namespaces of the thread that opens them, so they
	// are written from inside.
	sysctls map[string]string
}

// pinNamespaces creates the namespaces kinds in a thread of their own,
// sets the hostname and sysctls inside, and bind-mounts each namespace to
// dir/<kind> so it lives on without any process. The thread is never given
// back to the Go scheduler: it ends with its goroutine, so no other
// goroutine ever runs in the pod's namespaces.
func pinNamespaces(dir string, kinds []nsKind, setup nsSetup) (map[nsKind]string, error) {
	if len(kinds) == 0 {
		return map[nsKind]string{}, nil
	}
	type result struct {
		paths map[nsKind]string
		err   error
	}
	done := make(chan result, 1)
	go func() { // ends with pinFromThread; the caller waits for it
		var r result
		defer func() { done <- r }()
		defer panicguard.Recover("pin pod namespaces", &r.err)
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		r.paths, r.err = pinFromThread(dir, kinds, setup)
	}()
	r := <-done
	return r.paths, r.err
}

func pinFromThread(dir string, kinds []nsKind, setup nsSetup) (paths map[nsKind]string, err error) {
	flags := 0
	for _, k := range kinds {
		flags |= cloneFlags[k]
	}
	if err := unix.Unshare(flags); err != nil {
		return nil, fmt.Errorf("unshare namespaces %v: %w", kinds, err)
	}
	if setup.hostname != "" && hasKind(kinds, nsUTS) {
		if err := unix.Sethostname([]byte(setup.hostname)); err != nil {
			return nil, fmt.Errorf("set hostname %q: %w", setup.hostname, err)
		}
	}
	for key, val := range setup.sysctls {
		if err := writeSysctl(key, val); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	paths = map[nsKind]string{}
	defer func() {
		if err != nil {
			unpinNamespaces(paths)
		}
	}()
	return paths, pinEach(paths, dir, kinds, fmt.Sprintf("/proc/self/task/%d/ns", unix.Gettid()))
}

// pinEach bind-mounts each namespace of kinds found in procNS (a
// /proc/.../ns dir) onto a file of its name in dir, adding it to paths as
// it goes, so that the caller's undo finds every pin made before a failure.
func pinEach(paths map[nsKind]string, dir string, kinds []nsKind, procNS string) error {
	for _, k := range kinds {
		pin := filepath.Join(dir, string(k))
		f, err := os.OpenFile(pin, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
		if err != nil {
			return fmt.Errorf("create %s pin: %w", k, err)
		}
		f.Close()
		if err := unix.Mount(filepath.Join(procNS, string(k)), pin, "", unix.MS_BIND, ""); err != nil {
			os.Remove(pin)
			return fmt.Errorf("pin %s namespace: %w", k, err)
		}
		paths[k] = pin
	}
	return nil
}

// writeSysctl writes one sysctl in the calling thread's namespaces. The
// key is validated by the caller; dots map to slashes as sysctl(8) does.
func writeSysctl(key, val string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(p, []byte(val), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, val, err)
	}
	return nil
}

// unpinNamespaces unmounts and removes pins; a missing pin is fine, so it
// serves both the failure path and an idempotent Remove.
func unpinNamespaces(paths map[nsKind]string) error {
	var errs []error
	for _, p := range paths {
		errs = append(errs, unpin(p))
	}
	return errors.Join(errs...)
}

func unpin(p string) error {
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

func hasKind(kinds []nsKind, k nsKind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// namespacedSysctl reports whether a sysctl lives in a namespace a pod
// owns, and which: kubelet's "safe" and "unsafe" namespaced sysctls.
func namespacedSysctl(key string) (nsKind, bool) {
	switch {
	case strings.HasPrefix(key, "net."):
		return nsNet, true
	case strings.HasPrefix(key, "kernel.shm"), strings.HasPrefix(key, "kernel.msg"),
		key == "kernel.sem", strings.HasPrefix(key, "fs.mqueue."):
		return nsIPC, true
	}
	return "", false
}
