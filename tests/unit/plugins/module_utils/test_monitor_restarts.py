"""The monitor's restart policy, driven by engine event sequences on a fake clock, and its history store."""

import json
import os

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _monitor_restarts as mr

CID = 'c' * 64


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def event(action, when, exit_code=None, cid=CID, name='app'):
    attrs = {'name': name}
    if exit_code is not None:
        attrs['exitCode'] = str(exit_code)
    return {'Type': 'container', 'Action': action, 'Actor': {'ID': cid, 'Attributes': attrs}, 'time': int(when),
            'timeNano': int(when * 1e9)}


@pytest.fixture(name='clock')
def fixture_clock():
    return Clock()


@pytest.fixture(name='store')
def fixture_store(tmp_path):
    return mr.RestartStore(str(tmp_path / 'restarts.json'))


def make_policy(store, clock, **kwargs):
    kwargs.setdefault('guard_stopped', set)
    return mr.RestartPolicy(store, clock=clock, **kwargs)


# (case, events as (action, offset seconds, exit code), expected decision, expected reason, restart scheduled)
DEATHS = [
    ('kill -9 of the process', [('die', 0, 137)], 'restart_scheduled', 'crash', True),
    ('crash with an error', [('die', 0, 1)], 'restart_scheduled', 'crash', True),
    ('docker stop', [('kill', 0, None), ('die', 2, 0), ('stop', 2, None)], 'not_restarted', 'operator_stop', False),
    ('docker stop past its timeout', [('kill', 0, None), ('kill', 10, None), ('die', 10, 137)], 'not_restarted', 'operator_stop', False),
    ('docker kill', [('kill', 0, None), ('die', 0, 137)], 'not_restarted', 'operator_stop', False),
    ('exit 0', [('die', 0, 0)], 'not_restarted', 'exited_cleanly', False),
    ('OOM event: pressure unless its own limit is known', [('oom', 0, None), ('die', 0, 137)], 'restart_scheduled', 'oom_pressure', True),
    ('OOM event then an exit that is not SIGKILL', [('oom', 0, None), ('die', 0, 1)], 'restart_scheduled', 'crash', True),
    ('a stop long ago does not explain a death', [('kill', 0, None), ('start', 1, None), ('die', 700, 137)],
     'restart_scheduled', 'crash', True),
    # Docker sends kill, die, stop: the stop event that follows a finished death must not explain the next one
    ('a crash soon after docker stop and docker start', [('kill', 0, None), ('die', 1, 0), ('stop', 1, None), ('start', 5, None),
                                                         ('die', 60, 137)], 'restart_scheduled', 'crash', True),
    ('a crash soon after docker restart', [('kill', 0, None), ('die', 1, 143), ('stop', 1, None), ('start', 1, None),
                                           ('restart', 1, None), ('die', 30, 137)], 'restart_scheduled', 'crash', True),
]


@pytest.mark.parametrize('case, events, decision, reason, scheduled', DEATHS, ids=[d[0] for d in DEATHS])
def test_death_classification(store, clock, case, events, decision, reason, scheduled):
    policy = make_policy(store, clock)
    results = [policy.on_event(event(action, clock.now + offset, code)) for action, offset, code in events]
    last = [r for r in results if r][-1]
    assert (last['decision'], last['reason']) == (decision, reason), case
    assert ('app' in policy.pending) is scheduled


def test_guard_stopped_container_is_not_restarted(store, clock):
    policy = make_policy(store, clock, guard_stopped=lambda: {CID})
    result = policy.on_event(event('die', clock.now, 137))
    assert result['reason'] == 'guard_stop'
    assert not policy.pending


def test_guard_stopped_by_name_too(store, clock):
    policy = make_policy(store, clock, guard_stopped=lambda: {'app'})
    policy.on_event(event('kill', clock.now))
    assert policy.on_event(event('die', clock.now + 1, 0))['reason'] == 'guard_stop'


