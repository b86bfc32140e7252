package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kubectl delete of a namespace leaves nothing of its pods on the node:
// no sandbox or container in crid, no mount, cgroup, pinned namespace,
// log, volume dir, veth, IP lease or hostPort rule. (The file name sorts
// last so that the other tests' pods are gone too when the node-wide
// counts are taken.)
func TestDeleteLeavesNothing(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: conf
data:
  key: value
---
apiVersion: v1
kind: Secret
metadata:
  name: sec
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: many
spec:
  replicas: 3
  selector:
    matchLabels: {app: many}
  template:
    metadata:
      labels: {app: many}
    spec:
      terminationGracePeriodSeconds: 1
      volumes:
      - {name: scratch, emptyDir: {}}
      - {name: mem, emptyDir: {medium: Memory}}
      - {name: conf, configMap: {name: conf}}
      - {name: sec, secret: {secretName: sec}}
      containers:
      - name: main
        image: %[1]s
        command: ["sh", "-c", "cat /conf/key /sec/password; echo x >/scratch/f; echo y >/mem/f; sleep 3600"]
        volumeMounts:
        - {name: scratch, mountPath: /scratch}
        - {name: mem, mountPath: /mem}
        - {name: conf, mountPath: /conf}
        - {name: sec, mountPath: /sec}
      - name: second
        image: %[1]s
        command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: hostport
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: %[2]s
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
    ports: [{containerPort: 8080, hostPort: %[3]s, hostIP: %[4]s}]
`, busybox, agnhost, env["HOST_PORT"], env["NODE_IP"]))
	kubectl(t, "-n", ns, "rollout", "status", "deployment/many", "--timeout=180s")
	waitReady(t, ns, "hostport")

	var list struct {
		Items []Pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, "-n", ns, "get", "pods", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 4 {
		t.Fatalf("%d pods, want 4", len(list.Items))
	}
	sandboxes := strings.Fields(crictl(t, "pods", "-q", "--namespace", ns))
	containers := strings.Fields(crictl(t, "ps", "-a", "-q", "--label", "io.kubernetes.pod.namespace="+ns))
	if len(sandboxes) != 4 || len(containers) != 7 {
		t.Fatalf("crid holds %d sandboxes and %d containers of the namespace, want 4 and 7", len(sandboxes), len(containers))
	}
	var uids, ips []string
	for _, p := range list.Items {
		uids = append(uids, p.Metadata.UID)
		ips = append(ips, p.Status.PodIP)
	}
	// The hostPort answers on the node's address before the delete.
	hp := "http://" + net.JoinHostPort(env["NODE_IP"], env["HOST_PORT"]) + "/hostname"
	waitFor(t, time.Minute, "the hostPort answering", func() (bool, error) {
		resp, err := http.Get(hp)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return err == nil && string(b) == "hostport", nil
	})

	kubectl(t, "delete", "namespace", ns, "--wait=true", "--timeout=120s")
	// kubelet removes the sandboxes of deleted pods in its garbage
	// collection (every minute).
	waitFor(t, 4*time.Minute, "crid's removal of the namespace's sandboxes", func() (bool, error) {
		return strings.TrimSpace(crictl(t, "pods", "-q", "--namespace", ns)) == "", nil
	})
	if out := strings.TrimSpace(crictl(t, "ps", "-a", "-q", "--label", "io.kubernetes.pod.namespace="+ns)); out != "" {
		t.Errorf("containers left in crid: %s", out)
	}
	ids := append(append(append([]string{}, sandboxes...), containers...), uids...)

	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		for _, id := range ids {
			if strings.Contains(l, id) {
				t.Errorf("mount left: %s", l)
			}
		}
	}
	// Files and directories named after a pod, sandbox or container.
	for _, root := range []string{env["CRID_ROOT"], env["CRID_RUN"], env["KUBELET_ROOT"], env["POD_LOGS"], "/var/log/containers"} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			for _, id := range ids {
				if strings.Contains(d.Name(), id) {
					t.Errorf("left on disk: %s", p)
				}
			}
			if strings.HasPrefix(d.Name(), ns+"_") {
				t.Errorf("left on disk: %s", p)
			}
			return nil
		})
	}
	kubepods := "/kubepods"
	if systemdDriver() {
		kubepods = "/kubepods.slice"
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*" + env["CGROUP_ROOT"] + kubepods)
	cgroups2, _ := filepath.Glob("/sys/fs/cgroup" + env["CGROUP_ROOT"] + kubepods)
	for _, kp := range append(cgroups, cgroups2...) {
		_ = filepath.WalkDir(kp, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			for _, id := range ids {
				// systemd slices spell a pod UID with underscores.
				if strings.Contains(d.Name(), id) || strings.Contains(d.Name(), strings.ReplaceAll(id, "-", "_")) {
					t.Errorf("cgroup left: %s", p)
				}
			}
			return nil
		})
	}
	// IP leases of host-local.
	for _, ip := range ips {
		if _, err := os.Stat(filepath.Join(env["CNI_IPAM"], env["CNI_NETWORK"], ip)); err == nil {
			t.Errorf("IP lease of %s left", ip)
		}
	}
	if r, _ := run(exec.Command("sh", "-c", "iptables-save | grep -F -e '"+strings.Join(ips, "' -e '")+"'"), nil); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("iptables rules naming the pods' IPs left:\n%s", r.stdout)
	}
	// Every veth on the bridge belongs to a pod crid still runs.
	veths, _ := filepath.Glob("/sys/class/net/" + env["BRIDGE"] + "/brif/*")
	ready := strings.Fields(crictl(t, "pods", "-q", "--state", "ready"))
	if len(veths) > len(ready) {
		t.Errorf("%d veths on %s for %d ready sandboxes: %v", len(veths), env["BRIDGE"], len(ready), veths)
	}
}
