package specgen

import (
	"errors"
	"slices"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestImageVolumeMounts(t *testing.T) {
	img := &runtime.ImageSpec{Image: "sha256:" + strings.Repeat("a", 64)}
	in := input(t, &runtime.ContainerConfig{Mounts: []*runtime.Mount{
		{ContainerPath: "/vol", Image: img, Readonly: true, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
		{ContainerPath: "/vol-rro", Image: img, Readonly: true, RecursiveReadOnly: true, MountOptions: []string{"nodev", "noexec"}},
	}})
	in.ImageVolumes = map[int]string{0: "/store/volumes/0/merged", 1: "/store/volumes/1/merged/etc"}
	s := build(t, in)
	v := mountAt(s, "/vol")
	if v == nil || v.Source != "/store/volumes/0/merged" || v.Type != "bind" || !slices.Equal(v.Options, []string{"rbind", "rprivate", "ro"}) {
		t.Fatalf("image volume: %+v; want a private read-only bind of the mounted image", v)
	}
	if s.Linux.RootfsPropagation == "rshared" {
		t.Errorf("an image volume asked for propagation: rootfs propagation %q", s.Linux.RootfsPropagation)
	}
	v = mountAt(s, "/vol-rro")
	if v == nil || v.Source != "/store/volumes/1/merged/etc" || !slices.Equal(v.Options, []string{"rbind", "rprivate", "rro", "nodev", "noexec"}) {
		t.Fatalf("recursive read-only image volume with options: %+v", v)
	}

	for name, tc := range map[string]struct {
		m    *runtime.Mount
		want string
	}{
		"read-write":     {&runtime.Mount{ContainerPath: "/v", Image: img}, "mounts[0].readonly is false"},
		"host path too":  {&runtime.Mount{ContainerPath: "/v", Image: img, HostPath: "/tmp", Readonly: true}, "mounts[0].host_path is set"},
		"empty image":    {&runtime.Mount{ContainerPath: "/v", Image: &runtime.ImageSpec{}, Readonly: true}, "mounts[0].image.image and image_ref are empty"},
		"not mounted":    {&runtime.Mount{ContainerPath: "/v", Image: img, Readonly: true}, "is not mounted"},
		"relative":       {&runtime.Mount{ContainerPath: "v", Image: img, Readonly: true}, "mounts[0].container_path"},
		"unknown option": {&runtime.Mount{ContainerPath: "/v", Image: img, Readonly: true, MountOptions: []string{"exec"}}, "mounts[0].mount_options"},
	} {
		in := input(t, &runtime.ContainerConfig{Mounts: []*runtime.Mount{tc.m}})
		if _, err := Build(in); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", name, err, tc.want)
		}
	}
}

func TestMountOptions(t *testing.T) {
	host := t.TempDir()
	in := input(t, &runtime.ContainerConfig{Mounts: []*runtime.Mount{
		{ContainerPath: "/a", HostPath: host, MountOptions: []string{"noexec", "nosuid", "nodev", "noexec", "noatime"}},
		{ContainerPath: "/b", HostPath: host, MountOptions: []string{"ro"}},
		{ContainerPath: "/c", HostPath: host, Readonly: true, MountOptions: []string{"relatime", "nodiratime"}},
	}})
	s := build(t, in)
	if a := mountAt(s, "/a"); a == nil || !slices.Equal(a.Options, []string{"rbind", "rprivate", "rw", "noexec", "nosuid", "nodev", "noatime"}) {
		t.Errorf("/a: %+v", a)
	}
	if b := mountAt(s, "/b"); b == nil || slices.Contains(b.Options, "rw") || !slices.Contains(b.Options, "ro") {
		t.Errorf("/b: mount_options ro must make the mount read-only: %+v", b)
	}
	if c := mountAt(s, "/c"); c == nil || !slices.Equal(c.Options, []string{"rbind", "rprivate", "ro", "relatime", "nodiratime"}) {
		t.Errorf("/c: %+v", c)
	}
	for _, opts := range [][]string{{"exec"}, {"suid"}, {"dev"}, {"rw"}, {"rshared"}, {"bind"}, {""}, {"size=1m"}, {"NOEXEC"}, {"noatime", "strictatime"}, {"nodev", "mode=777"}} {
		in := input(t, &runtime.ContainerConfig{Mounts: []*runtime.Mount{{ContainerPath: "/a", HostPath: host, MountOptions: opts}}})
		_, err := Build(in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "mounts[0].mount_options") {
			t.Errorf("mount_options %q: %v, want ErrInvalid naming mounts[0].mount_options", opts, err)
		}
	}
}
