#!/usr/bin/env bash
# Create the collection's Python virtual environment for `make setup` (and so `make stable`).
# A stock Debian 12 python3 cannot create one until Debian's python3-venv is installed
# (`python3 -m venv` stops with "ensurepip is not available"): install it first when
# that is the case, then create the environment. Usage: python-env.sh PYTHON VENV_DIR
set -euo pipefail
python=${1:?usage: python-env.sh PYTHON VENV_DIR}
venv=${2:?usage: python-env.sh PYTHON VENV_DIR}

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    exit 0
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
if ! "$python" -m venv "$probe/venv" >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || {
        echo "$python cannot create a virtual environment and apt-get is not available: install the venv module of $python" >&2
        exit 1
    }
    [ "$(id -u)" -eq 0 ] || { echo "$python needs Debian's python3-venv; run make as root or install it: apt-get install python3-venv" >&2; exit 1; }
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    echo "installing Debian's python3-venv (python$version-venv) so that $python can create $venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv "python$version-venv" >/dev/null
fi
rm -rf "$venv"
"$python" -m venv "$venv"
