"""The monitor daemon and Docker's own restart policy (`unless-stopped`, as the stack role sets it), on this host's engine.

Docker restarts such a container itself, within about a second of a failure; the daemon must count
those restarts against the same budget (3 per rolling hour), and on the next failure stop the
container (ending Docker's loop) and give up. Containers are named sutazai-m2-*, the daemon is scoped
to that prefix, and everything is removed after each test whatever happens.
"""

import importlib.util
import json
import os
import signal
import time

import pytest

docker = pytest.importorskip('docker')

_SPEC = importlib.util.spec_from_file_location('monitor_daemon_helpers', os.path.join(os.path.dirname(__file__), 'test_monitor_daemon.py'))
helpers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(helpers)

PREFIX = 'sutazai-m2-'
BASE = 'sutazai-testbed/base'
HTTP = 'sutazai-testbed/http'


@pytest.fixture(name='client', scope='module')
def fixture_client():
    try:
        client = docker.from_env(timeout=60)
        client.ping()
        client.images.get(BASE)
        client.images.get(HTTP)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        pytest.skip('needs the Docker engine and the images %s, %s (make testbed): %s' % (BASE, HTTP, exc))
    yield client
    for container in client.containers.list(all=True, filters={'name': PREFIX}):
        container.remove(force=True)


@pytest.fixture(name='made')
def fixture_made(client):
    """Containers the test runs; removed after it."""
    containers = []
    yield containers
    for container in containers:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture(name='daemon')
def fixture_daemon(tmp_path, client):  # pylint: disable=unused-argument
    runner = helpers.Daemon(tmp_path, name_prefix=PREFIX)
    yield runner
    runner.stop(signal.SIGKILL)


def restarted(daemon, name, by=None):
    return [line for line in daemon.decisions('restarted', name) if by is None or line.get('by') == by]


def test_a_crash_loop_under_unless_stopped_gets_3_restarts_by_docker_then_the_daemon_stops_it_and_gives_up(client, made, daemon):
    daemon.start()
    name = PREFIX + 'crash'
    crash = client.containers.run(BASE, name=name, entrypoint=['sh', '-c', 'echo starting; exit 1'], detach=True,
                                  labels={'sutazai.tier': '3', 'sutazai.service': 'crash'},
                                  restart_policy={'Name': 'unless-stopped'})
    made.append(crash)
    assert helpers.wait_for(lambda: daemon.decisions('restart_given_up', name), 40), daemon.lines()
    (alert,) = daemon.decisions('restart_given_up', name)
    assert (alert['level'], alert['restarts_in_window'], alert['stopped'], alert['restart_policy']) == ('alert', 3, True, 'unless-stopped')
    assert helpers.wait_for(lambda: daemon.decisions('given_up_stopped', name), 30), daemon.lines()
    crash.reload()
    assert crash.status == 'exited'
    restart_count, started_at = crash.attrs['RestartCount'], crash.attrs['State']['StartedAt']
    time.sleep(8)  # room for a further restart by Docker or by the daemon, which must not come
    crash.reload()
    assert (crash.status, crash.attrs['RestartCount'], crash.attrs['State']['StartedAt']) == ('exited', restart_count, started_at)
    assert [line['by'] for line in restarted(daemon, name)] == ['docker'] * 3
    assert [line['attempt'] for line in restarted(daemon, name)] == [1, 2, 3]
    status, body = daemon.health()
    assert (status, body['status'], body['given_up']) == (200, 'degraded', [name])
    samples = daemon.metrics()[0]
    assert samples[('sutazai_monitor_restarts_total', (('name', name), ('reason', 'crash')))] == 3
    assert samples[('sutazai_monitor_restart_budget_remaining', (('name', name),))] == 0
    assert samples[('sutazai_monitor_restart_budget_exhausted', (('name', name),))] == 1
    assert samples[('sutazai_monitor_containers_given_up', ())] == 1
    # the history is in the guard's state file, beside the guard's own records
    with open(daemon.settings['guard_state_file'], encoding='utf-8') as handle:
        state = json.load(handle)
    record = state['restarts']['containers'][name]
    assert [entry[1:] for entry in record['restarts']] == [['crash', 'docker']] * 3 and record['given_up_at']
    assert 'stopped' in state and not os.path.exists(daemon.settings['restart_state_file'])

    # an operator's `docker start` gives the budget back: Docker's next restarts are counted from 1 again
    crash.start()
    assert helpers.wait_for(lambda: daemon.decisions('resumed', name), 10), daemon.lines()
    assert helpers.wait_for(lambda: len(daemon.decisions('restart_given_up', name)) == 2, 40), daemon.lines()
    assert [line['attempt'] for line in restarted(daemon, name)] == [1, 2, 3, 1, 2, 3]
    assert 'Traceback' not in daemon.stderr()


def test_kill_9_of_an_unless_stopped_tier_2_container_is_counted_once(client, made, daemon):
    name = PREFIX + 'web'
    web = client.containers.run(HTTP, name=name, detach=True, mem_limit='256m', restart_policy={'Name': 'unless-stopped'},
                                labels={'sutazai.tier': '2', 'sutazai.service': 'web', 'sutazai.health_url': 'http://{ip}:8080/health'})
    made.append(web)
    assert helpers.wait_for(lambda: helpers.container_health(web) == 200, 20)
    daemon.start()
    web.reload()
    started_at = web.attrs['State']['StartedAt']
    os.kill(web.attrs['State']['Pid'], signal.SIGKILL)
    assert helpers.wait_for(lambda: helpers.container_health(web) == 200 and web.attrs['State']['StartedAt'] != started_at, 10)
    assert helpers.wait_for(lambda: restarted(daemon, name), 10), daemon.lines()
    time.sleep(4)  # a second count (the daemon's own start, or the same restart twice) would show by now
    (line,) = restarted(daemon, name)
    assert (line['by'], line['reason'], line['exit_code'], line['attempt'], line['remaining']) == ('docker', 'crash', 137, 1, 2)
    web.reload()
    assert web.attrs['RestartCount'] == 1  # one restart, Docker's; the daemon did not start it as well
    samples = daemon.metrics()[0]
    assert samples[('sutazai_monitor_restarts_total', (('name', name), ('reason', 'crash')))] == 1
    assert samples[('sutazai_monitor_restart_budget_remaining', (('name', name),))] == 2
    assert daemon.decisions('restart_given_up', name) == []
