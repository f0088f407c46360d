"""The guard's scope: on an engine shared with other projects, only the stack's containers are stopped and restored.

The engine runs over the fakes of test_guard.py (a 1 GiB stack cgroup whose usage is what runs), with the
containers of two Compose projects (and a Swarm stack) on the same engine.
"""

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _containers
from ansible_collections.sutazai.ops.plugins.module_utils import _guard as guard
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate
from ansible_collections.sutazai.ops.tests.unit.plugins.module_utils.test_guard import (  # pylint: disable=unused-import
    MIB, NOW, FakeApi, World, fixture_proc, make_guard)

COMPOSE = _containers.COMPOSE_PROJECT_LABEL
SWARM = _containers.STACK_NAMESPACE_LABEL


class NotFound(Exception):
    """Named as docker.errors.NotFound, which the engine recognises by name."""


class LabelledApi(FakeApi):
    """The engine's list with each container's own labels (tier, project, more)."""

    def containers(self, all=True, filters=None):  # pylint: disable=redefined-builtin
        listed = []
        for cid, c in self.world.containers.items():
            labels = dict(c.get('labels') or {})
            if c['tier']:
                labels['sutazai.tier'] = str(c['tier'])
            listed.append({'Id': cid, 'Names': ['/' + c['name']], 'Labels': labels, 'State': 'running' if c['running'] else 'exited'})
        return listed

    def start(self, cid):
        if cid not in self.world.containers:
            raise NotFound('No such container: %s' % cid)
        super().start(cid)


def two_projects():
    return {
        'a-redis': {'name': 'a-redis', 'tier': 1, 'usage': 100 * MIB, 'running': True, 'labels': {COMPOSE: 'a'}},
        'a-qdrant': {'name': 'a-qdrant', 'tier': 2, 'usage': 100 * MIB, 'running': True, 'labels': {COMPOSE: 'a'}},
        'a-agent': {'name': 'a-agent', 'tier': 3, 'usage': 100 * MIB, 'running': True, 'labels': {COMPOSE: 'a', 'team': 'x'}},
        'b-agent': {'name': 'b-agent', 'tier': 3, 'usage': 100 * MIB, 'running': True, 'labels': {COMPOSE: 'b'}},
        'b-qdrant': {'name': 'b-qdrant', 'tier': 2, 'usage': 100 * MIB, 'running': True, 'labels': {COMPOSE: 'b'}},
        's-agent': {'name': 's_agent.1', 'tier': 3, 'usage': 50 * MIB, 'running': True, 'labels': {SWARM: 'a'}},
    }


def scoped_guard(world, tmp_path, project=None, labels=None, **thresholds):
    engine = make_guard(world, tmp_path, **thresholds)
    engine.readings.docker.api = engine.actions.docker.api = LabelledApi(world)
    engine.readings.scope = _containers.Scope(project, labels)
    return engine


def stopped(world):
    return sorted(c['name'] for c in world.containers.values() if not c['running'])


@pytest.mark.parametrize('labels, expected', [
    ({COMPOSE: 'a'}, True),
    ({SWARM: 'a'}, True),
    ({COMPOSE: 'b'}, False),
    ({COMPOSE: 'ab'}, False),
    ({}, False),
    ({COMPOSE: 'b', SWARM: 'a'}, True),
])
def test_a_project_is_a_compose_project_or_a_swarm_stack(labels, expected):
    assert _containers.Scope('a').matches(labels) is expected


def test_labels_must_all_match_and_no_scope_matches_everything():
    scope = _containers.Scope('a', {'team': 'x', 'sutazai.tier': 3})
    assert scope.matches({COMPOSE: 'a', 'team': 'x', 'sutazai.tier': '3'})
    assert not scope.matches({COMPOSE: 'a', 'team': 'x'})
    assert not scope.matches({COMPOSE: 'a', 'team': 'y', 'sutazai.tier': '3'})
    assert _containers.Scope(None, {'team': 'x'}).matches({'team': 'x'})
    everything = _containers.Scope()
    assert not everything.active and everything.matches({}) and everything.as_dict() is None
    assert everything.describe() == 'every container'
    assert scope.as_dict() == {'project': 'a', 'labels': {'team': 'x', 'sutazai.tier': '3'}}
    assert scope.describe() == 'project a, labels sutazai.tier=3, team=x'


@pytest.mark.parametrize('project, labels, message', [
    ('', None, "project must name a Compose project or Swarm stack (label com.docker.compose.project or com.docker.stack.namespace), got ''"),
    ('  ', None, "got '  '"),
    (' a', None, "got ' a'"),
    (5, None, 'got 5'),
    ('a', ['team=x'], "labels must be a mapping of label names to values, got ['team=x']"),
    ('a', {'': 'x'}, "a label name must be a non-empty text, got ''"),
    ('a', {'enabled': True}, 'the value of enabled must be a text (quote it), got True'),
    ('a', {'team': None}, 'the value of team must be a text (quote it), got None'),
])
def test_a_bad_scope_names_the_value(project, labels, message):
    with pytest.raises(_containers.ScopeError) as caught:
        _containers.Scope(project, labels)
    assert message in str(caught.value)


def test_emergency_with_a_project_stops_only_its_containers(proc):
    world = World({}, two_projects())
    engine = scoped_guard(world, proc, project='a')
    result = engine.run(level='emergency')
    assert not result.get('failed'), result.get('msg')
    assert stopped(world) == ['a-agent', 'a-qdrant', 's_agent.1']  # tier 3 of both kinds of project a, then tier 2
    assert world.containers['b-agent']['running'] and world.containers['b-qdrant']['running']
    assert result['scope'] == {'project': 'a', 'labels': {}} and result['containers_outside_scope'] == 2
    assert sorted(c['name'] for c in result['snapshot']['containers']) == ['a-agent', 'a-qdrant', 'a-redis', 's_agent.1']
    assert sorted(result['snapshot']['outside_scope']) == ['b-agent', 'b-qdrant']
    # each record names its project, so a scoped guard knows a removed container's
    assert {r['name']: r.get('project') for r in result['stopped_by_guard']} == {'a-agent': 'a', 'a-qdrant': 'a', 's_agent.1': 'a'}


