"""Table-driven tests of the memory guard's policy over recorded snapshots."""

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _guard_policy as policy

GIB = 1024 ** 3
MIB = 1024 ** 2


def snap(pressure, models=(), containers=(), stack=None, total=16 * GIB, psi_full=None):
    """A snapshot whose host pressure is `pressure` percent (and PSI full avg10 `psi_full`)."""
    available = int(total * (1 - pressure / 100.0))
    host = {'mem_total': total, 'mem_available': available, 'pressure': pressure, 'psi_some_avg10': psi_full, 'psi_full_avg10': psi_full}
    return {'time': 1000.0, 'host': host, 'stack': stack, 'models': list(models), 'containers': list(containers),
            'pressure': policy.overall_pressure(host, stack)}


def model(name, idle, size=200 * MIB, pinned=False):
    return {'name': name, 'size': size, 'idle_seconds': idle, 'pinned': pinned}


def box(name, tier, usage, running=True):
    return {'id': 'id-' + name, 'name': name, 'tier': tier, 'usage': usage, 'running': running}


@pytest.mark.parametrize('kwargs, expected', [
    ({}, (80, 90, 70, 300)),
    ({'mode': 'conservative'}, (75, 85, 65, 300)),
    ({'mode': 'aggressive'}, (85, 95, 75, 300)),
    ({'mode': 'balanced', 'soft': 70}, (70, 90, 60, 300)),
    ({'soft': 60, 'hard': 70, 'restore_below': 40, 'restore_after': 5}, (60, 70, 40, 5)),
    ({'soft': '82.5', 'hard': 91}, (82.5, 91, 72.5, 300)),
])
def test_resolve_thresholds(kwargs, expected):
    th = policy.resolve_thresholds(**kwargs)
    assert (th.soft, th.hard, th.restore_below, th.restore_after) == expected


def test_psi_full_threshold():
    assert policy.resolve_thresholds().psi_full == 10.0
    assert policy.resolve_thresholds(psi_full=0).psi_full == 0.0
    assert policy.resolve_thresholds(psi_full='25').as_dict()['psi_full'] == 25.0


