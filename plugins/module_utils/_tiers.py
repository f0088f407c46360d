# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service tiers and the tier budget: a tier plan plus a host's RAM and CPUs -> per-service limits.

PRIVATE to the collection: no compatibility promise. Plain Python with no Ansible import (the
memory guard daemon reads the tier constants on hosts without Ansible); the filter plugin
sutazai.ops.tier_limits is a thin wrapper of `plan_limits`.

How the memory is split (all arithmetic exact, with fractions; every result rounds down):

1. usable = host memory - `reserve` (the system reserve: OS, page cache, buffers).
2. The tiers share `usable` in proportion to their `share`; each tier budget is rounded down to
   `budget_granularity`. What rounding leaves over is the emergency headroom.
3. A tier budget is cut into `slots` equal slots, each snapped to the nearest `granularity` (never
   so far up that the slots asked for exceed the budget); a service takes `weight` slots (times its
   replicas), rounded down to `granularity`, then held between its `memory_min` and `memory_max`.
   When the services of a tier ask for more slots than it has, the budget is cut into as many
   slots as they ask for, so a tier never hands out more than its budget. A fixed `memory`
   comes out of the budget before the slots are cut.
4. Tier 1 minimums are a hard floor: when the weighted share of a tier 1 service is below its
   minimum it gets the minimum, and what tier 1 takes above its budget is taken from tier 3's
   budget, then tier 2's. A host smaller than the system reserve plus every tier 1 minimum is
   refused (TierPlanError naming the host size, the need and each service).

The default plan reproduces seed 000's stable limits on an 18 GiB host, whatever MemTotal such a
host reports between 16 and 19.5 GiB (one slot is 256 MiB in
every tier there: postgres 4 slots = 1G, redis 2 = 512M, ollama 12 = 3G, backend 6 = 1.5G,
frontend 3 = 768M, qdrant 4 = 1G) and seed 001's split on a 29.38 GiB host (reserve 2G,
tier 1 14G, tier 2 8G, tier 3 5G, 0.38G left as headroom): the shares 14:8:5 are seed 001's,
the slot counts (33, 18, 11) make a slot 256 MiB on 18 GiB.

