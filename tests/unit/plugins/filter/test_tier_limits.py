"""Unit tests of the tier_limits filter and the tier budget math (module_utils/_tiers.py).

The two tables the issue asks for: seed 000's stable limits on an 18 GiB host and seed 001's
split on a 29.38 GiB host (30085 MiB, what `free -m` shows for it), both from the default plan.
"""

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.sutazai.ops.plugins.filter import tier_limits as tier_filter
from ansible_collections.sutazai.ops.plugins.module_utils import _limits, _tiers
from ansible_collections.sutazai.ops.plugins.module_utils._units import parse_size

MiB = 1024 ** 2
GiB = 1024 ** 3
HOST_18G = 18 * GiB
HOST_29G = 30085 * MiB  # 29.38 GiB

SEED_SERVICES = [
    {'name': 'postgres', 'tier': 1},
    {'name': 'redis', 'tier': 1},
    {'name': 'ollama', 'tier': 1},
    {'name': 'backend', 'tier': 1},
    {'name': 'frontend', 'tier': 1},
    {'name': 'qdrant', 'tier': 2},
]


def limits(services=None, host_memory=HOST_18G, host_cpus=4, plan=None):
    return tier_filter.tier_limits(SEED_SERVICES if services is None else services, host_memory, host_cpus, plan)


# ---------------------------------------------------------------- the seed tables

@pytest.mark.parametrize('service, memory', [
    ('postgres', '1G'),
    ('redis', '512M'),
    ('qdrant', '1G'),
    ('ollama', '3G'),
    ('backend', '1.5G'),
    ('frontend', '768M'),
])
def test_seed_000_stable_limits_on_18g(service, memory):
    result = limits()
    assert result['services'][service]['memory'] == parse_size(memory)
    assert result['services'][service]['memory_source'] == 'weight'


@pytest.mark.parametrize('mem_total_mib', [16384, 17408, 17800, 18020, 18200, 19456, 19968])
def test_seed_000_table_holds_for_what_an_18g_machine_reports(mem_total_mib):
    # MemTotal is below the nominal size by what the kernel and firmware keep (ansible_facts.memtotal_mb)
    result = limits(host_memory=mem_total_mib * MiB)
    table = {name: result['services'][name]['memory'] for name in ('postgres', 'redis', 'qdrant', 'ollama', 'backend', 'frontend')}
    assert table == {'postgres': GiB, 'redis': 512 * MiB, 'qdrant': GiB, 'ollama': 3 * GiB, 'backend': 1536 * MiB, 'frontend': 768 * MiB}


@pytest.mark.parametrize('key, expected', [
    ('reserve', '2G'),
    ('tier 1', '14G'),
    ('tier 2', '8G'),
    ('tier 3', '5G'),
])
def test_seed_001_split_on_29_38g(key, expected):
    budget = limits(host_memory=HOST_29G, host_cpus=12)['budget']
    value = budget['reserve'] if key == 'reserve' else budget['tiers'][int(key[-1])]['budget']
    assert value == parse_size(expected)


def test_seed_001_emergency_reserve_is_what_rounding_leaves():
    budget = limits(host_memory=HOST_29G, host_cpus=12)['budget']
    # seed 001: "Emergency Reserve: 0.38GB"
    assert budget['headroom'] == 389 * MiB
    assert budget['reserve'] + sum(t['budget'] for t in budget['tiers'].values()) + budget['headroom'] == HOST_29G


def test_seed_001_tier_1_services_fit_in_14g_and_grow_with_the_host():
    small = limits()['services']
    big = limits(host_memory=HOST_29G, host_cpus=12)
    tier1 = [s for s in big['services'].values() if s['tier'] == 1]
    assert sum(s['memory'] for s in tier1) <= 14 * GiB
    for name, entry in big['services'].items():
        assert entry['memory'] > small[name]['memory'], name


@pytest.mark.parametrize('service, cpuset', [
    ('backend', '2-3'),
    ('frontend', '2-3'),
    ('postgres', '4-5'),
    ('redis', '4-5'),
    ('ollama', '6-9'),
    ('qdrant', '10-11'),
])
def test_seed_001_core_layout_on_12_cores(service, cpuset):
    result = limits(host_memory=HOST_29G, host_cpus=12)
    assert result['services'][service]['cpuset_cpus'] == cpuset
    assert result['budget']['os_cpuset'] == '0-1'