def test_exit_137_near_its_own_limit_is_an_own_limit_oom(store, clock):
    policy = make_policy(store, clock)
    policy.note_memory(CID, 95 * 2 ** 20, 100 * 2 ** 20)
    result = policy.on_event(event('die', clock.now, 137))
    assert result['reason'] == 'oom_own_limit'
    assert 'limit is too small' in result['why']


def test_exit_137_when_the_stack_oom_counter_rose_is_a_pressure_oom(store, clock):
    policy = make_policy(store, clock)
    policy.note_memory(CID, 10 * 2 ** 20, 100 * 2 ** 20)
    policy.note_stack_oom_kills(0, clock.now - 5)
    policy.note_stack_oom_kills(1, clock.now)
    assert policy.on_event(event('die', clock.now + 1, 137))['reason'] == 'oom_pressure'


def test_oom_event_near_its_own_limit_is_an_own_limit_oom(store, clock):
    policy = make_policy(store, clock)
    policy.note_memory(CID, 63 * 2 ** 20, 64 * 2 ** 20)
    policy.on_event(event('oom', clock.now))
    assert policy.on_event(event('die', clock.now, 137))['reason'] == 'oom_own_limit'


@pytest.mark.parametrize('said, reason', [('own_limit', 'oom_own_limit'), ('pressure', 'oom_pressure'), (None, 'crash')])
def test_the_kernel_log_detector_decides_first(store, clock, said, reason):
    policy = make_policy(store, clock, oom_detector=lambda *args: said)
    policy.note_memory(CID, 10 * 2 ** 20, 100 * 2 ** 20)
    assert policy.on_event(event('die', clock.now, 137))['reason'] == reason


def test_an_external_oom_detector_is_asked(store, clock):
    asked = []

    def detector(cid, name, code, when):
        asked.append((cid, name, code))
        return 'pressure'
    policy = make_policy(store, clock, oom_detector=detector)
    assert policy.on_event(event('die', clock.now, 137))['reason'] == 'oom_pressure'
    assert asked == [(CID, 'app', 137)]


def test_backoff_then_restart(store, clock):
    policy = make_policy(store, clock, backoff=1.0)
    policy.on_event(event('die', clock.now, 137))
    assert policy.due(clock.now + 0.5) == []
    assert policy.next_due(clock.now + 0.5) == pytest.approx(0.5)
    (decision,) = policy.due(clock.now + 1.0)
    assert (decision['action'], decision['attempt']) == ('start', 1)


def test_oom_restart_waits_for_the_guard_to_make_room(store, clock):
    policy = make_policy(store, clock)
    policy.on_event(event('oom', clock.now))
    policy.on_event(event('die', clock.now, 137))
    clock.now += 5
    (wait,) = policy.due(guard_level='hard')
    assert wait['action'] == 'wait'
    assert policy.due(guard_level='soft') == []  # said once
    (decision,) = policy.due(guard_level='ok')
    assert decision['action'] == 'start'


def crash_loop(policy, clock, restarts):
    """Let the container die right after each start; return the actions taken and the seconds between death and restart."""
    actions, waits = [], []
    for _restart in range(restarts):
        policy.on_event(event('die', clock.now, 3))
        died = clock.now
        while True:
            decisions = policy.due()
            if decisions:
                break
            clock.now += 0.25
        (decision,) = decisions
        actions.append(decision['action'])
        if decision['action'] == 'give_up':
            policy.begin(decision)
            break
        waits.append(clock.now - died)
        policy.begin(decision)
        policy.on_event(event('start', clock.now))
        clock.now += 0.1
    return actions, waits


def test_crash_loop_gets_three_restarts_with_backoff_then_gives_up(store, clock):
    policy = make_policy(store, clock, limit=3, backoff=1.0)
    actions, waits = crash_loop(policy, clock, 5)
    assert actions == ['start', 'start', 'start', 'give_up']
    assert waits == [1.0, 2.0, 4.0]
    assert policy.given_up('app')
    assert policy.status()['app']['remaining'] == 0
    # a further death is not restarted, nothing more is decided
    policy.on_event(event('die', clock.now + 1, 3))
    clock.now += 100
    assert policy.due() == []


