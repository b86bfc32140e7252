package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// client is a CRI connection with the timeouts kubelet uses.
type client struct {
	conn *grpc.ClientConn
	rt   runtime.RuntimeServiceClient
	img  runtime.ImageServiceClient
	// rpcTimeout bounds each RPC; RunPodSandbox gets twice as long and
	// PullImage pullTimeout, as with kubelet.
	rpcTimeout  time.Duration
	pullTimeout time.Duration
}

func dial(endpoint string, rpcTimeout, pullTimeout time.Duration) (*client, error) {
	target := endpoint
	if !strings.HasPrefix(target, "unix://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// kubelet's limit on a reply.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(kubeletMaxRecv)),
		// Reconnect soon after a daemon restart instead of gRPC's
		// default backoff (1 s, growing to 2 min).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", endpoint, err)
	}
	return &client{
		conn: conn, rt: runtime.NewRuntimeServiceClient(conn), img: runtime.NewImageServiceClient(conn),
		rpcTimeout: rpcTimeout, pullTimeout: pullTimeout,
	}, nil
}

// kubeletMaxRecv is the largest reply kubelet's CRI client accepts.
const kubeletMaxRecv = 16 << 20

// dialFast is a connection that retries every 10 ms, to time a daemon
// coming back.
func dialFast(endpoint string, rpcTimeout time.Duration) (*client, error) {
	target := endpoint
	if !strings.HasPrefix(target, "unix://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(kubeletMaxRecv)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1, MaxDelay: 10 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", endpoint, err)
	}
	return &client{conn: conn, rt: runtime.NewRuntimeServiceClient(conn), img: runtime.NewImageServiceClient(conn),
		rpcTimeout: rpcTimeout, pullTimeout: rpcTimeout}, nil
}

func (c *client) Close() error { return c.conn.Close() }

// call runs one RPC under a deadline of d.
func call[Req, Resp any](ctx context.Context, d time.Duration, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return rpc(ctx, req)
}

