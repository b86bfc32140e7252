package specgen

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A device named through a symlink (as /dev/disk/by-id/... are) lands at
// the container path asked for, cleaned: found by FuzzCreateContainer, it
// landed at the symlink target's path.
func TestDeviceThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Symlink("/dev/null", filepath.Join(dir, "alias")))
	s := build(t, input(t, &runtime.ContainerConfig{Devices: []*runtime.Device{
		{HostPath: filepath.Join(dir, "alias"), ContainerPath: "/dev/mynull"},
		{HostPath: "/dev/null", ContainerPath: "/dev/x/../other"},
	}}))
	var got []string
	for _, d := range s.Linux.Devices {
		got = append(got, d.Path)
	}
	if want := []string{"/dev/mynull", "/dev/other"}; !slices.Equal(got, want) {
		t.Fatalf("device paths %v, want %v", got, want)
	}
}

// A device's container path must be absolute: the spec's device paths are
// created inside the rootfs, and a relative one says nowhere.
func TestDeviceContainerPathMustBeAbsolute(t *testing.T) {
	for _, p := range []string{"", "dev/null", "../../escape", "/dev/x\x00y"} {
		in := input(t, &runtime.ContainerConfig{Devices: []*runtime.Device{{HostPath: "/dev/null", ContainerPath: p}}})
		if _, err := Build(in); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "devices[0].container_path") {
			t.Errorf("container path %q: %v", p, err)
		}
	}
}
