#!/usr/bin/env bash
# ansible-test sanity, offline. ansible-test needs the collection at
# .../ansible_collections/sutazai/ops, so the checkout's files (tracked and new, not
# ignored) are copied to /var/tmp/sutazai-ops-sanity/ansible_collections/sutazai/ops; the collections we depend
# on are linked beside it from the venv's `ansible` package. The get-pip bootstrap that
# ansible-test would download is replaced by testbed/get_pip.py (ensurepip + pip install).
# Extra arguments go to ansible-test, e.g. `bash testbed/sanity.sh --test pylint`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
# outside the work tree: inside it, ansible-test would list files with the checkout's git
BUILD="${SUTAZAI_SANITY_DIR:-/var/tmp/sutazai-ops-sanity}/ansible_collections"
DEST="$BUILD/sutazai/ops"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PIP_VERSION=$("$VENV/bin/python" - <<'PY'
import re
from ansible_test._internal import python_requirements as pr
src = open(pr.__file__).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)

mkdir -p "$HOME/.ansible/test/cache"
install -m 0644 "$ROOT/testbed/get_pip.py" "$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"

rm -rf "$DEST"
mkdir -p "$DEST" "$BUILD/community" "$BUILD/ansible"
cd "$ROOT"
git ls-files -co --exclude-standard -z | rsync -a --ignore-missing-args --from0 --files-from=- "$ROOT/" "$DEST/"
ln -sfn "$SITE/ansible_collections/community/docker" "$BUILD/community/docker"
ln -sfn "$SITE/ansible_collections/ansible/posix" "$BUILD/ansible/posix"

cd "$DEST"
export PATH="$VENV/bin:$PATH"
exec ansible-test sanity --local --python 3.11 --color no "$@"