@pytest.mark.parametrize('service, memory, reservation, cpus, cpus_reservation', [
    # seed 002: reservations a quarter of the limit (backend half); CPU limits and reservations as written there
    ('postgres', '1G', '256M', 2.0, 0.5),
    ('redis', '512M', '128M', 0.5, 0.1),
    ('ollama', '3G', '768M', 6.0, 2.0),
    ('backend', '1.5G', '768M', 2.0, 1.0),
    ('frontend', '768M', '192M', 1.0, 0.25),
    ('qdrant', '1G', '256M', 1.0, 0.25),
])
def test_seed_002_reservations_and_cpus_on_a_6_core_host(service, memory, reservation, cpus, cpus_reservation):
    entry = limits(host_cpus=6)['services'][service]
    assert (entry['memory'], entry['memory_reservation']) == (parse_size(memory), parse_size(reservation))
    assert (entry['cpus'], entry['cpus_reservation']) == (cpus, cpus_reservation)
    assert entry['cpuset_cpus'] is None


@pytest.mark.parametrize('tier, oom_score_adj', [(1, -500), (2, 0), (3, 500)])
def test_oom_score_adj_by_tier(tier, oom_score_adj):
    result = limits([{'name': 'svc', 'tier': tier}])
    assert result['services']['svc']['oom_score_adj'] == oom_score_adj
    assert _tiers.DEFAULT_OOM_SCORE_ADJ[tier] == oom_score_adj


# ---------------------------------------------------------------- small and large hosts

def test_host_too_small_names_the_host_the_need_and_each_service():
    with pytest.raises(AnsibleFilterError) as info:
        limits(host_memory='3G', host_cpus=2)
    message = str(info.value)
    assert 'host memory 3G is too small for the tier 1 minimums' in message
    assert 'needs 3.88G' in message
    for part in ('system reserve 2G', 'postgres 256M', 'redis 128M', 'ollama 1G', 'backend 256M', 'frontend 256M', '896M more'):
        assert part in message
    assert 'qdrant' not in message  # tier 2 minimums are not a floor


def test_tier_1_minimums_borrow_from_tier_3_then_tier_2():
    result = limits(host_memory='4G', host_cpus=2)
    services = result['services']
    assert all(services[n]['memory_source'] == 'min' for n in ('postgres', 'redis', 'ollama', 'backend', 'frontend'))
    tier1 = result['budget']['tiers'][1]
    assert tier1['allocated'] == parse_size('1920M')
    assert tier1['borrowed'] == {'tier3': 256 * MiB, 'tier2': 512 * MiB, 'headroom': 128 * MiB}
    assert result['budget']['tiers'][2]['budget_after_tier1'] == 0
    assert result['budget']['tiers'][2]['overcommitted'] is True


@pytest.mark.parametrize('host_gib', [8, 12, 16, 18, 24, 29.38, 32, 48, 64, 128])
def test_limits_never_exceed_the_host_and_grow_with_it(host_gib):
    host = int(host_gib * GiB) // MiB * MiB
    result = limits(host_memory=host, host_cpus=16)
    total = sum(s['memory'] for s in result['services'].values())
    assert total + result['budget']['reserve'] <= host
    bigger = limits(host_memory=host + 4 * GiB, host_cpus=16)
    for name, entry in result['services'].items():
        assert bigger['services'][name]['memory'] >= entry['memory'], name


def test_maximums_cap_a_service_on_a_big_host():
    services = limits(host_memory='128G', host_cpus=16)['services']
    assert services['redis']['memory'] == GiB and services['redis']['memory_source'] == 'max'
    assert services['frontend']['memory'] == 2 * GiB


def test_a_tier_never_hands_out_more_than_its_budget():
    agents = [{'name': 'agent-%d' % i, 'tier': 3} for i in range(40)]
    result = limits(agents)
    tier3 = result['budget']['tiers'][3]
    assert tier3['allocated'] <= tier3['budget'] == parse_size('2.75G')
    assert len(set(s['memory'] for s in result['services'].values())) == 1
    # 11 slots of 256M on 18G: one agent alone gets one slot
    assert limits([{'name': 'agent', 'tier': 3}])['services']['agent']['memory'] == 256 * MiB


