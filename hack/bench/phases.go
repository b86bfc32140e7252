package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pullPhase pulls the two bench images into the (fresh) store through the
// counting proxy, one after the other.
func (b *bench) pullPhase(ctx context.Context) *PullResult {
	res := &PullResult{Outcome: ok()}
	proxy, err := startProxy(b.o.proxyListen, b.o.registry)
	if err != nil {
		res.Outcome = Outcome{State: stateFailed, Err: err.Error()}
		return res
	}
	defer func() {
		if err := proxy.close(); err != nil {
			b.logf("%v", err)
		}
	}()
	reg, err := newRegistry(b.o.registry)
	if err != nil {
		res.Outcome = Outcome{State: stateFailed, Err: err.Error()}
		return res
	}
	fetched := map[string]int{}
	seen := map[string]bool{}
	for i, repo := range []string{benchRepoFirst, benchRepoSecond} {
		one := &res.First
		if i == 1 {
			one = &res.Second
		}
		*one = b.pullOne(ctx, reg, proxy, repo, seen, fetched)
		if i == 0 && !one.usable() {
			res.Outcome = one.Outcome
			res.Second.Outcome = Outcome{State: stateSkipped}
			return res
		}
	}
	for d, n := range fetched {
		if n > 1 {
			res.Twice = append(res.Twice, d)
		}
	}
	sort.Strings(res.Twice)
	files := b.pullOne(ctx, reg, proxy, benchRepoFiles, seen, map[string]int{})
	res.Files = &files
	res.Both = b.pullConcurrent(ctx, proxy, benchRepoFirst, benchRepoFiles)
	if b.o.floors && b.o.workDir != "" {
		scratch := filepath.Join(b.o.workDir, "pull-floor")
		res.FirstFloor = pullFloor(ctx, reg, scratch, benchRepoFirst)
		res.FilesFloor = pullFloor(ctx, reg, scratch, benchRepoFiles)
		res.BothFloor = pullFloor(ctx, reg, scratch, benchRepoFirst, benchRepoFiles)
		b.logf("pull floors: %.2f s, %.2f s (%d files), both at once %.2f s",
			res.FirstFloor.Seconds, res.FilesFloor.Seconds, res.FilesFloor.Files, res.BothFloor.Seconds)
	}
	return res
}

// pullConcurrent removes every bench image (the second shares the first's
// layers, which would stay) and pulls those of repos all at once.
func (b *bench) pullConcurrent(ctx context.Context, proxy *countingProxy, repos ...string) *ConcurrentPull {
	res := &ConcurrentPull{Outcome: ok(), Seconds: make([]float64, len(repos))}
	for _, repo := range []string{benchRepoFirst, benchRepoSecond, benchRepoFiles} {
		spec := &runtime.ImageSpec{Image: b.o.proxyListen + "/" + repo + ":" + imageTag(repo)}
		if _, err := call(ctx, b.c.rpcTimeout, b.c.img.RemoveImage, &runtime.RemoveImageRequest{Image: spec}); err != nil {
			res.Outcome = outcomeOf(fmt.Errorf("RemoveImage %s before the concurrent pull: %w", spec.Image, err))
			return res
		}
	}
	refs := make([]string, len(repos))
	for i, repo := range repos {
		refs[i] = b.o.proxyListen + "/" + repo + ":" + imageTag(repo)
	}
	res.Refs = refs
	proxy.take()
	start := time.Now()
	errs := parallel(ctx, len(refs), len(refs), func(ctx context.Context, i int) error {
		t := time.Now()
		_, err := call(ctx, b.c.pullTimeout, b.c.img.PullImage, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: refs[i]}})
		res.Seconds[i] = time.Since(t).Seconds()
		return err
	})
	res.WallSeconds = time.Since(start).Seconds()
	bytes, _ := proxy.take()
	for _, n := range bytes {
		res.BytesFetched += n
	}
	if n, err := countErrors(errs); n > 0 {
		res.Outcome = outcomeOf(err)
	}
	b.logf("pull of %d images at once: %.2f s, %.1f MB fetched", len(refs), res.WallSeconds, float64(res.BytesFetched)/1e6)
	return res
}

