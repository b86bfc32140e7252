//lint:file-ignore SA1019 the deprecated apparmor_profile string is still sent by older kubelets and critest, and honoured

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// hostAppArmor says whether this machine's kernel enforces AppArmor and
// shows it in securityfs (the VM guests; not the project's host).
func hostAppArmor() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	if err != nil || !strings.HasPrefix(string(b), "Y") {
		return false
	}
	_, err = os.Stat("/sys/kernel/security/apparmor/profiles")
	return err == nil
}

// ctrAppArmor is the AppArmor profile in the container's spec (verbose
// ContainerStatus), "" for none.
func (n *podNode) ctrAppArmor(t *testing.T, id string) string {
	t.Helper()
	resp, err := n.runtime().ContainerStatus(context.Background(), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Process struct {
			AppArmor string `json:"apparmorProfile"`
		} `json:"process"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info of %s: %v", id, err)
	}
	return info.Process.AppArmor
}

// AppArmor requests crid cannot honour are refused naming the field, never
// dropped, and leave nothing behind: a Localhost profile that is not loaded
// (on a node without AppArmor: any Localhost profile), an unknown
// apparmor_profile string; on a node without AppArmor, RuntimeDefault asked
// too. What needs no profile (Unconfined, nothing asked) runs. SELinux
// options, which kubelet passes whatever the node and Kubernetes'
// conformance specs set, are taken as containerd and CRI-O take them on a
// node without SELinux, and reported in the verbose statuses (and crid's
// log) as not applied.
func TestAppArmorRefusedSELinuxReported(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	ctx := context.Background()
	enabled := hostAppArmor()

	selinuxPod := n.logPod("selinux")
	selinuxPod.Linux.SecurityContext.SelinuxOptions = &runtime.SELinuxOption{Type: "container_t", Level: "s0:c1,c2"}
	selinuxPodID := n.run(t, selinuxPod)
	ps, err := n.runtime().PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: selinuxPodID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := ps.Info["selinux"]; !strings.Contains(got, "config.linux.security_context.selinux_options") || !strings.Contains(got, `level "s0:c1,c2"`) || !strings.Contains(got, "not applied") {
		t.Errorf("pod with SELinux options: verbose selinux %q, want the options reported as not applied", got)
	}
	selinuxCfg := ctrConfig("selinux", "sleep", "3600")
	selinuxCfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{SelinuxOptions: &runtime.SELinuxOption{Type: "spc_t"}}
	selinuxCtr := n.create(t, selinuxPodID, selinuxPod, selinuxCfg, true)
	cs, err := n.runtime().ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: selinuxCtr, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.Info["selinux"]; !strings.Contains(got, `type "spc_t"`) || !strings.Contains(got, "not applied") {
		t.Errorf("container with SELinux options: verbose selinux %q, want the options reported as not applied", got)
	}
	if out := n.exec(t, selinuxCtr, "echo", "ok"); out != "ok" {
		t.Errorf("container with SELinux options: exec said %q", out)
	}
	n.removePod(t, selinuxPodID)

	pod := n.logPod("lsm")
	podID := n.run(t, pod)
	rootfs, records := n.rootfsDirs(), n.ctrRecords()
	notLoaded := "is not loaded"
	if !enabled {
		notLoaded = "AppArmor is not enabled on this node"
	}
	type refusal struct {
		what   string
		naming []string
		sc     *runtime.LinuxContainerSecurityContext
	}
	refused := []refusal{
		{"Localhost profile", []string{"linux.security_context.apparmor.localhost_ref", `"crid-e2e-missing"`, notLoaded},
			&runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "crid-e2e-missing"}}},
		{"deprecated localhost/", []string{"linux.security_context.apparmor_profile", `"crid-e2e-missing"`, notLoaded},
			&runtime.LinuxContainerSecurityContext{ApparmorProfile: "localhost/crid-e2e-missing"}},
		{"unknown apparmor_profile", []string{"linux.security_context.apparmor_profile", `unknown profile "docker-default"`},
			&runtime.LinuxContainerSecurityContext{ApparmorProfile: "docker-default"}},
	}
	if !enabled {
		refused = append(refused, refusal{"RuntimeDefault without AppArmor", []string{"linux.security_context.apparmor", "AppArmor is not enabled on this node"},
			&runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}}})
	}
	for _, tc := range refused {
		cfg := ctrConfig("refused", "sleep", "3600")
		cfg.Linux.SecurityContext = tc.sc
		_, err := n.runtime().CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: pod, Config: cfg})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tc.what, err)
			continue
		}
		for _, w := range tc.naming {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.what, err, w)
			}
		}
		if r, c := n.rootfsDirs(), n.ctrRecords(); r != rootfs || c != records {
			t.Errorf("%s left %d rootfs dirs (was %d), %d records (was %d)", tc.what, r, rootfs, c, records)
		}
	}

	// What needs no profile runs; RuntimeDefault (asked, or nothing asked)
	// is crid-default where the kernel has AppArmor.
	wantDefault := ""
	if enabled {
		wantDefault = "crid-default"
	}
	runs := []struct {
		name string
		sc   *runtime.LinuxContainerSecurityContext
		want string
	}{
		{"unconfined", &runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}}, ""},
		{"empty-selinux", &runtime.LinuxContainerSecurityContext{SelinuxOptions: &runtime.SELinuxOption{}}, wantDefault},
	}
	if enabled {
		runs = append(runs, runs[0])
		runs[len(runs)-1].name, runs[len(runs)-1].want = "runtime-default", wantDefault
		runs[len(runs)-1].sc = &runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}}
	}
	for _, tc := range runs {
		cfg := ctrConfig(tc.name, "sleep", "3600")
		cfg.Linux.SecurityContext = tc.sc
		id := n.create(t, podID, pod, cfg, true)
		if got := n.ctrAppArmor(t, id); got != tc.want {
			t.Errorf("%s: spec's AppArmor profile %q, want %q", tc.name, got, tc.want)
		}
		if out := n.exec(t, id, "echo", "ok"); out != "ok" {
			t.Errorf("%s: exec said %q", tc.name, out)
		}
	}
	n.removePod(t, podID)
}

// TestAppArmorConfinement runs where the kernel has AppArmor (the VM
// guests: VM_E2E_RUN='^TestAppArmor'): a container that asks nothing, and
// its execs, run under crid-default, which denies mounts even with
// CAP_SYS_ADMIN; Unconfined and a privileged container asking nothing run
// unconfined.
func TestAppArmorConfinement(t *testing.T) {
	if !hostAppArmor() {
		t.Skip("the kernel has no AppArmor (or securityfs is not mounted): run in the VM test bed")
	}
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := n.logPod("aa")
	pod.Linux.SecurityContext.Privileged = true
	podID := n.run(t, pod)

	withSysAdmin := func(sc *runtime.LinuxContainerSecurityContext) *runtime.LinuxContainerSecurityContext {
		sc.Capabilities = &runtime.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		return sc
	}
	for _, tc := range []struct {
		name      string
		sc        *runtime.LinuxContainerSecurityContext
		label     string // /proc/self/attr/current
		mountDeny bool
	}{
		{"nothing-asked", withSysAdmin(&runtime.LinuxContainerSecurityContext{}), "crid-default (enforce)", true},
		{"deprecated-runtime-default", withSysAdmin(&runtime.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}), "crid-default (enforce)", true},
		{"unconfined", withSysAdmin(&runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}}), "unconfined", false},
		{"privileged", &runtime.LinuxContainerSecurityContext{Privileged: true}, "unconfined", false},
	} {
		cfg := ctrConfig(tc.name, "sleep", "3600")
		cfg.Linux.SecurityContext = tc.sc
		id := n.create(t, podID, pod, cfg, true)
		if got := strings.TrimSpace(n.exec(t, id, "cat", "/proc/1/attr/current")); got != tc.label {
			t.Errorf("%s: the container's init runs as %q, want %q", tc.name, got, tc.label)
		}
		if got := strings.TrimSpace(n.exec(t, id, "cat", "/proc/self/attr/current")); got != tc.label {
			t.Errorf("%s: an exec runs as %q, want %q", tc.name, got, tc.label)
		}
		_, stderr, code := n.execResult(t, id, "mount", "-t", "tmpfs", "crid-e2e", "/tmp")
		if denied := code != 0; denied != tc.mountDeny {
			t.Errorf("%s: mount exit %d (%s), want denied=%v", tc.name, code, stderr, tc.mountDeny)
		}
	}
	// crid-default stays loaded for the next containers.
	profiles, err := os.ReadFile("/sys/kernel/security/apparmor/profiles")
	if err != nil || !strings.Contains(string(profiles), "crid-default (enforce)") {
		t.Errorf("crid-default not in the loaded profiles: %v", err)
	}
	n.removePod(t, podID)
}
