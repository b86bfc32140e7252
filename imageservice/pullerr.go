package imageservice

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	"go.podman.io/image/v5/docker"

	"github.com/crid-dev/crid/panicguard"
)

// Classes of pull failure, each one a client can act on differently; the
// CRI layer maps each to its gRPC code. A pull error wraps at most one.
var (
	// ErrNotInRegistry: the registry has no such repository, tag or
	// digest, or no image for this platform in a manifest list.
	ErrNotInRegistry = errors.New("not found in the registry")
	// ErrDenied: the registry refuses these (valid) credentials access.
	ErrDenied = errors.New("access denied by the registry")
	// ErrUnavailable: the registry cannot be reached (DNS, connection
	// refused or reset, timeouts) or says it cannot serve now (5xx, 429).
	ErrUnavailable = errors.New("registry unavailable")
	// ErrRegistryTLS: the registry's TLS cannot be verified or it speaks
	// plain HTTP; registries.conf must mark it insecure.
	ErrRegistryTLS = errors.New("registry TLS failed")
	// ErrNoSpace: the node's disk or quota is full.
	ErrNoSpace = errors.New("no space left for the image")
)

// pullClass returns the class of a failed pull's error, or nil when it has
// none of the above: errors that carry their own class already (limits,
// invalid images and references, panics, the watchdog, cancellation) and
// errors crid cannot explain.
func pullClass(err error) error {
	var (
		badRef *ErrInvalidReference
		np     *ErrNoProgress
	)
	switch {
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrInvalidImage), errors.As(err, &badRef),
		errors.Is(err, ErrBlocked), errors.Is(err, panicguard.ErrPanic), errors.As(err, &np),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrNoSpace
	}
	var badCreds docker.ErrUnauthorizedForCredentials
	if errors.As(err, &badCreds) {
		return ErrUnauthorized
	}
	if c, ok := errorCode(err); ok {
		switch c {
		case errcode.ErrorCodeUnauthorized:
			return ErrUnauthorized
		case errcode.ErrorCodeDenied:
			return ErrDenied
		case v2.ErrorCodeNameUnknown, v2.ErrorCodeManifestUnknown, v2.ErrorCodeBlobUnknown, v2.ErrorCodeManifestBlobUnknown:
			return ErrNotInRegistry
		case errcode.ErrorCodeUnavailable, errcode.ErrorCodeTooManyRequests:
			return ErrUnavailable
		}
	}
	var st docker.UnexpectedHTTPStatusError
	if errors.As(err, &st) {
		switch {
		case st.StatusCode == http.StatusUnauthorized:
			return ErrUnauthorized
		case st.StatusCode == http.StatusForbidden:
			return ErrDenied
		case st.StatusCode == http.StatusNotFound:
			return ErrNotInRegistry
		case st.StatusCode == http.StatusTooManyRequests, st.StatusCode >= 500:
			return ErrUnavailable
		}
	}
	if errors.Is(err, docker.ErrTooManyRequests) {
		return ErrUnavailable
	}
	if errors.Is(err, errNoPlatform) {
		return ErrNotInRegistry
	}
	// TLS before the network errors: a failed handshake also comes as a
	// *net.OpError.
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalidCert x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		header      tls.RecordHeaderError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalidCert) ||
		errors.As(err, &verify) || errors.As(err, &header) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") { // net/http drops the RecordHeaderError
		return ErrRegistryTLS
	}
	var (
		dnsErr *net.DNSError
		opErr  *net.OpError
		netErr net.Error
	)
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &opErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ETIMEDOUT):
		return ErrUnavailable
	case errors.As(err, &netErr) && netErr.Timeout():
		return ErrUnavailable
	}
	return nil
}

// errorCode finds the registry's error code (errcode.Error or the first
// of an errcode.Errors) in err's chain.
func errorCode(err error) (errcode.ErrorCode, bool) {
	var coder errcode.ErrorCoder
	if errors.As(err, &coder) {
		return coder.ErrorCode(), true
	}
	var errs errcode.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		var first errcode.ErrorCoder
		if errors.As(errs[0], &first) {
			return first.ErrorCode(), true
		}
	}
	return 0, false
}

// errNoPlatform marks a manifest list with no image for this node.
var errNoPlatform = errors.New("no image for this platform")
