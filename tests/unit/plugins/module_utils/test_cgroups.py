"""Unit tests of plugins/module_utils/_cgroups.py on recorded cgroup v1 and v2 trees (fixtures/)."""

import os
import shutil
import sys

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups as cgroups

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
V1 = os.path.join(FIXTURES, 'cgroup_v1')
V2 = os.path.join(FIXTURES, 'cgroup_v2')

# containers of the fixture trees
V1_OLLAMA = '5f3c2b9d8e7a6f1c0b4d3e2a9f8c7b6a5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a'      # docker/<id>, --memory 64m
V1_UNLIMITED = '0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9'   # docker/<id>, no limit
V1_PARENT = 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00'      # --cgroup-parent=/sutazai (3G cap)
V2_SYSTEMD = '9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d'     # system.slice/docker-<id>.scope, 3G
V2_SLICE = 'ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12'       # sutazai.slice (4G cap)
V2_NESTED = 'dead0000beef0000dead0000beef0000dead0000beef0000dead0000beef0000'      # sutazai.slice/sutazai-agents.slice (1G cap)
V2_CGROUPFS = '1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef'    # cgroupfs driver, parent /custom/nested
UNKNOWN = 'f' * 64
MIB = 1024 * 1024


@pytest.mark.parametrize('root, version, hierarchy', [
    (V1, 1, os.path.join(V1, 'memory')),
    (V2, 2, V2),
    (FIXTURES, None, None),
])
def test_version_and_hierarchy(root, version, hierarchy):
    assert cgroups.cgroup_version(root) == version
    assert cgroups.memory_hierarchy(root) == hierarchy


FIND = [
    # (root, id, cgroup_parent given by the engine, expected path relative to root)
    (V1, V1_OLLAMA, None, 'memory/docker/' + V1_OLLAMA),
    (V1, V1_OLLAMA, '', 'memory/docker/' + V1_OLLAMA),
    (V1, V1_UNLIMITED, None, 'memory/docker/' + V1_UNLIMITED),
    (V1, V1_PARENT, '/sutazai', 'memory/sutazai/' + V1_PARENT),
    (V1, V1_PARENT, None, 'memory/sutazai/' + V1_PARENT),          # found by the walk
    (V2, V2_SYSTEMD, None, 'system.slice/docker-%s.scope' % V2_SYSTEMD),
    (V2, V2_SLICE, 'sutazai.slice', 'sutazai.slice/docker-%s.scope' % V2_SLICE),
    (V2, V2_SLICE, None, 'sutazai.slice/docker-%s.scope' % V2_SLICE),
    (V2, V2_NESTED, 'sutazai-agents.slice', 'sutazai.slice/sutazai-agents.slice/docker-%s.scope' % V2_NESTED),
    (V2, V2_NESTED, None, 'sutazai.slice/sutazai-agents.slice/docker-%s.scope' % V2_NESTED),
    (V2, V2_CGROUPFS, '/custom/nested', 'custom/nested/' + V2_CGROUPFS),
    (V2, V2_CGROUPFS, None, 'custom/nested/' + V2_CGROUPFS),
    (V2, V2_CGROUPFS.upper(), None, 'custom/nested/' + V2_CGROUPFS),
]


@pytest.mark.parametrize('root, container_id, parent, relative', FIND)
def test_find_container_cgroup(root, container_id, parent, relative):
    assert cgroups.find_container_cgroup(container_id, root=root, cgroup_parent=parent) == os.path.join(root, relative)


@pytest.mark.parametrize('root', [V1, V2, FIXTURES])
def test_find_unknown_container(root):
    assert cgroups.find_container_cgroup(UNKNOWN, root=root) is None


def test_walk_is_bounded_in_depth():
    assert cgroups.find_container_cgroup(V2_CGROUPFS, root=V2, max_depth=2) is None
    assert cgroups.find_container_cgroup(V2_CGROUPFS, root=V2, max_depth=3) is not None


