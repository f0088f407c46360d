# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Swap files: signatures, /proc/swaps, fstab, filesystems and the swapoff safety rule. PRIVATE to the collection: no compatibility promise.

Plain Python with no Ansible import, so the benchmark and the memory guard can use it too.
Everything that decides is a pure function of text or numbers; the few readers of /proc and
of files take their paths from `Host`, so tests can point them at recorded copies. Nothing here
writes: the work on the file itself is in _swap_file.py.
"""

import os
import re
import struct

from ansible_collections.sutazai.ops.plugins.module_utils._units import format_size, parse_size

MIN_SWAP_BYTES = 40 * 1024
"""mkswap needs at least 10 pages of 4 KiB."""

SWAP_MAGIC = b'SWAPSPACE2'
OTHER_SIGNATURES = (b'SWAP-SPACE', b'S1SUSPEND', b'S2SUSPEND', b'ULSUSPEND', b'LINHIB0001')
"""Version 0 swap and hibernation images: still swap areas, never data to protect."""

PAGE_SIZES = (4096, 8192, 16384, 65536)
"""Page sizes a swap area may have been made with (x86, sparc, arm64 16K, ppc64/arm64 64K)."""

FORBIDDEN_ROOTS = ('/proc', '/sys', '/dev')

SWAP_FILESYSTEMS = frozenset(('ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'f2fs', 'jfs', 'reiserfs'))
"""Filesystems whose files the kernel can swap to (they map file blocks to disk blocks)."""

FALLOCATE_FILESYSTEMS = frozenset(('ext4', 'xfs', 'btrfs'))
"""Filesystems where a fallocate'd (unwritten) file is a valid swap file; dd-style zero writes elsewhere."""

_FS_REASONS = {
    'tmpfs': 'keeps its files in memory',
    'ramfs': 'keeps its files in memory',
    'devtmpfs': 'keeps its files in memory',
    'overlay': 'is a union filesystem (typical inside containers)',
    'aufs': 'is a union filesystem',
    'nfs': 'is a network filesystem',
    'nfs4': 'is a network filesystem',
    'cifs': 'is a network filesystem',
    'smb3': 'is a network filesystem',
    '9p': 'is a network filesystem',
    'virtiofs': 'is a shared host filesystem',
    'fuse': 'is a FUSE filesystem',
    'zfs': 'does not support swap files',
    'squashfs': 'is read-only',
    'iso9660': 'is read-only',
    'proc': 'is a kernel pseudo filesystem',
    'sysfs': 'is a kernel pseudo filesystem',
}

_OCTAL_RE = re.compile(r'\\([0-7]{3})')
_OPTIONS_RE = re.compile(r'^(\s*\S+\s+\S+\s+\S+)(?:(\s+)(\S+))?(.*)$', re.DOTALL)


class SwapError(Exception):
    """A refusal or a failed step; the message is a full sentence for the operator."""


class Host:
    """Where the host's state is read from. Tests point these at recorded files."""

    proc_swaps = '/proc/swaps'
    meminfo = '/proc/meminfo'
    mountinfo = '/proc/self/mountinfo'
    fstab = '/etc/fstab'

    @staticmethod
    def read(path, missing=None):
        """The text of `path`, or `missing` when it does not exist. Leaves the access time as it was (see open_noatime)."""
        try:
            handle = open_noatime(path)
        except FileNotFoundError:
            if missing is None:
                raise
            return missing
        with os.fdopen(handle, 'r', encoding='utf-8', errors='surrogateescape') as stream:
            return stream.read()


