package specgen

import (
	"fmt"
	"slices"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// IsImageVolume reports whether m mounts an image (KEP-4639) rather than
// a host path: it names an image, or carries an image spec and no host
// path.
func IsImageVolume(m *runtime.Mount) bool {
	return m.GetImage() != nil && (ImageVolumeRef(m) != "" || m.GetHostPath() == "")
}

// ImageVolumeRef names the image an image volume mounts, and the field
// that says so: image.image_ref when set (the exact image kubelet
// resolved), else image.image.
func ImageVolumeRef(m *runtime.Mount) string {
	if ref := m.GetImage().GetImageRef(); ref != "" {
		return ref
	}
	return m.GetImage().GetImage()
}

// CheckImageVolume checks image volume mount i before anything is mounted
// for it: it names an image, no host path, and is read-only, as every
// image volume is by definition (critest expects Readonly=false refused).
func CheckImageVolume(i int, m *runtime.Mount) error {
	field := fmt.Sprintf("mounts[%d]", i)
	switch {
	case ImageVolumeRef(m) == "":
		return fmt.Errorf("%w: %s.image.image and image_ref are empty: an image volume names the image to mount", ErrInvalid, field)
	case m.GetHostPath() != "":
		return fmt.Errorf("%w: %s.host_path is set with %s.image: an image volume has no host path", ErrInvalid, field, field)
	case !m.GetReadonly():
		return fmt.Errorf("%w: %s.readonly is false: image volumes are read-only, set it to true", ErrInvalid, field)
	}
	return nil
}

// imageVolumeSource returns the host path the daemon mounted image volume
// i at.
func imageVolumeSource(in Input, i int, m *runtime.Mount) (string, error) {
	if err := CheckImageVolume(i, m); err != nil {
		return "", err
	}
	src := in.ImageVolumes[i]
	if src == "" {
		return "", fmt.Errorf("%w: mounts[%d].image: image %q is not mounted", ErrInvalid, i, ImageVolumeRef(m))
	}
	return src, nil
}

// MountOptions are the bind mount options a CRI mount may ask for in
// mount_options (KEP-5855): each only takes away from what the mount
// allows (nosuid, nodev, noexec, ro) or says how access times are kept.
// Options that would lift a restriction (suid, dev, exec, rw), change
// propagation (which the mount's propagation field says) or carry a value
// are refused.
var MountOptions = []string{"nosuid", "nodev", "noexec", "ro", "noatime", "nodiratime", "relatime", "strictatime"}

// CheckMountOptions checks a mount's mount_options against MountOptions
// and returns them without duplicates, in order.
func CheckMountOptions(opts []string) ([]string, error) {
	var out []string
	atime := ""
	for i, o := range opts {
		if !slices.Contains(MountOptions, o) {
			return nil, fmt.Errorf("[%d] %q is not a supported option (supported: %s)", i, o, strings.Join(MountOptions, ", "))
		}
		if o == "noatime" || o == "relatime" || o == "strictatime" {
			if atime != "" && atime != o {
				return nil, fmt.Errorf("[%d] %q conflicts with %q", i, o, atime)
			}
			atime = o
		}
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out, nil
}
