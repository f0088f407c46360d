"""The stack role on this host's Docker engine, for real: compose project sutazai-st, stack cgroup sutazai-st,
the local image set, published ports shifted by 20000 (loopback only).

One stable deploy (module fixture) is read back and then changed step by step: a second run, check mode, a
limits-only change, a profile switch and a broken release. The playbooks run from a temporary directory
outside the checkout; everything is taken down in the fixture's finally.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
_VENV_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
ANSIBLE_PLAYBOOK = _VENV_PLAYBOOK if os.path.exists(_VENV_PLAYBOOK) else 'ansible-playbook'
HOST = 'lab-docker-host'
PROJECT = 'sutazai-st'
CGROUP = 'sutazai-st'
OFFSET = 20000
STACK_DIR = '/tmp/sutazai-st-stack'
BASE_VARS = {
    'stack_project': PROJECT,
    'stack_dir': STACK_DIR,
    'stack_image_set': 'local',
    'stack_cgroup_name': CGROUP,
    'stack_port_offset': OFFSET,
    'stack_health_timeout': 120,
}
TIER1 = ['postgres', 'redis', 'ollama', 'backend', 'frontend']

pytestmark = pytest.mark.skipif(subprocess.run(['docker', 'info'], capture_output=True, check=False).returncode != 0,
                                reason='needs the Docker engine')


def run_role(extra=None, check=False, diff=False, timeout=900):
    """Run the stack role once; return (stats, {task name: result}, [(task, msg) of failures], stdout)."""
    role_vars = dict(BASE_VARS)
    role_vars.update(extra or {})
    play = [{'name': 'stack', 'hosts': HOST, 'gather_facts': False,
             'roles': [{'role': 'sutazai.ops.stack', 'vars': role_vars}]}]
    env = dict(os.environ)
    env['PATH'] = os.path.dirname(ANSIBLE_PLAYBOOK) + os.pathsep + env.get('PATH', '')
    env.update({'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'), 'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
                'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1', 'ANSIBLE_NOCOLOR': '1'})
    with tempfile.TemporaryDirectory(prefix='sutazai-st-play-') as work:
        playbook = os.path.join(work, 'stack.yml')
        with open(playbook, 'w', encoding='utf-8') as handle:
            yaml.safe_dump(play, handle)
        cmd = [ANSIBLE_PLAYBOOK, '-i', os.path.join(ROOT, 'inventories', 'lab', 'hosts.yml'), playbook]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError('no json report (rc %s): %s\n%s' % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])) from exc
    stats = report['stats'][HOST]
    tasks = {}
    failures = []
    for play_report in report['plays']:
        for task in play_report['tasks']:
            result = task['hosts'].get(HOST, {})
            name = task['task']['name'].split(' : ', 1)[-1]
            tasks.setdefault(name, []).append(result)
            if result.get('failed') and not result.get('ignore_errors'):
                failures.append((name, result.get('msg')))
    return stats, tasks, failures, proc.stdout


def changed_tasks(tasks):
    return sorted(name for name, results in tasks.items() for r in results if r.get('changed'))


def docker(*args):
    return subprocess.run(['docker'] + list(args), capture_output=True, text=True, check=True).stdout


def containers():
    """service -> docker inspect of the project's containers (running or not)."""
    ids = docker('ps', '-aq', '--filter', 'label=com.docker.compose.project=%s' % PROJECT).split()
    if not ids:
        return {}
    return dict((c['Config']['Labels']['com.docker.compose.service'], c) for c in json.loads(docker('inspect', *ids)))


def running():
    return sorted(s for s, c in containers().items() if c['State']['Running'])


def identity():
    """service -> (container id, StartedAt): what a recreate or a restart changes."""
    return dict((s, (c['Id'], c['State']['StartedAt'])) for s, c in containers().items())


def compose_file():
    with open(os.path.join(STACK_DIR, 'compose.yml'), encoding='utf-8') as handle:
        return handle.read()


def _teardown():
    try:
        run_role({'stack_state': 'absent', 'stack_remove_volumes': True}, timeout=600)
    finally:
        ids = subprocess.run(['docker', 'ps', '-aq', '--filter', 'label=com.docker.compose.project=%s' % PROJECT],
                             capture_output=True, text=True, check=False).stdout.split()
        if ids:
            subprocess.run(['docker', 'rm', '-f'] + ids, capture_output=True, check=False)
        subprocess.run(['docker', 'network', 'rm', '%s_default' % PROJECT], capture_output=True, check=False)
        for volume in ('postgres-data', 'redis-data', 'ollama-data'):
            subprocess.run(['docker', 'volume', 'rm', '%s_%s' % (PROJECT, volume)], capture_output=True, check=False)
        path = '/sys/fs/cgroup/memory/%s' % CGROUP
        if os.path.isdir(path):
            subprocess.run(['rmdir', path], check=False)
        subprocess.run(['rm', '-rf', STACK_DIR], check=False)