func (b *bench) pullOne(ctx context.Context, reg *registry, proxy *countingProxy, repo string, seen map[string]bool, fetched map[string]int) PullOne {
	ref := b.o.proxyListen + "/" + repo + ":" + imageTag(repo)
	one := PullOne{Outcome: ok(), Ref: ref}
	m, err := reg.getManifest(ctx, repo, imageTag(repo))
	if err != nil {
		one.Outcome = Outcome{State: stateFailed, Err: fmt.Sprintf("bench image (crid-bench image): %v", err)}
		return one
	}
	one.Layers = len(m.Layers)
	one.SizeBytes = m.Config.Size
	for _, l := range m.Layers {
		one.SizeBytes += l.Size
	}
	spec := &runtime.ImageSpec{Image: ref}
	st, err := call(ctx, b.c.rpcTimeout, b.c.img.ImageStatus, &runtime.ImageStatusRequest{Image: spec})
	if err != nil {
		one.Outcome = outcomeOf(fmt.Errorf("ImageStatus: %w", err))
		return one
	}
	if st.Image != nil {
		// Not an empty store (a reused root): measure a pull anyway.
		one.AlreadyPresent = true
		if _, err := call(ctx, b.c.rpcTimeout, b.c.img.RemoveImage, &runtime.RemoveImageRequest{Image: spec}); err != nil {
			one.Outcome = outcomeOf(fmt.Errorf("RemoveImage of the image already present: %w", err))
			return one
		}
	}
	proxy.take()
	start := time.Now()
	_, err = call(ctx, b.c.pullTimeout, b.c.img.PullImage, &runtime.PullImageRequest{Image: spec})
	one.Seconds = time.Since(start).Seconds()
	bytes, gets := proxy.take()
	for d, n := range bytes {
		one.BytesFetched += n
		if !seen[d] {
			one.NewBlobBytes += n
		}
		seen[d] = true
	}
	for d, n := range gets {
		one.BlobsFetched += n
		fetched[d] += n
	}
	if err != nil {
		one.Outcome = outcomeOf(fmt.Errorf("PullImage %s: %w", ref, err))
		return one
	}
	st, err = call(ctx, b.c.rpcTimeout, b.c.img.ImageStatus, &runtime.ImageStatusRequest{Image: spec})
	one.Present = err == nil && st.Image != nil
	b.logf("pull %s: %.2f s, %d blobs, %.1f MB fetched", ref, one.Seconds, one.BlobsFetched, float64(one.BytesFetched)/1e6)
	return one
}

// probe starts and tears down one pod of shape s, untimed, to learn
// whether the runtime supports its sandbox and its container; it also
// warms the runtime up.
func (b *bench) probe(ctx context.Context, s shape) (sandbox, containers Outcome) {
	p := b.newPod("probe", s)
	sandbox, containers = outcomeOf(b.runSandbox(ctx, p)), Outcome{State: stateSkipped}
	if sandbox.usable() {
		containers = outcomeOf(b.runContainer(ctx, p))
	}
	if err := b.teardown(ctx, p); err != nil {
		b.logf("probe teardown: %v", err)
	}
	return sandbox, containers
}

// startPods starts n pods of shape s at concurrency conc: each its sandbox
// and, when withContainers, its container. It returns every pod (failed
// ones included, for teardown), the wall time and the errors.
func (b *bench) startPods(ctx context.Context, tag string, s shape, n, conc int, withContainers bool) ([]*pod, time.Duration, int, error) {
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = b.newPod(tag, s)
	}
	start := time.Now()
	errs := parallel(ctx, n, conc, func(ctx context.Context, i int) error {
		if err := b.runSandbox(ctx, pods[i]); err != nil {
			return err
		}
		if withContainers {
			return b.runContainer(ctx, pods[i])
		}
		return nil
	})
	wall := time.Since(start)
	nErr, first := countErrors(errs)
	return pods, wall, nErr, first
}

// memoryPhase measures the runtime's PSS idle and with MemPods running
// pods of kubelet's shape on the pod network.
func (b *bench) memoryPhase(ctx context.Context) *MemResult {
	res := &MemResult{Outcome: ok(), Pods: b.o.memPods}
	var err error
	if res.Idle, err = takeSnapshot(b.o, b.ownContainer); err != nil {
		res.Outcome = Outcome{State: stateFailed, Err: err.Error()}
		return res
	}
	sb, ctr := b.probe(ctx, kubeletShape)
	if !sb.usable() {
		res.Outcome = sb
		return res
	}
	res.Containers = ctr
	// The probe's shim or transient processes must be gone before the
	// pods start; the idle reading above was taken before it.
	b.host.leaks(ctx, 10*time.Second)
	pods, wall, nErr, first := b.startPods(ctx, "mem", kubeletShape, b.o.memPods, b.o.concurrency, ctr.usable())
	b.logf("memory: %d pods started in %.1f s (%d errors)", b.o.memPods, wall.Seconds(), nErr)
	if nErr > 0 {
		res.Outcome = Outcome{State: stateFailed, Err: fmt.Sprintf("%d of %d pods failed: %v", nErr, b.o.memPods, first)}
	} else {
		time.Sleep(b.o.memSettle)
		if res.Loaded, err = takeSnapshot(b.o, b.ownContainer); err != nil {
			res.Outcome = Outcome{State: stateFailed, Err: err.Error()}
		} else {
			res.MarginalKB = float64(res.Loaded.TotalKB-res.Idle.TotalKB) / float64(b.o.memPods)
		}
	}
	if _, n, err := b.teardownAll(ctx, pods); n > 0 {
		b.logf("memory teardown: %d pods failed: %v", n, err)
	}
	return res
}

// seqShapes are the four shapes of the sequential pod start.
var seqShapes = []shape{
	{pid: runtime.NamespaceMode_CONTAINER},
	{hostNetwork: true, pid: runtime.NamespaceMode_CONTAINER},
	{pid: runtime.NamespaceMode_POD},
	{hostNetwork: true, pid: runtime.NamespaceMode_POD},
}