// waitReady polls Version until the runtime answers or timeout passes; it
// returns "name version".
func (c *client) waitReady(ctx context.Context, timeout time.Duration, alive func() error) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := call(ctx, 2*time.Second, c.rt.Version, &runtime.VersionRequest{})
		if err == nil {
			return resp.RuntimeName + " " + resp.RuntimeVersion, nil
		}
		if alive != nil {
			if aerr := alive(); aerr != nil {
				return "", fmt.Errorf("runtime exited before answering: %w (last error: %w)", aerr, err)
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no answer within %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shape is one pod layout.
type shape struct {
	hostNetwork bool
	// pid is POD (left unset, as crictl and critest send it: the runtime
	// needs a PID 1 for the pod) or CONTAINER (what kubelet sends).
	pid runtime.NamespaceMode
}

func (s shape) String() string {
	n := "pod network"
	if s.hostNetwork {
		n = "host network"
	}
	p := "pid CONTAINER (kubelet)"
	if s.pid == runtime.NamespaceMode_POD {
		p = "pid POD (unset: crictl/critest)"
	}
	return n + ", " + p
}

// benchNamespace is the Kubernetes namespace of every benchmark pod.
const benchNamespace = "crid-bench"

// kubeletShape is what kubelet sends for an ordinary pod.
var kubeletShape = shape{pid: runtime.NamespaceMode_CONTAINER}

// pod is one pod the benchmark created, with what it got back.
type pod struct {
	name, uid string
	shape     shape
	// command is the container's; nil means sleep 3600.
	command []string
	// ctlMount mounts the benchmark's control dir read-only at /bench-ctl
	// (the sweep's containers look there for the switch to start logging).
	ctlMount    bool
	sandboxID   string
	sandboxCfg  *runtime.PodSandboxConfig
	containerID string
	started     bool
}

// bench holds what every phase shares for one runtime.
type bench struct {
	o      *options
	c      *client
	host   *hostProbe
	serial atomic.Int64
	runID  string

	mu         sync.Mutex
	containers map[string]bool // IDs of every container created, to tell workloads apart
	sandboxes  map[string]bool
	rpcTimes   map[string][]time.Duration // successful RPCs by name, since takeRPCTimes
}

func newBench(o *options, c *client, host *hostProbe) *bench {
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	return &bench{o: o, c: c, host: host, runID: hex.EncodeToString(id),
		containers: map[string]bool{}, sandboxes: map[string]bool{}, rpcTimes: map[string][]time.Duration{}}
}

// timed runs one RPC and records its latency when it succeeds.
func timed[Req, Resp any](b *bench, ctx context.Context, d time.Duration, name string, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	start := time.Now()
	resp, err := call(ctx, d, rpc, req)
	if err == nil {
		took := time.Since(start)
		b.mu.Lock()
		b.rpcTimes[name] = append(b.rpcTimes[name], took)
		b.mu.Unlock()
	}
	return resp, err
}

// takeRPCTimes returns the latencies recorded since the last call, as
// distributions by RPC name, and starts afresh.
func (b *bench) takeRPCTimes() map[string]Dist {
	b.mu.Lock()
	times := b.rpcTimes
	b.rpcTimes = map[string][]time.Duration{}
	b.mu.Unlock()
	out := map[string]Dist{}
	for name, ts := range times {
		out[name] = newDist(ok(), ts)
	}
	return out
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s %s] %s\n", b.o.runtimeName, time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *bench) newPod(tag string, s shape) *pod {
	n := b.serial.Add(1)
	name := fmt.Sprintf("bench-%s-%04d", tag, n)
	return &pod{name: name, uid: fmt.Sprintf("%s-%06d", b.runID, n), shape: s}
}

func (b *bench) ownContainer(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.containers[id]
}

func (b *bench) sandboxConfig(p *pod) (*runtime.PodSandboxConfig, error) {
	logDir := filepath.Join(b.o.logDir, p.uid)
	// kubelet creates the pod log directory before RunPodSandbox.
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("pod log dir: %w", err)
	}
	ns := &runtime.NamespaceOption{Pid: p.shape.pid}
	if p.shape.hostNetwork {
		ns.Network = runtime.NamespaceMode_NODE
	}
	hostname := p.name
	if p.shape.hostNetwork {
		hostname = "" // kubelet names only pods with their own UTS namespace
	}
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: p.name, Namespace: benchNamespace, Uid: p.uid},
		Hostname:     hostname,
		LogDirectory: logDir,
		// What kubelet labels and annotates a pod with, so that list
		// replies have kubelet's size per item.
		Labels: map[string]string{
			"crid-bench":                  b.runID,
			"io.kubernetes.pod.name":      p.name,
			"io.kubernetes.pod.namespace": benchNamespace,
			"io.kubernetes.pod.uid":       p.uid,
		},
		Annotations: map[string]string{
			"kubernetes.io/config.seen":   "2026-01-01T00:00:00.000000000Z",
			"kubernetes.io/config.source": "api",
		},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent:    b.o.cgroupParent,
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: ns},
		},
	}, nil
}

func (b *bench) containerConfig(p *pod) *runtime.ContainerConfig {
	ns := &runtime.NamespaceOption{Pid: p.shape.pid}
	if p.shape.hostNetwork {
		ns.Network = runtime.NamespaceMode_NODE
	}
	cmd := p.command
	if cmd == nil {
		cmd = []string{"sleep", "3600"}
	}
	var mounts []*runtime.Mount
	if p.ctlMount {
		mounts = append(mounts, &runtime.Mount{ContainerPath: "/bench-ctl", HostPath: b.ctlDir(), Readonly: true})
	}
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "sleep"},
		Image:    &runtime.ImageSpec{Image: b.o.image},
		Command:  cmd,
		LogPath:  "sleep_0.log",
		Mounts:   mounts,
		Labels: map[string]string{
			"crid-bench":                   b.runID,
			"io.kubernetes.container.name": "sleep",
			"io.kubernetes.pod.name":       p.name,
			"io.kubernetes.pod.namespace":  benchNamespace,
			"io.kubernetes.pod.uid":        p.uid,
		},
		Annotations: map[string]string{
			"io.kubernetes.container.hash":                     "5d3f2c1a",
			"io.kubernetes.container.restartCount":             "0",
			"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
			"io.kubernetes.container.terminationMessagePolicy": "File",
			"io.kubernetes.pod.terminationGracePeriod":         "30",
		},
		Linux: &runtime.LinuxContainerConfig{
			// kubelet's BestEffort pod.
			Resources:       &runtime.LinuxContainerResources{CpuShares: 2, OomScoreAdj: 1000},
			SecurityContext: &runtime.LinuxContainerSecurityContext{NamespaceOptions: ns},
		},
	}
}

