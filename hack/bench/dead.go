package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The dead-containers phase: kubelet garbage-collects exited containers by
// listing them, and a list reply over its 16 MiB limit stops that GC for
// good. -dead pods (host network, no infra: cheap) each get a container
// that exits at once, and the pods are stopped; then the lists, the Stream*
// RPCs, one status, and removing them all are measured.

// DeadResult is the dead-containers phase.
type DeadResult struct {
	Outcome
	Wanted        int     `json:"wanted"`
	Created       int     `json:"created"` // pods whose container ran and exited
	CreateSeconds float64 `json:"create_seconds"`
	CreateErrors  int     `json:"create_errors"`
	FirstErr      string  `json:"first_err,omitempty"`
	// Lists are the unary lists, with kubelet's 16 MiB reply limit and
	// without a limit (to learn the size).
	Lists   []DeadList   `json:"lists"`
	Streams []DeadStream `json:"streams"`
	// Status is ContainerStatus of one exited container at a time.
	Status Dist     `json:"status"`
	Mem    Snapshot `json:"mem"`
	// Removal: RemoveContainer + RemovePodSandbox of every pod at
	// -concurrency; Deciles are the seconds each tenth of it took.
	RemoveSeconds float64     `json:"remove_seconds"`
	RemoveErrors  int         `json:"remove_errors"`
	RemoveErr     string      `json:"remove_err,omitempty"`
	Deciles       []float64   `json:"deciles,omitempty"`
	Leaks         *LeakReport `json:"leaks,omitempty"`
}

// DeadList is one unary list call at one client limit.
type DeadList struct {
	Dist
	Name    string `json:"name"`
	Limit   int    `json:"limit"` // the client's reply limit, bytes
	Code    string `json:"code"`  // gRPC code of the first call
	Message string `json:"message,omitempty"`
	Bytes   int    `json:"bytes"`
	Items   int    `json:"items"`
}

// DeadStream is one Stream* RPC read to its end.
type DeadStream struct {
	Dist
	Name        string `json:"name"`
	Items       int    `json:"items"`
	Messages    int    `json:"messages"`
	MaxMsgBytes int    `json:"max_msg_bytes"`
}

