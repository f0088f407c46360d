"""The stack role's Swarm lane: across fleet hosts (stack_swarm_manager) and on a lone host (stack_swarm_init).

Three docker-in-docker hosts of bench/fleet/dind_fleet.py (systemd, their own dockerd, a network of their own, the
http stand-in loaded into every engine: no registry), in one play: the manager initialises the swarm (advertising the
address given in its host vars), the others join it as workers with the token read on the manager, and the manager
alone deploys the catalogue once every node is ready: backend with 3 replicas (not published), frontend with a
host-mode port. This kernel has no IPVS, so services use endpoint_mode dnsrr and host-mode ports
(stack_swarm_endpoint_mode / stack_swarm_port_mode). The test bed's own engine never joins a swarm.

The catalogue carries the tier plan's own reservations (1 CPU per backend task: with frontend and the extra task of a
start-first update 4.25 CPUs, more than one 2-CPU node has, within three), and HTTP health checks probed every second
(the role's default probes every 10 s; Swarm counts a task as running once it is healthy).

Then: update_config and rollback_config are as planned; the rerun changes nothing on any host; reservations the
nodes cannot hold together are refused before the deploy with the figures (the CPUs of all three nodes); an update
whose new backend image exits at start (an image built on every node) is rolled back by Swarm itself (update_config
failure_action rollback) - rollback_completed, the previous spec's tasks running on the nodes - and the play fails
naming backend. Last, one worker leaves and the role, run on it alone with stack_swarm_init, makes it a single-node
swarm and deploys the stack there; in the next fleet play (a new backend environment value and smaller reservations)
that worker, now in another swarm, fails naming it and is left in that swarm, while the manager rolls backend's tasks
over to the new spec on the nodes still in the swarm and the update completes.

Also: before any swarm exists, a batch of the manager alone (serial 1) is refused naming the workers, and a --check run
passes creating nothing; after the deploy, stack_pull never with a backend image on the manager alone fails every node
lacking it before anything changes; at the end stack_state absent removes the stack from the manager.
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
sys.path.insert(0, os.path.join(ROOT, 'bench', 'fleet'))
import dind_fleet  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = os.environ.get('SUTAZAI_FLEET_SWARM_PREFIX', 'sutazai-sw-fleet')
HOST_MEMORY = '2g'
HTTP_IMAGE = 'sutazai-testbed/http:latest'
BROKEN_IMAGE = PREFIX + '-broken:latest'
STACK = 'sutazai'
STACK_DIR = '/opt/sutazai/stack'
BACKEND_REPLICAS = 3
SWARM_TASKS = os.path.join(ROOT, 'roles', 'stack', 'tasks', 'swarm.yml')

pytestmark = pytest.mark.skipif(not os.path.exists(SWARM_TASKS),
                                reason='the stack role has no Swarm tasks yet (roles/stack/tasks/swarm.yml)')


# the test bed's docker CLI and docker inside a fleet host: the fleet library's
docker = dind_fleet.docker
inner = dind_fleet.inner


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


class SwarmFleet:
    """The fleet, its manager and workers, and a runner of the stack role over all of them."""

    def __init__(self, fleet, manager_addr):
        self.fleet = fleet
        self.manager = fleet.hosts[0]
        self.workers = fleet.hosts[1:]
        self.manager_addr = manager_addr

    def run_role(self, role_vars, timeout=900, limit=None, serial=None, check=False):
        """Run sutazai.ops.stack over every host of the fleet (or the one host `limit`; in batches of `serial`; in check
        mode with `check`); return {host: stats with failed_tasks and changed_tasks}."""
        work = tempfile.mkdtemp(prefix=PREFIX + '-play-')
        try:
            inventory = self.fleet.inventory(os.path.join(work, 'hosts.json'),
                                             host_vars={self.manager: {'stack_swarm_advertise_addr': self.manager_addr}})
            playbook = os.path.join(work, 'play.yml')
            with open(playbook, 'w', encoding='utf-8') as handle:
                play = {'name': 'swarm over the fleet', 'hosts': 'sutazai_hosts', 'gather_facts': True,
                        'roles': [{'role': 'sutazai.ops.stack', 'vars': role_vars}]}
                if serial is not None:
                    play['serial'] = serial
                yaml.safe_dump([play], handle)
            env = dind_fleet.env()
            env.update({'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json', 'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1'})
            start = time.monotonic()
            argv = ([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', inventory, playbook]
                    + (['--limit', limit] if limit else []) + (['--check'] if check else []))
            proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
            took = time.monotonic() - start
        finally:
            shutil.rmtree(work, ignore_errors=True)
        try:
            report = json.loads(proc.stdout)
        except ValueError as exc:
            raise AssertionError('ansible-playbook gave no report (rc %s): %s\n%s'
                                 % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])) from exc
        result = {}
        for host in self.fleet.hosts:
            stats = dict(report['stats'].get(host, {}))
            stats['failed_tasks'] = [
                (task['task']['name'].split(' : ', 1)[-1], '%s %s' % (task['hosts'][host].get('msg'), task['hosts'][host].get('stderr', '')))
                for play in report['plays'] for task in play['tasks']
                if task['hosts'].get(host, {}).get('failed') and not task['hosts'][host].get('ignore_errors')]
            stats['changed_tasks'] = [task['task']['name'].split(' : ', 1)[-1] for play in report['plays'] for task in play['tasks']
                                      if task['hosts'].get(host, {}).get('changed')]
            result[host] = stats
        print('play over %s: %.1f s' % (limit or '%d hosts' % len(self.fleet.hosts), took))
        return result

    def service(self, name, host=None):
        """docker service inspect of <stack>_<name> on the manager (or on `host`)."""
        return json.loads(inner(host or self.manager, 'service', 'inspect', '%s_%s' % (STACK, name)))[0]

    def running_tasks(self, name, host=None):
        """The tasks of <stack>_<name> whose desired and current state is running, read on the manager (or `host`)."""
        ids = inner(host or self.manager, 'service', 'ps', '-q', '--no-trunc', '--filter', 'desired-state=running',
                    '%s_%s' % (STACK, name)).split()
        tasks = json.loads(inner(host or self.manager, 'inspect', *ids)) if ids else []
        return [task for task in tasks if task['Status']['State'] == 'running']

    def nodes(self):
        """{node ID: node inspect} of the swarm, read on the manager."""
        ids = inner(self.manager, 'node', 'ls', '-q').split()
        return {node['ID']: node for node in json.loads(inner(self.manager, 'node', 'inspect', *ids))}

    def hosts_of(self, tasks):
        """{task ID: hostname of the node it runs on}."""
        nodes = self.nodes()
        return {task['ID']: nodes[task['NodeID']]['Description']['Hostname'] for task in tasks}


def health_check(port):
    """The HTTP health check of the stand-in on PORT, probed every second."""
    return {'test': ['CMD', 'curl', '-fsS', '-o', '/dev/null', 'http://127.0.0.1:%d/health' % port], 'interval': '1s',
            'timeout': '5s', 'retries': 3, 'start_period': '20s'}


def role_vars(manager, backend_image=None, backend_environment=None, backend_cpus=None, replicas=BACKEND_REPLICAS,
              **overrides):
    """The stack role over the fleet: swarm engine, the manager named, dnsrr endpoints and host-mode ports; a catalogue
    of backend (3 replicas, one per node when spread) and frontend (published on the host of its task) with the tier
    plan's reservations (backend_cpus: backend reserving that many CPUs per task, frontend 0.25). manager None: the
    swarm of the host's engine alone, initialised where there is none (stack_swarm_init)."""
    backend = {'name': 'backend', 'tier': 1, 'image': backend_image or 'backend', 'port': 8000, 'publish': None,
               'replicas': replicas, 'health_path': '/health', 'healthcheck': health_check(8000),
               'environment': dict({'PORT': '8000'}, **(backend_environment or {}))}
    frontend = {'name': 'frontend', 'tier': 1, 'image': 'frontend', 'port': 8501, 'publish': 8501, 'health_path': '/health',
                'healthcheck': health_check(8501), 'environment': {'PORT': '8501'}}
    if backend_cpus is not None:
        backend['cpus_reservation'] = backend_cpus
        frontend['cpus_reservation'] = 0.25
    return {
        'stack_engine': 'swarm', 'stack_swarm_manager': manager, 'stack_swarm_init': manager is None,
        'stack_image_set': 'local',
        'stack_services': [backend, frontend], 'stack_agents': [],
        'stack_swarm_endpoint_mode': 'dnsrr', 'stack_swarm_port_mode': 'host', 'stack_swarm_update_monitor': '5s',
        'stack_host_memory': '6G', 'stack_host_cpus': 2, 'stack_health_timeout': 120,
        **overrides,
    }


