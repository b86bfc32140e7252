package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/cni"
	"github.com/crid-dev/crid/oci/specgen"
)

// kubeAPIVersion is the version of the kubelet runtime API crid speaks, as
// the CRI's Version RPC reports it.
const kubeAPIVersion = "0.1.0"

// Version reports crid's name and version.
func (s *runtimeService) Version(context.Context, *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       Name,
		RuntimeVersion:    s.opts.Version,
		RuntimeApiVersion: "v1",
	}, nil
}

// Status reports whether the runtime and the pod network are ready, the
// runtime handlers and their features, and with verbose the effective config.
func (s *runtimeService) Status(_ context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	network := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true}
	if err := s.opts.CNI.Ready(); err != nil {
		network.Status = false
		network.Reason = "NetworkPluginNotReady"
		network.Message = fmt.Sprintf("Network plugin returns error: %v", err)
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{
			{Type: runtime.RuntimeReady, Status: true},
			network,
		}},
		// Built in oci/specgen: the Strict and Merge policies, "rro"
		// mounts (runc's mount_setattr, kernels from 5.12) and the
		// mount_options of specgen.MountOptions (KEP-5855).
		Features: &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true, MountOptions: true, UserNamespacesHostNetwork: s.opts.UsernsSupport == nil},
	}
	// "" is what kubelet sends for pods without a RuntimeClass: the
	// default handler, listed first as containerd and CRI-O do.
	for _, h := range append([]string{""}, s.opts.Config.Runtime.HandlerNames()...) {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{
			Name:     h,
			Features: &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: s.opts.UsernsSupport == nil},
		})
	}
	if req.Verbose {
		cfg, err := json.Marshal(s.opts.Config)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode config: %v", err)
		}
		rc, err := json.Marshal(map[string]string{"podCIDR": s.opts.CNI.PodCIDR()})
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode runtime config: %v", err)
		}
		// streamAddress says where the streaming URLs point; goroutines
		// is a leak check for operators and tests alike.
		resp.Info = map[string]string{"config": string(cfg), "apparmor": s.appArmor.Status().String(), "runtimeConfig": string(rc),
			"streamAddress": s.StreamAddress(), "goroutines": strconv.Itoa(goruntime.NumGoroutine()),
			"mountOptions": strings.Join(specgen.MountOptions, ","), "userNamespaces": usernsStatus(s.opts.UsernsSupport, s.opts.UsernsNoIdmapTmpfs)}
	}
	return resp, nil
}

// UpdateRuntimeConfig takes the node's pod CIDR from kubelet: stored across
// restarts, shown in Status (verbose, "runtimeConfig") and handed to CNI
// plugins that declare the ipRanges capability. An empty CIDR changes
// nothing.
func (s *runtimeService) UpdateRuntimeConfig(_ context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtime.UpdateRuntimeConfigResponse{}, nil
	}
	if err := s.opts.CNI.SetPodCIDR(cidr); err != nil {
		if errors.Is(err, cni.ErrInvalidPodCIDR) {
			return nil, invalidArgument("runtime_config.network_config.pod_cidr: %v", err)
		}
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}

// RuntimeConfig reports the cgroup driver kubelet must match.
func (s *runtimeService) RuntimeConfig(context.Context, *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	driver := runtime.CgroupDriver_CGROUPFS
	if s.opts.Cgroups.Driver() == cgroupmgr.Systemd {
		driver = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// usernsStatus says whether pods may have user namespaces of their own,
// and why not when they may not.
func usernsStatus(err error, noIdmapTmpfs bool) string {
	if err != nil {
		return "not supported: " + err.Error()
	}
	if noIdmapTmpfs {
		return "supported: mode POD (one uid and one gid mapping from container ID 0; idmapped layers and bind mounts; this kernel cannot idmap a tmpfs, so the pod's /dev/shm and files are owned by its mapped root and tmpfs bind mounts are refused); also on the host network, with the node's /sys bound read-only"
	}
	return "supported: mode POD (one uid and one gid mapping from container ID 0; idmapped layers and bind mounts); also on the host network, with the node's /sys bound read-only"
}