def open_noatime(path):
    """A read-only descriptor of `path` whose reads leave its access time, where the kernel allows it (O_NOATIME needs
    the file's owner or CAP_FOWNER); a plain read-only descriptor otherwise."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, 'O_NOATIME', 0))
    except PermissionError:
        return os.open(path, os.O_RDONLY)


# --- signatures -----------------------------------------------------------------------------

def signature_from_bytes(data, page_size=None):
    """The swap signature in the first bytes of a file, as a dict, or None for anything else.

    The magic sits in the last 10 bytes of the first page (offset page_size - 10). The page size of
    this host is tried first, then the other common ones, so an area made on another architecture
    is still recognised as swap (and so never mistaken for data, nor reused without mkswap).
    Keys: magic, page_size, version, last_page, nr_badpages, uuid, label (the last five for SWAPSPACE2).
    """
    sizes = [page_size] if page_size else []
    sizes.extend(size for size in PAGE_SIZES if size != page_size)
    for size in sizes:
        if len(data) < size:
            continue
        window = data[size - 10:size]
        if window == SWAP_MAGIC:
            version, last_page, nr_badpages = struct.unpack_from('=III', data, 1024)
            uuid = data[1036:1052].hex()
            label = data[1052:1068].split(b'\0', 1)[0].decode('utf-8', 'replace')
            return {'magic': SWAP_MAGIC.decode(), 'page_size': size, 'version': version, 'last_page': last_page,
                    'nr_badpages': nr_badpages, 'uuid': uuid, 'label': label}
        for magic in OTHER_SIGNATURES:
            if window.startswith(magic):
                return {'magic': magic.decode(), 'page_size': size}
    return None


def read_signature(path, page_size=None):
    """The swap signature of the file at `path` (see signature_from_bytes), None for a non-swap file."""
    with os.fdopen(open_noatime(path), 'rb') as stream:
        data = stream.read(max(PAGE_SIZES))
    return signature_from_bytes(data, page_size)


def header_matches(signature, file_size, page_size):
    """True when a signature is a usable SWAPSPACE2 header for this host covering the whole file."""
    if not signature or signature['magic'] != SWAP_MAGIC.decode() or signature['page_size'] != page_size:
        return False
    return signature.get('version') == 1 and signature.get('last_page') == file_size // page_size - 1


def has_holes(stat_result):
    """True when a file has unallocated blocks (made by truncate): swapon refuses such files."""
    return stat_result.st_blocks * 512 < stat_result.st_size


# --- /proc ----------------------------------------------------------------------------------

def unescape(text):
    """Decode the octal escapes (\\040 for a space) of /proc/swaps, mountinfo and fstab fields."""
    return _OCTAL_RE.sub(lambda match: chr(int(match.group(1), 8)), text)


def escape(path):
    """Escape a path for an fstab field."""
    return path.replace('\\', '\\134').replace(' ', '\\040').replace('\t', '\\011').replace('\n', '\\012')


def parse_proc_swaps(text):
    """The active swap areas of /proc/swaps, as dicts: path, type, size_bytes, used_bytes, priority, deleted."""
    areas = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        path = unescape(' '.join(fields[:-4]))
        deleted = path.endswith(' (deleted)')
        if deleted:
            path = path[:-len(' (deleted)')]
        areas.append({'path': path, 'type': fields[-4], 'size_bytes': int(fields[-3]) * 1024,
                      'used_bytes': int(fields[-2]) * 1024, 'priority': int(fields[-1]), 'deleted': deleted})
    return areas


def find_area(areas, real_path):
    """The active area whose file is `real_path` (a resolved path), or None."""
    for area in areas:
        if area['path'] == real_path and not area['deleted']:
            return area
    return None


def mount_namespace_roots(proc='/proc'):
    """`/proc/PID/root` of one process in each mount namespace other than this process's, for paths named there."""
    try:
        own = os.readlink(os.path.join(proc, 'self', 'ns', 'mnt'))
    except OSError:
        own = None
    seen, roots = {own}, []
    try:
        pids = sorted((name for name in os.listdir(proc) if name.isdigit()), key=int)
    except OSError:
        return roots
    for pid in pids:
        try:
            namespace = os.readlink(os.path.join(proc, pid, 'ns', 'mnt'))
        except OSError:
            continue
        if namespace not in seen:
            seen.add(namespace)
            roots.append(os.path.join(proc, pid, 'root'))
    return roots