def test_budget_is_a_rolling_window(store, clock):
    policy = make_policy(store, clock, limit=3, window=3600.0)
    crash_loop(policy, clock, 3)
    assert policy.remaining('app') == 0
    clock.now += 3600
    assert policy.remaining('app') == 3


def test_an_operator_start_after_give_up_allows_restarts_again(store, clock):
    policy = make_policy(store, clock, limit=1)
    actions = crash_loop(policy, clock, 2)[0]
    assert actions == ['start', 'give_up']
    result = policy.on_event(event('start', clock.now + 10))
    assert result['decision'] == 'resumed'
    assert not policy.given_up('app')


def test_own_restart_events_are_ignored(store, clock):
    policy = make_policy(store, clock, unhealthy_for=30)
    policy.on_health('app', CID, False, 'GET /health: 503', clock.now)
    clock.now += 30
    policy.on_health('app', CID, False, 'GET /health: 503', clock.now)
    (decision,) = policy.due()
    assert (decision['action'], decision['reason']) == ('restart', 'unhealthy')
    policy.begin(decision)
    for action, code in (('kill', None), ('die', 143), ('stop', None), ('start', None)):
        assert policy.on_event(event(action, clock.now + 1, code)) is None
    assert not policy.pending
    # after our start, a death is a failure again
    assert policy.on_event(event('die', clock.now + 5, 1))['decision'] == 'restart_scheduled'


@pytest.mark.parametrize('seen, restarted', [
    ([(0, False), (29, False)], False),
    ([(0, False), (30, False)], True),
    ([(0, False), (20, True), (40, False), (69, False)], False),
    ([(0, False), (20, True), (40, False), (70, False)], True),
], ids=['29s-not-yet', '30s', 'healthy-in-between-resets', 'unhealthy-again-30s'])
def test_unhealthy_for(store, clock, seen, restarted):
    policy = make_policy(store, clock, unhealthy_for=30)
    for offset, healthy in seen:
        policy.on_health('app', CID, healthy, 'probe', clock.now + offset)
    clock.now += seen[-1][0]
    assert bool(policy.due()) is restarted


def test_counts_survive_a_new_policy_on_the_same_file(store, clock):
    policy = make_policy(store, clock, limit=3)
    crash_loop(policy, clock, 4)
    again = make_policy(mr.RestartStore(store.path), clock, limit=3)
    status = again.status()['app']
    assert status == {'restarts_in_window': 3, 'remaining': 0, 'given_up': True, 'given_up_reason': 'crash',
                      'totals': {'crash': 3}, 'by_docker_in_window': 0}


def test_the_restart_is_on_disk_before_it_is_carried_out(store, clock):
    policy = make_policy(store, clock)
    policy.on_event(event('die', clock.now, 1))
    clock.now += 1
    (decision,) = policy.due()
    policy.begin(decision)
    with open(store.path, encoding='utf-8') as handle:
        assert len(json.load(handle)['containers']['app']['restarts']) == 1


def test_a_damaged_file_gives_a_warning_and_the_backup(store, clock):
    policy = make_policy(store, clock)
    policy.on_event(event('die', clock.now, 1))
    clock.now += 1
    policy.begin(policy.due()[0])
    policy.count_guard_action('stop')  # second save: the first version becomes the backup
    with open(store.path, 'w', encoding='utf-8') as handle:
        handle.write('{"containers": {"app": ')
    again = make_policy(mr.RestartStore(store.path), clock)
    assert any('could not be read' in w for w in again.warnings)
    assert any('backup' in w for w in again.warnings)
    assert again.status()['app']['restarts_in_window'] == 1
    assert [p for p in os.listdir(os.path.dirname(store.path)) if '.corrupt-' in p]


def test_a_damaged_file_without_backup_starts_from_zero(store, clock):
    with open(store.path, 'w', encoding='utf-8') as handle:
        handle.write('not json')
    policy = make_policy(store, clock)
    assert policy.status() == {}
    assert any('start from zero' in w for w in policy.warnings)


