"""plugins/module_utils/_host.py: a host's size from MemTotal or the memory limit of the container it is.

The trees below are written as the kernel shows them: a machine (no limit), a docker-in-docker host with
--cgroupns=host (the outer path in /proc/1/cgroup, the outer tree mounted), a Docker container on cgroup v1
whose mount shows only its own cgroup at the root, an LXC host on cgroup v2 with a private namespace,
and a hybrid host.
"""

import os

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _host

G = 1024 ** 3
MEMINFO = 'MemTotal:       24684092 kB\nMemFree:        18000000 kB\nMemAvailable:   22000000 kB\n'
MEM_TOTAL = 24684092 * 1024
V1_NO_LIMIT = '9223372036854771712\n'
V1_CGROUP = ('12:perf_event:/\n4:memory:{path}\n3:cpuset:/\n1:name=systemd:{path}\n0::/\n')


def write(root, rel, text):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)


@pytest.fixture
def roots(tmp_path):
    proc = tmp_path / 'proc'
    cgroup = tmp_path / 'cgroup'
    write(proc, 'meminfo', MEMINFO)
    return str(proc), str(cgroup)


def test_machine_without_limit_is_its_memtotal(roots):
    proc, cgroup = roots
    write(proc, '1/cgroup', V1_CGROUP.format(path='/'))
    write(cgroup, 'memory/memory.limit_in_bytes', V1_NO_LIMIT)
    size = _host.host_size(proc, cgroup)
    assert size['size'] == MEM_TOTAL
    assert size['source'] == 'meminfo'
    assert size['cgroup_limit'] is None
    assert size['container'] is False
    assert size['memory_cgroup'] == '/'


def test_dind_host_with_outer_namespace_is_its_limit(roots):
    """docker --cgroupns=host --memory 4g: /proc/1/cgroup names the outer path, systemd moved to init.scope."""
    proc, cgroup = roots
    write(proc, '1/cgroup', V1_CGROUP.format(path='/docker/abc/init.scope'))
    write(cgroup, 'memory/memory.limit_in_bytes', V1_NO_LIMIT)
    write(cgroup, 'memory/docker/memory.limit_in_bytes', V1_NO_LIMIT)
    write(cgroup, 'memory/docker/abc/memory.limit_in_bytes', '%d\n' % (4 * G))
    write(cgroup, 'memory/docker/abc/init.scope/memory.limit_in_bytes', V1_NO_LIMIT)
    size = _host.host_size(proc, cgroup)
    assert size['size'] == 4 * G
    assert size['source'] == 'cgroup'
    assert size['mem_total'] == MEM_TOTAL
    assert size['memory_cgroup'] == '/docker/abc'
    assert size['limit_file'].endswith('memory/docker/abc/memory.limit_in_bytes')
    assert size['container'] is True


def test_smallest_ancestor_limit_bounds_the_host(roots):
    """An LXD project limit above the host's own cgroup: the smaller one is the host's size."""
    proc, cgroup = roots
    write(proc, '1/cgroup', V1_CGROUP.format(path='/lxc.payload/project/host1'))
    write(cgroup, 'memory/lxc.payload/project/memory.limit_in_bytes', '%d\n' % (2 * G))
    write(cgroup, 'memory/lxc.payload/project/host1/memory.limit_in_bytes', '%d\n' % (8 * G))
    assert _host.host_size(proc, cgroup)['size'] == 2 * G


def test_own_cgroup_mounted_at_the_root(roots):
    """Docker on cgroup v1: /proc/1/cgroup says /docker/abc but the mount shows that cgroup at its root."""
    proc, cgroup = roots
    write(proc, '1/cgroup', V1_CGROUP.format(path='/docker/abc'))
    write(cgroup, 'memory/memory.limit_in_bytes', '%d\n' % (6 * G))
    size = _host.host_size(proc, cgroup)
    assert size['size'] == 6 * G
    assert size['source'] == 'cgroup'


def test_cgroup_v2_private_namespace(roots):
    """An LXC host on cgroup v2: '0::/', the container's memory.max at the root of its namespace."""
    proc, cgroup = roots
    write(proc, '1/cgroup', '0::/\n')
    write(cgroup, 'memory.max', '%d\n' % (3 * G))
    size = _host.host_size(proc, cgroup)
    assert size['size'] == 3 * G
    assert size['cgroup_version'] == '2'


def test_cgroup_v2_max_is_no_limit(roots):
    proc, cgroup = roots
    write(proc, '1/cgroup', '0::/init.scope\n')
    write(cgroup, 'memory.max', 'max\n')
    size = _host.host_size(proc, cgroup)
    assert size['size'] == MEM_TOTAL
    assert size['source'] == 'meminfo'


def test_limit_above_memtotal_does_not_count(roots):
    proc, cgroup = roots
    write(proc, '1/cgroup', V1_CGROUP.format(path='/docker/abc'))
    write(cgroup, 'memory/docker/abc/memory.limit_in_bytes', '%d\n' % (64 * G))
    size = _host.host_size(proc, cgroup)
    assert size['size'] == MEM_TOTAL
    assert size['cgroup_limit'] is None


def test_hybrid_host_reads_the_v1_memory_controller(roots):
    proc, cgroup = roots
    write(proc, '1/cgroup', '4:memory:/lxc/h\n0::/lxc/h\n')
    write(cgroup, 'memory/lxc/h/memory.limit_in_bytes', '%d\n' % G)
    write(cgroup, 'lxc/h/memory.max', '%d\n' % (5 * G))
    size = _host.host_size(proc, cgroup)
    assert size['size'] == G
    assert size['cgroup_version'] == '1'


def test_self_cgroup_when_pid1_cannot_be_read(roots):
    proc, cgroup = roots
    write(proc, 'self/cgroup', V1_CGROUP.format(path='/docker/xyz'))
    write(cgroup, 'memory/docker/xyz/memory.limit_in_bytes', '%d\n' % (2 * G))
    assert _host.host_size(proc, cgroup)['size'] == 2 * G


def test_missing_memtotal_is_an_error(tmp_path):
    write(tmp_path, 'proc/meminfo', 'MemFree: 1 kB\n')
    with pytest.raises(ValueError, match='MemTotal'):
        _host.host_size(str(tmp_path / 'proc'), str(tmp_path / 'cgroup'))


@pytest.mark.parametrize('text, expected', [
    ('4:memory:/docker/a\n', ('1', '/docker/a')),
    ('4:cpu,memory:/x/init.scope\n', ('1', '/x')),
    ('0::/\n', ('2', '/')),
    ('0::/init.scope\n', ('2', '/')),
    ('', (None, None)),
])
def test_memory_cgroup(text, expected):
    assert _host.memory_cgroup(text) == expected


def test_this_machine():
    """The real files of the machine the tests run on: a size between 64 MiB and MemTotal."""
    size = _host.host_size()
    assert 64 * 1024 ** 2 <= size['size'] <= size['mem_total']
