"""Unit tests of the one container adapter (module_utils/_containers.py): container -> cgroup -> memory figures, cached per run.

The cgroup trees are the recorded fixtures (v1 cgroupfs driver, v2 systemd driver with nested slices). The last
tests check that the modules and the guard read containers through this adapter only, that the label constants
exist once, and that the new module_utils run on a host without Ansible.
"""

import ast
import json
import os
import shutil

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups
from ansible_collections.sutazai.ops.plugins.module_utils import _containers
from ansible_collections.sutazai.ops.plugins.module_utils import _guard
from ansible_collections.sutazai.ops.plugins.module_utils import _limits

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
MiB = 1024 ** 2
V1_ID = '5f3c2b9d8e7a6f1c0b4d3e2a9f8c7b6a5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a'
V2_ID = '9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d'
V2_AGENT = 'dead0000beef0000dead0000beef0000dead0000beef0000dead0000beef0000'


def inspect(cid, parent='', running=True, name='c1'):
    return {'Id': cid, 'Name': '/' + name, 'State': {'Running': running}, 'HostConfig': {'CgroupParent': parent}}


@pytest.mark.parametrize('tree, container, relative', [
    ('cgroup_v1', inspect(V1_ID), 'memory/docker/' + V1_ID),
    ('cgroup_v2', inspect(V2_ID), 'system.slice/docker-%s.scope' % V2_ID),
    ('cgroup_v2', inspect(V2_AGENT, 'sutazai-agents.slice'), 'sutazai.slice/sutazai-agents.slice/docker-%s.scope' % V2_AGENT),
    ('cgroup_v2', V2_ID, 'system.slice/docker-%s.scope' % V2_ID),
])
def test_container_to_cgroup_to_figures(tree, container, relative):
    memory = _containers.ContainerMemory(os.path.join(FIXTURES, tree))
    path = os.path.join(FIXTURES, tree, relative)
    assert memory.cgroup_path(container) == path
    expected = _cgroups.read_memory(path)
    assert memory.figures(container) == expected
    assert memory.working_set(container) == expected['working_set']
    assert memory.swap(container) == expected['swap']
    assert memory.summary(container) == {'usage': expected['working_set'], 'limit': expected['limit'], 'swap': expected['swap'],
                                         'oom_kills': expected['oom_kills']}


def test_lookup_and_read_happen_once_per_run_unless_fresh(monkeypatch):
    memory = _containers.ContainerMemory(os.path.join(FIXTURES, 'cgroup_v2'))
    lookups, reads = [], []
    real_find, real_read = _cgroups.find_container_cgroup, _cgroups.read_memory
    monkeypatch.setattr(_cgroups, 'find_container_cgroup', lambda *a, **k: lookups.append(a[0]) or real_find(*a, **k))
    monkeypatch.setattr(_cgroups, 'read_memory', lambda path: reads.append(path) or real_read(path))
    container = inspect(V2_ID)
    memory.working_set(container)
    memory.swap(container)
    memory.summary(container)
    assert len(lookups) == 1 and len(reads) == 1
    memory.figures(container, fresh=True)
    assert len(lookups) == 1 and len(reads) == 2  # the path stays cached, the files are read again


def test_a_cgroup_that_vanishes_reads_as_none_and_is_looked_up_again(tmp_path):
    tree = tmp_path / 'cgroup'
    shutil.copytree(os.path.join(FIXTURES, 'cgroup_v2'), str(tree))
    memory = _containers.ContainerMemory(str(tree))
    assert memory.working_set(V2_ID) is not None
    shutil.rmtree(str(tree / 'system.slice' / ('docker-%s.scope' % V2_ID)))
    assert memory.figures(V2_ID, fresh=True) is None
    assert memory.cgroup_path(V2_ID) is None


def test_not_found_and_bad_ids():
    memory = _containers.ContainerMemory(os.path.join(FIXTURES, 'cgroup_v2'))
    assert memory.figures('f' * 64) is None
    assert memory.figures('not-a-full-id') is None
    with pytest.raises(ValueError):
        memory.cgroup_path('not-a-full-id')


def test_headroom_is_bound_by_the_tightest_level():
    memory = _containers.ContainerMemory(os.path.join(FIXTURES, 'cgroup_v2'))
    container = inspect(V2_AGENT, 'sutazai-agents.slice')
    path = memory.cgroup_path(container)
    binding = _cgroups.available_memory(path, root=memory.root)
    headroom = memory.headroom(container)
    assert headroom == {'cgroup': path, 'limit': binding['limit'], 'usage': binding['working_set'], 'available': binding['available'],
                        'limited_by': binding['path']}
    with pytest.raises(LookupError):
        memory.headroom('f' * 64)


