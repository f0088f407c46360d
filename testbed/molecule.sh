#!/usr/bin/env bash
# Run `molecule test` for every scenario under molecule/ (or those named as arguments).
# A failed scenario is destroyed anyway; the exit status counts the failures.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export PATH="$ROOT/.venv/bin:$PATH"
scenarios=("$@")
if [ "${#scenarios[@]}" -eq 0 ]; then
    for file in molecule/*/molecule.yml; do
        scenarios+=("$(basename "$(dirname "$file")")")
    done
fi
failed=()
for scenario in "${scenarios[@]}"; do
    echo "== molecule test -s $scenario"
    start=$(date +%s)
    if molecule test -s "$scenario"; then
        echo "== scenario $scenario passed in $(($(date +%s) - start)) s"
    else
        echo "== scenario $scenario FAILED after $(($(date +%s) - start)) s"
        failed+=("$scenario")
        molecule destroy -s "$scenario" >/dev/null 2>&1 || true
    fi
done
echo "molecule: $((${#scenarios[@]} - ${#failed[@]})) passed, ${#failed[@]} failed${failed[*]:+ (${failed[*]})}"
[ "${#failed[@]}" -eq 0 ]