def test_replicas_take_slots_each():
    services = [dict(s) for s in SEED_SERVICES]
    services[3]['replicas'] = 3  # backend x3: 39 slots asked in a tier of 33
    result = limits(services)
    tier1 = result['budget']['tiers'][1]
    assert tier1['allocated'] <= tier1['budget']
    assert result['services']['backend']['replicas'] == 3
    assert result['services']['backend']['memory'] < GiB + GiB // 2


# ---------------------------------------------------------------- CPUs

@pytest.mark.parametrize('cores, groups', [
    (8, {'app': '2', 'data': '3', 'llm': '4-6', 'agents': '7'}),
    (12, {'app': '2-3', 'data': '4-5', 'llm': '6-9', 'agents': '10-11'}),
    (16, {'app': '2-4', 'data': '5-7', 'llm': '8-12', 'agents': '13-15'}),
    (7, None),
])
def test_core_groups(cores, groups):
    assert limits(host_cpus=cores)['budget']['cpu_groups'] == groups


def test_cpus_are_capped_by_the_host_and_by_the_cpuset():
    assert limits(host_cpus=2)['services']['ollama']['cpus'] == 2.0
    assert limits(host_cpus=2)['services']['ollama']['cpus_reservation'] == 2.0
    assert limits(host_memory=HOST_29G, host_cpus=12)['services']['ollama']['cpus'] == 4.0  # cores 6-9


def test_cpusets_can_be_turned_off():
    result = limits(host_cpus=12, plan={'cpusets': {'enabled': False}})
    assert result['budget']['cpu_groups'] is None
    assert result['services']['ollama']['cpus'] == 6.0
    assert 'cpuset_cpus' not in result['containers'][0]


@pytest.mark.parametrize('cores, text', [([2, 3], '2-3'), ([6], '6'), ([0, 1, 4], '0-1,4'), ([], '')])
def test_cpuset_text(cores, text):
    assert _tiers.cpuset_text(cores) == text


# ---------------------------------------------------------------- inputs and plans

def test_services_as_a_dictionary():
    as_tiers = limits({'postgres': 1, 'qdrant': '2'})
    as_dicts = limits({'postgres': {'tier': 1}, 'qdrant': {'tier': 2}})
    assert as_tiers == as_dicts
    assert list(as_tiers['services']) == ['postgres', 'qdrant']


def test_containers_list_for_container_limits():
    services = [{'name': 'postgres', 'tier': 1, 'container': 'sutazai-postgres'}, {'name': 'agent', 'tier': 3}]
    containers = limits(services, host_cpus=12)['containers']
    assert containers[0] == {'name': 'sutazai-postgres', 'memory': GiB, 'memory_reservation': 256 * MiB, 'cpus': 2.0, 'cpuset_cpus': '4-5'}
    assert containers[1]['name'] == 'agent'


def test_containers_list_without_reservations_is_one_container_limits_accepts():
    plan = {'tiers': {1: {'reservation': 0}}, 'services': {'backend': {'reservation': 0}}}
    containers = limits([{'name': 'postgres', 'tier': 1}, {'name': 'backend', 'tier': 1}], plan=plan)['containers']
    assert all('memory_reservation' not in c for c in containers)
    for entry in containers:
        _wanted, problems = _limits.parse_limits(entry, entry['name'], 4)
        assert problems == []


def test_plan_overrides_merge_into_the_default():
    result = limits(plan={'reserve': '4G', 'tiers': {'1': {'oom_score_adj': -900}}, 'services': {'ollama': {'memory': '4G'}}})
    assert result['budget']['reserve'] == 4 * GiB
    assert result['services']['postgres']['oom_score_adj'] == -900
    assert result['services']['ollama']['memory'] == 4 * GiB
    assert result['services']['ollama']['memory_source'] == 'fixed'
    # the default plan itself is untouched
    assert _tiers.DEFAULT_PLAN['reserve'] == '2G'
    assert _tiers.DEFAULT_PLAN['services']['ollama'].get('memory') is None


