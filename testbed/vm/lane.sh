#!/usr/bin/env bash
# `make vm`: the cgroup v2 lane. Builds the VM (cached by testbed/vm/build.sh), boots one guest on a throw-away
# qcow2 overlay, runs tests/vm against it, and stops the guest and removes its overlay however the tests end.
# Extra arguments go to pytest (`make vm VM_ARGS='-k guard'`). SUTAZAI_VM_CAPTURE=<dir> records the v2 cgroup
# files the tests read (see tests/vm/test_cgroup_v2.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
START=$(date +%s)
log() { printf '[vm-lane %4ss] %s\n' "$(($(date +%s) - START))" "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "the cgroup v2 lane builds and boots a VM: run it as root" >&2; exit 1; }
vm_dir=$(bash testbed/vm/build.sh | tail -1)
log "VM ready: $vm_dir"

run=$(mktemp -d /var/tmp/sutazai-vm-run.XXXXXX)
rmdir "$run"
stop_guest() { bash "$ROOT/testbed/vm/vm.sh" stop "$run" || true; log "guest stopped, overlay removed"; }
trap stop_guest EXIT
trap 'exit 130' INT TERM HUP

bash testbed/vm/vm.sh start "$run" "$vm_dir" >/dev/null
log "guest booted (ssh and Docker answer)"
SUTAZAI_VM_RUN="$run" "$PYTHON" -m pytest -q -p no:cacheprovider --import-mode=importlib tests/vm "$@"
log "tests done"
