"""Unit tests of the container limits planner (module_utils/_limits.py).

The HostConfig dicts are recorded from Docker 20.10 (`docker inspect`, trimmed to the resource keys) for
containers started as named. FakeEngine answers like that engine does - including its refusals (Memory
without MemorySwap on an unlimited container, NanoCpus on a container with CpuQuota/CpuPeriod, dropping
BlkioWeight on a kernel without it) - so a test that passes here sends bodies the real engine accepts.
"""

import copy
import json
import os
import urllib.parse

import docker
import docker.errors
import pytest
import requests
import requests.adapters

from ansible_collections.sutazai.ops.plugins.module_utils import _limits

MiB = 1024 ** 2
GiB = 1024 ** 3
FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')

# docker run sutazai-testbed/http
FRESH = {'Memory': 0, 'MemorySwap': 0, 'MemoryReservation': 0, 'NanoCpus': 0, 'CpuQuota': 0, 'CpuPeriod': 0, 'CpuShares': 0,
         'CpusetCpus': '', 'PidsLimit': None, 'BlkioWeight': 0, 'RestartPolicy': {'Name': 'no', 'MaximumRetryCount': 0},
         'AutoRemove': False, 'CgroupParent': ''}
# docker run -m 300m
LIMITED = dict(FRESH, Memory=314572800, MemorySwap=629145600)
# docker run -m 256m --memory-swap -1
UNLIMITED_SWAP = dict(FRESH, Memory=268435456, MemorySwap=-1)
# docker run --cpu-quota 50000
QUOTA = dict(FRESH, CpuQuota=50000)
# docker run --cpu-quota 25000 --cpu-period 50000
QUOTA_PERIOD = dict(FRESH, CpuQuota=25000, CpuPeriod=50000)
# docker run --cpus 0.5
NANO = dict(FRESH, NanoCpus=500000000)
# docker run -m 1g --memory-reservation 256m --cpus 1.5 --cpu-shares 512 --cpuset-cpus 0-1 --pids-limit 100 --restart on-failure:3
FULL = dict(FRESH, Memory=GiB, MemorySwap=2 * GiB, MemoryReservation=256 * MiB, NanoCpus=1500000000, CpuShares=512, CpusetCpus='0-1',
            PidsLimit=100, RestartPolicy={'Name': 'on-failure', 'MaximumRetryCount': 3})
# docker run --rm
AUTO_REMOVE = dict(FRESH, AutoRemove=True)


def container(host_config, name='c1', cid=None, running=True):
    cid = cid or (name.encode().hex() * 64)[:64]
    return {'Id': cid, 'Name': '/' + name, 'State': {'Running': running}, 'HostConfig': copy.deepcopy(host_config), 'Config': {'Labels': {}}}


def wanted(entry, host_cpus=2):
    result, problems = _limits.parse_limits(entry, 'c1', host_cpus)
    assert problems == []
    return result


class EngineRefused(Exception):
    """What community.docker's APIError carries: a status and the engine's message."""

    def __init__(self, status_code, explanation):
        super().__init__(explanation)
        self.status_code = status_code
        self.explanation = explanation


