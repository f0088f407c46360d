"""memory_guard's project scope on a real engine shared by two projects, under a real capped stack cgroup.

Two projects run side by side in one 512 MiB cgroup v1 memory cgroup: project A (a tier 1 service, a tier 3
agent, a tier 2 service and a tier 3 Swarm task of stack A) and project B (one large tier 3 agent). The
containers are plain containers carrying the labels Compose and Swarm put on theirs. With project=A the guard
stops A's tier 3 and 2 only - at level emergency and under real hard pressure, even when B's agent is the
largest - and restores only A's records; without a project B's agent is stopped too, which the check of B
must catch (it is run once against that case and seen to fail).
"""

import json
import os
import time

import pytest

docker = pytest.importorskip('docker')

PREFIX = 'sutazai-gs-'
GROUP = PREFIX + 'scope'
V1_DIR = '/sys/fs/cgroup/memory/' + GROUP
MIB = 1024 * 1024
LABEL = 'sutazai.test'
TEST_LABELS = {LABEL: 'gs-scope'}
A = PREFIX + 'a'
B = PREFIX + 'b'
COMPOSE = 'com.docker.compose.project'
SWARM = 'com.docker.stack.namespace'
# name: (labels, tier, MiB held)
CONTAINERS = {
    A + '-core': ({COMPOSE: A}, 1, 0),
    A + '-agent': ({COMPOSE: A}, 3, 100),
    A + '-qdrant': ({COMPOSE: A}, 2, 30),
    A + '-worker': ({SWARM: A}, 3, 20),
    B + '-agent': ({COMPOSE: B}, 3, 250),
}
THRESHOLDS = {'soft': 50, 'hard': 70, 'restore_below': 45}


def _write(path, value):
    with open(path, 'w', encoding='ascii') as handle:
        handle.write(str(value))


def _container_usage_mib(container_id):
    base = os.path.join(V1_DIR, container_id)
    try:
        with open(base + '/memory.usage_in_bytes', encoding='ascii') as handle:
            return int(handle.read()) / MIB
    except OSError:
        return 0.0


@pytest.fixture(name='shared', scope='module')
def fixture_shared():
    """The 512 MiB stack cgroup and the containers of both projects in it."""
    if not os.path.isdir('/sys/fs/cgroup/memory'):
        pytest.skip('this test drives a cgroup v1 memory hierarchy; the host has none')
    client = docker.from_env()
    os.makedirs(V1_DIR, exist_ok=True)
    _write(V1_DIR + '/memory.limit_in_bytes', 512 * MIB)
    if os.path.exists(V1_DIR + '/memory.memsw.limit_in_bytes'):
        _write(V1_DIR + '/memory.memsw.limit_in_bytes', 512 * MIB)
    try:
        for name, (labels, tier, hold) in CONTAINERS.items():
            client.containers.run('sutazai-testbed/http:latest', name=name, detach=True, cgroup_parent='/' + GROUP,
                                  environment={'HOLD_MB': str(hold)},
                                  labels=dict(labels, **{LABEL: 'gs-scope', 'sutazai.tier': str(tier)}))
        yield client
    finally:
        for container in client.containers.list(all=True, filters={'label': LABEL + '=gs-scope'}):
            container.remove(force=True)
        try:
            os.rmdir(V1_DIR)
        except OSError:
            pass


@pytest.fixture(name='engine')
def fixture_engine(shared, tmp_path):
    """Every container of both projects running and holding its memory; a fresh state file."""
    for name in CONTAINERS:
        container = shared.containers.get(name)
        if container.status != 'running':
            container.start()
    deadline = time.time() + 60
    while True:
        short = {}
        for name, (_labels, _tier, hold) in CONTAINERS.items():
            container = shared.containers.get(name)
            usage = _container_usage_mib(container.id)
            if container.status != 'running' or usage < hold:
                short[name] = (container.status, round(usage))
        if not short:
            break
        assert time.time() < deadline, 'containers not holding their memory: %s' % short
        time.sleep(0.5)
    return {'client': shared, 'state_file': str(tmp_path / 'guard.json')}


def _guard(module_runner, engine, **extra):
    # every pass is limited to this test's containers (labels): the engine may run other stacks (make stable's)
    args = dict(THRESHOLDS, stack_cgroup=GROUP, ollama_host='', state_file=engine['state_file'], stop_timeout=2,
                labels=TEST_LABELS)
    args.update(extra)
    result = module_runner('memory_guard', args)
    assert not result.get('failed'), result.get('msg')
    return result


def _running(engine):
    return sorted(c.name for c in engine['client'].containers.list(filters={'label': LABEL + '=gs-scope'}))


