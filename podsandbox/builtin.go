package podsandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The built-in infra: crid-pause (cmd/crid-pause), run from a root
// filesystem crid makes itself, so that a pod sharing one PID namespace
// needs no image and no registry.
const (
	// builtinPause is the binary's path inside the rootfs.
	builtinPause = "/pause"
	// builtinUser is the user it runs as, that of Kubernetes' pause image:
	// it needs no privilege to reap or to wait for signals.
	builtinUser = "65535:65535"
)

// builtinDirs are the mount points the runtime mounts over (proc, a tmpfs
// /dev with its pts, shm and mqueue, sysfs): present beforehand, so the
// rootfs is complete and nothing is ever created in it at container start.
var builtinDirs = []string{"proc", "dev", "sys"}

// pauseMode lets anyone run /pause (the infra runs as 65535, or as a
// user namespace's root) and only the node's root read it.
const pauseMode = 0o511

// PrepareBuiltinRootfs makes the built-in infra's root filesystem under
// dir and returns its path: the crid-pause binary found at pauseBinary as
// /pause, and the empty mount points. Containers get it read-only. It runs
// at every daemon start: the binary is replaced by a rename (a running
// infra keeps the file it executed) and nothing a running pod uses is
// removed.
func PrepareBuiltinRootfs(dir, pauseBinary string) (string, error) {
	src, err := os.Open(pauseBinary)
	if err != nil {
		return "", fmt.Errorf("built-in infra: %w (make build puts crid-pause beside crid; runtime.pause_path names another)", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return "", fmt.Errorf("built-in infra: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("built-in infra: %s is not an executable file (%s)", pauseBinary, fi.Mode())
	}
	// dir cannot be listed, but others may pass through it: an infra in
	// a pod's user namespace is not root on the node, and its runtime
	// init reaches the rootfs through the path (it holds nothing else).
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("built-in infra: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("built-in infra: %w", err)
	}
	// Passable, never listable, all the way down, and /pause can be run
	// but not read: what a node user who knows the path can do here is
	// nothing (the infra needs no more; mount points are mounted over).
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range append([]string{""}, builtinDirs...) {
		p := filepath.Join(rootfs, d)
		if err := os.Mkdir(p, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("built-in infra: %w", err)
		}
		if err := os.Chmod(p, 0o711); err != nil {
			return "", fmt.Errorf("built-in infra: %w", err)
		}
	}
	dst := filepath.Join(rootfs, builtinPause)
	want, err := io.ReadAll(src)
	if err != nil {
		return "", fmt.Errorf("built-in infra: read %s: %w", pauseBinary, err)
	}
	// The same binary already there is kept: a start on a full root_dir
	// (it happens) must not fail for want of room for a second copy.
	if st, err := os.Lstat(dst); err == nil && st.Mode().IsRegular() && st.Mode().Perm() == pauseMode && st.Size() == int64(len(want)) {
		if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, want) {
			return rootfs, nil
		}
	}
	tmp, err := os.CreateTemp(rootfs, ".pause-")
	if err != nil {
		return "", fmt.Errorf("built-in infra: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	_, err = tmp.Write(want)
	if err == nil {
		err = tmp.Chmod(pauseMode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return "", fmt.Errorf("built-in infra: install %s: %w", dst, err)
	}
	return rootfs, nil
}
