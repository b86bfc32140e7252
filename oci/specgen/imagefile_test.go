package specgen

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An image's /etc/passwd that is a FIFO, a device, too large, a symlink
// out of the rootfs or a loop fails the container's spec at once with
// ErrInvalid; a symlink is resolved inside the rootfs, never on the host.
func TestUserFilesFromUntrustedImage(t *testing.T) {
	runAs := func(name string) *runtime.ContainerConfig {
		return &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{RunAsUsername: name}}}
	}
	passwd := func(in Input) string { return filepath.Join(in.Rootfs, "etc/passwd") }
	for _, tc := range []struct {
		name    string
		craft   func(t *testing.T, in Input)
		user    string
		want    string // in the error; "" for success
		wantUID uint32
	}{
		{"fifo", func(t *testing.T, in Input) {
			must(t, os.Remove(passwd(in)))
			must(t, unix.Mkfifo(passwd(in), 0o644))
		}, "root", "is a FIFO", 0},
		{"fifo group with a numeric user", func(t *testing.T, in Input) {
			g := filepath.Join(in.Rootfs, "etc/group")
			must(t, os.Remove(g))
			must(t, unix.Mkfifo(g, 0o644))
		}, "", "is a FIFO", 0},
		{"char device", func(t *testing.T, in Input) {
			must(t, os.Remove(passwd(in)))
			must(t, unix.Mknod(passwd(in), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5)))) // /dev/zero
		}, "root", "is a character device", 0},
		{"directory", func(t *testing.T, in Input) {
			must(t, os.Remove(passwd(in)))
			must(t, os.Mkdir(passwd(in), 0o755))
		}, "root", "is a directory", 0},
		{"too large", func(t *testing.T, in Input) {
			must(t, os.Truncate(passwd(in), maxImageFileSize+1))
		}, "root", "more than", 0},
		{"symlink loop", func(t *testing.T, in Input) {
			must(t, os.Remove(passwd(in)))
			must(t, os.Symlink("/etc/passwd", passwd(in)))
		}, "root", "image file /etc/passwd", 0},
		{"absolute symlink stays in the rootfs", func(t *testing.T, in Input) {
			// On the host this is the host's shadow; in the rootfs it is
			// the image's own, which names a user of its own.
			must(t, os.WriteFile(filepath.Join(in.Rootfs, "etc/shadow"), []byte("imageuser:x:4242:4242::/:/bin/sh\n"), 0o644))
			must(t, os.Remove(passwd(in)))
			must(t, os.Symlink("/etc/shadow", passwd(in)))
		}, "imageuser", "", 4242},
		{"climbing symlink stays in the rootfs", func(t *testing.T, in Input) {
			must(t, os.WriteFile(filepath.Join(in.Rootfs, "users"), []byte("imageuser:x:4343:4343::/:/bin/sh\n"), 0o644))
			must(t, os.Remove(passwd(in)))
			must(t, os.Symlink("../../../../../../../../users", passwd(in)))
		}, "imageuser", "", 4343},
		{"symlink to the host's /dev/zero", func(t *testing.T, in Input) {
			must(t, os.Remove(passwd(in)))
			must(t, os.Symlink("/dev/zero", passwd(in))) // no /dev/zero in the rootfs: no passwd
		}, "root", "no matching entries", 0},
		{"magic link", func(t *testing.T, in Input) {
			must(t, os.Remove(passwd(in)))
			must(t, os.Symlink("/proc/self/root/etc/passwd", passwd(in))) // no /proc in the rootfs
		}, "root", "no matching entries", 0},
		{"missing files, numeric user", func(t *testing.T, in Input) {
			must(t, os.RemoveAll(filepath.Join(in.Rootfs, "etc")))
		}, "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := input(t, runAs(tc.user))
			tc.craft(t, in)
			type result struct {
				s   *specs.Spec
				err error
			}
			done := make(chan result, 1)
			go func() { // ends with Build, unless it blocks for good on a FIFO
				s, err := Build(in)
				done <- result{s, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Build blocked reading the image's user files")
			}
			s, err := r.s, r.err
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Process.User.UID != tc.wantUID {
					t.Fatalf("uid %d, want %d", s.Process.User.UID, tc.wantUID)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}
