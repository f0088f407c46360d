"""The guard engine over fakes of the host, Docker and Ollama: relief order, re-reading, restore, check mode."""

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _guard as guard
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_policy as policy
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate

MIB = 1024 ** 2
LIMIT = 1024 * MIB


class World:
    """A stack cgroup of 1 GiB holding models and containers; every action really frees its memory here."""

    def __init__(self, models, containers, base=100 * MIB):
        self.models = dict(models)          # name -> size
        self.containers = containers        # id -> dict(name, tier, usage, running)
        self.base = base
        self.calls = []

    def usage(self):
        return self.base + sum(self.models.values()) + sum(c['usage'] for c in self.containers.values() if c['running'])


class FakeCgroups:
    def __init__(self, world):
        self.world = world

    def read_group(self, path):
        return {'usage': self.world.usage(), 'limit': LIMIT, 'oom_kills': 0}

    def read_container(self, container_id):
        return {'usage': self.world.containers[container_id]['usage'], 'limit': None}


class FakeApi:
    def __init__(self, world):
        self.world = world

    def containers(self, all=True, filters=None):  # pylint: disable=redefined-builtin
        return [{'Id': cid, 'Names': ['/' + c['name']], 'Labels': {'sutazai.tier': str(c['tier'])} if c['tier'] else {},
                 'State': 'running' if c['running'] else 'exited'} for cid, c in self.world.containers.items()]

    def inspect_container(self, cid):
        return {'State': {'OOMKilled': False}, 'RestartCount': 0}

    def stop(self, cid, timeout=None):
        self.world.calls.append(('stop', self.world.containers[cid]['name']))
        self.world.containers[cid]['running'] = False

    def start(self, cid):
        self.world.calls.append(('start', self.world.containers[cid]['name']))
        self.world.containers[cid]['running'] = True


class FakeDocker:
    def __init__(self, world):
        self.api = FakeApi(world)


class FakeOllama:
    def __init__(self, world, now):
        self.world = world
        self.now = now

    def ps(self):
        # expires_at = last use + 300 s keep_alive; the first model is the most idle
        result = []
        for index, (name, size) in enumerate(self.world.models.items()):
            expires = self.now - 100 * (len(self.world.models) - index) + 300
            result.append({'name': name, 'size': size, 'expires_at': _rfc3339(expires)})
        return result

    def unload(self, name):
        self.world.calls.append(('unload', name))
        self.world.models.pop(name, None)

    def wait_unloaded(self, name, timeout=0, interval=0):
        return name not in self.world.models


def _rfc3339(epoch):
    import datetime
    return datetime.datetime.utcfromtimestamp(epoch).strftime('%Y-%m-%dT%H:%M:%S.%f000Z')


NOW = 1_800_000_000.0


def make_guard(world, tmp_path, clock=lambda: NOW, **thresholds):
    readings = guard.Readings(FakeCgroups(world), proc_root=str(tmp_path / 'proc'), stack_cgroup='sutazai',
                              docker_client=FakeDocker(world), ollama_client=FakeOllama(world, NOW), clock=clock)
    actions = guard.Actions(FakeDocker(world), FakeOllama(world, NOW))
    actions.docker = readings.docker
    actions.ollama = readings.ollama
    store = gstate.StateStore(str(tmp_path / 'state' / 'guard.json'))
    return guard.Guard(policy.resolve_thresholds(**thresholds), readings, actions, store, clock=clock)


@pytest.fixture(name='proc')
def fixture_proc(tmp_path):
    """A /proc with a calm host, so the stack cgroup decides."""
    (tmp_path / 'proc' / 'pressure').mkdir(parents=True)
    meminfo = 'MemTotal:       16000000 kB\nMemFree:  8000000 kB\nMemAvailable:   12000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n'
    psi = 'some avg10=1.50 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=1\n'
    (tmp_path / 'proc' / 'meminfo').write_text(meminfo)
    (tmp_path / 'proc' / 'pressure' / 'memory').write_text(psi)
    return tmp_path


def containers():
    return {
        'c-redis': {'name': 'redis', 'tier': 1, 'usage': 150 * MIB, 'running': True},
        'c-qdrant': {'name': 'qdrant', 'tier': 2, 'usage': 100 * MIB, 'running': True},
        'c-small': {'name': 'agent-small', 'tier': 3, 'usage': 80 * MIB, 'running': True},
        'c-big': {'name': 'agent-big', 'tier': 3, 'usage': 200 * MIB, 'running': True},
        'c-free': {'name': 'untiered', 'tier': None, 'usage': 50 * MIB, 'running': True},
    }


def test_readings(proc):
    world = World({'a': 100 * MIB}, containers())
    snap = make_guard(world, proc).readings.snapshot()
    assert snap['host']['pressure'] == 25.0
    assert snap['host']['psi_some_avg10'] == 1.5 and snap['host']['psi_full_avg10'] == 0.25
    assert snap['stack']['usage'] == world.usage()
    assert snap['pressure_source'] == 'stack'
    assert {c['name']: c['tier'] for c in snap['containers']}['untiered'] is None
    assert snap['models'][0]['idle_seconds'] == pytest.approx(100.0)


def test_soft_unloads_idle_models_only_until_enough(proc):
    # 60 base + 3x120 models + 580 containers = 1000 MiB of 1024 (97.7 %); soft at 80 %:
    # unloading 'old' leaves 85.9 %, 'mid' too leaves 74.2 %: enough, so 'busy' stays
    world = World({'old': 120 * MIB, 'mid': 120 * MIB, 'busy': 120 * MIB}, containers(), base=60 * MIB)
    result = make_guard(world, proc, soft=80, hard=99).run(level='soft')
    assert world.calls == [('unload', 'old'), ('unload', 'mid')]
    assert 'busy' in world.models  # the model in use stays when the others were enough
    assert result['pressure_after'] < 80
    assert all(call[0] == 'unload' for call in world.calls)