class FakeEngine:
    """Docker 20.10's update endpoint, as tried for real."""

    def __init__(self, containers, ncpu=2, blkio=True):
        self.containers = dict((c['Id'], c) for c in containers)
        self.ncpu = ncpu
        self.blkio = blkio
        self.updates = []
        self.stats_calls = []
        self.fail_on = None

    def info(self):
        return {'NCPU': self.ncpu}

    def inspect(self, ref):
        for cid, item in self.containers.items():
            if ref in (cid, item['Name'].lstrip('/')) or (len(ref) >= 4 and cid.startswith(ref)):
                return copy.deepcopy(item)
        return None

    def select(self, labels):
        return [cid for cid, item in self.containers.items()
                if all(k in item['Config']['Labels'] and (v is None or item['Config']['Labels'][k] == v) for k, v in labels.items())]

    def stats_usage(self, cid):
        self.stats_calls.append(cid)
        return self.containers[cid].get('_usage')

    def update(self, cid, body):
        if self.fail_on == cid:
            raise EngineRefused(500, 'Cannot update container %s: something broke' % cid)
        hc = self.containers[cid]['HostConfig']
        if body.get('Memory') and not body.get('MemorySwap') and body['Memory'] > (hc['MemorySwap'] if hc['MemorySwap'] > 0 else 0) \
                and hc['MemorySwap'] != -1:
            raise EngineRefused(409, 'Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time')
        if body.get('NanoCpus') and (hc['CpuQuota'] > 0 or hc['CpuPeriod'] > 0):
            raise EngineRefused(409, 'Conflicting options: Nano CPUs cannot be updated as CPU Period/Quota has already been set')
        if (body.get('CpuQuota', 0) > 0 or body.get('CpuPeriod', 0) > 0) and hc['NanoCpus'] > 0:
            raise EngineRefused(409, 'Conflicting options: CPU Period/Quota cannot be updated as NanoCPUs has already been set')
        if body.get('NanoCpus', 0) > self.ncpu * 10 ** 9:
            raise EngineRefused(400, 'Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available' % (self.ncpu, self.ncpu))
        warnings = []
        for key, value in body.items():
            if key == 'PidsLimit':
                value = max(0, value)
            if key == 'BlkioWeight' and not self.blkio:
                warnings.append('Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.')
                continue
            if value != 0 or key in ('PidsLimit',):
                hc[key] = value
        if body.get('NanoCpus'):
            hc['CpuQuota'] = hc['CpuPeriod'] = 0
        self.updates.append((cid, body))
        return warnings


# ---------------------------------------------------------------- parse_limits

@pytest.mark.parametrize('entry, expected', [
    ({'memory': '512M'}, {'memory': 512 * MiB}),
    ({'memory': 1073741824}, {'memory': GiB}),
    ({'memory': '1.5G', 'memory_reservation': '768m'}, {'memory': 1536 * MiB, 'memory_reservation': 768 * MiB}),
    ({'memory_swap': -1}, {'memory_swap': -1}),
    ({'memory_swap': '-1'}, {'memory_swap': -1}),
    ({'cpus': 1.5}, {'cpus': 1.5}),
    ({'cpus': '0.25'}, {'cpus': 0.25}),
    ({'cpuset_cpus': '0,1'}, {'cpuset_cpus': '0-1'}),
    ({'pids_limit': 0}, {'pids_limit': None}),
    ({'pids_limit': -1}, {'pids_limit': None}),
    ({'pids_limit': 100}, {'pids_limit': 100}),
    ({'restart_policy': 'on-failure', 'restart_retries': 3}, {'restart_policy': 'on-failure', 'restart_retries': 3}),
    ({'name': 'x', 'memory': None, 'cpus': None}, {}),
])
def test_parse_limits(entry, expected):
    assert wanted(entry) == expected


def test_parse_limits_lists_every_bad_value_of_an_entry():
    entry = {'memory': 'lots', 'memory_reservation': '-1G', 'memory_swap': '2 gigs', 'cpus': 0, 'cpu_shares': 1,
             'cpuset_cpus': '3-1', 'blkio_weight': 5, 'restart_policy': 'always', 'restart_retries': 2}
    result, problems = _limits.parse_limits(entry, 'agent-7', 2)
    assert result == {'restart_policy': 'always'}
    assert len(problems) == 8
    assert all(p.startswith('agent-7: ') for p in problems)
    text = '\n'.join(problems)
    for part in ("memory: 'lots' is not a size", "memory_reservation: '-1G' is not a size", "memory_swap: '2 gigs' is not a size",
                 'cpus: 0 is not above 0', 'cpu_shares: 1 is not between 2 and 262144', "cpuset_cpus: '3-1'",
                 'blkio_weight: 5 is not between 10 and 1000', 'restart_retries: 2 needs restart_policy on-failure, not always'):
        assert part in text