def test_a_service_may_override_the_catalog():
    result = limits([{'name': 'ollama', 'tier': 1, 'weight': 4, 'memory_min': '512M', 'cpus': 1.5}], host_cpus=4)
    assert result['services']['ollama']['memory'] == GiB
    assert result['services']['ollama']['cpus'] == 1.5


def test_host_memory_as_a_float_or_a_size():
    assert limits(host_memory=float(HOST_18G)) == limits(host_memory='18G') == limits(host_memory=HOST_18G)


@pytest.mark.parametrize('services, host_memory, host_cpus, plan, message', [
    ([{'name': 'x', 'tier': 4}], HOST_18G, 4, None, "services.x.tier: 4 is not a tier; use 1, 2 or 3"),
    ([{'name': 'x'}], HOST_18G, 4, None, 'services.x: no tier'),
    ([{'tier': 1}], HOST_18G, 4, None, 'has no name'),
    ([{'name': 'x', 'tier': 1}, {'name': 'x', 'tier': 2}], HOST_18G, 4, None, 'services.x: the service is listed twice'),
    ([{'name': 'x', 'tier': 1, 'memmory': '1G'}], HOST_18G, 4, None, 'services.x: unknown key memmory'),
    ([{'name': 'x', 'tier': 1, 'memory_min': '2G', 'memory_max': '1G'}], HOST_18G, 4, None, 'memory_min 2G is above memory_max 1G'),
    ('postgres', HOST_18G, 4, None, "services: 'postgres' is not a list"),
    (SEED_SERVICES, 'lots', 4, None, "host_memory: 'lots' is not a size"),
    (SEED_SERVICES, 0, 4, None, 'host_memory: 0 is not a memory size above 0'),
    (SEED_SERVICES, HOST_18G, 0, None, 'host_cpus: 0 is below 1'),
    (SEED_SERVICES, HOST_18G, 2.5, None, 'host_cpus: 2.5 is not a whole number'),
    (SEED_SERVICES, HOST_18G, 4, {'reserve': '2 gigs'}, "plan.reserve: '2 gigs' is not a size"),
    (SEED_SERVICES, HOST_18G, 4, {'reserv': '2G'}, 'plan: unknown key reserv'),
    (SEED_SERVICES, HOST_18G, 4, {'tiers': {5: {'share': 1}}}, 'plan.tiers key: 5 is not a tier'),
    (SEED_SERVICES, HOST_18G, 4, {'tiers': {1: {'share': -1}}}, 'plan.tiers.1.share: -1 is below 0'),
    (SEED_SERVICES, HOST_18G, 4, {'tiers': {1: {'share': 0}, 2: {'share': 0}, 3: {'share': 0}}}, 'every share is 0'),
    (SEED_SERVICES, HOST_18G, 4, {'tiers': {1: {'oom_score_adj': 2000}}}, 'plan.tiers.1.oom_score_adj: 2000 is above 1000'),
    (SEED_SERVICES, HOST_18G, 12, {'services': {'ollama': {'cpu_group': 'gpu'}}}, "services.ollama: cpu_group 'gpu' is not a core group"),
    (SEED_SERVICES, HOST_18G, 8, {'cpusets': {'os_cores': 6}}, 'plan.cpusets: 8 cores minus 6 for the OS leave 2, fewer than the 4 core groups'),
    (SEED_SERVICES, HOST_18G, 4, {'services': {'redis': {'reservation': 1.5}}}, 'plan.services.redis.reservation: 1.5 is above 1'),
])
def test_errors_name_the_value(services, host_memory, host_cpus, plan, message):
    with pytest.raises(AnsibleFilterError) as info:
        tier_filter.tier_limits(services, host_memory, host_cpus, plan)
    assert message in str(info.value)
    assert str(info.value).startswith('sutazai.ops.tier_limits: ')


def test_filter_module_exposes_the_filter():
    assert tier_filter.FilterModule().filters() == {'tier_limits': tier_filter.tier_limits}


def test_tiers_module_has_no_ansible_import(top_level_imports):
    # the memory guard daemon reads the tier constants on hosts without Ansible
    # (its own collection's package, ansible_collections.sutazai.ops, is importable without Ansible)
    assert 'ansible' not in top_level_imports(_tiers.__file__)
