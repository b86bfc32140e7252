package cri

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Every path in the table must name real fields, or a typo would silently
// disable a check.
func TestRequiredFieldsTableMatchesDescriptors(t *testing.T) {
	for name, paths := range requiredFields {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, path := range paths {
			md := d.(protoreflect.MessageDescriptor)
			for _, part := range strings.Split(path, ".") {
				fd := md.Fields().ByName(protoreflect.Name(part))
				if fd == nil {
					t.Errorf("%s: no field %q in path %s", name, part, path)
					break
				}
				md = fd.Message()
			}
		}
	}
}

func TestValidateRequest(t *testing.T) {
	meta := &runtime.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}
	tests := []struct {
		name    string
		req     any
		wantErr string
	}{
		{"status without id", &runtime.PodSandboxStatusRequest{}, "pod_sandbox_id is required"},
		{"status blank id", &runtime.PodSandboxStatusRequest{PodSandboxId: "  "}, "pod_sandbox_id is required"},
		{"status ok", &runtime.PodSandboxStatusRequest{PodSandboxId: "abc"}, ""},
		{"run without config", &runtime.RunPodSandboxRequest{}, "config is required"},
		{"run without metadata", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{}}, "config.metadata is required"},
		{"run without uid", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n"}}}, "config.metadata.uid is required"},
		{"run bad port", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: meta,
			PortMappings: []*runtime.PortMapping{{ContainerPort: 80}, {ContainerPort: 70000}}}}, "config.port_mappings[1].container_port"},
		{"run bad host port", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: meta,
			PortMappings: []*runtime.PortMapping{{ContainerPort: 80, HostPort: -1}}}}, "config.port_mappings[0].host_port"},
		{"run bad protocol", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: meta,
			PortMappings: []*runtime.PortMapping{{ContainerPort: 80, Protocol: 9}}}}, "config.port_mappings[0].protocol"},
		{"run ok", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: meta}}, ""},
		{"create without image", &runtime.CreateContainerRequest{PodSandboxId: "p", Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "c"}}}, "config.image is required"},
		{"exec sync without cmd", &runtime.ExecSyncRequest{ContainerId: "c"}, "cmd is required"},
		{"exec sync negative timeout", &runtime.ExecSyncRequest{ContainerId: "c", Cmd: []string{"true"}, Timeout: -1}, "timeout"},
		{"exec without streams", &runtime.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}}, "stdin, stdout and stderr"},
		{"stop negative timeout", &runtime.StopContainerRequest{ContainerId: "c", Timeout: -5}, "timeout"},
		{"pull without image", &runtime.PullImageRequest{Image: &runtime.ImageSpec{}}, "image.image is required"},
		{"list has nothing required", &runtime.ListPodSandboxRequest{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateRequest(tc.req)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want InvalidArgument mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// Values that go into resolv.conf, the hostname or CNI_ARGS are refused
// with InvalidArgument naming the field when they could inject lines,
// words or arguments; what kubelet and critest send passes.
func TestValidatePodConfigInjection(t *testing.T) {
	base := func() *runtime.PodSandboxConfig {
		return &runtime.PodSandboxConfig{
			Metadata:  &runtime.PodSandboxMetadata{Name: "web-0", Namespace: "default", Uid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"},
			Hostname:  "web-0",
			DnsConfig: &runtime.DNSConfig{Servers: []string{"10.96.0.10", "fd00::a", "fe80::1%eth0"}, Searches: []string{"default.svc.cluster.local", "cluster.local"}, Options: []string{"ndots:5", "edns0"}},
			Linux:     &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{}}},
		}
	}
	for _, tc := range []struct {
		name, field string
		mutate      func(c *runtime.PodSandboxConfig)
	}{
		{"kubelet's config", "", func(*runtime.PodSandboxConfig) {}},
		{"critest's config", "", func(c *runtime.PodSandboxConfig) {
			c.Metadata.Name = "PodSandbox-for-create-container-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
			c.Hostname = "test-hostname"
			c.DnsConfig = &runtime.DNSConfig{Servers: []string{"10.10.10.10"}, Searches: []string{"google.com"}, Options: []string{"ndots:8"}}
		}},
		{"64-byte FQDN", "", func(c *runtime.PodSandboxConfig) { c.Hostname = strings.Repeat("a", 40) + ".example.svc.cluster.loc" }},
		{"host network keeps the node's name", "", func(c *runtime.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
			c.Hostname = strings.Repeat("node-name.", 10) + "example"
		}},
		{"name with ;", "config.metadata.name", func(c *runtime.PodSandboxConfig) { c.Metadata.Name = "web;K8S_POD_NAME=x" }},
		{"name with newline", "config.metadata.name", func(c *runtime.PodSandboxConfig) { c.Metadata.Name = "web\nx" }},
		{"namespace with NUL", "config.metadata.namespace", func(c *runtime.PodSandboxConfig) { c.Metadata.Namespace = "default\x00" }},
		{"namespace with =", "config.metadata.namespace", func(c *runtime.PodSandboxConfig) { c.Metadata.Namespace = "a=b" }},
		{"uid with ;", "config.metadata.uid", func(c *runtime.PodSandboxConfig) { c.Metadata.Uid = "u;IgnoreUnknown=0" }},
		{"hostname with newline", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "web\n127.0.0.1 evil" }},
		{"hostname with ;", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "web;x" }},
		{"hostname with NUL", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "web\x00" }},
		{"hostname with space", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "web 0" }},
		{"hostname with underscore", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "web_0" }},
		{"hostname too long", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = strings.Repeat("a", 65) }},
		{"hostname label too long", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = strings.Repeat("a", 64) }},
		{"hostname empty label", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "web..x" }},
		{"hostname two trailing dots", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "web.x.." }},
		{"hostname only a dot", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "." }},
		{"FQDN hostname with the root's dot", "", func(c *runtime.PodSandboxConfig) { c.Hostname = "hostfqdn-1.t.ns-7764.svc." }},
		{"hostname leading dash", "config.hostname", func(c *runtime.PodSandboxConfig) { c.Hostname = "-web" }},
		{"dns server with newline", "config.dns_config.servers[1]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Servers[1] = "10.0.0.1\nnameserver 1.2.3.4" }},
		{"dns server not an address", "config.dns_config.servers[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Servers[0] = "dns.example" }},
		{"search with newline", "config.dns_config.searches[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Searches[0] = "svc\nnameserver 6.6.6.6" }},
		{"search with ;", "config.dns_config.searches[1]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Searches[1] = "a;b" }},
		{"search with NUL", "config.dns_config.searches[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Searches[0] = "a\x00" }},
		{"search with space", "config.dns_config.searches[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Searches[0] = "a b" }},
		{"empty search", "config.dns_config.searches[1]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Searches[1] = "" }},
		{"option with newline", "config.dns_config.options[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Options[0] = "ndots:5\nnameserver 6.6.6.6" }},
		{"option with ;", "config.dns_config.options[1]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Options[1] = "edns0;x" }},
		{"option with NUL", "config.dns_config.options[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Options[0] = "\x00" }},
		{"option with #", "config.dns_config.options[0]", func(c *runtime.PodSandboxConfig) { c.DnsConfig.Options[0] = "ndots:5#x" }},
		{"empty SELinux options", "", func(c *runtime.PodSandboxConfig) { c.Linux.SecurityContext.SelinuxOptions = &runtime.SELinuxOption{} }},
		// Kubernetes' conformance specs set a level: taken, reported,
		// not applied (specgen.SELinuxNotApplied).
		{"SELinux level", "", func(c *runtime.PodSandboxConfig) {
			c.Linux.SecurityContext.SelinuxOptions = &runtime.SELinuxOption{Level: "s0:c1,c2"}
		}},
		{"port mapping host_ip", "config.port_mappings[0].host_ip", func(c *runtime.PodSandboxConfig) {
			c.PortMappings = []*runtime.PortMapping{{ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1\n"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mutate(cfg)
			err := validateRequest(&runtime.RunPodSandboxRequest{Config: cfg})
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field+" ") {
				t.Fatalf("error %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
}
