package oci

import (
	"errors"

	"github.com/crid-dev/crid/oci/protocol"
)

// Errors returned by Runtime, to test with errors.Is; the message says more.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrMonitorLost: the monitor died while the call was in flight and
	// the call cannot be safely repeated; its outcome is unknown.
	ErrMonitorLost = errors.New("monitor connection lost")
)

type codedError struct {
	kind error
	msg  string
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.kind }

// mapError turns a monitor's error reply into one of the errors above.
func mapError(err error) error {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		if errors.Is(err, protocol.ErrConnLost) {
			return &codedError{ErrMonitorLost, err.Error()}
		}
		return err
	}
	kind := map[protocol.Code]error{
		protocol.CodeNotFound:           ErrNotFound,
		protocol.CodeAlreadyExists:      ErrAlreadyExists,
		protocol.CodeInvalidArgument:    ErrInvalidArgument,
		protocol.CodeFailedPrecondition: ErrFailedPrecondition,
	}[pe.Code]
	if kind == nil {
		return errors.New(pe.Message)
	}
	return &codedError{kind, pe.Message}
}