@pytest.mark.parametrize('entry, message', [
    ({'memory': '1M'}, 'memory: 1M is below the smallest limit the engine accepts, 6M'),
    ({'cpus': -1}, 'cpus: -1 is not above 0'),
    ({'cpus': 0.001}, 'cpus: 0.001 is below the smallest CPU limit, 0.01'),
    ({'cpus': float('nan')}, 'cpus: nan is not a number of CPUs'),
    ({'cpus': 'inf'}, "cpus: 'inf' is not a number of CPUs"),
    ({'cpuset_cpus': '0-99999999'}, "cpuset_cpus: '0-99999999' is not a list of cores such as 0-3,6 (core 99999999 is beyond any machine)"),
    ({'cpuset_cpus': '3'}, "cpuset_cpus: '3' names core 3, but the host has cores 0-1"),
    ({'cpus': 3}, 'cpus: 3 is above the 2 CPUs of the host'),
    ({'cpus': 'two'}, "cpus: 'two' is not a number"),
    ({'cpuset_cpus': '0-5'}, "cpuset_cpus: '0-5' names cores 2, 3, 4, 5, but the host has cores 0-1"),
    ({'cpuset_cpus': 'a'}, "cpuset_cpus: 'a' is not a list of cores"),
    ({'restart_policy': 'sometimes'}, "restart_policy: 'sometimes' is not one of no, on-failure, always, unless-stopped"),
    ({'restart_policy': 'on-failure', 'restart_retries': -2}, 'restart_retries: -2 is negative'),
])
def test_parse_limits_problems(entry, message):
    _result, problems = _limits.parse_limits(entry, 'c1', 2)
    assert len(problems) == 1 and problems[0].startswith('c1: ' + message), problems


# ---------------------------------------------------------------- current_limits

@pytest.mark.parametrize('host_config, expected', [
    (FRESH, {'memory': None, 'memory_reservation': None, 'memory_swap': None, 'cpus': None, 'cpu_shares': 1024, 'cpuset_cpus': None,
             'pids_limit': None, 'blkio_weight': None, 'restart_policy': 'no', 'restart_retries': 0}),
    (FULL, {'memory': GiB, 'memory_reservation': 256 * MiB, 'memory_swap': 2 * GiB, 'cpus': 1.5, 'cpu_shares': 512, 'cpuset_cpus': '0-1',
            'pids_limit': 100, 'blkio_weight': None, 'restart_policy': 'on-failure', 'restart_retries': 3}),
])
def test_current_limits(host_config, expected):
    assert _limits.current_limits(host_config) == expected


@pytest.mark.parametrize('host_config, cpus', [(QUOTA, 0.5), (QUOTA_PERIOD, 0.5), (NANO, 0.5), (dict(QUOTA, CpuQuota=-1, CpuPeriod=100000), None)])
def test_current_cpus_from_nano_or_quota(host_config, cpus):
    assert _limits.current_limits(host_config)['cpus'] == cpus


def test_empty_restart_policy_name_is_no():
    assert _limits.current_limits(dict(FRESH, RestartPolicy={'Name': '', 'MaximumRetryCount': 0}))['restart_policy'] == 'no'


# ---------------------------------------------------------------- plan_container: bodies

