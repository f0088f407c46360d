"""container_limits on the real engine: 30 containers of the local HTTP image, limits changed in place in one task.

The fleet: sutazai-hb-limits-00 .. sutazai-hb-limits-29, of which sutazai-hb-limits-07 holds 200 MB of real memory (HOLD_MB),
sutazai-hb-limits-10 .. 14 were started with -m 64m (so raising them needs MemorySwap in the same call) and
sutazai-hb-limits-29 was started with --cpu-quota 25000 (the engine refuses NanoCpus on it). Every limit the
module sets is read back with `docker inspect`; no container is recreated or restarted (same id, same
StartedAt, RestartCount 0). Everything carries the label sutazai.test=sutazai-hb-limits and is removed at the end,
even when a test fails.
"""

import concurrent.futures
import json
import os
import time
import urllib.request

import pytest

docker = pytest.importorskip('docker')

IMAGE = 'sutazai-testbed/http:latest'
LABEL = 'sutazai.test'
PREFIX = 'sutazai-hb-limits-'
TEST_LABEL = 'sutazai-hb-limits'
COUNT = 30
HOLDER = PREFIX + '07'
SMALL = [PREFIX + '%02d' % i for i in range(10, 15)]
QUOTA = PREFIX + '29'
MiB = 1024 * 1024
NAMES = [PREFIX + '%02d' % i for i in range(COUNT)]


def _remove_all(client):
    containers = client.containers.list(all=True, filters={'label': '%s=%s' % (LABEL, TEST_LABEL)})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: c.remove(force=True), containers))


def _start(client, name):
    kwargs = {'name': name, 'detach': True, 'labels': {LABEL: TEST_LABEL}}
    if name == HOLDER:
        kwargs['environment'] = {'HOLD_MB': '200'}
    if name in SMALL:
        kwargs['mem_limit'] = '64m'
    if name == QUOTA:
        kwargs['cpu_quota'] = 25000
    return client.containers.run(IMAGE, **kwargs)


def _held_mb(api, name):
    address = api.inspect_container(name)['NetworkSettings']['IPAddress']
    with urllib.request.urlopen('http://%s:8080/health' % address, timeout=5) as resp:
        return json.loads(resp.read())['held_mb']


@pytest.fixture(name='fleet', scope='module')
def fixture_fleet():
    """The 30 containers, started in parallel; the holder holding its 200 MB."""
    client = docker.from_env(timeout=120)
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip('%s is not built; run `make testbed`' % IMAGE)
    _remove_all(client)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda name: _start(client, name), NAMES))
        deadline = time.time() + 60
        while True:
            try:
                if _held_mb(client.api, HOLDER) >= 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError('%s did not come to hold 200 MB within 60 s' % HOLDER)
            time.sleep(0.5)
        yield client
    finally:
        _remove_all(client)
        client.close()


def inspect_all(client, names=NAMES):
    return dict((name, client.api.inspect_container(name)) for name in names)


def identity(inspected):
    """What a recreate or a restart would change."""
    return dict((name, (item['Id'], item['State']['StartedAt'], item['RestartCount'], item['State']['Running']))
                for name, item in inspected.items())


def test_limits_applied_to_30_containers_in_one_task(fleet, module_runner):
    before = inspect_all(fleet)
    containers = [{'name': name, 'memory': '256M', 'cpus': 0.5} for name in NAMES]
    result = module_runner('container_limits', {'containers': containers}, diff=True)
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert [c['name'] for c in result['containers']] == NAMES
    assert all(c['changed'] for c in result['containers'])
    assert len(result['diff']) == COUNT
    holder = next(c for c in result['containers'] if c['name'] == HOLDER)
    assert holder['usage'] >= 200 * MiB

    after = inspect_all(fleet)
    assert identity(after) == identity(before)  # nothing recreated, restarted or stopped
    for name, item in after.items():
        host_config = item['HostConfig']
        assert host_config['Memory'] == 256 * MiB, name
        assert host_config['MemorySwap'] == 512 * MiB, name  # the -m 64m ones kept their 2:1 swap ratio
        if name == QUOTA:
            assert (host_config['NanoCpus'], host_config['CpuQuota'], host_config['CpuPeriod']) == (0, 50000, 100000)
        else:
            assert host_config['NanoCpus'] == 500000000, name


def test_rerun_changes_nothing(fleet, module_runner):
    containers = [{'name': name, 'memory': '256M', 'cpus': 0.5} for name in NAMES]
    result = module_runner('container_limits', {'containers': containers})
    assert not result.get('failed'), result
    assert result['changed'] is False
    assert not any(c['changed'] for c in result['containers'])
    assert result['drift'] == {}


