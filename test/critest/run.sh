#!/usr/bin/env bash
# The conformance run (`make critest`): critest v1.37.0 against a private crid.
#
#   1. builds critest/crictl if needed (hack/build-tools.sh) and junitcheck;
#   2. serves the test images from the local registry on 127.0.0.1:5000
#      (hack/test-images.sh), mirrored for critest's upstream hosts;
#   3. starts _output/bin/crid on a private temp dir (config, socket, root,
#      run dir, CNI config on its own bridge and subnet);
#   4. runs the whole validation suite (never the benchmarks, no skip/focus)
#      with crid's NRI socket (-nri-socket, so the NRI specs run too) and a
#      JUnit report in _output/critest/;
#   5. stops crid and removes everything the run created, even on failure or
#      Ctrl-C: processes, mounts, temp dir, bridge, iptables rule, sysctl, and
#      the registry if this run started it;
#   6. runs a second, short pass on the same crid: the 5 Streaming specs
#      with critest's websocket clients (-websocket-exec/-attach/-portforward,
#      -ginkgo.focus=Streaming; report junit-websocket.xml), checked by
#      junitcheck -allowed-focus Streaming: all 5 must pass;
#   7. exits with the status of test/critest/junitcheck, which prints
#      "critest: N passed, N failed, N skipped" and enforces the ratchet of
#      test/critest/expected-pass.txt and cannot-pass.txt (see README.md),
#      non-zero also when the websocket pass fails.
#
# Needs root. Environment knobs:
#   CRID_BIN=path           the crid binary (default _output/bin/crid)
#   CRITEST_VERBOSE=1       also stream critest's output (always in the log)
#   CRITEST_TIMEOUT=45m     ginkgo's suite timeout
#   REGISTRY_ADDR=127.0.0.1:5000  the test registry (as hack/test-images.sh)
#   CRITEST_ARGS="..."      extra critest flags (e.g. -ginkgo.v); a skip or
#                           focus shows in the report and fails the ratchet
#                           (the websocket pass does not take them)
#   CRITEST_WEBSOCKET=0     skip the websocket pass (it takes ~10 s)
# Heavy: on a shared machine run it under `flock -o /tmp/crid-heavy.lock`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

report_dir="$root/_output/critest"
crid_bin="${CRID_BIN:-$root/_output/bin/crid}"
critest_bin="$root/_output/bin/critest"
registry="${REGISTRY_ADDR:-127.0.0.1:5000}"
bridge="crid-critest0"
subnet="10.99.0.0/16"
suite_timeout="${CRITEST_TIMEOUT:-45m}"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

log() { printf 'critest-run: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 2
}

[[ $EUID -eq 0 ]] || die "must run as root (crid needs it)"
[[ -x "$crid_bin" ]] || die "$crid_bin not found: run 'make build' first"

# --- state for cleanup ------------------------------------------------------
tmp=""
crid_pid=""
started_registry=0
added_masq_rule=0
saved_route_localnet=""
bridge_preexisted=0
crid_descendants=""
cleaned=0

registry_up() { curl -fsS -m 2 -o /dev/null "http://$registry/v2/" 2>/dev/null; }

# pids_under DIR: processes whose root, cwd, executable or command line is
# under DIR: containers and helpers of the crid this script started on DIR.
# (One find and one grep: a loop over /proc costs seconds on a busy host. The
# pattern's first character is a bracket expression so that grep does not
# find its own command line.)
pids_under() {
	local dir="$1" re
	re="[${dir:0:1}]$(printf '%s' "${dir:1}" | sed 's/[].[\*^$]/\\&/g')"
	{
		find /proc/[0-9]*/ -maxdepth 1 \( -name root -o -name cwd -o -name exe \) -lname "$dir*" 2>/dev/null
		grep -l -a -e "$re" /proc/[0-9]*/cmdline 2>/dev/null
	} | cut -d/ -f3 | sort -un | grep -vx -e "$$" -e "$BASHPID" || true
}

# starttime PID: the start time of PID (field 22 of /proc/PID/stat), to tell
# a process from a later one that reuses its pid.
starttime() {
	local stat
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	stat="${stat##*) }"
	# shellcheck disable=SC2086
	set -- $stat
	echo "${20}"
}

# descendants PID: "pid:starttime" of every descendant of PID.
descendants() {
	local pid
	for pid in $(ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2 }
		END {
			n = 1; q[1] = root
			for (i = 1; i <= n; i++)
				for (p in parent)
					if (parent[p] == q[i]) { q[++n] = p; print p }
		}'); do
		echo "$pid:$(starttime "$pid")"
	done
}

# mounts_under DIR: mount points under DIR, deepest first.
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
		awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

