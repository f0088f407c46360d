# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container limits changed in place through the Docker engine's update endpoint.

PRIVATE to the collection: no compatibility promise. The module sutazai.ops.container_limits is a
thin wrapper of `run_task`.

Pure part (unit tests drive it with recorded HostConfig dicts):
  parse_limits      one entry's requested limits -> canonical values, or problems naming each bad value
  current_limits    a container's HostConfig -> the same canonical values
  plan_container    current + requested + usage + host CPUs -> the update body, before/after, problems
  order_plans       the order the updates are sent in (memory decreases first)

Engine I/O (one docker SDK APIClient from _docker.py, so one engine connection for the whole task):
  Engine            info, inspect, list by labels, update, one-shot stats
  read_usage        a container's memory in use: its cgroup files (through _containers.ContainerMemory), else the engine's stats

What the engine (20.10, API 1.41) accepts, tried for real:
- Memory alone is refused on a container without a memory limit, or above its MemorySwap
  ("update the memoryswap at the same time"): Memory always goes with MemorySwap in one call.
- NanoCpus is refused on a container created with CpuQuota or CpuPeriod, even with CpuQuota=0 and
  CpuPeriod=0 in the same call (0 means "unchanged"); a CpuPeriod cannot be cleared (-1 is refused).
  Such containers get their CPU limit as CpuQuota over their CpuPeriod (default 100000 us), which is
  what NanoCpus becomes in the kernel anyway.
- PidsLimit 0 and -1 both mean unlimited (stored as 0); MemoryReservation above Memory is accepted
  (the kernel would ignore it), so it is refused here; BlkioWeight is dropped with a warning when the
  kernel has no block I/O weight, which the read-back after the update catches.