def build_broken_image(host):
    """A backend image whose process exits at once, built in the host's own engine (no registry)."""
    dockerfile = 'FROM %s\nENTRYPOINT ["sh", "-c", "echo this release cannot start; exit 3"]\n' % HTTP_IMAGE
    docker('exec', '-i', host, 'docker', 'build', '-q', '-t', BROKEN_IMAGE, '-', stdin=dockerfile)


@pytest.fixture(name='swarm_fleet', scope='module')
def fixture_swarm_fleet():
    """Three dind hosts with the http stand-in and the broken image in every engine; removed with their data and
    network afterwards, whatever happened."""
    assert outer_swarm_state() == 'inactive', 'the test bed engine is in a swarm before the test'
    fleet = dind_fleet.Fleet(PREFIX, [HOST_MEMORY] * 3)
    try:
        took = fleet.start(images=[HTTP_IMAGE])
        for host in fleet.hosts:
            build_broken_image(host)
        print('3 dind hosts up, %s loaded and the broken image built in %.1f s' % (HTTP_IMAGE, took))
        manager_addr = docker('inspect', '--format',
                              '{{ (index .NetworkSettings.Networks "%s").IPAddress }}' % fleet.network, fleet.hosts[0])
        yield SwarmFleet(fleet, manager_addr)
    finally:
        fleet.destroy()
        assert outer_swarm_state() == 'inactive', 'the test bed engine was left in a swarm'


