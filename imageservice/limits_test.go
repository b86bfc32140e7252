package imageservice

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestUntarLimits(t *testing.T) {
	utRequireRoot(t)
	four := utTar(t, utDir("d/", 0o755), utFile("d/a", "a", 0o644), utFile("d/b", "b", 0o644), utFile("c", strings.Repeat("x", 100), 0o644))
	for _, tc := range []struct {
		name string
		lim  untarLimits
		ok   bool
	}{
		{"at both limits", untarLimits{Files: 4, Bytes: 102}, true},
		{"one entry too many", untarLimits{Files: 3, Bytes: 1 << 20}, false},
		{"one byte too many", untarLimits{Files: 10, Bytes: 101}, false},
	} {
		err := untar(bytes.NewReader(four), t.TempDir(), tc.lim)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// sparseTar is a tar whose one entry, a PAX 0.1 sparse file, expands from
// no stored data to size bytes of zeros. archive/tar writes no sparse
// files, so the headers are made by hand.
func sparseTar(t testing.TB, size int64) []byte {
	t.Helper()
	var pax strings.Builder
	for _, kv := range [][2]string{
		{"GNU.sparse.size", fmt.Sprint(size)},
		{"GNU.sparse.numblocks", "1"},
		{"GNU.sparse.map", fmt.Sprintf("%d,0", size)},
	} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		fmt.Fprintf(&pax, "%d%s", n, rec)
	}
	var buf bytes.Buffer
	buf.Write(ustarHeader("PaxHeaders/hole", 'x', int64(pax.Len())))
	buf.WriteString(pax.String())
	buf.Write(make([]byte, (512-pax.Len()%512)%512))
	buf.Write(ustarHeader("hole", '0', 0))
	buf.Write(make([]byte, 1024)) // end of archive
	// The reader does expand the file.
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	if h, err := tr.Next(); err != nil || h.Size != size {
		t.Fatalf("sparse entry reads as %+v, %v; want size %d", h, err, size)
	}
	return buf.Bytes()
}

// ustarHeader is one 512-byte ustar header block.
func ustarHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	copy(h[124:136], fmt.Sprintf("%011o\x00", size))
	copy(h[136:148], "00000000000\x00")
	copy(h[148:156], "        ")
	h[156] = typ
	copy(h[257:263], "ustar\x00")
	copy(h[263:265], "00")
	sum := 0
	for _, b := range h {
		sum += int(b)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// A sparse entry of a few bytes in the stream that unpacks to 1 GiB is
// stopped at the byte limit, not written out.
func TestUntarSparseBomb(t *testing.T) {
	utRequireRoot(t)
	data := sparseTar(t, 1<<30)
	if len(data) > 10<<10 {
		t.Fatalf("sparse tar is %d bytes", len(data))
	}
	dir := t.TempDir()
	err := untar(bytes.NewReader(data), dir, untarLimits{Files: 10, Bytes: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("untar: %v, want ErrTooLarge", err)
	}
	if b, _, _ := usage(dir); b > 2<<20 {
		t.Fatalf("%d bytes written before the limit stopped it", b)
	}
}

// withLimits reopens the env's service with lim.
func (e *testEnv) withLimits(t *testing.T, lim Limits) {
	t.Helper()
	e.opts.Limits = lim
	e.svc = e.open(t)
}

// Layers over a size or file limit fail the pull with ErrTooLarge, leaving
// nothing behind; the same image pulls under the default limits.
func TestPullLayerLimits(t *testing.T) {
	// 8 MiB of zeros: a gzip blob of about 8 KiB.
	bomb := newLayer(t, file("zeros", strings.Repeat("\x00", 8<<20)))
	if len(bomb.blob) > 64<<10 {
		t.Fatalf("bomb blob is %d bytes", len(bomb.blob))
	}
	var many []tarEntry
	for i := range 50 {
		many = append(many, file(fmt.Sprint("f", i), "x"))
	}
	wide := newLayer(t, many...)
	for _, tc := range []struct {
		name  string
		layer testLayer
		lim   func(*Limits)
		want  string
	}{
		{"gzip bomb over max_layer_bytes", bomb, func(l *Limits) { l.MaxLayerBytes = 1 << 20 }, "max_layer_bytes"},
		{"entries over max_layer_files", wide, func(l *Limits) { l.MaxLayerFiles = 49 }, "max_layer_files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			lim := testLimits
			tc.lim(&lim)
			e.withLimits(t, lim)
			e.reg.push("big", "v1", newImage(t, imageSpec{layers: []testLayer{newLayer(t, file("ok", "ok")), tc.layer}}))
			_, err := e.svc.Pull(context.Background(), e.reg.ref("big:v1"), nil)
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull: %v, want ErrTooLarge naming %s", err, tc.want)
			}
			t.Logf("error: %v", err)
			e.assertEmptyStore(t)
			e.withLimits(t, testLimits)
			e.mustPull(t, e.reg.ref("big:v1"))
		})
	}
}

// maxStalled pulls the images (concurrently) with every layer blob stalled
// after its first bytes, and returns how many layer downloads were open
// at once at most; every pull must then succeed.
func maxStalled(t *testing.T, e *testEnv, want int, imgs ...*testImage) int {
	t.Helper()
	var stalls []*stall
	for i, img := range imgs {
		for _, l := range img.layers {
			stalls = append(stalls, e.reg.stallBlob(l.digest, 16))
		}
		e.reg.push(fmt.Sprint("app", i), "v1", img)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(imgs))
	for i := range imgs {
		wg.Go(func() {
			_, err := e.svc.Pull(context.Background(), e.reg.ref(fmt.Sprint("app", i, ":v1")), nil)
			errs <- err
		})
	}
	stalledNow := func() int {
		n := 0
		for _, st := range stalls {
			select {
			case <-st.stalled:
				n++
			default:
			}
		}
		return n
	}
	waitFor(t, fmt.Sprint(want, " layers stalled"), 10*time.Second, func() bool { return stalledNow() >= want })
	// Give any download beyond the limit the time to show up.
	time.Sleep(300 * time.Millisecond)
	most := stalledNow()
	for _, st := range stalls {
		close(st.release)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
	}
	return most
}

func layersOf(t *testing.T, n int, tag string) []testLayer {
	var out []testLayer
	for i := range n {
		out = append(out, newLayer(t, file("f", fmt.Sprint(tag, i)), file("pad", strings.Repeat(tag, 40<<10))))
	}
	return out
}

// One pull downloads at most FetchesPerPull layers at a time.
func TestPullFetchesPerPull(t *testing.T) {
	e := newEnv(t)
	lim := testLimits
	lim.FetchesPerPull = 2
	e.withLimits(t, lim)
	if got := maxStalled(t, e, 2, newImage(t, imageSpec{layers: layersOf(t, 6, "a")})); got != 2 {
		t.Fatalf("%d layers downloading at once, want 2", got)
	}
}

// All pulls together download at most FetchesTotal layers at a time.
func TestPullFetchesTotal(t *testing.T) {
	e := newEnv(t)
	lim := testLimits
	lim.FetchesPerPull, lim.FetchesTotal = 3, 4
	e.withLimits(t, lim)
	got := maxStalled(t, e, 4,
		newImage(t, imageSpec{layers: layersOf(t, 4, "a")}),
		newImage(t, imageSpec{layers: layersOf(t, 4, "b")}),
		newImage(t, imageSpec{layers: layersOf(t, 4, "c")}))
	if got != 4 {
		t.Fatalf("%d layers downloading at once, want 4", got)
	}
}
