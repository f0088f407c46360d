# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory figures of cgroups (v1 and v2) and of the host. PRIVATE to the collection: no compatibility promise.

Plain Python with no Ansible import: the memory guard daemon uses it on hosts without Ansible.
Every function takes the cgroup file system root (default /sys/fs/cgroup) or a cgroup
directory, so tests can point them at recorded trees.

- v1 (memory controller at <root>/memory): memory.usage_in_bytes, memory.limit_in_bytes
  (a huge number such as 9223372036854771712 means no limit), memory.stat
  (total_inactive_file, hierarchical_memory_limit), memory.oom_control (oom_kill).
- v2 (unified, <root>/cgroup.controllers exists): memory.current, memory.max ("max" means
  no limit), memory.stat (inactive_file), memory.events (oom_kill).

"Usage" here is what `docker stats` shows: the charged memory minus the inactive file cache,
which the kernel reclaims before it OOM-kills anything.
"""

import os
import re

DEFAULT_ROOT = '/sys/fs/cgroup'
# v1 reports "no limit" as PAGE_COUNTER_MAX pages rounded to the page size (9223372036854771712 on x86_64);
# anything at or above 2**62 bytes cannot be a real limit.
UNLIMITED_THRESHOLD = 2 ** 62
_FULL_ID_RE = re.compile(r'^[0-9a-f]{64}$')
# Names a container's cgroup directory has under the known drivers and runtimes.
_SCOPE_FORMATS = ('{id}', 'docker-{id}.scope', 'libpod-{id}.scope', 'cri-containerd-{id}.scope', 'crio-{id}.scope')


class CgroupError(Exception):
    """A cgroup directory or file that cannot be read; the message names the path."""


def _read(path):
    try:
        with open(path, encoding='ascii', errors='replace') as handle:
            return handle.read()
    except OSError as exc:
        raise CgroupError('cannot read %s: %s' % (path, exc.strerror or exc)) from None


def _read_optional(path):
    try:
        return _read(path)
    except CgroupError:
        return None


def _read_int(path):
    text = _read(path).strip()
    try:
        return int(text)
    except ValueError:
        raise CgroupError('%s holds %r, not a number' % (path, text[:80])) from None


def parse_flat_keyed(text):
    """`key value` lines (memory.stat, memory.events, memory.oom_control, /proc/pressure) -> {key: int}."""
    result = {}
    for line in (text or '').splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                result[fields[0]] = int(fields[1])
            except ValueError:
                continue
    return result


def cgroup_version(root=DEFAULT_ROOT):
    """2 on a unified hierarchy with the memory controller, 1 when <root>/memory is a v1 hierarchy, else None."""
    controllers = _read_optional(os.path.join(root, 'cgroup.controllers'))
    if controllers is not None and 'memory' in controllers.split():
        return 2
    if os.path.isfile(os.path.join(root, 'memory', 'memory.usage_in_bytes')):
        return 1
    return None


def memory_hierarchy(root=DEFAULT_ROOT):
    """The directory of the memory controller's hierarchy: <root>/memory on v1, <root> on v2 (None if neither)."""
    version = cgroup_version(root)
    if version == 1:
        return os.path.join(root, 'memory')
    if version == 2:
        return root
    return None


def directory_version(path):
    """1 or 2 for a cgroup directory, from the files it has; None when it has neither kind."""
    if os.path.isfile(os.path.join(path, 'memory.current')):
        return 2
    if os.path.isfile(os.path.join(path, 'memory.usage_in_bytes')):
        return 1
    return None


def expand_slice(name):
    """systemd's path of a slice: `a-b.slice` -> `a.slice/a-b.slice` (a path or a non-slice name is kept)."""
    name = name.strip('/')
    if '/' in name or not name.endswith('.slice') or name == '-.slice':
        return name
    stem = name[:-len('.slice')]
    parts = stem.split('-')
    return '/'.join('-'.join(parts[:index + 1]) + '.slice' for index in range(len(parts)))


def candidate_paths(container_id, root=DEFAULT_ROOT, cgroup_parent=None):
    """Where a container's memory cgroup would be under the known layouts, most likely first."""
    hierarchy = memory_hierarchy(root)
    if hierarchy is None:
        return []
    parents = []
    if cgroup_parent:
        parents.append(cgroup_parent.strip('/'))
        expanded = expand_slice(cgroup_parent)
        if expanded != cgroup_parent.strip('/'):
            parents.append(expanded)
    parents += ['docker', 'system.slice']
    paths = []
    for parent in parents:
        for fmt in _SCOPE_FORMATS:
            path = os.path.join(hierarchy, parent, fmt.format(id=container_id))
            if path not in paths:
                paths.append(path)
    return paths


def find_container_cgroup(container_id, root=DEFAULT_ROOT, cgroup_parent=None, max_depth=5):
    """The memory cgroup directory of a container, by its full id (64 hex digits), or None.

    Tries the known layouts first (cgroupfs driver: <parent or docker>/<id>; systemd driver:
    <slice path>/docker-<id>.scope), then walks the hierarchy `max_depth` levels deep for a
    directory named after the id.
    """
    container_id = (container_id or '').strip().lower()
    if not _FULL_ID_RE.match(container_id):
        raise ValueError('container id %r is not a full id (64 hexadecimal digits)' % container_id)
    for path in candidate_paths(container_id, root, cgroup_parent):
        if directory_version(path):
            return path
    hierarchy = memory_hierarchy(root)
    if hierarchy is None:
        return None
    names = set(fmt.format(id=container_id) for fmt in _SCOPE_FORMATS)
    base_depth = hierarchy.rstrip(os.sep).count(os.sep)
    for current, dirs, _files in os.walk(hierarchy):
        for name in dirs:
            if name in names and directory_version(os.path.join(current, name)):
                return os.path.join(current, name)
        if current.count(os.sep) - base_depth >= max_depth - 1:
            dirs[:] = []
    return None