def test_refused_when_one_container_uses_more_than_its_new_limit(fleet, module_runner):
    before = inspect_all(fleet)
    containers = [{'name': name, 'memory': '100M', 'cpus': 1} for name in NAMES]
    result = module_runner('container_limits', {'containers': containers})
    assert result.get('failed') is True
    assert result['changed'] is False
    assert len(result['problems']) == 1
    assert result['problems'][0].startswith('%s: memory 100M is below the 2' % HOLDER), result['problems']
    assert HOLDER in result['msg'] and 'changed no container' in result['msg']
    after = inspect_all(fleet)
    for name in NAMES:  # no container changed, not even the 29 that would have been fine
        assert after[name]['HostConfig'] == before[name]['HostConfig'], name


def test_check_mode_changes_nothing(fleet, module_runner):
    before = inspect_all(fleet)
    containers = [{'name': name, 'memory': '384M', 'cpus': 1} for name in NAMES]
    result = module_runner('container_limits', {'containers': containers}, check=True, diff=True)
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert sorted(result['drift']) == NAMES
    assert result['drift'][PREFIX + '00']['memory'] == {'before': 256 * MiB, 'after': 384 * MiB}
    assert result['drift'][QUOTA]['cpus'] == {'before': 0.5, 'after': 1.0}
    after = inspect_all(fleet)
    for name in NAMES:
        assert after[name]['HostConfig'] == before[name]['HostConfig'], name


def test_selector_gives_every_match_the_same_limits(fleet, module_runner):
    result = module_runner('container_limits', {'selector': {LABEL: TEST_LABEL}, 'limits': {'cpus': 0.75, 'pids_limit': 200}})
    assert not result.get('failed'), result
    assert sorted(c['name'] for c in result['containers']) == NAMES
    after = inspect_all(fleet)
    for name, item in after.items():
        assert item['HostConfig']['PidsLimit'] == 200, name
        if name == QUOTA:
            assert item['HostConfig']['CpuQuota'] == 75000
        else:
            assert item['HostConfig']['NanoCpus'] == 750000000, name
    again = module_runner('container_limits', {'selector': {LABEL: TEST_LABEL}, 'limits': {'cpus': 0.75, 'pids_limit': 200}})
    assert again['changed'] is False


def test_cpus_on_a_container_created_with_cpu_quota_and_period(fleet, module_runner):
    name = PREFIX + 'quota-period'
    container = fleet.containers.run(IMAGE, name=name, detach=True, labels={LABEL: TEST_LABEL}, cpu_quota=50000, cpu_period=50000)
    try:
        before = identity({name: fleet.api.inspect_container(name)})
        result = module_runner('container_limits', {'containers': [{'name': name, 'cpus': 1.5}]})
        assert not result.get('failed'), result
        assert result['containers'][0]['before'] == {'cpus': 1.0}
        assert result['containers'][0]['after'] == {'cpus': 1.5}
        item = fleet.api.inspect_container(name)
        assert (item['HostConfig']['NanoCpus'], item['HostConfig']['CpuQuota'], item['HostConfig']['CpuPeriod']) == (0, 75000, 50000)
        assert identity({name: item}) == before
        quota_file = '/sys/fs/cgroup/cpu/docker/%s/cpu.cfs_quota_us' % container.id  # cgroup v1, cgroupfs driver (the test bed)
        if os.path.exists(quota_file):
            with open(quota_file, encoding='ascii') as handle:
                assert int(handle.read()) == 75000  # in force in the kernel, not only in the engine's record
        again = module_runner('container_limits', {'containers': [{'name': name, 'cpus': 1.5}]})
        assert again['changed'] is False
    finally:
        container.remove(force=True)


def test_unknown_container_and_bad_values_are_listed_together(fleet, module_runner):
    containers = [{'name': PREFIX + '00', 'memory': 'lots'}, {'name': PREFIX + 'ghost', 'cpus': 1}, {'name': PREFIX + '01', 'cpus': 64}]
    result = module_runner('container_limits', {'containers': containers})
    assert result.get('failed') is True
    assert result['problems'] == [
        "%s00: memory: 'lots' is not a size; use bytes or a number with a unit such as 512M, 1.5GiB or 8G" % PREFIX,
        '%sghost: no such container' % PREFIX,
        '%s01: cpus: 64.0 is above the %d CPUs of the host' % (PREFIX, fleet.info()['NCPU']),
    ]


def test_engine_from_docker_host_in_the_environment(fleet, module_runner):
    """The module reads DOCKER_HOST as the docker CLI does (here the engine's socket named explicitly)."""
    result = module_runner('container_limits', {'containers': [{'name': NAMES[0], 'pids_limit': 321}]},
                           extra_env={'DOCKER_HOST': 'unix:///var/run/docker.sock'})
    assert not result.get('failed'), result.get('msg')
    assert fleet.api.inspect_container(NAMES[0])['HostConfig']['PidsLimit'] == 321


def test_unreachable_engine_is_a_clear_failure_naming_it(module_runner):
    result = module_runner('container_limits', {'containers': [{'name': 'x', 'cpus': 1}], 'docker_host': 'unix:///nonexistent/docker.sock'})
    assert result['failed'] is True
    assert 'unix:///nonexistent/docker.sock' in result['msg'] and 'Traceback' not in result.get('module_stderr', '')