@pytest.fixture(scope='module', name='stable')
def fixture_stable():
    """The stable profile deployed; taken down (volumes too) at the end, even when a test fails."""
    _teardown()
    try:
        stats, tasks, failures, _output = run_role()
        assert not failures, failures
        yield {'stats': stats, 'tasks': tasks}
    finally:
        _teardown()


def test_stable_limits_labels_cgroup_and_settings(stable):
    doc = yaml.safe_load(compose_file())
    found = containers()
    assert sorted(found) == sorted(['postgres', 'redis', 'ollama', 'backend', 'frontend', 'qdrant'])
    for service, container in found.items():
        planned = doc['services'][service]
        host = container['HostConfig']
        assert container['State']['Running'] and container['State']['Health']['Status'] == 'healthy', service
        assert host['Memory'] == int(planned['deploy']['resources']['limits']['memory']), service
        assert host['NanoCpus'] == int(round(float(planned['deploy']['resources']['limits']['cpus']) * 1e9)), service
        assert host['MemoryReservation'] == int(planned['deploy']['resources']['reservations']['memory']), service
        assert host['OomScoreAdj'] == planned['oom_score_adj'], service
        assert host['CgroupParent'] == '/' + CGROUP, service
        assert host['LogConfig'] == {'Type': 'json-file', 'Config': {'max-size': '10m', 'max-file': '3'}}, service
        assert host['RestartPolicy']['Name'] == 'unless-stopped', service
        labels = container['Config']['Labels']
        assert labels['sutazai.service'] == service
        assert labels['sutazai.tier'] == ('2' if service == 'qdrant' else '1')
    # the kernel's backstop: tier 2 is killed before tier 1
    assert found['qdrant']['HostConfig']['OomScoreAdj'] > found['postgres']['HostConfig']['OomScoreAdj']
    # seed 000's proportions on this host: postgres 4 slots, redis 2, ollama 12
    assert found['ollama']['HostConfig']['Memory'] == 3 * found['postgres']['HostConfig']['Memory']
    # the stack cgroup holds the containers and is capped
    with open('/sys/fs/cgroup/memory/%s/memory.limit_in_bytes' % CGROUP, encoding='ascii') as handle:
        cap = int(handle.read())
    with open('/proc/meminfo', encoding='ascii') as handle:
        memtotal = int(handle.readline().split()[1]) * 1024
    assert 0 < cap < memtotal
    assert os.path.isdir('/sys/fs/cgroup/memory/%s/%s' % (CGROUP, found['postgres']['Id']))
    # settings in force, read here independently of the role
    pg_limit = found['postgres']['HostConfig']['Memory']
    shared = docker('exec', '%s-postgres' % PROJECT, 'psql', '-U', 'sutazai', '-d', 'postgres', '-tAc',
                    "SELECT pg_size_bytes(current_setting('shared_buffers'))").strip()
    assert int(shared) == pg_limit // 4
    redis_limit = found['redis']['HostConfig']['Memory']
    maxmemory = docker('exec', '%s-redis' % PROJECT, 'redis-cli', 'CONFIG', 'GET', 'maxmemory').split()
    policy = docker('exec', '%s-redis' % PROJECT, 'redis-cli', 'CONFIG', 'GET', 'maxmemory-policy').split()
    assert int(maxmemory[1]) == redis_limit * 3 // 4
    assert policy[1] == 'allkeys-lru'
    env = found['ollama']['Config']['Env']
    assert 'OLLAMA_MAX_LOADED_MODELS=1' in env and 'OLLAMA_KEEP_ALIVE=1m' in env
    # the password is root-only on the host and not in the compose file
    mode = os.stat(os.path.join(STACK_DIR, 'postgres.env')).st_mode & 0o777
    assert mode == 0o600
    with open(os.path.join(STACK_DIR, 'postgres.env'), encoding='utf-8') as handle:
        password = handle.read().split('=', 1)[1].strip()
    assert len(password) == 32 and password not in compose_file()


def test_only_loopback_sockets(stable):
    published = set()
    for service, container in containers().items():
        for bindings in (container['HostConfig']['PortBindings'] or {}).values():
            for binding in bindings:
                assert binding['HostIp'] == '127.0.0.1', (service, binding)
                published.add(int(binding['HostPort']))
    assert published == {OFFSET + 11434, OFFSET + 8000, OFFSET + 8501}
    # every listening socket on those ports, from the kernel's table
    listening = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        with open(table, encoding='ascii') as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port = local.rsplit(':', 1)
                if state == '0A' and int(port, 16) in published:
                    listening.append((address, int(port, 16)))
    assert listening, 'no listening socket found for %s' % published
    assert all(address == '0100007F' for address, _port in listening), listening


def test_second_run_changes_nothing(stable):
    before = identity()
    stats, tasks, failures, _output = run_role()
    assert not failures, failures
    assert stats['changed'] == 0, changed_tasks(tasks)
    assert identity() == before


def test_check_mode_changes_nothing(stable):
    before, text = identity(), compose_file()
    stats, tasks, failures, _output = run_role({'stack_postgres_settings': {'work_mem': '8MB'}, 'stack_profile': 'emergency'},
                                               check=True, diff=True)
    assert not failures, failures
    assert stats['changed'] > 0
    diff = tasks['Validate the candidate and replace the live compose file'][0]['diff']
    assert 'work_mem=8MB' in json.dumps(diff)
    assert compose_file() == text
    assert identity() == before
    assert running() == sorted(before)


