"""Pack sutazai-monitor into one runnable file: a zip (``python3 FILE`` runs it) holding the collection's
module_utils the daemon imports, as the package tree ``ansible_collections.sutazai.ops.plugins.module_utils``, and a
``__main__`` that calls ``_monitor.main``. The role copies this one file to the host instead of a dozen, which keeps
an unchanged rerun to one round trip for the program.

The same sources always give the same bytes (entries sorted, stored uncompressed, fixed timestamps and modes), so the
copy is idempotent from any controller. Runs on the controller with the standard library only; prints the path of
the file, named by the hash of its bytes, in OUT_DIR (written once, atomically).

    python3 pack_daemon.py MODULE_UTILS_DIR OUT_DIR NAME [NAME ...]
"""

import hashlib
import io
import os
import sys
import tempfile
import zipfile

PACKAGE = ('ansible_collections', 'sutazai', 'ops', 'plugins', 'module_utils')
MAIN = (
    '"""sutazai-monitor: the memory guard daemon of sutazai.ops (python3 sutazai-monitor --help)."""\n'
    'import sys\n\n'
    'from ansible_collections.sutazai.ops.plugins.module_utils._monitor import main\n\n'
    'sys.exit(main(sys.argv[1:]))\n'
)
# zip's earliest date: no build time in the bytes
STAMP = (1980, 1, 1, 0, 0, 0)


def entries(module_utils_dir, names):
    """(archive name, bytes) of everything packed, in a fixed order."""
    found = [('__main__.py', MAIN.encode())]
    for depth in range(1, len(PACKAGE) + 1):
        found.append(('/'.join(PACKAGE[:depth] + ('__init__.py',)), b''))
    for name in sorted(set(names)):
        path = os.path.join(module_utils_dir, name + '.py')
        with open(path, 'rb') as handle:
            found.append(('/'.join(PACKAGE + (name + '.py',)), handle.read()))
    return sorted(found)


def pack(module_utils_dir, names):
    """The zip's bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', compression=zipfile.ZIP_STORED) as archive:
        for arcname, data in entries(module_utils_dir, names):
            info = zipfile.ZipInfo(arcname, date_time=STAMP)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            archive.writestr(info, data)
    return buffer.getvalue()


def write(data, out_dir):
    """Write DATA once under OUT_DIR, named by its hash; the path."""
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    path = os.path.join(out_dir, 'sutazai-monitor-%s.pyz' % hashlib.sha256(data).hexdigest()[:16])
    if not os.path.exists(path):
        handle, temporary = tempfile.mkstemp(dir=out_dir, prefix='.pack-')
        with os.fdopen(handle, 'wb') as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    return path


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    module_utils_dir, out_dir, names = argv[0], argv[1], argv[2:]
    print(write(pack(module_utils_dir, names), out_dir))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
