package hostcheck

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Infra reports which pods get an infra (pause) process and from where it
// comes: crid's built-in crid-pause, which must be installed (crid does
// not start without it), or a sandbox image, and then whether a running
// daemon already holds it: a node that cannot reach the image's registry
// cannot start such pods without it.
func (h *Host) Infra(ctx context.Context) Result {
	const name = "infra (pause)"
	img := h.Config.Image.SandboxImage
	who := "pods sharing one PID namespace (crictl's default)"
	if h.Config.Runtime.Infra == "always" {
		who = "every pod (runtime.infra = always)"
	}
	if img == "" {
		fix := "install crid-pause beside crid (make install), set runtime.pause_path, or set image.sandbox_image to a pause image"
		fi, err := os.Stat(h.PausePath)
		if err != nil {
			return fail(name, fmt.Sprintf("%s run crid's built-in infra, but %s: %v", who, h.PausePath, errors.Unwrap(err)), fix)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return fail(name, fmt.Sprintf("%s run crid's built-in infra, but %s is not an executable file (%s)", who, h.PausePath, fi.Mode()), fix)
		}
		return ok(name, fmt.Sprintf("%s run crid's built-in %s (%d bytes) from a read-only rootfs: no image, no registry", who, h.PausePath, fi.Size()))
	}
	detail := fmt.Sprintf("%s run pause from image.sandbox_image %s", who, img)
	if !h.Serving(h.Config.Socket) {
		return ok(name, detail+" (crid is not running: not asked whether the image is present)")
	}
	present, err := h.HasImage(ctx, h.Config.Socket, img)
	if err != nil {
		return warn(name, fmt.Sprintf("%s; asking crid for it failed: %v", detail, err), "see crid's log")
	}
	if !present {
		return warn(name, detail+"; not in crid's store yet: the first such pod pulls it",
			fmt.Sprintf("crictl pull %s now, or on an air-gapped node set image.sandbox_image to an image a reachable registry has", img))
	}
	return ok(name, detail+" (present, pinned)")
}

// Monitor checks the crid-monitor binary the daemon would start: it runs
// every container, and it is what links libcontainer.
func (h *Host) Monitor() Result {
	const name = "crid-monitor"
	fi, err := os.Stat(h.MonitorPath)
	if err != nil {
		return fail(name, fmt.Sprintf("%s: %v", h.MonitorPath, errors.Unwrap(err)),
			"install crid-monitor beside crid (make install), or set runtime.monitor_path")
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o100 == 0 {
		return fail(name, fmt.Sprintf("%s is not an executable file (%s)", h.MonitorPath, fi.Mode()), "chmod 0755 "+h.MonitorPath)
	}
	bi, err := buildinfo.ReadFile(h.MonitorPath)
	if err != nil {
		return fail(name, fmt.Sprintf("%s is not a Go binary: %v", h.MonitorPath, err), "reinstall crid-monitor (make install)")
	}
	return ok(name, fmt.Sprintf("%s (%s, runc/libcontainer %s)", h.MonitorPath, bi.GoVersion, moduleVersion(bi, "github.com/opencontainers/runc")))
}

// moduleVersion is the version of module mod a binary was built with.
func moduleVersion(bi *buildinfo.BuildInfo, mod string) string {
	for _, d := range bi.Deps {
		if d.Path == mod {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}

// Socket checks the CRI socket and its directory: only root may connect to
// the socket, and only root may replace it.
func (h *Host) Socket() Result {
	const name = "socket"
	sock := h.Config.Socket
	dir := filepath.Dir(sock)
	if r, bad := rootOnlyDir(name, "socket dir", dir); bad {
		return r
	}
	fi, err := os.Lstat(sock)
	if errors.Is(err, fs.ErrNotExist) {
		return ok(name, sock+" (created at start, mode 0660 root:root)")
	}
	if err != nil {
		return fail(name, fmt.Sprintf("cannot stat %s: %v", sock, err), "check the permissions of "+dir)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fail(name, fmt.Sprintf("%s exists and is not a socket: crid refuses to start", sock), "remove it, or set socket to another path")
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || fi.Mode().Perm()&0o007 != 0 {
		return fail(name, fmt.Sprintf("%s is %04o owned by %d:%d: others may drive the runtime", sock, fi.Mode().Perm(), st.Uid, st.Gid),
			"restart crid, which recreates it 0660 root:root")
	}
	if !h.Serving(sock) {
		return warn(name, sock+" is left from a crid that is gone", "start crid (it replaces a stale socket)")
	}
	return ok(name, fmt.Sprintf("%s %04o %d:%d; crid is serving", sock, fi.Mode().Perm(), st.Uid, st.Gid))
}

// StateDirs checks root_dir and run_dir: root-owned and writable by root
// alone, as crid creates them (0711).
func (h *Host) StateDirs() Result {
	const name = "state dirs"
	var details []string
	for _, d := range []struct{ key, dir string }{{"root_dir", h.Config.RootDir}, {"run_dir", h.Config.RunDir}} {
		if r, bad := rootOnlyDir(name, d.key, d.dir); bad {
			return r
		}
		if fi, err := os.Stat(d.dir); err == nil {
			details = append(details, fmt.Sprintf("%s %s %04o", d.key, d.dir, fi.Mode().Perm()))
		} else {
			details = append(details, fmt.Sprintf("%s %s (created at start, 0711)", d.key, d.dir))
		}
	}
	return ok(name, fmt.Sprintf("%s; %s", details[0], details[1]))
}

// rootOnlyDir fails a directory that exists and is not root's alone to
// write: whoever can write it can swap crid's files for their own.
func rootOnlyDir(name, key, dir string) (Result, bool) {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Result{}, false
	}
	if err != nil {
		return fail(name, fmt.Sprintf("cannot stat %s %s: %v", key, dir, err), "fix its permissions"), true
	}
	if !fi.IsDir() {
		return fail(name, fmt.Sprintf("%s %s is not a directory", key, dir), "remove it, or point "+key+" elsewhere"), true
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return fail(name, fmt.Sprintf("%s %s is %04o owned by %d:%d: others can write it", key, dir, fi.Mode().Perm(), st.Uid, st.Gid),
			fmt.Sprintf("chown root:root %s && chmod 0711 %s", dir, dir)), true
	}
	return Result{}, false
}

// serving reports whether something accepts connections on socket.
func serving(socket string) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// hasImage asks the daemon on socket for image's status over the CRI.
func hasImage(ctx context.Context, socket, image string) (bool, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, fmt.Errorf("connect to %s: %w", socket, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := runtime.NewImageServiceClient(conn).ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: image}})
	if err != nil {
		return false, fmt.Errorf("ImageStatus %s: %w", image, err)
	}
	return resp.GetImage() != nil, nil
}