@pytest.mark.parametrize('host_config, entry, body', [
    # no memory limit yet: the engine refuses Memory alone, so MemorySwap goes too (Docker's default, twice the memory)
    (FRESH, {'memory': '512M'}, {'Memory': 512 * MiB, 'MemorySwap': GiB}),
    # -m 300m (swap 600m): the ratio is kept, so raising above the old swap limit is accepted
    (LIMITED, {'memory': '1G'}, {'Memory': GiB, 'MemorySwap': 2 * GiB}),
    (LIMITED, {'memory': '150M'}, {'Memory': 150 * MiB, 'MemorySwap': 300 * MiB}),
    (UNLIMITED_SWAP, {'memory': '512M'}, {'Memory': 512 * MiB, 'MemorySwap': -1}),
    (LIMITED, {'memory': '1G', 'memory_swap': '1G'}, {'Memory': GiB, 'MemorySwap': GiB}),
    (LIMITED, {'memory_swap': -1}, {'MemorySwap': -1}),
    (FULL, {'memory_reservation': '512M'}, {'MemoryReservation': 512 * MiB}),
    (FRESH, {'cpus': 1.5}, {'NanoCpus': 1500000000}),
    (NANO, {'cpus': 1.5}, {'NanoCpus': 1500000000}),
    # created with --cpu-quota: the engine refuses NanoCpus, so the same limit goes as quota over the period
    (QUOTA, {'cpus': 1.5}, {'CpuPeriod': 100000, 'CpuQuota': 150000}),
    (QUOTA_PERIOD, {'cpus': 1.5}, {'CpuPeriod': 50000, 'CpuQuota': 75000}),
    (dict(QUOTA, CpuQuota=-1, CpuPeriod=100000), {'cpus': 1}, {'CpuPeriod': 100000, 'CpuQuota': 100000}),
    (FRESH, {'cpu_shares': 512, 'cpuset_cpus': '1'}, {'CpuShares': 512, 'CpusetCpus': '1'}),
    (FRESH, {'pids_limit': 256}, {'PidsLimit': 256}),
    (FULL, {'pids_limit': -1}, {'PidsLimit': 0}),
    (FRESH, {'blkio_weight': 300}, {'BlkioWeight': 300}),
    (FRESH, {'restart_policy': 'unless-stopped'}, {'RestartPolicy': {'Name': 'unless-stopped', 'MaximumRetryCount': 0}}),
    (FULL, {'restart_policy': 'on-failure', 'restart_retries': 5}, {'RestartPolicy': {'Name': 'on-failure', 'MaximumRetryCount': 5}}),
    (FULL, {'restart_policy': 'always'}, {'RestartPolicy': {'Name': 'always', 'MaximumRetryCount': 0}}),
    (FULL, {'restart_retries': 7}, {'RestartPolicy': {'Name': 'on-failure', 'MaximumRetryCount': 7}}),  # already on-failure
])
def test_plan_bodies(host_config, entry, body):
    plan = _limits.plan_container(container(host_config), wanted(entry), usage=10 * MiB)
    assert plan['problems'] == []
    assert plan['body'] == body
    engine = FakeEngine([container(host_config)])
    engine.update(plan['id'], plan['body'])  # the engine accepts it


@pytest.mark.parametrize('host_config, entry', [
    (FULL, {'memory': '1G', 'memory_reservation': '256M', 'memory_swap': '2G', 'cpus': 1.5, 'cpu_shares': 512, 'cpuset_cpus': '0,1',
            'pids_limit': 100, 'restart_policy': 'on-failure', 'restart_retries': 3}),
    (FULL, {'restart_policy': 'on-failure'}),          # keeps its retry count
    (FRESH, {'pids_limit': 0, 'cpu_shares': 1024, 'restart_policy': 'no'}),
    (dict(QUOTA, CpuQuota=150000, CpuPeriod=100000), {'cpus': 1.5}),
    (QUOTA, {'cpus': 0.5}),
    (LIMITED, {'memory': 314572800}),
])
def test_plan_unchanged(host_config, entry):
    plan = _limits.plan_container(container(host_config), wanted(entry), usage=10 * MiB)
    assert plan['changes'] == [] and plan['body'] is None and plan['problems'] == []
    assert plan['before'] == plan['after']


def test_plan_reports_before_after_of_the_keys_asked_for_and_the_derived_swap():
    plan = _limits.plan_container(container(LIMITED), wanted({'memory': '1G', 'cpus': 1}), usage=10 * MiB)
    assert plan['before'] == {'memory': 314572800, 'memory_swap': 629145600, 'cpus': None}
    assert plan['after'] == {'memory': GiB, 'memory_swap': 2 * GiB, 'cpus': 1.0}
    assert plan['changes'] == ['memory', 'cpus']
    assert plan['verify'] == {'memory': GiB, 'cpus': 1.0}


# ---------------------------------------------------------------- plan_container: refusals