"""

import math

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups
from ansible_collections.sutazai.ops.plugins.module_utils import _containers
from ansible_collections.sutazai.ops.plugins.module_utils import _docker
from ansible_collections.sutazai.ops.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.sutazai.ops.plugins.module_utils._tiers import cpuset_text
from ansible_collections.sutazai.ops.plugins.module_utils._units import SizeError, format_size, parse_size

# The limit options, in the order they are reported.
LIMIT_KEYS = ('memory', 'memory_reservation', 'memory_swap', 'cpus', 'cpu_shares', 'cpuset_cpus', 'pids_limit',
              'blkio_weight', 'restart_policy', 'restart_retries')
RESTART_POLICIES = ('no', 'on-failure', 'always', 'unless-stopped')
MIN_MEMORY = 6 * 1024 * 1024            # the engine refuses less ("Minimum memory limit allowed is 6MB")
DEFAULT_CPU_PERIOD = 100000             # microseconds; the kernel's CFS period, and what NanoCpus uses
DEFAULT_CPU_SHARES = 1024
NANO = 10 ** 9
MAX_CORE = 8191                         # the kernel's largest NR_CPUS


class LimitsError(Exception):
    """The task cannot be done; `problems` lists every reason, `result` what is known so far."""

    def __init__(self, message, problems=None, result=None):
        super().__init__(message)
        self.problems = problems or []
        self.result = result or {}


# ---------------------------------------------------------------- requested limits

def _size(value, name, problems, minimum=0):
    try:
        amount = parse_size(value, name)
    except SizeError as exc:
        problems.append(str(exc))
        return None
    if amount < minimum:
        problems.append('%s: %s is below the smallest limit the engine accepts, %s' % (name, value, format_size(minimum)))
        return None
    return amount


def parse_cpuset(text):
    """"0-3,6" -> {0, 1, 2, 3, 6}; raises ValueError for anything else."""
    cores = set()
    for part in str(text).replace(' ', '').split(','):
        if not part:
            raise ValueError('empty element')
        first, _sep, last = part.partition('-')
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError('%r is not a core number or range' % part)
        start, end = int(first), int(last or first)
        if end < start:
            raise ValueError('range %r runs backwards' % part)
        if end > MAX_CORE:
            raise ValueError('core %d is beyond any machine' % end)
        cores.update(range(start, end + 1))
    return cores


def _int_between(entry, key, low, high, label, wanted, problems):
    """Put entry[key] into `wanted` when it is between low and high, else record the problem."""
    value = entry.get(key)
    if value is None:
        return
    if not low <= int(value) <= high:
        problems.append('%s: %s: %s is not between %d and %d' % (label, key, value, low, high))
    else:
        wanted[key] = int(value)


def parse_limits(entry, label, host_cpus):
    """The limits one task entry asks for, canonical: ({key: value}, [problems]).

    Canonical values: sizes in bytes; memory_swap -1 for unlimited swap; cpus a float; cpuset_cpus
    Docker's text ("0-3"); pids_limit None for unlimited (0 or below in the task); restart_policy
    a name and restart_retries an int. Keys the entry does not give are left out.
    """
    problems = []
    wanted = {}
    for key in ('memory', 'memory_reservation'):
        if entry.get(key) is not None:
            wanted[key] = _size(entry[key], '%s: %s' % (label, key), problems, MIN_MEMORY if key == 'memory' else 1)
    swap = entry.get('memory_swap')
    if swap is not None:
        if str(swap).strip() == '-1':
            wanted['memory_swap'] = -1
        else:
            wanted['memory_swap'] = _size(swap, '%s: memory_swap' % label, problems, MIN_MEMORY)
    cpus = entry.get('cpus')
    if cpus is not None:
        try:
            cpus = float(cpus)
        except (TypeError, ValueError):
            problems.append('%s: cpus: %r is not a number' % (label, cpus))
            cpus = None
        if cpus is not None:
            if not math.isfinite(cpus):
                problems.append('%s: cpus: %r is not a number of CPUs' % (label, entry['cpus']))
            elif cpus <= 0:
                problems.append('%s: cpus: %s is not above 0' % (label, entry['cpus']))
            elif cpus < 0.01:
                problems.append('%s: cpus: %s is below the smallest CPU limit, 0.01' % (label, entry['cpus']))
            elif host_cpus is not None and cpus > host_cpus:
                problems.append('%s: cpus: %s is above the %d CPUs of the host' % (label, entry['cpus'], host_cpus))
            else:
                wanted['cpus'] = round(cpus * NANO) / NANO
    _int_between(entry, 'cpu_shares', 2, 262144, label, wanted, problems)
    cpuset = entry.get('cpuset_cpus')
    if cpuset is not None:
        try:
            cores = parse_cpuset(cpuset)
        except ValueError as exc:
            problems.append('%s: cpuset_cpus: %r is not a list of cores such as 0-3,6 (%s)' % (label, cpuset, exc))
        else:
            beyond = sorted(c for c in cores if host_cpus is not None and c >= host_cpus)
            if beyond:
                problems.append('%s: cpuset_cpus: %r names core%s %s, but the host has cores 0-%d' % (
                    label, cpuset, 's' if len(beyond) > 1 else '', ', '.join(str(c) for c in beyond), host_cpus - 1))
            else:
                wanted['cpuset_cpus'] = cpuset_text(cores)
    if entry.get('pids_limit') is not None:
        pids = int(entry['pids_limit'])
        wanted['pids_limit'] = pids if pids > 0 else None
    _int_between(entry, 'blkio_weight', 10, 1000, label, wanted, problems)
    policy = entry.get('restart_policy')
    retries = entry.get('restart_retries')
    if policy is not None:
        if policy not in RESTART_POLICIES:
            problems.append('%s: restart_policy: %r is not one of %s' % (label, policy, ', '.join(RESTART_POLICIES)))
        else:
            wanted['restart_policy'] = policy
    if retries is not None:
        if policy not in (None, 'on-failure'):
            problems.append('%s: restart_retries: %s needs restart_policy on-failure, not %s' % (label, retries, policy))
        elif int(retries) < 0:
            problems.append('%s: restart_retries: %s is negative' % (label, retries))
        else:
            wanted['restart_retries'] = int(retries)
    return dict((k, v) for k, v in wanted.items() if v is not None or k == 'pids_limit'), problems


# ---------------------------------------------------------------- current limits

def uses_cpu_quota(host_config):
    """True when the container's CPU limit is a CpuQuota/CpuPeriod pair (the engine then refuses NanoCpus)."""
    return (host_config.get('CpuQuota') or 0) > 0 or (host_config.get('CpuPeriod') or 0) > 0


