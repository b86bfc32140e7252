package cri

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// requiredFields lists, per request, the fields that must be set: a message
// present, a string or list non-empty. Paths use the proto field names, so an
// error names the field exactly as the CRI defines it. The table is checked
// against the descriptors by a unit test.
var requiredFields = map[protoreflect.FullName][]string{
	"runtime.v1.RunPodSandboxRequest":             {"config", "config.metadata", "config.metadata.name", "config.metadata.namespace", "config.metadata.uid"},
	"runtime.v1.StopPodSandboxRequest":            {"pod_sandbox_id"},
	"runtime.v1.RemovePodSandboxRequest":          {"pod_sandbox_id"},
	"runtime.v1.PodSandboxStatusRequest":          {"pod_sandbox_id"},
	"runtime.v1.PodSandboxStatsRequest":           {"pod_sandbox_id"},
	"runtime.v1.PortForwardRequest":               {"pod_sandbox_id"},
	"runtime.v1.UpdatePodSandboxResourcesRequest": {"pod_sandbox_id"},
	"runtime.v1.CheckpointPodRequest":             {"pod_sandbox_id"},
	"runtime.v1.RestorePodRequest":                {"checkpoint_path"},
	"runtime.v1.CreateContainerRequest":           {"pod_sandbox_id", "config", "config.metadata", "config.metadata.name", "config.image", "config.image.image"},
	"runtime.v1.StartContainerRequest":            {"container_id"},
	"runtime.v1.StopContainerRequest":             {"container_id"},
	"runtime.v1.RemoveContainerRequest":           {"container_id"},
	"runtime.v1.ContainerStatusRequest":           {"container_id"},
	"runtime.v1.ContainerStatsRequest":            {"container_id"},
	"runtime.v1.UpdateContainerResourcesRequest":  {"container_id"},
	"runtime.v1.ReopenContainerLogRequest":        {"container_id"},
	"runtime.v1.ExecSyncRequest":                  {"container_id", "cmd"},
	"runtime.v1.ExecRequest":                      {"container_id", "cmd"},
	"runtime.v1.AttachRequest":                    {"container_id"},
	"runtime.v1.CheckpointContainerRequest":       {"container_id"},
	"runtime.v1.PullImageRequest":                 {"image", "image.image"},
	"runtime.v1.ImageStatusRequest":               {"image", "image.image"},
	"runtime.v1.RemoveImageRequest":               {"image", "image.image"},
}

// validateRequest checks the generic rules of a request before any handler
// runs, so every RPC — built or not — rejects malformed input the same way.
func validateRequest(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	msg := m.ProtoReflect()
	for _, path := range requiredFields[msg.Descriptor().FullName()] {
		if !fieldSet(msg, path) {
			return invalidArgument("%s is required", path)
		}
	}
	switch r := req.(type) {
	case *runtime.RunPodSandboxRequest:
		return validatePodConfig(r.GetConfig())
	case *runtime.StopContainerRequest:
		if r.Timeout < 0 {
			return invalidArgument("timeout must not be negative, got %d", r.Timeout)
		}
	case *runtime.ExecSyncRequest:
		if r.Timeout < 0 {
			return invalidArgument("timeout must not be negative, got %d", r.Timeout)
		}
	case *runtime.ExecRequest:
		if !r.Stdin && !r.Stdout && !r.Stderr {
			return invalidArgument("one of stdin, stdout and stderr must be set")
		}
	case *runtime.AttachRequest:
		if !r.Stdin && !r.Stdout && !r.Stderr {
			return invalidArgument("one of stdin, stdout and stderr must be set")
		}
	}
	return nil
}

