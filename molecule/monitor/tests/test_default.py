"""testinfra checks of the monitor scenario: the role in systemd mode on a host with its own Docker engine.

What the role must have put in force there: the hardened unit active and enabled (exposure <= 3.0 by
systemd-analyze security), /metrics and /health on 127.0.0.1:8082 only, /health 200 and the daemon's
metrics in /metrics. Then real faults on that host, in this order:
  - kill -9 of the tier-2 test service's process (restart policy "no": only the monitor can bring it
    back) -> running and healthy again within 10 s, counted as a crash restart;
  - SIGKILL of the daemon -> systemd starts it again (Restart=on-failure) and it still knows the restart
    counts (the restart history on disk);
  - `docker stop` by an operator -> stays stopped;
  - a container unhealthy (Docker health status) -> restarted once monitor_unhealthy_for (8 s here) has
    passed, not before, and healthy again;
  - the Docker engine restarted under the daemon -> it reconnects: /health 200 and `ok` again, new
    cycles complete, the containers are listed again;
  - a container that crashes on start -> exactly 3 restarts (made by the monitor under restart policy
    "no", by Docker under "unless-stopped", counted alike), then given up: the monitor stops it (ending
    Docker's own loop), the budget metrics and /health say so, and no fourth restart follows (last:
    /health stays `degraded`).
"""

import json
import time

import pytest

testinfra_hosts = ['all']  # pylint: disable=invalid-name

SERVICE = 'sutazai-mr-agent'
UNIT = 'sutazai-monitor.service'
BASE = 'http://127.0.0.1:8082'


def get(host, path):
    """(status, body) of a GET on the daemon, from inside the instance."""
    result = host.run("curl -s -o /tmp/body -w '%%{http_code}' %s%s; echo; cat /tmp/body", BASE, path)
    status, body = (result.stdout.split('\n', 1) + [''])[:2]
    return int(status or 0), body


def samples(host):
    """{(name, frozenset(labels)): value} of a scrape."""
    status, body = get(host, '/metrics')
    assert status == 200
    result = {}
    for line in body.splitlines():
        if not line or line.startswith('#'):
            continue
        series, number = line.rsplit(' ', 1)
        name, labels = (series.split('{', 1) + [''])[:2]
        pairs = frozenset(item.split('=', 1)[0] + '=' + item.split('=', 1)[1].strip('"')
                          for item in labels.rstrip('}').split(',') if '=' in item)
        result[(name, pairs)] = float(number)
    return result


def value(host, metric, **labels):
    """The sum of a metric's samples that carry the given labels; None when there is none."""
    wanted = frozenset('%s=%s' % item for item in labels.items())
    found = [v for (n, pairs), v in samples(host).items() if n == metric and wanted <= pairs]
    return sum(found) if found else None


