package cri

import (
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamBatch is how many items one message of a Stream* RPC carries (lists,
// stats, metrics): a few hundred KB at most.
const streamBatch = 100

// sendBatches sends items in messages of at most streamBatch; an empty
// list sends nothing (the end of the stream says it all).
func sendBatches[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), streamBatch)
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
