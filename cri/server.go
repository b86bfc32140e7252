// Package cri is crid's gRPC front: it serves the CRI RuntimeService and
// ImageService (runtime/v1), validates requests, translates them into calls
// on the domain packages and maps their errors to gRPC codes. One file per
// group of RPCs; RPCs not built yet answer codes.Unimplemented through the
// generated Unimplemented servers.
package cri

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/apparmor"
	"github.com/crid-dev/crid/cgroupmgr"
	"github.com/crid-dev/crid/cni"
	"github.com/crid-dev/crid/config"
	"github.com/crid-dev/crid/events"
	"github.com/crid-dev/crid/imageservice"
	"github.com/crid-dev/crid/nri"
	"github.com/crid-dev/crid/oci"
	"github.com/crid-dev/crid/oci/specgen"
	"github.com/crid-dev/crid/podsandbox"
)

// Name is the runtime name reported by Version.
const Name = "crid"

// MaxMsgSize is what kubelet's CRI client accepts in one message
// (k8s.io/cri-client's maxMsgSize, the MaxCallRecvMsgSize it dials with):
// crid receives up to it (gRPC's server default, 4 MiB, would refuse a
// CreateContainer kubelet may send), and a list reply over it fails with a
// ResourceExhausted that names the Stream* RPC to call (checkReplySize).
// The send side keeps gRPC's default (no bound): an ExecSync reply carries
// up to 16 MiB on each of stdout and stderr, for clients that accept it.
const MaxMsgSize = 16 << 20

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
	// StreamListener serves the Exec, Attach and PortForward URLs.
	StreamListener net.Listener
	// NRI relays the lifecycle to NRI plugins (StartNRI starts it); nil
	// means no NRI.
	NRI *nri.NRI
	// Register adds other services to the socket (crid's admin API): they
	// get the same interceptors, logging and panic guard.
	Register []func(grpc.ServiceRegistrar)
	// UsernsSupport is nil when the node runs pods in user namespaces of
	// their own (checked once at start), else why not.
	UsernsSupport error
	// UsernsNoIdmapTmpfs is set when the kernel cannot idmap a tmpfs:
	// user-namespaced pods' /dev/shm and files are owned by their mapped
	// root, and tmpfs bind mounts are refused.
	UsernsNoIdmapTmpfs bool
}

// Server serves the CRI on a listener.
type Server struct {
	opts Options
	grpc *grpc.Server
	// hostCaps are crid's own capabilities: what privileged containers
	// and "ALL" get.
	hostCaps []string
	stream   *streamServer
	// stats keeps the last CPU samples, for usage_nano_cores.
	stats statsState
	// samples are what the stats lists read (cri/stats_samples.go).
	samples *statSamples
	// nri is the lifecycle as NRI plugins see it (cri/nri.go).
	nri *nriBridge
	// appArmor is the node's AppArmor: profile checks and crid-default.
	appArmor *apparmor.Host
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

// New builds the gRPC server with crid's interceptors and both services,
// and the streaming server.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, appArmor: apparmor.New("", ""), samples: newStatSamples(opts)}
	s.nri = newNRIBridge(s, opts.NRI)
	if opts.StreamListener == nil {
		return nil, fmt.Errorf("cri: no listener for the streaming server")
	}
	stream, err := newStreamServer(s, opts.StreamListener, opts.Config.Stream.IdleTimeout.Std())
	if err != nil {
		return nil, err
	}
	s.stream = stream
	if caps, err := oci.HostCapabilities(); err == nil {
		s.hostCaps = caps
	} else {
		klog.ErrorS(err, "Reading crid's capabilities; privileged containers get the default set")
		s.hostCaps = specgen.DefaultCapabilities
	}
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(MaxMsgSize),
		grpc.ChainUnaryInterceptor(unaryInterceptor),
		grpc.ChainStreamInterceptor(streamInterceptor),
	)
	runtime.RegisterRuntimeServiceServer(s.grpc, &runtimeService{Server: s})
	runtime.RegisterImageServiceServer(s.grpc, &imageService{Server: s})
	for _, r := range opts.Register {
		r(s.grpc)
	}
	return s, nil
}

// Serve accepts connections on l until Stop or GracefulStop, and serves
// the streaming URLs and retakes the stats samples meanwhile.
func (s *Server) Serve(l net.Listener) error {
	done := make(chan struct{})
	go func() { s.stream.serve(); close(done) }() // ends when the stream server is closed
	ctx, cancel := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() { s.samples.run(ctx); close(sampled) }() // ends with Serve
	defer func() { s.stream.close(); cancel(); <-done; <-sampled }()
	return s.grpc.Serve(l)
}

// StreamAddress is where the streaming server listens.
func (s *Server) StreamAddress() string { return s.stream.l.Addr().String() }

// GracefulStop stops accepting and waits for in-flight RPCs. Open streams
// are cut: they are bound to this process.
func (s *Server) GracefulStop() { s.stream.close(); s.grpc.GracefulStop() }

// Stop closes every connection and cancels in-flight RPCs.
func (s *Server) Stop() { s.stream.close(); s.grpc.Stop() }