@pytest.mark.parametrize('host_config, entry, usage, force, message', [
    (FRESH, {'memory': '100M'}, 200 * MiB, False, 'c1: memory 100M is below the 200M it uses now'),
    (LIMITED, {'memory': '100M'}, 200 * MiB + 12345, False, 'c1: memory 100M is below the 200.01M it uses now'),
    (FRESH, {'memory': '1G', 'memory_swap': '512M'}, 10 * MiB, False, 'c1: memory_swap 512M is below memory 1G'),
    (LIMITED, {'memory_swap': '100M'}, None, False, 'c1: memory_swap 100M is below memory 300M'),
    (FRESH, {'memory_swap': '1G'}, None, False, 'c1: memory_swap 1G needs a memory limit'),
    (FRESH, {'memory': '256M', 'memory_reservation': '512M'}, 10 * MiB, False, 'c1: memory_reservation 512M is above memory 256M'),
    (FULL, {'memory': '128M'}, 10 * MiB, False, 'c1: memory_reservation 256M is above memory 128M'),
    (AUTO_REMOVE, {'restart_policy': 'always'}, None, False, 'c1: restart_policy always is not possible on a container started with --rm'),
    (FRESH, {'restart_retries': 3}, None, False, 'c1: restart_retries 3 needs restart_policy on-failure; the container has no'),
])
def test_plan_refusals(host_config, entry, usage, force, message):
    plan = _limits.plan_container(container(host_config), wanted(entry), usage, force)
    assert len(plan['problems']) == 1
    assert plan['problems'][0].startswith(message), plan['problems']


@pytest.mark.parametrize('entry, swap_usage, refused', [
    # the container uses 200M in memory (LIMITED: 300M, memory_swap 600M)
    ({'memory': '300M', 'memory_swap': '400M'}, 150 * MiB, False),   # 350M held fits in 400M
    ({'memory': '300M', 'memory_swap': '320M'}, 150 * MiB, True),    # 350M held, 320M allowed
    ({'memory': '200M', 'memory_swap': '300M'}, 150 * MiB, True),
    ({'memory': '250M'}, 150 * MiB, False),                          # derived memory_swap 500M (its 1:1 ratio) fits
    ({'memory': '300M', 'memory_swap': '320M'}, None, False),        # swap not accounted: nothing to check against
    ({'memory': '300M', 'memory_swap': '320M'}, 0, False),           # nothing in swap: memory alone decides
    ({'memory': '300M', 'memory_swap': -1}, 150 * MiB, False),       # unlimited swap
])
def test_memory_swap_below_what_the_container_holds_in_memory_and_swap(entry, swap_usage, refused):
    plan = _limits.plan_container(container(LIMITED), wanted(entry), 200 * MiB, swap_usage=swap_usage)
    if not refused:
        assert plan['problems'] == []
        return
    assert len(plan['problems']) == 1
    assert plan['problems'][0].startswith('c1: memory_swap %s is below the 350M it holds now (200M in memory, 150M in swap)' % entry['memory_swap'])
    forced = _limits.plan_container(container(LIMITED), wanted(entry), 200 * MiB, force=True, swap_usage=swap_usage)
    assert forced['problems'] == []


def test_force_sets_a_limit_below_usage():
    plan = _limits.plan_container(container(FRESH), wanted({'memory': '100M'}), 200 * MiB, force=True)
    assert plan['problems'] == [] and plan['body']['Memory'] == 100 * MiB


@pytest.mark.parametrize('host_config, entry, refused', [
    (FRESH, {'memory': '1G'}, True),                         # from no limit: refused
    (LIMITED, {'memory': '100M'}, True),                     # a cut: refused
    (LIMITED, {'memory': '1G'}, False),                      # a raise cannot hurt
])
def test_unknown_usage_of_a_running_container(host_config, entry, refused):
    plan = _limits.plan_container(container(host_config), wanted(entry), None)
    assert bool(plan['problems']) is refused
    if refused:
        assert 'cannot be checked against what the container uses now' in plan['problems'][0]
    assert _limits.plan_container(container(host_config, running=False), wanted(entry), None)['problems'] == []
    assert _limits.plan_container(container(host_config), wanted(entry), None, force=True)['problems'] == []


def test_usage_does_not_matter_when_memory_does_not_change():
    plan = _limits.plan_container(container(LIMITED), wanted({'memory': 314572800, 'cpus': 1}), 400 * MiB)
    assert plan['problems'] == [] and plan['changes'] == ['cpus']


# ---------------------------------------------------------------- ordering

