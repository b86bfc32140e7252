package cri

import (
	"path"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// streamOf names, for each unary list, the Stream* RPC (KEP-5825) that
// returns the same items in bounded messages.
var streamOf = map[string]string{
	"ListPodSandbox":        "StreamPodSandboxes",
	"ListContainers":        "StreamContainers",
	"ListImages":            "StreamImages",
	"ListContainerStats":    "StreamContainerStats",
	"ListPodSandboxStats":   "StreamPodSandboxStats",
	"ListPodSandboxMetrics": "StreamPodSandboxMetrics",
}

// checkReplySize fails a list whose reply is over MaxMsgSize with a
// ResourceExhausted that says which streaming RPC to call instead. Sent,
// kubelet would refuse it with gRPC's "received message larger than max",
// which names no way out: its garbage collector stops for good on it
// (kubernetes #134750). Only the lists are measured: their size grows
// with the node, and measuring costs a walk of the reply.
func checkReplySize(fullMethod string, resp any) error {
	name := path.Base(fullMethod)
	stream, ok := streamOf[name]
	if !ok {
		return nil
	}
	m, ok := resp.(proto.Message)
	if !ok {
		return nil
	}
	if n := proto.Size(m); n > MaxMsgSize {
		return status.Errorf(codes.ResourceExhausted,
			"%s: the reply is %.1f MiB, over the %d MiB kubelet accepts in a gRPC message; call %s, which returns the same items in bounded messages",
			name, float64(n)/(1<<20), MaxMsgSize>>20, stream)
	}
	return nil
}
