"""Unit tests of the memory_guard module: main() over recorded snapshots, with the engine's actions recorded, not done.

The integration tests run it on real memory; these cover the module's own wiring: check mode, diff, act=false,
level, fail_above and option errors, without a Docker engine or an Ollama server.
"""

import json

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _guard as guard
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_policy as policy
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
])
def test_bad_options_name_the_value_and_touch_nothing(world, tmp_path, extra, message):
    result = run_main(memory_guard.main, args(tmp_path, **extra))
    assert result['failed'] and message in result['msg']
    assert world.calls == [] and not (tmp_path / 'guard.json').exists()