// validatePodConfig refuses what only a careless client sends: values
// that end up in files (resolv.conf, the hostname) or in CNI_ARGS, where a
// newline, a ';' or a NUL would add lines or arguments of their own.
func validatePodConfig(cfg *runtime.PodSandboxConfig) error {
	md := cfg.GetMetadata()
	for _, f := range []struct{ field, value string }{
		{"config.metadata.name", md.GetName()},
		{"config.metadata.namespace", md.GetNamespace()},
		{"config.metadata.uid", md.GetUid()},
	} {
		// CNI_ARGS is "K=V;K=V": these three go into it as values.
		if r, bad := firstRune(f.value, func(r rune) bool { return unsafeRune(r) || r == ';' || r == '=' }); bad {
			return invalidArgument("%s %q contains %q, which cannot be passed to the network plugins", f.field, f.value, r)
		}
	}
	// A host-network pod keeps the node's name: kubelet sends it, crid
	// does not use it.
	hostNetwork := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
	if h := cfg.GetHostname(); h != "" && !hostNetwork && !validHostname(h) {
		return invalidArgument("config.hostname %q is not a valid host name (at most 64 letters, digits, '-' and '.', in labels of 1-63 that neither start nor end with '-')", h)
	}
	dns := cfg.GetDnsConfig()
	for i, s := range dns.GetServers() {
		if _, err := netip.ParseAddr(s); err != nil {
			return invalidArgument("config.dns_config.servers[%d] %q is not an IP address", i, s)
		}
	}
	for i, s := range dns.GetSearches() {
		if err := resolvConfWord(s); err != nil {
			return invalidArgument("config.dns_config.searches[%d] %q %v", i, s, err)
		}
	}
	for i, s := range dns.GetOptions() {
		if err := resolvConfWord(s); err != nil {
			return invalidArgument("config.dns_config.options[%d] %q %v", i, s, err)
		}
	}
	return validatePortMappings(cfg.GetPortMappings())
}

// unsafeRune is a control character (newline, NUL…) or an invalid byte.
func unsafeRune(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }

// resolvConfWord checks one search domain or option: it is written into
// resolv.conf as one word of one line, where a blank starts another word,
// a newline another line and ';' or '#' a comment.
func resolvConfWord(s string) error {
	if s == "" {
		return fmt.Errorf("is empty")
	}
	if r, bad := firstRune(s, func(r rune) bool { return unsafeRune(r) || unicode.IsSpace(r) || r == ';' || r == '#' }); bad {
		return fmt.Errorf("contains %q", r)
	}
	return nil
}

// firstRune returns the first rune of s for which bad is true.
func firstRune(s string, bad func(rune) bool) (rune, bool) {
	for _, r := range s {
		if bad(r) {
			return r, true
		}
	}
	return 0, false
}

// validHostname accepts what sethostname(2) and resolvers accept: at most
// HOST_NAME_MAX (64) bytes of dot-separated labels of 1-63 letters,
// digits and '-', none starting or ending with '-' (RFC 1123).
func validHostname(h string) bool {
	if len(h) > 64 {
		return false
	}
	// A fully qualified name may end with the root's dot: kubelet sends
	// "<pod>.<subdomain>.<namespace>.svc." for setHostnameAsFQDN when its
	// cluster domain is empty.
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validatePortMappings(pms []*runtime.PortMapping) error {
	for i, pm := range pms {
		field := fmt.Sprintf("config.port_mappings[%d]", i)
		if pm == nil {
			return invalidArgument("%s is null", field)
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return invalidArgument("%s.container_port %d is not a port number (1-65535)", field, pm.ContainerPort)
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			return invalidArgument("%s.host_port %d is not a port number (0-65535)", field, pm.HostPort)
		}
		if _, ok := runtime.Protocol_name[int32(pm.Protocol)]; !ok {
			return invalidArgument("%s.protocol %d is not a known protocol", field, pm.Protocol)
		}
		if pm.HostIp != "" {
			if _, err := netip.ParseAddr(pm.HostIp); err != nil {
				return invalidArgument("%s.host_ip %q is not an IP address", field, pm.HostIp)
			}
		}
	}
	return nil
}

// fieldSet reports whether the dotted path is populated in msg.
func fieldSet(msg protoreflect.Message, path string) bool {
	parts := strings.Split(path, ".")
	for i, name := range parts {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || !msg.Has(fd) {
			return false
		}
		v := msg.Get(fd)
		switch {
		case fd.IsList():
			if v.List().Len() == 0 {
				return false
			}
		case fd.Kind() == protoreflect.StringKind:
			if strings.TrimSpace(v.String()) == "" {
				return false
			}
		case fd.Kind() == protoreflect.MessageKind && i < len(parts)-1:
			msg = v.Message()
		}
	}
	return true
}

func invalidArgument(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
