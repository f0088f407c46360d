"""Pack sutazai-monitor into one runnable file: a zip (``python3 FILE`` runs it) holding the collection's
module_utils the daemon imports, as the package tree ``ansible_collections.sutazai.ops.plugins.module_utils``, and a
``__main__`` that calls ``_monitor.main``. The role copies this one file to the host instead of a dozen, which keeps
an unchanged rerun to one round trip for the program.

The same sources always give the same bytes (entries sorted, stored uncompressed, fixed timestamps and modes), so the
copy is idempotent from any controller. Runs on the controller with the standard library only; prints the path of
the file, named by the hash of its bytes, in OUT_DIR (a directory only this user may write to; the file is
rewritten atomically unless it holds exactly these bytes).

    python3 pack_daemon.py MODULE_UTILS_DIR OUT_DIR NAME [NAME ...]
"""

import hashlib
import io
import os
import stat
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


def safe_dir(out_dir):
    """Make OUT_DIR (0700) or accept it only if this user owns it, it is no symlink and nobody else may write to it:
    what lands here is installed as root on every host, so nobody else may plant a file in it."""
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    info = os.lstat(out_dir)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SystemExit('pack_daemon: %s is not a plain directory: refusing to pack the daemon there' % out_dir)
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SystemExit('pack_daemon: %s is owned by uid %d with mode %o: it must be owned by uid %d and writable by '
                         'it alone (set monitor_pack_dir to such a directory)'
                         % (out_dir, info.st_uid, stat.S_IMODE(info.st_mode), os.getuid()))


def write(data, out_dir):
    """Write DATA under OUT_DIR, named by its hash (rewritten unless the file there has exactly these bytes); the path."""
    safe_dir(out_dir)
    path = os.path.join(out_dir, 'sutazai-monitor-%s.pyz' % hashlib.sha256(data).hexdigest()[:16])
    try:
        with open(path, 'rb') as handle:
            same = handle.read() == data
    except OSError:
        same = False
    if not same:
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