def test_manager_not_in_the_play_is_refused(swarm_fleet):
    """A manager name that is no host of the play fails preflight on every host, saying so, before anything changes."""
    stats = swarm_fleet.run_role(role_vars('no-such-host'))
    for host in swarm_fleet.fleet.hosts:
        assert stats[host].get('failures', 0) == 1 and stats[host].get('changed', 0) == 0, stats[host]
        (name, msg), = stats[host]['failed_tasks']
        assert name == 'Check the swarm manager is a host of this play', name
        assert "stack_swarm_manager is 'no-such-host', which is not a host of this play" in msg, msg
    for host in swarm_fleet.fleet.hosts:
        assert inner(host, 'info', '--format', '{{.Swarm.LocalNodeState}}') == 'inactive'


def swarm_states(fleet):
    """{host: its engine's swarm state}."""
    return {host: inner(host, 'info', '--format', '{{.Swarm.LocalNodeState}}') for host in fleet.fleet.hosts}


def test_batch_without_the_whole_swarm_refused(swarm_fleet):
    """serial 1 (the canary batch of playbooks/stable.yml): the first batch, the manager alone, fails preflight naming
    the workers missing from it and fleet_serial '100%', before anything changes; the later batches never run."""
    stats = swarm_fleet.run_role(role_vars(swarm_fleet.manager), serial=1)
    manager = stats[swarm_fleet.manager]
    assert manager.get('failures', 0) == 1 and manager.get('changed', 0) == 0, manager
    (name, msg), = manager['failed_tasks']
    assert name == 'Check the manager and its workers are in this batch', name
    assert '%s are not in this batch (%s)' % (', '.join(swarm_fleet.workers), swarm_fleet.manager) in msg, msg
    assert "fleet_serial: '100%'" in msg, msg
    for worker in swarm_fleet.workers:
        assert stats[worker].get('ok', 0) == 0 and not stats[worker]['failed_tasks'], (worker, stats[worker])
    assert set(swarm_states(swarm_fleet).values()) == {'inactive'}


