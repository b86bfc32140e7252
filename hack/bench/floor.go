package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"golang.org/x/sys/unix"
)

// Floors: what this machine and the CNI plugins allow, measured in the same
// run as the runtimes, so that each runtime figure is printed beside its
// floor.
//
//   - pod network: a network namespace created and pinned, then the same
//     conflist's ADD through libcni, as cnitool does (and DEL, then unpin);
//   - container: crid-bench-floor (hack/bench/floorhelper), a binary as
//     small as crid-monitor that calls libcontainer directly: overlay
//     mount, Create + Start + Exec; SIGKILL, wait, Destroy, unmount;
//   - pull: blobs fetched from the registry, hashed, inflated by pigz,
//     hashed again and extracted by tar, every layer in parallel.

// FloorResult is the floor phase.
type FloorResult struct {
	Outcome
	Iterations int `json:"iterations"`
	// Netns is creating and pinning a network namespace; CNIAdd and
	// CNIDel the conflist's ADD and DEL on it; Unpin removing the pin.
	Netns  Dist `json:"netns"`
	CNIAdd Dist `json:"cni_add"`
	CNIDel Dist `json:"cni_del"`
	Unpin  Dist `json:"unpin"`
	// Container is crid-bench-floor's start (mount + create + exec) and
	// stop (kill + destroy + unmount), with their parts.
	Container     Outcome `json:"container"`
	ContainerUp   Dist    `json:"container_up"`
	ContainerDown Dist    `json:"container_down"`
	Mount         Dist    `json:"mount"`
	Create        Dist    `json:"create"`
	Exec          Dist    `json:"exec"`
}

// PodUpMs is the floor of a pod start on the pod network: netns + ADD +
// container start, sums of p50s.
func (f *FloorResult) PodUpMs() float64 { return f.Netns.P50 + f.CNIAdd.P50 + f.ContainerUp.P50 }

// PodDownMs is the floor of a pod teardown: container stop + DEL + unpin.
func (f *FloorResult) PodDownMs() float64 { return f.ContainerDown.P50 + f.CNIDel.P50 + f.Unpin.P50 }

func (b *bench) floorPhase(ctx context.Context) *FloorResult {
	res := &FloorResult{Outcome: ok(), Iterations: b.o.floorIterations}
	if b.o.conflist == "" || b.o.workDir == "" {
		res.Outcome = Outcome{State: stateSkipped, Err: "needs -conflist and -work-dir"}
		return res
	}
	dir := filepath.Join(b.o.workDir, "floor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Outcome = outcomeOf(err)
		return res
	}
	defer os.RemoveAll(dir)
	ct, keep, release, err := b.cniFloor(ctx, dir, b.o.floorIterations, true)
	defer release()
	if err != nil {
		res.Outcome = outcomeOf(err)
		return res
	}
	netnsT, addT, delT, unpinT := ct.netns, ct.add, ct.del, ct.unpin
	res.Netns, res.CNIAdd, res.CNIDel, res.Unpin = newDist(ok(), netnsT), newDist(ok(), addT), newDist(ok(), delT), newDist(ok(), unpinT)
	b.logf("floor: netns p50 %.1f ms, CNI ADD p50 %.1f ms, DEL p50 %.1f ms", res.Netns.P50, res.CNIAdd.P50, res.CNIDel.P50)

	res.Container = ok()
	samples, err := b.runFloorHelper(ctx, dir, keep)
	if err != nil {
		res.Container = outcomeOf(err)
		return res
	}
	var up, down, mnt, cr, ex []time.Duration
	for _, s := range samples {
		up = append(up, msDur(s.StartTotal))
		down = append(down, msDur(s.StopTotal))
		mnt, cr, ex = append(mnt, msDur(s.MountMs)), append(cr, msDur(s.CreateMs)), append(ex, msDur(s.ExecMs))
	}
	res.ContainerUp, res.ContainerDown = newDist(ok(), up), newDist(ok(), down)
	res.Mount, res.Create, res.Exec = newDist(ok(), mnt), newDist(ok(), cr), newDist(ok(), ex)
	b.logf("floor: container start p50 %.1f ms (mount %.1f, create %.1f, exec %.1f), stop p50 %.1f ms",
		res.ContainerUp.P50, res.Mount.P50, res.Create.P50, res.Exec.P50, res.ContainerDown.P50)
	return res
}

// cniTimes are the floor's CNI samples.
type cniTimes struct{ netns, add, del, unpin []time.Duration }