def test_hard_unloads_all_then_stops_tier3_largest_first_never_tier1(proc):
    world = World({'a': 100 * MIB, 'b': 100 * MIB}, containers(), base=300 * MIB)
    result = make_guard(world, proc).run()
    assert result['level'] == 'hard'
    assert world.calls[:3] == [('unload', 'a'), ('unload', 'b'), ('stop', 'agent-big')]
    assert ('stop', 'redis') not in world.calls and ('stop', 'untiered') not in world.calls
    assert result['pressure_after'] < 80
    stopped = [r['name'] for r in result['stopped_by_guard']]
    assert stopped == [c[1] for c in world.calls if c[0] == 'stop']


def test_check_mode_plans_without_acting(proc):
    world = World({'a': 100 * MIB, 'b': 100 * MIB}, containers(), base=300 * MIB)
    result = make_guard(world, proc).run(act=False)
    assert world.calls == []
    assert [a['action'] for a in result['actions']][:3] == ['unload', 'unload', 'stop']
    assert not (proc / 'state' / 'guard.json').exists()


def test_emergency_keeps_only_tier1_and_untiered(proc):
    world = World({'a': 10 * MIB}, containers(), base=0)
    result = make_guard(world, proc).run(level='emergency')
    assert result['level'] == 'ok' and result['escalation'] == 'emergency'
    assert sorted(c[1] for c in world.calls if c[0] == 'stop') == ['agent-big', 'agent-small', 'qdrant']
    assert world.containers['c-redis']['running'] and world.containers['c-free']['running']


def test_restore_after_low_pressure_survives_a_new_guard(proc):
    # 500 + 580 = 1080 MiB: stopping agent-big leaves 85.9 %, agent-small too 78.1 % (< 80)
    world = World({}, containers(), base=500 * MIB)
    clock = [NOW]
    make_guard(world, proc, clock=lambda: clock[0], restore_after=60).run()
    stopped = [c[1] for c in world.calls if c[0] == 'stop']
    assert stopped == ['agent-big', 'agent-small']
    world.base = 0  # pressure falls
    world.calls.clear()
    # a fresh guard (as after a daemon restart) reads the state file
    assert make_guard(world, proc, clock=lambda: clock[0], restore_after=60).run()['actions'] == []
    clock[0] += 30
    assert make_guard(world, proc, clock=lambda: clock[0], restore_after=60).run()['actions'] == []
    clock[0] += 31
    result = make_guard(world, proc, clock=lambda: clock[0], restore_after=60).run()
    assert world.calls == [('start', 'agent-small')]  # the last stopped starts first
    assert [r['name'] for r in result['stopped_by_guard']] == ['agent-big']
    clock[0] += 31
    make_guard(world, proc, clock=lambda: clock[0], restore_after=60).run()
    assert world.calls == [('start', 'agent-small'), ('start', 'agent-big')]


def test_container_started_by_someone_else_is_forgotten(proc):
    world = World({}, containers(), base=400 * MIB)
    make_guard(world, proc).run()
    for container in world.containers.values():
        container['running'] = True
    world.base = 0
    assert make_guard(world, proc).run()['stopped_by_guard'] == []


def test_a_start_that_fails_is_retried_later_not_forgotten(proc):
    world = World({}, containers(), base=500 * MIB)
    clock = [NOW]
    make_guard(world, proc, clock=lambda: clock[0], restore_after=60).run()
    world.base = 0
    world.calls.clear()
    make_guard(world, proc, clock=lambda: clock[0], restore_after=60).run()  # below restore_below from now
    clock[0] += 61
    failing = make_guard(world, proc, clock=lambda: clock[0], restore_after=60)
    real_start = failing.actions.docker.api.start

    def refuse(cid):
        raise RuntimeError('engine timeout')

    failing.actions.docker.api.start = refuse
    result = failing.run()
    assert any('retried later' in w for w in result['warnings'])
    assert sorted(r['name'] for r in result['stopped_by_guard']) == ['agent-big', 'agent-small']
    failing.actions.docker.api.start = real_start
    for _round in range(2):
        clock[0] += 31
        make_guard(world, proc, clock=lambda: clock[0], restore_after=60).run()
    # the one that failed goes last, and both run again
    assert world.calls == [('start', 'agent-big'), ('start', 'agent-small')]
    assert make_guard(world, proc, clock=lambda: clock[0]).run()['stopped_by_guard'] == []


def test_check_mode_on_a_damaged_state_file_keeps_every_record(proc):
    world = World({}, containers(), base=500 * MIB)
    make_guard(world, proc).run()
    path = proc / 'state' / 'guard.json'
    store = gstate.StateStore(str(path))
    store.save(store.load())  # the same records, now in the backup too
    path.write_text(path.read_text()[:20])
    world.base = 0
    for _round in range(2):
        result = make_guard(world, proc).run(act=False)
        assert sorted(r['name'] for r in result['stopped_by_guard']) == ['agent-big', 'agent-small']
    assert path.read_text().startswith('{') and len(path.read_text()) == 20  # check mode wrote nothing


def test_an_acting_pass_that_changes_nothing_does_not_write(proc):
    world = World({}, containers(), base=0)
    make_guard(world, proc).run()  # starts the below-restore timer: written once
    path = proc / 'state' / 'guard.json'
    written = path.stat().st_mtime_ns, path.stat().st_ino
    for _round in range(3):
        make_guard(world, proc).run()
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written
    assert not (proc / 'state' / 'guard.json.bak').exists()