def current_limits(host_config):
    """A container's HostConfig as canonical limits (None where it has no limit)."""
    nano = host_config.get('NanoCpus') or 0
    quota = host_config.get('CpuQuota') or 0
    if nano > 0:
        cpus = nano / NANO
    elif quota > 0:
        cpus = quota / (host_config.get('CpuPeriod') or DEFAULT_CPU_PERIOD)
    else:
        cpus = None
    policy = host_config.get('RestartPolicy') or {}
    pids = host_config.get('PidsLimit')
    return {
        'memory': host_config.get('Memory') or None,
        'memory_reservation': host_config.get('MemoryReservation') or None,
        'memory_swap': host_config.get('MemorySwap') or None,
        'cpus': cpus,
        'cpu_shares': host_config.get('CpuShares') or DEFAULT_CPU_SHARES,
        'cpuset_cpus': cpuset_text(parse_cpuset(host_config['CpusetCpus'])) if host_config.get('CpusetCpus') else None,
        'pids_limit': pids if pids and pids > 0 else None,
        'blkio_weight': host_config.get('BlkioWeight') or None,
        'restart_policy': policy.get('Name') or 'no',
        'restart_retries': policy.get('MaximumRetryCount') or 0,
    }


def _same(key, current, wanted, host_config):
    if key == 'cpus' and current is not None and wanted is not None:
        if uses_cpu_quota(host_config):
            period = host_config.get('CpuPeriod') or DEFAULT_CPU_PERIOD
            return round(wanted * period) == (host_config.get('CpuQuota') or 0)
        return round(wanted * NANO) == round(current * NANO)
    return current == wanted


# ---------------------------------------------------------------- one container

