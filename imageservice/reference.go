package imageservice

import (
	"fmt"
	"strings"

	"go.podman.io/image/v5/docker/reference"
)

// ErrInvalidReference marks an image name that cannot be parsed.
type ErrInvalidReference struct {
	Ref string
	Err error
}

func (e *ErrInvalidReference) Error() string {
	return fmt.Sprintf("invalid image reference %q: %v", e.Ref, e.Err)
}

func (e *ErrInvalidReference) Unwrap() error { return e.Err }

// parseReference resolves a name as Docker does: "busybox" is
// docker.io/library/busybox:latest; a name with neither tag nor digest gets
// ":latest".
func parseReference(ref string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, &ErrInvalidReference{Ref: ref, Err: err}
	}
	return reference.TagNameOnly(named), nil
}

// User splits the image config's USER ("uid", "name", "uid:gid",
// "name:gid") into the uid or the user name CRI reports.
func (img *Image) User() (uid *int64, name string) {
	u, _, _ := strings.Cut(img.Config.Config.User, ":")
	if u == "" {
		return nil, ""
	}
	var n int64
	if _, err := fmt.Sscanf(u, "%d", &n); err == nil && fmt.Sprint(n) == u {
		return &n, ""
	}
	return nil, u
}
