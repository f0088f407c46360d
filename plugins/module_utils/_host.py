# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's size: the memory the tier plan is made for. PRIVATE to the collection: no compatibility promise.

Plain Python with no Ansible import.

A host's size is its MemTotal, or, where the host is itself a container with a memory limit (an LXC/LXD
host, a docker-in-docker host), that limit: the smallest memory limit of the host's own memory cgroup and
its ancestors that can be read. The host's own cgroup is the one of PID 1 (the host's init), read from
/proc/1/cgroup, or /proc/self/cgroup where /proc/1 cannot be read. A limit at or above MemTotal (cgroup v1
writes "no limit" as a huge number, v2 as "max") does not count.

cgroup v1 keeps the limit in <memory controller>/<path>/memory.limit_in_bytes, cgroup v2 in
<root>/<path>/memory.max. With a private cgroup namespace (LXC, Docker's default on cgroup v2) the host's
cgroup is the root of what it sees; with the outer machine's namespace (docker --cgroupns=host) the path is
the outer one, and the cgroup file system mounted inside may show the host's own cgroup at its root instead:
both are read.
"""

import os

V1_LIMIT = 'memory.limit_in_bytes'
V2_LIMIT = 'memory.max'


def parse_meminfo(text):
    """MemTotal in bytes from the text of /proc/meminfo; None when it is missing."""
    for line in text.splitlines():
        if line.startswith('MemTotal:'):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                factor = 1024 if len(parts) < 3 or parts[2].lower() == 'kb' else 1
                return int(parts[1]) * factor
    return None


def memory_cgroup(text):
    """(version, path) of the memory cgroup in the text of /proc/<pid>/cgroup, or (None, None).

    A v1 line names the memory controller ("4:memory:/docker/abc"); the v2 line is "0::/path". Where both
    are present (hybrid hosts) the v1 memory controller holds the limits. A trailing /init.scope (systemd
    moves itself there) is dropped: the limit is set on the container's cgroup.
    """
    v1 = v2 = None
    for line in text.splitlines():
        parts = line.strip().split(':', 2)
        if len(parts) != 3:
            continue
        controllers = parts[1].split(',')
        if 'memory' in controllers:
            v1 = parts[2]
        elif parts[0] == '0' and parts[1] == '':
            v2 = parts[2]
    if v1 is not None:
        return '1', _strip_init(v1)
    if v2 is not None:
        return '2', _strip_init(v2)
    return None, None


def _strip_init(path):
    path = path.strip() or '/'
    if path.endswith('/init.scope'):
        path = path[:-len('/init.scope')] or '/'
    return path


def parse_limit(text):
    """A limit file's value in bytes; None for "max" or anything that is not a number."""
    value = (text or '').strip()
    if value.isdigit():
        return int(value)
    return None


def limit_candidates(cgroup_root, version, path):
    """The limit files that may bound `path`, the host's own cgroup first, then its ancestors, then the mount's root."""
    base = os.path.join(cgroup_root, 'memory') if version == '1' else cgroup_root
    name = V1_LIMIT if version == '1' else V2_LIMIT
    out = []
    parts = [p for p in (path or '/').split('/') if p]
    while parts:
        out.append(os.path.join(base, *parts, name))
        parts.pop()
    out.append(os.path.join(base, name))
    return out


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def cgroup_limit(cgroup_root, version, path, read=_read):
    """(limit, file) - the smallest readable memory limit bounding the cgroup `path`; (None, None) when none is set."""
    best = best_file = None
    for candidate in limit_candidates(cgroup_root, version, path):
        limit = parse_limit(read(candidate))
        if limit is not None and limit > 0 and (best is None or limit < best):
            best, best_file = limit, candidate
    return best, best_file


def host_size(proc_root='/proc', cgroup_root='/sys/fs/cgroup', read=_read):
    """The host's size and how it was found.

    Returns a dict: size (bytes), mem_total (MemTotal), cgroup_limit (the bounding limit below MemTotal,
    or None), source ('meminfo' or 'cgroup'), limit_file, cgroup_version, memory_cgroup (the host's own
    memory cgroup path, '/' on a machine or in a private cgroup namespace) and container (True when the
    host's own cgroup is not the root of the cgroup tree it sees, or when a limit bounds it).
    Raises ValueError when MemTotal cannot be read.
    """
    mem_total = parse_meminfo(read(os.path.join(proc_root, 'meminfo')) or '')
    if not mem_total:
        raise ValueError('MemTotal not found in %s' % os.path.join(proc_root, 'meminfo'))
    text = read(os.path.join(proc_root, '1', 'cgroup'))
    if not text:
        text = read(os.path.join(proc_root, 'self', 'cgroup')) or ''
    version, path = memory_cgroup(text)
    limit = limit_file = None
    if version is not None:
        limit, limit_file = cgroup_limit(cgroup_root, version, path, read=read)
        if limit is not None and limit >= mem_total:
            limit = limit_file = None
    return {
        'size': limit if limit is not None else mem_total,
        'mem_total': mem_total,
        'cgroup_limit': limit,
        'source': 'cgroup' if limit is not None else 'meminfo',
        'limit_file': limit_file,
        'cgroup_version': version,
        'memory_cgroup': path or '/',
        'container': bool(limit is not None or (path not in (None, '/'))),
    }