// cniFloor creates n network namespaces one after the other, each with the
// runtime's conflist's ADD through libcni (as cnitool does), and removes
// them (DEL, unpin), timing each step. With keepFirst the first one stays
// attached until release, for containers to join; keep is its path.
func (b *bench) cniFloor(ctx context.Context, dir string, n int, keepFirst bool) (ct cniTimes, keep string, release func(), err error) {
	release = func() {}
	list, err := libcni.NetworkConfFromFile(b.o.conflist)
	if err != nil {
		return ct, "", release, fmt.Errorf("conflist: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ct, "", release, fmt.Errorf("floor dir: %w", err)
	}
	cni := libcni.NewCNIConfigWithCacheDir(b.o.cniBinDirs, filepath.Join(dir, "cni-cache"), nil)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		path := filepath.Join(dir, fmt.Sprintf("netns-%d", i))
		t0 := time.Now()
		if err := pinNewNetns(path); err != nil {
			return ct, keep, release, err
		}
		t1 := time.Now()
		rt := floorRuntimeConf(path, i)
		if _, err := cni.AddNetworkList(ctx, list, rt); err != nil {
			_ = cni.DelNetworkList(context.WithoutCancel(ctx), list, rt)
			_ = unpin(path)
			return ct, keep, release, fmt.Errorf("CNI ADD: %w", err)
		}
		t2 := time.Now()
		ct.netns, ct.add = append(ct.netns, t1.Sub(t0)), append(ct.add, t2.Sub(t1))
		if i == 0 && keepFirst {
			keep = path
			release = func() {
				_ = cni.DelNetworkList(context.WithoutCancel(ctx), list, rt)
				_ = unpin(path)
			}
			continue
		}
		t3 := time.Now()
		if err := cni.DelNetworkList(context.WithoutCancel(ctx), list, rt); err != nil {
			_ = unpin(path)
			return ct, keep, release, fmt.Errorf("CNI DEL: %w", err)
		}
		t4 := time.Now()
		if err := unpin(path); err != nil {
			return ct, keep, release, err
		}
		ct.del, ct.unpin = append(ct.del, t4.Sub(t3)), append(ct.unpin, time.Since(t4))
	}
	return ct, keep, release, nil
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// floorSample is one iteration of crid-bench-floor.
type floorSample struct {
	MountMs    float64 `json:"mount_ms"`
	CreateMs   float64 `json:"create_ms"`
	ExecMs     float64 `json:"exec_ms"`
	StartTotal float64 `json:"start_total_ms"`
	StopTotal  float64 `json:"stop_total_ms"`
}

func (b *bench) runFloorHelper(ctx context.Context, dir, netns string) ([]floorSample, error) {
	helper := b.o.floorHelper
	if helper == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find crid-bench-floor: %w", err)
		}
		helper = filepath.Join(filepath.Dir(exe), "crid-bench-floor")
	}
	if b.o.rootfs == "" {
		return nil, errors.New("no -rootfs (the test bed's busybox tree)")
	}
	cg := filepath.Join(b.o.cgroupParent, "floor")
	defer removeCgroupDirs(cg)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, helper, "-rootfs", b.o.rootfs, "-work", filepath.Join(dir, "ctr"),
		"-cgroup-parent", cg, "-netns", netns, "-n", fmt.Sprint(b.o.floorIterations))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", helper, err, firstLine(stderr.String()))
	}
	var samples []floorSample
	if err := json.Unmarshal(out, &samples); err != nil {
		return nil, fmt.Errorf("%s output: %w", helper, err)
	}
	return samples, nil
}

// removeCgroupDirs removes the (empty) cgroup path in every v1 hierarchy
// and the unified one.
func removeCgroupDirs(path string) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		removeTree(filepath.Join("/sys/fs/cgroup", path)) // pure v2
		return
	}
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	for _, e := range ents {
		removeTree(filepath.Join("/sys/fs/cgroup", e.Name(), path))
	}
}

// removeTree removes the directories under d, deepest first (cgroupfs
// removes only empty directories, with rmdir).
func removeTree(d string) {
	ents, err := os.ReadDir(d)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			removeTree(filepath.Join(d, e.Name()))
		}
	}
	_ = unix.Rmdir(d)
}

func floorRuntimeConf(netns string, i int) *libcni.RuntimeConf {
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	cid := hex.EncodeToString(id)
	name := fmt.Sprintf("floor-%04d", i)
	return &libcni.RuntimeConf{
		ContainerID: cid, NetNS: netns, IfName: "eth0",
		// The pod arguments crid (and kubelet's runtimes) pass.
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", benchNamespace},
			{"K8S_POD_NAME", name},
			{"K8S_POD_INFRA_CONTAINER_ID", cid},
			{"K8S_POD_UID", cid[:32]},
		},
	}
}

