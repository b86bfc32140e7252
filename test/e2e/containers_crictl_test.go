package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// crictl create/start/ps/inspect/logs/exec/stop/rm drive a container end
// to end.
func TestCrictlContainerCommands(t *testing.T) {
	n := newPodNode(t)
	n.pullBusybox(t)
	pod := filepath.Join(n.dir, "pod.json")
	logDir := filepath.Join(n.dir, "logs", "crictl")
	writeFile(t, pod, `{"metadata": {"name": "crictl-ctr-pod", "namespace": "e2e", "uid": "crictl-ctr-uid"},
  "hostname": "crictl-ctr-pod", "log_directory": "`+logDir+`"}`)
	ctr := filepath.Join(n.dir, "ctr.json")
	writeFile(t, ctr, `{"metadata": {"name": "hello"}, "image": {"image": "`+busybox+`"},
  "command": ["sh", "-c", "echo hello-from-crictl; sleep 3600"], "log_path": "hello.log",
  "labels": {"via": "crictl"}}`)
	podID := strings.TrimSpace(crictl(t, n.daemon, "runp", pod))
	id := strings.TrimSpace(crictl(t, n.daemon, "create", podID, ctr, pod))
	if len(id) != 64 {
		t.Fatalf("crictl create printed %q, want a container ID", id)
	}
	mustContain(t, "crictl ps -a after create", crictl(t, n.daemon, "ps", "-a", "--id", id), id[:13], "hello", "Created")
	crictl(t, n.daemon, "start", id[:13])
	mustContain(t, "crictl ps", crictl(t, n.daemon, "ps", "--label", "via=crictl"), id[:13], "hello", "Running")
	mustContain(t, "crictl inspect", crictl(t, n.daemon, "inspect", id[:13]),
		`"state": "CONTAINER_RUNNING"`, `"via": "crictl"`, filepath.Join(logDir, "hello.log"))
	waitLog(t, filepath.Join(logDir, "hello.log"), "hello-from-crictl", 10e9)
	mustContain(t, "crictl logs", crictl(t, n.daemon, "logs", id[:13]), "hello-from-crictl")
	if out := strings.TrimSpace(crictl(t, n.daemon, "exec", "-s", id[:13], "sh", "-c", "echo exec-$((40+2))")); out != "exec-42" {
		t.Errorf("crictl exec -s printed %q", out)
	}
	// The pod shares one PID namespace (the default), so sh is not PID 1
	// and the default stop signal, SIGTERM, ends it: exit 143.
	crictl(t, n.daemon, "stop", "--timeout", "10", id[:13])
	mustContain(t, "crictl ps -a after stop", crictl(t, n.daemon, "ps", "-a", "--id", id), "Exited")
	if out := strings.TrimSpace(crictl(t, n.daemon, "ps", "-q")); out != "" {
		t.Errorf("running containers after stop: %q", out)
	}
	mustContain(t, "crictl inspect after stop", crictl(t, n.daemon, "inspect", id), `"state": "CONTAINER_EXITED"`, `"exitCode": 143`)
	crictl(t, n.daemon, "rm", id[:13])
	if out := strings.TrimSpace(crictl(t, n.daemon, "ps", "-a", "-q")); out != "" {
		t.Errorf("containers after rm: %q", out)
	}
	crictl(t, n.daemon, "rmp", "-f", podID)
	n.removePod(t, podID)
}
