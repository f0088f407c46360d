"""The stack role's Swarm lane (stack_engine: swarm) on a host with its own Docker engine.

The host is a sutazai-testbed/dind container (testbed/images/dind): systemd, its own dockerd, a host directory as its
/var/lib/docker, on a network this module creates; the test bed's own engine never joins a swarm (checked before and
after). The role initialises a single-node swarm there (stack_swarm_init) and deploys a small catalogue of the http
stand-in: backend with 2 replicas and frontend with a published port. This kernel has no IPVS, so services use
endpoint_mode dnsrr and host-mode ports (stack_swarm_endpoint_mode / stack_swarm_port_mode).

Then: a rolling update of backend (a new environment value) replaces its tasks and completes; an update whose new tasks
fail (the stand-in cannot parse its PORT and exits) is rolled back by Swarm itself (update_config failure_action
rollback): the service ends in rollback_completed with the previous spec's tasks running.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
_VENV_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
ANSIBLE_PLAYBOOK = _VENV_PLAYBOOK if os.path.exists(_VENV_PLAYBOOK) else 'ansible-playbook'

PREFIX = os.environ.get("SUTAZAI_SWARM_PREFIX", "sutazai-dind-swarm")
HOST = PREFIX + '-1'
NETWORK = PREFIX + '-net'
HOST_DIR = '/var/tmp/' + HOST
DIND_IMAGE = 'sutazai-testbed/dind:latest'
HTTP_IMAGE = 'sutazai-testbed/http:latest'
STACK = 'sutazai'
SWARM_TASKS = os.path.join(ROOT, 'roles', 'stack', 'tasks', 'swarm.yml')

# the systemd flags of the test bed (TESTBED.md) plus what an inner dockerd needs
DIND_RUN_FLAGS = [
    '--cap-add', 'SYS_ADMIN', '--cap-add', 'NET_ADMIN', '--cap-add', 'SYS_PTRACE',
    '--cgroupns', 'host', '--security-opt', 'seccomp=unconfined',
    '--tmpfs', '/run', '--tmpfs', '/run/lock', '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw',
]

pytestmark = pytest.mark.skipif(not os.path.exists(SWARM_TASKS),
                                reason='the stack role has no Swarm tasks yet (roles/stack/tasks/swarm.yml)')


def docker(*args, check=True, stdin=None, timeout=300):
    """Run the test bed's docker CLI; return its stdout."""
    proc = subprocess.run(['docker', *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('docker %s failed (rc %s): %s' % (' '.join(args), proc.returncode, proc.stderr.strip()))
    return proc.stdout.strip()


def inner(*args, check=True, timeout=300):
    """Run docker inside the dind host (its own engine)."""
    return docker('exec', HOST, 'docker', *args, check=check, timeout=timeout)


def start_dind_host(name, network, host_dir, memory):
    """Start a dind host and wait for its engine; return the seconds it took."""
    os.makedirs(host_dir, exist_ok=True)
    start = time.monotonic()
    docker('run', '-d', '--name', name, '--hostname', name, '--network', network, *DIND_RUN_FLAGS,
           '-v', '%s:/var/lib/docker' % host_dir, '--memory', memory, '--memory-swap', memory,
           '--label', 'sutazai.test=%s' % PREFIX, DIND_IMAGE, '/lib/systemd/systemd')
    deadline = start + 120
    while time.monotonic() < deadline:
        probe = subprocess.run(['docker', 'exec', name, 'docker', 'version', '--format', '{{.Server.Version}}'],
                               capture_output=True, text=True, timeout=60, check=False)
        if probe.returncode == 0 and probe.stdout.strip():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError('the engine of %s did not come up: %s' % (name, docker('logs', '--tail', '30', name, check=False)))


def load_image(name, image):
    """docker save IMAGE | docker exec -i HOST docker load."""
    save = subprocess.Popen(['docker', 'save', image], stdout=subprocess.PIPE)
    try:
        load = subprocess.run(['docker', 'exec', '-i', name, 'docker', 'load'], stdin=save.stdout,
                              capture_output=True, timeout=300, check=False)
    finally:
        save.stdout.close()
        save.wait()
    assert save.returncode == 0 and load.returncode == 0, load.stderr


def remove_dind_host(name, host_dir):
    """Remove the host (its engine and every task die with it) and its data directory."""
    docker('rm', '-f', '-v', name, check=False)
    shutil.rmtree(host_dir, ignore_errors=True)


def run_stack_role(role_vars, timeout=900):
    """Run sutazai.ops.stack on the dind host (connection community.docker.docker); return the play stats and the
    failed tasks' (name, msg)."""
    work = tempfile.mkdtemp(prefix=PREFIX + '-play-')
    try:
        inventory = os.path.join(work, 'hosts.yml')
        with open(inventory, 'w', encoding='utf-8') as handle:
            yaml.safe_dump({'all': {'hosts': {HOST: {'ansible_connection': 'community.docker.docker',
                                                     'ansible_python_interpreter': '/usr/bin/python3'}}}}, handle)
        playbook = os.path.join(work, 'play.yml')
        with open(playbook, 'w', encoding='utf-8') as handle:
            yaml.safe_dump([{'name': 'swarm lane', 'hosts': HOST, 'gather_facts': True,
                             'roles': [{'role': 'sutazai.ops.stack', 'vars': role_vars}]}], handle)
        env = dict(os.environ)
        env.update({'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'), 'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
                    'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1', 'ANSIBLE_NOCOLOR': '1'})
        if os.path.isabs(ANSIBLE_PLAYBOOK):
            env['PATH'] = os.path.dirname(ANSIBLE_PLAYBOOK) + os.pathsep + env.get('PATH', '')
        proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', inventory, playbook], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        report = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError('ansible-playbook gave no report (rc %s): %s\n%s' % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])) from exc
    stats = dict(report['stats'].get(HOST, {}))
    stats['failed_tasks'] = [(task['task']['name'], '%s %s' % (task['hosts'][HOST].get('msg'), task['hosts'][HOST].get('stderr', '')))
                             for play in report['plays'] for task in play['tasks']
                             if task['hosts'].get(HOST, {}).get('failed') and not task['hosts'][HOST].get('ignore_errors')]
    return stats


def catalogue(backend_environment=None, cpus_reservation=0.25):
    """Two services of the http stand-in: backend (2 replicas, not published) and frontend (published, host mode).
    Swarm schedules by reservations: small CPU reservations (cpus_reservation) leave room on this 2-CPU node for both
    services and for the extra task of a start-first update; None keeps the tier plan's."""
    backend_env = {'PORT': '8000'}
    backend_env.update(backend_environment or {})
    services = [
        {'name': 'backend', 'tier': 1, 'image': 'backend', 'port': 8000, 'publish': None, 'replicas': 2,
         'health_path': '/health', 'environment': backend_env},
        {'name': 'frontend', 'tier': 1, 'image': 'frontend', 'port': 8501, 'publish': 8501, 'health_path': '/health',
         'environment': {'PORT': '8501'}},
    ]
    if cpus_reservation is not None:
        for entry in services:
            entry['cpus_reservation'] = cpus_reservation
    return services


def role_vars(backend_environment=None, cpus_reservation=0.25):
    """The role's variables for the swarm lane."""
    return {
        'stack_engine': 'swarm', 'stack_swarm_init': True, 'stack_image_set': 'local',
        'stack_services': catalogue(backend_environment, cpus_reservation), 'stack_agents': [],
        'stack_swarm_endpoint_mode': 'dnsrr', 'stack_swarm_port_mode': 'host', 'stack_swarm_update_monitor': '5s',
        'stack_host_memory': '6G', 'stack_host_cpus': 2, 'stack_health_timeout': 120,
    }


def service(name):
    """docker service inspect of <stack>_<name> on the dind host."""
    return json.loads(inner('service', 'inspect', '%s_%s' % (STACK, name)))[0]


def running_tasks(name):
    """The tasks of <stack>_<name> whose desired and current state is running, each with its spec's environment."""
    ids = inner('service', 'ps', '-q', '--filter', 'desired-state=running', '%s_%s' % (STACK, name)).split()
    tasks = json.loads(inner('inspect', *ids)) if ids else []
    return [task for task in tasks if task['Status']['State'] == 'running']


def two_running(name):
    """The running tasks of <stack>_<name> when there are exactly two, else None."""
    tasks = running_tasks(name)
    return tasks if len(tasks) == 2 else None


def task_env(task):
    """{name: value} of a task's container spec environment."""
    return dict(item.split('=', 1) for item in task['Spec']['ContainerSpec'].get('Env', []))


def wait_for(predicate, what, timeout=180, interval=1.0):
    """Poll until predicate() is truthy; fail naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def outer_swarm_state():
    """The test bed's own engine's swarm state (must stay inactive)."""
    return docker('info', '--format', '{{.Swarm.LocalNodeState}}')


@pytest.fixture(name='swarm_host', scope='module')
def fixture_swarm_host():
    """A dind host with the http stand-in loaded, on its own network; removed with its data afterwards."""
    assert outer_swarm_state() == 'inactive', 'the test bed engine is in a swarm before the test'
    remove_dind_host(HOST, HOST_DIR)
    docker('network', 'rm', NETWORK, check=False)
    docker('network', 'create', '--label', 'sutazai.test=%s' % PREFIX, NETWORK)
    try:
        up = start_dind_host(HOST, NETWORK, HOST_DIR, '6g')
        start = time.monotonic()
        load_image(HOST, HTTP_IMAGE)
        print('dind host up in %.1f s, %s loaded in %.1f s' % (up, HTTP_IMAGE, time.monotonic() - start))
        yield HOST
    finally:
        remove_dind_host(HOST, HOST_DIR)
        docker('network', 'rm', NETWORK, check=False)
        assert outer_swarm_state() == 'inactive', 'the test bed engine was left in a swarm'


@pytest.fixture(name='deployed', scope='module')
def fixture_deployed(swarm_host):
    """The first deploy (swarm init + stack deploy); its play stats."""
    return swarm_host, run_stack_role(role_vars())


def test_deploy_initialises_swarm_and_runs_replicas(deployed):
    """A single-node swarm on the dind host (not on the test bed), backend with 2 running replicas, frontend
    answering on its host-mode port, dnsrr endpoints."""
    _host, stats = deployed
    assert stats.get('failures', 0) == 0 and not stats['failed_tasks'], stats['failed_tasks']
    assert inner('info', '--format', '{{.Swarm.LocalNodeState}}') == 'active'
    assert outer_swarm_state() == 'inactive'
    backend = service('backend')
    assert backend['Spec']['Mode']['Replicated']['Replicas'] == 2
    assert backend['Spec']['EndpointSpec']['Mode'] == 'dnsrr'
    wait_for(lambda: len(running_tasks('backend')) == 2, 'two running backend tasks')
    frontend = service('frontend')
    ports = frontend['Spec']['EndpointSpec'].get('Ports', [])
    assert [(port['TargetPort'], port['PublishedPort'], port['PublishMode']) for port in ports] == [(8501, 8501, 'host')]
    body = wait_for(lambda: docker('exec', HOST, 'curl', '-fsS', 'http://127.0.0.1:8501/health', check=False),
                    'frontend on host port 8501')
    assert json.loads(body)['status'] == 'ok'


def test_update_config_as_planned(deployed):
    """update_config: parallelism 1, start-first, failure_action rollback, a monitor period; rollback_config set."""
    spec = service('backend')['Spec']
    update = spec['UpdateConfig']
    assert update['Parallelism'] == 1
    assert update['Order'] == 'start-first'
    assert update['FailureAction'] == 'rollback'
    assert update['Monitor'] == 5 * 10 ** 9
    assert 'RollbackConfig' in spec
    # the plan's memory limit is on every task
    assert spec['TaskTemplate']['Resources']['Limits']['MemoryBytes'] > 0


def test_rolling_update_of_backend(deployed):
    """A changed environment value rolls backend's tasks over one at a time; the update completes with 2 new tasks."""
    before = {task['ID'] for task in running_tasks('backend')}
    stats = run_stack_role(role_vars({'RELEASE': '2'}))
    assert stats.get('failures', 0) == 0 and not stats['failed_tasks'], stats['failed_tasks']
    wait_for(lambda: service('backend').get('UpdateStatus', {}).get('State') == 'completed', 'the update to complete')
    tasks = wait_for(lambda: two_running('backend'), 'two running backend tasks')
    assert all(task_env(task).get('RELEASE') == '2' for task in tasks)
    assert not before & {task['ID'] for task in tasks}


@pytest.fixture(name='failed_update', scope='module')
def fixture_failed_update(deployed):
    """An update of backend whose new tasks exit at start (PORT is not a number); the play's stats."""
    return run_stack_role(role_vars({'RELEASE': '2', 'PORT': 'not-a-port'}))


def test_failed_update_rolls_back_by_itself(failed_update):
    """Swarm rolls backend back to the previous spec by itself (update_config failure_action rollback): the service
    ends in rollback_completed, its spec is the previous one and 2 tasks of it run."""
    assert failed_update is not None
    state = wait_for(lambda: service('backend').get('UpdateStatus', {}).get('State') in ('rollback_completed', 'rollback_paused')
                     and service('backend')['UpdateStatus']['State'], 'the rollback', timeout=240)
    assert state == 'rollback_completed', service('backend').get('UpdateStatus')
    assert task_env({'Spec': {'ContainerSpec': service('backend')['Spec']['TaskTemplate']['ContainerSpec']}})['PORT'] == '8000'
    tasks = wait_for(lambda: two_running('backend'), 'two running backend tasks')
    assert all(task_env(task)['PORT'] == '8000' and task_env(task).get('RELEASE') == '2' for task in tasks)


def test_failed_update_fails_the_play(failed_update):
    """A deploy whose update Swarm rolled back must not pass silently: the play fails naming backend."""
    assert failed_update.get('failures', 0) > 0, 'the play passed although the update of backend was rolled back'
    assert any('backend' in str(msg) for _name, msg in failed_update['failed_tasks']), failed_update['failed_tasks']


def test_plan_reservations_fit_the_node(deployed):
    """With the tier plan's own reservations (no override), every replica of backend and frontend is scheduled and
    running on this 2-CPU node, or the play fails saying why."""
    stats = run_stack_role(role_vars({'RELEASE': '3'}, cpus_reservation=None))
    if stats.get('failures', 0) > 0:
        return
    try:
        wait_for(lambda: len(running_tasks('backend')) == 2 and len(running_tasks('frontend')) == 1
                 and service('backend').get('UpdateStatus', {}).get('State') == 'completed',
                 'every replica running with the plan\'s reservations', timeout=90)
    except AssertionError as exc:
        pending = inner('service', 'ps', '--no-trunc', '--format', '{{.Name}} {{.CurrentState}} {{.Error}}',
                        '%s_backend' % STACK, '%s_frontend' % STACK)
        raise AssertionError('%s; the play passed; tasks:\n%s' % (exc, pending)) from exc
