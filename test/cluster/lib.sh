# shellcheck shell=bash
# Shell helpers shared by test/cluster/run.sh (make cluster-test) and
# test/nodee2e/run.sh (make node-e2e): starting and stopping the components,
# finding what a run left on the host, and undoing the host changes kubelet
# makes. Source it after setting LOG_PREFIX and OUT (the logs directory).

log() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() {
	log "error: $*"
	exit 2
}

declare -A pids=() # component -> pid

# free_port FROM: the first TCP port from FROM on that nothing listens on.
free_port() {
	local p
	for ((p = $1; p < $1 + 1000; p++)); do
		if [[ -z "$(ss -Hltn "sport = :$p")" ]]; then
			echo "$p"
			return 0
		fi
	done
	die "no free port from $1"
}

# port_free PORT: nothing listens on PORT.
port_free() { [[ -z "$(ss -Hltn "sport = :$1")" ]]; }

# start NAME CMD...: run a component in the background, logging to $OUT/NAME.log.
start() {
	local name="$1"
	shift
	"$@" >"$OUT/$name.log" 2>&1 </dev/null &
	pids[$name]=$!
	log "started $name (pid ${pids[$name]}, log $OUT/$name.log)"
}

# stop NAME: SIGTERM, then SIGKILL after 20 s.
stop() {
	local name="$1" pid="${pids[$1]:-}"
	[[ -n "$pid" ]] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 1 200); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name did not exit within 20s of SIGTERM: SIGKILL"
			kill -KILL "$pid" 2>/dev/null
		fi
	fi
	wait "$pid" 2>/dev/null || true
	unset "pids[$name]"
}

alive() { [[ -n "${pids[$1]:-}" ]] && kill -0 "${pids[$1]}" 2>/dev/null; }

