package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Liveness and readiness probes of every kind (exec, HTTP, TCP, gRPC)
// pass on healthy containers: the pod becomes Ready with no restart.
// (netexec's /healthz answers 200 once its UDP server runs.)
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
    args: ["netexec", "--http-port=8080", "--udp-port=8081"]
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 2
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
  - name: tcp
    image: %[1]s
    args: ["netexec", "--http-port=8083", "--udp-port=-1"]
    livenessProbe:
      tcpSocket: {port: 8083}
      periodSeconds: 2
    readinessProbe:
      tcpSocket: {port: 8083}
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
	// A readiness probe may fail before its server listens (kubelet probes
	// as soon as the container starts); a liveness failure or a kill on a
	// healthy pod is a fault.
	ev := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=probed",
		"-o", "custom-columns=REASON:.reason,MSG:.message", "--no-headers")
	if strings.Contains(ev, "Liveness probe failed") || strings.Contains(ev, "Killing") {
		t.Errorf("liveness probes failed on the healthy pod:\n%s", describe(t, ns, "pod/probed"))
	}
}

// A failing liveness probe restarts the container, counted in its status;
// a failing readiness probe keeps the pod out of Ready without restarts.
// Exec, HTTP and gRPC liveness probes and an HTTP readiness probe fail,
// each with its kind's message. agnhost's liveness server answers
// /healthz with 200 for 10 s, then 500; grpc-health-checking turns
// NOT_SERVING after 3 s.
func TestProbesFail(t *testing.T) {
	ns := namespace(t)
	// One pod per liveness-probed container: kubelet's event recorder lets
	// through at most 25 events of a type per pod (client-go's spam
	// filter), which three restarting containers in one pod exceed.
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: exec-live
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
---
apiVersion: v1
kind: Pod
metadata:
  name: grpc-live
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: grpc-live
    image: %[1]s
    args: ["grpc-health-checking", "--port=5000", "--http-port=8082", "--delay-unhealthy-sec=3"]
    livenessProbe:
      grpc: {port: 5000}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: http-live
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: http-live
    image: %[1]s
    args: ["liveness"]
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: unready
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: http-ready
    image: %[1]s
    args: ["liveness"]
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
      failureThreshold: 1
`, agnhost, busybox))
	wantUnhealthy := map[string]string{
		"exec-live": "Liveness probe failed: cat: can't open '/tmp/alive'",
		"grpc-live": `Liveness probe failed: service unhealthy (responded with "NOT_SERVING")`,
		"http-live": "Liveness probe failed: HTTP probe failed with statuscode: 500",
	}
	for _, name := range []string{"exec-live", "grpc-live", "http-live"} {
		var c *ContainerStatus
		waitFor(t, 5*time.Minute, "two restarts of "+name, func() (bool, error) {
			c = getPod(t, ns, name).container(name)
			return c != nil && c.RestartCount >= 2, nil
		})
		if c.LastState.Terminated == nil {
			t.Errorf("%s: no last state after %d restarts", name, c.RestartCount)
		}
		// sh as PID 1 ignores SIGTERM: the probe's kill ends in SIGKILL.
		if name == "exec-live" && c.LastState.Terminated != nil && c.LastState.Terminated.ExitCode != 137 {
			t.Errorf("exec-live: last state %+v, want exit code 137", c.LastState.Terminated)
		}
		unhealthy := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+name+",reason=Unhealthy",
			"-o", "custom-columns=MSG:.message", "--no-headers")
		if !strings.Contains(unhealthy, wantUnhealthy[name]) {
			t.Errorf("no %q event; Unhealthy events:\n%s", wantUnhealthy[name], unhealthy)
		}
		killed := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+name+",reason=Killing",
			"-o", "custom-columns=MSG:.message", "--no-headers")
		if !strings.Contains(killed, "Container "+name+" failed liveness probe") {
			t.Errorf("no Killing event for %s's liveness failure:\n%s", name, killed)
		}
	}

	waitFor(t, time.Minute, "the readiness probe's failure", func() (bool, error) {
		ev := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=unready,reason=Unhealthy",
			"-o", "custom-columns=MSG:.message", "--no-headers")
		return strings.Contains(ev, "Readiness probe failed: HTTP probe failed with statuscode: 500"), nil
	})
	waitFor(t, 30*time.Second, "the pod out of Ready", func() (bool, error) {
		return kubectl(t, "-n", ns, "get", "pod", "unready", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`) == "False", nil
	})
	c := getPod(t, ns, "unready").container("http-ready")
	if c == nil || c.Ready || c.RestartCount != 0 || c.State.Running == nil {
		t.Errorf("http-ready: %+v; want running, not ready, never restarted", c)
	}
}
