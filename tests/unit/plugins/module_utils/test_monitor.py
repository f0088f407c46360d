"""The monitor daemon's loop over a fake engine, a fake /proc and a fake clock; config, sd_notify and logs."""

import io
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _guard
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate
from ansible_collections.sutazai.ops.plugins.module_utils import _monitor as mon
from ansible_collections.sutazai.ops.plugins.module_utils import _monitor_metrics as mmetrics
from ansible_collections.sutazai.ops.plugins.module_utils import _monitor_restarts as mrestarts

MIB = 2 ** 20


class Clock:
    """Wall and monotonic time moved by the test."""

    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


class FakeAPI:
    """The part of docker.APIClient the daemon and the guard use, over a dict of containers."""

    def __init__(self):
        self.items = {}
        self.calls = []
        self.down = False

    def add(self, name, tier=2, running=True, labels=None, status=None, policy='no'):
        cid = (name.encode().hex() * 64)[:64]
        all_labels = {'sutazai.tier': str(tier)}
        all_labels.update(labels or {})
        self.items[cid] = {'Id': cid, 'Names': ['/' + name], 'Labels': all_labels, 'State': 'running' if running else 'exited',
                           'Status': status or ('Up 1 minute' if running else 'Exited (1)'),
                           'NetworkSettings': {'Networks': {'bridge': {'IPAddress': '127.0.0.1'}}},
                           '_policy': policy, '_restart_count': 0}
        return cid

    def _check(self):
        if self.down:
            raise ConnectionError('Error while fetching server API version: connection refused')

    def containers(self, all=False, filters=None):  # pylint: disable=redefined-builtin
        self._check()
        return [dict(item) for item in self.items.values()]

    def inspect_container(self, cid):
        self._check()
        item = self.items[cid]
        return {'Id': cid, 'State': {'Running': item['State'] in ('running', 'restarting'), 'Restarting': item['State'] == 'restarting'},
                'RestartCount': item['_restart_count'], 'HostConfig': {'RestartPolicy': {'Name': item['_policy']}}}

    def start(self, cid):
        self._check()
        self.calls.append(('start', cid))
        self.items[cid]['State'] = 'running'
        self.items[cid]['_restart_count'] = 0  # as Docker: a start by its API resets the count

    def restart(self, cid, timeout=None):
        self._check()
        self.calls.append(('restart', cid))
        self.items[cid]['State'] = 'running'

    def stop(self, cid, timeout=None):
        self._check()
        self.calls.append(('stop', cid))
        self.items[cid]['State'] = 'exited'
        self.items[cid]['_policy_cancelled'] = True  # a stop ends Docker's restart loop


class FakeClient:
    def __init__(self):
        self.api = FakeAPI()


class FakeCgroups:
    """Container memory as the test sets it; no stack cgroup."""

    def __init__(self):
        self.usage = {}

    def read_container(self, cid):
        return {'usage': self.usage.get(cid, 50 * MIB), 'limit': 512 * MIB, 'oom_kills': 0}

    def read_group(self, name):
        return None


def write_proc(root, used_percent):
    total_kb = 16 * 1024 * 1024
    available = int(total_kb * (100 - used_percent) / 100)
    os.makedirs(os.path.join(root, 'pressure'), exist_ok=True)
    with open(os.path.join(root, 'meminfo'), 'w', encoding='ascii') as handle:
        handle.write('MemTotal: %d kB\nMemFree: 1 kB\nMemAvailable: %d kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n' % (total_kb, available))
    with open(os.path.join(root, 'pressure', 'memory'), 'w', encoding='ascii') as handle:
        handle.write('some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n')


class Harness:
    """A Monitor wired to fakes; `lines()` gives its decoded log lines."""

    def __init__(self, tmp_path, client=None, **settings):
        self.tmp = tmp_path
        self.clock = Clock()
        self.client = client or FakeClient()
        self.cgroups = FakeCgroups()
        self.out = io.StringIO()
        write_proc(str(tmp_path / 'proc'), 20)
        values = {'proc_root': str(tmp_path / 'proc'), 'guard_state_file': str(tmp_path / 'guard.json'),
                  'restart_state_file': str(tmp_path / 'restarts.json'), 'ollama_host': '', 'name_prefix': 'sutazai-mon-',
                  'listen_port': 0, 'restart_backoff': 1.0, 'unhealthy_for': 30, 'kernel_log': False}
        values.update(settings)
        self.config = mon.build_config(values)
        self.monitor = self.new_monitor()

    def new_monitor(self):
        return mon.Monitor(self.config, docker_client_factory=lambda: self.client, cgroups=self.cgroups, clock=self.clock,
                           monotonic=self.clock, out=self.out, environ={}, run_action=lambda work: work())

    def event(self, action, cid, exit_code=None, offset=0.0):
        item = self.client.api.items[cid]
        attrs = dict(item['Labels'], name=item['Names'][0][1:])
        if exit_code is not None:
            attrs['exitCode'] = str(exit_code)
        when = self.clock.now + offset
        self.monitor.events.put({'Type': 'container', 'Action': action, 'Actor': {'ID': cid, 'Attributes': attrs},
                                 'time': int(when), 'timeNano': int(when * 1e9)})
        if action in ('die', 'stop'):
            item['State'] = 'exited'
            if action == 'die' and exit_code and item['_policy'] != 'no' and not item.pop('_policy_cancelled', False):
                item['State'] = 'restarting'  # Docker's restart policy will start it again

    def engine_restart(self, cid):
        """Docker's restart policy starts the container again (its RestartCount rises) and says so in a start event."""
        item = self.client.api.items[cid]
        assert item['State'] == 'restarting', 'Docker restarts only a container it is restarting'
        item['State'] = 'running'
        item['_restart_count'] += 1
        self.event('start', cid)

    def run_for(self, seconds, step=0.5):
        for _step in range(int(seconds / step)):
            self.monitor.cycle()
            self.clock.now += step

    def lines(self):
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def events(self, name):
        return [line for line in self.lines() if line['event'] == name]


