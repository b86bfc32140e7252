package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// A Deployment of two replicas on the pod network becomes Available, and
// each pod reaches the other by its pod IP.
func TestDeploymentPodsReachEachOther(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: netexec
        image: %s
        args: ["netexec", "--http-port=8080"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 2
`, agnhost))
	r := kubectlResult(t, nil, "-n", ns, "rollout", "status", "deployment/web", "--timeout=180s")
	if r.code != 0 {
		t.Fatalf("rollout: %s\n%s", r, describe(t, ns, "pods"))
	}
	kubectl(t, "-n", ns, "wait", "--for=condition=Available", "deployment/web", "--timeout=60s")
	var list struct {
		Items []Pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, "-n", ns, "get", "pods", "-l", "app=web", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("%d pods, want 2", len(list.Items))
	}
	_, podNet, _ := net.ParseCIDR("10.87.0.0/16")
	for _, p := range list.Items {
		if ip := net.ParseIP(p.Status.PodIP); ip == nil || !podNet.Contains(ip) {
			t.Fatalf("pod %s has IP %q, not on the pod network %s", p.Metadata.Name, p.Status.PodIP, podNet)
		}
	}
	if list.Items[0].Status.PodIP == list.Items[1].Status.PodIP {
		t.Fatalf("both pods have IP %s", list.Items[0].Status.PodIP)
	}
	for i, p := range list.Items {
		peer := list.Items[1-i]
		// curl, as the upstream specs use (Debian's busybox wget segfaults
		// in these images).
		got := strings.TrimSpace(execIn(t, ns, p.Metadata.Name, "", "curl", "-sS", "-m", "10",
			"http://"+net.JoinHostPort(peer.Status.PodIP, "8080")+"/hostname"))
		if got != peer.Metadata.Name {
			t.Errorf("%s asked %s (%s) for its hostname: %q", p.Metadata.Name, peer.Metadata.Name, peer.Status.PodIP, got)
		}
	}
}

// A Job of 100 short pods completes, and once the TTL controller deletes
// it, its pods are garbage-collected from the API and from the node.
func TestJobOfHundredPods(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: hundred
spec:
  completions: 100
  parallelism: 10
  backoffLimit: 0
  ttlSecondsAfterFinished: 20
  template:
    metadata:
      labels: {app: hundred}
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: work
        image: %s
        command: ["sh", "-c", "echo done $HOSTNAME"]
`, busybox))
	var status struct {
		Succeeded int `json:"succeeded"`
		Failed    int `json:"failed"`
	}
	start := time.Now()
	waitFor(t, 15*time.Minute, "the job's 100 completions", func() (bool, error) {
		out := kubectlResult(t, nil, "-n", ns, "get", "job", "hundred", "-o", "jsonpath={.status}")
		if out.code != 0 {
			return false, fmt.Errorf("the job is gone before it was seen complete: %s", out)
		}
		if err := json.Unmarshal([]byte(out.stdout), &status); err != nil {
			return false, err
		}
		if status.Failed > 0 {
			return false, fmt.Errorf("%d pods failed:\n%s", status.Failed, kubectl(t, "-n", ns, "get", "pods", "-o", "wide"))
		}
		return status.Succeeded == 100, nil
	})
	t.Logf("100 pods completed in %s", time.Since(start).Round(time.Second))
	cond := kubectl(t, "-n", ns, "get", "job", "hundred", "-o", `jsonpath={.status.conditions[?(@.type=="Complete")].status}`)
	if cond != "True" {
		t.Errorf("job condition Complete = %q", cond)
	}
	// The TTL controller deletes the job; the garbage collector its pods.
	waitFor(t, 3*time.Minute, "the job's deletion by its TTL", func() (bool, error) {
		return kubectlResult(t, nil, "-n", ns, "get", "job", "hundred").code != 0, nil
	})
	waitFor(t, 3*time.Minute, "the garbage collection of the job's pods", func() (bool, error) {
		return strings.TrimSpace(kubectl(t, "-n", ns, "get", "pods", "-l", "app=hundred", "-o", "name")) == "", nil
	})
	// kubelet removes the dead sandboxes of deleted pods in its
	// garbage collection (every minute).
	waitFor(t, 4*time.Minute, "the removal of the job's sandboxes from crid", func() (bool, error) {
		out := crictl(t, "pods", "-q", "--namespace", ns)
		n := len(strings.Fields(out))
		return n == 0, nil
	})
	if out := crictl(t, "ps", "-a", "-q", "--label", "io.kubernetes.pod.namespace="+ns); strings.TrimSpace(out) != "" {
		t.Errorf("containers of the job left in crid: %s", out)
	}
}
