package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Liveness and readiness probes of every kind (exec, HTTP, TCP, gRPC)
// pass on healthy containers: the pod becomes Ready with no restart.
func TestProbesPass(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: probed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: http
    image: %[1]s
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 2
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
  - name: tcp
    image: %[1]s
    args: ["netexec", "--http-port=8081", "--udp-port=-1"]
    livenessProbe:
      tcpSocket: {port: 8081}
      periodSeconds: 2
    readinessProbe:
      tcpSocket: {port: 8081}
      periodSeconds: 1
  - name: grpc
    image: %[1]s
    args: ["grpc-health-checking", "--port=5000", "--http-port=8082"]
    livenessProbe:
      grpc: {port: 5000}
      periodSeconds: 2
    readinessProbe:
      grpc: {port: 5000}
      periodSeconds: 1
  - name: exec
    image: %[2]s
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 2
    readinessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
`, agnhost, busybox))
	waitReady(t, ns, "probed")
	// Let every liveness probe run a few more times on the ready pod (a
	// pause for the probes, not a timing assertion).
	time.Sleep(6 * time.Second)
	p := getPod(t, ns, "probed")
	for _, name := range []string{"http", "tcp", "grpc", "exec"} {
		c := p.container(name)
		if c == nil || !c.Ready || c.RestartCount != 0 {
			t.Errorf("container %s: %+v; want ready, no restart", name, c)
		}
	}
	if ev := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=probed,reason=Unhealthy", "-o", "name"); ev != "" {
		t.Errorf("probes failed on the healthy pod:\n%s", describe(t, ns, "pod/probed"))
	}
}

// A failing liveness probe restarts the container, counted in its status;
// a failing readiness probe keeps the pod out of Ready without restarts.
// Failing exec, HTTP and gRPC probes each show their kind's failure.
func TestProbesFail(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: unhealthy
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: exec-live
    image: %[2]s
    command: ["sh", "-c", "touch /tmp/alive; sleep 3; rm /tmp/alive; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/alive"]}
      periodSeconds: 1
      failureThreshold: 1
  - name: grpc-live
    image: %[1]s
    args: ["grpc-health-checking", "--port=5000", "--http-port=8082", "--delay-unhealthy-sec=3"]
    livenessProbe:
      grpc: {port: 5000}
      periodSeconds: 1
      failureThreshold: 1
  - name: http-ready
    image: %[1]s
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
    readinessProbe:
      httpGet: {path: /no-such-page, port: 8080}
      periodSeconds: 1
`, agnhost, busybox))
	var p *Pod
	waitFor(t, 4*time.Minute, "two restarts of each liveness-probed container", func() (bool, error) {
		p = getPod(t, ns, "unhealthy")
		for _, name := range []string{"exec-live", "grpc-live"} {
			if c := p.container(name); c == nil || c.RestartCount < 2 {
				return false, nil
			}
		}
		return true, nil
	})
	for _, name := range []string{"exec-live", "grpc-live"} {
		c := p.container(name)
		if c.LastState.Terminated == nil || c.LastState.Terminated.ExitCode != 137 {
			t.Errorf("%s: last state %+v, want killed (exit code 137)", name, c.LastState.Terminated)
		}
	}
	c := p.container("http-ready")
	if c == nil || c.Ready || c.RestartCount != 0 || c.State.Running == nil {
		t.Errorf("http-ready: %+v; want running, not ready, never restarted", c)
	}
	if ready := kubectl(t, "-n", ns, "get", "pod", "unhealthy", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); ready != "False" {
		t.Errorf("pod Ready = %q with a failing readiness probe", ready)
	}
	events := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=unhealthy,reason=Unhealthy",
		"-o", "custom-columns=MSG:.message", "--no-headers")
	for _, want := range []string{"Liveness probe failed", "Readiness probe failed: HTTP probe failed with statuscode: 404"} {
		if !strings.Contains(events, want) {
			t.Errorf("no %q event; Unhealthy events:\n%s", want, events)
		}
	}
	killed := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=unhealthy,reason=Killing",
		"-o", "custom-columns=MSG:.message", "--no-headers")
	for _, name := range []string{"exec-live", "grpc-live"} {
		if !strings.Contains(killed, "Container "+name+" failed liveness probe") {
			t.Errorf("no Killing event for %s's liveness failure:\n%s", name, killed)
		}
	}
}