// pinNewNetns creates a network namespace and bind-mounts it at path, from
// a thread of its own that then exits (it is never unlocked).
func pinNewNetns(path string) error {
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		return fmt.Errorf("netns pin: %w", err)
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("pin netns: %w", err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

func unpin(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unpin netns: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("unpin netns: %w", err)
	}
	return nil
}

// PullFloor is the floor of pulling one or more images at once.
type PullFloor struct {
	Outcome
	Seconds float64 `json:"seconds"`
	Layers  int     `json:"layers"`
	Bytes   int64   `json:"bytes"` // compressed
	Files   int64   `json:"files"` // entries extracted
}

// pullFloor fetches every layer of the images from the registry, all at
// once, each through sha256 (the blob digest), pigz -d, sha256 again (the
// diff ID, checked against the config) and tar -x into a scratch dir, and
// times the whole.
func pullFloor(ctx context.Context, reg *registry, scratch string, repos ...string) PullFloor {
	res := PullFloor{Outcome: ok()}
	type job struct {
		url, digest, diffID, dir string
	}
	var jobs []job
	for _, repo := range repos {
		m, err := reg.getManifest(ctx, repo, imageTag(repo))
		if err != nil {
			res.Outcome = outcomeOf(err)
			return res
		}
		cfg, err := reg.getConfig(ctx, repo, m.Config.Digest)
		if err != nil {
			res.Outcome = outcomeOf(err)
			return res
		}
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			res.Outcome = outcomeOf(fmt.Errorf("%s: %d diff IDs for %d layers", repo, len(cfg.RootFS.DiffIDs), len(m.Layers)))
			return res
		}
		for i, l := range m.Layers {
			u, _ := reg.base.Parse("/v2/" + repo + "/blobs/" + l.Digest)
			jobs = append(jobs, job{url: u.String(), digest: l.Digest, diffID: cfg.RootFS.DiffIDs[i],
				dir: filepath.Join(scratch, fmt.Sprintf("%s-%d", strings.ReplaceAll(repo, "/", "_"), i))})
			res.Bytes += l.Size
		}
	}
	res.Layers = len(jobs)
	defer os.RemoveAll(scratch)
	// The page cache holds what the last pull wrote; sync first so that
	// the floor does not pay for the runtime's write-back.
	unix.Sync()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = floorLayer(ctx, j.url, j.digest, j.diffID, j.dir)
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	if err := errors.Join(errs...); err != nil {
		res.Outcome = outcomeOf(err)
		return res
	}
	for _, j := range jobs {
		_ = filepath.WalkDir(j.dir, func(_ string, _ os.DirEntry, err error) error {
			if err == nil {
				res.Files++
			}
			return nil
		})
	}
	return res
}

// floorLayer is curl | sha256 | pigz -d | sha256 | tar -x for one layer.
func floorLayer(ctx context.Context, url, digest, diffID, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("floor layer dir: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("floor GET: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("floor GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("floor GET %s: %s", url, resp.Status)
	}
	blobSum, diffSum := sha256.New(), sha256.New()
	pigz := exec.CommandContext(ctx, "pigz", "-d", "-c")
	pigz.Stdin = io.TeeReader(resp.Body, blobSum)
	pigzOut, err := pigz.StdoutPipe()
	if err != nil {
		return fmt.Errorf("pigz: %w", err)
	}
	tar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	tar.Stdin = io.TeeReader(pigzOut, diffSum)
	var pigzErr, tarErr strings.Builder
	pigz.Stderr, tar.Stderr = &pigzErr, &tarErr
	if err := pigz.Start(); err != nil {
		return fmt.Errorf("pigz (apt-get install pigz): %w", err)
	}
	if err := tar.Run(); err != nil {
		_ = pigz.Process.Kill()
		_ = pigz.Wait()
		return fmt.Errorf("tar -x: %w: %s", err, firstLine(tarErr.String()))
	}
	if err := pigz.Wait(); err != nil {
		return fmt.Errorf("pigz -d: %w: %s", err, firstLine(pigzErr.String()))
	}
	if got := digestOf(blobSum); got != digest {
		return fmt.Errorf("floor: blob digest %s, want %s", got, digest)
	}
	if got := digestOf(diffSum); got != diffID {
		return fmt.Errorf("floor: diff ID %s, want %s", got, diffID)
	}
	return nil
}
