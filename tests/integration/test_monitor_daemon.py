"""The monitor daemon as a real process on this host, against real containers and the real Docker engine.

Each test starts `sutazai-monitor` (module_utils/_monitor.main) in a subprocess with its own state
files and a free loopback port, scoped to containers named sutazai-mon-it-* (so it never touches
other containers on the host), and faults the containers for real: kill -9 of a container's
process, a container that crashes on start, `docker stop`, SIGKILL of the daemon itself.
The guard runs every second with thresholds of 97/98 % so that memory load from other tests on
this host cannot make it stop the test's containers.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

docker = pytest.importorskip('docker')
parser = pytest.importorskip('prometheus_client.parser')

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
PREFIX = 'sutazai-mon-it-'
IMAGE = 'sutazai-testbed/http'
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DAEMON = 'import sys\nfrom ansible_collections.sutazai.ops.plugins.module_utils._monitor import main\nsys.exit(main(sys.argv[1:]))\n'


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def http_get(url, timeout=2.0):
    """(status, body text); status 0 when nothing answers."""
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ''


def wait_for(check, timeout, interval=0.1):
    """Poll `check` until it returns a truthy value (returned) or `timeout` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return None


class Daemon:
    """One sutazai-monitor process with its log and endpoints."""

    def __init__(self, state_dir, **settings):
        self.state_dir = str(state_dir)
        self.port = free_port()
        self.settings = {'name_prefix': PREFIX, 'listen_port': self.port, 'ollama_host': '', 'guard_soft': 97, 'guard_hard': 98,
                         'guard_state_file': os.path.join(self.state_dir, 'guard.json'),
                         'restart_state_file': os.path.join(self.state_dir, 'restarts.json'), 'stall_intervals': 5}
        self.settings.update(settings)
        self.proc = None
        self.runs = 0

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def start(self):
        args = [sys.executable, '-c', DAEMON]
        for key, value in self.settings.items():
            args += ['--set', '%s=%s' % (key, value)]
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.collections'))
        self.runs += 1
        out = open(os.path.join(self.state_dir, 'daemon-%d.log' % self.runs), 'w', encoding='utf-8')  # pylint: disable=consider-using-with
        err = open(os.path.join(self.state_dir, 'daemon-%d.err' % self.runs), 'w', encoding='utf-8')  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(args, stdout=out, stderr=err, env=env)  # pylint: disable=consider-using-with
        out.close()
        err.close()
        assert wait_for(lambda: http_get(self.url + '/health')[0] == 200, 20), 'the daemon did not answer /health: %s' % self.stderr()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def lines(self):
        """Every JSON line of every run, in order."""
        result = []
        for run in range(1, self.runs + 1):
            with open(os.path.join(self.state_dir, 'daemon-%d.log' % run), encoding='utf-8') as handle:
                result.extend(json.loads(line) for line in handle if line.strip())
        return result

    def stderr(self):
        text = ''
        for run in range(1, self.runs + 1):
            with open(os.path.join(self.state_dir, 'daemon-%d.err' % run), encoding='utf-8') as handle:
                text += handle.read()
        return text

    def decisions(self, event, container):
        return [line for line in self.lines() if line['event'] == event and line.get('container') == container]

    def health(self):
        status, body = http_get(self.url + '/health')
        return status, json.loads(body) if body else {}

    def metrics(self):
        """{(sample name, sorted labels): value} and the family names of one scrape."""
        status, text = http_get(self.url + '/metrics')
        assert status == 200, text
        samples, families = {}, set()
        for family in parser.text_string_to_metric_families(text):
            families.add(family.name)
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples, families


@pytest.fixture(name='client', scope='module')
def fixture_client():
    try:
        client = docker.from_env(timeout=60)
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        pytest.skip('needs the Docker engine and the image %s (make testbed): %s' % (IMAGE, exc))
    yield client
    for container in client.containers.list(all=True, filters={'name': PREFIX}):
        container.remove(force=True)


@pytest.fixture(name='containers')
def fixture_containers(client):
    """Run containers named sutazai-mon-it-*; removed after the test whatever happens."""
    made = []

    def run(name, tier=2, crash=False, health=True, memory='256m'):
        labels = {'sutazai.tier': str(tier), 'sutazai.service': name}
        if health:
            labels['sutazai.health_url'] = 'http://{ip}:8080/health'
        kwargs = {'entrypoint': ['sh', '-c', 'echo starting; exit 3']} if crash else {}
        # memswap_limit = mem_limit: no swap, so a container past its limit is OOM-killed even where the host has swap
        container = client.containers.run(IMAGE, name=PREFIX + name, labels=labels, detach=True, mem_limit=memory, memswap_limit=memory,
                                          restart_policy={'Name': 'no'}, **kwargs)
        made.append(container)
        return container

    yield run
    for container in made:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture(name='daemon')
