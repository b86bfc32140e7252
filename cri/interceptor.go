package cri

import (
	"context"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/klog/v2"

	"github.com/crid-dev/crid/metrics"
)

// unaryInterceptor validates, logs, measures and guards every unary RPC: a panic in a
// handler becomes codes.Internal with its stack in the log, never a crash.
func unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "Panic in RPC handler", append(requestKeys(req), "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))...)
			resp, err = nil, status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
		}
		logRPC(info.FullMethod, req, start, err)
	}()
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	resp, err = handler(ctx, req)
	if err == nil {
		err = checkReplySize(info.FullMethod, resp)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// streamInterceptor guards, logs and measures server-streaming RPCs. Their requests
// (the Stream* lists, events) hold only optional filters, so there is
// nothing to validate up front.
func streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "Panic in streaming RPC handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
		}
		logRPC(info.FullMethod, nil, start, err)
	}()
	return handler(srv, ss)
}

// logRPC records the call in the metrics, and logs successes at V(2) and
// every failure, with the IDs of the request as keys so one pod's or
// container's story can be grepped.
func logRPC(method string, req any, start time.Time, err error) {
	code, took := status.Code(err), time.Since(start)
	metrics.RPC(method, code.String(), took)
	kv := append([]any{"method", method, "duration", took, "code", code.String()}, requestKeys(req)...)
	if err != nil {
		klog.ErrorS(err, "RPC failed", kv...)
		return
	}
	klog.V(2).InfoS("RPC", kv...)
}

// requestKeys extracts the pod sandbox and container IDs a request names.
func requestKeys(req any) []any {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return nil
	}
	msg := m.ProtoReflect()
	var kv []any
	for _, f := range []struct{ field, key string }{{"pod_sandbox_id", "podSandboxID"}, {"container_id", "containerID"}} {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(f.field))
		if fd != nil && fd.Kind() == protoreflect.StringKind && msg.Has(fd) {
			kv = append(kv, f.key, msg.Get(fd).String())
		}
	}
	return kv
}
