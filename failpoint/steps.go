package failpoint

// Step is one named point between two steps of a CRI call, where the
// crash-injection suite (test/e2e/crash_test.go) kills the process that
// runs it.
type Step struct {
	// Name is the point's name, as passed to Inject.
	Name string
	// RPC is the CRI call the suite makes to reach the point.
	RPC string
	// Process is the one that runs the point and dies there: Daemon or
	// Monitor.
	Process string
}

// The processes a step runs in.
const (
	Daemon  = "crid"
	Monitor = "crid-monitor"
)

// Steps lists every point Inject is called with in crid, in the order the
// calls reach them; TestStepsListEveryInject keeps it in step with the
// code. The monitor's "monitor.<method>" points sit at the entry of its
// request handler (one call site for all methods); the list names those
// of the methods a create, start, exec and stop go through.
var Steps = []Step{
	{"sandbox.run.after-intent", "RunPodSandbox", Daemon},
	{"sandbox.run.after-dir", "RunPodSandbox", Daemon},
	{"sandbox.run.after-cgroup", "RunPodSandbox", Daemon},
	{"sandbox.run.after-netns", "RunPodSandbox", Daemon},
	{"sandbox.run.after-files", "RunPodSandbox", Daemon},
	{"cni.setup", "RunPodSandbox", Daemon},
	{"sandbox.run.after-cni", "RunPodSandbox", Daemon},
	{"sandbox.run.after-infra-start", "RunPodSandbox", Daemon},
	{"sandbox.run.after-ready", "RunPodSandbox", Daemon},
	{"sandbox.run.after-record", "RunPodSandbox", Daemon},

	{"sandbox.stop.after-containers", "StopPodSandbox", Daemon},
	{"sandbox.stop.after-infra", "StopPodSandbox", Daemon},
	{"sandbox.stop.after-cni", "StopPodSandbox", Daemon},
	{"sandbox.stop.after-unpin", "StopPodSandbox", Daemon},
	{"sandbox.stop.after-record", "StopPodSandbox", Daemon},

	{"sandbox.remove.after-intent", "RemovePodSandbox", Daemon},
	{"sandbox.remove.after-containers", "RemovePodSandbox", Daemon},
	{"sandbox.remove.after-infra", "RemovePodSandbox", Daemon},
	{"sandbox.remove.after-cgroup", "RemovePodSandbox", Daemon},
	{"sandbox.remove.after-dir", "RemovePodSandbox", Daemon},

	{"container.create.after-rootfs", "CreateContainer", Daemon},
	{"create.mounted", "CreateContainer", Daemon},
	{"container.create.after-record", "CreateContainer", Daemon},
	{"container.create.after-monitor", "CreateContainer", Daemon},

	{"container.start.after-monitor", "StartContainer", Daemon},
	{"container.start.after-record", "StartContainer", Daemon},

	{"container.stop.after-signal", "StopContainer", Daemon},
	{"container.stop.after-exit", "StopContainer", Daemon},
	{"container.stop.after-record", "StopContainer", Daemon},

	{"container.remove.after-stop", "RemoveContainer", Daemon},
	{"container.remove.after-delete", "RemoveContainer", Daemon},
	{"container.remove.after-rootfs", "RemoveContainer", Daemon},
	{"container.remove.after-record", "RemoveContainer", Daemon},

	{"pull.layer", "PullImage", Daemon},
	{"image.pull.after-layers", "PullImage", Daemon},
	{"image.pull.after-config", "PullImage", Daemon},
	{"image.pull.after-record", "PullImage", Daemon},

	{"monitor.create", "CreateContainer", Monitor},
	{"monitor.create.after-record", "CreateContainer", Monitor},
	{"monitor.create.after-libcontainer", "CreateContainer", Monitor},
	{"monitor.create.after-init", "CreateContainer", Monitor},
	{"monitor.create.after-complete", "CreateContainer", Monitor},
	{"monitor.start", "StartContainer", Monitor},
	{"monitor.start.after-exec", "StartContainer", Monitor},
	{"monitor.start.after-record", "StartContainer", Monitor},
	{"monitor.exec_start", "ExecSync", Monitor},
	{"monitor.exec.after-start", "ExecSync", Monitor},
	{"monitor.kill", "StopContainer", Monitor},
	{"monitor.kill.after-signal", "StopContainer", Monitor},
}

// DynamicPrefix is the one call site whose point name is built at run
// time: "monitor." + the protocol method. Steps entries "monitor.<word>"
// (no further dot) are its points.
const DynamicPrefix = "monitor."

// Knobs are the points that are no step of a call: a test arms them (with
// error) to take a path the node would otherwise not take, such as a
// kernel that cannot idmap a tmpfs. The crash suite does not kill there.
var Knobs = []string{"userns.idmap-tmpfs"}