def fixture_daemon(tmp_path, client):  # pylint: disable=unused-argument
    runner = Daemon(tmp_path)
    yield runner
    runner.stop(signal.SIGKILL)


def container_health(container):
    """HTTP status of the container's /health (0 when it does not answer)."""
    container.reload()
    if container.status != 'running':
        return 0
    address = container.attrs['NetworkSettings']['IPAddress']
    return http_get('http://%s:8080/health' % address, timeout=1)[0] if address else 0


def test_kill_9_of_a_tier_2_process_is_restarted_and_healthy_within_10_s(containers, daemon):
    web = containers('web', tier=2)
    assert wait_for(lambda: container_health(web) == 200, 20)
    daemon.start()
    web.reload()
    started_at = web.attrs['State']['StartedAt']
    os.kill(web.attrs['State']['Pid'], signal.SIGKILL)
    killed = time.monotonic()
    back = wait_for(lambda: container_health(web) == 200 and web.attrs['State']['StartedAt'] != started_at, 10)
    elapsed = time.monotonic() - killed
    assert back, 'not back and healthy within 10 s; log: %s' % daemon.lines()
    (restart,) = daemon.decisions('restarted', PREFIX + 'web')
    assert (restart['reason'], restart['exit_code'], restart['attempt']) == ('crash', 137, 1)
    print('back healthy %.2f s after kill -9' % elapsed)


def test_a_crash_soon_after_an_operators_stop_and_start_is_still_restarted(containers, daemon, client):  # pylint: disable=unused-argument
    """Docker reports a `docker stop` as kill, die, stop: that late stop must not explain the container's next crash."""
    web = containers('restop', tier=2)
    assert wait_for(lambda: container_health(web) == 200, 20)
    daemon.start()
    web.stop(timeout=5)
    web.start()
    assert wait_for(lambda: container_health(web) == 200, 20)
    web.reload()
    started_at = web.attrs['State']['StartedAt']
    os.kill(web.attrs['State']['Pid'], signal.SIGKILL)
    back = wait_for(lambda: container_health(web) == 200 and web.attrs['State']['StartedAt'] != started_at, 10)
    assert back, 'a crash after docker stop + start was not restarted; log: %s' % daemon.lines()
    (restart,) = daemon.decisions('restarted', PREFIX + 'restop')
    assert (restart['reason'], restart['exit_code']) == ('crash', 137)


def test_a_container_crashing_on_start_gets_exactly_3_restarts_then_is_given_up(containers, daemon):
    daemon.start()
    crash = containers('crash', tier=3, crash=True, health=False)
    name = PREFIX + 'crash'
    assert wait_for(lambda: daemon.decisions('restart_given_up', name), 40), daemon.lines()
    time.sleep(6)  # room for a fourth restart, which must not come
    assert len(daemon.decisions('restarted', name)) == 3
    crash.reload()
    assert crash.status == 'exited'
    status, body = daemon.health()
    assert (status, body['status'], body['given_up']) == (200, 'degraded', [name])
    samples = daemon.metrics()[0]
    assert samples[('sutazai_monitor_restarts_total', (('name', name), ('reason', 'crash')))] == 3
    assert samples[('sutazai_monitor_restart_budget_remaining', (('name', name),))] == 0
    assert samples[('sutazai_monitor_restart_budget_exhausted', (('name', name),))] == 1

    # the daemon killed with SIGKILL and started again still knows the counts and does not try again
    daemon.stop(signal.SIGKILL)
    daemon.start()
    started = [line for line in daemon.lines() if line['event'] == 'started'][-1]
    assert started['known_restarts'][name] == 3
    time.sleep(5)
    assert len(daemon.decisions('restarted', name)) == 3
    samples = daemon.metrics()[0]
    assert samples[('sutazai_monitor_restart_budget_exhausted', (('name', name),))] == 1
    assert daemon.health()[1]['given_up'] == [name]


