"""Unit tests of the memory_guard module: main() over recorded snapshots, with the engine's actions recorded, not done.

The integration tests run it on real memory; these cover the module's own wiring: check mode, diff, act=false,
level, fail_above and option errors, without a Docker engine or an Ollama server.
"""

import json
import os

import pytest
import yaml

from ansible_collections.sutazai.ops.plugins.doc_fragments.attributes import ModuleDocFragment
from ansible_collections.sutazai.ops.plugins.module_utils import _guard as guard
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_policy as policy
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate
from ansible_collections.sutazai.ops.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.sutazai.ops.plugins.modules import memory_guard
from ansible_collections.sutazai.ops.tests.unit.plugins.modules.utils import patch_module_exits, run_main

MIB = 1024 ** 2
LIMIT = 1024 * MIB


class World:
    """A stack of 1 GiB: containers and models hold memory; the guard's actions change it."""

    def __init__(self, base, models, containers):
        self.base = base
        self.models = dict(models)
        self.containers = containers
        self.calls = []

    def snapshot(self):
        usage = self.base + sum(self.models.values()) + sum(c['usage'] for c in self.containers.values() if c['running'])
        host = {'mem_total': 16 * 1024 * MIB, 'mem_available': 12 * 1024 * MIB, 'pressure': 25.0}
        stack = {'usage': usage, 'limit': LIMIT, 'pressure': 100.0 * usage / LIMIT, 'oom_kills': 0}
        return {'time': 1000.0, 'host': host, 'stack': stack, 'pressure': policy.overall_pressure(host, stack),
                'pressure_source': 'stack',
                'models': [{'name': n, 'size': s, 'idle_seconds': 100.0, 'pinned': False} for n, s in self.models.items()],
                'containers': [dict(c, id=cid) for cid, c in self.containers.items()]}


@pytest.fixture(name='world')
def fixture_world(monkeypatch):
    # 300 + 150 + 100 + 450 = 1000 MiB of 1024: 97.7 %, above hard (90); without the model still 83 %, above soft (80)
    world = World(300 * MIB, {'llama3.2:3b': 150 * MIB},
                  {'c-redis': {'name': 'redis', 'tier': 1, 'usage': 100 * MIB, 'running': True},
                   'c-agent': {'name': 'agent', 'tier': 3, 'usage': 450 * MIB, 'running': True}})

    def unload(_actions, name):
        world.calls.append(('unload', name))
        world.models.pop(name)
        return True

    def stop(_actions, cid):
        world.calls.append(('stop', world.containers[cid]['name']))
        world.containers[cid]['running'] = False

    def start(_actions, cid):
        world.calls.append(('start', world.containers[cid]['name']))
        world.containers[cid]['running'] = True

    monkeypatch.setattr(guard.Readings, 'snapshot', lambda _readings: world.snapshot())
    monkeypatch.setattr(guard.Actions, 'unload', unload)
    monkeypatch.setattr(guard.Actions, 'stop', stop)
    monkeypatch.setattr(guard.Actions, 'start', start)
    monkeypatch.setattr(memory_guard.docker, 'DockerClient', lambda **_kwargs: object())
    patch_module_exits(monkeypatch)
    return world


def args(tmp_path, **extra):
    return dict({'ollama_host': '', 'stack_cgroup': 'sutazai', 'state_file': str(tmp_path / 'guard.json')}, **extra)


def test_check_mode_plans_the_relief_and_does_nothing(world, tmp_path):
    result = run_main(memory_guard.main, args(tmp_path), check=True, diff=True)
    assert not result['failed'], result.get('msg')
    assert result['changed'] is True and result['level'] == 'hard'
    assert [(a['action'], a.get('model') or a.get('container')) for a in result['actions']] == [('unload', 'llama3.2:3b'), ('stop', 'agent')]
    assert world.calls == [] and not (tmp_path / 'guard.json').exists()
    assert result['diff']['before']['running'] == ['agent', 'redis'] and result['diff']['after']['running'] == ['redis']
    assert result['diff']['after']['models'] == [] and result['pressure_after'] < 80


def test_acting_relieves_and_records_then_changes_nothing(world, tmp_path):
    result = run_main(memory_guard.main, args(tmp_path))
    assert result['changed'] is True and world.calls == [('unload', 'llama3.2:3b'), ('stop', 'agent')]
    assert result['pressure_before'] > 90
    assert result['pressure_after'] < 80
    with open(tmp_path / 'guard.json', encoding='utf-8') as handle:
        assert [r['name'] for r in json.load(handle)['stopped']] == ['agent']
    again = run_main(memory_guard.main, args(tmp_path))
    assert again['changed'] is False and again['actions'] == [] and world.calls == [('unload', 'llama3.2:3b'), ('stop', 'agent')]


