package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (n *podNode) imageFsInfo(t *testing.T) (image, container *runtime.FilesystemUsage) {
	t.Helper()
	resp, err := n.images().ImageFsInfo(context.Background(), &runtime.ImageFsInfoRequest{})
	if err != nil {
		t.Fatalf("ImageFsInfo: %v", err)
	}
	if len(resp.ImageFilesystems) != 1 || len(resp.ContainerFilesystems) != 1 {
		t.Fatalf("ImageFsInfo: %d image and %d container filesystems, want one of each", len(resp.ImageFilesystems), len(resp.ContainerFilesystems))
	}
	return resp.ImageFilesystems[0], resp.ContainerFilesystems[0]
}

// With image.root on one filesystem and root_dir on another (KEP-4191),
// a container runs from layers on the first with its writable layer on
// the second, and ImageFsInfo reports each filesystem apart: the image
// store's usage on the image filesystem's mount point, unchanged by the
// container's 5 MiB, which show on the container filesystem's.
func TestSplitImageFilesystem(t *testing.T) {
	var imageFs, containerFs string
	n := newPodNodeOn(t, func(dir string) {
		imageFs, containerFs = filepath.Join(dir, "imagefs"), filepath.Join(dir, "root")
		mountTmpfs(t, imageFs, "128m")
		mountTmpfs(t, containerFs, "128m")
		appendConfig(t, dir, fmt.Sprintf("[image]\nroot = %q\n", filepath.Join(imageFs, "images")))
	})
	n.pullBusybox(t)
	if layers, _ := os.ReadDir(filepath.Join(imageFs, "images", "layers")); len(layers) == 0 {
		t.Fatal("no layer in image.root after the pull")
	}
	if _, err := os.Stat(filepath.Join(containerFs, "images")); !os.IsNotExist(err) {
		t.Fatalf("root_dir holds an image store: %v", err)
	}
	img0, ctr0 := n.imageFsInfo(t)
	if img0.FsId.GetMountpoint() != imageFs || ctr0.FsId.GetMountpoint() != containerFs {
		t.Fatalf("mount points: images %q, containers %q; want %s and %s", img0.FsId.GetMountpoint(), ctr0.FsId.GetMountpoint(), imageFs, containerFs)
	}
	if img0.UsedBytes.GetValue() == 0 || img0.InodesUsed.GetValue() == 0 {
		t.Fatalf("image filesystem usage %v after a pull", img0)
	}

	pod := n.logPod("split")
	podID := n.run(t, pod)
	id := n.create(t, podID, pod, ctrConfig("writer", "sleep", "3600"), true)
	n.exec(t, id, "sh", "-c", "dd if=/dev/zero of=/blob bs=1M count=5 2>/dev/null && sync")
	if got := n.exec(t, id, "sh", "-c", "wc -c < /blob; test -e /bin/sh && echo layers-read"); got != "5242880\nlayers-read" {
		t.Fatalf("in the container: %q", got)
	}
	img1, ctr1 := n.imageFsInfo(t)
	t.Logf("image fs %s: %d bytes, %d inodes; container fs %s: %d bytes, %d inodes (was %d)",
		img1.FsId.GetMountpoint(), img1.UsedBytes.GetValue(), img1.InodesUsed.GetValue(),
		ctr1.FsId.GetMountpoint(), ctr1.UsedBytes.GetValue(), ctr1.InodesUsed.GetValue(), ctr0.UsedBytes.GetValue())
	if img1.FsId.GetMountpoint() == ctr1.FsId.GetMountpoint() {
		t.Fatalf("one mount point %q for both filesystems", img1.FsId.GetMountpoint())
	}
	if ctr1.UsedBytes.GetValue() < ctr0.UsedBytes.GetValue()+5*mib {
		t.Fatalf("container filesystem %d bytes after writing 5 MiB, was %d", ctr1.UsedBytes.GetValue(), ctr0.UsedBytes.GetValue())
	}
	if img1.UsedBytes.GetValue() != img0.UsedBytes.GetValue() || img1.InodesUsed.GetValue() != img0.InodesUsed.GetValue() {
		t.Fatalf("image filesystem went from %v to %v with no pull", img0, img1)
	}
	layer := n.ctrStats(t, id).WritableLayer
	if layer.GetFsId().GetMountpoint() != containerFs || layer.GetUsedBytes().GetValue() < 5*mib {
		t.Fatalf("writable layer %v, want ≥ 5 MiB on %s", layer, containerFs)
	}
	n.removePodOnFs(t, podID, 2)
}

// On one filesystem ImageFsInfo reports the same entry as both image and
// container filesystem, as CRI-O does, so kubelet sees no split.
func TestImageFilesystemNotSplit(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	img, ctr := n.imageFsInfo(t)
	if !proto.Equal(img, ctr) || img.FsId.GetMountpoint() == "" || img.UsedBytes.GetValue() == 0 {
		t.Fatalf("image filesystem %v, container filesystem %v: want one entry", img, ctr)
	}
}