def test_tiered_containers_from_the_engine_list():
    class Api:
        def __init__(self):
            self.asked = None

        def containers(self, **kwargs):
            self.asked = kwargs
            return [{'Id': 'a' * 64, 'Names': ['/sutazai-postgres'], 'State': 'running',
                     'Labels': {'sutazai.tier': '1', 'sutazai.service': 'postgres'}},
                    {'Id': 'b' * 64, 'Names': [], 'State': 'exited', 'Labels': {'sutazai.tier': 'x'}}]
    api = Api()
    listed = _containers.tiered_containers(api)
    assert api.asked == {'all': True, 'filters': {'label': 'sutazai.tier'}}
    assert listed == [
        {'id': 'a' * 64, 'name': 'sutazai-postgres', 'tier': 1, 'service': 'postgres', 'running': True,
         'labels': {'sutazai.tier': '1', 'sutazai.service': 'postgres'}},
        {'id': 'b' * 64, 'name': 'b' * 12, 'tier': None, 'service': None, 'running': False, 'labels': {'sutazai.tier': 'x'}},
    ]


def test_limits_and_guard_read_through_the_adapter():
    tree = os.path.join(FIXTURES, 'cgroup_v2')
    container = inspect(V2_AGENT, 'sutazai-agents.slice')
    expected = _containers.ContainerMemory(tree).figures(container)
    assert _limits.read_usage(container, None, cgroup_root=tree) == expected['working_set']
    assert _limits.read_swap_usage(container, cgroup_root=tree) == expected['swap']
    reader = _guard.CgroupReader(tree)
    assert isinstance(reader.container_memory, _containers.ContainerMemory)
    # the guard finds a container under a slice it was not told about (no CgroupParent in the list)
    assert reader.read_container(V2_AGENT) == _containers.ContainerMemory(tree).summary(V2_AGENT)
    assert _guard.TIER_LABEL is _containers.TIER_LABEL
    assert _containers.TIER_LABEL == 'sutazai.tier'
    assert _containers.SERVICE_LABEL == 'sutazai.service'


# ---------------------------------------------------------------- one adapter, one constant

# Files of the collection that still look up container cgroups or spell the tier label themselves (none now: every
# file reads containers through _containers.py); a file listed here is exempt from the scan below.
NOT_YET = set()
# The files this adapter replaced the copies in: they must never get one back.
MIGRATED = ('plugins/module_utils/_limits.py', 'plugins/module_utils/_guard.py', 'plugins/module_utils/_ollama_model.py',
            'plugins/modules/ollama_model.py', 'plugins/modules/container_limits.py', 'plugins/modules/memory_guard.py')


def own_copies(path):
    """Calls of the container cgroup lookup / headroom reader and spellings of the label constants in one file: [(line, what)]."""
    with open(path, encoding='utf-8') as handle:
        tree = ast.parse(handle.read(), path)
    docs = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) in ('DOCUMENTATION', 'EXAMPLES', 'RETURN') for t in node.targets):
            docs.add(id(node.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in (_containers.TIER_LABEL, _containers.SERVICE_LABEL) and id(node) not in docs:
            found.append((node.lineno, 'the label %r' % node.value))
        if isinstance(node, ast.Attribute) and node.attr in ('find_container_cgroup', 'available_memory') \
                and isinstance(node.value, ast.Name) and node.value.id in ('_cgroups', 'cgroups'):
            found.append((node.lineno, 'a call of _cgroups.%s' % node.attr))
    return found


def test_the_scan_sees_an_own_copy(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text("from x import _cgroups\nTIER_LABEL = 'sutazai.tier'\npath = _cgroups.find_container_cgroup('a')\n")
    assert own_copies(str(bad)) == [(2, "the label 'sutazai.tier'"), (3, 'a call of _cgroups.find_container_cgroup')]


def test_containers_are_read_through_the_one_adapter():
    offenders = []
    for directory in ('plugins/module_utils', 'plugins/modules', 'plugins/filter'):
        for name in sorted(os.listdir(os.path.join(ROOT, directory))):
            relative = '%s/%s' % (directory, name)
            if not name.endswith('.py') or relative in NOT_YET or name in ('_containers.py', '_cgroups.py'):
                continue
            offenders += ['%s:%d: %s' % (relative, line, what) for line, what in own_copies(os.path.join(ROOT, relative))]
    assert offenders == []
    for relative in MIGRATED:
        assert relative not in NOT_YET and os.path.isfile(os.path.join(ROOT, relative))


# ---------------------------------------------------------------- without Ansible

SCRIPT = r'''
from ansible_collections.sutazai.ops.plugins.module_utils import _containers, _docker, _limits, _ollama, _ollama_model

client = _docker.create_client({'docker_host': 'tcp://192.0.2.5:2375', 'api_version': '1.41', 'timeout': 3}, environ={})
memory = _containers.ContainerMemory(sys.argv[2])
print(json.dumps({'base_url': client.api.base_url, 'working_set': memory.working_set(sys.argv[3]),
                  'ollama': _ollama.resolve_host(None, {'OLLAMA_HOST': '0.0.0.0:11500'}),
                  'ansible_loaded': any(m.split('.')[0] == 'ansible' for m in sys.modules)}))
'''


def test_the_new_module_utils_run_without_ansible(without_ansible):
    tree = os.path.join(FIXTURES, 'cgroup_v2')
    proc = without_ansible(SCRIPT, tree, V2_ID)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {'base_url': 'http://192.0.2.5:2375', 'working_set': _containers.ContainerMemory(tree).working_set(V2_ID),
                      'ollama': 'http://127.0.0.1:11500', 'ansible_loaded': False}