def expected_area_size(file_size, signature, page_size):
    """The Size /proc/swaps shows (in bytes) for a fully allocated file of `file_size` with `signature`, once on:
    the pages its header covers, less the header page and the bad pages. None when the header is not this host's."""
    if not signature or signature['magic'] != SWAP_MAGIC.decode() or signature['page_size'] != page_size:
        return None
    pages = min(signature['last_page'] + 1, file_size // page_size) - 1 - signature['nr_badpages']
    return max(pages, 0) * page_size


def identify_area(areas, real_path, file_stat, expected_size=None, roots=mount_namespace_roots, stat=os.stat):
    """Which active area of /proc/swaps is the file at `real_path`, found without writing anything.

    /proc/swaps names a file by its path from the reader's root or, for a file turned on in another mount
    namespace (a container), by its path inside that namespace; when no process is left in that namespace, by its
    path inside the mount it was turned on through. So: an area listed under `real_path` is the file; a partition
    is not; an area whose size is not `expected_size` (see expected_area_size; without it, one larger than the
    file) is not; any other area is the file when its path, looked up here or under `/proc/PID/root` of a process
    in another mount namespace, is the same file (st_dev, st_ino).

    Returns (area, named, unknown): `area` is the file's entry or None; `named` is False when the area lists the
    file under another name; `unknown` are the areas of the right size whose path leads to some other file or to
    none: whether one of them is this file cannot be told without writing. `roots` is a callable giving the extra
    roots, called only when an area needs it.
    """
    for area in areas:
        if area['path'] == real_path and not area['deleted']:
            return area, True, []
    identity = (file_stat.st_dev, file_stat.st_ino)
    unknown = []
    prefixes = None
    for area in areas:
        if area['type'] != 'file':
            continue
        if area['size_bytes'] != expected_size if expected_size is not None else area['size_bytes'] > file_stat.st_size:
            continue
        if prefixes is None:
            prefixes = [''] + list(roots())
        for prefix in prefixes:
            try:
                found = stat(prefix + area['path'])
            except OSError:
                continue
            if (found.st_dev, found.st_ino) == identity:
                return dict(area, listed_as=prefix + area['path']), False, []
        unknown.append(area)
    return None, True, unknown


# --- the resize / removal safety rule ---------------------------------------------------------

def swapoff_margin(mem_total):
    """Memory that must still be available after a swapoff: 10% of RAM, at least 256 MiB."""
    return max(256 * 1024 ** 2, mem_total // 10)


def swapoff_refusal(path, used_bytes, mem_available, mem_total):
    """None when the pages in swap file `path` fit in MemAvailable with the margin; else the refusal.

    swapoff reads every page the file holds back into RAM. If they do not fit, the kernel
    thrashes or the OOM killer fires: exactly what the swap file is there to prevent.
    """
    margin = swapoff_margin(mem_total)
    if used_bytes + margin <= mem_available:
        return None
    return ('Refusing to turn off swap file %s: it holds %s (%d bytes) of swapped-out pages, which would have to fit in '
            'MemAvailable %s (%d bytes) while keeping a margin of %s free; free memory first or retry when less swap is used.'
            % (path, format_size(used_bytes), used_bytes, format_size(mem_available), mem_available, format_size(margin)))


# --- filesystems ----------------------------------------------------------------------------

def parse_mountinfo(text):
    """/proc/self/mountinfo as dicts in kernel order: mount_point, fstype, source, options."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if '-' not in fields[6:]:
            continue
        sep = fields.index('-', 6)
        if len(fields) < sep + 3:
            continue
        mounts.append({'mount_point': unescape(fields[4]), 'fstype': fields[sep + 1], 'source': unescape(fields[sep + 2]),
                       'options': fields[5] + ',' + (fields[sep + 3] if len(fields) > sep + 3 else '')})
    return mounts


def is_under(path, root):
    """True when `path` is `root` or inside it (both normalised absolute paths)."""
    return path == root or path.startswith(root.rstrip('/') + '/')


def mount_of(real_path, mounts):
    """The mount holding `real_path`: the longest mount point prefix; the last one mounted wins a tie."""
    best = None
    for mount in mounts:
        if is_under(real_path, mount['mount_point']):
            if best is None or len(mount['mount_point']) >= len(best['mount_point']):
                best = mount
    return best


def filesystem_refusal(path, mount):
    """None when the filesystem of `mount` can hold a swap file; else a sentence saying why not."""
    if mount is None:
        return 'Cannot find the filesystem that holds %s in the mount table.' % path
    fstype = mount['fstype']
    base = fstype.split('.', 1)[0]
    if base in SWAP_FILESYSTEMS:
        return None
    reason = _FS_REASONS.get(base) or _FS_REASONS.get(fstype) or 'is not one the kernel can swap to'
    return ('Refusing to put swap file %s on %s (mounted at %s): %s %s; use a directory on one of %s.'
            % (path, fstype, mount['mount_point'], fstype, reason, ', '.join(sorted(SWAP_FILESYSTEMS))))


def creation_method(method, fstype):
    """fallocate or dd: `auto` picks fallocate where a preallocated file is valid swap."""
    if method != 'auto':
        return method
    return 'fallocate' if fstype in FALLOCATE_FILESYSTEMS else 'dd'


# --- paths and sizes --------------------------------------------------------------------------

def path_refusal(path, real_path):
    """None when `path` may be a swap file; else why not (relative, under /proc, /sys or /dev)."""
    if not os.path.isabs(path):
        return 'Swap file path %r is relative; give an absolute path such as /swapfile.' % path
    for candidate in (os.path.normpath(path), real_path):
        for root in FORBIDDEN_ROOTS:
            if is_under(candidate, root):
                return 'Refusing swap file path %s: it is under %s, which is not a place for files.' % (path, root)
    return None


def round_to_page(num_bytes, page_size):
    """`num_bytes` rounded up to a whole number of pages."""
    return -(-num_bytes // page_size) * page_size


def size_matches(file_size, wanted, page_size):
    """True when a file of `file_size` is the requested size within page rounding."""
    return file_size // page_size == round_to_page(wanted, page_size) // page_size


def parse_reserve(value, fs_total):
    """The disk reserve in bytes: a percentage of the filesystem ("10%") or a size ("2G")."""
    text = str(value).strip()
    if text.endswith('%'):
        try:
            percent = float(text[:-1])
        except ValueError:
            percent = -1.0
        if not 0 <= percent <= 100:
            raise ValueError('disk_reserve %r is not a percentage from 0%% to 100%% nor a size such as 2G.' % value)
        return int(fs_total * percent / 100)
    return parse_size(value, 'disk_reserve')


def disk_refusal(path, wanted, available, reserve, reserve_text):
    """None when `wanted` bytes fit in `available` (free plus what the old file frees) minus the reserve."""
    room = available - reserve
    if wanted <= room:
        return None
    return ('Swap file %s of %s (%d bytes) does not fit: the filesystem has %s (%d bytes) available for it and '
            'disk_reserve %s keeps %s (%d bytes) free, leaving %s; choose a smaller size or another filesystem.'
            % (path, format_size(wanted), wanted, format_size(available), available, reserve_text,
               format_size(reserve), reserve, format_size(max(room, 0))))


# --- fstab ----------------------------------------------------------------------------------

def _swap_lines(lines, paths):
    """Indexes of the swap lines of `lines` whose first field is one of `paths`."""
    found = []
    for index, line in enumerate(lines):
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith('#') and fields[2] == 'swap' and unescape(fields[0]) in paths:
            found.append(index)
    return found


def fstab_line(text, paths):
    """The first fstab swap line for one of `paths` (without newline), or None."""
    lines = text.splitlines()
    found = _swap_lines(lines, paths)
    return lines[found[0]].strip() if found else None


def _wanted_options(options, priority):
    """Swap mount options with pri= set for `priority` (None keeps what is there, -1 removes it)."""
    opts = [opt for opt in (options or 'sw').split(',') if opt]
    if priority is not None:
        opts = [opt for opt in opts if not opt.startswith('pri=')]
        if priority >= 0:
            opts.append('pri=%d' % priority)
    if not opts:
        opts = ['sw']
    return ','.join(opts)


def fstab_update(text, path, present, priority=None, paths=None):
    """Return (new_text, change) for the fstab swap line of `path`; change is None, 'add', 'update' or 'remove'.

    Only the swap lines of this file are touched; every other byte of the file is kept. Duplicate
    lines for the file are dropped. `paths` are the names the file may be listed under (default
    `path` only; pass its resolved path too).
    """
    paths = set(paths or ()) | {path}
    lines = text.splitlines(True)
    found = _swap_lines(lines, paths)
    if not present:
        if not found:
            return text, None
        return ''.join(line for index, line in enumerate(lines) if index not in found), 'remove'
    if not found:
        prefix = text if not text or text.endswith('\n') else text + '\n'
        return prefix + '%s none swap %s 0 0\n' % (escape(path), _wanted_options(None, priority)), 'add'
    first = lines[found[0]]
    match = _OPTIONS_RE.match(first)
    options = _wanted_options(match.group(3), priority)
    change = 'update' if len(found) > 1 else None
    if options != match.group(3):
        if match.group(3) is None:
            lines[found[0]] = match.group(1) + ' ' + options + ' 0 0' + ('\n' if first.endswith('\n') else '')
        else:
            lines[found[0]] = match.group(1) + match.group(2) + options + match.group(4)
        change = 'update'
    return ''.join(line for index, line in enumerate(lines) if index not in found[1:]), change