def wait_for(check, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    return None


def inspect(host, name):
    result = host.run('docker inspect %s', name)
    return json.loads(result.stdout)[0] if result.rc == 0 else None


def test_the_unit_is_active_enabled_and_hardened(host):
    service = host.service(UNIT)
    assert service.is_running and service.is_enabled
    result = host.run('systemd-analyze security --threshold=30 %s', UNIT)
    assert result.rc == 0, result.stdout
    assert 'Overall exposure level for %s:' % UNIT in result.stdout
    # the watchdog period is the daemon's own figure for its settings, so a slow engine call is no hang
    checked = json.loads(host.run('python3 /opt/sutazai-monitor/sutazai-monitor --config /etc/sutazai/monitor.yml --check-config').stdout)
    assert host.run('systemctl show -p WatchdogUSec --value %s', UNIT).stdout.strip() in (
        '%ds' % checked['watchdog_sec'], '%dmin %ds' % divmod(checked['watchdog_sec'], 60), '%dmin' % (checked['watchdog_sec'] // 60))
    assert 'watchdog_too_short' not in host.run('journalctl -u %s --no-pager -o cat', UNIT).stdout


def test_it_listens_on_loopback_only(host):
    assert host.socket('tcp://127.0.0.1:8082').is_listening
    assert not host.socket('tcp://0.0.0.0:8082').is_listening
    assert all(':8082' not in line or '127.0.0.1:8082' in line for line in host.run('ss -ltnH').stdout.splitlines())


def test_health_and_metrics_answer(host):
    status, body = get(host, '/health')
    assert status == 200 and json.loads(body)['status'] == 'ok', body
    found = {name for name, _labels in samples(host)}
    for name in ('sutazai_monitor_up', 'sutazai_memory_pressure_ratio', 'sutazai_swap_used_ratio', 'sutazai_guard_level',
                 'container_memory_working_set_bytes', 'sutazai_monitor_restart_budget_remaining',
                 'sutazai_monitor_last_success_timestamp_seconds', 'sutazai_monitor_cycles_total'):
        assert name in found, name
    assert value(host, 'container_memory_working_set_bytes', name=SERVICE, tier='2') > 0


def test_kill_9_of_a_tier_2_process_is_back_healthy_within_10_s(host):
    before = inspect(host, SERVICE)
    assert before['State']['Health']['Status'] == 'healthy'
    restarts_before = value(host, 'sutazai_monitor_restarts_total', name=SERVICE) or 0
    assert host.run('kill -9 %s', str(before['State']['Pid'])).rc == 0
    killed = time.monotonic()
    assert wait_for(lambda: inspect(host, SERVICE)['State']['StartedAt'] != before['State']['StartedAt'], 10)
    healthy = wait_for(lambda: inspect(host, SERVICE)['State'].get('Health', {}).get('Status') == 'healthy', 10)
    elapsed = time.monotonic() - killed
    assert healthy and elapsed <= 10, 'not healthy again within 10 s (%.1f s)' % elapsed
    assert inspect(host, SERVICE)['HostConfig']['RestartPolicy']['Name'] == 'no'  # the monitor restarted it, not Docker
    assert wait_for(lambda: (value(host, 'sutazai_monitor_restarts_total', name=SERVICE) or 0) >= restarts_before + 1
                    and value(host, 'sutazai_monitor_restart_budget_remaining', name=SERVICE) < 3, 10)


def test_sigkill_of_the_daemon_is_restarted_by_systemd_with_its_counts(host):
    pid = host.run('systemctl show -p MainPID --value %s', UNIT).stdout.strip()
    remaining = value(host, 'sutazai_monitor_restart_budget_remaining', name=SERVICE)
    totals = value(host, 'sutazai_monitor_restarts_total', name=SERVICE)
    assert remaining is not None and remaining < 3, 'run after the kill -9 test: nothing to keep yet'
    assert host.run('kill -9 %s', pid).rc == 0

    def new_main_pid():
        found = host.run('systemctl show -p MainPID --value %s', UNIT).stdout.strip()
        return found if found not in ('0', pid, '') else None
    new_pid = wait_for(new_main_pid, 30)
    assert new_pid, 'systemd did not start the daemon again'
    assert wait_for(lambda: get(host, '/health')[0] == 200, 30)
    assert host.run('systemctl show -p NRestarts --value %s', UNIT).stdout.strip() not in ('', '0')
    assert value(host, 'sutazai_monitor_restart_budget_remaining', name=SERVICE) == remaining
    assert value(host, 'sutazai_monitor_restarts_total', name=SERVICE) == totals


def test_a_docker_stop_by_an_operator_stays_stopped(host):
    restarts = value(host, 'sutazai_monitor_restarts_total', name=SERVICE)
    assert host.run('docker stop -t 5 %s', SERVICE).rc == 0
    try:
        time.sleep(8)  # past the first backoff steps
        assert inspect(host, SERVICE)['State']['Status'] == 'exited'
        assert value(host, 'sutazai_monitor_restarts_total', name=SERVICE) == restarts
        assert '"operator_stop"' in host.run('journalctl -u %s --no-pager -o cat', UNIT).stdout
    finally:
        host.run('docker start %s', SERVICE)
    assert wait_for(lambda: inspect(host, SERVICE)['State'].get('Health', {}).get('Status') == 'healthy', 30)


def test_an_unhealthy_container_is_restarted_after_unhealthy_for_not_before(host):
    name = 'sutazai-mr-unhealthy'
    host.run('docker rm -f %s', name)
    try:
        # healthy while /dev/shm/ok exists; /dev/shm is a fresh tmpfs at every start, so a restart heals it
        result = host.run('docker run -d --name %s --restart no -l sutazai.tier=2 -l sutazai.service=flaky '
                          '--health-cmd "test -f /dev/shm/ok" --health-interval 1s --health-retries 1 '
                          '--entrypoint sh sutazai-testbed/http:latest '
                          '-c "touch /dev/shm/ok && exec python3 /usr/local/bin/memhog_http.py"', name)
        assert result.rc == 0, result.stderr
        assert wait_for(lambda: inspect(host, name)['State'].get('Health', {}).get('Status') == 'healthy', 30)
        started = inspect(host, name)['State']['StartedAt']
        assert host.run('docker exec %s rm /dev/shm/ok', name).rc == 0
        assert wait_for(lambda: inspect(host, name)['State']['Health']['Status'] == 'unhealthy', 15)
        unhealthy_at = time.monotonic()
        restarted = wait_for(lambda: inspect(host, name)['State']['StartedAt'] != started, 40)
        waited = time.monotonic() - unhealthy_at
        assert restarted, 'not restarted while unhealthy'
        assert waited >= 8 - 1, 'restarted %.1f s after it turned unhealthy, before monitor_unhealthy_for (8 s)' % waited
        assert wait_for(lambda: inspect(host, name)['State'].get('Health', {}).get('Status') == 'healthy', 30)
        assert value(host, 'sutazai_monitor_restarts_total', name=name, reason='unhealthy') == 1
    finally:
        host.run('docker rm -f %s', name)


def test_a_docker_engine_restart_is_survived(host):
    cycles = value(host, 'sutazai_monitor_cycles_total')
    pid = host.run('systemctl show -p MainPID --value %s', UNIT).stdout.strip()
    assert host.run('systemctl restart docker.service').rc == 0
    assert wait_for(lambda: host.run('docker info').rc == 0, 60)
    # the test service had restart policy "no": the engine restart stopped it; start it again
    host.run('docker start %s', SERVICE)

    def reconnected():
        status, body = get(host, '/health')
        return status == 200 and json.loads(body)['status'] == 'ok'
    assert wait_for(reconnected, 60), get(host, '/health')
    assert host.run('systemctl show -p MainPID --value %s', UNIT).stdout.strip() == pid, 'the daemon restarted'
    assert value(host, 'sutazai_monitor_cycles_total') > cycles
    assert wait_for(lambda: value(host, 'container_memory_working_set_bytes', name=SERVICE), 30)
    logs = host.run('journalctl -u %s --no-pager -o cat', UNIT).stdout
    assert '"docker_reachable"' in logs or 'reconnect' in logs
    assert 'Traceback' not in logs


@pytest.mark.parametrize('policy', ['no', 'unless-stopped'])
def test_a_crash_loop_gets_exactly_3_restarts_then_is_given_up(host, policy):
    name = 'sutazai-mr-crashloop-' + policy
    host.run('docker rm -f %s', name)
    try:
        result = host.run('docker run -d --name %s --restart %s -l sutazai.tier=2 -l sutazai.service=crashloop '
                          '--entrypoint sh sutazai-testbed/http:latest -c "sleep 0.5; exit 3"', name, policy)
        assert result.rc == 0, result.stderr
        assert wait_for(lambda: value(host, 'sutazai_monitor_restart_budget_exhausted', name=name) == 1, 60), \
            'the monitor did not give up: %s' % get(host, '/health')[1]
        assert value(host, 'sutazai_monitor_restarts_total', name=name, reason='crash') == 3
        assert value(host, 'sutazai_monitor_restart_budget_remaining', name=name) == 0
        status, body = get(host, '/health')
        assert status == 200 and name in json.loads(body)['given_up'] and json.loads(body)['status'] == 'degraded'
        assert wait_for(lambda: inspect(host, name)['State']['Status'] == 'exited', 30), inspect(host, name)['State']
        started = inspect(host, name)['State']['StartedAt']
        time.sleep(10)  # longer than the next backoff step (8 s): no fourth restart
        assert inspect(host, name)['State']['StartedAt'] == started
        assert inspect(host, name)['State']['Status'] == 'exited'
        assert value(host, 'sutazai_monitor_restarts_total', name=name, reason='crash') == 3
    finally:
        host.run('docker rm -f %s', name)