func (b *bench) deadPhase(ctx context.Context) *DeadResult {
	n := b.o.dead
	if b.o.maxDead > 0 {
		n = min(n, b.o.maxDead)
	}
	res := &DeadResult{Outcome: ok(), Wanted: n}
	hostShape := shape{hostNetwork: true, pid: runtime.NamespaceMode_CONTAINER}
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = b.newPod("dead", hostShape)
		pods[i].command = []string{"true"}
	}
	b.logf("dead: creating %d pods whose container exits at once", n)
	var done atomic.Int64
	start := time.Now()
	errs := parallel(ctx, n, b.o.concurrency, func(ctx context.Context, i int) error {
		p := pods[i]
		if err := b.runSandbox(ctx, p); err != nil {
			return err
		}
		if err := b.runContainer(ctx, p); err != nil {
			return err
		}
		if _, err := call(ctx, b.c.rpcTimeout, b.c.rt.StopPodSandbox, &runtime.StopPodSandboxRequest{PodSandboxId: p.sandboxID}); err != nil {
			return fmt.Errorf("StopPodSandbox %s: %w", p.name, err)
		}
		if d := done.Add(1); d%1000 == 0 {
			b.logf("dead: %d of %d after %.0f s", d, n, time.Since(start).Seconds())
		}
		return nil
	})
	res.CreateSeconds = time.Since(start).Seconds()
	var first error
	res.CreateErrors, first = countErrors(errs)
	if first != nil {
		res.FirstErr = first.Error()
	}
	res.Created = n - res.CreateErrors
	b.takeRPCTimes()
	b.logf("dead: %d pods in %.0f s (%d errors)", res.Created, res.CreateSeconds, res.CreateErrors)
	var live []*pod
	for _, p := range pods {
		if p.started {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		res.Outcome = Outcome{State: stateFailed, Err: "no pod created: " + res.FirstErr}
	} else if ctx.Err() == nil {
		b.measureDead(ctx, res, live)
	}

	// Removal, with a fresh bound: an interrupted run still cleans up.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.phaseTimeout+time.Duration(n)*100*time.Millisecond)
	defer cancel()
	var removed atomic.Int64
	marks := make([]time.Time, 10)
	var owned []*pod
	for _, p := range pods {
		if p.sandboxID != "" {
			owned = append(owned, p)
		}
	}
	start = time.Now()
	errs = parallel(rctx, len(owned), b.o.concurrency, func(ctx context.Context, i int) error {
		err := b.removeDead(ctx, owned[i])
		if d := int(removed.Add(1)); len(owned) >= 10 && d%(len(owned)/10) == 0 && d/(len(owned)/10) <= 10 {
			marks[d/(len(owned)/10)-1] = time.Now()
		}
		return err
	})
	res.RemoveSeconds = time.Since(start).Seconds()
	res.RemoveErrors, first = countErrors(errs)
	if first != nil {
		res.RemoveErr = first.Error()
	}
	prev := start
	for _, m := range marks {
		if m.IsZero() {
			break
		}
		res.Deciles = append(res.Deciles, m.Sub(prev).Seconds())
		prev = m
	}
	b.takeRPCTimes()
	res.Leaks = b.host.leaks(rctx, 20*time.Second)
	b.logf("dead: removed %d pods in %.0f s (%d errors), tenths %v, leaks: %s", len(owned), res.RemoveSeconds, res.RemoveErrors, res.Deciles, res.Leaks)
	return res
}

// unbounded is the reply limit of the calls that learn a list's size.
const unbounded = 1 << 30

func (b *bench) measureDead(ctx context.Context, res *DeadResult, live []*pod) {
	settle(ctx, 3*time.Second) // the last containers exit
	for _, name := range []string{"ListContainers", "ListPodSandbox"} {
		for _, limit := range []int{kubeletMaxRecv, unbounded} {
			res.Lists = append(res.Lists, b.deadList(ctx, name, limit))
		}
	}
	for _, name := range []string{"StreamContainers", "StreamPodSandboxes"} {
		res.Streams = append(res.Streams, b.deadStream(ctx, name))
	}
	rng := rand.New(rand.NewPCG(uint64(len(live)), 4))
	var times []time.Duration
	outcome := ok()
	for i := range b.o.samples {
		p := live[rng.IntN(len(live))]
		start := time.Now()
		st, err := call(ctx, b.c.rpcTimeout, b.c.rt.ContainerStatus, &runtime.ContainerStatusRequest{ContainerId: p.containerID})
		if err == nil && st.GetStatus().GetState() != runtime.ContainerState_CONTAINER_EXITED {
			err = fmt.Errorf("container of %s is %s, not exited", p.name, st.GetStatus().GetState())
		}
		if err != nil {
			if i == 0 {
				outcome = outcomeOf(err)
				break
			}
			continue
		}
		times = append(times, time.Since(start))
	}
	res.Status = newDist(outcome, times)
	var err error
	if res.Mem, err = takeSnapshot(b.o, b.ownContainer); err != nil {
		b.logf("dead: memory: %v", err)
	}
	for _, l := range res.Lists {
		b.logf("dead: %s (limit %d MiB): %s, %d items, %d bytes, p50 %.0f ms %s", l.Name, l.Limit>>20, l.Code, l.Items, l.Bytes, l.P50, firstLine(l.Message))
	}
	for _, s := range res.Streams {
		b.logf("dead: %s: %d items in %d messages (largest %d bytes), p50 %.0f ms (%s)", s.Name, s.Items, s.Messages, s.MaxMsgBytes, s.P50, s.State)
	}
	b.logf("dead: ContainerStatus p50 %.1f ms p99 %.1f ms; daemon %.1f MB", res.Status.P50, res.Status.P99, mb(res.Mem.DaemonKB))
}