// seqPhase starts Pods pods of shape s one after the other, timing each
// RunPodSandbox and each whole pod, then tears them down (untimed). A step
// whose first attempt fails is reported with that error and not tried
// again; later failures are counted.
func (b *bench) seqPhase(ctx context.Context, s shape) *SeqResult {
	res := &SeqResult{Name: s.String(), HostNetwork: s.hostNetwork, Pid: s.pid.String(), Pods: b.o.pods}
	sbOut, ctrOut := ok(), ok()
	var sbTimes, totalTimes, ctrTimes []time.Duration
	var pods []*pod
	b.takeRPCTimes() // the probe's and earlier phases'
	for i := range b.o.pods {
		if ctx.Err() != nil {
			res.Errors++
			res.FirstErr = ctx.Err().Error()
			break
		}
		p := b.newPod("seq", s)
		pods = append(pods, p)
		start := time.Now()
		err := b.runSandbox(ctx, p)
		sbDone := time.Since(start)
		if err != nil {
			if i == 0 {
				sbOut = outcomeOf(err)
				ctrOut = Outcome{State: stateSkipped}
				break
			}
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			continue
		}
		sbTimes = append(sbTimes, sbDone)
		if !ctrOut.usable() {
			continue
		}
		ctrStart := time.Now()
		if err := b.runContainer(ctx, p); err != nil {
			if len(totalTimes) == 0 && res.Errors == 0 {
				ctrOut = outcomeOf(err)
				continue
			}
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			continue
		}
		ctrTimes = append(ctrTimes, time.Since(ctrStart))
		totalTimes = append(totalTimes, time.Since(start))
	}
	rpcs := b.takeRPCTimes()
	if kinds, _, err := runtimeProcs(b.o, b.ownContainer); err == nil {
		for _, k := range kinds {
			if k == kindInfra {
				res.Infra++
			}
		}
	}
	res.Sandbox = newDist(sbOut, sbTimes)
	res.Total = newDist(ctrOut, totalTimes)
	res.Container = newDist(ctrOut, ctrTimes)
	res.Create, res.Start = rpcs["CreateContainer"], rpcs["StartContainer"]
	if !ctrOut.usable() {
		res.Create, res.Start = Dist{Outcome: ctrOut}, Dist{Outcome: ctrOut}
	}
	if !sbOut.usable() {
		res.Total = Dist{Outcome: sbOut}
		res.Create, res.Start, res.Container = res.Total, res.Total, res.Total
	}
	_, n, err := b.teardownAll(ctx, pods)
	res.TeardownErrors = n
	if n > 0 {
		b.logf("seq teardown: %d pods failed: %v", n, err)
	}
	res.Leaks = b.host.leaks(ctx, 10*time.Second)
	b.logf("seq %s: sandbox p50 %.0f ms (%s), create+start p50 %.0f ms, pod p50 %.0f ms (%s), %d errors, leaks: %s",
		s, res.Sandbox.P50, res.Sandbox.State, res.Container.P50, res.Total.P50, res.Total.State, res.Errors, res.Leaks)
	return res
}

// concurrentPhase starts ConcurrentPods pods of kubelet's shape at
// Concurrency, then stops and removes them all, timing both, and checks
// that nothing leaked.
func (b *bench) concurrentPhase(ctx context.Context) *ConcurrentResult {
	res := &ConcurrentResult{Outcome: ok(), Pods: b.o.concurrentPods, Concurrency: b.o.concurrency}
	sb, ctr := b.probe(ctx, kubeletShape)
	if !sb.usable() {
		res.Outcome = sb
		return res
	}
	res.Containers = ctr
	b.host.leaks(ctx, 10*time.Second)
	b.takeRPCTimes()
	pods, wall, nErr, first := b.startPods(ctx, "conc", kubeletShape, b.o.concurrentPods, b.o.concurrency, ctr.usable())
	res.RPCs = b.takeRPCTimes()
	res.StartSeconds = wall.Seconds()
	res.StartErrors = nErr
	res.Started = b.o.concurrentPods - nErr
	if first != nil {
		res.FirstErr = first.Error()
	}
	if snap, err := takeSnapshot(b.o, b.ownContainer); err == nil {
		res.DaemonPSSAtAll, res.TotalPSSAtAll = snap.DaemonKB, snap.TotalKB
	} else {
		b.logf("snapshot at %d pods: %v", b.o.concurrentPods, err)
	}
	stopWall, nStop, stopErr := b.teardownAll(ctx, pods)
	for name, d := range b.takeRPCTimes() {
		res.RPCs[name] = d
	}
	res.StopSeconds = stopWall.Seconds()
	res.StopErrors = nStop
	if stopErr != nil && res.FirstErr == "" {
		res.FirstErr = stopErr.Error()
	}
	res.Leaks = b.host.leaks(ctx, 10*time.Second)
	b.logf("concurrent: %d pods started in %.1f s (%d errors), stopped+removed in %.1f s (%d errors), leaks: %s",
		b.o.concurrentPods, res.StartSeconds, nErr, res.StopSeconds, nStop, res.Leaks)
	return res
}