def test_a_docker_stop_stays_stopped(containers, daemon, client):  # pylint: disable=unused-argument
    web = containers('stopped', tier=2)
    daemon.start()
    web.stop(timeout=5)
    time.sleep(8)
    web.reload()
    assert web.status == 'exited'
    assert daemon.decisions('restarted', PREFIX + 'stopped') == []
    (decision,) = daemon.decisions('not_restarted', PREFIX + 'stopped')
    assert decision['reason'] == 'operator_stop'


def test_counts_survive_sigkill_of_the_daemon(containers, daemon):
    web = containers('counted', tier=2)
    assert wait_for(lambda: container_health(web) == 200, 20)
    daemon.start()
    for attempt in (1, 2):
        web.reload()
        os.kill(web.attrs['State']['Pid'], signal.SIGKILL)
        assert wait_for(lambda: len(daemon.decisions('restarted', PREFIX + 'counted')) == attempt, 15), daemon.lines()
        assert wait_for(lambda: container_health(web) == 200, 10)
        if attempt == 1:
            daemon.stop(signal.SIGKILL)
            daemon.start()
    last = daemon.decisions('restarted', PREFIX + 'counted')[-1]
    assert (last['attempt'], last['remaining']) == (2, 1)
    samples = daemon.metrics()[0]
    assert samples[('sutazai_monitor_restart_budget_remaining', (('name', PREFIX + 'counted'),))] == 1


def test_metrics_parse_and_carry_the_named_metrics_and_sigterm_stops_cleanly(containers, daemon):
    web = containers('metrics', tier=2)
    assert wait_for(lambda: container_health(web) == 200, 20)
    daemon.start()
    time.sleep(2.5)
    samples, families = daemon.metrics()
    for family in ('sutazai_memory_pressure_ratio', 'sutazai_pressure_memory_avg10_ratio', 'sutazai_pressure_memory_stalled_seconds',
                   'container_memory_working_set_bytes', 'container_spec_memory_limit_bytes', 'sutazai_monitor_restarts',
                   'sutazai_monitor_restart_budget_remaining', 'sutazai_monitor_restart_budget_exhausted', 'sutazai_guard_actions',
                   'sutazai_guard_level', 'sutazai_ollama_models_loaded', 'sutazai_ollama_model_memory_bytes',
                   'sutazai_monitor_loop_duration_seconds', 'sutazai_monitor_last_success_timestamp_seconds'):
        assert family in families, family
    labels = (('name', PREFIX + 'metrics'), ('service', 'metrics'), ('tier', '2'))
    assert samples[('container_spec_memory_limit_bytes', labels)] == 256 * 2 ** 20
    assert 0 < samples[('container_memory_working_set_bytes', labels)] < 256 * 2 ** 20
    assert 0 < samples[('sutazai_memory_pressure_ratio', (('scope', 'host'),))] < 1
    assert samples[('sutazai_guard_level', ())] in (0, 1, 2)
    assert time.time() - samples[('sutazai_monitor_last_success_timestamp_seconds', ())] < 5
    assert samples[('sutazai_monitor_restart_budget_remaining', (('name', PREFIX + 'metrics'),))] == 3
    assert daemon.stop(signal.SIGTERM) == 0
    assert daemon.lines()[-1]['event'] == 'stopped'
    assert 'Traceback' not in daemon.stderr()


STACK = 'sutazai-mon-it-stack'
STACK_DIR = '/sys/fs/cgroup/memory/' + STACK


@pytest.fixture(name='stack_cgroup')
def fixture_stack_cgroup():
    """A cgroup v1 memory group capped at 200 MiB for the test's containers (cgroup_parent); removed after."""
    if not os.path.isdir('/sys/fs/cgroup/memory'):
        pytest.skip('needs the cgroup v1 memory hierarchy of this test bed')
    os.makedirs(STACK_DIR, exist_ok=True)
    with open(STACK_DIR + '/memory.limit_in_bytes', 'w', encoding='ascii') as handle:
        handle.write(str(200 * 2 ** 20))
    yield STACK
    for _attempt in range(50):
        try:
            os.rmdir(STACK_DIR)
            break
        except OSError:
            time.sleep(0.2)


