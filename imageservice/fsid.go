package imageservice

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The image store (Options.Root) and the writable layers
// (Options.RootfsDir) may sit on two filesystems (KEP-4191). Usage reports
// name each by the mount point of its filesystem and carry its device, so
// the CRI layer can tell one filesystem from two as kubelet does: the
// same mount point (device) is one filesystem, not a split one.

// fsOf fills u's Mountpoint and Device for the filesystem holding dir.
func fsOf(u *FsUsage, dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	u.Device = st.Dev
	u.Mountpoint = mountPoint(dir, st.Dev)
	return nil
}

// fsCache is fsOf for one directory, asked again and again (the writable
// layers' filesystem, once for each container in every stats list): it
// keeps the mount point while the directory and its device stay the same.
// Finding it reads the whole of /proc/self/mountinfo, thousands of lines on
// a node of 1,000 pods, so a stats list read it once per container.
type fsCache struct {
	mu         sync.Mutex
	dir        string
	dev        uint64
	mountpoint string
}

// fsOf fills u as the package's fsOf does, reading mountinfo only when dir
// or its device changed (a filesystem mounted on it, or unmounted).
func (c *fsCache) fsOf(u *FsUsage, dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	c.mu.Lock()
	mp, hit := c.mountpoint, c.mountpoint != "" && c.dir == dir && c.dev == st.Dev
	c.mu.Unlock()
	if !hit {
		mp = mountPoint(dir, st.Dev)
		c.mu.Lock()
		c.dir, c.dev, c.mountpoint = dir, st.Dev, mp
		c.mu.Unlock()
	}
	u.Device, u.Mountpoint = st.Dev, mp
	return nil
}

// mountPoint returns the mount point of the filesystem holding dir, whose
// device is dev: the longest mount point in /proc/self/mountinfo that
// holds dir (symlinks resolved) and is on dev. When mountinfo cannot be
// read or names none, dir itself: still a path on that filesystem, which
// is all kubelet needs to find its device.
func mountPoint(dir string, dev uint64) string {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return dir
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return dir
	}
	defer f.Close()
	best := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if !within(real, mp) || len(mp) <= len(best) {
			continue
		}
		if d, ok := parseDev(fields[2]); ok && d == dev {
			best = mp
		}
	}
	if best == "" {
		return dir
	}
	return best
}

// within reports whether p is dir or lies under it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

func parseDev(s string) (uint64, bool) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return 0, false
	}
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return unix.Mkdev(uint32(a), uint32(b)), true
}

// unescapeMountinfo undoes the octal escapes (\040 for a space...) the
// kernel writes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