def test_failed_start_stays_counted_and_is_retried(store, clock):
    policy = make_policy(store, clock, limit=3)
    policy.on_event(event('die', clock.now, 1))
    clock.now += 1
    decision = policy.due()[0]
    policy.begin(decision)
    policy.failed(decision, RuntimeError('engine busy'))
    assert policy.remaining('app') == 2
    clock.now += 2
    (again,) = policy.due()
    assert again['attempt'] == 2 and 'engine busy' in again['detail']


def test_failed_start_of_a_removed_container_is_dropped(store, clock):
    policy = make_policy(store, clock)
    policy.on_event(event('die', clock.now, 1))
    clock.now += 1
    decision = policy.due()[0]
    policy.begin(decision)
    policy.failed(decision, RuntimeError('No such container'), gone=True)
    assert not policy.pending


def test_a_removed_container_that_was_given_up_is_no_longer_reported(store, clock):
    policy = make_policy(store, clock, limit=1)
    assert crash_loop(policy, clock, 2)[0] == ['start', 'give_up']
    assert policy.given_up('app')
    policy.on_event(event('destroy', clock.now + 1))
    assert not policy.given_up('app')
    # a container recreated under the same name (a redeploy) gets the whole budget
    policy.on_event(event('start', clock.now + 2, cid='d' * 64))
    assert policy.remaining('app', clock.now + 2) == 1


def test_destroy_forgets_a_pending_restart(store, clock):
    policy = make_policy(store, clock)
    policy.on_event(event('die', clock.now, 1))
    policy.on_event(event('destroy', clock.now + 0.5))
    clock.now += 5
    assert policy.due() == []


class LockedStore:
    """A store whose file is locked by another pass for longer than the wait allowed."""

    def __init__(self, inner):
        self.inner = inner
        self.warnings = []
        self.locked = False

    def load(self):
        return self.inner.load()

    def save(self, history):
        if self.locked:
            raise RuntimeError('the state file is locked by another guard pass (pid 1) and was not released within 10 seconds')
        self.inner.save(history)


def test_a_restart_whose_record_cannot_be_written_is_not_made_and_stays_pending(store, clock):
    locked = LockedStore(store)
    policy = make_policy(locked, clock)
    policy.on_event(event('die', clock.now, 1))
    clock.now += 1
    (decision,) = policy.due()
    locked.locked = True
    with pytest.raises(RuntimeError):
        policy.begin(decision)
    assert policy.remaining('app') == 3 and CID not in policy.ours
    locked.locked = False
    (again,) = policy.due()
    assert again['action'] == 'start'
    policy.begin(again)
    assert policy.remaining('app') == 2


def test_docker_made_restarts_share_the_budget_and_the_next_failure_gives_up(store, clock):
    started_by = {'engine': True}
    policy = make_policy(store, clock, limit=3, engine_started=lambda cid: started_by['engine'])
    policy.on_event(event('die', clock.now, 1))
    clock.now += 1
    policy.begin(policy.due()[0])  # the monitor's own restart (the container had policy `no` then)
    policy.on_event(event('start', clock.now))  # ours
    for _failure in range(2):
        clock.now += 5
        policy.on_event(event('die', clock.now, 1))
        decision = policy.on_event(event('start', clock.now + 0.2))  # Docker's restart policy
        assert (decision['decision'], decision['by']) == ('restarted', 'docker')
    assert policy.remaining('app') == 0
    assert [r[2] for r in policy.recent('app')] == ['monitor', 'docker', 'docker']
    clock.now += 5
    policy.on_event(event('die', clock.now, 1))
    (give_up,) = policy.due()
    assert give_up['action'] == 'give_up' and give_up['restarts_in_window'] == 3
    give_up['stop'] = True
    policy.begin(give_up)
    for action, code in (('kill', None), ('die', 143), ('stop', None)):
        assert policy.on_event(event(action, clock.now + 0.1, code)) is None  # our stop's events
    started_by['engine'] = False
    assert policy.on_event(event('start', clock.now + 60))['decision'] == 'resumed'  # an operator's start
    assert policy.remaining('app') == 3 and not policy.given_up('app')