// runSandbox is RunPodSandbox for p.
func (b *bench) runSandbox(ctx context.Context, p *pod) error {
	cfg, err := b.sandboxConfig(p)
	if err != nil {
		return err
	}
	p.sandboxCfg = cfg
	resp, err := timed(b, ctx, 2*b.c.rpcTimeout, "RunPodSandbox", b.c.rt.RunPodSandbox, &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return fmt.Errorf("RunPodSandbox %s: %w", p.name, err)
	}
	p.sandboxID = resp.PodSandboxId
	b.mu.Lock()
	b.sandboxes[p.sandboxID] = true
	b.mu.Unlock()
	return nil
}

// runContainer is CreateContainer + StartContainer in p's sandbox.
func (b *bench) runContainer(ctx context.Context, p *pod) error {
	if err := b.createContainer(ctx, p); err != nil {
		return err
	}
	return b.startContainer(ctx, p)
}

// createContainer is CreateContainer in p's sandbox.
func (b *bench) createContainer(ctx context.Context, p *pod) error {
	resp, err := timed(b, ctx, b.c.rpcTimeout, "CreateContainer", b.c.rt.CreateContainer, &runtime.CreateContainerRequest{
		PodSandboxId: p.sandboxID, Config: b.containerConfig(p), SandboxConfig: p.sandboxCfg,
	})
	if err != nil {
		return fmt.Errorf("CreateContainer in %s: %w", p.name, err)
	}
	p.containerID = resp.ContainerId
	b.mu.Lock()
	b.containers[p.containerID] = true
	b.mu.Unlock()
	return nil
}

// startContainer is StartContainer of p's container.
func (b *bench) startContainer(ctx context.Context, p *pod) error {
	if _, err := timed(b, ctx, b.c.rpcTimeout, "StartContainer", b.c.rt.StartContainer, &runtime.StartContainerRequest{ContainerId: p.containerID}); err != nil {
		return fmt.Errorf("StartContainer in %s: %w", p.name, err)
	}
	p.started = true
	return nil
}

// teardown stops and removes p as kubelet does: the container first, then
// the sandbox. It tolerates a pod that never got a sandbox.
func (b *bench) teardown(ctx context.Context, p *pod) error {
	var errs []error
	if p.containerID != "" {
		if _, err := timed(b, ctx, b.c.rpcTimeout, "StopContainer", b.c.rt.StopContainer, &runtime.StopContainerRequest{ContainerId: p.containerID, Timeout: b.o.stopTimeout}); err != nil {
			errs = append(errs, fmt.Errorf("StopContainer %s: %w", p.name, err))
		}
		if _, err := timed(b, ctx, b.c.rpcTimeout, "RemoveContainer", b.c.rt.RemoveContainer, &runtime.RemoveContainerRequest{ContainerId: p.containerID}); err != nil {
			errs = append(errs, fmt.Errorf("RemoveContainer %s: %w", p.name, err))
		}
	}
	if p.sandboxID != "" {
		if _, err := timed(b, ctx, b.c.rpcTimeout, "StopPodSandbox", b.c.rt.StopPodSandbox, &runtime.StopPodSandboxRequest{PodSandboxId: p.sandboxID}); err != nil {
			errs = append(errs, fmt.Errorf("StopPodSandbox %s: %w", p.name, err))
		}
		if _, err := timed(b, ctx, b.c.rpcTimeout, "RemovePodSandbox", b.c.rt.RemovePodSandbox, &runtime.RemovePodSandboxRequest{PodSandboxId: p.sandboxID}); err != nil {
			errs = append(errs, fmt.Errorf("RemovePodSandbox %s: %w", p.name, err))
		}
	}
	if err := os.RemoveAll(filepath.Join(b.o.logDir, p.uid)); err != nil {
		errs = append(errs, fmt.Errorf("remove pod log dir: %w", err))
	}
	return errors.Join(errs...)
}