def test_check_mode_before_the_first_deploy(swarm_fleet):
    """--check over the fleet before any swarm exists: the play passes reporting the init and the joins as changes,
    the fit check waits for the real run (said so), and nothing is created - no swarm on any node, no stack file."""
    stats = swarm_fleet.run_role(role_vars(swarm_fleet.manager), check=True)
    for host in swarm_fleet.fleet.hosts:
        assert stats[host].get('failures', 0) == 0 and not stats[host]['failed_tasks'], (host, stats[host]['failed_tasks'])
    assert 'Initialise the swarm on this engine' in stats[swarm_fleet.manager]['changed_tasks'], stats[swarm_fleet.manager]
    for worker in swarm_fleet.workers:
        assert 'Join the manager\'s swarm as a worker' in stats[worker]['changed_tasks'], (worker, stats[worker])
    assert set(swarm_states(swarm_fleet).values()) == {'inactive'}
    assert subprocess.run(['docker', 'exec', swarm_fleet.manager, 'test', '-e', STACK_DIR + '/stack.yml'],
                          check=False).returncode == 1


@pytest.fixture(name='deployed', scope='module')
def fixture_deployed(swarm_fleet):
    """The first run: swarm init on the manager, joins, one stack deploy; the play's stats per host."""
    return swarm_fleet, swarm_fleet.run_role(role_vars(swarm_fleet.manager))


def test_every_node_joins_the_swarm(deployed):
    """The manager (advertising the address it was given) and both workers are Ready nodes of one swarm; the test
    bed's engine is not in it."""
    fleet, stats = deployed
    for host in fleet.fleet.hosts:
        assert stats[host].get('failures', 0) == 0 and not stats[host]['failed_tasks'], (host, stats[host]['failed_tasks'])
    nodes = fleet.nodes().values()
    roles = sorted((node['Description']['Hostname'], node['Spec']['Role'], node['Status']['State']) for node in nodes)
    assert roles == [(fleet.manager, 'manager', 'ready')] + [(worker, 'worker', 'ready') for worker in fleet.workers], roles
    swarm = json.loads(inner(fleet.manager, 'info', '--format', '{{json .Swarm}}'))
    assert swarm['NodeAddr'] == fleet.manager_addr
    for worker in fleet.workers:
        mine = json.loads(inner(worker, 'info', '--format', '{{json .Swarm}}'))
        assert mine['LocalNodeState'] == 'active' and not mine['ControlAvailable']
        assert [m['Addr'] for m in mine['RemoteManagers']] == ['%s:2377' % fleet.manager_addr]
    assert outer_swarm_state() == 'inactive'


def test_deployed_once_from_the_manager(deployed):
    """Only the manager has the stack file and deploys; the workers have no stack directory and run no deploy."""
    fleet, stats = deployed
    docker('exec', fleet.manager, 'test', '-s', STACK_DIR + '/stack.yml')
    assert 'Deploy the stack' in stats[fleet.manager]['changed_tasks']
    for worker in fleet.workers:
        assert subprocess.run(['docker', 'exec', worker, 'test', '-e', STACK_DIR], check=False).returncode == 1, worker
        assert stats[worker]['changed_tasks'] == ['Join the manager\'s swarm as a worker'], stats[worker]['changed_tasks']


def assert_spread(fleet, tasks):
    """The backend tasks run on at least two nodes."""
    where = fleet.hosts_of(tasks)
    assert len(set(where.values())) >= 2, 'every backend replica runs on one node: %s' % where
    return where


def all_replicas(items):
    """ITEMS once there is one per backend replica, else None (wait_for's "not yet")."""
    return items if len(items) == BACKEND_REPLICAS else None


def test_backend_replicas_spread_over_nodes(deployed):
    """backend's replicas run on different nodes (Swarm's spread), with dnsrr endpoints; frontend's port is host-mode."""
    fleet, _stats = deployed
    backend = fleet.service('backend')
    assert backend['Spec']['Mode']['Replicated']['Replicas'] == BACKEND_REPLICAS
    assert backend['Spec']['EndpointSpec']['Mode'] == 'dnsrr'
    tasks = wait_for(lambda: all_replicas(fleet.running_tasks('backend')),
                     '%d running backend tasks' % BACKEND_REPLICAS)
    where = assert_spread(fleet, tasks)
    print('backend tasks on: %s' % sorted(where.values()))
    ports = fleet.service('frontend')['Spec']['EndpointSpec'].get('Ports', [])
    assert [(port['TargetPort'], port['PublishedPort'], port['PublishMode']) for port in ports] == [(8501, 8501, 'host')]


