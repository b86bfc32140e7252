package cri

import (
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamBatch is how many items one message of a Stream* RPC carries at
// most (lists, stats, metrics).
const streamBatch = 100

// streamBatchBytes bounds a message of a Stream* RPC by size too: items
// with large annotations (kubelet allows 256 KiB per object) would make a
// batch of streamBatch larger than MaxMsgSize. Under gRPC's default 4 MiB
// receive limit, so that a client which never raised it reads them too.
const streamBatchBytes = 2 << 20

// sendBatches sends items in messages of at most streamBatch items and
// about streamBatchBytes (a single larger item goes alone); an empty list
// sends nothing (the end of the stream says it all).
func sendBatches[T proto.Message](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n, size := 0, 0
		for n < len(items) && n < streamBatch {
			// An item's size in the reply: its own plus tag and length.
			sz := proto.Size(items[n]) + 8
			if n > 0 && size+sz > streamBatchBytes {
				break
			}
			n, size = n+1, size+sz
		}
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// StreamPodSandboxes is ListPodSandbox in batches.
func (s *runtimeService) StreamPodSandboxes(req *runtime.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxesResponse]) error {
	resp, err := s.ListPodSandbox(stream.Context(), &runtime.ListPodSandboxRequest{Filter: req.Filter})
	if err != nil {
		return err
	}
	return sendBatches(resp.Items, func(b []*runtime.PodSandbox) error {
		return stream.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: b})
	})
}

// StreamContainers is ListContainers in batches.
func (s *runtimeService) StreamContainers(req *runtime.StreamContainersRequest, stream grpc.ServerStreamingServer[runtime.StreamContainersResponse]) error {
	resp, err := s.ListContainers(stream.Context(), &runtime.ListContainersRequest{Filter: req.Filter})
	if err != nil {
		return err
	}
	return sendBatches(resp.Containers, func(b []*runtime.Container) error {
		return stream.Send(&runtime.StreamContainersResponse{Containers: b})
	})
}

// StreamImages is ListImages in batches.
func (s *imageService) StreamImages(req *runtime.StreamImagesRequest, stream grpc.ServerStreamingServer[runtime.StreamImagesResponse]) error {
	resp, err := s.ListImages(stream.Context(), &runtime.ListImagesRequest{Filter: req.Filter})
	if err != nil {
		return err
	}
	return sendBatches(resp.Images, func(b []*runtime.Image) error {
		return stream.Send(&runtime.StreamImagesResponse{Images: b})
	})
}