// teardownAll tears pods down at the configured concurrency and returns
// the wall time, the number of pods that failed and the first error.
func (b *bench) teardownAll(ctx context.Context, pods []*pod) (time.Duration, int, error) {
	start := time.Now()
	errs := parallel(ctx, len(pods), b.o.concurrency, func(ctx context.Context, i int) error {
		return b.teardown(ctx, pods[i])
	})
	wall := time.Since(start)
	n, first := countErrors(errs)
	return wall, n, first
}

// parallel runs fn(0..n-1) on conc workers and returns each one's error.
// Work not yet started when ctx ends fails with ctx's error.
func parallel(ctx context.Context, n, conc int, fn func(context.Context, int) error) []error {
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(conc, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := ctx.Err(); err != nil {
					errs[i] = err
					continue
				}
				errs[i] = fn(ctx, i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

func countErrors(errs []error) (int, error) {
	n := 0
	var first error
	for _, err := range errs {
		if err != nil {
			n++
			if first == nil {
				first = err
			}
		}
	}
	return n, first
}

// ensureImage pulls ref unless the runtime has it.
func (b *bench) ensureImage(ctx context.Context, ref string) error {
	st, err := call(ctx, b.c.rpcTimeout, b.c.img.ImageStatus, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		return fmt.Errorf("ImageStatus %s: %w", ref, err)
	}
	if st.Image != nil {
		return nil
	}
	if _, err := call(ctx, b.c.pullTimeout, b.c.img.PullImage, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("PullImage %s: %w", ref, err)
	}
	return nil
}

// removeEverything stops and removes every container and sandbox the
// runtime lists: run.sh calls it (crid-bench cleanup) before stopping a
// daemon whose state is private to the benchmark.
func removeEverything(ctx context.Context, c *client, stopTimeout int64) error {
	var errs []error
	// Without kubelet's reply limit: there may be many dead containers.
	big := grpc.MaxCallRecvMsgSize(unbounded)
	lctx, cancel := context.WithTimeout(ctx, c.rpcTimeout)
	defer cancel()
	cs, err := c.rt.ListContainers(lctx, &runtime.ListContainersRequest{}, big)
	if err != nil && !isUnimplemented(err) {
		errs = append(errs, fmt.Errorf("ListContainers: %w", err))
	}
	for _, ctr := range cs.GetContainers() {
		if _, err := call(ctx, c.rpcTimeout, c.rt.StopContainer, &runtime.StopContainerRequest{ContainerId: ctr.Id, Timeout: stopTimeout}); err != nil {
			errs = append(errs, fmt.Errorf("StopContainer %s: %w", ctr.Id, err))
		}
		if _, err := call(ctx, c.rpcTimeout, c.rt.RemoveContainer, &runtime.RemoveContainerRequest{ContainerId: ctr.Id}); err != nil {
			errs = append(errs, fmt.Errorf("RemoveContainer %s: %w", ctr.Id, err))
		}
	}
	sbs, err := c.rt.ListPodSandbox(lctx, &runtime.ListPodSandboxRequest{}, big)
	if err != nil && !isUnimplemented(err) {
		errs = append(errs, fmt.Errorf("ListPodSandbox: %w", err))
	}
	for _, sb := range sbs.GetItems() {
		if _, err := call(ctx, c.rpcTimeout, c.rt.StopPodSandbox, &runtime.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("StopPodSandbox %s: %w", sb.Id, err))
		}
		if _, err := call(ctx, c.rpcTimeout, c.rt.RemovePodSandbox, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("RemovePodSandbox %s: %w", sb.Id, err))
		}
	}
	if n := len(cs.GetContainers()) + len(sbs.GetItems()); n > 0 {
		fmt.Fprintf(os.Stderr, "crid-bench cleanup: %d containers, %d sandboxes were left; removed (%d errors)\n",
			len(cs.GetContainers()), len(sbs.GetItems()), len(errs))
	}
	return errors.Join(errs...)
}
