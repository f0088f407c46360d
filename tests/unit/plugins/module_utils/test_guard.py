"""The guard engine over fakes of the host, Docker and Ollama: relief order, re-reading, restore, check mode."""

import errno
import json
import multiprocessing

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups
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


def make_guard(world, tmp_path, clock=lambda: NOW, keep_alive=None, **thresholds):
    readings = guard.Readings(FakeCgroups(world), proc_root=str(tmp_path / 'proc'), stack_cgroup='sutazai',
                              docker_client=FakeDocker(world), ollama_client=FakeOllama(world, NOW), clock=clock,
                              **({} if keep_alive is None else {'ollama_keep_alive': keep_alive}))
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
    # what the server says: expires in 200 s; how long it has been idle is unknown without the keep_alive in force
    assert snap['models'][0]['expires_in'] == pytest.approx(200.0) and snap['models'][0]['idle_seconds'] is None
    known = make_guard(world, proc, keep_alive=300).readings.snapshot()
    assert known['models'][0]['idle_seconds'] == pytest.approx(100.0)


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
    assert result['failed'] and 'start agent-small failed: engine timeout; its record is kept and the start retried later' in result['msg']
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


# A record never lost: written before the stop, failures reported with what was done.

def _on_disk(proc):
    with open(proc / 'state' / 'guard.json', encoding='utf-8') as handle:
        return [(r['name'], r.get('status')) for r in json.load(handle)['stopped']]


def test_the_record_is_on_disk_before_the_container_stops(proc):
    world = World({}, containers(), base=500 * MIB)
    engine = make_guard(world, proc)
    seen = []
    real_stop = engine.actions.docker.api.stop

    def stop(cid, timeout=None):
        seen.append((world.containers[cid]['name'], _on_disk(proc) if (proc / 'state' / 'guard.json').exists() else None))
        real_stop(cid, timeout)

    engine.actions.docker.api.stop = stop
    result = engine.run()
    assert not result.get('failed'), result.get('msg')
    assert seen == [('agent-big', [('agent-big', 'stopping')]),
                    ('agent-small', [('agent-big', 'stopped'), ('agent-small', 'stopping')])]
    assert _on_disk(proc) == [('agent-big', 'stopped'), ('agent-small', 'stopped')]


class FailingStore(gstate.StateStore):
    """A store whose saves fail from the `fail_from`-th on (1: the first), as on a full or read-only disk."""

    def __init__(self, path, fail_from):
        super().__init__(path)
        self.saves = 0
        self.fail_from = fail_from

    def save(self, state):
        self.saves += 1
        if self.saves >= self.fail_from:
            raise gstate.StateWriteError(errno.ENOSPC, 'cannot write the state file %s: No space left on device' % self.path)
        super().save(state)


def test_a_record_that_cannot_be_written_means_no_stop(proc):
    world = World({'a': 100 * MIB}, containers(), base=500 * MIB)
    engine = make_guard(world, proc)
    engine.store = FailingStore(engine.store.path, fail_from=1)
    result = engine.run()
    assert world.calls == [('unload', 'a')]  # the model went; no container was stopped
    assert result['failed'] and result['changed']
    assert result['msg'] == ('cannot write the state file %s: No space left on device (at recording the stop of agent-big); '
                             'agent-big was not stopped. Done in this pass: unloaded model a' % engine.store.path)
    assert [a['action'] for a in result['actions']] == ['unload'] and result['stopped_by_guard'] == []


def test_a_failed_write_after_the_stop_keeps_the_stopping_record(proc):
    world = World({}, containers(), base=500 * MIB)
    engine = make_guard(world, proc)
    engine.store = FailingStore(engine.store.path, fail_from=2)
    result = engine.run()
    assert world.calls == [('stop', 'agent-big')]  # and nothing after the failed write
    assert result['failed'] and 'Done in this pass: stopped container agent-big (tier 3)' in result['msg']
    assert "its record is kept as 'stopping'" in result['msg']
    assert _on_disk(proc) == [('agent-big', 'stopping')]
    # the next pass, able to write again, still knows it stopped agent-big
    world.base = 0
    assert [r['name'] for r in make_guard(world, proc).run()['stopped_by_guard']] == ['agent-big']


def test_a_cgroup_that_vanishes_mid_pass_fails_clearly_and_keeps_the_record(proc):
    world = World({}, containers(), base=500 * MIB)
    engine = make_guard(world, proc)
    real_read = engine.readings.cgroups.read_group

    def read_group(path):
        if world.calls:  # gone once the first container stopped
            raise _cgroups.CgroupError('cannot read /sys/fs/cgroup/memory/sutazai/memory.usage_in_bytes: No such file or directory')
        return real_read(path)

    engine.readings.cgroups.read_group = read_group
    result = engine.run()
    assert world.calls == [('stop', 'agent-big')]
    assert result['failed'] and result['msg'] == (
        'guard pass failed: CgroupError: cannot read /sys/fs/cgroup/memory/sutazai/memory.usage_in_bytes: No such file or directory. '
        'Done in this pass: stopped container agent-big (tier 3)')
    assert [a['container'] for a in result['actions']] == ['agent-big']
    assert _on_disk(proc) == [('agent-big', 'stopped')]


