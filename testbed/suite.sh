#!/usr/bin/env bash
# `make test`: bring up the test bed and the Python environment, then run every check.
# Each step's full output goes to .cache/test-logs/<step>.log; a failed step shows its
# last lines. The run ends with one line per step and a count of steps passed/failed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
LOGS="$ROOT/.cache/test-logs"
mkdir -p "$LOGS"
STEPS="${SUTAZAI_TEST_STEPS:-unit integration sanity lint molecule vm}"
suite_start=$(date +%s)
results=()
passed=0
failed=0

run_step() {
    local name=$1; shift
    local log="$LOGS/$name.log" start rc summary
    start=$(date +%s)
    echo "== $name: $*"
    "$@" >"$log" 2>&1
    rc=$?
    local took=$(($(date +%s) - start))
    # the step's own closing line (pytest, ansible-test, ansible-lint, molecule)
    summary=$(grep -aE '([0-9]+ (passed|failed|error))|Passed:|Failed:|^molecule: |^ERROR: The [0-9]+ sanity test|^ready:|sanity test' "$log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | sed 's/]8;;[^\\]*\\//g' | cut -c1-150)
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        results+=("$(printf '  %-12s ok      %4ss  %s' "$name" "$took" "$summary")")
    else
        failed=$((failed + 1))
        results+=("$(printf '  %-12s FAILED  %4ss  %s (log: %s)' "$name" "$took" "$summary" "${log#"$ROOT"/}")")
        echo "-- last lines of $log:"
        tail -n 60 "$log" | sed 's/\x1b\[[0-9;]*m//g'
    fi
    echo "== $name: rc=$rc in ${took}s"
    return "$rc"
}

# the bed and the environment come first: nothing else can run without them
run_step testbed bash testbed/testbed.sh || { echo "test bed failed: stopping"; exit 1; }
run_step setup make --no-print-directory setup || { echo "setup failed: stopping"; exit 1; }

for step in $STEPS; do
    run_step "$step" make --no-print-directory "$step"
done

echo
echo "== summary ($(($(date +%s) - suite_start)) s)"
printf '%s\n' "${results[@]}"
echo "steps: $((passed)) passed, $failed failed"
[ "$failed" -eq 0 ]