def test_services_answer_across_nodes(deployed):
    """frontend answers on the host-mode port of the node it runs on; from its container, every backend replica
    answers at its own address (dnsrr: the name resolves to every task, over the overlay network, across nodes)."""
    fleet, _stats = deployed
    task = wait_for(lambda: (fleet.running_tasks('frontend') or [None])[0], 'a running frontend task')
    host = fleet.hosts_of([task])[task['ID']]
    body = wait_for(lambda: docker('exec', host, 'curl', '-fsS', 'http://127.0.0.1:8501/health', check=False),
                    'frontend on host port 8501 of %s' % host)
    assert json.loads(body)['status'] == 'ok'
    container = task['Status']['ContainerStatus']['ContainerID']
    script = ('import socket; print(" ".join(sorted({a[4][0] for a in socket.getaddrinfo("backend", 8000, '
              'proto=socket.IPPROTO_TCP)})))')
    addresses = wait_for(lambda: all_replicas(inner(host, 'exec', container, 'python3', '-c', script, check=False).split()),
                         'backend resolving to 3 tasks')
    for address in addresses:
        answer = inner(host, 'exec', container, 'curl', '-fsS', '--max-time', '5', 'http://%s:8000/health' % address)
        assert json.loads(answer)['status'] == 'ok', (address, answer)


def test_plan_reservations_fit_the_nodes(deployed):
    """With the tier plan's reservations (4.25 CPUs counting the extra task of a start-first update: more than one
    node's 2, less than three nodes' 6) the fit check passes and every replica of backend and frontend is scheduled
    and running (no task left pending for lack of resources)."""
    fleet, _stats = deployed
    node_cpus = [node['Description']['Resources']['NanoCPUs'] / 1e9 for node in fleet.nodes().values()]
    reserved = fleet.service('backend')['Spec']['TaskTemplate']['Resources']['Reservations']['NanoCPUs']
    assert reserved == 10 ** 9, 'backend does not carry the plan\'s 1 CPU reservation: %s' % reserved
    assert max(node_cpus) < BACKEND_REPLICAS * 1 + 0.25 + 1 <= sum(node_cpus), node_cpus
    try:
        wait_for(lambda: len(fleet.running_tasks('backend')) == BACKEND_REPLICAS and len(fleet.running_tasks('frontend')) == 1,
                 'every replica running with the plan\'s reservations', timeout=60)
    except AssertionError as exc:
        pending = inner(fleet.manager, 'service', 'ps', '--no-trunc', '--format', '{{.Name}} {{.CurrentState}} {{.Error}}',
                        '%s_backend' % STACK, '%s_frontend' % STACK)
        raise AssertionError('%s; tasks:\n%s' % (exc, pending)) from exc


def test_update_config_as_planned(deployed):
    """backend's update_config: parallelism 1, start-first, failure_action rollback, the monitor period given; a
    rollback_config; the plan's memory limit on every task."""
    fleet, _stats = deployed
    spec = fleet.service('backend')['Spec']
    update = spec['UpdateConfig']
    assert (update['Parallelism'], update['Order'], update['FailureAction'], update['Monitor']) == \
        (1, 'start-first', 'rollback', 5 * 10 ** 9), update
    assert 'RollbackConfig' in spec
    assert spec['TaskTemplate']['Resources']['Limits']['MemoryBytes'] > 0


def test_rerun_changes_nothing(deployed):
    """The second run over the same fleet: changed=0 on every host, no failure, the same backend tasks."""
    fleet, _stats = deployed
    before = {task['ID'] for task in fleet.running_tasks('backend')}
    stats = fleet.run_role(role_vars(fleet.manager))
    for host in fleet.fleet.hosts:
        assert stats[host].get('failures', 0) == 0 and not stats[host]['failed_tasks'], (host, stats[host]['failed_tasks'])
        assert stats[host].get('changed', 0) == 0, (host, stats[host]['changed_tasks'])
    assert {task['ID'] for task in fleet.running_tasks('backend')} == before