CPUs: a service's `cpus` (seed 002's limits) is capped by the CPUs it may run on. On hosts with
`cpusets.min_cores` cores or more (8), seed 001's core layout applies: the first `os_cores`
cores (0-1) are left to the OS and the rest are split between the core groups in proportion
(12 cores: app 2-3, data 4-5, llm 6-9, agents 10-11); a service runs on its group's cores.
"""

import copy
import math
from fractions import Fraction

from ansible_collections.sutazai.ops.plugins.module_utils._units import SizeError, format_size, parse_size

# The label that gives a container's tier (1, 2 or 3); the memory guard and the stack role use it.
TIERS = (1, 2, 3)
# The kernel OOM killer's preference by tier: tier 3 goes first, postgres last.
DEFAULT_OOM_SCORE_ADJ = {1: -500, 2: 0, 3: 500}
OOM_SCORE_ADJ_RANGE = (-1000, 1000)

_PLAN_KEYS = ('reserve', 'budget_granularity', 'granularity', 'tiers', 'services', 'cpusets')
_TIER_KEYS = ('share', 'slots', 'oom_score_adj', 'weight', 'memory', 'memory_min', 'memory_max', 'reservation',
              'memory_reservation', 'cpus', 'cpus_reservation', 'cpu_group')
_SERVICE_KEYS = ('weight', 'memory', 'memory_min', 'memory_max', 'reservation', 'memory_reservation', 'cpus',
                 'cpus_reservation', 'cpu_group', 'oom_score_adj')
_INPUT_KEYS = ('name', 'tier', 'container', 'replicas') + _SERVICE_KEYS
_CPUSET_KEYS = ('enabled', 'min_cores', 'os_cores', 'groups')

DEFAULT_PLAN = {
    # seed 001: "System Reserve: 2GB (OS + buffers)"
    'reserve': '2G',
    'budget_granularity': '256M',
    'granularity': '64M',
    'tiers': {
        # seed 001's split, 14G : 8G : 5G; slots make one slot 256 MiB on an 18 GiB host (seed 000)
        1: {'share': 14, 'slots': 33, 'oom_score_adj': -500, 'weight': 2, 'memory_min': '128M', 'reservation': 0.25,
            'cpus': 1, 'cpus_reservation': 0.25, 'cpu_group': 'app'},
        2: {'share': 8, 'slots': 18, 'oom_score_adj': 0, 'weight': 2, 'memory_min': '64M', 'reservation': 0.25,
            'cpus': 1, 'cpus_reservation': 0.25, 'cpu_group': 'agents'},
        3: {'share': 5, 'slots': 11, 'oom_score_adj': 500, 'weight': 1, 'memory_min': '32M', 'reservation': 0.25,
            'cpus': 0.5, 'cpus_reservation': 0.1, 'cpu_group': 'agents'},
    },
    # weights: seed 000's stable limits in 256 MiB slots; cpus: seed 002's limits and reservations
    'services': {
        'postgres': {'weight': 4, 'memory_min': '256M', 'cpus': 2, 'cpus_reservation': 0.5, 'cpu_group': 'data'},
        'redis': {'weight': 2, 'memory_min': '128M', 'memory_max': '1G', 'cpus': 0.5, 'cpus_reservation': 0.1, 'cpu_group': 'data'},
        'ollama': {'weight': 12, 'memory_min': '1G', 'cpus': 6, 'cpus_reservation': 2, 'cpu_group': 'llm'},
        'backend': {'weight': 6, 'memory_min': '256M', 'reservation': 0.5, 'cpus': 2, 'cpus_reservation': 1, 'cpu_group': 'app'},
        'frontend': {'weight': 3, 'memory_min': '256M', 'memory_max': '2G', 'cpus': 1, 'cpus_reservation': 0.25, 'cpu_group': 'app'},
        # seed 001, tier 2: vector databases and the monitoring stack, 1 CPU and 1 GB each
        'qdrant': {'weight': 4, 'memory_min': '256M', 'cpus': 1},
        'chromadb': {'weight': 4, 'memory_min': '256M', 'cpus': 1},
        'prometheus': {'weight': 4, 'memory_min': '128M', 'cpus': 1},
        'grafana': {'weight': 4, 'memory_min': '128M', 'cpus': 1},
    },
    # seed 001: "Core 0-1: OS; 2-3: backend, frontend; 4-5: databases; 6-9: Ollama; 10-11: agents, monitoring"
    'cpusets': {'enabled': True, 'min_cores': 8, 'os_cores': 2, 'groups': {'app': 2, 'data': 2, 'llm': 4, 'agents': 2}},
}


class TierPlanError(ValueError):
    """A plan, a service list or a host that cannot give limits; the message names the value."""


# ---------------------------------------------------------------- helpers

def merge_plan(base, override):
    """`base` with `override` merged into it, dictionaries key by key (tier keys 1 and "1" are one key)."""
    result = copy.deepcopy(base)
    if not override:
        return result
    if not isinstance(override, dict):
        raise TierPlanError('plan: %r is not a dictionary' % (override,))
    for key, value in override.items():
        if key == 'tiers' and isinstance(value, dict):
            tiers = result.setdefault('tiers', {})
            for tier_key, tier_value in value.items():
                tier = _tier_number(tier_key, 'plan.tiers key')
                tiers[tier] = merge_plan(tiers.get(tier, {}), tier_value) if isinstance(tier_value, dict) else tier_value
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_plan(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _tier_number(value, name):
    if isinstance(value, bool):
        raise TierPlanError('%s: %r is not a tier; use 1, 2 or 3' % (name, value))
    try:
        tier = int(str(value).strip())
    except ValueError:
        raise TierPlanError('%s: %r is not a tier; use 1, 2 or 3' % (name, value)) from None
    if tier not in TIERS:
        raise TierPlanError('%s: %r is not a tier; use 1, 2 or 3' % (name, value))
    return tier


def _size(value, name, allow_none=True):
    if value is None and allow_none:
        return None
    try:
        return parse_size(value, name)
    except SizeError as exc:
        raise TierPlanError(str(exc)) from None


def _number(value, name, minimum=None, maximum=None, allow_none=True, integer=False):
    """A number as an exact Fraction (from its decimal text, so 0.1 is one tenth)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or value is None:
        raise TierPlanError('%s: %r is not a number' % (name, value))
    try:
        number = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise TierPlanError('%s: %r is not a number' % (name, value)) from None
    if integer and number.denominator != 1:
        raise TierPlanError('%s: %r is not a whole number' % (name, value))
    if minimum is not None and number < minimum:
        raise TierPlanError('%s: %s is below %s' % (name, value, _show_number(minimum)))
    if maximum is not None and number > maximum:
        raise TierPlanError('%s: %s is above %s' % (name, value, _show_number(maximum)))
    return number


