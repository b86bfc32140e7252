package cri

import (
	"errors"
	"fmt"
	"testing"

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
		{errors.New("registry down"), codes.Unknown},
	} {
		got := toStatus(tc.err)
		if status.Code(got) != tc.want || status.Convert(got).Message() != tc.err.Error() {
			t.Errorf("toStatus(%q) = %v, want %v with the same message", tc.err, got, tc.want)
		}
	}
}
