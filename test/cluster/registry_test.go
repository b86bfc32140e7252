package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A pod's image comes from a registry behind basic auth: without an
// imagePullSecret the pull is refused, with one the pod runs.
func TestImagePullSecret(t *testing.T) {
	ns := namespace(t)
	image := env["AUTH_REGISTRY"] + "/e2e-test-images/busybox:1.37.0-2"
	pod := func(name, secrets string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 1
  %s
  containers:
  - name: main
    image: %s
    imagePullPolicy: Always
    command: ["sleep", "3600"]
`, name, secrets, image)
	}
	apply(t, ns, pod("anonymous", ""))
	var c *ContainerStatus
	waitFor(t, 2*time.Minute, "the anonymous pull's failure", func() (bool, error) {
		c = getPod(t, ns, "anonymous").container("main")
		if c != nil && c.State.Running != nil {
			return false, fmt.Errorf("the pod runs without credentials")
		}
		return c != nil && c.State.Waiting != nil && (c.State.Waiting.Reason == "ErrImagePull" || c.State.Waiting.Reason == "ImagePullBackOff"), nil
	})
	events := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=anonymous,reason=Failed",
		"-o", "custom-columns=MSG:.message", "--no-headers")
	if !strings.Contains(strings.ToLower(events), "unauthorized") && !strings.Contains(strings.ToLower(events), "authentication required") {
		t.Errorf("the refused pull does not say why: %q", events)
	}

	kubectl(t, "-n", ns, "create", "secret", "docker-registry", "auth",
		"--docker-server="+env["AUTH_REGISTRY"], "--docker-username="+env["AUTH_USER"], "--docker-password="+env["AUTH_PASS"])
	apply(t, ns, pod("authenticated", "imagePullSecrets: [{name: auth}]"))
	p := waitReady(t, ns, "authenticated")
	if c := p.container("main"); c == nil || c.RestartCount != 0 {
		t.Errorf("authenticated: %+v", c)
	}
	// A wrong password is refused too.
	kubectl(t, "-n", ns, "create", "secret", "docker-registry", "wrong",
		"--docker-server="+env["AUTH_REGISTRY"], "--docker-username="+env["AUTH_USER"], "--docker-password=not-"+env["AUTH_PASS"])
	apply(t, ns, pod("wrong-password", "imagePullSecrets: [{name: wrong}]"))
	waitFor(t, 2*time.Minute, "the wrong password's refusal", func() (bool, error) {
		c = getPod(t, ns, "wrong-password").container("main")
		if c != nil && c.State.Running != nil {
			return false, fmt.Errorf("the pod runs with a wrong password")
		}
		return c != nil && c.State.Waiting != nil && (c.State.Waiting.Reason == "ErrImagePull" || c.State.Waiting.Reason == "ImagePullBackOff"), nil
	})
}