def read_limit(path):
    """The memory limit of a cgroup directory in bytes, or None when it has none."""
    if directory_version(path) == 2:
        text = _read(os.path.join(path, 'memory.max')).strip()
        if text == 'max':
            return None
        try:
            value = int(text)
        except ValueError:
            raise CgroupError('%s holds %r, not a number or "max"' % (os.path.join(path, 'memory.max'), text)) from None
    else:
        value = _read_int(os.path.join(path, 'memory.limit_in_bytes'))
    return None if value >= UNLIMITED_THRESHOLD else value


def read_stat(path):
    """memory.stat of a cgroup directory as {name: int}."""
    return parse_flat_keyed(_read(os.path.join(path, 'memory.stat')))


def read_oom_kills(path):
    """How many processes the OOM killer killed in this cgroup (and below); None when the kernel does not say."""
    if directory_version(path) == 2:
        events = parse_flat_keyed(_read_optional(os.path.join(path, 'memory.events')))
        return events.get('oom_kill')
    control = parse_flat_keyed(_read_optional(os.path.join(path, 'memory.oom_control')))
    return control.get('oom_kill')


def read_memory(path):
    """The memory figures of one cgroup directory.

    Returns a dict: path, version (1 or 2), usage (charged bytes), inactive_file, working_set
    (usage minus inactive file cache, what `docker stats` shows), limit (None when unlimited),
    available (limit minus working_set, or None), oom_kills (None when unknown), swap (bytes of
    the group's memory in swap, None when the kernel does not account swap), and for v2
    `events` (memory.events) too.
    """
    version = directory_version(path)
    if version is None:
        raise CgroupError('%s is not a memory cgroup directory (no memory.current or memory.usage_in_bytes)' % path)
    stat = read_stat(path)
    if version == 2:
        usage = _read_int(os.path.join(path, 'memory.current'))
        inactive_file = stat.get('inactive_file', 0)
    else:
        usage = _read_int(os.path.join(path, 'memory.usage_in_bytes'))
        inactive_file = stat.get('total_inactive_file', stat.get('inactive_file', 0))
    working_set = usage - inactive_file if inactive_file < usage else usage
    limit = read_limit(path)
    result = {
        'path': path,
        'version': version,
        'usage': usage,
        'inactive_file': inactive_file,
        'working_set': working_set,
        'limit': limit,
        'available': None if limit is None else max(0, limit - working_set),
        'oom_kills': read_oom_kills(path),
    }
    if version == 2:
        result['events'] = parse_flat_keyed(_read_optional(os.path.join(path, 'memory.events')))
    result['swap'] = _swap_in_use(path, version, usage)
    return result


def _swap_in_use(path, version, usage):
    """Bytes of the group in swap: v2 memory.swap.current; v1 memory.memsw.usage_in_bytes minus usage. None when not accounted."""
    name = 'memory.swap.current' if version == 2 else 'memory.memsw.usage_in_bytes'
    text = _read_optional(os.path.join(path, name))
    if text is None or not text.strip().isdigit():
        return None
    value = int(text.strip())
    return value if version == 2 else max(0, value - usage)


def ancestors(path, root=DEFAULT_ROOT):
    """`path` and its parent cgroup directories up to (not including) the hierarchy's top."""
    top = os.path.normpath(memory_hierarchy(root) or root)
    current = os.path.normpath(path)
    result = []
    while current.startswith(top + os.sep) and current != top:
        result.append(current)
        current = os.path.dirname(current)
    return result


def available_memory(path, root=DEFAULT_ROOT):
    """The memory a cgroup can still take before a limit stops it: the smallest headroom along its ancestors.

    A container can be capped by its own limit or by a parent's (`--cgroup-parent` with a limit);
    the headroom of each limited level is its limit minus its working set. Returns a dict
    (`available`, `limit`, `working_set`, `path` of the level that binds) or None when no level is limited.
    """
    best = None
    for directory in ancestors(path, root):
        if directory_version(directory) is None:
            continue
        try:
            figures = read_memory(directory)
        except CgroupError:
            continue
        if figures['limit'] is None:
            continue
        if best is None or figures['available'] < best['available']:
            best = {'available': figures['available'], 'limit': figures['limit'], 'working_set': figures['working_set'],
                    'usage': figures['usage'], 'path': directory}
    return best


def read_meminfo(path='/proc/meminfo'):
    """/proc/meminfo as {field: bytes} (MemTotal, MemAvailable, SwapFree, ...)."""
    result = {}
    for line in _read(path).splitlines():
        name, _sep, rest = line.partition(':')
        fields = rest.split()
        if not fields:
            continue
        try:
            value = int(fields[0])
        except ValueError:
            continue
        result[name.strip()] = value * 1024 if len(fields) > 1 and fields[1] == 'kB' else value
    return result