@pytest.mark.parametrize('bad', ['', None, 'ollama', V1_OLLAMA[:12], V1_OLLAMA + '0', 'g' * 64])
def test_find_needs_a_full_id(bad):
    with pytest.raises(ValueError) as info:
        cgroups.find_container_cgroup(bad, root=V1)
    assert 'full id' in str(info.value)


@pytest.mark.parametrize('parent, expanded', [
    ('sutazai.slice', 'sutazai.slice'),
    ('sutazai-agents.slice', 'sutazai.slice/sutazai-agents.slice'),
    ('a-b-c.slice', 'a.slice/a-b.slice/a-b-c.slice'),
    ('/sutazai', 'sutazai'),
    ('/custom/nested', 'custom/nested'),
    ('-.slice', '-.slice'),
])
def test_expand_slice(parent, expanded):
    assert cgroups.expand_slice(parent) == expanded


def test_candidate_paths_cover_both_drivers():
    paths = cgroups.candidate_paths(UNKNOWN, root=V2, cgroup_parent='sutazai-agents.slice')
    assert os.path.join(V2, 'sutazai.slice/sutazai-agents.slice', 'docker-%s.scope' % UNKNOWN) in paths
    assert os.path.join(V2, 'system.slice', 'docker-%s.scope' % UNKNOWN) in paths
    assert os.path.join(V2, 'docker', UNKNOWN) in paths
    paths = cgroups.candidate_paths(UNKNOWN, root=V1)
    assert paths[0] == os.path.join(V1, 'memory', 'docker', UNKNOWN)
    assert not cgroups.candidate_paths(UNKNOWN, root=FIXTURES)


READ = [
    # (root, id, version, usage, inactive_file, limit, oom_kills)
    (V1, V1_OLLAMA, 1, 62914560, 8388608, 64 * MIB, 1),
    (V1, V1_UNLIMITED, 1, 24354816, 2097152, None, 0),      # 9223372036854771712 means no limit
    (V1, V1_PARENT, 1, 2147483648, 33554432, None, 0),
    (V2, V2_SYSTEMD, 2, 2684354560, 201326592, 3 * 1024 * MIB, 2),
    (V2, V2_SLICE, 2, 1610612736, 67108864, None, 0),        # "max" means no limit
    (V2, V2_NESTED, 2, 536870912, 16777216, 768 * MIB, 0),
    (V2, V2_CGROUPFS, 2, 104857600, 5242880, 200 * MIB, 0),
]


@pytest.mark.parametrize('root, container_id, version, usage, inactive, limit, ooms', READ)
def test_read_memory(root, container_id, version, usage, inactive, limit, ooms):
    path = cgroups.find_container_cgroup(container_id, root=root)
    figures = cgroups.read_memory(path)
    assert figures['path'] == path
    assert figures['version'] == version
    assert figures['usage'] == usage
    assert figures['inactive_file'] == inactive
    assert figures['working_set'] == usage - inactive
    assert figures['limit'] == limit
    assert figures['available'] == (None if limit is None else limit - (usage - inactive))
    assert figures['oom_kills'] == ooms
    assert cgroups.read_limit(path) == limit
    assert cgroups.read_oom_kills(path) == ooms
    if version == 2:
        assert figures['events']['oom_kill'] == ooms


def test_v1_uses_the_hierarchical_inactive_file():
    path = os.path.join(V1, 'memory', 'docker', V1_OLLAMA)
    stat = cgroups.read_stat(path)
    assert stat['total_inactive_file'] == 8388608
    assert stat['hierarchical_memory_limit'] == 64 * MIB