def test_reservations_beyond_the_nodes_refused_with_figures(deployed):
    """backend reserving a quarter of the three nodes' CPUs per task (each task fits one node; its 3 replicas, frontend
    and the extra task of a start-first update do not fit all three) is refused on the manager before the deploy, the
    message giving the reservations per service and the CPUs of all three ready nodes; the services keep their spec
    and their tasks, and the workers fail nothing."""
    fleet, _stats = deployed
    node_cpus = [node['Description']['Resources']['NanoCPUs'] / 1e9 for node in fleet.nodes().values()]
    assert len(node_cpus) == 3, node_cpus
    per_task = sum(node_cpus) / (BACKEND_REPLICAS + 1)
    assert per_task <= min(node_cpus), node_cpus
    reserved = per_task * BACKEND_REPLICAS + 0.25 + per_task
    before = {task['ID'] for task in fleet.running_tasks('backend')}
    stats = fleet.run_role(role_vars(fleet.manager, backend_cpus=per_task))
    (name, msg), = stats[fleet.manager]['failed_tasks']
    assert name == 'Refuse reservations Swarm can never schedule', (name, msg)
    figures = ('CPU reservations %g (backend %g x %d, frontend 0.25 x 1, + %g for the extra task of a start-first update) '
               'exceed the %g CPUs of the ready nodes' % (reserved, per_task, BACKEND_REPLICAS, per_task, sum(node_cpus)))
    assert figures in msg, (figures, msg)
    assert 'Deploy the stack' not in stats[fleet.manager]['changed_tasks'], stats[fleet.manager]['changed_tasks']
    for worker in fleet.workers:
        assert stats[worker].get('failures', 0) == 0 and stats[worker].get('changed', 0) == 0, (worker, stats[worker])
    backend = fleet.service('backend')
    assert backend['Spec']['TaskTemplate']['Resources']['Reservations']['NanoCPUs'] == 10 ** 9
    assert {task['ID'] for task in fleet.running_tasks('backend')} == before


def test_pull_never_refuses_an_image_missing_on_a_node(deployed):
    """stack_pull never with the upstream set and a backend image present on the manager alone (a tag made there):
    each worker fails naming the image, the manager fails naming both workers and the image, before anything changes
    (no deploy; backend keeps its spec and tasks)."""
    fleet, _stats = deployed
    here_only = PREFIX + '-here-only:latest'
    inner(fleet.manager, 'tag', HTTP_IMAGE, here_only)
    before = {task['ID'] for task in fleet.running_tasks('backend')}
    try:
        stats = fleet.run_role(role_vars(fleet.manager, backend_image=here_only, stack_image_set='upstream',
                                         stack_images={'upstream': {'frontend': HTTP_IMAGE}}, stack_pull='never'))
    finally:
        inner(fleet.manager, 'rmi', here_only)
    name_check = 'Check every node of the play has the images (stack_pull never - nothing is pulled)'
    (name, msg), = stats[fleet.manager]['failed_tasks']
    assert name == name_check, (name, msg)
    for worker in fleet.workers:
        assert '%s (%s)' % (worker, here_only) in msg, msg
    assert fleet.manager + ' (' not in msg, msg
    for worker in fleet.workers:
        (name, worker_msg), = stats[worker]['failed_tasks']
        assert name == name_check and '%s (%s)' % (worker, here_only) in worker_msg, (worker, name, worker_msg)
    for host in fleet.fleet.hosts:
        assert stats[host].get('changed', 0) == 0, (host, stats[host]['changed_tasks'])
    assert fleet.service('backend')['Spec']['TaskTemplate']['ContainerSpec']['Image'].startswith(HTTP_IMAGE)
    assert {task['ID'] for task in fleet.running_tasks('backend')} == before


@pytest.fixture(name='failed_update', scope='module')
def fixture_failed_update(deployed):
    """An update of backend to an image that exits at start (present on every node); the play's stats."""
    fleet, _stats = deployed
    return fleet, fleet.run_role(role_vars(fleet.manager, backend_image=BROKEN_IMAGE))


