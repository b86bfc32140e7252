#!/usr/bin/env bash
# `make bench`: crid and Debian's containerd (1.6) measured side by side, on
# this machine, in one run, by hack/bench (crid-bench). For each runtime the
# script generates a private configuration (socket, state dirs, CNI network,
# cgroup parent, all under one temp dir), starts the daemon itself, runs
# `crid-bench run` against its socket, removes every pod, stops the daemon
# (only the PID it started), and finally prints one table with both runtimes
# and design.md's targets.
#
#   hack/bench/run.sh [-runtimes=crid,containerd] [-containerd-max-pods=N]
#                     [-containerd-max-dead=N] [-smoke] [crid-bench run flags]
#
# crid-bench run flags, e.g.: -phases=pull,memory,seq,concurrent,floor,sweep,dead
# -pods=50 -concurrency=10 -concurrent-pods=100 -mem-pods=50
# -levels=10,100,500,1000 -dead=20000 (`crid-bench run -h`).
# containerd is bounded so that it finishes in the time allowed: sweep
# levels above -containerd-max-pods (default 100) and dead containers past
# -containerd-max-dead (default 1000) are not measured on it; the report
# says so. The floors (CNI, libcontainer, pulls) are measured once, in
# crid's run. -smoke is `make bench-smoke`: crid only, one level of 10 pods,
# a few dead containers, the floors, small samples; it checks that the
# report and the plot are produced (no timing is checked).
# Environment: CRID_SANDBOX_IMAGE runs crid's pod infra from that image
# (e.g. registry.k8s.io/pause:3.10, through the test bed's mirror) instead
# of the built-in crid-pause (the default, as crid's own);
# BENCH_KEEP=1 keeps the temp dir (daemon logs, configs);
# BENCH_TIMEOUT bounds each runtime's measurement (default 150m);
# REGISTRY_ADDR is the local registry (default 127.0.0.1:5000);
# CRID_TESTBED_DIR the test bed (default _output/testbed).
#
# For 1,000 pods the run raises fs.inotify.max_user_instances to 8192 if it
# is lower, and puts it back at the end. A Linux bridge takes at most 1,024
# ports: the largest level plus -more must stay below that.
#
# The two networks are bridge + host-local + portmap + loopback, as crid's
# default, on their own bridges and subnets: crid-bench0 10.77.0.0/16 (crid)
# and crid-bench1 10.78.0.0/16 (containerd). Results stay in _output/bench/.
#
# Heavy: run it alone on a shared machine, e.g.
#   flock /tmp/crid-heavy.lock make bench
set -euo pipefail
umask 022

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/_output/bin"
outdir="$root/_output/bench"
registry="${REGISTRY_ADDR:-127.0.0.1:5000}"
testbed="${CRID_TESTBED_DIR:-$root/_output/testbed}"
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"

die() {
	echo "bench: $*" >&2
	exit 1
}
log() { echo "bench: $*" >&2; }

runtimes=crid,containerd
ctrd_max_pods=100
ctrd_max_dead=1000
smoke=0
pass=()
while (($#)); do
	case "$1" in
	-runtimes=* | --runtimes=*) runtimes="${1#*=}" ;;
	-containerd-max-pods=*) ctrd_max_pods="${1#*=}" ;;
	-containerd-max-dead=*) ctrd_max_dead="${1#*=}" ;;
	-smoke)
		smoke=1
		runtimes=crid
		;;
	-runtimes | --runtimes)
		(($# > 1)) || die "$1 needs a value"
		runtimes="$2"
		shift
		;;
	-h | -help | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) pass+=("$1") ;;
	esac
	shift
done
if ((smoke)); then
	# Flags given after -smoke still win (the last one counts).
	pass=(-phases=floor,sweep,dead -levels=10 -more=2 -samples=3 -cpu-window=1s -log-poll=1s
		-floor-iterations=2 -dead=20 -concurrency=5 "${pass[@]}")
fi
# The phases asked for (crid-bench's default: all of them).
phases=pull,memory,seq,concurrent,floor,sweep,dead
for a in "${pass[@]}"; do
	case "$a" in -phases=* | --phases=*) phases="${a#*=}" ;; esac
done
has_phase() { [[ ",$phases," == *",$1,"* ]]; }
IFS=, read -r -a rts <<<"$runtimes"
for rt in "${rts[@]}"; do
	case "$rt" in
	crid | containerd) ;;
	*) die "unknown runtime $rt (crid, containerd)" ;;
	esac