@pytest.mark.parametrize('kwargs, message', [
    ({'psi_full': 101}, 'psi_full must be between 0 (off) and 100 percent, got 101'),
    ({'psi_full': -1}, 'psi_full must be between 0 (off) and 100 percent, got -1'),
    ({'psi_full': 'lots'}, "psi_full must be a percent between 0 and 100, got 'lots'"),
    ({'mode': 'yolo'}, "mode must be one of aggressive, balanced, conservative, got 'yolo'"),
    ({'soft': 90, 'hard': 90}, 'soft (90.0%) must be below hard (90.0%)'),
    ({'soft': 95, 'hard': 85}, 'soft (95.0%) must be below hard (85.0%)'),
    ({'soft': 0}, 'soft must be between 1 and 99 percent, got 0'),
    ({'hard': 100}, 'hard must be between 1 and 99 percent, got 100'),
    ({'soft': 'high'}, "soft must be a number of percent between 1 and 99, got 'high'"),
    ({'restore_below': 85}, 'restore_below (85.0%) must be below soft (80.0%)'),
    ({'restore_after': -1}, 'restore_after must not be negative, got -1.0'),
])
def test_resolve_thresholds_refuses(kwargs, message):
    with pytest.raises(policy.GuardConfigError) as err:
        policy.resolve_thresholds(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize('pressure, level', [(0, 'ok'), (79.99, 'ok'), (80, 'soft'), (89.9, 'soft'), (90, 'hard'), (99, 'hard')])
def test_level_for(pressure, level):
    assert policy.level_for(pressure, policy.resolve_thresholds()) == level


@pytest.mark.parametrize('pressure, psi_full, threshold, level', [
    (30, None, 10, 'ok'),      # no PSI on this kernel: MemAvailable decides
    (30, 0.0, 10, 'ok'),
    (30, 9.99, 10, 'ok'),      # just below the threshold
    (30, 10.0, 10, 'soft'),    # a stall with plenty of MemAvailable: at least soft
    (30, 55.0, 10, 'soft'),    # never more than soft from PSI alone
    (30, 55.0, 60, 'ok'),      # a higher psi_full
    (30, 55.0, 0, 'ok'),       # psi_full 0: the rule is off
    (85, 55.0, 10, 'soft'),
    (95, 55.0, 10, 'hard'),    # PSI never lowers a level
    (95, None, 10, 'hard'),
])
def test_level_with_psi(pressure, psi_full, threshold, level):
    th = policy.resolve_thresholds(psi_full=threshold)
    assert policy.level_for(pressure, th, psi_full) == level
    stalled = psi_full is not None and threshold > 0 and psi_full >= threshold
    assert policy.psi_stalled(snap(pressure, psi_full=psi_full)['host'], th) is stalled


@pytest.mark.parametrize('pressure, psi_full, models, escalation, stall_relief, expected', [
    (50, 25.0, [model('busy', 3), model('idle', 400)], 'soft', True, ('unload', 'idle', 'psi')),  # a stall unloads a model
    (50, 25.0, [model('busy', 3)], 'soft', False, None),          # one per pass: the caller says when it had one
    (50, 25.0, [], 'soft', True, None),                           # and never stops a container
    (50, 5.0, [model('busy', 3)], 'soft', True, None),            # no stall, below soft: nothing
    (85, 25.0, [model('busy', 3), model('idle', 400)], 'soft', False, ('unload', 'idle', None)),  # above soft: as before
    (70, 25.0, [], 'hard', True, None),                           # hard below soft with a stall: no container stopped
])
def test_next_relief_under_a_psi_stall(pressure, psi_full, models, escalation, stall_relief, expected):
    boxes = [box('agent', 3, 300 * MIB)]
    action = policy.next_relief(snap(pressure, models, boxes, psi_full=psi_full), TH, escalation, stall_relief=stall_relief)
    if expected is None:
        assert action is None
    else:
        assert (action['action'], action.get('model') or action.get('container'), action.get('reason')) == expected


def expiring(name, expires_in, pinned=False):
    return {'name': name, 'size': 100, 'expires_in': expires_in, 'idle_seconds': None, 'pinned': pinned}


@pytest.mark.parametrize('models, order', [
    # the server will unload the earliest-expiring one first: that order, whatever keep_alive each request chose
    ([expiring('a', 3000), expiring('b', 1000), expiring('c', 2000)], ['b', 'c', 'a']),
    ([expiring('a', 5), expiring('forever', None, pinned=True), expiring('b', 0.5)], ['b', 'a', 'forever']),
    ([expiring('unknown', None), expiring('a', 10)], ['a', 'unknown']),
])
def test_model_order_by_expiry(models, order):
    assert [m['name'] for m in policy.model_order(models)] == order


def test_model_order_longest_idle_first_pinned_last():
    models = [model('busy', 5), model('pinned', 9999, pinned=True), model('old', 600), model('unknown', None), model('mid', 120)]
    assert [m['name'] for m in policy.model_order(models)] == ['old', 'mid', 'busy', 'unknown', 'pinned']


def test_stop_candidates_tier3_then_tier2_largest_first_never_tier1_or_untiered():
    containers = [box('pg', 1, 900 * MIB), box('agent-a', 3, 100 * MIB), box('agent-b', 3, 300 * MIB),
                  box('qdrant', 2, 500 * MIB), box('mystery', None, 2 * GIB), box('stopped', 3, 0, running=False)]
    assert [c['name'] for c in policy.stop_candidates(containers)] == ['agent-b', 'agent-a', 'qdrant']


TH = policy.resolve_thresholds()
MODELS = [model('busy', 3), model('idle', 400)]
BOXES = [box('redis', 1, 50 * MIB), box('agent', 3, 300 * MIB), box('qdrant', 2, 200 * MIB)]


@pytest.mark.parametrize('pressure, models, escalation, expected', [
    (50, MODELS, 'soft', None),                              # below soft: nothing to do
    (85, MODELS, 'soft', ('unload', 'idle')),                # longest idle first
    (85, MODELS[:1], 'soft', ('unload', 'busy')),            # the model in use goes when it is all there is
    (85, [], 'soft', None),                                  # soft never stops containers
    (95, MODELS, 'hard', ('unload', 'idle')),                # hard unloads models first
    (95, [], 'hard', ('stop', 'agent')),                     # then tier 3
    (70, [], 'hard', None),                                  # below soft after relief: done
    (70, MODELS[:1], 'hard', ('unload', 'busy')),            # but hard unloads every model, even below soft
    (70, [], 'soft', None),
    (10, MODELS, 'emergency', ('unload', 'idle')),           # emergency acts whatever the readings
    (10, [], 'emergency', ('stop', 'agent')),
])
def test_next_relief(pressure, models, escalation, expected):
    action = policy.next_relief(snap(pressure, models, BOXES), TH, escalation)
    if expected is None:
        assert action is None
    else:
        assert (action['action'], action.get('model') or action.get('container')) == expected


def test_hard_goes_to_tier2_after_tier3_and_never_tier1():
    boxes = [box('redis', 1, 50 * MIB), box('agent', 3, 300 * MIB, running=False), box('qdrant', 2, 200 * MIB)]
    action = policy.next_relief(snap(95, [], boxes), TH, 'hard')
    assert action['container'] == 'qdrant' and action['tier'] == 2
    only_tier1 = [box('redis', 1, 50 * MIB), box('pg', 1, 900 * MIB)]
    assert policy.next_relief(snap(99, [], only_tier1), TH, 'hard') is None
    assert policy.next_relief(snap(99, [], only_tier1), TH, 'emergency') is None


def test_stack_pressure_counts_against_its_own_limit():
    stack = {'path': '/sutazai', 'usage': 950 * MIB, 'limit': 1024 * MIB, 'pressure': 100.0 * 950 / 1024}
    snapshot = snap(20, MODELS, BOXES, stack=stack)
    assert snapshot['pressure'] == pytest.approx(92.77, abs=0.01)
    assert policy.next_relief(snapshot, TH, policy.level_for(snapshot['pressure'], TH))['model'] == 'idle'


def test_simulate_frees_memory_for_check_mode():
    stack = {'path': '/sutazai', 'usage': 950 * MIB, 'limit': 1024 * MIB, 'pressure': 100.0 * 950 / 1024}
    snapshot = snap(20, MODELS, BOXES, stack=stack)
    after = policy.simulate(snapshot, {'action': 'unload', 'model': 'idle', 'size': 200 * MIB})
    assert [m['name'] for m in after['models']] == ['busy']
    assert after['stack']['usage'] == 750 * MIB
    assert after['pressure'] == pytest.approx(100.0 * 750 / 1024, abs=0.01)
    after = policy.simulate(after, {'action': 'stop', 'id': 'id-agent', 'container': 'agent', 'size': 300 * MIB})
    assert [c['running'] for c in after['containers'] if c['name'] == 'agent'] == [False]


@pytest.mark.parametrize('history, expect_start', [
    ([(75, 0)], False),                      # not below restore_below (70)
    ([(60, 0), (60, 100)], False),           # low, but only for 100 s
    ([(60, 0), (60, 299)], False),
    ([(60, 0), (60, 300)], True),            # low for restore_after
    ([(60, 0), (72, 200), (60, 400)], False),  # a rise resets the clock
    ([(60, 0), (72, 200), (60, 400), (60, 700)], True),
])
def test_restore_hysteresis(history, expect_start):
    stopped = [{'id': 'id-a', 'name': 'first', 'tier': 3}, {'id': 'id-b', 'name': 'second', 'tier': 2}]
    below_since = None
    action = None
    for pressure, now in history:
        action, below_since = policy.next_restore(snap(pressure), TH, stopped, below_since, now)
    assert (action is not None) == expect_start
    if action:
        assert action['container'] == 'second'  # reverse order: the last stopped starts first