@pytest.fixture(name='harness')
def fixture_harness(tmp_path):
    return Harness(tmp_path)


def test_a_container_killed_outside_docker_is_started_after_the_backoff(harness):
    cid = harness.client.api.add('sutazai-mon-app')
    harness.monitor.cycle()
    harness.event('die', cid, 137)
    harness.monitor.cycle()
    assert harness.client.api.calls == []  # backoff: 1 s
    harness.run_for(1.5)
    assert harness.client.api.calls == [('start', cid)]
    (line,) = harness.events('restarted')
    assert (line['container'], line['reason'], line['attempt'], line['remaining']) == ('sutazai-mon-app', 'crash', 1, 2)
    assert harness.events('restart_scheduled')[0]['exit_code'] == 137


def test_an_operator_stop_is_left_alone(harness):
    cid = harness.client.api.add('sutazai-mon-app')
    harness.event('kill', cid)
    harness.event('die', cid, 0, offset=1)
    harness.event('stop', cid, offset=1)
    harness.run_for(10)
    assert harness.client.api.calls == []
    assert harness.events('not_restarted')[0]['reason'] == 'operator_stop'


def test_containers_outside_the_prefix_are_not_managed(harness):
    cid = harness.client.api.add('someone-else', tier=3)
    harness.event('die', cid, 1)
    harness.run_for(5)
    assert harness.client.api.calls == []
    assert harness.events('restart_scheduled') == []


def test_a_crash_loop_gets_three_restarts_then_an_alert(harness):
    cid = harness.client.api.add('sutazai-mon-crash')
    for _death in range(5):
        before = len(harness.client.api.calls)
        harness.event('die', cid, 3)
        harness.run_for(10)
        if len(harness.client.api.calls) > before:
            harness.event('start', cid)  # the engine's event for our start
            harness.clock.now += 0.5
    assert harness.client.api.calls == [('start', cid)] * 3
    (alert,) = harness.events('restart_given_up')
    assert alert['level'] == 'alert' and alert['restarts_in_window'] == 3
    status = mon.MonitorView(harness.monitor).restart_status()['sutazai-mon-crash']
    assert (status['remaining'], status['given_up']) == (0, True)


def test_counts_and_handled_events_survive_a_daemon_restart(harness):
    cid = harness.client.api.add('sutazai-mon-app')
    harness.event('die', cid, 1)
    harness.run_for(2)
    assert harness.client.api.calls == [('start', cid)]
    # a new daemon (after SIGKILL) on the same files: the count is there, and the replayed death is not handled twice
    harness.monitor = harness.new_monitor()
    harness.clock.now -= 2
    harness.event('die', cid, 1)  # the engine replays the same event (same time)
    harness.clock.now += 2
    harness.run_for(5)
    assert harness.client.api.calls == [('start', cid)]
    assert mon.MonitorView(harness.monitor).restart_status()['sutazai-mon-app']['restarts_in_window'] == 1


def test_docker_down_gives_one_warning_then_recovers(harness):
    harness.client.api.down = True
    harness.run_for(10)
    warnings = harness.events('warning')
    assert len(warnings) == 1 and 'Docker engine not readable' in warnings[0]['msg']
    assert mon.MonitorView(harness.monitor).loop_facts()['docker_down'] is True
    harness.client.api.down = False
    harness.run_for(2)
    assert harness.events('docker_reachable')
    assert mon.MonitorView(harness.monitor).loop_facts()['docker_down'] is False


def test_an_unreachable_engine_at_start_is_retried(tmp_path):
    attempts = []
    client = FakeClient()

    def factory():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError('connection refused')
        return client
    harness = Harness(tmp_path, client=client)
    harness.monitor = mon.Monitor(harness.config, docker_client_factory=factory, cgroups=harness.cgroups, clock=harness.clock,
                                  monotonic=harness.clock, out=harness.out, environ={})
    cid = client.api.add('sutazai-mon-app')
    harness.run_for(3)
    assert len(attempts) == 3
    harness.event('die', cid, 1)
    harness.run_for(3)
    assert client.api.calls == [('start', cid)]


