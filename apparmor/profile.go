package apparmor

import (
	"strings"
)

// profileTemplate is crid-default: everything a container normally does
// (files, network, capabilities the bounding set allows, unmounts) with
// the writes that reach the host through /proc and /sys denied, and no
// mounts. It follows the rules Docker's and containerd's default profiles
// enforce, so a workload confined there is confined the same way here.
//
// ABI 3.0 is pinned: under ABI 4 a bare "network," no longer covers unix
// sockets. @{PROC} is set here so the profile needs none of the
// distribution's tunables.
const profileTemplate = `abi <abi/3.0>,

@{PROC}=/proc/

profile PROFILE_NAME flags=(attach_disconnected,mediate_deleted) {
  # The ordinary life of a container process.
  file,
  network,
  capability,
  umount,

  # crid-monitor (unconfined) stops and kills the container; the
  # container's processes signal and trace one another.
  signal (receive) peer=unconfined,
  signal (send,receive) peer=PROFILE_NAME,
  ptrace (trace,read,tracedby,readby) peer=PROFILE_NAME,

  # No new mounts: a mount could uncover what masked paths hide.
  deny mount,

  # /proc: no writes to files at its top, nor below anything but the
  # per-process directories and /proc/sys; in /proc/sys only
  # /proc/sys/kernel/shm* (the IPC limits a pod's sysctls may set).
  deny @{PROC}/* w,
  deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}/** w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  # The host's memory and a reboot switch: not even readable.
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,
  deny @{PROC}/mem rwklx,
  deny @{PROC}/kmem rwklx,

  # /sys: writable only below /sys/fs/cgroup (the container's own cgroup,
  # where the mount allows it); firmware, power capping and the LSMs'
  # own files are hidden altogether.
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
`

// Profile is the text of crid's default profile under a name.
func Profile(name string) string {
	return strings.ReplaceAll(profileTemplate, "PROFILE_NAME", name)
}