def test_memory_cuts_go_first_largest_first():
    plans = [
        _limits.plan_container(container(FRESH, 'grow'), wanted({'memory': '1G'}), None),
        _limits.plan_container(container(dict(FRESH, Memory=GiB, MemorySwap=2 * GiB), 'small-cut'), wanted({'memory': '768M'}), None),
        _limits.plan_container(container(FRESH, 'cpus-only'), wanted({'cpus': 1}), None),
        _limits.plan_container(container(dict(FRESH, Memory=4 * GiB, MemorySwap=8 * GiB), 'big-cut'), wanted({'memory': '1G'}), None),
    ]
    assert [p['name'] for p in _limits.order_plans(plans)] == ['big-cut', 'small-cut', 'grow', 'cpus-only']


# ---------------------------------------------------------------- usage

@pytest.mark.parametrize('tree, cid, parent, working_set', [
    ('cgroup_v1', '5f3c2b9d8e7a6f1c0b4d3e2a9f8c7b6a5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a', '', 54525952),
    ('cgroup_v2', '9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d', '', 2483027968),
    ('cgroup_v2', 'dead0000beef0000dead0000beef0000dead0000beef0000dead0000beef0000', 'sutazai-agents.slice', 520093696),
])
def test_usage_from_recorded_cgroup_trees(tree, cid, parent, working_set):
    item = container(dict(FRESH, CgroupParent=parent), cid=cid)
    engine = FakeEngine([item])
    assert _limits.read_usage(item, engine, cgroup_root=os.path.join(FIXTURES, tree)) == working_set
    assert engine.stats_calls == []


def test_usage_falls_back_to_the_engine_stats(tmp_path):
    item = container(FRESH)
    item['_usage'] = 77 * MiB
    engine = FakeEngine([item])
    assert _limits.read_usage(item, engine, cgroup_root=str(tmp_path)) == 77 * MiB
    assert _limits.read_usage(item, None, cgroup_root=str(tmp_path)) is None
    assert _limits.read_usage(container(FRESH, running=False), engine, cgroup_root=str(tmp_path)) is None


class RecordingHTTP(requests.adapters.BaseAdapter):
    """A transport for the SDK's APIClient: records each request and answers from `answers` {(method, path): (status, body)}."""

    def __init__(self, answers):
        super().__init__()
        self.answers = answers
        self.requests = []

    def send(self, request, **kwargs):  # pylint: disable=arguments-differ
        url = urllib.parse.urlsplit(request.url)
        path = url.path[len('/v1.41'):]
        self.requests.append((request.method, path, dict(urllib.parse.parse_qsl(url.query)),
                              json.loads(request.body) if request.body else None, request.headers.get('Content-Type')))
        status, body = self.answers[(request.method, path)]
        response = requests.Response()
        response.status_code, response.url, response.request = status, request.url, request
        response.reason = 'OK' if status == 200 else 'Error'
        response._content = json.dumps(body).encode()  # pylint: disable=protected-access
        return response

    def close(self):
        pass


def sdk_api(answers):
    """The docker SDK's real APIClient (API 1.41, so it asks nothing when made) over RecordingHTTP."""
    api = docker.APIClient(base_url='unix:///var/run/docker.sock', version='1.41')
    transport = RecordingHTTP(answers)
    api.mount('http+docker://', transport)
    return api, transport


def test_engine_stats_usage_less_inactive_file():
    api, transport = sdk_api({('GET', '/containers/abc/stats'): (200, {'memory_stats': {'usage': 300 * MiB,
                                                                                        'stats': {'total_inactive_file': 100 * MiB}}})})
    assert _limits.Engine(api).stats_usage('abc') == 200 * MiB
    assert transport.requests[0][2] == {'stream': 'False', 'one-shot': 'True'}


# ---------------------------------------------------------------- the task

def fleet(count=5, labels=None):
    items = []
    for index in range(count):
        item = container(FRESH, 'agent-%d' % index)
        item['Config']['Labels'] = dict(labels or {'sutazai.tier': '3'})
        item['_usage'] = 20 * MiB
        items.append(item)
    return items


def usage_of(engine):
    def reader(item, _ask_engine):
        return engine.containers[item['Id']].get('_usage')
    return reader


def run(engine, **kwargs):
    return _limits.run_task(engine, usage_reader=usage_of(engine), swap_reader=lambda item: engine.containers[item['Id']].get('_swap'), **kwargs)