stop_crid() {
	[[ -n "$crid_pid" ]] || return 0
	if kill -0 "$crid_pid" 2>/dev/null; then
		# crid's monitor outlives crid by design, and so do containers that
		# crid did not remove: note them now, end them after crid.
		crid_descendants="$(descendants "$crid_pid")"
		log "stopping crid (pid $crid_pid)"
		kill -TERM "$crid_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do # 10 s
			kill -0 "$crid_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$crid_pid" 2>/dev/null; then
			log "crid did not exit within 10s of SIGTERM: SIGKILL"
			kill -KILL "$crid_pid" 2>/dev/null || true
		fi
	fi
	wait "$crid_pid" 2>/dev/null || true
	crid_pid=""
}

# end_left_processes: end what crid started and left running.
end_left_processes() {
	local pids="" entry pid st
	for entry in $crid_descendants; do
		pid="${entry%%:*}" st="${entry#*:}"
		[[ -n "$st" && "$(starttime "$pid")" == "$st" ]] && pids+=" $pid"
	done
	[[ -n "$tmp" && -d "$tmp" ]] && pids+=" $(pids_under "$tmp")"
	pids="$(echo "$pids" | tr -s ' ' '\n' | grep . | sort -un | tr '\n' ' ')"
	[[ -n "${pids// /}" ]] || return 0
	log "ending processes crid left: $pids"
	for pid in $pids; do
		log "  $pid: $(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline | cut -c1-120)"
	done
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null
	for _ in $(seq 1 20); do
		local alive=""
		for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive+=" $pid"; done
		[[ -n "$alive" ]] || return 0
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $alive 2>/dev/null
	sleep 0.2
}

