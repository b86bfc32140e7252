package imageservice

import (
	"context"
	"testing"

	"github.com/crid-dev/crid/metrics/metricstest"
)

// A pull counts exactly the blob bytes the registry sent (layers and
// config, compressed) and one duration; pulling it again downloads
// nothing; an unknown tag is one failure and no duration.
func TestPullMetrics(t *testing.T) {
	e := newEnv(t)
	img := basicImage(t, imageSpec{})
	e.reg.push("app", "v1", img)
	none := map[string]string{}
	read := func() (bytes, pulls, failures float64) {
		return metricstest.Value(t, "crid_image_pull_bytes_total", none),
			metricstest.Value(t, "crid_image_pull_duration_seconds", none),
			metricstest.Value(t, "crid_image_pull_failures_total", none)
	}
	bytes0, pulls0, fails0 := read()

	e.mustPull(t, e.reg.ref("app:v1"))
	want := float64(len(img.config))
	for _, l := range img.layers {
		want += float64(len(l.blob))
	}
	bytes1, pulls1, fails1 := read()
	if bytes1-bytes0 != want || pulls1 != pulls0+1 || fails1 != fails0 {
		t.Errorf("first pull: %v bytes (want %v), %v pulls, %v failures", bytes1-bytes0, want, pulls1-pulls0, fails1-fails0)
	}

	e.mustPull(t, e.reg.ref("app:v1"))
	bytes2, pulls2, _ := read()
	if bytes2 != bytes1 || pulls2 != pulls1+1 {
		t.Errorf("second pull of a stored image: %v bytes, %v pulls; want 0 and 1", bytes2-bytes1, pulls2-pulls1)
	}

	if _, err := e.svc.Pull(context.Background(), e.reg.ref("app:nope"), nil); err == nil {
		t.Fatal("pull of an unknown tag succeeded")
	}
	_, pulls3, fails3 := read()
	if fails3 != fails1+1 || pulls3 != pulls2 {
		t.Errorf("failed pull: %v failures, %v durations; want 1 and 0", fails3-fails1, pulls3-pulls2)
	}
}
