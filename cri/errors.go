package cri

import (
	"context"
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/oci/specgen"
	"github.com/crid-dev/crid/panicguard"
	"github.com/crid-dev/crid/podsandbox"
)

// toStatus maps a domain error to the gRPC code a CRI client expects,
// keeping the domain's message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		badRef     *imageservice.ErrInvalidReference
		noProgress *imageservice.ErrNoProgress
	)
	code := codes.Unknown
	switch {
	case errors.Is(err, panicguard.ErrPanic):
		// A bug met by this request, never the client's fault.
		code = codes.Internal
	case errors.Is(err, imageservice.ErrTooLarge), errors.Is(err, imageservice.ErrNoSpace),
		errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// A full disk or quota (a record, a rootfs, a log directory):
		// the node's resource, and the message names the path.
		code = codes.ResourceExhausted
	case errors.Is(err, imageservice.ErrNotInRegistry):
		code = codes.NotFound
	case errors.Is(err, imageservice.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, imageservice.ErrDenied), errors.Is(err, imageservice.ErrBlocked):
		code = codes.PermissionDenied
	case errors.Is(err, imageservice.ErrRegistryTLS):
		code = codes.FailedPrecondition
	case errors.As(err, &noProgress):
		// The pull's watchdog: kubelet sets no deadline of its own.
		code = codes.DeadlineExceeded
	case errors.As(err, &badRef), errors.Is(err, imageservice.ErrAmbiguous), errors.Is(err, imageservice.ErrInvalidImage),
		errors.Is(err, imageservice.ErrInvalidLayer), errors.Is(err, imageservice.ErrDigestMismatch), errors.Is(err, imageservice.ErrInvalidDigest), errors.Is(err, imageservice.ErrInvalidArchive),
		errors.Is(err, podsandbox.ErrInvalid), errors.Is(err, podsandbox.ErrAmbiguous),
		errors.Is(err, specgen.ErrInvalid), errors.Is(err, oci.ErrInvalidArgument), errors.Is(err, oci.ErrAmbiguous):
		code = codes.InvalidArgument
	case errors.Is(err, podsandbox.ErrNotFound), errors.Is(err, oci.ErrNotFound), errors.Is(err, imageservice.ErrImageNotFound):
		code = codes.NotFound
	case errors.Is(err, podsandbox.ErrAlreadyExists), errors.Is(err, oci.ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, oci.ErrFailedPrecondition), errors.Is(err, podsandbox.ErrNoNetwork), errors.Is(err, podsandbox.ErrNotReady):
		code = codes.FailedPrecondition
	case errors.Is(err, imageservice.ErrUnauthorized):
		code = codes.Unauthenticated
	case errors.Is(err, imageservice.ErrPinned), errors.Is(err, imageservice.ErrImageInUse):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}