done

# Per-runtime network: name, bridge, subnet.
declare -A net_name=([crid]=crid-bench-crid [containerd]=crid-bench-containerd)
# BENCH_CRID_BRIDGE/BENCH_CRID_SUBNET move crid's (e.g. when another run's
# bridge is still there and not yours to delete); the subnet must be a /16.
declare -A net_bridge=([crid]=${BENCH_CRID_BRIDGE:-crid-bench0} [containerd]=crid-bench1)
declare -A net_subnet=([crid]=${BENCH_CRID_SUBNET:-10.77.0.0/16} [containerd]=10.78.0.0/16)

[[ $(id -u) == 0 ]] || die "run as root (namespaces, cgroups, CNI)"
exec 9>/tmp/crid-bench.lock
flock -n 9 || die "another benchmark is running (/tmp/crid-bench.lock)"

started=$(date +%s)

# --- preflight --------------------------------------------------------------

for rt in "${rts[@]}"; do
	br="${net_bridge[$rt]}"
	if ip link show "$br" >/dev/null 2>&1; then
		die "bridge $br exists (left by an interrupted run?). If no pod uses it: ip link del $br"
	fi
	sub="${net_subnet[$rt]}"
	if ip -4 route show | grep -q "^${sub%%.0.0/16}\."; then
		die "a route into ${sub} exists on this node: the benchmark network would collide"
	fi
done
for p in bridge host-local portmap loopback; do
	[[ -x /opt/cni/bin/$p ]] || {
		log "CNI plugins missing: hack/install-deps.sh"
		bash "$root/hack/install-deps.sh"
		break
	}
done
command -v iptables-save >/dev/null || die "iptables missing: hack/install-deps.sh"
if [[ " ${rts[*]} " == *" containerd "* ]] && ! command -v containerd >/dev/null; then
	log "apt-get install -y containerd (Debian's, with its runc)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null
fi
if [[ " ${rts[*]} " == *" crid "* ]]; then
	[[ -x "$bin/crid" ]] || die "$bin/crid missing: make build"
fi
if has_phase pull && ! command -v pigz >/dev/null; then
	log "apt-get install -y pigz (the pull floor)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pigz >/dev/null
fi

registry_was_up=0
curl -fsS -o /dev/null --max-time 2 "http://$registry/v2/" 2>/dev/null && registry_was_up=1

work="$(mktemp -d /tmp/crid-bench.XXXXXX)"
cgroot="/$(basename "$work")" # the cgroup parent of every pod of this run
mkdir -p "$work/results"
netns_before="$(ls /run/netns 2>/dev/null || true)"
run_containerd_existed=0
[[ -e /run/containerd ]] && run_containerd_existed=1
run_netns_existed=0
[[ -e /run/netns ]] && run_netns_existed=1
declare -A daemon_pid=()
inotify_before=""

# --- cleanup, on every path ---------------------------------------------------

# our_pids prints the processes of this run, or with $1 of one runtime's
# part of it: carrying CRID_BENCH_RUN=$work/<runtime> (each daemon gets it;
# its shims and monitor inherit it), naming that dir on their command line,
# or in that part's cgroups.
our_pids() {
	local d pid base="$work/${1:-}" cg="$cgroot${1:+/$1}"
	for d in /proc/[0-9]*; do
		pid="${d#/proc/}"
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		if grep -qz "^CRID_BENCH_RUN=$base" "$d/environ" 2>/dev/null ||
			tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -qF -- "$base" ||
			grep -q ":$cg\(/\|$\)" "$d/cgroup" 2>/dev/null; then
			echo "$pid"
		fi
	done
}

