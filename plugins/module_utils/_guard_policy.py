# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory guard's policy: thresholds, levels and the next relief or restore step.

PRIVATE to the collection: no compatibility promise. Pure functions over snapshots
(plain dicts), no I/O and no Ansible import: the memory_guard module and the monitor
daemon share it, and unit tests drive it with recorded snapshots.

A snapshot is a dict:
  time         seconds since the epoch
  pressure     percent, the highest of the host's and the stack cgroup's
  host         {mem_total, mem_available, swap_total, swap_free, pressure, psi_some_avg10, psi_full_avg10}
  stack        None or {path, usage, limit, oom_kills, pressure}
  containers   [{id, name, tier (1/2/3 or None), usage, running, oom_killed, restart_count, project}]: the containers
               inside the guard's scope (all tiered containers when it has none)
  outside_scope  ids of the tiered containers outside the scope (never stopped, their records never restored)
  models       [{name, size, expires_at (the server's text), expires_in (seconds, None when unknown or pinned),
                 idle_seconds (None unless the keep_alive in force is known), pinned}]

PSI: a sustained memory stall (the `full` avg10 of /proc/pressure/memory at or above
`psi_full` percent: for 10 s on average that share of the time every task waited for memory)
raises the level to at least soft, even when MemAvailable looks fine.
"""

MODES = {
    'conservative': (75.0, 85.0),
    'balanced': (80.0, 90.0),
    'aggressive': (85.0, 95.0),
}
DEFAULT_MODE = 'balanced'
DEFAULT_RESTORE_AFTER = 300.0
DEFAULT_PSI_FULL = 10.0
LEVELS = ('ok', 'soft', 'hard', 'emergency')
# Containers of these tiers may be stopped, in this order; tier 1 never is.
STOPPABLE_TIERS = (3, 2)


class GuardConfigError(ValueError):
    """Options of the guard that cannot work together; the message names the values."""


class Thresholds:
    """soft / hard / restore_below in percent of memory, restore_after in seconds, psi_full in percent of time (0: off)."""

    def __init__(self, soft, hard, restore_below, restore_after, psi_full=DEFAULT_PSI_FULL):
        self.soft = soft
        self.hard = hard
        self.restore_below = restore_below
        self.restore_after = restore_after
        self.psi_full = psi_full

    def as_dict(self):
        """The thresholds as a plain dict (for results and logs)."""
        return {'soft': self.soft, 'hard': self.hard, 'restore_below': self.restore_below, 'restore_after': self.restore_after,
                'psi_full': self.psi_full}


def _percent(name, value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GuardConfigError('%s must be a number of percent between 1 and 99, got %r' % (name, value)) from None
    if not 1 <= number <= 99:
        raise GuardConfigError('%s must be between 1 and 99 percent, got %s' % (name, value))
    return number


def resolve_thresholds(mode=None, soft=None, hard=None, restore_below=None, restore_after=None, psi_full=None):
    """Thresholds from a mode (conservative 75/85, balanced 80/90, aggressive 85/95) and explicit overrides.

    Explicit soft/hard win over the mode. restore_below defaults to soft - 10, restore_after to 300 s,
    psi_full to 10 (percent; 0 turns the PSI rule off).
    Raises GuardConfigError for an unknown mode, a value outside 1-99, soft >= hard, restore_below >= soft
    or psi_full outside 0-100.
    """
    if mode is None:
        mode = DEFAULT_MODE
    if mode not in MODES:
        raise GuardConfigError('mode must be one of %s, got %r' % (', '.join(sorted(MODES)), mode))
    mode_soft, mode_hard = MODES[mode]
    soft = _percent('soft', soft) if soft is not None else mode_soft
    hard = _percent('hard', hard) if hard is not None else mode_hard
    if soft >= hard:
        raise GuardConfigError('soft (%s%%) must be below hard (%s%%)' % (soft, hard))
    if restore_below is None:
        restore_below = max(1.0, soft - 10.0)
    else:
        restore_below = _percent('restore_below', restore_below)
    if restore_below >= soft:
        raise GuardConfigError('restore_below (%s%%) must be below soft (%s%%), or the guard would undo its own relief' % (restore_below, soft))
    if restore_after is None:
        restore_after = DEFAULT_RESTORE_AFTER
    try:
        restore_after = float(restore_after)
    except (TypeError, ValueError):
        raise GuardConfigError('restore_after must be a number of seconds, got %r' % (restore_after,)) from None
    if restore_after < 0:
        raise GuardConfigError('restore_after must not be negative, got %s' % restore_after)
    if psi_full is None:
        psi_full = DEFAULT_PSI_FULL
    try:
        psi_full = float(psi_full)
    except (TypeError, ValueError):
        raise GuardConfigError('psi_full must be a percent between 0 and 100, got %r' % (psi_full,)) from None
    if not 0 <= psi_full <= 100:
        raise GuardConfigError('psi_full must be between 0 (off) and 100 percent, got %s' % psi_full)
    return Thresholds(soft, hard, restore_below, restore_after, psi_full)


def psi_stalled(host, thresholds):
    """True when the host's memory PSI `full` avg10 is at or above thresholds.psi_full (never when psi_full is 0 or no PSI)."""
    full = (host or {}).get('psi_full_avg10')
    limit = getattr(thresholds, 'psi_full', DEFAULT_PSI_FULL)
    return bool(limit) and full is not None and full >= limit


def level_for(pressure, thresholds, psi_full_avg10=None):
    """'ok', 'soft' or 'hard' for a pressure in percent; a PSI `full` avg10 at or above psi_full makes 'ok' 'soft'."""
    if pressure >= thresholds.hard:
        return 'hard'
    if pressure >= thresholds.soft:
        return 'soft'
    if psi_stalled({'psi_full_avg10': psi_full_avg10}, thresholds):
        return 'soft'
    return 'ok'


def model_order(models):
    """Models in unload order: the one the server will unload first (earliest expires_at) first.

    Ollama reports only when a model expires (last use + the keep_alive its last request asked for),
    so that is the order used; snapshots with only idle_seconds go longest idle first. Pinned
    (kept forever) models and models with neither figure go last.
    """
    def key(model):
        expires = model.get('expires_in')
        idle = model.get('idle_seconds')
        if expires is not None:
            rank = (0, float(expires))
        elif idle is not None:
            rank = (0, -float(idle))
        else:
            rank = (1, 0.0)
        return (bool(model.get('pinned')),) + rank + (model.get('name', ''),)
    return sorted(models, key=key)


def stop_candidates(containers, tiers=STOPPABLE_TIERS):
    """Running containers the guard may stop: tier 3 first, then tier 2, largest first within a tier.

    Tier 1 and containers without a tier label are never candidates.
    """
    result = []
    for tier in tiers:
        same = [c for c in containers if c.get('running') and c.get('tier') == tier]
        result.extend(sorted(same, key=lambda c: (-(c.get('usage') or 0), c.get('name', ''))))
    return result


def next_relief(snapshot, thresholds, escalation, stall_relief=True):
    """The next relief step for `escalation` ('soft', 'hard' or 'emergency'), or None when done.

    soft: unload models (earliest to expire first) while pressure is at or above soft; below soft, while
          the host's PSI shows a stall (psi_stalled) and `stall_relief`, one model (the step has
          reason 'psi': the caller allows one such step per pass, since avg10 cannot show its effect sooner).
    hard: unload every model (all of them, whatever pressure they leave), then stop tier 3, then
          tier 2 containers, one at a time, while pressure is at or above soft.
    emergency: unload every model and stop every tier 3 and tier 2 container, whatever the readings.
    """
    models = model_order(snapshot.get('models') or [])
    below_soft = snapshot['pressure'] < thresholds.soft
    if escalation == 'emergency':
        if models:
            return {'action': 'unload', 'model': models[0]['name'], 'size': models[0].get('size', 0)}
        candidates = stop_candidates(snapshot.get('containers') or [])
        if candidates:
            return _stop(candidates[0])
        return None
    if models and (escalation == 'hard' or not below_soft):
        # at hard every model goes, even once pressure is below soft: the next load would bring it straight back
        return {'action': 'unload', 'model': models[0]['name'], 'size': models[0].get('size', 0)}
    if models and stall_relief and psi_stalled(snapshot.get('host'), thresholds):
        return {'action': 'unload', 'model': models[0]['name'], 'size': models[0].get('size', 0), 'reason': 'psi'}
    if below_soft:
        return None
    if escalation == 'hard':
        candidates = stop_candidates(snapshot.get('containers') or [])
        if candidates:
            return _stop(candidates[0])
    return None


def _stop(container):
    action = {'action': 'stop', 'container': container['name'], 'id': container['id'], 'tier': container.get('tier'),
              'size': container.get('usage') or 0}
    if container.get('project'):
        action['project'] = container['project']
    return action


def next_restore(snapshot, thresholds, stopped, below_since, now):
    """Decide about restoring. Returns (action or None, new below_since).

    Restore starts only after pressure has stayed below restore_below for restore_after
    seconds, and then the most recently stopped container first, one per call.
    """
    if snapshot['pressure'] >= thresholds.restore_below:
        return None, None
    if below_since is None:
        below_since = now
    if not stopped or now - below_since < thresholds.restore_after:
        return None, below_since
    record = stopped[-1]
    return {'action': 'start', 'container': record['name'], 'id': record['id'], 'tier': record.get('tier')}, below_since


def simulate(snapshot, action):
    """The snapshot expected after `action` (for check mode): its memory freed from host and stack."""
    freed = action.get('size') or 0
    new = dict(snapshot)
    host = dict(snapshot['host'])
    total = host.get('mem_total') or 1
    host['mem_available'] = min(total, host.get('mem_available', 0) + freed)
    host['pressure'] = 100.0 * (1 - host['mem_available'] / float(total))
    new['host'] = host
    stack = snapshot.get('stack')
    if stack and stack.get('limit'):
        stack = dict(stack)
        stack['usage'] = max(0, stack.get('usage', 0) - freed)
        stack['pressure'] = 100.0 * stack['usage'] / float(stack['limit'])
        new['stack'] = stack
    if action['action'] == 'unload':
        new['models'] = [m for m in snapshot.get('models') or [] if m['name'] != action['model']]
    elif action['action'] == 'stop':
        new['containers'] = [dict(c, running=False) if c['id'] == action['id'] else c for c in snapshot.get('containers') or []]
    new['pressure'] = overall_pressure(new['host'], new.get('stack'))
    return new


def overall_pressure(host, stack):
    """The highest of host pressure and stack cgroup pressure, in percent."""
    pressure = host.get('pressure', 0.0)
    if stack and stack.get('pressure') is not None:
        pressure = max(pressure, stack['pressure'])
    return round(pressure, 2)