def test_emergency_without_a_project_stops_every_project(proc):
    world = World({}, two_projects())
    result = scoped_guard(world, proc).run(level='emergency')
    assert stopped(world) == ['a-agent', 'a-qdrant', 'b-agent', 'b-qdrant', 's_agent.1']
    assert result['scope'] is None and result['containers_outside_scope'] == 0 and result['kept_outside_scope'] == []


def test_labels_narrow_the_scope(proc):
    world = World({}, two_projects())
    result = scoped_guard(world, proc, project='a', labels={'team': 'x'}).run(level='emergency')
    assert stopped(world) == ['a-agent']
    assert result['scope'] == {'project': 'a', 'labels': {'team': 'x'}}


def test_the_pressure_reading_is_the_same_with_a_scope(proc):
    world = World({'m': 50 * MIB}, two_projects())
    whole = scoped_guard(world, proc).readings.snapshot()
    scoped = scoped_guard(world, proc, project='a').readings.snapshot()
    assert scoped['pressure'] == whole['pressure'] and scoped['stack'] == whole['stack'] and scoped['pressure_source'] == 'stack'


def test_hard_pressure_stops_only_the_scope_even_when_that_is_not_enough(proc):
    # 600 base + 300 model + 550 containers: above hard; without the model and a's tier 3 and 2, still 900 MiB (88 %)
    world = World({'m': 300 * MIB}, two_projects())
    world.base = 600 * MIB
    result = scoped_guard(world, proc, project='a').run()
    assert result['level'] == 'hard' and result['pressure_after'] > 80
    assert [a['container'] for a in result['actions'] if a['action'] == 'stop'] == ['a-agent', 's_agent.1', 'a-qdrant']
    assert 'b-agent' not in stopped(world) and 'b-qdrant' not in stopped(world)


def _records_of_both(world, proc):
    """A state file with records of both projects (an unscoped emergency pass), at low pressure afterwards."""
    scoped_guard(world, proc).run(level='emergency')
    world.calls.clear()
    return gstate.StateStore(str(proc / 'state' / 'guard.json'))


def test_a_scoped_pass_restores_only_its_records_and_keeps_the_others(proc):
    world = World({}, two_projects())
    store = _records_of_both(world, proc)
    engine = scoped_guard(world, proc, project='a', restore_after=0)
    names = []
    for _pass in range(6):
        result = engine.run()
        assert not result.get('failed'), result.get('msg')
        names += [a['container'] for a in result['actions']]
    # stopped in the order a-agent, b-agent, s_agent.1, a-qdrant, b-qdrant: restored latest first, one per pass, b's skipped
    assert names == ['a-qdrant', 's_agent.1', 'a-agent']
    assert sorted(r['name'] for r in store.load()['stopped']) == ['b-agent', 'b-qdrant']
    assert sorted(result['kept_outside_scope']) == ['b-agent', 'b-qdrant']
    assert stopped(world) == ['b-agent', 'b-qdrant']


def test_a_scoped_pass_never_drops_a_record_outside_its_scope(proc):
    world = World({}, two_projects())
    store = _records_of_both(world, proc)
    world.containers['b-agent']['running'] = True  # someone started it again
    scoped_guard(world, proc, project='a').run()
    assert 'b-agent' in [r['name'] for r in store.load()['stopped']]
    scoped_guard(world, proc).run()  # an unscoped pass sees it running: no longer the guard's to restore
    assert 'b-agent' not in [r['name'] for r in store.load()['stopped']]


def test_records_of_removed_containers(proc):
    world = World({}, two_projects())
    store = _records_of_both(world, proc)
    state = store.load()
    state['stopped'].append({'id': 'gone-old', 'name': 'gone-old', 'tier': 3, 'usage': 0, 'stopped_at': NOW, 'status': 'stopped'})
    store.save(state)
    for cid in ('a-agent', 'b-agent', 'a-qdrant', 'b-qdrant', 's-agent'):
        del world.containers[cid]  # removed (compose down): not listed any more
    engine = scoped_guard(world, proc, project='a', restore_after=0)
    for _pass in range(6):
        engine.run()
    # project a's records are dropped (start: no such container); b's and the one that names no project stay
    assert sorted(r['name'] for r in store.load()['stopped']) == ['b-agent', 'b-qdrant', 'gone-old']
    # labels cannot be checked on a removed container: a scope with labels leaves every such record
    labelled = scoped_guard(world, proc, project='b', labels={'team': 'x'}, restore_after=0)
    labelled.run()
    assert sorted(r['name'] for r in store.load()['stopped']) == ['b-agent', 'b-qdrant', 'gone-old']
    unscoped = scoped_guard(world, proc, restore_after=0)
    for _pass in range(4):
        unscoped.run()
    assert store.load()['stopped'] == []


def test_the_report_says_the_scope(proc):
    world = World({}, two_projects())
    report = scoped_guard(world, proc, project='b').report()
    assert report['scope'] == {'project': 'b', 'labels': {}} and report['containers_outside_scope'] == 4
    assert sorted(c['name'] for c in report['snapshot']['containers']) == ['b-agent', 'b-qdrant']


def test_the_engine_reads_a_scope_without_ansible():
    assert guard.Readings(None).scope.as_dict() is None