def test_failed_update_rolls_back_by_itself(failed_update):
    """Swarm rolls backend back to the previous spec by itself (update_config failure_action rollback): the service
    ends in rollback_completed, its spec is the previous one, and its tasks of the previous image run spread over
    the nodes."""
    fleet, _stats = failed_update
    state = wait_for(lambda: fleet.service('backend').get('UpdateStatus', {}).get('State') in ('rollback_completed', 'rollback_paused')
                     and fleet.service('backend')['UpdateStatus']['State'], 'the rollback', timeout=240)
    assert state == 'rollback_completed', fleet.service('backend').get('UpdateStatus')
    assert fleet.service('backend')['Spec']['TaskTemplate']['ContainerSpec']['Image'].startswith(HTTP_IMAGE)
    tasks = wait_for(lambda: all_replicas(fleet.running_tasks('backend')),
                     '%d running backend tasks of the previous spec' % BACKEND_REPLICAS)
    assert all(task['Spec']['ContainerSpec']['Image'].startswith(HTTP_IMAGE) for task in tasks)
    assert_spread(fleet, tasks)


def test_failed_update_fails_the_play_naming_backend(failed_update):
    """The manager's gate fails the play naming backend and the rollback; the workers only joined (nothing failed)."""
    fleet, stats = failed_update
    assert stats[fleet.manager].get('failures', 0) > 0, 'the play passed although the update of backend was rolled back'
    messages = ' '.join(msg for _name, msg in stats[fleet.manager]['failed_tasks'])
    assert '%s_backend' % STACK in messages and 'rolled it back' in messages, stats[fleet.manager]['failed_tasks']
    for worker in fleet.workers:
        assert stats[worker].get('failures', 0) == 0 and stats[worker].get('changed', 0) == 0, stats[worker]


@pytest.fixture(name='lone_swarm', scope='module')
def fixture_lone_swarm(failed_update):
    """The last worker leaves the fleet's swarm; the role, run on it alone with stack_swarm_init (no manager named),
    makes it a single-node swarm and deploys backend (2 replicas) and frontend there. The host and the play's stats."""
    fleet, _stats = failed_update
    lone = fleet.workers[-1]
    inner(lone, 'swarm', 'leave', '--force')
    assert inner(lone, 'info', '--format', '{{.Swarm.LocalNodeState}}') == 'inactive'
    return fleet, lone, fleet.run_role(role_vars(None, backend_cpus=0.25, replicas=2), limit=lone)[lone]


def test_single_node_swarm_initialised_on_a_lone_host(lone_swarm):
    """stack_swarm_init on an engine in no swarm: a single-node swarm of its own (not the fleet's, not the test bed's)
    initialised and the stack deployed on it - backend's 2 replicas running with dnsrr endpoints, frontend answering
    on the host-mode port of that host."""
    fleet, lone, stats = lone_swarm
    assert stats.get('failures', 0) == 0 and not stats['failed_tasks'], stats['failed_tasks']
    assert {'Initialise the swarm on this engine', 'Deploy the stack'} <= set(stats['changed_tasks']), stats['changed_tasks']
    swarm = json.loads(inner(lone, 'info', '--format', '{{json .Swarm}}'))
    assert (swarm['LocalNodeState'], swarm['ControlAvailable'], swarm['Nodes'], swarm['Managers']) == ('active', True, 1, 1), swarm
    assert swarm['Cluster']['ID'] != json.loads(inner(fleet.manager, 'info', '--format', '{{json .Swarm}}'))['Cluster']['ID']
    assert outer_swarm_state() == 'inactive'
    backend = fleet.service('backend', host=lone)
    assert backend['Spec']['Mode']['Replicated']['Replicas'] == 2
    assert backend['Spec']['EndpointSpec']['Mode'] == 'dnsrr'
    wait_for(lambda: len(fleet.running_tasks('backend', host=lone)) == 2, 'two running backend tasks on %s' % lone)
    ports = fleet.service('frontend', host=lone)['Spec']['EndpointSpec'].get('Ports', [])
    assert [(port['TargetPort'], port['PublishedPort'], port['PublishMode']) for port in ports] == [(8501, 8501, 'host')]
    body = wait_for(lambda: docker('exec', lone, 'curl', '-fsS', 'http://127.0.0.1:8501/health', check=False),
                    'frontend on host port 8501 of %s' % lone)
    assert json.loads(body)['status'] == 'ok'


