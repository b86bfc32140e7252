// Package cri is crid's gRPC front: it serves the CRI RuntimeService and
// ImageService (runtime/v1), validates requests, translates them into calls
// on the domain packages and maps their errors to gRPC codes. One file per
// group of RPCs; RPCs not built yet answer codes.Unimplemented through the
// generated Unimplemented servers.
package cri

import (
	"net"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/cni"
	"github.com/crid-dev/crid/config"
	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/oci/specgen"
	"github.com/crid-dev/crid/podsandbox"
)

// Name is the runtime name reported by Version.
const Name = "crid"

// Options are the daemon's parts the CRI server needs.
type Options struct {
	Config     config.Config
	Version    string
	CNI        *cni.Manager
	Cgroups    *cgroupmgr.Manager
	Images     *imageservice.Service
	Sandboxes  *podsandbox.Manager
	Containers *oci.Containers
	// Events feeds GetContainerEvents; nil answers Unimplemented.
	Events *events.Broadcaster
}

// Server serves the CRI on a listener.
type Server struct {
	opts Options
	grpc *grpc.Server
	// hostCaps are crid's own capabilities: what privileged containers
	// and "ALL" get.
	hostCaps []string
	// stats keeps the last CPU samples, for usage_nano_cores.
	stats statsState
}

// runtimeService and imageService are separate types because the two
// generated Unimplemented servers cannot both be embedded in one struct.
type runtimeService struct {
	runtime.UnimplementedRuntimeServiceServer
	*Server
}

type imageService struct {
	runtime.UnimplementedImageServiceServer
	*Server
}

// New builds the gRPC server with crid's interceptors and both services.
func New(opts Options) *Server {
	s := &Server{opts: opts}
	if caps, err := oci.HostCapabilities(); err == nil {
		s.hostCaps = caps
	} else {
		klog.ErrorS(err, "Reading crid's capabilities; privileged containers get the default set")
		s.hostCaps = specgen.DefaultCapabilities
	}
	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(unaryInterceptor),
		grpc.ChainStreamInterceptor(streamInterceptor),
	)
	runtime.RegisterRuntimeServiceServer(s.grpc, &runtimeService{Server: s})
	runtime.RegisterImageServiceServer(s.grpc, &imageService{Server: s})
	return s
}

// Serve accepts connections on l until Stop or GracefulStop.
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// GracefulStop stops accepting and waits for in-flight RPCs.
func (s *Server) GracefulStop() { s.grpc.GracefulStop() }

// Stop closes every connection and cancels in-flight RPCs.
func (s *Server) Stop() { s.grpc.Stop() }