def test_an_oom_kill_by_the_stack_limit_is_seen_as_pressure_and_restarted(client, daemon, stack_cgroup):
    """cgroup v1 hides a kill caused by the parent's limit (no OOMKilled); the kernel log tells it, and whose limit it was."""
    daemon.settings['stack_cgroup'] = stack_cgroup
    daemon.start()
    labels = {'sutazai.tier': '1', 'sutazai.service': 'hog', 'sutazai.health_url': 'http://{ip}:8080/health'}
    hog = client.containers.run(IMAGE, name=PREFIX + 'hog', labels=labels, detach=True, cgroup_parent='/' + stack_cgroup,
                                restart_policy={'Name': 'no'})
    try:
        assert wait_for(lambda: container_health(hog) == 200, 20)
        address = hog.attrs['NetworkSettings']['IPAddress']
        http_get('http://%s:8080/hold?mb=400' % address, timeout=10)  # 400 MiB in a 200 MiB stack: the kernel kills it
        assert wait_for(lambda: daemon.decisions('restarted', PREFIX + 'hog'), 30), daemon.lines()
        (scheduled,) = daemon.decisions('restart_scheduled', PREFIX + 'hog')
        assert (scheduled['exit_code'], scheduled['reason']) == (137, 'oom_pressure'), scheduled
        hog.reload()
        assert hog.attrs['State']['OOMKilled'] is False  # what Docker says on cgroup v1: nothing
        assert wait_for(lambda: container_health(hog) == 200, 10)
        samples = daemon.metrics()[0]
        assert samples[('sutazai_monitor_oom_kills_total', (('kind', 'pressure'), ('name', PREFIX + 'hog')))] == 1
        assert 0 < samples[('sutazai_memory_pressure_ratio', (('scope', 'stack'),))] < 1
    finally:
        hog.remove(force=True)


def test_an_oom_kill_at_its_own_limit_says_the_limit_is_too_small(containers, daemon):
    hog = containers('small', tier=2, memory='96m')
    assert wait_for(lambda: container_health(hog) == 200, 20)
    daemon.start()
    http_get('http://%s:8080/hold?mb=200' % hog.attrs['NetworkSettings']['IPAddress'], timeout=10)
    assert wait_for(lambda: daemon.decisions('restarted', PREFIX + 'small'), 30), daemon.lines()
    (scheduled,) = daemon.decisions('restart_scheduled', PREFIX + 'small')
    assert scheduled['reason'] == 'oom_own_limit', scheduled
    assert 'limit is too small' in scheduled['why']


def test_a_death_while_the_daemon_was_down_is_handled_when_it_is_back(containers, daemon):
    """The engine's events are replayed from the last one handled: a kill -9 during a daemon restart is not lost."""
    web = containers('gap', tier=2)
    assert wait_for(lambda: container_health(web) == 200, 20)
    daemon.start()
    time.sleep(1.5)
    daemon.stop(signal.SIGKILL)
    web.reload()
    os.kill(web.attrs['State']['Pid'], signal.SIGKILL)
    assert wait_for(lambda: web.reload() or web.status == 'exited', 10)
    daemon.start()
    assert wait_for(lambda: container_health(web) == 200, 15), daemon.lines()
    (restart,) = daemon.decisions('restarted', PREFIX + 'gap')
    assert restart['exit_code'] == 137


def test_an_unhealthy_container_is_restarted_after_unhealthy_for_not_before(containers, daemon):
    web = containers('sick', tier=2)
    assert wait_for(lambda: container_health(web) == 200, 20)
    daemon.settings.update({'unhealthy_for': 6, 'health_interval': 0.5})
    daemon.start()
    started_at = web.attrs['State']['StartedAt']
    http_get('http://%s:8080/unhealthy' % web.attrs['NetworkSettings']['IPAddress'])  # /health answers 503 from now on
    made_sick = time.monotonic()
    assert wait_for(lambda: daemon.decisions('restarted', PREFIX + 'sick'), 20), daemon.lines()
    waited = time.monotonic() - made_sick
    (restart,) = daemon.decisions('restarted', PREFIX + 'sick')
    assert restart['reason'] == 'unhealthy' and '503' in restart['why']
    assert 6 <= waited < 12, waited
    web.reload()
    assert web.attrs['State']['StartedAt'] != started_at
    assert wait_for(lambda: container_health(web) == 200, 10)  # the restarted process answers 200 again