// deadList calls a unary list a few times at one reply limit.
func (b *bench) deadList(ctx context.Context, name string, limit int) DeadList {
	l := DeadList{Name: name, Limit: limit, Code: "OK"}
	samples := 5
	if limit == unbounded {
		samples = 1
	}
	var times []time.Duration
	outcome := ok()
	for i := range samples {
		start := time.Now()
		resp, items, err := b.listCall(ctx, name, nil, grpc.MaxCallRecvMsgSize(limit))
		if err != nil {
			if i == 0 {
				st, _ := status.FromError(err)
				l.Code, l.Message = st.Code().String(), st.Message()
				outcome = Outcome{State: stateFailed, Err: err.Error()}
				break
			}
			continue
		}
		times = append(times, time.Since(start))
		l.Items, l.Bytes = items, proto.Size(resp)
	}
	l.Dist = newDist(outcome, times)
	return l
}

// deadStream reads a Stream* RPC to its end a few times.
func (b *bench) deadStream(ctx context.Context, name string) DeadStream {
	s := DeadStream{Name: name}
	var times []time.Duration
	outcome := ok()
	for i := range 3 {
		start := time.Now()
		items, msgs, largest, err := b.readStream(ctx, name)
		if err != nil {
			if i == 0 {
				outcome = outcomeOf(err)
				break
			}
			continue
		}
		times = append(times, time.Since(start))
		s.Items, s.Messages, s.MaxMsgBytes = items, msgs, largest
	}
	s.Dist = newDist(outcome, times)
	return s
}

func (b *bench) readStream(ctx context.Context, name string) (items, msgs, largest int, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.c.rpcTimeout)
	defer cancel()
	recv := func(next func() (proto.Message, int, error)) error {
		for {
			m, n, err := next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			items += n
			msgs++
			largest = max(largest, proto.Size(m))
		}
	}
	switch name {
	case "StreamContainers":
		st, err := b.c.rt.StreamContainers(ctx, &runtime.StreamContainersRequest{})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		err = recv(func() (proto.Message, int, error) {
			m, err := st.Recv()
			return m, len(m.GetContainers()), err
		})
		return items, msgs, largest, err
	case "StreamPodSandboxes":
		st, err := b.c.rt.StreamPodSandboxes(ctx, &runtime.StreamPodSandboxesRequest{})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		err = recv(func() (proto.Message, int, error) {
			m, err := st.Recv()
			return m, len(m.GetPodSandboxes()), err
		})
		return items, msgs, largest, err
	}
	return 0, 0, 0, fmt.Errorf("unknown stream %s", name)
}

// removeDead is what kubelet's GC does with a dead pod whose container
// exited: RemoveContainer, then RemovePodSandbox (the pod is stopped).
func (b *bench) removeDead(ctx context.Context, p *pod) error {
	var errs []error
	if p.containerID != "" {
		if _, err := call(ctx, b.c.rpcTimeout, b.c.rt.RemoveContainer, &runtime.RemoveContainerRequest{ContainerId: p.containerID}); err != nil {
			errs = append(errs, fmt.Errorf("RemoveContainer %s: %w", p.name, err))
		}
	}
	if _, err := call(ctx, b.c.rpcTimeout, b.c.rt.RemovePodSandbox, &runtime.RemovePodSandboxRequest{PodSandboxId: p.sandboxID}); err != nil {
		errs = append(errs, fmt.Errorf("RemovePodSandbox %s: %w", p.name, err))
	}
	if err := os.RemoveAll(filepath.Join(b.o.logDir, p.uid)); err != nil {
		errs = append(errs, fmt.Errorf("remove pod log dir: %w", err))
	}
	return errors.Join(errs...)
}