def test_docker_unhealthy_for_long_enough_is_restarted(harness):
    cid = harness.client.api.add('sutazai-mon-app', status='Up 2 minutes (unhealthy)')
    harness.run_for(29)
    assert harness.client.api.calls == []
    harness.run_for(2)
    assert harness.client.api.calls == [('restart', cid)]
    assert harness.events('restarted')[0]['reason'] == 'unhealthy'


class Answer503(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_health_url_from_the_label(harness):
    server = ThreadingHTTPServer(('127.0.0.1', 0), Answer503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cid = harness.client.api.add('sutazai-mon-web', labels={mon.HEALTH_URL_LABEL: 'http://{ip}:%d/health' % server.server_address[1]})
        harness.run_for(31, step=1.0)
        assert harness.client.api.calls == [('restart', cid)]
        assert '503' in harness.events('restart_scheduled')[0]['why']
    finally:
        server.shutdown()
        server.server_close()


def test_the_guard_stops_tier_3_under_pressure_and_its_death_is_not_restarted(harness, tmp_path):
    cid = harness.client.api.add('sutazai-mon-batch', tier=3)
    harness.cgroups.usage[cid] = 2 * 1024 * MIB
    write_proc(str(tmp_path / 'proc'), 95)
    harness.monitor.cycle()
    assert ('stop', cid) in harness.client.api.calls
    assert harness.events('guard_stop')
    harness.event('kill', cid)
    harness.event('die', cid, 137)
    harness.run_for(5)
    assert ('start', cid) not in harness.client.api.calls
    assert harness.events('not_restarted')[0]['reason'] == 'guard_stop'
    assert mon.MonitorView(harness.monitor).guard_actions() == {'stop': 1}


def test_an_oom_kill_waits_for_room(harness, tmp_path):
    cid = harness.client.api.add('sutazai-mon-api', tier=1)
    write_proc(str(tmp_path / 'proc'), 95)  # hard: the guard has nothing it may stop (tier 1 only)
    harness.monitor.cycle()
    harness.event('oom', cid)
    harness.event('die', cid, 137)
    harness.run_for(10)
    assert harness.client.api.calls == []
    assert harness.events('restart_waiting')
    write_proc(str(tmp_path / 'proc'), 20)
    harness.run_for(3)
    assert harness.client.api.calls == [('start', cid)]
    assert harness.events('restarted')[0]['reason'] == 'oom_pressure'  # 50 MiB of its 512 MiB: not its own limit


def test_a_damaged_restart_history_is_a_warning(tmp_path):
    (tmp_path / 'restarts.json').write_text('{"containers": ')
    harness = Harness(tmp_path)
    harness.run_for(2)
    assert any('could not be read' in w['msg'] for w in harness.events('warning'))


# ---- configuration, sd_notify, logs, main ----------------------------------------------------------

@pytest.mark.parametrize('name, text', [
    ('monitor.json', '{"restart_limit": 5, "guard_enabled": false, "unhealthy_for": "45"}'),
    ('monitor.conf', '# comment\nrestart_limit = 5\nguard_enabled = no\nunhealthy_for=45\n'),
    ('monitor.yml', 'restart_limit: 5\nguard_enabled: false\nunhealthy_for: 45\n'),
])
def test_config_formats(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    config = mon.load_config(str(path))
    assert (config['restart_limit'], config['guard_enabled'], config['unhealthy_for']) == (5, False, 45.0)
    assert config['listen_address'] == '127.0.0.1' and config['listen_port'] == 8082


@pytest.mark.parametrize('values, message', [
    ({'restart_limt': 3}, 'unknown setting'),
    ({'restart_limit': 'three'}, 'restart_limit'),
    ({'guard_interval': 0}, 'guard_interval must be positive'),
    ({'guard_soft': 95, 'guard_hard': 90}, 'soft'),
])
def test_config_errors_name_the_setting(values, message):
    with pytest.raises(mon.ConfigError, match=message):
        mon.build_config(values)


def test_main_check_config_and_bad_config(capsys):
    assert mon.main(['--check-config', '--set', 'restart_limit=4']) == 0
    assert json.loads(capsys.readouterr().out)['restart_limit'] == 4
    assert mon.main(['--set', 'nonsense=1']) == 2
    assert 'unknown setting' in capsys.readouterr().err


def test_sd_notify(tmp_path):
    path = str(tmp_path / 'notify')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        assert mon.sd_notify('READY=1', {'NOTIFY_SOCKET': path}) is True
        assert sock.recv(100) == b'READY=1'
    finally:
        sock.close()
    assert mon.sd_notify('READY=1', {}) is False
    assert mon.sd_notify('READY=1', {'NOTIFY_SOCKET': str(tmp_path / 'absent')}) is False


def test_run_once_notifies_systemd_and_logs_start_and_stop(harness, tmp_path):
    path = str(tmp_path / 'notify')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        harness.monitor.environ = {'NOTIFY_SOCKET': path}
        assert harness.monitor.run(once=True) == 0
        assert [sock.recv(100) for _message in range(3)] == [b'READY=1', b'WATCHDOG=1', b'STOPPING=1']
    finally:
        sock.close()
    assert [line['event'] for line in harness.lines()][0] == 'started'
    assert harness.lines()[-1]['event'] == 'stopped'


def test_repeated_warnings_are_rate_limited():
    clock = Clock()
    out = io.StringIO()
    log = mon.JsonLog(out, clock, warn_every=60)
    assert log.warn('Ollama not readable') is True
    clock.now += 59
    assert log.warn('Ollama not readable') is False
    clock.now += 2
    assert log.warn('Ollama not readable') is True
    assert len(out.getvalue().splitlines()) == 2


def test_docker_health_and_ip_from_the_list_entry():
    assert mon.docker_health({'Status': 'Up 3 minutes (unhealthy)'}) == 'unhealthy'
    assert mon.docker_health({'Status': 'Up 3 minutes (health: starting)'}) == 'starting'
    assert mon.docker_health({'Status': 'Up 3 minutes'}) is None
    assert mon.container_ip({'NetworkSettings': {'Networks': {'n': {'IPAddress': ''}, 'm': {'IPAddress': '172.18.0.2'}}}}) == '172.18.0.2'


# ---- the light cgroup reader and the cached container list --------------------------------------

def fake_cgroup(root, version, cid, usage, inactive, limit):
    if version == 1:
        (root / 'memory').mkdir(parents=True, exist_ok=True)
        (root / 'memory' / 'memory.usage_in_bytes').write_text('0\n')
        path = root / 'memory' / 'docker' / cid
        path.mkdir(parents=True)
        (path / 'memory.usage_in_bytes').write_text('%d\n' % usage)
        (path / 'memory.limit_in_bytes').write_text('%d\n' % (limit if limit else 9223372036854771712))
        (path / 'memory.stat').write_text('cache 5\nrss 7\ninactive_file 1\ntotal_cache 5\ntotal_inactive_file %d\ntotal_active_file 3\n' % inactive)
    else:
        root.mkdir(parents=True, exist_ok=True)
        (root / 'cgroup.controllers').write_text('cpu memory pids\n')
        path = root / 'system.slice' / ('docker-%s.scope' % cid)
        path.mkdir(parents=True)
        (path / 'memory.current').write_text('%d\n' % usage)
        (path / 'memory.max').write_text('%s\n' % (limit if limit else 'max'))
        (path / 'memory.stat').write_text('anon 7\nfile 5\nactive_file 3\ninactive_file %d\nslab 2\n' % inactive)
    return str(path)


@pytest.mark.parametrize('version, usage, inactive, limit', [
    (1, 300 * MIB, 100 * MIB, 512 * MIB),
    (1, 300 * MIB, 0, None),
    (2, 300 * MIB, 50 * MIB, 256 * MIB),
    (2, 10 * MIB, 20 * MIB, None),
])
def test_light_reader_gives_the_figures_of_read_memory(tmp_path, version, usage, inactive, limit):
    from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups  # pylint: disable=import-outside-toplevel
    cid = 'f' * 64
    path = fake_cgroup(tmp_path / 'cg', version, cid, usage, inactive, limit)
    full = _cgroups.read_memory(path)
    light = mon.LightCgroupReader(str(tmp_path / 'cg')).read_container(cid)
    assert (light['usage'], light['limit']) == (full['working_set'], full['limit'])


def test_light_reader_without_the_container(tmp_path):
    fake_cgroup(tmp_path / 'cg', 1, 'a' * 64, 1, 0, None)
    assert mon.LightCgroupReader(str(tmp_path / 'cg')).read_container('b' * 64) is None


class CountingAPI(FakeAPI):
    def __init__(self):
        super().__init__()
        self.lists = 0

    def containers(self, all=False, filters=None):  # pylint: disable=redefined-builtin
        self.lists += 1
        return super().containers(all, filters)


def test_the_container_list_is_asked_again_only_after_an_event(tmp_path):
    client = FakeClient()
    client.api = CountingAPI()
    harness = Harness(tmp_path, client=client, list_refresh=30)
    cid = client.api.add('sutazai-mon-app')
    harness.monitor.events.put({'_connected': True})
    harness.run_for(10)
    assert client.api.lists == 1
    harness.event('die', cid, 1)
    harness.run_for(0.5)
    assert client.api.lists == 2
    harness.run_for(40)
    assert 3 <= client.api.lists <= 5  # the start it made, then every 30 s
    harness.monitor.events.put({'_error': 'engine events: connection reset'})
    before = client.api.lists
    harness.run_for(5)
    assert client.api.lists - before >= 5  # no events: every guard pass (1 s) lists again


class FakeKernelLog:
    readable = True

    def __init__(self):
        self.kills = []

    def read(self):
        found, self.kills = self.kills, []
        return found


@pytest.mark.parametrize('oom_memcg, kind', [
    ('/docker/' + 'd' * 64, 'own_limit'),
    ('/sutazai', 'pressure'),
    (None, 'pressure'),
], ids=['its-own-cgroup', 'the-stack', 'the-host'])
def test_kernel_oom_detector_tells_whose_limit(oom_memcg, kind):
    kernel = FakeKernelLog()
    detector = mon.KernelOomDetector(kernel_log=kernel, clock=Clock())
    kernel.kills = [{'pid': 42, 'comm': 'python3', 'task_memcg': '/docker/' + 'd' * 64, 'oom_memcg': oom_memcg,
                     'container_id': 'd' * 64}]
    assert detector('e' * 64, 'other', 137, 0) is None  # another container: not this one's kill
    assert detector('d' * 64, 'victim', 137, 0) == kind
    assert detector('d' * 64, 'victim', 137, 0) is None  # used once


def test_kernel_oom_detector_ignores_other_exits():
    kernel = FakeKernelLog()
    kernel.kills = [{'task_memcg': '/docker/' + 'd' * 64, 'oom_memcg': None, 'container_id': 'd' * 64}]
    assert mon.KernelOomDetector(kernel_log=kernel)('d' * 64, 'victim', 1, 0) is None


def test_events_are_replayed_from_the_last_one_handled_at_most_replay_max_back(tmp_path):
    harness = Harness(tmp_path, replay_max=900)
    now = int(harness.clock.now * 1e9)
    assert harness.monitor._replay_from() == now  # pylint: disable=protected-access
    # saved at once: a daemon killed before any event replays from here
    assert mon.Monitor(harness.config, docker_client_factory=lambda: harness.client, cgroups=harness.cgroups, clock=harness.clock,
                       monotonic=harness.clock, out=harness.out, environ={}).policy.history['events_since'] == now
    harness.clock.now += 100
    assert harness.new_monitor()._replay_from() == now  # pylint: disable=protected-access
    harness.clock.now += 5000
    assert harness.new_monitor()._replay_from() == int(harness.clock.now * 1e9) - 900 * 10 ** 9  # pylint: disable=protected-access


def test_a_damaged_guard_state_file_is_a_warning_not_a_crash(tmp_path):
    (tmp_path / 'guard.json').write_text('{"stopped": [')
    harness = Harness(tmp_path)
    harness.run_for(2)
    assert harness.monitor.facts['last_success'] is not None
    assert any('guard' in w['msg'] for w in harness.events('warning'))


def test_an_unreadable_guard_state_file_is_a_warning_not_a_crash(tmp_path):
    (tmp_path / 'guard-dir').mkdir()
    harness = Harness(tmp_path, guard_state_file=str(tmp_path / 'guard-dir'))
    harness.run_for(2)
    assert harness.monitor.facts['last_success'] is not None  # /health stays 200: no restart loop of the daemon
    assert harness.events('warning')


NO_ANSIBLE = r'''
from ansible_collections.sutazai.ops.plugins.module_utils._monitor import main
status = main(sys.argv[2:])
sys.stderr.write(json.dumps({'status': status, 'ansible_loaded': any(m.split('.')[0] == 'ansible' for m in sys.modules)}))
'''


def test_the_daemon_runs_without_ansible_and_survives_a_missing_engine(tmp_path, without_ansible):
    args = ['--once', '--set', 'docker_host=unix://%s' % (tmp_path / 'no-docker.sock'), '--set', 'ollama_host=http://127.0.0.1:9',
            '--set', 'guard_state_file=%s' % (tmp_path / 'g.json'), '--set', 'restart_state_file=%s' % (tmp_path / 'r.json'),
            '--set', 'listen_port=0', '--set', 'kernel_log=false']
    proc = without_ansible(NO_ANSIBLE, *args)
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    assert result == {'status': 0, 'ansible_loaded': False}, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line['event'] for line in lines][0] == 'started' and lines[-1]['event'] == 'stopped'
    warnings = ' '.join(line.get('msg', '') for line in lines if line['event'] == 'warning')
    assert 'Docker engine' in warnings and 'Ollama not readable' in warnings


def test_monitor_files_import_only_the_stdlib_the_collection_and_optional_libraries(top_level_imports):
    import sys  # pylint: disable=import-outside-toplevel
    from ansible_collections.sutazai.ops.plugins.module_utils import _monitor_metrics, _monitor_restarts  # pylint: disable=import-outside-toplevel
    allowed = set(sys.stdlib_module_names) | {'ansible_collections', 'docker', 'prometheus_client', 'yaml'}
    for module in (mon, _monitor_metrics, _monitor_restarts):
        imported = top_level_imports(module.__file__)
        assert imported <= allowed and 'ansible' not in imported, module.__name__
        assert 'PRIVATE to the collection' in module.__doc__
    assert top_level_imports(_monitor_restarts.__file__) <= set(sys.stdlib_module_names)


# ---- restarts made by Docker's restart policy (unless-stopped), one budget, the history in the guard's state file ----

def docker_crash(harness, cid, code=1):
    """A failure of an unless-stopped container: its death, the loop's turn, Docker's own start of it, the loop's turn."""
    harness.event('die', cid, code)
    harness.run_for(1.0)
    if harness.client.api.items[cid]['State'] == 'restarting':
        harness.engine_restart(cid)
        harness.run_for(1.0)


def guard_file(harness):
    with open(harness.config['guard_state_file'], encoding='utf-8') as handle:
        return json.load(handle)


def test_restarts_made_by_dockers_policy_are_counted_with_reason_and_by_docker(harness):
    cid = harness.client.api.add('sutazai-mon-app', policy='unless-stopped')
    harness.run_for(1)
    docker_crash(harness, cid, 1)
    assert harness.client.api.calls == []  # Docker restarted it, not the monitor
    (line,) = harness.events('restarted')
    assert (line['container'], line['reason'], line['by'], line['attempt'], line['remaining']) == ('sutazai-mon-app', 'crash', 'docker', 1, 2)
    status = mon.MonitorView(harness.monitor).restart_status()['sutazai-mon-app']
    assert (status['restarts_in_window'], status['remaining'], status['by_docker_in_window'], status['totals']) == (1, 2, 1, {'crash': 1})
    (record,) = guard_file(harness)['restarts']['containers']['sutazai-mon-app']['restarts']
    assert record[1:] == ['crash', 'docker']


def test_past_the_budget_the_daemon_stops_a_container_docker_keeps_restarting_and_gives_up(harness):
    cid = harness.client.api.add('sutazai-mon-loop', policy='unless-stopped')
    harness.run_for(1)
    for _failure in range(3):
        docker_crash(harness, cid, 1)
    assert [line['by'] for line in harness.events('restarted')] == ['docker'] * 3
    assert harness.client.api.calls == []
    harness.event('die', cid, 1)  # the 4th failure in the hour: Docker would restart it again
    harness.run_for(1.0)
    assert harness.client.api.calls == [('stop', cid)]  # docker stop ends Docker's own restart loop
    assert harness.client.api.items[cid]['State'] == 'exited'
    (alert,) = harness.events('restart_given_up')
    assert (alert['level'], alert['restarts_in_window'], alert['stopped'], alert['restart_policy']) == ('alert', 3, True, 'unless-stopped')
    harness.event('kill', cid)  # the engine's events of our stop are ours
    harness.event('die', cid, 143)
    harness.event('stop', cid)
    harness.run_for(10)
    assert harness.client.api.calls == [('stop', cid)]
    view = mon.MonitorView(harness.monitor)
    status = view.restart_status()['sutazai-mon-loop']
    assert (status['remaining'], status['given_up']) == (0, True)
    code, body = mmetrics.health(view, 10.0, harness.clock())
    assert (code, body['status'], body['given_up']) == (200, 'degraded', ['sutazai-mon-loop'])
    assert guard_file(harness)['restarts']['containers']['sutazai-mon-loop']['given_up_at']


def test_an_operator_start_after_the_give_up_gives_the_whole_budget_back(harness):
    cid = harness.client.api.add('sutazai-mon-loop', policy='unless-stopped')
    harness.run_for(1)
    for _failure in range(4):
        docker_crash(harness, cid, 1)
    assert harness.monitor.policy.given_up('sutazai-mon-loop')
    harness.event('die', cid, 143)  # our stop
    harness.run_for(1)
    harness.client.api.items[cid].update(State='running', _restart_count=0)  # `docker start` by an operator
    harness.event('start', cid)
    harness.run_for(1)
    (resumed,) = harness.events('resumed')
    assert resumed['container'] == 'sutazai-mon-loop'
    assert not harness.monitor.policy.given_up('sutazai-mon-loop')
    assert harness.monitor.policy.remaining('sutazai-mon-loop') == 3
    docker_crash(harness, cid, 1)  # a failure after that is counted again, not given up at once
    assert harness.events('restarted')[-1]['attempt'] == 1
    assert len(harness.events('restart_given_up')) == 1


def test_a_start_by_docker_after_the_give_up_is_stopped_again(harness):
    cid = harness.client.api.add('sutazai-mon-loop', policy='unless-stopped')
    harness.run_for(1)
    for _failure in range(4):
        docker_crash(harness, cid, 1)
    assert harness.client.api.calls == [('stop', cid)]
    # a new daemon (the stop never reached the engine, the daemon was killed): Docker starts it again later
    harness.monitor = harness.new_monitor()
    harness.run_for(1)
    item = harness.client.api.items[cid]
    item.update(State='running', _restart_count=item['_restart_count'] + 1)
    harness.event('start', cid)
    harness.run_for(1)
    assert harness.client.api.calls == [('stop', cid), ('stop', cid)]
    assert harness.events('engine_restart_after_give_up')[0]['level'] == 'alert'


def test_a_container_with_policy_no_is_still_started_by_the_monitor_within_the_same_budget(harness):
    cid = harness.client.api.add('sutazai-mon-plain', policy='no')
    harness.run_for(1)
    harness.event('die', cid, 1)
    harness.run_for(2)
    assert harness.client.api.calls == [('start', cid)]
    assert harness.events('restarted')[0]['by'] == 'monitor'


def test_an_oom_kill_docker_restarts_at_once_runs_a_guard_pass_at_once(tmp_path):
    harness = Harness(tmp_path, guard_interval=60)
    api = harness.client.api
    cid = api.add('sutazai-mon-api', tier=1, policy='unless-stopped')
    batch = api.add('sutazai-mon-batch', tier=3)
    api.items[batch]['_restart_count'] = 0
    harness.cgroups.usage[batch] = 2 * 1024 * MIB
    harness.monitor.cycle()  # the first guard pass: no pressure; the next is due in 60 s
    write_proc(str(tmp_path / 'proc'), 95)
    harness.event('oom', cid)
    harness.event('die', cid, 137)
    harness.run_for(0.5)
    harness.engine_restart(cid)
    harness.run_for(0.5)
    assert ('stop', batch) in api.calls  # room made well before the next interval
    assert harness.events('guard_pass_now')
    (line,) = harness.events('restarted')
    assert (line['by'], line['reason']) == ('docker', 'oom_pressure')


def test_the_restart_history_lives_in_the_guard_state_file_and_a_memory_guard_pass_keeps_it(harness, tmp_path):
    cid = harness.client.api.add('sutazai-mon-app', policy='unless-stopped')
    batch = harness.client.api.add('sutazai-mon-batch', tier=3)
    harness.run_for(1)
    docker_crash(harness, cid, 1)
    assert not (tmp_path / 'restarts.json').exists()
    before = guard_file(harness)['restarts']
    assert len(before['containers']['sutazai-mon-app']['restarts']) == 1
    # a memory_guard pass on the same file (the module's code: Guard.run over a StateStore) that acts and saves
    harness.cgroups.usage[batch] = 2 * 1024 * MIB
    write_proc(str(tmp_path / 'proc'), 95)
    store = gstate.StateStore(harness.config['guard_state_file'])
    guard = _guard.Guard(harness.config['_thresholds'], mon.ScopedReadings(harness.monitor, harness.cgroups, proc_root=str(tmp_path / 'proc')),
                         _guard.Actions(harness.client, None), store, clock=harness.clock)
    result = guard.run(act=True)
    assert 'stop' in [a['action'] for a in result['actions']] and not result.get('failed')
    after = guard_file(harness)
    assert 'sutazai-mon-batch' in [r['name'] for r in after['stopped']]
    assert after['restarts']['containers'] == before['containers']
    # and a new daemon reads it from there
    again = harness.new_monitor()
    assert again.policy.status()['sutazai-mon-app']['restarts_in_window'] == 1


def test_a_separate_restart_history_is_moved_into_the_state_file_once(tmp_path):
    old = mrestarts.RestartStore(str(tmp_path / 'restarts.json'))
    history = mrestarts.empty_history()
    history['containers']['sutazai-mon-app'] = {'restarts': [[1_700_000_000.0 - 60, 'crash']], 'given_up_at': None, 'given_up_reason': None}
    history['totals']['sutazai-mon-app'] = {'crash': 4}
    old.save(history)
    harness = Harness(tmp_path)
    assert harness.monitor.policy.status()['sutazai-mon-app']['restarts_in_window'] == 1
    assert not (tmp_path / 'restarts.json').exists() and (tmp_path / 'restarts.json.migrated').exists()
    assert guard_file(harness)['restarts']['totals'] == {'sutazai-mon-app': {'crash': 4}}
    (tmp_path / 'restarts.json.migrated').rename(tmp_path / 'restarts.json')  # even if it came back, the state file wins
    again = harness.new_monitor()
    assert again.policy.status()['sutazai-mon-app']['totals'] == {'crash': 4}


class BlockingAPI(FakeAPI):
    """An engine whose restart takes as long as the test wants (a stop_timeout of a container that ignores SIGTERM)."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.released = None

    def restart(self, cid, timeout=None):
        self.released = self.release.wait(10)
        super().restart(cid, timeout)


def test_an_unhealthy_restart_does_not_hold_up_the_loop(tmp_path):
    client = FakeClient()
    client.api = BlockingAPI()
    harness = Harness(tmp_path, client=client)
    harness.monitor = mon.Monitor(harness.config, docker_client_factory=lambda: client, cgroups=harness.cgroups, clock=harness.clock,
                                  monotonic=harness.clock, out=harness.out, environ={})  # the real worker thread
    cid = client.api.add('sutazai-mon-app', status='Up 2 minutes (unhealthy)')
    try:
        harness.run_for(31)  # the restart is asked for during these cycles and hangs in the engine
        assert client.api.released is None, 'the loop waited for the restart'
        cycles = harness.monitor.facts['cycles']
        harness.monitor.cycle()
        assert harness.monitor.facts['cycles'] == cycles + 1
        client.api.release.set()  # only now does the engine finish the restart
        harness.monitor._action_worker.shutdown(wait=True)  # pylint: disable=protected-access
        assert client.api.released is True, 'the loop waited for the restart'
        assert client.api.calls == [('restart', cid)]
        harness.run_for(1)
        assert harness.events('restarted')[0]['reason'] == 'unhealthy'
    finally:
        client.api.release.set()
        harness.monitor.shutdown()


def test_check_config_shows_the_watchdog_figure_and_a_short_watchdog_is_a_warning(capsys, tmp_path):
    assert mon.main(['--check-config', '--set', 'stop_timeout=20']) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown['watchdog_sec'] == mon.watchdog_seconds(mon.build_config({'stop_timeout': 20}))
    assert shown['watchdog_sec'] > shown['stop_timeout'] + shown['guard_interval'] + shown['docker_timeout']
    harness = Harness(tmp_path)
    harness.monitor.environ = {'WATCHDOG_USEC': '30000000'}
    harness.monitor.run(once=True)
    (line,) = harness.events('watchdog_too_short')
    assert (line['watchdog_sec'], line['needed_sec']) == (30.0, shown['watchdog_sec'])


def test_a_start_after_a_stop_is_the_operators_even_when_docker_has_restarted_it_again_by_the_time_the_daemon_looks(harness):
    cid = harness.client.api.add('sutazai-mon-loop', policy='unless-stopped')
    harness.run_for(1)
    for _failure in range(4):
        docker_crash(harness, cid, 1)
    harness.event('die', cid, 143)  # the engine's events of our give-up stop
    harness.event('stop', cid)
    harness.run_for(1)
    # `docker start`, then the container crashes at once and Docker restarts it before the daemon reads the start event
    harness.client.api.items[cid].update(State='running', _restart_count=1)
    harness.event('start', cid)
    harness.run_for(1)
    assert [line['container'] for line in harness.events('resumed')] == ['sutazai-mon-loop']
    assert harness.client.api.calls == [('stop', cid)]  # not stopped again


# ---- project: the daemon on an engine shared with other projects ----------------------------------------------

def test_with_a_project_the_daemon_stops_restarts_and_restores_only_that_project(tmp_path):
    compose = 'com.docker.compose.project'
    harness = Harness(tmp_path, project='a', guard_restore_after=0)
    ours = harness.client.api.add('sutazai-mon-a-agent', tier=3, labels={compose: 'a'})
    swarm = harness.client.api.add('sutazai-mon-a-worker', tier=3, labels={'com.docker.stack.namespace': 'a'})
    theirs = harness.client.api.add('sutazai-mon-b-agent', tier=3, labels={compose: 'b'}, policy='no')
    for cid in (ours, swarm, theirs):
        harness.cgroups.usage[cid] = 2 * 1024 * MIB
    write_proc(str(tmp_path / 'proc'), 95)
    harness.monitor.cycle()
    assert ('stop', ours) in harness.client.api.calls and ('stop', swarm) in harness.client.api.calls
    assert ('stop', theirs) not in harness.client.api.calls
    # a crash of the other project's container is not the daemon's to restart
    harness.event('die', theirs, 1)
    harness.run_for(5)
    assert ('start', theirs) not in harness.client.api.calls
    # a record of the other project's container (written by an unscoped pass) is never restored nor dropped
    state = gstate.StateStore(harness.config['guard_state_file'])
    data = state.load()
    data['stopped'].insert(0, {'id': theirs, 'name': 'sutazai-mon-b-agent', 'tier': 3, 'usage': 0, 'stopped_at': 1.0, 'status': 'stopped'})
    state.save(data)
    write_proc(str(tmp_path / 'proc'), 20)
    harness.run_for(10)
    assert ('start', ours) in harness.client.api.calls and ('start', swarm) in harness.client.api.calls
    assert ('start', theirs) not in harness.client.api.calls
    assert [r['name'] for r in state.load()['stopped']] == ['sutazai-mon-b-agent']


def test_without_a_project_the_daemon_stops_every_project(tmp_path):
    harness = Harness(tmp_path)
    theirs = harness.client.api.add('sutazai-mon-b-agent', tier=3, labels={'com.docker.compose.project': 'b'})
    harness.cgroups.usage[theirs] = 2 * 1024 * MIB
    write_proc(str(tmp_path / 'proc'), 95)
    harness.monitor.cycle()
    assert ('stop', theirs) in harness.client.api.calls


def test_a_project_setting_is_checked():
    assert mon.build_config({'project': 'a'})['_scope'].as_dict() == {'project': 'a', 'labels': {}}
    assert mon.build_config({'project': ''})['_scope'].as_dict() is None  # empty: unset, as for every setting without a default
    with pytest.raises(mon.ConfigError, match='project must name a Compose project or Swarm stack.*got 5'):
        mon.build_config({'project': 5})