def plan_container(container, wanted, usage, force=False, swap_usage=None):
    """What to send to one container: a dict with name, id, body (None when nothing changes), before, after, changes, problems.

    `container` is the engine's inspect of it; `wanted` is parse_limits' result; `usage` the memory it uses now
    (bytes, or None when unknown or not running); `swap_usage` what it holds in swap (bytes, or None when unknown).
    """
    host_config = container.get('HostConfig') or {}
    name = (container.get('Name') or '').lstrip('/') or container['Id'][:12]
    current = current_limits(host_config)
    problems = []
    after = dict(current)
    changes = []
    for key in LIMIT_KEYS:
        if key not in wanted:
            continue
        after[key] = wanted[key]
        if not _same(key, current[key], wanted[key], host_config):
            changes.append(key)
    # restart_retries alone: only for a container whose policy is on-failure already
    if 'restart_retries' in wanted and 'restart_policy' not in wanted and current['restart_policy'] != 'on-failure':
        problems.append('%s: restart_retries %s needs restart_policy on-failure; the container has %s, so give restart_policy: on-failure too' % (
            name, wanted['restart_retries'], current['restart_policy'] or 'no'))
    # restart_retries follows the policy: on-failure keeps the current count unless one is given
    if 'restart_policy' in wanted and 'restart_retries' not in wanted:
        keep = current['restart_retries'] if wanted['restart_policy'] == 'on-failure' and current['restart_policy'] == 'on-failure' else 0
        after['restart_retries'] = keep
        if keep != current['restart_retries'] and 'restart_policy' not in changes:
            changes.append('restart_policy')

    # memory + swap: the engine wants MemorySwap with every Memory change; keep the container's swap allowance
    derived_swap = False
    if 'memory' in changes and 'memory_swap' not in wanted:
        after['memory_swap'] = swap_for(current['memory'], current['memory_swap'], after['memory'])
        derived_swap = after['memory_swap'] != current['memory_swap']
    if after['memory'] is not None and after['memory_swap'] not in (None, -1) and after['memory_swap'] < after['memory']:
        problems.append('%s: memory_swap %s is below memory %s; memory_swap is memory plus swap, so it must be at least memory (or -1)' % (
            name, _human(after['memory_swap']), _human(after['memory'])))
    if 'memory_swap' in wanted and after['memory'] is None:
        problems.append('%s: memory_swap %s needs a memory limit; the container has none, so give memory too' % (name, _human(wanted['memory_swap'])))
    if after['memory_reservation'] is not None and after['memory'] is not None and after['memory_reservation'] > after['memory']:
        problems.append('%s: memory_reservation %s is above memory %s' % (name, _human(after['memory_reservation']), _human(after['memory'])))
    running = bool((container.get('State') or {}).get('Running'))
    if 'memory' in changes and not force:
        if usage is not None and after['memory'] < usage:
            problems.append('%s: memory %s is below the %s it uses now; the kernel would have to swap it out or OOM-kill it (force=true to set it anyway)' % (
                name, _human(after['memory']), format_size(usage)))
        elif usage is None and running and (current['memory'] is None or after['memory'] < current['memory']):
            problems.append('%s: memory %s cannot be checked against what the container uses now, which neither its cgroup nor the engine told '
                            '(force=true to set it anyway)' % (name, _human(after['memory'])))
    swap_changes = 'memory_swap' in changes or derived_swap
    if swap_changes and not force and usage is not None and swap_usage and after['memory_swap'] not in (None, -1):
        if after['memory_swap'] < usage + swap_usage:
            problems.append('%s: memory_swap %s is below the %s it holds now (%s in memory, %s in swap); the kernel would refuse it '
                            'or have to OOM-kill (force=true to set it anyway)' % (
                                name, _human(after['memory_swap']), format_size(usage + swap_usage), format_size(usage), format_size(swap_usage)))
    if 'restart_policy' in changes and after['restart_policy'] != 'no' and host_config.get('AutoRemove'):
        problems.append('%s: restart_policy %s is not possible on a container started with --rm (AutoRemove)' % (name, after['restart_policy']))

    shown = [k for k in LIMIT_KEYS if k in wanted or (k == 'memory_swap' and derived_swap)
             or (k == 'restart_retries' and 'restart_policy' in wanted)]
    return {
        'name': name,
        'id': container['Id'],
        'running': running,
        'usage': usage,
        'changes': changes,
        'body': update_body(changes, after, host_config, derived_swap) if changes else None,
        'before': dict((k, current[k]) for k in shown),
        'after': dict((k, after[k]) for k in shown),
        'problems': problems,
        'verify': dict((k, after[k]) for k in changes),
    }


def swap_for(memory, memory_swap, new_memory):
    """The MemorySwap to send with a new memory limit when the task gives none: the container keeps its swap allowance.

    Unlimited swap (-1) stays unlimited; a container with a memory limit keeps its ratio of memory + swap to memory;
    a container without one gets Docker's default for new containers, memory + swap = twice the memory.
    """
    if memory_swap == -1:
        return -1
    if memory and memory_swap:
        return new_memory * memory_swap // memory
    return 2 * new_memory


