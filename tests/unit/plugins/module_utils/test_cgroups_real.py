"""plugins/module_utils/_cgroups.py on cgroup files the kernel wrote (fixtures/cgroup_v1_real, fixtures/cgroup_v2_real).

cgroup_v1_real: this test bed's kernel (cgroup v1, cgroupfs driver), recorded by tests/vm/capture_v1.py: a container
(--memory 256m --memory-swap 384m, 96 MB held, 24 MiB of file cache) under a parent limited to 512 MiB (saved as
`sutazai`). cgroup_v2_real: the cgroup v2 lane's guest (Debian 12 kernel, Docker's systemd driver), recorded by
tests/vm/test_cgroup_v2.py with SUTAZAI_VM_CAPTURE: sutazai.slice (MemoryMax 600 MiB) and the tier-3 container's
docker-<id>.scope in it.

The expected figures are computed here from the files' own numbers, with a parser of this test's own.
"""

import os
import re

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups as cgroups

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
V1 = os.path.join(FIXTURES, 'cgroup_v1_real')
V2 = os.path.join(FIXTURES, 'cgroup_v2_real')
V1_PARENT = os.path.join(V1, 'memory', 'sutazai')
V2_SLICE = os.path.join(V2, 'sutazai.slice')
_ID = re.compile(r'^(docker-)?([0-9a-f]{64})(\.scope)?$')


def _text(directory, name):
    with open(os.path.join(directory, name), encoding='ascii') as handle:
        return handle.read().strip()


def _keyed(directory, name):
    return {key: int(value) for key, value in (line.split() for line in _text(directory, name).splitlines())}


def _container(parent):
    """(full id, directory) of the one container recorded under `parent`."""
    found = [(match.group(2), os.path.join(parent, name)) for name in sorted(os.listdir(parent)) for match in [_ID.match(name)] if match]
    assert len(found) == 1, found
    return found[0]


V1_ID, V1_CONTAINER = _container(V1_PARENT)
V2_ID, V2_CONTAINER = _container(V2_SLICE)


def test_the_recordings_are_what_the_tests_need():
    """A parent whose own inactive_file differs from its hierarchical one, and file cache in each container."""
    parent = _keyed(V1_PARENT, 'memory.stat')
    assert parent['inactive_file'] != parent['total_inactive_file']
    assert _keyed(V1_CONTAINER, 'memory.stat')['total_inactive_file'] > 0
    assert _keyed(V2_CONTAINER, 'memory.stat')['inactive_file'] > 0
    assert 'total_inactive_file' not in _keyed(V2_SLICE, 'memory.stat')


def test_versions_and_the_containers_are_found():
    assert cgroups.cgroup_version(V1) == 1
    assert cgroups.cgroup_version(V2) == 2
    assert cgroups.find_container_cgroup(V1_ID, root=V1, cgroup_parent='/sutazai') == V1_CONTAINER
    assert cgroups.find_container_cgroup(V1_ID, root=V1) == V1_CONTAINER
    assert cgroups.find_container_cgroup(V2_ID, root=V2, cgroup_parent='sutazai.slice') == V2_CONTAINER
    assert cgroups.find_container_cgroup(V2_ID, root=V2) == V2_CONTAINER


@pytest.mark.parametrize('directory', [V1_CONTAINER, V1_PARENT], ids=['container', 'parent'])
def test_v1_working_set_is_usage_minus_total_inactive_file(directory):
    usage = int(_text(directory, 'memory.usage_in_bytes'))
    stat = _keyed(directory, 'memory.stat')
    figures = cgroups.read_memory(directory)
    assert figures['version'] == 1
    assert figures['usage'] == usage
    assert figures['inactive_file'] == stat['total_inactive_file']
    assert figures['working_set'] == usage - stat['total_inactive_file']
    limit = int(_text(directory, 'memory.limit_in_bytes'))
    assert figures['limit'] == limit
    assert figures['available'] == limit - (usage - stat['total_inactive_file'])
    assert figures['oom_kills'] == _keyed(directory, 'memory.oom_control')['oom_kill']
    assert figures['swap'] == int(_text(directory, 'memory.memsw.usage_in_bytes')) - usage


def test_v1_parent_working_set_is_not_the_one_of_its_own_inactive_file():
    """The parent's own inactive_file is 0 (it has no tasks); reading it instead of total_inactive_file counts the cache as used."""
    usage = int(_text(V1_PARENT, 'memory.usage_in_bytes'))
    stat = _keyed(V1_PARENT, 'memory.stat')
    assert cgroups.read_memory(V1_PARENT)['working_set'] != usage - stat['inactive_file']


def test_v1_recorded_limits():
    assert cgroups.read_limit(V1_CONTAINER) == 256 * 1024 * 1024
    assert cgroups.read_limit(V1_PARENT) == 512 * 1024 * 1024
    assert cgroups.read_limit(os.path.join(V1, 'memory')) is None      # 9223372036854771712


@pytest.mark.parametrize('directory', [V2_CONTAINER, V2_SLICE], ids=['scope', 'slice'])
def test_v2_working_set_is_memory_current_minus_inactive_file(directory):
    usage = int(_text(directory, 'memory.current'))
    stat = _keyed(directory, 'memory.stat')
    events = _keyed(directory, 'memory.events')
    figures = cgroups.read_memory(directory)
    assert figures['version'] == 2
    assert figures['usage'] == usage
    assert figures['inactive_file'] == stat['inactive_file']
    assert figures['working_set'] == usage - stat['inactive_file']
    limit_text = _text(directory, 'memory.max')
    assert figures['limit'] == (None if limit_text == 'max' else int(limit_text))
    assert figures['oom_kills'] == events['oom_kill']
    assert figures['events'] == events
    assert figures['swap'] == int(_text(directory, 'memory.swap.current'))


def test_v2_recorded_limits():
    assert cgroups.read_limit(V2_SLICE) == 600 * 1024 * 1024
    assert cgroups.read_limit(V2_CONTAINER) is None                     # "max"


@pytest.mark.parametrize('root, container, parent', [(V1, V1_CONTAINER, V1_PARENT), (V2, V2_CONTAINER, V2_SLICE)], ids=['v1', 'v2'])
def test_available_memory_is_the_tightest_level_from_the_files(root, container, parent):
    levels = []
    for directory in (container, parent):
        version = cgroups.directory_version(directory)
        if version == 2:
            usage, limit_text = int(_text(directory, 'memory.current')), _text(directory, 'memory.max')
            inactive = _keyed(directory, 'memory.stat')['inactive_file']
            limit = None if limit_text == 'max' else int(limit_text)
        else:
            usage, limit = int(_text(directory, 'memory.usage_in_bytes')), int(_text(directory, 'memory.limit_in_bytes'))
            inactive = _keyed(directory, 'memory.stat')['total_inactive_file']
        if limit is not None and limit < 2 ** 62:
            levels.append((limit - (usage - inactive), directory))
    expected_available, expected_path = min(levels)
    result = cgroups.available_memory(container, root=root)
    assert result['available'] == expected_available
    assert result['path'] == expected_path
