"""testinfra checks of the stack scenario, on a host with its own Docker engine.

What the role must have put in force there: every service of the profile running and healthy, each container's
memory, CPUs, oom_score_adj and cgroup parent as the tier plan says for this host's size, PostgreSQL's
shared_buffers and Redis' maxmemory really set, the stack cgroup capped at the plan's stack budget, and a profile
switch stable -> emergency -> stable that stops the services leaving the profile and brings them back.

The expected figures come from the tier_limits filter itself, fed with the role's own catalogue and the host size the
scenario gives the role (group_vars in molecule.yml), so this file checks that the role applies the plan faithfully;
a few literal figures pin the plan for this 6 GiB host.
"""

import json
import os
import subprocess
import sys

import yaml

testinfra_hosts = ['all']  # pylint: disable=invalid-name

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
SCENARIO = os.path.join(ROOT, 'molecule', 'stack')
sys.path.insert(0, os.path.join(ROOT, '.collections'))

# pylint: disable=wrong-import-position
from ansible_collections.sutazai.ops.plugins.filter.tier_limits import FilterModule  # noqa: E402

PROJECT = 'sutazai'
MiB = 1024 * 1024
GiB = 1024 * MiB


def role_defaults():
    """The stack role's defaults/main.yml."""
    with open(os.path.join(ROOT, 'roles', 'stack', 'defaults', 'main.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def scenario_vars():
    """The variables the scenario gives the role (molecule.yml's group_vars)."""
    with open(os.path.join(SCENARIO, 'molecule.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)['provisioner']['inventory']['group_vars']['all']


def profile_services(profile):
    """{name: tier} of the default catalogue's services in `profile` (emergency: tier 1 only)."""
    services = {entry['name']: entry['tier'] for entry in role_defaults()['stack_services']}
    if profile == 'emergency':
        return {name: tier for name, tier in services.items() if tier == 1}
    return services


def plan(profile='stable'):
    """The tier plan for the scenario's host size, as the role should compute it."""
    given = scenario_vars()
    tier_limits = FilterModule().filters()['tier_limits']
    return tier_limits(profile_services(profile), given['stack_host_memory'], given['stack_host_cpus'])


def own_memory_cgroup(host):
    """The instance's own memory cgroup path (as the test bed names it), from PID 1's /proc/1/cgroup."""
    for line in host.file('/proc/1/cgroup').content_string.splitlines():
        _num, controllers, path = line.split(':', 2)
        if 'memory' in controllers.split(','):
            return path[:-len('/init.scope')] if path.endswith('/init.scope') else path
    raise AssertionError('no memory controller in /proc/1/cgroup')


def stack_cgroup(host):
    """The stack cgroup converge.yml asks for: inside the instance's own cgroup."""
    return own_memory_cgroup(host) + '/sutazai'


def oom_score_offset(host):
    """What the role adds to every tier's oom_score_adj: 0 where the engine may set negative scores
    (CAP_SYS_RESOURCE), else 500 (the role says so; tier order is kept). This VM grants no CAP_SYS_RESOURCE."""
    status = host.file('/proc/1/status').content_string
    cap_eff = int([line.split()[1] for line in status.splitlines() if line.startswith('CapEff:')][0], 16)
    return 0 if cap_eff >> 24 & 1 else 500


def containers(host):
    """{service: inspect} of the compose project's containers on the instance's engine (all, running or not)."""
    ids = host.check_output('docker ps -aq --filter label=com.docker.compose.project=%s', PROJECT).split()
    assert ids, 'no container of the compose project %s on this host' % PROJECT
    inspected = json.loads(host.check_output('docker inspect ' + ' '.join(ids)))
    return {item['Config']['Labels']['com.docker.compose.service']: item for item in inspected}


def container_named(host, service):
    """The container of `service` (its name as the engine knows it, without the leading slash)."""
    return containers(host)[service]['Name'].lstrip('/')


def assert_profile_running(host, profile):
    """Exactly the profile's services have a container, each running and healthy, labelled with its tier."""
    found = containers(host)
    wanted = profile_services(profile)
    assert sorted(found) == sorted(wanted), 'containers %s, profile %s wants %s' % (sorted(found), profile, sorted(wanted))
    for service, item in found.items():
        state = item['State']
        assert state['Status'] == 'running', '%s is %s' % (service, state['Status'])
        assert 'Health' in state, '%s has no healthcheck' % service
        assert state['Health']['Status'] == 'healthy', '%s health is %s' % (service, state['Health']['Status'])
        labels = item['Config']['Labels']
        assert labels.get('sutazai.service') == service
        assert labels.get('sutazai.tier') == str(wanted[service])


def test_inner_engine_is_the_hosts_own(host):
    """The stack runs on the instance's engine, not the test bed's: its engine has a different ID and the containers'
    default cgroup parent (daemon.json, written at boot by the image's docker.service drop-in) is inside the instance."""
    daemon = json.loads(host.file('/etc/docker/daemon.json').content_string)
    assert daemon['cgroup-parent'] == own_memory_cgroup(host) + '/dind'
    inner_id = host.check_output("docker info --format '{{.ID}}'")
    outer_id = subprocess.run(['docker', 'info', '--format', '{{.ID}}'], capture_output=True, text=True, check=True).stdout.strip()
    assert inner_id and inner_id != outer_id


def test_every_service_running_and_healthy(host):
    """stable: tiers 1 and 2 of the default catalogue, each running, healthy and labelled."""
    assert_profile_running(host, 'stable')


def test_plan_for_this_host():
    """The figures of the plan for a 6 GiB, 2-CPU host that the checks below expect (pins the filter's table)."""
    services = plan()['services']
    assert services['postgres']['memory'] == 256 * MiB
    assert services['redis']['memory'] == 128 * MiB
    assert services['ollama']['memory'] == 1 * GiB
    assert services['qdrant']['oom_score_adj'] == 0
    assert plan()['budget']['usable'] == 4 * GiB


def test_limits_as_planned(host):
    """HostConfig.Memory / NanoCpus / OomScoreAdj / CgroupParent of every container are the plan's."""
    planned = plan()['services']
    offset = oom_score_offset(host)
    for service, item in containers(host).items():
        config = item['HostConfig']
        want = planned[service]
        assert config['Memory'] == want['memory'], service
        assert config['NanoCpus'] == int(round(want['cpus'] * 1e9)), service
        assert config['OomScoreAdj'] == want['oom_score_adj'] + offset, service
        assert '/' + config['CgroupParent'].strip('/') == stack_cgroup(host), service


def test_postgres_shared_buffers_in_force(host):
    """SHOW shared_buffers answers a quarter of postgres' memory limit."""
    limit = plan()['services']['postgres']['memory']
    shown = host.check_output('docker exec %s psql -U sutazai -d sutazai -Atc "SHOW shared_buffers"', container_named(host, 'postgres'))
    assert shown == '%dMB' % (limit // 4 // MiB)


def test_redis_maxmemory_in_force(host):
    """CONFIG GET maxmemory answers the role's fraction of redis' limit, with allkeys-lru."""
    limit = plan()['services']['redis']['memory']
    fraction = role_defaults()['stack_redis_maxmemory_fraction']
    name = container_named(host, 'redis')
    maxmemory = host.check_output('docker exec %s redis-cli CONFIG GET maxmemory', name).split()
    policy = host.check_output('docker exec %s redis-cli CONFIG GET maxmemory-policy', name).split()
    assert maxmemory[0] == 'maxmemory' and abs(int(maxmemory[1]) - limit * fraction) <= MiB
    assert policy == ['maxmemory-policy', 'allkeys-lru']


def test_stack_cgroup_capped(host):
    """The stack cgroup exists inside the instance's cgroup, holds every container, and is capped at the plan's
    stack budget (host memory less the system reserve)."""
    path = '/sys/fs/cgroup/memory' + stack_cgroup(host)
    assert int(host.file(path + '/memory.limit_in_bytes').content_string) == plan()['budget']['usable']
    for service, item in containers(host).items():
        assert host.file('%s/%s' % (path, item['Id'])).is_directory, '%s is not in the stack cgroup' % service


def run_converge(profile):
    """Converge again with another profile (the scenario's converge.yml, -e stack_test_profile=...)."""
    inventory = os.environ['MOLECULE_INVENTORY_FILE']
    proc = subprocess.run(['ansible-playbook', '-i', inventory, os.path.join(SCENARIO, 'converge.yml'),
                           '-e', 'stack_test_profile=' + profile],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, 'converge with %s failed:\n%s\n%s' % (profile, proc.stdout[-4000:], proc.stderr[-2000:])
    return proc.stdout


def test_profile_switch_stable_emergency_stable(host):
    """emergency stops and removes the services that leave the profile (qdrant, tier 2) and says which; tier 1 keeps
    running and healthy; back to stable brings qdrant back. Always ends on stable, so verify can run again."""
    before = {service: item['Id'] for service, item in containers(host).items()}
    try:
        output = run_converge('emergency')
        assert_profile_running(host, 'emergency')
        assert 'qdrant' in output
        after = {service: item['Id'] for service, item in containers(host).items()}
        # tier 1 containers were not recreated by the switch
        assert all(after[service] == before[service] for service in after)
    finally:
        run_converge('stable')
    assert_profile_running(host, 'stable')
