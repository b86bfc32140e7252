#!/usr/bin/env bash
# Runs every Go fuzz target of the tree for a bounded time each: the
# packages whose tests define a func Fuzz..., each target as
# `go test -list '^Fuzz'` names it (so build tags count), one after the
# other. Prints one line per target with its executions.
#
#   FUZZTIME      time per target (default 20s; `go test -fuzztime`, so 5000x
#                 also works)
#   FUZZPARALLEL  fuzzing workers (default 2)
#   FUZZMINIMIZE  time to minimize each new input (default 5s; go test's own
#                 60s would eat a short run: these targets touch files)
#   FUZZ          only targets matching this regexp (default all)
#   FUZZTIMEOUT   go test -timeout of each target's run (default 30m)
#   FUZZLOG       the full output (default _output/fuzz.log)
#
# A failure leaves its input in the package's testdata/fuzz/<Target>/, where
# `go test` replays it from then on: fix the bug and commit the input with
# the fix. Exit status 1 if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
GOTAGS=${GOTAGS:-containers_image_openpgp seccomp}
FUZZTIME=${FUZZTIME:-20s}
FUZZPARALLEL=${FUZZPARALLEL:-2}
FUZZMINIMIZE=${FUZZMINIMIZE:-5s}
FUZZ=${FUZZ:-.}
FUZZLOG=${FUZZLOG:-_output/fuzz.log}
mkdir -p "$(dirname "$FUZZLOG")"
: >"$FUZZLOG"

# Candidate packages by a grep (listing every package's tests would compile
# them all); go test -list then says which targets really build.
mapfile -t dirs < <(find . -path ./_output -prune -o -path ./.git -prune -o -name '*_test.go' -print0 |
	xargs -0 grep -l -E '^func Fuzz[A-Z0-9_]' | xargs -r -n1 dirname | sort -u)

failed=0
summary=()
for dir in "${dirs[@]}"; do
	if ! list=$("$GO" test -tags "$GOTAGS" -list '^Fuzz' "$dir" 2>&1); then
		echo "$list" | tee -a "$FUZZLOG"
		summary+=("FAIL  tests of $dir do not build")
		failed=1
		continue
	fi
	mapfile -t names < <(printf '%s\n' "$list" | grep -E '^Fuzz' | grep -E -- "$FUZZ" || true)
	for name in "${names[@]}"; do
		echo "== $dir $name ($FUZZTIME)" | tee -a "$FUZZLOG"
		out=$(mktemp)
		start=$(date +%s)
		rc=0
		"$GO" test -tags "$GOTAGS" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" \
			-parallel "$FUZZPARALLEL" -timeout "${FUZZTIMEOUT:-30m}" "$dir" \
			>"$out" 2>&1 || rc=$?
		cat "$out" >>"$FUZZLOG"
		# The last progress line: "fuzz: elapsed: 20s, execs: 123 (6/sec), ...".
		execs=$(grep -E "^fuzz: elapsed: .*execs: [0-9]+" "$out" | tail -1 | sed -E 's/.*execs: ([0-9]+).*/\1/' || true)
		result=ok
		if [ "$rc" -ne 0 ]; then
			result=FAIL
			failed=1
			grep -E -A3 -- "--- FAIL|Failing input written to|panic:" "$out" | tail -20 || true
		fi
		rm -f "$out"
		line=$(printf '%-5s %-32s %-26s %12s execs in %ss' "$result" "$name" "$dir" "${execs:-?}" "$(($(date +%s) - start))")
		echo "$line"
		summary+=("$line")
		echo "$line" >>"$FUZZLOG"
	done
done

echo "fuzz targets (FUZZTIME=$FUZZTIME, log in $FUZZLOG):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