def test_a_docker_error_mid_pass_fails_and_lists_what_was_done(proc):
    world = World({}, containers(), base=500 * MIB)
    engine = make_guard(world, proc)
    real_stop = engine.actions.docker.api.stop

    def stop(cid, timeout=None):
        if world.containers[cid]['name'] == 'agent-big':
            raise RuntimeError('500 Server Error: Internal Server Error ("cannot stop container: permission denied")')
        real_stop(cid, timeout)

    engine.actions.docker.api.stop = stop
    result = engine.run()
    # the next candidate is still stopped: one container that will not stop must not block relief
    assert world.calls == [('stop', 'agent-small'), ('stop', 'qdrant')]
    assert result['failed'] and result['msg'].startswith('stop agent-big failed: 500 Server Error')
    assert result['msg'].endswith('Done in this pass: stopped container agent-small (tier 3), stopped container qdrant (tier 2)')
    # agent-big's record stays as 'stopping' (it may have stopped all the same); the next pass drops it as it runs
    assert _on_disk(proc) == [('agent-big', 'stopping'), ('agent-small', 'stopped'), ('qdrant', 'stopped')]
    world.base = 0
    assert [r['name'] for r in make_guard(world, proc).run()['stopped_by_guard']] == ['agent-small', 'qdrant']


def test_an_unwritable_state_directory_fails_before_anything_is_done(proc):
    world = World({'a': 100 * MIB}, containers(), base=500 * MIB)
    (proc / 'blocker').write_text('')
    engine = make_guard(world, proc)
    engine.store = gstate.StateStore(str(proc / 'blocker' / 'guard.json'))
    result = engine.run()
    assert world.calls == [] and result['failed'] and not result['changed']
    assert result['msg'].startswith('cannot open the lock file %s/blocker/guard.json.lock' % proc)
    assert result['msg'].endswith('Nothing was done in this pass')


# Two real processes run a pass at the same time on one state file.

def _concurrent_pass(name, state_file, proc_root, events, out):
    """One process: its own tier-3 container, a shared state file. 'A' lingers in its first reading until B has
    loaded the state file (or 2 s went by); 'B' starts once A is inside its pass."""
    world = World({}, {'c-' + name: {'name': 'agent-' + name, 'tier': 3, 'usage': 500 * MIB, 'running': True}}, base=500 * MIB)
    engine = make_guard(world, proc_root)
    engine.store = gstate.StateStore(state_file)
    if name == 'A':
        real_read = engine.readings.cgroups.read_group
        first = []

        def read_group(path):
            if not first:
                first.append(True)
                events['a_inside'].set()
                events['b_loaded'].wait(2.0)
            return real_read(path)

        engine.readings.cgroups.read_group = read_group
    else:
        events['a_inside'].wait(30)
        real_load = engine.store.load

        def load(**kwargs):
            state = real_load(**kwargs)
            events['b_loaded'].set()
            return state

        engine.store.load = load
    result = engine.run()
    out.put((name, bool(result.get('failed')), result.get('msg'), world.calls))


def test_two_concurrent_passes_lose_and_duplicate_no_record(proc):
    context = multiprocessing.get_context('fork')
    events = {'a_inside': context.Event(), 'b_loaded': context.Event()}
    out = context.Queue()
    state_file = str(proc / 'state' / 'guard.json')
    workers = [context.Process(target=_concurrent_pass, args=(name, state_file, proc, events, out)) for name in ('A', 'B')]
    for worker in workers:
        worker.start()
    try:
        results = sorted(out.get(timeout=60) for _worker in workers)
    finally:
        for worker in workers:
            worker.join(timeout=60)
    assert [(name, failed, calls) for name, failed, _msg, calls in results] == [
        ('A', False, [('stop', 'agent-A')]), ('B', False, [('stop', 'agent-B')])]
    assert sorted(_on_disk(proc)) == [('agent-A', 'stopped'), ('agent-B', 'stopped')]


# PSI and the models' order come from what the kernel and the server say.

def test_a_psi_stall_raises_ok_to_soft_and_unloads_one_model_per_pass(proc):
    stall = 'some avg10=40.00 avg60=20.00 avg300=5.00 total=1\nfull avg10=25.00 avg60=10.00 avg300=2.00 total=1\n'
    (proc / 'proc' / 'pressure' / 'memory').write_text(stall)
    world = World({'a': 50 * MIB, 'b': 50 * MIB}, containers(), base=0)  # 680 MiB of 1024: 66 %, below soft
    result = make_guard(world, proc).run()
    assert result['pressure_before'] < 80 and result['level'] == 'soft' and result['psi_stalled'] is True
    assert world.calls == [('unload', 'a')]
    assert make_guard(world, proc).run()['actions'][0]['model'] == 'b'
    assert world.calls == [('unload', 'a'), ('unload', 'b')]
    # and never a container for a stall alone
    assert make_guard(world, proc).run()['actions'] == []
    # psi_full 30: the same stall is below it
    world.models['c'] = 50 * MIB
    assert make_guard(world, proc, psi_full=30).run()['level'] == 'ok'


def test_models_are_unloaded_in_the_servers_expiry_order(proc):
    # both expire more than a default keep_alive (300 s) ahead: the old estimate gave both 0 s idle and fell back to the name
    world = World({'alpha': 120 * MIB, 'beta': 120 * MIB}, {}, base=680 * MIB)  # 920 MiB: 89.8 %; one unload (78.1 %) is enough at soft
    engine = make_guard(world, proc, soft=80, hard=99)
    expiry = {'alpha': NOW + 3000, 'beta': NOW + 1000}
    engine.readings.ollama.ps = lambda: [{'name': n, 'size': s, 'expires_at': _rfc3339(expiry[n])} for n, s in world.models.items()]
    result = engine.run(level='soft')
    assert world.calls == [('unload', 'beta')]
    assert {m['name']: (m['expires_in'], m['idle_seconds']) for m in result['snapshot']['models']} == {
        'alpha': (pytest.approx(3000.0), None), 'beta': (pytest.approx(1000.0), None)}
