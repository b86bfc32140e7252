package imageservice

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// noRegistriesConf stands for "no configuration at all": an empty file, so
// containers/image reads nothing and never falls back to its own search
// paths ($HOME, /etc/containers) behind crid's back.
const noRegistriesConf = os.DevNull

// registriesPaths picks the registries.conf file and drop-in directory a
// pull reads: crid's own when the file or its .d directory exists, else
// the containers-wide pair when either exists, else nothing (no mirrors,
// no blocks). It is decided per pull, so a file created while crid runs
// is honoured by the next pull.
func (s *Service) registriesPaths() (file, dir string) {
	for _, f := range []string{s.opts.RegistriesConf, s.opts.ContainersRegistriesConf} {
		if f == "" {
			continue
		}
		fileOK, dirOK := exists(f), exists(f+".d")
		switch {
		case fileOK:
			return f, f + ".d"
		case dirOK:
			return noRegistriesConf, f + ".d"
		}
	}
	// A drop-in directory that does not exist reads as empty.
	return noRegistriesConf, noRegistriesConf + ".d"
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ErrBlocked marks a pull from a registry that registries.conf blocks.
var ErrBlocked = errors.New("registry is blocked")

// checkRegistry applies the registries configuration to named before any
// request: a blocked registry is refused with ErrBlocked, and a registry
// that sits on a loopback address with all its mirrors is marked insecure
// (HTTPS unverified, then plain HTTP), as Docker and containerd allow
// without configuration.
func checkRegistry(sys *types.SystemContext, named reference.Named) error {
	reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil {
		return fmt.Errorf("registries configuration %s: %w", sys.SystemRegistriesConfPath, err)
	}
	if reg == nil {
		if isLoopback(reference.Domain(named)) {
			sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		}
		return nil
	}
	if reg.Blocked {
		return fmt.Errorf("%w: %s (prefix %q in %s)", ErrBlocked, reference.Domain(named), reg.Prefix, sys.SystemRegistriesConfPath)
	}
	sources, err := reg.PullSourcesFromReference(named)
	if err != nil {
		return fmt.Errorf("registries configuration %s: %w", sys.SystemRegistriesConfPath, err)
	}
	for _, src := range sources {
		if !isLoopback(reference.Domain(src.Reference)) {
			return nil // the configured Insecure of each endpoint holds
		}
	}
	sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	return nil
}

// isLoopback reports whether a registry host[:port] names this machine:
// "localhost", 127.0.0.0/8 or ::1.
func isLoopback(hostPort string) bool {
	host := hostPort
	if h, _, err := net.SplitHostPort(hostPort); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