def test_limits_only_change_is_applied_in_place(stable):
    before = identity()
    old_memory = containers()['qdrant']['HostConfig']['Memory']
    plan = {'stack_plan': {'services': {'qdrant': {'weight': 3}, 'backend': {'cpus': 0.5}}}}
    stats, tasks, failures, _output = run_role(plan)
    assert not failures, failures
    found = containers()
    assert found['qdrant']['HostConfig']['Memory'] == old_memory * 3 // 4
    assert found['backend']['HostConfig']['NanoCpus'] == 500000000
    assert identity() == before, 'a limits-only change recreated or restarted a container'
    assert tasks['Change the limits in place (only limits changed)'][0]['changed']
    # the compose file records the new limits, and a later run with the same plan recreates nothing
    assert yaml.safe_load(compose_file())['services']['qdrant']['deploy']['resources']['limits']['memory'] == str(old_memory * 3 // 4)
    stats, tasks, failures, _output = run_role(plan)
    assert not failures, failures
    assert stats['changed'] == 0, changed_tasks(tasks)
    assert identity() == before
    # back to the plan's defaults, in place again
    stats, tasks, failures, _output = run_role()
    assert not failures, failures
    assert containers()['qdrant']['HostConfig']['Memory'] == old_memory
    assert identity() == before


def test_profile_switch_stops_and_restores(stable):
    stats, tasks, failures, out = run_role({'stack_profile': 'emergency'})
    assert not failures, failures
    assert running() == sorted(TIER1)
    said = tasks['Say which services the profile stopped'][0]['msg']
    assert 'qdrant' in said and 'emergency' in said
    stats, tasks, failures, out = run_role()
    assert not failures, failures
    assert running() == sorted(TIER1 + ['qdrant'])
    assert containers()['qdrant']['State']['Health']['Status'] == 'healthy'


@pytest.mark.parametrize('breakage, culprit', [
    # a healthcheck that never passes, on a tier 1 service
    ({'backend_healthcheck': {'test': ['CMD', 'false'], 'interval': '2s', 'timeout': '2s', 'retries': 2, 'start_period': '0s'}},
     'backend'),
    # a new agent whose image exits at once
    ({'agent': {'name': 'crasher', 'tier': 3, 'image': 'sutazai-testbed/base:latest', 'entrypoint': ['false']}}, 'crasher'),
])
def test_broken_release_is_rolled_back_and_fails(stable, breakage, culprit):
    good = identity()
    text = compose_file()
    services = yaml.safe_load(open(os.path.join(ROOT, 'roles', 'stack', 'defaults', 'main.yml'), encoding='utf-8'))['stack_services']
    extra = {'stack_health_timeout': 40}
    if 'backend_healthcheck' in breakage:
        for service in services:
            if service['name'] == 'backend':
                service['healthcheck'] = breakage['backend_healthcheck']
        extra['stack_services'] = services
    else:
        extra['stack_agents'] = [breakage['agent']]
    stats, tasks, failures, _output = run_role(extra)
    assert stats['failures'] == 1, 'the play must fail'
    message = failures[-1][1]
    assert culprit in message and 'Rolled back to the last good release' in message, message
    # the old release serves again: every service of it healthy, its compose file live again, no new service left
    found = containers()
    assert sorted(found) == sorted(good)
    for service, container in found.items():
        assert container['State']['Health']['Status'] == 'healthy', service
    assert yaml.safe_load(compose_file())['services']['backend']['healthcheck'] == yaml.safe_load(text)['services']['backend']['healthcheck']
    answer = subprocess.run(['curl', '-fsS', 'http://127.0.0.1:%d/health' % (OFFSET + 8000)], capture_output=True, check=False)
    assert answer.returncode == 0
    # the next run goes back to the catalogue without a failure
    stats, tasks, failures, _output = run_role()
    assert not failures, failures


def test_absent_takes_the_stack_down_and_keeps_the_data(stable):
    stats, tasks, failures, _output = run_role({'stack_state': 'absent'})
    assert not failures, failures
    assert containers() == {}
    networks = docker('network', 'ls', '--format', '{{.Name}}').split()
    assert '%s_default' % PROJECT not in networks
    volumes = docker('volume', 'ls', '--format', '{{.Name}}').split()
    assert '%s_postgres-data' % PROJECT in volumes, 'volumes are removed only with stack_remove_volumes'
    assert not os.path.exists('/sys/fs/cgroup/memory/%s' % CGROUP)
    assert not os.path.exists(os.path.join(STACK_DIR, 'compose.yml'))
    assert os.path.exists(os.path.join(STACK_DIR, 'postgres.env')), 'the password stays with the data'
    # a second removal changes nothing
    stats, tasks, failures, _output = run_role({'stack_state': 'absent'})
    assert not failures, failures
    assert stats['changed'] == 0, changed_tasks(tasks)