def test_task_applies_every_container_in_one_pass_and_is_idempotent():
    engine = FakeEngine(fleet())
    entries = [{'name': 'agent-%d' % i, 'memory': '256M', 'cpus': 0.5} for i in range(5)]
    result = run(engine, entries=entries)
    assert result['changed'] is True
    assert len(engine.updates) == 5
    assert all(c['changed'] and c['after'] == {'memory': 256 * MiB, 'memory_swap': 512 * MiB, 'cpus': 0.5} for c in result['containers'])
    assert result['drift']['agent-0'] == {'memory': {'before': None, 'after': 256 * MiB}, 'memory_swap': {'before': None, 'after': 512 * MiB},
                                          'cpus': {'before': None, 'after': 0.5}}
    assert [d['before_header'] for d in result['diff']] == ['agent-%d' % i for i in range(5)]
    assert result['diff'][0]['after'] == {'memory': '256M', 'memory_swap': '512M', 'cpus': 0.5}
    again = run(engine, entries=entries)
    assert again['changed'] is False and again['drift'] == {} and again['diff'] == []
    assert len(engine.updates) == 5


def test_refusal_changes_no_container_and_lists_every_offender():
    items = fleet()
    items[3]['_usage'] = 200 * MiB
    engine = FakeEngine(items)
    entries = [{'name': 'agent-%d' % i, 'memory': '100M'} for i in range(5)]
    entries += [{'name': 'ghost', 'memory': '1G'}, {'name': 'agent-0x', 'memory': 'much'}]
    with pytest.raises(_limits.LimitsError) as info:
        run(engine, entries=entries)
    assert engine.updates == []
    assert info.value.problems == [
        'agent-3: memory 100M is below the 200M it uses now; the kernel would have to swap it out or OOM-kill it (force=true to set it anyway)',
        'ghost: no such container',
        "agent-0x: memory: 'much' is not a size; use bytes or a number with a unit such as 512M, 1.5GiB or 8G",
        'agent-0x: no such container',
    ]
    assert str(info.value).startswith('container_limits changed no container: 4 problems: agent-3: memory 100M')
    assert info.value.result['changed'] is False
    assert all(not c['changed'] for c in info.value.result['containers'])


def test_the_same_container_twice_is_refused():
    items = fleet(1)
    engine = FakeEngine(items)
    with pytest.raises(_limits.LimitsError) as info:
        run(engine, entries=[{'name': 'agent-0', 'cpus': 1}, {'name': items[0]['Id'][:12], 'cpus': 0.5}])
    assert info.value.problems == ['%s: the same container as agent-0 (id %s) is listed twice' % (items[0]['Id'][:12], items[0]['Id'][:12])]


def test_check_mode_sends_nothing_and_reports_the_drift():
    engine = FakeEngine(fleet(3))
    result = run(engine, entries=[{'name': 'agent-%d' % i, 'cpus': 1} for i in range(3)], check_mode=True)
    assert engine.updates == []
    assert result['changed'] is True
    assert sorted(result['drift']) == ['agent-0', 'agent-1', 'agent-2']
    assert all(c['after'] == {'cpus': 1.0} for c in result['containers'])


def test_selector_applies_the_limits_to_every_match():
    items = fleet(4)
    items[0]['Config']['Labels'] = {'sutazai.tier': '1'}
    engine = FakeEngine(items)
    result = run(engine, selector={'sutazai.tier': 3}, limits={'memory': '128M', 'cpus': None})
    assert [c['name'] for c in result['containers']] == ['agent-1', 'agent-2', 'agent-3']
    assert [cid for cid, _body in engine.updates] == [items[i]['Id'] for i in (1, 2, 3)]
    assert run(engine, selector={'sutazai.tier': None}, limits={'memory': '128M'})['containers'][0]['changed'] is True


def test_updates_are_sent_memory_cuts_first():
    items = [container(dict(FRESH, Memory=GiB, MemorySwap=2 * GiB), 'a'), container(FRESH, 'b'),
             container(dict(FRESH, Memory=2 * GiB, MemorySwap=4 * GiB), 'c')]
    for item in items:
        item['_usage'] = 10 * MiB
    engine = FakeEngine(items)
    result = run(engine, entries=[{'name': n, 'memory': '512M'} for n in 'abc'])
    assert [engine.containers[cid]['Name'] for cid, _body in engine.updates] == ['/c', '/a', '/b']
    assert [c['name'] for c in result['containers']] == ['a', 'b', 'c']  # reported in the order given