def _assert_b_untouched(engine, result):
    """Project B's agent runs, the guard did nothing to it, and it was never a candidate."""
    assert B + '-agent' in _running(engine), 'the guard stopped project B\'s agent'
    assert B + '-agent' not in [a.get('container') for a in result['actions']]
    assert B + '-agent' not in [c['name'] for c in result['snapshot']['containers']]


def test_emergency_with_a_project_stops_only_its_tier_3_and_2(module_runner, engine):
    result = _guard(module_runner, engine, level='emergency', project=A)
    print('emergency, project A: stack pressure %s%% -> %s%%' % (result['pressure_before'], result['pressure_after']))
    assert result['escalation'] == 'emergency' and result['scope'] == {'project': A, 'labels': TEST_LABELS}
    assert result['pressure_before'] > THRESHOLDS['hard'], 'the stack cgroup should be under hard pressure'
    assert result['snapshot']['pressure_source'] == 'stack'
    stopped = [a['container'] for a in result['actions'] if a['action'] == 'stop']
    assert stopped == [A + '-agent', A + '-worker', A + '-qdrant']  # tier 3 largest first (Compose and Swarm alike), then tier 2
    assert _running(engine) == [A + '-core', B + '-agent']
    _assert_b_untouched(engine, result)
    assert result['containers_outside_scope'] >= 1
    assert B + '-agent' not in [r['name'] for r in result['stopped_by_guard']]
    with open(engine['state_file'], encoding='utf-8') as handle:
        assert {r['name']: r['project'] for r in json.load(handle)['stopped']} == {n: A for n in stopped}


def test_emergency_without_a_project_stops_the_other_project_too(module_runner, engine):
    """Today's behaviour without the option: the check of B catches it (seen to fail)."""
    result = _guard(module_runner, engine, level='emergency')
    assert result['scope'] == {'project': None, 'labels': TEST_LABELS}  # no project: both projects' containers
    assert _running(engine) == [A + '-core']
    with pytest.raises(AssertionError, match="stopped project B's agent"):
        _assert_b_untouched(engine, result)


def test_hard_pressure_with_a_project_leaves_the_largest_agent_of_the_other(module_runner, engine):
    """Without the scope B's agent, the largest tier 3, would go first; with it A's go and B's stays, pressure or not."""
    plan = module_runner('memory_guard', dict(THRESHOLDS, stack_cgroup=GROUP, ollama_host='', state_file=engine['state_file'],
                                              labels=TEST_LABELS), check=True)
    assert plan['level'] == 'hard' and [a['container'] for a in plan['actions']][:1] == [B + '-agent']
    result = _guard(module_runner, engine, project=A)
    print('hard, project A: stack pressure %s%% -> %s%%' % (result['pressure_before'], result['pressure_after']))
    assert result['level'] == 'hard'
    assert [a['container'] for a in result['actions']] == [A + '-agent', A + '-worker', A + '-qdrant']
    assert result['pressure_after'] > THRESHOLDS['soft']  # not enough, and still B's agent is not the guard's
    _assert_b_untouched(engine, result)


def test_a_scoped_restore_starts_only_its_project_and_keeps_the_other_record(module_runner, engine):
    first = _guard(module_runner, engine, level='emergency')  # no scope: both projects stopped, both recorded
    assert sorted(r['name'] for r in first['stopped_by_guard']) == sorted(n for n in CONTAINERS if not n.endswith('-core'))
    started = []
    for _attempt in range(6):
        result = _guard(module_runner, engine, project=A, restore_after=0)
        assert result['level'] == 'ok', result['pressure_before']
        started += [a['container'] for a in result['actions'] if a['action'] == 'start']
        if not result['actions']:
            break
    assert started == [A + '-qdrant', A + '-worker', A + '-agent']  # latest first, one per pass
    assert result['kept_outside_scope'] == [B + '-agent']
    assert [r['name'] for r in result['stopped_by_guard']] == [B + '-agent']
    assert B + '-agent' not in _running(engine)
    with open(engine['state_file'], encoding='utf-8') as handle:
        assert [r['name'] for r in json.load(handle)['stopped']] == [B + '-agent']


def test_an_empty_project_is_refused_naming_it(module_runner, engine):
    result = module_runner('memory_guard', dict(THRESHOLDS, stack_cgroup=GROUP, ollama_host='', state_file=engine['state_file'],
                                                level='emergency', project=''))
    assert result['failed'] and "project must name a Compose project or Swarm stack" in result['msg'] and "got ''" in result['msg']
    assert len(_running(engine)) == len(CONTAINERS) and not os.path.exists(engine['state_file'])