# remove_cgroup_tree: end whatever still runs in this run's cgroup parent
# (only pods of the crid this script started live there) and remove its
# cgroups, deepest first, in every hierarchy.
cgroup_parent="/crid-critest-$$"
remove_cgroup_tree() {
	local h pids
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[[ -d "$h${cgroup_parent#/}" ]] || continue
		pids="$(find "$h${cgroup_parent#/}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un | tr '\n' ' ')"
		if [[ -n "${pids// /}" ]]; then
			log "ending processes left in $h${cgroup_parent#/}: $pids"
			# shellcheck disable=SC2086
			kill -KILL $pids 2>/dev/null
		fi
	done
	sleep 0.2
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[[ -d "$h${cgroup_parent#/}" ]] || continue
		find "$h${cgroup_parent#/}" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
}

# teardown: undo everything this run set up; safe to call twice.
teardown() {
	[[ $cleaned -eq 1 ]] && return 0
	cleaned=1
	trap '' INT TERM HUP
	set +e
	stop_crid
	end_left_processes
	remove_cgroup_tree
	if [[ -n "$tmp" && -d "$tmp" ]]; then
		local m
		while read -r m; do
			[[ -n "$m" ]] || continue
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
		done < <(mounts_under "$tmp")
		rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp"; } || log "warning: cannot remove $tmp"
	fi
	if [[ $added_masq_rule -eq 1 ]]; then
		iptables -t nat -D POSTROUTING -s 127.0.0.0/8 -o "$bridge" -m comment --comment crid-critest -j MASQUERADE 2>/dev/null
	fi
	if [[ -n "$saved_route_localnet" ]]; then
		sysctl -q -w "net.ipv4.conf.all.route_localnet=$saved_route_localnet" >/dev/null
	fi
	if [[ $bridge_preexisted -eq 0 ]] && ip link show "$bridge" >/dev/null 2>&1; then
		ip link del "$bridge" 2>/dev/null
	fi
	if [[ $started_registry -eq 1 ]]; then
		log "stopping the registry this run started"
		bash hack/registry.sh stop >/dev/null 2>&1 || log "warning: hack/registry.sh stop failed"
	fi
	# What is left behind is a bug of the run (or of crid): say so.
	if [[ -n "$tmp" ]]; then
		[[ -e "$tmp" ]] && log "warning: $tmp is still there"
		[[ -n "$(mounts_under "$tmp")" ]] && log "warning: mounts left under $tmp"
	fi
	set -e
	return 0
}

# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() {
	local rc=$?
	teardown
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

[[ -e "/sys/class/net/$bridge" ]] && bridge_preexisted=1 # not ours: leave it

# --- tools ------------------------------------------------------------------
bash hack/build-tools.sh
mkdir -p "$report_dir"
rm -f "$report_dir"/junit*.xml "$report_dir"/crid.log "$report_dir"/critest.log "$report_dir"/junitcheck.txt \
	"$report_dir"/critest-websocket.log "$report_dir"/junitcheck-websocket.txt
tmp="$(mktemp -d /tmp/crid-critest.XXXXXX)"
# Listable by root only, passable by all: the user namespace specs' container
# roots are mapped to other users and reach their rootfs under it.
chmod 711 "$tmp"
go build -o "$tmp/junitcheck" ./test/critest/junitcheck

# --- test images and registry -----------------------------------------------
if [[ -f hack/test-images.sh ]]; then
	# A registry that already answers is someone else's: leave it running.
	registry_up || started_registry=1
	bash hack/test-images.sh
else
	log "warning: hack/test-images.sh not found: running without the test images"
fi
if ! registry_up; then
	log "warning: no registry answers on $registry: every pull will fail"
fi

# --- crid configuration ------------------------------------------------------
mkdir -p "$tmp/net.d" "$tmp/root" "$tmp/run"
sock="$tmp/crid.sock"

if [[ -f hack/registries-mirror.conf.in ]]; then
	# The test bed's template: critest's upstream hosts mirrored to @MIRROR@.
	sed -e "s|@MIRROR@|$registry|g" hack/registries-mirror.conf.in >"$tmp/registries.conf"
else
	# critest v1.37.0 pulls from these four hosts (grep the image constants in
	# pkg/framework, pkg/validate and pkg/benchmark); the local registry holds
	# each image under its upstream path with the host stripped.
	{
		echo "# containers-registries.conf v2, written by test/critest/run.sh"
		for host in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws; do
			printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\n\n[[registry.mirror]]\nlocation = "%s"\ninsecure = true\n' \
				"$host" "$host" "$registry"
		done
		printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$registry"
	} >"$tmp/registries.conf"
fi

cat >"$tmp/net.d/10-crid-critest.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "crid-critest",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$tmp/cni-ipam",
        "ranges": [[{ "subnet": "$subnet" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF

cni_bin_dirs='"/opt/cni/bin"'
[[ -d "$root/_output/cni/bin" ]] && cni_bin_dirs="\"$root/_output/cni/bin\", $cni_bin_dirs"

cat >"$tmp/crid.toml" <<EOF
# written by test/critest/run.sh
socket = "$sock"
root_dir = "$tmp/root"
run_dir = "$tmp/run"

[image]
registries_conf = "$tmp/registries.conf"
# sandbox_image unset: pods run crid's built-in infra (crid-pause).

[network]
cni_conf_dir = "$tmp/net.d"
cni_bin_dirs = [$cni_bin_dirs]

[runtime]
cgroup_parent = "$cgroup_parent"

# critest's NRI specs connect their plugins here (-nri-socket below). Its
# synchronization specs hold a plugin's Synchronize open for 2 s on
# purpose, as long as NRI's default request timeout: give plugins 10 s.
[nri]
socket_path = "$tmp/nri.sock"
plugin_path = "$tmp/nri-plugins"
plugin_config_path = "$tmp/nri-conf.d"
plugin_request_timeout = "10s"
EOF

# critest's host-port spec connects to 127.0.0.1:<hostPort>: DNAT from
# loopback to a pod needs route_localnet and masquerading of 127.0.0.0/8
# towards the pod bridge. Both are undone by cleanup.
saved_route_localnet="$(sysctl -n net.ipv4.conf.all.route_localnet)"
sysctl -q -w net.ipv4.conf.all.route_localnet=1 >/dev/null
if iptables -t nat -A POSTROUTING -s 127.0.0.0/8 -o "$bridge" -m comment --comment crid-critest -j MASQUERADE 2>/dev/null; then
	added_masq_rule=1
else
	log "warning: cannot add the loopback MASQUERADE rule: the host-port spec may fail"
fi

# --- crid ---------------------------------------------------------------------
log "starting crid on $sock (log: $report_dir/crid.log)"
"$crid_bin" --config "$tmp/crid.toml" -v=2 >"$report_dir/crid.log" 2>&1 </dev/null &
crid_pid=$!
for _ in $(seq 1 300); do # 30 s
	[[ -S "$sock" ]] && break
	if ! kill -0 "$crid_pid" 2>/dev/null; then
		tail -n 30 "$report_dir/crid.log" >&2
		die "crid exited before its socket appeared"
	fi
	sleep 0.1
done
[[ -S "$sock" ]] || {
	tail -n 30 "$report_dir/crid.log" >&2
	die "crid's socket $sock did not appear within 30s"
}

# --- critest --------------------------------------------------------------------
# Serial (critest's default -parallel of 1). The flag must not be passed at
# all, not even as -parallel=1: ginkgo v2.32 refuses to run when a flag named
# "parallel" was set ("Use of go test -parallel"), and a value above 1 needs
# the ginkgo CLI in PATH; the host-port specs use fixed ports anyway.
# No -benchmark: critest then skips its benchmark specs itself (ginkgo skip
# "benchmark"); no other skip or focus is passed.
# -report-dir/-report-prefix exist in v1.37.0 but nothing reads them: the
# JUnit report comes from ginkgo's own --ginkgo.junit-report.
# -nri-socket: critest's 13 NRI specs run only with it; one run with it
# covers every spec (junitcheck also counts the NRI specs apart).
critest_args=(
	-runtime-endpoint "unix://$sock"
	-image-endpoint "unix://$sock"
	-nri-socket "$tmp/nri.sock"
	-ginkgo.junit-report="$report_dir/junit.xml"
	-ginkgo.timeout="$suite_timeout"
	-ginkgo.no-color
	-ginkgo.poll-progress-after=120s
	-ginkgo.poll-progress-interval=60s
)
# shellcheck disable=SC2206
[[ -n "${CRITEST_ARGS:-}" ]] && critest_args+=($CRITEST_ARGS)

log "running critest (log: $report_dir/critest.log, report: $report_dir/junit.xml)"
start=$(date +%s)
critest_rc=0
if [[ "${CRITEST_VERBOSE:-0}" == 1 ]]; then
	"$critest_bin" "${critest_args[@]}" 2>&1 </dev/null | tee "$report_dir/critest.log" || critest_rc=$?
else
	"$critest_bin" "${critest_args[@]}" >"$report_dir/critest.log" 2>&1 </dev/null || critest_rc=$?
fi
end=$(date +%s)
grep -E '^(Ran [0-9]+ of [0-9]+ Specs|FAIL!|SUCCESS!|critest version)' "$report_dir/critest.log" >&2 || true
log "critest exited $critest_rc after $((end - start))s"

# --- websocket pass ------------------------------------------------------------
# The main pass streams with SPDY (critest's default). kubelet 1.31+ and
# kubectl speak websocket (v5.channel.k8s.io, SPDY tunnelled for
# port-forward), so the Streaming specs run again with those clients: a
# declared focus, which junitcheck -allowed-focus accepts and counts apart.
ws_focus="Streaming"
ws_rc=0
ws_ran=0
if [[ "${CRITEST_WEBSOCKET:-1}" != 0 ]] && kill -0 "$crid_pid" 2>/dev/null; then
	ws_ran=1
	ws_args=(
		-runtime-endpoint "unix://$sock"
		-image-endpoint "unix://$sock"
		-websocket-exec -websocket-attach -websocket-portforward
		-ginkgo.focus="$ws_focus"
		-ginkgo.junit-report="$report_dir/junit-websocket.xml"
		-ginkgo.timeout=10m
		-ginkgo.no-color
	)
	log "running critest's Streaming specs over websocket (log: $report_dir/critest-websocket.log)"
	"$critest_bin" "${ws_args[@]}" >"$report_dir/critest-websocket.log" 2>&1 </dev/null || ws_rc=$?
	grep -E '^(Ran [0-9]+ of [0-9]+ Specs|FAIL!|SUCCESS!)' "$report_dir/critest-websocket.log" >&2 || true
	log "critest (websocket pass) exited $ws_rc"
fi

if ! kill -0 "$crid_pid" 2>/dev/null; then
	log "warning: crid died during the run; last lines of its log:"
	tail -n 30 "$report_dir/crid.log" >&2
fi
stop_crid

[[ -f "$report_dir/junit.xml" ]] || die "critest wrote no JUnit report (exit $critest_rc); see $report_dir/critest.log"

# --- ratchet ----------------------------------------------------------------------
check_rc=0
"$tmp/junitcheck" \
	-expected-pass test/critest/expected-pass.txt \
	-cannot-pass test/critest/cannot-pass.txt \
	"$report_dir/junit.xml" >"$report_dir/junitcheck.txt" 2>&1 || check_rc=$?
ws_check_rc=0
if [[ $ws_ran -eq 1 ]]; then
	if [[ -f "$report_dir/junit-websocket.xml" ]]; then
		"$tmp/junitcheck" -allowed-focus "$ws_focus" "$report_dir/junit-websocket.xml" \
			>"$report_dir/junitcheck-websocket.txt" 2>&1 || ws_check_rc=$?
	else
		echo "junitcheck: the websocket pass wrote no JUnit report (critest exit $ws_rc); see $report_dir/critest-websocket.log" \
			>"$report_dir/junitcheck-websocket.txt"
		ws_check_rc=1
	fi
fi
# Tear down first so that junitcheck's summary line is the last line printed.
teardown
if [[ $ws_ran -eq 1 ]]; then
	sed 's/^/websocket pass: /' "$report_dir/junitcheck-websocket.txt"
fi
cat "$report_dir/junitcheck.txt"
[[ $check_rc -ne 0 ]] && exit "$check_rc"
exit "$ws_check_rc"