def test_engine_failure_names_the_container_and_what_was_already_changed():
    items = fleet(3)
    engine = FakeEngine(items)
    engine.fail_on = items[1]['Id']
    with pytest.raises(_limits.LimitsError) as info:
        run(engine, entries=[{'name': 'agent-%d' % i, 'cpus': 1} for i in range(3)])
    assert str(info.value) == ('the engine refused the update of agent-1: Cannot update container %s: something broke. '
                               'Already changed: agent-0.' % items[1]['Id'])
    reports = info.value.result['containers']
    assert [r['changed'] for r in reports] == [True, False, False]
    assert 'something broke' in reports[1]['error']


def test_a_value_the_engine_drops_fails_the_read_back():
    engine = FakeEngine(fleet(1), blkio=False)
    with pytest.raises(_limits.LimitsError) as info:
        run(engine, entries=[{'name': 'agent-0', 'blkio_weight': 300}])
    assert str(info.value).startswith('the engine accepted the updates but did not put every limit in force: '
                                      'agent-0: blkio_weight is None after the update, not 300')
    assert 'Weight discarded' in str(info.value)


def test_after_is_read_back_from_the_engine():
    engine = FakeEngine([container(QUOTA, 'q')])
    result = run(engine, entries=[{'name': 'q', 'cpus': 1.5}])
    assert engine.updates[0][1] == {'CpuPeriod': 100000, 'CpuQuota': 150000}
    assert result['containers'][0]['after'] == {'cpus': 1.5}
    assert engine.containers[engine.updates[0][0]]['HostConfig']['CpuQuota'] == 150000


def test_engine_select_and_update_calls():
    api, transport = sdk_api({('GET', '/containers/json'): (200, [{'Id': 'a' * 64}]),
                              ('POST', '/containers/abc/update'): (200, {'Warnings': 'one warning'})})
    engine = _limits.Engine(api)
    assert engine.select({'sutazai.tier': '3', 'sutazai.stack': None}) == ['a' * 64]
    method, path, query = transport.requests[0][:3]
    assert (method, path, query['all'], query['filters']) == ('GET', '/containers/json', '1', '{"label": ["sutazai.stack", "sutazai.tier=3"]}')
    # NanoCpus and PidsLimit, which the SDK's update_container cannot send, go as the JSON body
    assert engine.update('abc', {'NanoCpus': 1, 'PidsLimit': 0}) == ['one warning']
    assert transport.requests[1] == ('POST', '/containers/abc/update', {}, {'NanoCpus': 1, 'PidsLimit': 0}, 'application/json')


@pytest.mark.parametrize('status, error', [(404, None), (500, docker.errors.APIError), (409, docker.errors.APIError)])
def test_engine_inspect_404_is_none_other_errors_raise(status, error):
    api, _transport = sdk_api({('GET', '/containers/x/json'): (status, {'message': 'No such container: x' if status == 404 else 'boom'})})
    if error is None:
        assert _limits.Engine(api).inspect('x') is None
    else:
        with pytest.raises(error, match='boom'):
            _limits.Engine(api).inspect('x')


def test_engine_update_refusal_is_the_sdk_error_with_the_engine_message():
    api, _transport = sdk_api({('POST', '/containers/abc/update'): (409, {'message': 'Conflicting options: Nano CPUs cannot be updated'})})
    with pytest.raises(docker.errors.APIError) as caught:
        _limits.Engine(api).update('abc', {'NanoCpus': 1})
    assert caught.value.status_code == 409
    assert _limits.engine_message(caught.value) == 'Conflicting options: Nano CPUs cannot be updated'


@pytest.mark.parametrize('value, text', [
    (GiB, '1G'), (768 * MiB, '768M'), (1728 * MiB, '1728M'), (10145792, '9908K'), (10145793, '10145793'), (-1, -1), (None, None),
])
def test_diff_sizes_are_exact(value, text):
    assert _limits.diff_view({'memory': value}) == {'memory': text}