def test_report_only_plans_nothing(world, tmp_path):
    result = run_main(memory_guard.main, args(tmp_path, act=False))
    assert result['changed'] is False and result['actions'] == [] and result['level'] == 'hard'
    assert world.calls == [] and not (tmp_path / 'guard.json').exists()


def test_emergency_acts_whatever_the_readings(world, tmp_path):
    world.base = 0  # 700 MiB: 68 %, below soft
    result = run_main(memory_guard.main, args(tmp_path, level='emergency'))
    assert result['level'] == 'ok' and result['escalation'] == 'emergency'
    assert world.calls == [('unload', 'llama3.2:3b'), ('stop', 'agent')]
    assert world.containers['c-redis']['running']


def test_the_scope_is_returned(world, tmp_path):
    result = run_main(memory_guard.main, args(tmp_path, project='sutazai', labels={'team': 'core'}, act=False))
    assert result['scope'] == {'project': 'sutazai', 'labels': {'team': 'core'}}
    assert run_main(memory_guard.main, args(tmp_path, act=False))['scope'] is None


@pytest.mark.parametrize('check', [False, True])
def test_fail_above_names_the_pressure_and_its_source(world, tmp_path, check):
    result = run_main(memory_guard.main, args(tmp_path, act=False, fail_above=85), check=check)
    assert result['failed'] and 'memory pressure is 97.7%, above fail_above 85.0% (stack)' in result['msg']
    assert world.calls == []


@pytest.mark.parametrize('extra, message', [
    ({'soft': 95, 'hard': 90}, 'soft (95.0%) must be below hard (90.0%)'),
    ({'hard': 120}, 'hard must be between 1 and 99 percent, got 120'),
    ({'fail_above': 150}, 'fail_above must be a percent between 0 and 100, got 150'),
    ({'mode': 'yolo'}, 'yolo'),
    ({'project': ''}, "memory_guard: project must name a Compose project or Swarm stack (label com.docker.compose.project or "
                      "com.docker.stack.namespace), got ''. Nothing was done"),
    ({'project': 'sutazai', 'labels': {'enabled': True}}, 'labels: the value of enabled must be a text (quote it), got True'),
])
def test_bad_options_name_the_value_and_touch_nothing(world, tmp_path, extra, message):
    result = run_main(memory_guard.main, args(tmp_path, **extra))
    assert result['failed'] and message in result['msg']
    assert world.calls == [] and not (tmp_path / 'guard.json').exists()


def tree(directory):
    """Every file under `directory`: relative name -> (size, mtime_ns, ctime_ns, content); directories with their times."""
    result = {}
    for parent, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(parent, name)
            info = os.stat(path)
            content = None
            if name in files:
                with open(path, 'rb') as handle:
                    content = handle.read()
            result[os.path.relpath(path, directory)] = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, content)
    return result


def _prepare_state(world, tmp_path, kind):
    """A state directory holding a good, a damaged or no state file (the good and damaged ones with a backup)."""
    state = tmp_path / 'state'
    state.mkdir()
    if kind != 'missing':
        run_main(memory_guard.main, dict(args(tmp_path), state_file=str(state / 'guard.json')))  # stops agent
        world.containers['c-agent']['running'] = True  # someone started it; the record stays until a pass sees it
        world.models['llama3.2:3b'] = 150 * MIB
        gstate.StateStore(str(state / 'guard.json')).save(gstate.StateStore(str(state / 'guard.json')).load())  # a backup too
    if kind == 'damaged':
        text = (state / 'guard.json').read_text()
        (state / 'guard.json').write_text(text[:25])
    world.calls.clear()
    return state


@pytest.mark.parametrize('kind', ['damaged', 'missing', 'good'])
@pytest.mark.parametrize('how', ['check_mode', 'act=false', 'check_mode act=false'])
def test_check_mode_and_report_only_write_nothing(world, tmp_path, kind, how):
    state = _prepare_state(world, tmp_path, kind)
    before = tree(tmp_path)
    extra = {'act': False} if 'act=false' in how else {}
    for _round in range(2):
        result = run_main(memory_guard.main, dict(args(tmp_path), state_file=str(state / 'guard.json'), **extra),
                          check='check_mode' in how, diff=True)
        assert not result['failed'], result.get('msg')
    assert tree(tmp_path) == before
    assert world.calls == []
    if kind == 'damaged':
        assert any('the next acting pass keeps a copy aside' in w for w in result['warnings_guard'])
        # only an acting pass sets the damaged file aside (and writes the recovered records back)
        run_main(memory_guard.main, dict(args(tmp_path), state_file=str(state / 'guard.json')))
        assert len([name for name in os.listdir(state) if '.corrupt-' in name]) == 1