@pytest.fixture(name='stray_run', scope='module')
def fixture_stray_run(lone_swarm):
    """The fleet play again, the lone host (now in a swarm of its own) still in it, with a new backend environment
    value and smaller reservations (0.25 CPU per task: the two nodes left hold that); the lone host's swarm before the
    play, backend's running tasks before it, and the play's stats."""
    fleet, stray, _stats = lone_swarm
    own = json.loads(inner(stray, 'info', '--format', '{{json .Swarm}}'))
    before = {task['ID'] for task in fleet.running_tasks('backend')}
    stats = fleet.run_role(role_vars(fleet.manager, backend_environment={'RELEASE': '2'}, backend_cpus=0.25))
    return fleet, stray, own, before, stats


def test_worker_in_another_swarm_fails_and_is_left_alone(stray_run):
    """A worker that left and runs a swarm of its own (the lone host above) fails the fleet play naming it, and is left
    as it was; the manager and the other worker carry on."""
    fleet, stray, own, _before, stats = stray_run
    (name, msg), = stats[stray]['failed_tasks']
    assert name == 'Check the manager manages a swarm and this host is in no other swarm', name
    assert '%s is in another swarm' % stray in msg and 'not in the swarm of %s' % fleet.manager in msg, msg
    assert stats[stray].get('changed', 0) == 0
    after = json.loads(inner(stray, 'info', '--format', '{{json .Swarm}}'))
    assert (after['NodeID'], after['ControlAvailable']) == (own['NodeID'], True)
    assert stats[fleet.manager].get('failures', 0) == 0, stats[fleet.manager]['failed_tasks']
    assert set(stats[fleet.manager]['changed_tasks']) <= {'Validate and write the stack file', 'Deploy the stack'}, \
        stats[fleet.manager]['changed_tasks']
    for host in fleet.workers[:-1]:
        assert stats[host].get('failures', 0) == 0 and stats[host].get('changed', 0) == 0, (host, stats[host])


def test_rolling_update_of_backend(stray_run):
    """The changed environment value (and reservations) rolled backend's tasks over on the nodes still in the swarm:
    the update completes, and backend's replicas are all new tasks carrying the new value."""
    fleet, stray, _own, before, _stats = stray_run
    wait_for(lambda: fleet.service('backend').get('UpdateStatus', {}).get('State') == 'completed',
             'the update of backend to complete', timeout=60)
    tasks = wait_for(lambda: all_replicas(fleet.running_tasks('backend')),
                     '%d running backend tasks' % BACKEND_REPLICAS)
    assert all('RELEASE=2' in task['Spec']['ContainerSpec'].get('Env', []) for task in tasks), \
        [task['Spec']['ContainerSpec'].get('Env') for task in tasks]
    assert not before & {task['ID'] for task in tasks}, 'backend tasks of the previous spec still run'
    assert stray not in fleet.hosts_of(tasks).values()


def test_absent_removes_the_stack_from_the_manager(stray_run):
    """stack_state absent over the fleet: the manager removes the stack (its services gone from the swarm) and its
    stack file; the workers remove nothing and stay in the swarm; the host in a swarm of its own keeps its stack."""
    fleet, stray, _own, _before, _stats = stray_run
    stats = fleet.run_role(role_vars(fleet.manager, stack_state='absent'))
    assert 'Remove the Swarm stack from the manager' in stats[fleet.manager]['changed_tasks'], stats[fleet.manager]
    assert stats[fleet.manager].get('failures', 0) == 0, stats[fleet.manager]['failed_tasks']
    assert inner(fleet.manager, 'service', 'ls', '-q', '--filter', 'label=com.docker.stack.namespace=%s' % STACK) == ''
    assert subprocess.run(['docker', 'exec', fleet.manager, 'test', '-e', STACK_DIR + '/stack.yml'],
                          check=False).returncode == 1
    for worker in fleet.workers:
        assert 'Remove the Swarm stack from the manager' not in stats[worker]['changed_tasks'], (worker, stats[worker])
    for worker in fleet.workers[:-1]:
        assert stats[worker].get('failures', 0) == 0, (worker, stats[worker]['failed_tasks'])
        assert inner(worker, 'info', '--format', '{{.Swarm.LocalNodeState}}') == 'active'
    assert inner(stray, 'service', 'ls', '-q', '--filter', 'label=com.docker.stack.namespace=%s' % STACK) != ''
    wait_for(lambda: inner(fleet.manager, 'network', 'ls', '-q', '--filter', 'label=com.docker.stack.namespace=%s' % STACK) == '',
             'the stack networks removed', timeout=60)