def test_a_container_the_guard_stopped_is_not_restarted(client, daemon, stack_cgroup):
    """The guard (in the daemon) stops a tier-3 container when the stack cgroup passes soft: a stop, not a failure."""
    daemon.settings.update({'stack_cgroup': stack_cgroup, 'guard_soft': 80, 'guard_hard': 90})
    daemon.start()
    labels = {'sutazai.tier': '3', 'sutazai.service': 'batch'}
    batch = client.containers.run(IMAGE, name=PREFIX + 'batch', labels=labels, detach=True, cgroup_parent='/' + stack_cgroup,
                                  restart_policy={'Name': 'no'}, stop_signal='SIGKILL')
    try:
        assert wait_for(lambda: container_health(batch) == 200, 20)
        http_get('http://%s:8080/hold?mb=170' % batch.attrs['NetworkSettings']['IPAddress'], timeout=10)  # 85 % of 200 MiB
        assert wait_for(lambda: [line for line in daemon.lines() if line['event'] == 'guard_stop'], 15), daemon.lines()
        assert wait_for(lambda: daemon.decisions('not_restarted', PREFIX + 'batch'), 10), daemon.lines()
        time.sleep(4)
        batch.reload()
        assert batch.status == 'exited'
        assert daemon.decisions('restarted', PREFIX + 'batch') == []
        assert daemon.decisions('not_restarted', PREFIX + 'batch')[0]['reason'] == 'guard_stop'
        samples = daemon.metrics()[0]
        assert samples[('sutazai_guard_actions_total', (('kind', 'stop'),))] == 1
    finally:
        batch.remove(force=True)


# ---------------------------------------------------------------- a memory ramp in the capped stack cgroup

RAMP_STACK = 'sutazai-mon-it-ramp'
RAMP_DIR = '/sys/fs/cgroup/memory/' + RAMP_STACK
MIB = 2 ** 20
RAMP_CATALOG = {'ramp-a': {'size': 120 * 10 ** 6}, 'ramp-b': {'size': 120 * 10 ** 6}}


def _post_json(url, body, timeout=60):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method='POST', headers={'Content-Type': 'application/json'})
    with OPENER.open(request, timeout=timeout) as resp:
        return json.loads(resp.read() or b'{}')


@pytest.fixture(name='ramp_stack')
def fixture_ramp_stack(client):
    """An 800 MiB stack cgroup (memory and memory+swap) holding the Ollama emulator with two models, a tier-1 redis
    and a tier-3 HTTP agent that can ramp its memory; every container and the cgroup removed afterwards."""
    if not os.path.isdir('/sys/fs/cgroup/memory'):
        pytest.skip('needs the cgroup v1 memory hierarchy of this test bed')
    os.makedirs(RAMP_DIR, exist_ok=True)
    for name in ('memory.limit_in_bytes', 'memory.memsw.limit_in_bytes'):
        if os.path.exists(os.path.join(RAMP_DIR, name)):
            with open(os.path.join(RAMP_DIR, name), 'w', encoding='ascii') as handle:
                handle.write(str(800 * MIB))
    port = free_port()
    common = {'detach': True, 'cgroup_parent': '/' + RAMP_STACK, 'restart_policy': {'Name': 'no'}}
    made = []

    def agent():
        """A fresh tier-3 agent (the previous one, killed or stopped, is removed first)."""
        for old in client.containers.list(all=True, filters={'name': PREFIX + 'ramp-agent'}):
            old.remove(force=True)
        created = client.containers.run(IMAGE, name=PREFIX + 'ramp-agent', labels={'sutazai.tier': '3', 'sutazai.service': 'agent'},
                                        **common)
        made.append(created)
        assert wait_for(lambda: container_health(created) == 200, 20)
        return created

    try:
        ollama = client.containers.run('sutazai-testbed/ollama:latest', name=PREFIX + 'ramp-ollama', ports={'11434/tcp': ('127.0.0.1', port)},
                                       labels={'sutazai.tier': '1', 'sutazai.service': 'ollama'},
                                       environment={'OLLAMA_EMULATOR_CATALOG': json.dumps(RAMP_CATALOG), 'OLLAMA_MAX_LOADED_MODELS': '3',
                                                    'OLLAMA_KEEP_ALIVE': '-1', 'OLLAMA_EMULATOR_UNLOAD_DELAY': '0.1'}, **common)
        made.append(ollama)
        redis = client.containers.run('sutazai-testbed/redis:latest', name=PREFIX + 'ramp-redis',
                                      labels={'sutazai.tier': '1', 'sutazai.service': 'redis'}, **common)
        made.append(redis)
        url = 'http://127.0.0.1:%d' % port
        assert wait_for(lambda: http_get(url + '/api/version')[0] == 200, 30)
        for model in RAMP_CATALOG:
            _post_json(url + '/api/pull', {'model': model, 'stream': False})
        yield {'url': url, 'agent': agent, 'redis': redis, 'ollama': ollama}
    finally:
        for container in client.containers.list(all=True, filters={'name': PREFIX + 'ramp-'}):
            container.remove(force=True)
        try:
            os.rmdir(RAMP_DIR)
        except OSError:
            pass


