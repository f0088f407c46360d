"""Write the root file system of a small python3 image as a tar (for `docker import`), from the system it runs on.

Run inside the guest's root (chroot ROOTFS python3 - OUT.tar < python_image.py) by testbed/vm/build.sh: python3 with
its standard library, the shared libraries it and its extension modules load (found with ldd), sh, sleep and cat,
a passwd and group file, /tmp. Directory links of the merged /usr (/lib64 -> usr/lib64) are kept as links and every
file is stored once, under its path with the directories resolved.
"""

import glob
import io
import os
import subprocess
import sys
import tarfile

STDLIB = '/usr/lib/python3.11'
SKIP = ('test', 'idlelib', 'tkinter', 'ensurepip', 'lib2to3', 'pydoc_data', 'turtledemo', '__pycache__')
BINARIES = ['/usr/bin/python3', '/usr/bin/python3.11', '/usr/bin/dash', '/usr/bin/sh', '/usr/bin/sleep', '/usr/bin/cat']


def resolved(path):
    """`path` with its directories resolved (the file itself may stay a link)."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def closure(paths):
    """The files, and the links leading to them, of `paths` and of the libraries ldd lists for them."""
    found = set()

    def add(path):
        while True:
            path = resolved(path)
            if path in found:
                return
            found.add(path)
            if not os.path.islink(path):
                return
            path = os.path.join(os.path.dirname(path), os.readlink(path))

    for path in paths:
        add(path)
        out = subprocess.run(['ldd', path], capture_output=True, text=True, check=False).stdout
        for word in out.split():
            if word.startswith('/') and os.path.exists(word):
                add(word)
    return found


def main(target):
    files = closure(BINARIES + glob.glob(STDLIB + '/lib-dynload/*.so'))
    names = set()
    with tarfile.open(target, 'w') as tar:
        def put(path, recursive=False, flt=None):
            name = path.lstrip('/')
            if name in names:
                return
            parts = name.split('/')
            for index in range(1, len(parts)):
                parent = '/'.join(parts[:index])
                if parent not in names:
                    names.add(parent)
                    tar.add('/' + parent, arcname=parent, recursive=False)
            names.add(name)
            tar.add(path, arcname=name, recursive=recursive, filter=flt)

        for link in ('bin', 'lib', 'lib64', 'sbin'):
            if os.path.islink('/' + link):
                put('/' + link)

        def stdlib_filter(info):
            parts = info.name.split('/')
            if any(part in SKIP for part in parts[3:]):
                return None
            names.add(info.name)
            return info
        put(STDLIB, recursive=True, flt=stdlib_filter)
        for path in sorted(files):
            if not path.startswith(STDLIB + '/') and not os.path.isdir(path):
                put(path)
        info = tarfile.TarInfo('etc')
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for name, text in (('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n'),
                           ('etc/group', 'root:x:0:\nnogroup:x:65534:\n')):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, mode in (('tmp', 0o1777), ('root', 0o700), ('app', 0o755)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)


if __name__ == '__main__':
    main(sys.argv[1])