def _show_number(value):
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    return ('%.4f' % float(value)).rstrip('0').rstrip('.')


def _plain(value):
    """A Fraction as an int when whole, else a float."""
    return value.numerator if value.denominator == 1 else float(value)


def _floor(value, granularity):
    """`value` (a Fraction of bytes) rounded down to a whole multiple of `granularity` bytes."""
    if value <= 0:
        return 0
    return int(value // granularity) * granularity


def _cpus(value):
    """CPUs as a float rounded to hundredths (Docker's precision), never rounding up past the exact value."""
    hundredths = int(Fraction(value) * 100)
    return hundredths / 100.0


def _check_keys(data, allowed, name):
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise TierPlanError('%s: unknown key%s %s; known keys are %s' % (
            name, 's' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(allowed)))


# ---------------------------------------------------------------- plan and services

def normalize_plan(plan=None):
    """The default plan with `plan` merged in, checked and converted (sizes to bytes, numbers to Fractions)."""
    merged = merge_plan(DEFAULT_PLAN, plan)
    _check_keys(merged, _PLAN_KEYS, 'plan')
    result = {
        'reserve': _size(merged.get('reserve'), 'plan.reserve', allow_none=False),
        'budget_granularity': _size(merged.get('budget_granularity'), 'plan.budget_granularity', allow_none=False),
        'granularity': _size(merged.get('granularity'), 'plan.granularity', allow_none=False),
        'tiers': {},
        'services': {},
    }
    for key in ('budget_granularity', 'granularity'):
        if result[key] < 1024 ** 2:
            raise TierPlanError('plan.%s: %s is below 1M' % (key, format_size(result[key])))
    tiers = merged.get('tiers') or {}
    if not isinstance(tiers, dict):
        raise TierPlanError('plan.tiers: %r is not a dictionary of tiers' % (tiers,))
    for tier in TIERS:
        settings = tiers.get(tier) or {}
        name = 'plan.tiers.%d' % tier
        if not isinstance(settings, dict):
            raise TierPlanError('%s: %r is not a dictionary' % (name, settings))
        _check_keys(settings, _TIER_KEYS, name)
        normalized = _service_settings(settings, name)
        normalized['share'] = _number(settings.get('share', 0), name + '.share', minimum=0, allow_none=False)
        normalized['slots'] = _number(settings.get('slots', 1), name + '.slots', minimum=Fraction(1, 100), allow_none=False)
        if normalized['oom_score_adj'] is None:
            normalized['oom_score_adj'] = DEFAULT_OOM_SCORE_ADJ[tier]
        if normalized['weight'] is None:
            normalized['weight'] = Fraction(1)
        for key, default in (('cpus', Fraction(1)), ('cpus_reservation', Fraction(0)), ('reservation', Fraction(0))):
            if normalized[key] is None:
                normalized[key] = default
        result['tiers'][tier] = normalized
    if sum(t['share'] for t in result['tiers'].values()) <= 0:
        raise TierPlanError('plan.tiers: every share is 0; give at least one tier a share')
    services = merged.get('services') or {}
    if not isinstance(services, dict):
        raise TierPlanError('plan.services: %r is not a dictionary of services' % (services,))
    for service_name, settings in services.items():
        name = 'plan.services.%s' % service_name
        if not isinstance(settings, dict):
            raise TierPlanError('%s: %r is not a dictionary' % (name, settings))
        _check_keys(settings, _SERVICE_KEYS, name)
        result['services'][str(service_name)] = _service_settings(settings, name)
    result['cpusets'] = _normalize_cpusets(merged.get('cpusets'))
    return result


def _service_settings(settings, name):
    """The per-service settings a tier default or a service can give, converted; missing ones are None."""
    result = {
        'weight': _number(settings.get('weight'), name + '.weight', minimum=0),
        'memory': _size(settings.get('memory'), name + '.memory'),
        'memory_min': _size(settings.get('memory_min'), name + '.memory_min'),
        'memory_max': _size(settings.get('memory_max'), name + '.memory_max'),
        'reservation': _number(settings.get('reservation'), name + '.reservation', minimum=0, maximum=1),
        'memory_reservation': _size(settings.get('memory_reservation'), name + '.memory_reservation'),
        'cpus': _number(settings.get('cpus'), name + '.cpus', minimum=Fraction(1, 100)),
        'cpus_reservation': _number(settings.get('cpus_reservation'), name + '.cpus_reservation', minimum=0),
        'cpu_group': None if settings.get('cpu_group') is None else str(settings.get('cpu_group')),
        'oom_score_adj': _number(settings.get('oom_score_adj'), name + '.oom_score_adj', minimum=OOM_SCORE_ADJ_RANGE[0],
                                 maximum=OOM_SCORE_ADJ_RANGE[1], integer=True),
    }
    if result['oom_score_adj'] is not None:
        result['oom_score_adj'] = int(result['oom_score_adj'])
    if result['memory_min'] is not None and result['memory_max'] is not None and result['memory_min'] > result['memory_max']:
        raise TierPlanError('%s: memory_min %s is above memory_max %s' % (name, format_size(result['memory_min']), format_size(result['memory_max'])))
    return result


def _normalize_cpusets(cpusets):
    if cpusets is None:
        return None
    if not isinstance(cpusets, dict):
        raise TierPlanError('plan.cpusets: %r is not a dictionary' % (cpusets,))
    _check_keys(cpusets, _CPUSET_KEYS, 'plan.cpusets')
    if not cpusets.get('enabled', True):
        return None
    groups = cpusets.get('groups') or {}
    if not isinstance(groups, dict) or not groups:
        raise TierPlanError('plan.cpusets.groups: %r is not a dictionary of core groups and their weights' % (groups,))
    return {
        'min_cores': int(_number(cpusets.get('min_cores', 8), 'plan.cpusets.min_cores', minimum=1, allow_none=False, integer=True)),
        'os_cores': int(_number(cpusets.get('os_cores', 2), 'plan.cpusets.os_cores', minimum=0, allow_none=False, integer=True)),
        'groups': dict((str(group), _number(weight, 'plan.cpusets.groups.%s' % group, minimum=Fraction(1, 100), allow_none=False))
                       for group, weight in groups.items()),
    }


def normalize_services(services):
    """The service list as [{name, tier, container, replicas, overrides...}], in the order given.

    Accepts a list of dictionaries ({name, tier, ...}) or a dictionary name -> tier or name -> {tier, ...}.
    """
    if isinstance(services, dict):
        items = []
        for name, value in services.items():
            if isinstance(value, dict):
                entry = dict(value)
                entry.setdefault('name', name)
            else:
                entry = {'name': name, 'tier': value}
            items.append(entry)
    elif isinstance(services, (list, tuple)):
        items = list(services)
    else:
        raise TierPlanError('services: %r is not a list of services ({name, tier}) or a dictionary of name: tier' % (services,))
    result = []
    seen = set()
    for index, entry in enumerate(items):
        if not isinstance(entry, dict):
            raise TierPlanError('services[%d]: %r is not a dictionary with name and tier' % (index, entry))
        name = entry.get('name')
        if name is None or str(name).strip() == '':
            raise TierPlanError('services[%d]: %r has no name' % (index, entry))
        name = str(name)
        label = 'services.%s' % name
        _check_keys(entry, _INPUT_KEYS, label)
        if name in seen:
            raise TierPlanError('%s: the service is listed twice' % label)
        seen.add(name)
        if entry.get('tier') is None:
            raise TierPlanError('%s: no tier; give each service a tier, 1, 2 or 3' % label)
        normalized = _service_settings(entry, label)
        normalized.update({
            'name': name,
            'tier': _tier_number(entry['tier'], label + '.tier'),
            'container': str(entry.get('container') or name),
            'replicas': int(_number(entry.get('replicas', 1), label + '.replicas', minimum=1, allow_none=False, integer=True)),
        })
        result.append(normalized)
    return result


def _resolve(service, plan):
    """One service's settings: its own, else the plan's entry for its name, else its tier's defaults."""
    catalog = plan['services'].get(service['name'], {})
    tier_defaults = plan['tiers'][service['tier']]
    resolved = {}
    for key in _SERVICE_KEYS:
        for source in (service, catalog, tier_defaults):
            if source.get(key) is not None:
                resolved[key] = source[key]
                break
        else:
            resolved[key] = None
    # a service that gives its own weight is sized by weight, whatever fixed memory the catalog names
    if service.get('weight') is not None and service.get('memory') is None:
        resolved['memory'] = None
    if resolved['memory_min'] is not None and resolved['memory_max'] is not None and resolved['memory_min'] > resolved['memory_max']:
        raise TierPlanError('services.%s: memory_min %s is above memory_max %s' % (
            service['name'], format_size(resolved['memory_min']), format_size(resolved['memory_max'])))
    resolved.update(name=service['name'], tier=service['tier'], container=service['container'], replicas=service['replicas'])
    return resolved


# ---------------------------------------------------------------- memory

def tier_budgets(host_memory, plan):
    """{'usable', 'budgets': {tier: bytes}, 'headroom'} for a host of `host_memory` bytes under a normalized plan."""
    usable = max(0, host_memory - plan['reserve'])
    shares = dict((tier, plan['tiers'][tier]['share']) for tier in TIERS)
    total = sum(shares.values())
    budgets = dict((tier, _floor(Fraction(usable) * shares[tier] / total, plan['budget_granularity'])) for tier in TIERS)
    return {'usable': usable, 'budgets': budgets, 'headroom': usable - sum(budgets.values())}


def _tier_minimum(service):
    """What a service needs at least (per replica): its fixed memory, else its minimum (0 when it has none)."""
    if service['memory'] is not None:
        return service['memory']
    return service['memory_min'] or 0


def check_host_fits(host_memory, services, plan):
    """Raise TierPlanError when the host is smaller than the system reserve plus every tier 1 minimum."""
    tier1 = [s for s in services if s['tier'] == 1]
    need = plan['reserve'] + sum(_tier_minimum(s) * s['replicas'] for s in tier1)
    if host_memory >= need:
        return need
    parts = ['system reserve %s' % format_size(plan['reserve'])]
    for service in tier1:
        amount = _tier_minimum(service)
        text = '%s %s' % (service['name'], format_size(amount))
        if service['replicas'] > 1:
            text += ' x %d replicas' % service['replicas']
        parts.append(text)
    raise TierPlanError('host memory %s is too small for the tier 1 minimums: it needs %s (%s), %s more' % (
        format_size(host_memory), format_size(need), ' + '.join(parts), format_size(need - host_memory)))


def _slot_size(remaining, slots, asked, granularity):
    """The budget cut into `slots` (or as many as are asked for), snapped to the nearest `granularity`.

    Snapping keeps the limits steady across hosts of one size class: what the kernel and firmware keep
    from a nominal 18 GiB machine (MemTotal 17.5 to 18 GiB) does not turn seed 000's 1G into 960M. The
    slot never grows past what lets the asked-for slots fit in `remaining`.
    """
    unit = remaining / max(slots, asked)
    if not granularity:
        return unit
    snapped = Fraction(math.floor(unit / granularity + Fraction(1, 2))) * granularity
    if asked and snapped * asked > remaining:
        snapped = Fraction(math.floor(remaining / asked / granularity)) * granularity
    return snapped


def _allocate_tier(services, budget, slots, granularity):
    """Memory per replica for each service of one tier; returns ({name: (bytes, source)}, unit, allocated)."""
    fixed = sum(s['memory'] * s['replicas'] for s in services if s['memory'] is not None)
    weighted = [s for s in services if s['memory'] is None]
    asked = sum(s['weight'] * s['replicas'] for s in weighted)
    remaining = max(0, budget - fixed)
    unit = _slot_size(Fraction(remaining), slots, asked, granularity)
    result = {}
    for service in services:
        if service['memory'] is not None:
            result[service['name']] = (service['memory'], 'fixed')
            continue
        amount, source = _floor(unit * service['weight'], granularity), 'weight'
        if service['memory_max'] is not None and amount > service['memory_max']:
            amount, source = service['memory_max'], 'max'
        if service['memory_min'] is not None and amount < service['memory_min']:
            amount, source = service['memory_min'], 'min'
        result[service['name']] = (amount, source)
    allocated = sum(result[s['name']][0] * s['replicas'] for s in services)
    return result, unit, allocated


# ---------------------------------------------------------------- CPUs

def core_groups(host_cpus, cpusets):
    """{group: [core numbers]} by seed 001's layout, or None when the host has too few cores (or cpusets are off)."""
    if cpusets is None or host_cpus < cpusets['min_cores']:
        return None
    free = host_cpus - cpusets['os_cores']
    groups = list(cpusets['groups'].items())
    if free < len(groups):
        raise TierPlanError('plan.cpusets: %d cores minus %d for the OS leave %d, fewer than the %d core groups (%s)' % (
            host_cpus, cpusets['os_cores'], free, len(groups), ', '.join(name for name, _weight in groups)))
    total = sum(weight for _name, weight in groups)
    exact = [(name, Fraction(free) * weight / total) for name, weight in groups]
    counts = dict((name, max(1, int(share))) for name, share in exact)
    # hand out what flooring left, largest remainder first; take back from the largest groups if the floors of 1 overshot
    left = free - sum(counts.values())
    order = [name for name, _weight in groups]
    by_remainder = sorted(exact, key=lambda item: (-(item[1] - int(item[1])), order.index(item[0])))
    index = 0
    while left > 0:
        counts[by_remainder[index % len(by_remainder)][0]] += 1
        left -= 1
        index += 1
    while left < 0:
        largest = max(counts, key=lambda name: counts[name])
        counts[largest] -= 1
        left += 1
    result = {}
    core = cpusets['os_cores']
    for name, _weight in groups:
        result[name] = list(range(core, core + counts[name]))
        core += counts[name]
    return result


def cpuset_text(cores):
    """[2, 3] -> "2-3"; [6] -> "6"; [0, 1, 4] -> "0-1,4" (Docker's cpuset syntax)."""
    runs = []
    for core in sorted(cores):
        if runs and core == runs[-1][1] + 1:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return ','.join(str(first) if first == last else '%d-%d' % (first, last) for first, last in runs)


# ---------------------------------------------------------------- the whole plan

def plan_limits(services, host_memory, host_cpus, plan=None):
    """Per-service limits for a host: see the module docstring. Raises TierPlanError naming the bad value.

    Returns {'services': {name: limits}, 'containers': [container_limits entries], 'budget': {...}}.
    """
    host_memory = _host_memory(host_memory)
    host_cpus = _host_cpus(host_cpus)
    plan = normalize_plan(plan)
    resolved = [_resolve(s, plan) for s in normalize_services(services)]
    check_host_fits(host_memory, resolved, plan)
    split = tier_budgets(host_memory, plan)
    budgets = dict(split['budgets'])
    granularity = plan['granularity']

    by_tier = dict((tier, [s for s in resolved if s['tier'] == tier]) for tier in TIERS)
    memory = {}
    tiers_out = {}
    # tier 1 first: its minimums are a floor, and what it takes above its budget comes from tier 3, then tier 2
    for tier in TIERS:
        amounts, unit, allocated = _allocate_tier(by_tier[tier], budgets[tier], plan['tiers'][tier]['slots'], granularity)
        memory.update(amounts)
        borrowed = {}
        if tier == 1 and allocated > budgets[1]:
            if allocated > split['usable']:
                _too_small(host_memory, plan, by_tier[1], amounts)
            over = allocated - budgets[1]
            for lender in (3, 2):
                take = min(over, budgets[lender])
                if take:
                    budgets[lender] -= take
                    borrowed['tier%d' % lender] = take
                    over -= take
            if over:
                borrowed['headroom'] = over
            budgets[1] = allocated
        tiers_out[tier] = {
            'share': _plain(plan['tiers'][tier]['share']),
            'budget': split['budgets'][tier],
            'budget_after_tier1': budgets[tier],
            'slots': _plain(plan['tiers'][tier]['slots']),
            'slot_size': int(unit),
            'allocated': allocated,
            'overcommitted': allocated > budgets[tier],
            'oom_score_adj': plan['tiers'][tier]['oom_score_adj'],
            'services': [s['name'] for s in by_tier[tier]],
        }
        if borrowed:
            tiers_out[tier]['borrowed'] = borrowed

    groups = core_groups(host_cpus, plan['cpusets'])
    services_out = {}
    containers_out = []
    for service in resolved:
        limit, source = memory[service['name']]
        entry = _service_limits(service, limit, source, host_cpus, groups)
        services_out[service['name']] = entry
        container = {'name': service['container'], 'memory': entry['memory'], 'cpus': entry['cpus']}
        if entry['memory_reservation']:  # a plan without reservations (reservation 0) leaves the container's own
            container['memory_reservation'] = entry['memory_reservation']
        if entry['cpuset_cpus'] is not None:
            container['cpuset_cpus'] = entry['cpuset_cpus']
        containers_out.append(container)

    budget = {
        'host_memory': host_memory,
        'host_cpus': host_cpus,
        'reserve': plan['reserve'],
        'usable': split['usable'],
        'headroom': split['headroom'],
        'tiers': tiers_out,
        'os_cpuset': None if groups is None else cpuset_text(range(plan['cpusets']['os_cores'])) or None,
        'cpu_groups': None if groups is None else dict((name, cpuset_text(cores)) for name, cores in groups.items()),
    }
    return {'services': services_out, 'containers': containers_out, 'budget': budget}


def _service_limits(service, limit, source, host_cpus, groups):
    if service['memory_reservation'] is not None:
        reservation = min(service['memory_reservation'], limit)
    else:
        reservation = _floor(Fraction(limit) * (service['reservation'] or 0), 1024 ** 2)
    cpuset = None
    available = host_cpus
    if groups is not None:
        group = service['cpu_group']
        if group not in groups:
            raise TierPlanError('services.%s: cpu_group %r is not a core group of plan.cpusets.groups (%s)' % (
                service['name'], group, ', '.join(sorted(groups))))
        cpuset = cpuset_text(groups[group])
        available = len(groups[group])
    cpus = min(service['cpus'], Fraction(available))
    cpus_reservation = min(service['cpus_reservation'] or Fraction(0), cpus)
    return {
        'name': service['name'],
        'container': service['container'],
        'tier': service['tier'],
        'replicas': service['replicas'],
        'memory': limit,
        'memory_source': source,
        'memory_reservation': reservation,
        'cpus': _cpus(cpus),
        'cpus_reservation': _cpus(cpus_reservation),
        'cpuset_cpus': cpuset,
        'oom_score_adj': service['oom_score_adj'],
    }


def _too_small(host_memory, plan, tier1, amounts):
    parts = ['system reserve %s' % format_size(plan['reserve'])]
    need = plan['reserve']
    for service in tier1:
        amount = amounts[service['name']][0]
        need += amount * service['replicas']
        parts.append('%s %s%s' % (service['name'], format_size(amount), ' x %d replicas' % service['replicas'] if service['replicas'] > 1 else ''))
    raise TierPlanError('host memory %s is too small for the tier 1 services: they need %s (%s), %s more' % (
        format_size(host_memory), format_size(need), ' + '.join(parts), format_size(max(0, need - host_memory))))


def _host_memory(value):
    if isinstance(value, float) and not isinstance(value, bool) and value > 0:
        value = int(value)
    amount = _size(value, 'host_memory', allow_none=False)
    if amount <= 0:
        raise TierPlanError('host_memory: %r is not a memory size above 0' % (value,))
    return amount


def _host_cpus(value):
    number = _number(value, 'host_cpus', minimum=1, allow_none=False, integer=True)
    return int(number)