def _load_models(stack):
    for model in RAMP_CATALOG:
        _post_json(stack['url'] + '/api/generate', {'model': model, 'keep_alive': -1})
    assert len(_post_ps(stack)) == len(RAMP_CATALOG)


def _post_ps(stack):
    status, body = http_get(stack['url'] + '/api/ps')
    assert status == 200
    return json.loads(body)['models']


def _ramp(agent):
    """25 MiB more every second, up to 900 MiB: past the stack's 800 MiB within about half a minute."""
    agent.reload()
    address = agent.attrs['NetworkSettings']['IPAddress']
    request = urllib.request.Request('http://%s:8080/ramp?step_mb=25&interval=1&max_mb=900' % address, data=b'', method='POST')
    with OPENER.open(request, timeout=10) as resp:
        resp.read()


def test_a_memory_ramp_oom_kills_without_the_daemon_and_is_relieved_with_it(client, daemon, ramp_stack):
    """The issue's ramp: without the daemon the kernel OOM-kills in the stack within half a minute; with it, models are
    unloaded and tier 3 stopped before that, no OOM kill at all, tier 1 untouched, and tier 3 restored once pressure
    stayed low. OOM kills are counted with the collection's detector (Docker's OOMKilled misses parent-limit kills)."""
    from ansible_collections.sutazai.ops.plugins.module_utils import _oom  # pylint: disable=import-outside-toplevel

    # without the daemon: the failure the daemon exists to prevent, seen by the same check
    agent = ramp_stack['agent']()
    _load_models(ramp_stack)
    detector = _oom.OomDetector(stack_cgroup=RAMP_STACK, docker_client=client).baseline()
    assert detector.kernel.readable, detector.sources()
    started = time.monotonic()
    _ramp(agent)
    killed = wait_for(lambda: detector.poll() or detector.count(), 45)
    assert killed, 'no OOM kill without the daemon: the ramp does not reach the limit, so the test proves nothing'
    print('without the daemon: OOM kill %.1f s after the ramp started' % (time.monotonic() - started))

    # with the daemon
    agent = ramp_stack['agent']()
    _load_models(ramp_stack)
    ramp_stack['redis'].reload()
    redis_started = ramp_stack['redis'].attrs['State']['StartedAt']
    daemon.settings.update({'stack_cgroup': RAMP_STACK, 'ollama_host': ramp_stack['url'], 'guard_soft': 50, 'guard_hard': 70,
                            'guard_restore_below': 40, 'guard_restore_after': 5})
    daemon.start()
    detector = _oom.OomDetector(stack_cgroup=RAMP_STACK, docker_client=client).baseline()
    _ramp(agent)
    stopped = wait_for(lambda: (agent.reload(), agent.status == 'exited')[1], 45)
    assert stopped, 'the daemon did not stop the ramping tier-3 agent; log: %s' % daemon.lines()[-20:]
    assert _post_ps(ramp_stack) == [], 'models still loaded after relief'
    assert detector.poll() == [] and detector.count() == 0, detector.report()
    assert wait_for(lambda: 'guard_stop' in [line['event'] for line in daemon.lines()], 20), daemon.lines()  # logged once the pass ends
    events = [line['event'] for line in daemon.lines()]
    assert 'guard_unload' in events, events
    assert events.index('guard_unload') < events.index('guard_stop'), 'models are unloaded before anything is stopped: %s' % events
    # tier 1 untouched: same container, never restarted
    ramp_stack['redis'].reload()
    assert ramp_stack['redis'].status == 'running' and ramp_stack['redis'].attrs['State']['StartedAt'] == redis_started
    ramp_stack['ollama'].reload()
    assert ramp_stack['ollama'].status == 'running'
    # restored once pressure stayed below restore_below for restore_after
    assert wait_for(lambda: (agent.reload(), agent.status == 'running')[1], 40), 'tier 3 not restored; log: %s' % daemon.lines()[-20:]
    assert daemon.decisions('not_restarted', PREFIX + 'ramp-agent') == [] or all(
        d['reason'] == 'guard_stop' for d in daemon.decisions('not_restarted', PREFIX + 'ramp-agent'))
    assert wait_for(lambda: 'guard_start' in [line['event'] for line in daemon.lines()], 10), daemon.lines()
    assert detector.poll() == [] and detector.count() == 0, detector.report()
    assert 'Traceback' not in daemon.stderr()