# stop_ours stops the processes our_pids "$1" names: SIGTERM, then SIGKILL.
stop_ours() {
	local i pids
	for i in 1 2 3; do
		mapfile -t pids < <(our_pids "${1:-}")
		((${#pids[@]})) || return 0
		# kill fails when one of them has just exited: never fatal.
		if ((i < 3)); then
			log "stopping what outlives ${1:-the run} (monitor, shims, pods): ${pids[*]}"
			kill -TERM "${pids[@]}" 2>/dev/null || true
			sleep 1
		else
			log "SIGKILL to what ignored SIGTERM (a container's init ignores it): ${pids[*]}"
			kill -KILL "${pids[@]}" 2>/dev/null || true
			sleep 0.5
		fi
	done
}

# stop_runtime removes the runtime's pods through its socket, then stops the
# daemon this script started, by PID.
stop_runtime() {
	local rt="$1" pid="${daemon_pid[$1]:-}" sock i
	[[ -n $pid ]] || return 0
	# A daemon the sweep killed and started again wrote its pid here.
	if [[ -s "$work/$rt/daemon.pid" ]]; then
		wait "$pid" 2>/dev/null || true # the killed one, a zombie of ours
		pid="$(cat "$work/$rt/daemon.pid")"
	fi
	sock="$work/$rt/$rt.sock"
	if kill -0 "$pid" 2>/dev/null; then
		timeout 200 "$bench" cleanup -endpoint "$sock" -timeout 180s || log "$rt: removing its pods failed"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 150; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$rt (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	unset "daemon_pid[$rt]"
	# crid-monitor outlives the daemon by design, containerd's shims may
	# too: the next runtime must be measured alone.
	stop_ours "$rt"
}

# sweep_iptables removes the nat rules and chains CNI left for network $1
# (normally none: CNI DEL removes them).
sweep_iptables() {
	local rules chains line c
	rules="$(iptables-save -t nat 2>/dev/null | grep -F -- "name: \\\"$1\\\"" || true)"
	[[ -n $rules ]] || return 0
	log "removing $(wc -l <<<"$rules") leftover iptables rules of $1"
	chains="$(grep -o -- '-j CNI-[A-Za-z0-9-]*' <<<"$rules" | awk '{print $2}' | sort -u)"
	while IFS= read -r line; do
		eval "iptables -t nat ${line/#-A/-D}" 2>/dev/null || true
	done <<<"$rules"
	for c in $chains; do
		iptables -t nat -F "$c" 2>/dev/null || true
		iptables -t nat -X "$c" 2>/dev/null || true
	done
}

cleanup() {
	local rc=$? rt m d n
	set +e
	trap - EXIT INT TERM
	for rt in "${!daemon_pid[@]}"; do
		stop_runtime "$rt"
	done
	# What outlives a daemon: crid-monitor, containerd's shims, and pods a
	# failed cleanup left. Only this run's processes, by PID.
	stop_ours
	# Mounts under the work dir (overlays, namespace pins, shm), deepest first.
	awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	# containerd 1.6 pins pod network namespaces under /run/netns/cni-*.
	for n in /run/netns/cni-*; do
		[[ -e $n ]] || continue
		grep -qxF "${n#/run/netns/}" <<<"$netns_before" && continue
		umount "$n" 2>/dev/null
		rm -f "$n"
	done
	((run_netns_existed)) || rmdir /run/netns 2>/dev/null
	for rt in "${rts[@]}"; do
		sweep_iptables "${net_name[$rt]}"
		rm -f /var/lib/cni/results/"${net_name[$rt]}"-*
		ip link del "${net_bridge[$rt]}" 2>/dev/null
	done
	for d in /sys/fs/cgroup/*"$cgroot" /sys/fs/cgroup"$cgroot"; do
		[[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	((run_containerd_existed)) || rm -rf /run/containerd
	if [[ -n $inotify_before ]]; then
		sysctl -qw fs.inotify.max_user_instances="$inotify_before" || log "could not restore fs.inotify.max_user_instances=$inotify_before"
	fi
	if ((!registry_was_up)); then
		bash "$root/hack/registry.sh" stop >/dev/null
	fi
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $work"
	elif awk -v w="$work/" 'index($5, w) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
		log "mounts remain under $work: not removing it"
	else
		rm -rf --one-file-system "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build, images, proxy port ------------------------------------------------

log "building crid-bench and crid-bench-floor"
(cd "$root" && go build -o "$bin/crid-bench" ./hack/bench && go build -o "$bin/crid-bench-floor" ./hack/bench/floorhelper)
bench="$bin/crid-bench"

# The test images (busybox, pause) and the local registry; the bench images.
REGISTRY_ADDR="$registry" CRID_TESTBED_DIR="$testbed" bash "$root/hack/test-images.sh" >/dev/null ||
	die "hack/test-images.sh failed"
"$bench" run -check-flags -runtime check -endpoint none -daemon-pid 1 -log-dir none "${pass[@]}" ||
	die "bad crid-bench run flags: ${pass[*]}"
if has_phase pull; then
	# A failure here leaves the pull phase to report it; the rest runs.
	"$bench" image -registry "$registry" || log "crid-bench image failed: the pull phase will fail"
fi

# 1,000 pods' runtimes and plugins may want more inotify instances than
# Debian's 128; raised for the run, restored by cleanup.
cur="$(sysctl -n fs.inotify.max_user_instances)"
if ((cur < 8192)); then
	inotify_before="$cur"
	sysctl -qw fs.inotify.max_user_instances=8192
fi

# A free port for the counting proxy the runtimes pull the bench images through.
port=5099
while ss -Hltn "sport = :$port" | grep -q .; do
	port=$((port + 1))
	((port < 5199)) || die "no free port in 5099-5198 for the registry proxy"
done
proxy="127.0.0.1:$port"


# --- the runtimes ---------------------------------------------------------------

write_conflist() {
	local rt="$1" dir="$2"
	mkdir -p "$dir/net.d" "$dir/ipam"
	cat >"$dir/net.d/10-bench.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "${net_name[$rt]}",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${net_bridge[$rt]}",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/ipam",
        "ranges": [[{ "subnet": "${net_subnet[$rt]}" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
}

start_crid() {
	local dir="$1"
	{
		cat "$testbed/registries.conf"
		printf '\n# crid-bench: the counting proxy in front of the local registry.\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$proxy"
	} >"$dir/registries.conf"
	cat >"$dir/crid.toml" <<EOF
# Generated by hack/bench/run.sh.
socket = "$dir/crid.sock"
root_dir = "$dir/root"
run_dir = "$dir/run"

[image]
registries_conf = "$dir/registries.conf"
# Empty: crid's built-in infra (crid-pause).
sandbox_image = "${CRID_SANDBOX_IMAGE:-}"

[network]
cni_conf_dir = "$dir/net.d"
cni_bin_dirs = ["/opt/cni/bin"]

[runtime]
cgroup_driver = "cgroupfs"
cgroup_parent = "$cgroot/crid"
EOF
	# setsid: a ^C reaches this script (which removes the pods through the
	# socket), not the daemon.
	# Go profiles on a private socket: the sweep profiles each level.
	write_restart "$dir" "$bin/crid" --config "$dir/crid.toml" --debug-pprof-socket "$dir/pprof.sock"
	CRID_BENCH_RUN="$dir" setsid "$bin/crid" --config "$dir/crid.toml" --debug-pprof-socket "$dir/pprof.sock" >"$dir/daemon.log" 2>&1 </dev/null &
	daemon_pid[crid]=$!
}

# write_restart writes $dir/restart.sh: what the sweep runs after it
# killed the daemon with SIGKILL. It starts the daemon as this script did,
# writes its pid to $dir/daemon.pid (stop_runtime reads it) and prints it.
write_restart() {
	local dir="$1"
	shift
	{
		echo '#!/usr/bin/env bash'
		echo '# Generated by hack/bench/run.sh: start the daemon again, print its pid.'
		printf 'export PATH=%q\n' "$PATH"
		printf 'CRID_BENCH_RUN=%q setsid' "$dir"
		printf ' %q' "$@"
		printf ' >>%q 2>&1 </dev/null &\n' "$dir/daemon.log"
		printf 'echo $! >%q\n' "$dir/daemon.pid"
		echo 'echo $!'
	} >"$dir/restart.sh"
	chmod 755 "$dir/restart.sh"
}

start_containerd() {
	local dir="$1"
	cat >"$dir/config.toml" <<EOF
# Generated by hack/bench/run.sh: Debian's containerd with private state,
# the benchmark's CNI network, cgroupfs, and the local registry as mirror.
version = 2
root = "$dir/root"
state = "$dir/state"

[grpc]
  address = "$dir/containerd.sock"

[debug]
  level = "warn"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$dir/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.10"
    # No CAP_SYS_RESOURCE here: without this, the pause container fails
    # writing oom_score_adj -998 (see platform-notes.md).
    restrict_oom_score_adj = true
    systemd_cgroup = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$dir/runc"

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "$dir/net.d"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.k8s.io"]
      endpoint = ["http://$registry"]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."gcr.io"]
      endpoint = ["http://$registry"]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$proxy"]
      endpoint = ["http://$proxy"]
EOF
	write_restart "$dir" "$(command -v containerd)" --config "$dir/config.toml"
	CRID_BENCH_RUN="$dir" setsid containerd --config "$dir/config.toml" >"$dir/daemon.log" 2>&1 </dev/null &
	daemon_pid[containerd]=$!
}

failed=()
stamp="$(date +%Y%m%d-%H%M%S)"
for rt in "${rts[@]}"; do
	dir="$work/$rt"
	mkdir -p "$dir/logs"
	write_conflist "$rt" "$dir"
	"start_$rt" "$dir"
	pid="${daemon_pid[$rt]}"
	sock="$dir/$rt.sock"
	log "$rt: started pid $pid ($(readlink "/proc/$pid/exe" 2>/dev/null || echo exited)), socket $sock"
	if ! version="$("$bench" wait -endpoint "$sock" -pid "$pid" -timeout 60s)"; then
		log "$rt did not come up; last lines of $dir/daemon.log:"
		tail -n 20 "$dir/daemon.log" >&2
		failed+=("$rt")
		stop_runtime "$rt"
		continue
	fi
	log "$rt: $version"
	bound=()
	if [[ $rt == containerd ]]; then
		bound=(-max-pods="$ctrd_max_pods" -max-dead="$ctrd_max_dead" -floors=false)
	else
		bound=(-pprof-socket "$dir/pprof.sock" -profile-dir "$dir/profiles")
	fi
	if ! timeout --foreground -k 60s -s INT "${BENCH_TIMEOUT:-150m}" "$bench" run -runtime "$rt" -endpoint "$sock" -daemon-pid "$pid" \
		-out "$work/results/$rt.json" -work-dir "$dir" -marker "$dir" -log-dir "$dir/logs" \
		-cgroup-parent "$cgroot/$rt" -bridge "${net_bridge[$rt]}" -net-name "${net_name[$rt]}" -ipam-dir "$dir/ipam" \
		-registry "$registry" -proxy "$proxy" -restart-cmd "$dir/restart.sh" \
		-conflist "$dir/net.d/10-bench.conflist" -rootfs "$testbed/stage/busybox-root" \
		"${bound[@]}" "${pass[@]}"; then
		log "$rt: crid-bench run failed; last lines of $dir/daemon.log:"
		tail -n 20 "$dir/daemon.log" >&2
		failed+=("$rt")
	fi
	stop_runtime "$rt"
	# Keep what this runtime gave at once: a later failure must not lose it.
	mkdir -p "$outdir"
	[[ -s "$work/results/$rt.json" ]] && cp "$work/results/$rt.json" "$outdir/$stamp-$rt.json"
	gzip -c "$dir/daemon.log" >"$outdir/$stamp-$rt-daemon.log.gz" || true
	if [[ -d "$dir/profiles" ]]; then
		cp -r "$dir/profiles" "$outdir/$stamp-$rt-profiles"
		log "$rt: Go profiles of each level in $outdir/$stamp-$rt-profiles (go tool pprof -top $bin/$rt FILE)"
	fi
	if grep -qiE 'panic|fatal' "$dir/daemon.log"; then
		log "$rt: its log mentions a panic or fatal error: $(grep -iE -m 3 'panic|fatal' "$dir/daemon.log")"
	fi
done

results=()
for rt in "${rts[@]}"; do
	[[ -s "$work/results/$rt.json" ]] && results+=("$work/results/$rt.json")
done
((${#results[@]})) || die "no runtime was measured"

echo
"$bench" report -plot "$outdir/$stamp-sweep.png" "${results[@]}" | tee "$outdir/$stamp-report.txt"
echo
log "make bench took $(($(date +%s) - started)) s; report, plot and JSON in $outdir/$stamp-*"
((${#failed[@]} == 0)) || die "not measured completely: ${failed[*]}"
if ((smoke)); then
	# The smoke run checks that the bench still runs end to end and
	# reports, never how fast anything was.
	report="$outdir/$stamp-report.txt"
	for want in 'kill -9: every ContainerStatus right' 'ListContainers p50 / p99' \
		'pod start, pod network (ms): netns + CNI ADD + container' 'StreamContainers: p50'; do
		grep -qF -- "$want" "$report" || die "smoke: the report has no line \"$want\""
	done
	grep -E '^ *kill -9: every ContainerStatus right' "$report" | grep -qE '[0-9]+\.[0-9]+' ||
		die "smoke: the restart was not measured: $(grep -F 'kill -9' "$report")"
	[[ "$(head -c 8 "$outdir/$stamp-sweep.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] ||
		die "smoke: no PNG plot at $outdir/$stamp-sweep.png"
	log "smoke: report and plot produced"
fi