# wait_until SECONDS WHAT COMMAND...: poll COMMAND every half second.
wait_until() {
	local secs="$1" what="$2" i
	shift 2
	for ((i = 0; i < secs * 2; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	die "$what did not happen within ${secs}s"
}

# pids_under DIR: processes whose root, cwd, executable or command line
# names a path under DIR (containers, monitor, helpers of a run). The
# pattern's first character is a bracket expression so that grep does not
# find its own command line.
pids_under() {
	local dir="$1" re
	re="[${dir:0:1}]$(printf '%s' "${dir:1}" | sed 's/[].[\*^$]/\\&/g')"
	{
		find /proc/[0-9]*/ -maxdepth 1 \( -name root -o -name cwd -o -name exe \) -lname "$dir*" 2>/dev/null
		grep -l -a -e "$re" /proc/[0-9]*/cmdline 2>/dev/null
	} | cut -d/ -f3 | sort -un | grep -vx -e "$$" -e "$BASHPID" || true
}

# kill_under DIR: SIGKILL what pids_under finds.
kill_under() {
	local left
	left="$(pids_under "$1" | tr '\n' ' ')"
	if [[ -n "${left// /}" ]]; then
		log "ending processes left under $1: $left"
		# shellcheck disable=SC2086
		kill -KILL $left 2>/dev/null
		sleep 0.5
	fi
}

# mounts_under DIR: mount points at or under DIR, deepest first.
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
		awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

# unmount_under DIR: unmount everything at or under DIR.
unmount_under() {
	local m
	while read -r m; do
		[[ -n "$m" ]] || continue
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
	done < <(mounts_under "$1")
}

# cgroup_dirs CG: the directories of cgroup CG (absolute, e.g. /kubepods)
# in every hierarchy.
cgroup_dirs() {
	local h
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[[ -d "$h${1#/}" ]] && echo "$h${1#/}"
	done
	return 0
}

# remove_cgroup CG: end the processes left in cgroup CG and its children,
# then remove them, deepest first, in every hierarchy.
remove_cgroup() {
	local d procs
	for d in $(cgroup_dirs "$1"); do
		procs="$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un | tr '\n' ' ')"
		if [[ -n "${procs// /}" ]]; then
			log "ending processes left in $d: $procs"
			# shellcheck disable=SC2086
			kill -KILL $procs 2>/dev/null
			sleep 0.5
		fi
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	return 0
}

# iptables_chains: "table chain" of every chain of the filter, nat and
# mangle tables.
iptables_chains() {
	local t
	for t in filter nat mangle; do
		iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1 == "-N" { print t, $2 }'
	done
}

# remove_new_kube_chains BEFORE: delete the KUBE-* chains (and the rules
# jumping to them) that are not in BEFORE (an iptables_chains listing):
# those kubelet made (KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, ...).
remove_new_kube_chains() {
	local before="$1" t ch rule
	while read -r t ch; do
		[[ "$ch" == KUBE-* ]] || continue
		grep -qxF "$t $ch" <<<"$before" && continue
		iptables -t "$t" -S | awk -v c="$ch" '$1 == "-A" && $0 ~ ("-j " c "( |$)") { sub(/^-A/, "-D"); print }' |
			while read -r rule; do
				# shellcheck disable=SC2086
				iptables -t "$t" $rule 2>/dev/null
			done
		iptables -t "$t" -F "$ch" 2>/dev/null
		iptables -t "$t" -X "$ch" 2>/dev/null || log "warning: cannot delete chain $t/$ch"
	done < <(iptables_chains)
}

# The sysctls kubelet sets at start (setupKernelTunables), saved by
# save_kubelet_sysctls and put back by restore_kubelet_sysctls.
kubelet_sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
declare -A saved_sysctl=()
save_kubelet_sysctls() {
	local k
	for k in "${kubelet_sysctls[@]}"; do
		saved_sysctl[$k]="$(sysctl -n "$k")"
	done
}
restore_kubelet_sysctls() {
	local k
	for k in "${!saved_sysctl[@]}"; do
		sysctl -q -w "$k=${saved_sysctl[$k]}" >/dev/null || log "warning: cannot restore $k"
	done
}
# changed_sysctls: those not back at their saved value.
changed_sysctls() {
	local k
	for k in "${!saved_sysctl[@]}"; do
		[[ "$(sysctl -n "$k")" == "${saved_sysctl[$k]}" ]] || echo "$k=$(sysctl -n "$k") (was ${saved_sysctl[$k]})"
	done
}

# guard_port TAG PORT...: drop TCP packets to PORT that do not come from
# this machine: in INPUT (a server listening on the node's address) and in
# mangle PREROUTING (a hostPort, DNATed before INPUT). Rules carry TAG as
# their comment; unguard removes them.
guard_rules=()
guard_port() {
	local tag="$1" port rule
	shift
	for port in "$@"; do
		rule="! -i lo -p tcp --dport $port -m comment --comment $tag -j DROP"
		# shellcheck disable=SC2086
		iptables -I INPUT $rule && guard_rules+=("-D INPUT $rule")
		# shellcheck disable=SC2086
		iptables -t mangle -I PREROUTING $rule && guard_rules+=("-t mangle -D PREROUTING $rule")
	done
}
unguard() {
	local r
	for r in "${guard_rules[@]}"; do
		# shellcheck disable=SC2086
		iptables $r 2>/dev/null || log "warning: cannot undo iptables $r"
	done
	guard_rules=()
}
# guards_left TAG: rules tagged TAG still in place.
guards_left() {
	{
		iptables -S INPUT
		iptables -t mangle -S PREROUTING
	} 2>/dev/null | grep -F -- "--comment $1 " || true
}

# write_cni_conflist FILE NAME BRIDGE SUBNET IPAM_DIR: a bridge network of
# its own for a run's crid.
write_cni_conflist() {
	cat >"$1" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$2",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$3",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$5",
        "ranges": [[{ "subnet": "$4" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
}

# leftovers accumulates what a teardown found still there.
leftovers=0
check_left() {
	if [[ -n "$2" ]]; then
		log "LEFT BEHIND: $1: $2"
		leftovers=1
	fi
}