AVAILABLE = [
    # (root, id, available, binding level relative to the hierarchy)
    (V1, V1_OLLAMA, 64 * MIB - (62914560 - 8388608), 'docker/' + V1_OLLAMA),
    (V1, V1_UNLIMITED, None, None),                                              # nothing limited up the tree
    (V1, V1_PARENT, 3221225472 - (2952790016 - 134217728), 'sutazai'),           # the parent's cap binds
    (V2, V2_SYSTEMD, 3221225472 - (2684354560 - 201326592), 'system.slice/docker-%s.scope' % V2_SYSTEMD),
    (V2, V2_SLICE, 4294967296 - (3758096384 - 268435456), 'sutazai.slice'),
    # own limit 768M - 496M = 272M; agents slice 1G - 736M = 288M; sutazai.slice 4G - 3.25G = 768M: own binds
    (V2, V2_NESTED, 805306368 - (536870912 - 16777216), 'sutazai.slice/sutazai-agents.slice/docker-%s.scope' % V2_NESTED),
]


@pytest.mark.parametrize('root, container_id, available, binding', AVAILABLE)
def test_available_memory_takes_the_tightest_level(root, container_id, available, binding):
    path = cgroups.find_container_cgroup(container_id, root=root)
    result = cgroups.available_memory(path, root=root)
    if available is None:
        assert result is None
        return
    assert result['available'] == available
    assert result['path'] == os.path.join(cgroups.memory_hierarchy(root), binding)
    assert result['limit'] - result['working_set'] == available


def test_available_memory_is_never_negative(tmp_path):
    root = tmp_path / 'cg'
    shutil.copytree(V2, root)
    path = root / 'system.slice' / ('docker-%s.scope' % V2_SYSTEMD)
    (path / 'memory.max').write_text('1048576\n')
    assert cgroups.available_memory(str(path), root=str(root))['available'] == 0


def test_ancestors_stop_below_the_top():
    path = os.path.join(V2, 'sutazai.slice', 'sutazai-agents.slice', 'docker-%s.scope' % V2_NESTED)
    assert cgroups.ancestors(path, root=V2) == [path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))]


def test_errors_name_the_path(tmp_path):
    with pytest.raises(cgroups.CgroupError) as info:
        cgroups.read_memory(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'memory.current').write_text('lots\n')
    (broken / 'memory.stat').write_text('anon 1\n')
    with pytest.raises(cgroups.CgroupError) as info:
        cgroups.read_memory(str(broken))
    assert 'memory.current' in str(info.value) and "'lots'" in str(info.value)


def test_read_meminfo():
    info = cgroups.read_meminfo(os.path.join(FIXTURES, 'meminfo'))
    assert info['MemTotal'] == 24684096 * 1024
    assert info['MemAvailable'] == 21244644 * 1024
    assert info['HugePages_Total'] == 0
    assert info['Hugepagesize'] == 2048 * 1024


def test_read_meminfo_of_this_host():
    assert cgroups.read_meminfo()['MemAvailable'] > 0


def test_parse_flat_keyed():
    assert cgroups.parse_flat_keyed('low 0\nhigh 3\nbad\nx y\noom_kill 2\n') == {'low': 0, 'high': 3, 'oom_kill': 2}
    assert not cgroups.parse_flat_keyed(None)


def test_module_utils_are_stdlib_only(top_level_imports):
    assert top_level_imports(cgroups.__file__) <= set(sys.stdlib_module_names)
    assert 'PRIVATE to the collection' in cgroups.__doc__


@pytest.mark.skipif(cgroups.cgroup_version() != 1, reason='this host has no cgroup v1 memory hierarchy')
def test_this_host_has_a_readable_v1_hierarchy():
    figures = cgroups.read_memory(cgroups.memory_hierarchy())
    assert figures['version'] == 1
    assert figures['usage'] > 0


@pytest.mark.parametrize('root, container_id, swap', [
    (V1, V1_OLLAMA, 16 * MIB),      # memory.memsw.usage_in_bytes minus memory.usage_in_bytes
    (V1, V1_UNLIMITED, None),       # no memsw files: the kernel does not account swap (swapaccount=0)
    (V2, V2_SYSTEMD, 100 * MIB),    # memory.swap.current
    (V2, V2_SLICE, 0),              # accounted, none in swap
])
def test_read_memory_swap(root, container_id, swap):
    assert cgroups.read_memory(cgroups.find_container_cgroup(container_id, root=root))['swap'] == swap