def update_body(changes, after, host_config, derived_swap=False):
    """The JSON body of POST /containers/{id}/update for the changed keys (one call per container)."""
    body = {}
    if 'memory' in changes:
        body['Memory'] = after['memory']
        body['MemorySwap'] = after['memory_swap'] if after['memory_swap'] is not None else 2 * after['memory']
    elif 'memory_swap' in changes or derived_swap:
        body['MemorySwap'] = after['memory_swap']
    if 'memory_reservation' in changes:
        body['MemoryReservation'] = after['memory_reservation']
    if 'cpus' in changes:
        if uses_cpu_quota(host_config):
            period = host_config.get('CpuPeriod') or DEFAULT_CPU_PERIOD
            body['CpuPeriod'] = period
            body['CpuQuota'] = int(round(after['cpus'] * period))
        else:
            body['NanoCpus'] = int(round(after['cpus'] * NANO))
    if 'cpu_shares' in changes:
        body['CpuShares'] = after['cpu_shares']
    if 'cpuset_cpus' in changes:
        body['CpusetCpus'] = after['cpuset_cpus']
    if 'pids_limit' in changes:
        body['PidsLimit'] = after['pids_limit'] or 0
    if 'blkio_weight' in changes:
        body['BlkioWeight'] = after['blkio_weight']
    if 'restart_policy' in changes or 'restart_retries' in changes:
        body['RestartPolicy'] = {'Name': after['restart_policy'], 'MaximumRetryCount': after['restart_retries']}
    return body


def order_plans(plans):
    """The order to send updates in: containers whose memory limit shrinks first (largest cut first), then the rest as given.

    Limits are not reservations, but under a shared parent cgroup (--cgroup-parent with a limit) cutting first leaves
    the others room before any limit grows.
    """
    def cut(plan):
        before, after = plan['before'].get('memory'), plan['after'].get('memory')
        if 'memory' in plan['changes'] and before and after is not None and after < before:
            return before - after
        return 0
    indexed = list(enumerate(plans))
    shrinking = sorted((item for item in indexed if cut(item[1])), key=lambda item: (-cut(item[1]), item[0]))
    rest = [item for item in indexed if not cut(item[1])]
    return [plan for _index, plan in shrinking + rest]


