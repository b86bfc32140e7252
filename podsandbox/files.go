package podsandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The per-pod files its containers bind-mount over their own.
const (
	resolvConfFile = "resolv.conf"
	hostsFile      = "hosts"
	hostnameFile   = "hostname"
	shmDir         = "shm"
)

// writePodFiles writes the pod's /etc/resolv.conf, /etc/hosts and
// /etc/hostname into dir.
func writePodFiles(dir string, cfg *runtime.PodSandboxConfig, hostname string, hostNetwork bool) error {
	resolv, err := resolvConf(cfg.GetDnsConfig())
	if err != nil {
		return err
	}
	hosts, err := hostsContent(hostname, hostNetwork)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		resolvConfFile: resolv,
		hostsFile:      hosts,
		hostnameFile:   []byte(hostname + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write pod %s: %w", name, err)
		}
	}
	return nil
}

// resolvConf renders the pod's DNS config, or copies the host's when the
// pod gives none (kubelet's "Default" DNS policy sends the host's values).
func resolvConf(dns *runtime.DNSConfig) ([]byte, error) {
	if dns == nil {
		b, err := os.ReadFile("/etc/resolv.conf")
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	var buf bytes.Buffer
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&buf, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&buf, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&buf, "options %s\n", strings.Join(dns.Options, " "))
	}
	return buf.Bytes(), nil
}

// hostsContent is the pod's /etc/hosts: the host's own for host-network
// pods, else localhost entries and the pod's hostname (kubelet manages
// /etc/hosts itself for its pods and mounts its own over this).
func hostsContent(hostname string, hostNetwork bool) ([]byte, error) {
	if hostNetwork {
		b, err := os.ReadFile("/etc/hosts")
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	return []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t" + hostname + "\n"), nil
}

// chownPodFiles gives the pod's files to its mapped root, for containers
// that bind them without idmap (a tmpfs cannot be idmapped before 6.3):
// root in the pod may then write them, as with an idmapped bind.
func chownPodFiles(dir string, uid, gid int) error {
	for _, name := range []string{resolvConfFile, hostsFile, hostnameFile} {
		if err := os.Lchown(filepath.Join(dir, name), uid, gid); err != nil {
			return fmt.Errorf("give pod %s to the pod's root (%d:%d): %w", name, uid, gid, err)
		}
	}
	return nil
}

// shmOwner is the owner of a pod's /dev/shm when not the node's root.
type shmOwner struct {
	set      bool
	uid, gid uint32
}

// mountShm mounts the pod's /dev/shm: a tmpfs its containers share, owned
// by owner when set (a user-namespaced pod's mapped root, on a kernel that
// cannot idmap it).
func mountShm(dir string, size int64, owner shmOwner) (string, error) {
	p := filepath.Join(dir, shmDir)
	if err := os.MkdirAll(p, 0o700); err != nil {
		return "", err
	}
	opts := fmt.Sprintf("mode=1777,size=%d", size)
	if owner.set {
		opts += fmt.Sprintf(",uid=%d,gid=%d", owner.uid, owner.gid)
	}
	if err := unix.Mount("shm", p, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return "", fmt.Errorf("mount pod shm: %w", err)
	}
	return p, nil
}

// unmountShm is the undo of mountShm; safe to repeat.
func unmountShm(dir string) error {
	p := filepath.Join(dir, shmDir)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount pod shm: %w", err)
	}
	return nil
}
