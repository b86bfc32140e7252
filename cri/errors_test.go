package cri

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/panicguard"
)

func TestToStatusImageErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("pull x: %w: config rootfs.diff_ids[0]: bad", imageservice.ErrInvalidImage), codes.InvalidArgument},
		{fmt.Errorf("pull x: layer y: %w", imageservice.ErrTooLarge), codes.ResourceExhausted},
		{fmt.Errorf("pull x: %w: panic in fetch layer: boom", panicguard.ErrPanic), codes.Internal},
		{fmt.Errorf("%w: sha256:x is mounted as an image volume by container c", imageservice.ErrImageInUse), codes.FailedPrecondition},
		{fmt.Errorf("pull r/x:1: %w: registry r: manifest unknown", imageservice.ErrNotInRegistry), codes.NotFound},
		{fmt.Errorf("pull r/x:1: %w: registry r: 401", imageservice.ErrUnauthorized), codes.Unauthenticated},
		{fmt.Errorf("pull r/x:1: %w: registry r: denied", imageservice.ErrDenied), codes.PermissionDenied},
		{fmt.Errorf("pull r/x:1: %w: r (prefix \"r\")", imageservice.ErrBlocked), codes.PermissionDenied},
		{fmt.Errorf("pull r/x:1: %w: registry r: connection refused", imageservice.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("pull r/x:1: %w: registry r: x509", imageservice.ErrRegistryTLS), codes.FailedPrecondition},
		{fmt.Errorf("pull r/x:1: %w: registry r: write: no space left on device", imageservice.ErrNoSpace), codes.ResourceExhausted},
		{fmt.Errorf("records: write containers/x: %w", &os.PathError{Op: "write", Path: "/var/lib/crid/records/containers/.tmp-x", Err: syscall.ENOSPC}), codes.ResourceExhausted},
		{fmt.Errorf("rootfs of x: %w", &os.PathError{Op: "mkdir", Path: "/var/lib/crid/rootfs/x", Err: syscall.EDQUOT}), codes.ResourceExhausted},
		{fmt.Errorf("pull r/x:1: %w", &imageservice.ErrNoProgress{Registry: "r", Timeout: time.Minute}), codes.DeadlineExceeded},
		{errors.New("registry down"), codes.Unknown},
	} {
		got := toStatus(tc.err)
		if status.Code(got) != tc.want || status.Convert(got).Message() != tc.err.Error() {
			t.Errorf("toStatus(%q) = %v, want %v with the same message", tc.err, got, tc.want)
		}
	}
}