def _human(value):
    """Bytes as 512M / 1.5G / 1728M when that is exact, else the byte count; -1 and None as they are."""
    if value is None or value == -1 or not isinstance(value, int):
        return value
    text = format_size(value)
    try:
        if parse_size(text) == value:
            return text
    except SizeError:  # 1.69G is not a whole number of bytes
        pass
    for unit, factor in (('M', 1024 ** 2), ('K', 1024)):
        if value % factor == 0:
            return '%d%s' % (value // factor, unit)
    return str(value)


def diff_view(limits):
    """Limits for a diff: sizes as 512M where exact."""
    sizes = ('memory', 'memory_reservation', 'memory_swap')
    return dict((k, _human(v) if k in sizes else v) for k, v in limits.items())


# ---------------------------------------------------------------- the engine

def _status(exc):
    return getattr(exc, 'status_code', None)


def engine_message(exc):
    """What the engine said, without the URL noise."""
    return _docker.error_message(exc)


class Engine:
    """The Docker engine calls of a task, over one docker SDK APIClient (`_docker.create_client(...).api`)."""

    def __init__(self, api):
        self.api = api

    def info(self):
        return self.api.info()

    def inspect(self, ref):
        """The container's inspect, or None when the engine has no such container."""
        try:
            return self.api.inspect_container(ref)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            if _status(exc) == 404:
                return None
            raise

    def select(self, labels):
        """Ids of every container (running or not) that has all `labels` (value None: the label with any value)."""
        filters = ['%s=%s' % (k, v) if v is not None else str(k) for k, v in sorted(labels.items())]
        return [item['Id'] for item in self.api.containers(all=True, filters={'label': filters})]

    def update(self, container_id, body):
        """POST the update (the SDK's update_container cannot send NanoCpus or PidsLimit); returns the engine's warnings (a list)."""
        result = _docker.post_json(self.api, '/containers/{0}/update', body, container_id) or {}
        warnings = result.get('Warnings') or []
        return [warnings] if isinstance(warnings, str) else list(warnings)

    def stats_usage(self, container_id):
        """Memory in use from the engine's one-shot stats: usage minus inactive file cache, as `docker stats` shows it."""
        try:
            stats = self.api.stats(container_id, stream=False, one_shot=True)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            if type(exc).__name__ != 'InvalidVersion':  # one-shot needs API 1.41
                raise
            stats = self.api.stats(container_id, stream=False)
        memory = stats.get('memory_stats') or {}
        usage = memory.get('usage')
        if usage is None:
            return None
        detail = memory.get('stats') or {}
        inactive = detail.get('total_inactive_file', detail.get('inactive_file', 0)) or 0
        return usage - inactive if inactive < usage else usage


def read_swap_usage(container, cgroup_root=_cgroups.DEFAULT_ROOT, memory=None):
    """Bytes a running container holds in swap, from its cgroup; None when stopped, unknown or not accounted.

    `memory`: the run's _containers.ContainerMemory (one is made for `cgroup_root` when not given).
    """
    if not _containers.is_running(container):
        return None
    return (memory or _containers.ContainerMemory(cgroup_root)).swap(container)


def read_usage(container, engine=None, cgroup_root=_cgroups.DEFAULT_ROOT, memory=None):
    """Memory a running container uses now (working set, bytes), from its cgroup files, else the engine's stats; None when stopped."""
    if not _containers.is_running(container):
        return None
    usage = (memory or _containers.ContainerMemory(cgroup_root)).working_set(container)
    if usage is not None or engine is None:
        return usage
    return engine.stats_usage(container['Id'])


# ---------------------------------------------------------------- the task

def resolve(engine, entries, selector, limits):
    """[(label, entry, inspect or None)] for the task's entries, or one per container the selector matches."""
    if selector is not None:
        labels = dict((str(k), None if v is None else str(v)) for k, v in selector.items())
        resolved = []
        for container_id in engine.select(labels):
            container = engine.inspect(container_id)
            if container is None:  # removed between the list and the inspect
                continue
            entry = dict(limits or {})
            entry['name'] = container_id
            resolved.append(((container.get('Name') or '').lstrip('/'), entry, container))
        return resolved
    return [(str(entry['name']), entry, engine.inspect(str(entry['name']))) for entry in entries]


def run_task(engine, entries=None, selector=None, limits=None, force=False, check_mode=False, usage_reader=None, swap_reader=None):
    """Plan every container, refuse the whole task on any problem, else update in order; return the module result.

    `usage_reader(container, ask_engine)` gives a container's memory in use (default: read_usage); `ask_engine` is
    false when the figure is only reported, so it may answer None rather than call the engine. `swap_reader(container)`
    gives what it holds in swap (default: read_swap_usage), read only when memory or memory_swap change.

    Raises LimitsError (with every problem, and the results so far) when the task is refused or the engine fails.
    """
    memory = _containers.ContainerMemory()  # one cgroup lookup and one read per container for the task
    if usage_reader is None:
        def usage_reader(container, ask_engine):
            return read_usage(container, engine if ask_engine else None, memory=memory)
    if swap_reader is None:
        def swap_reader(container):
            return read_swap_usage(container, memory=memory)
    info = engine.info()
    host_cpus = info.get('NCPU')
    resolved = resolve(engine, entries, selector, limits)
    problems = []
    plans = []
    seen = {}
    for label, entry, container in resolved:
        wanted, entry_problems = parse_limits(entry, label, host_cpus)
        problems.extend(entry_problems)
        if container is None:
            problems.append('%s: no such container' % label)
            continue
        if container['Id'] in seen:
            problems.append('%s: the same container as %s (id %s) is listed twice' % (label, seen[container['Id']], container['Id'][:12]))
            continue
        seen[container['Id']] = label
        if entry_problems:
            continue
        # usage decides a memory change; for the others it is only reported, so no extra engine call for it
        usage = usage_reader(container, 'memory' in wanted)
        swap_usage = swap_reader(container) if ('memory' in wanted or 'memory_swap' in wanted) else None
        plan = plan_container(container, wanted, usage, force, swap_usage)
        problems.extend(plan['problems'])
        plans.append(plan)
    result = {'changed': False, 'containers': [_report(p, p['before'] if p['changes'] else p['after'], False) for p in plans]}
    if problems:
        raise LimitsError('container_limits changed no container: %d problem%s: %s' % (
            len(problems), '' if len(problems) == 1 else 's', '; '.join(problems)), problems, result)

    reports = dict((p['id'], _report(p, p['before'], False)) for p in plans)
    warnings = []
    for plan in order_plans(plans):
        if not plan['body']:
            reports[plan['id']] = _report(plan, plan['after'], False)
            continue
        if not check_mode:
            try:
                for warning in engine.update(plan['id'], plan['body']):
                    warnings.append('%s: the engine warned: %s' % (plan['name'], warning))
            except Exception as exc:  # pylint: disable=broad-exception-caught
                done = [r['name'] for r in reports.values() if r['changed']]
                reports[plan['id']]['error'] = engine_message(exc)
                result = _result(plans, reports, warnings)
                raise LimitsError('the engine refused the update of %s: %s. %s' % (
                    plan['name'], engine_message(exc), 'Already changed: %s.' % ', '.join(done) if done else 'No container was changed.'),
                    [engine_message(exc)], result) from None
        reports[plan['id']] = _report(plan, plan['after'], True)

    if not check_mode:
        try:
            _verify(engine, plans, reports, warnings)
        except LimitsError:
            raise
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # the updates were sent: report them (changed) with the failed read-back
            raise LimitsError('the updates were sent, but reading the containers back failed: %s' % engine_message(exc),
                              [engine_message(exc)], _result(plans, reports, warnings)) from None
    return _result(plans, reports, warnings)


def _verify(engine, plans, reports, warnings):
    """Read every changed container back; fail when a value the engine accepted is not the one in force."""
    mismatches = []
    for plan in plans:
        if not plan['body']:
            continue
        container = engine.inspect(plan['id'])
        if container is None:
            mismatches.append('%s: the container is gone after its update' % plan['name'])
            continue
        in_force = current_limits(container.get('HostConfig') or {})
        report = reports[plan['id']]
        report['after'] = dict((k, in_force[k]) for k in report['after'])
        for key, value in plan['verify'].items():
            if not _same(key, in_force[key], value, container.get('HostConfig') or {}):
                mismatches.append('%s: %s is %s after the update, not %s' % (plan['name'], key, _human(in_force[key]), _human(value)))
    if mismatches:
        detail = ' (%s)' % '; '.join(warnings) if warnings else ''
        raise LimitsError('the engine accepted the updates but did not put every limit in force: %s%s' % ('; '.join(mismatches), detail),
                          mismatches, _result(plans, reports, warnings))


def _report(plan, after, changed):
    return {'name': plan['name'], 'id': plan['id'], 'running': plan['running'], 'usage': plan['usage'],
            'before': plan['before'], 'after': dict(after), 'changed': changed}


def _result(plans, reports, warnings):
    containers = [reports[p['id']] for p in plans]
    changed = [r for r in containers if r['changed']]
    drift = {}
    diff = []
    for report in changed:
        tracker = DifferenceTracker()
        for key in report['after']:
            tracker.add(key, report['before'].get(key), report['after'][key])
        before, after = tracker.get_before_after(only_changed=True)
        drift[report['name']] = {key: {'before': before[key], 'after': after[key]} for key in tracker.differences()}
        shown = DifferenceTracker()
        shown.merge(diff_view(report['before']), diff_view(report['after']))
        diff.append(shown.diff(header=report['name']))
    return {'changed': bool(changed), 'containers': containers, 'drift': drift, 'diff': diff, 'engine_warnings': warnings}