def test_a_bad_ollama_host_scheme_fails_clearly(world, tmp_path):
    result = run_main(memory_guard.main, args(tmp_path, ollama_host='ftp://x'))
    assert result['failed'] and result['actions'] == []
    assert result['msg'] == "memory_guard: ollama_host: host 'ftp://x': the scheme must be http or https. Nothing was done"
    assert world.calls == [] and not (tmp_path / 'guard.json').exists()


def test_an_unwritable_state_directory_fails_before_any_action(world, tmp_path):
    (tmp_path / 'blocker').write_text('')
    result = run_main(memory_guard.main, dict(args(tmp_path), state_file=str(tmp_path / 'blocker' / 'guard.json')))
    assert result['failed'] and result['actions'] == [] and result['changed'] is False
    assert result['msg'].startswith('memory_guard: cannot open the lock file %s' % (tmp_path / 'blocker' / 'guard.json.lock'))
    assert world.calls == []


def test_a_state_file_that_cannot_be_written_means_no_stop(world, tmp_path, monkeypatch):
    def save(store, _state):
        raise gstate.StateWriteError(28, 'cannot write the state file %s: No space left on device' % store.path)

    monkeypatch.setattr(gstate.StateStore, 'save', save)
    result = run_main(memory_guard.main, args(tmp_path))
    assert world.calls == [('unload', 'llama3.2:3b')] and world.containers['c-agent']['running']
    assert result['failed'] and [a['action'] for a in result['actions']] == ['unload']
    assert result['msg'] == ('memory_guard: cannot write the state file %s: No space left on device (at recording the stop of agent); '
                             'agent was not stopped. Done in this pass: unloaded model llama3.2:3b' % (tmp_path / 'guard.json'))


def test_a_reading_that_fails_after_a_stop_fails_with_the_actions_and_the_record(world, tmp_path, monkeypatch):
    def snapshot(_readings):
        if ('stop', 'agent') in world.calls:
            raise FileNotFoundError(2, 'No such file or directory', '/sys/fs/cgroup/memory/sutazai/memory.stat')
        return world.snapshot()

    monkeypatch.setattr(guard.Readings, 'snapshot', snapshot)
    result = run_main(memory_guard.main, args(tmp_path))
    assert result['failed'] and result['changed'] is True
    assert result['msg'] == ("memory_guard: guard pass failed: FileNotFoundError: [Errno 2] No such file or directory: "
                             "'/sys/fs/cgroup/memory/sutazai/memory.stat'. "
                             "Done in this pass: unloaded model llama3.2:3b, stopped container agent (tier 3)")
    assert [(a['action'], a.get('model') or a.get('container')) for a in result['actions']] == [('unload', 'llama3.2:3b'), ('stop', 'agent')]
    assert [(r['name'], r['status']) for r in result['stopped_by_guard']] == [('agent', 'stopped')]
    with open(tmp_path / 'guard.json', encoding='utf-8') as handle:
        assert [r['name'] for r in json.load(handle)['stopped']] == ['agent']


def test_a_lock_held_by_another_pass_fails_clearly(world, tmp_path):
    with gstate.StateStore(str(tmp_path / 'guard.json')).locked():  # another open file description: flock conflicts
        result = run_main(memory_guard.main, args(tmp_path, lock_timeout=0))
    assert result['failed'] and result['actions'] == [] and world.calls == []
    assert result['msg'] == ('memory_guard: the state file %s is locked by another guard pass (pid %d) and was not released '
                             'within 0 seconds. Nothing was done in this pass' % (tmp_path / 'guard.json', os.getpid()))


def test_psi_full_option(world, tmp_path):
    result = run_main(memory_guard.main, args(tmp_path, act=False, psi_full=25))
    assert result['thresholds']['psi_full'] == 25.0 and result['psi_stalled'] is False
    result = run_main(memory_guard.main, args(tmp_path, psi_full=120))
    assert result['failed'] and result['msg'] == 'memory_guard: psi_full must be between 0 (off) and 100 percent, got 120.0'


def test_the_diff_comes_from_the_diff_helper(world, tmp_path, monkeypatch):
    used = []

    class Recording(DifferenceTracker):
        def diff(self, header=None, only_changed=False):
            used.append(self.differences())
            return super().diff(header, only_changed)

    monkeypatch.setattr(memory_guard, 'DifferenceTracker', Recording)
    result = run_main(memory_guard.main, args(tmp_path), check=True, diff=True)
    assert used == [['models', 'pressure', 'running']]
    assert result['diff']['before']['running'] == ['agent', 'redis'] and result['diff']['after']['running'] == ['redis']


def test_idempotent_is_documented():
    attributes = yaml.safe_load(memory_guard.DOCUMENTATION)['attributes']
    assert attributes['idempotent']['support'] == 'partial' and attributes['idempotent']['details']
    fragment = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['attributes']
    assert 'description' in attributes['idempotent'] or 'description' in fragment.get('idempotent', {})
