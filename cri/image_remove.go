package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes an image with all its tags and digests; removing an
// unknown image succeeds, so kubelet's GC can retry freely.
func (s *imageService) RemoveImage(_ context.Context, req *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	if err := s.opts.Images.Remove(req.Image.Image); err != nil {
		return nil, toStatus(err)
	}
	return &runtime.RemoveImageResponse{}, nil
}
