"""The test bed itself: the engine, Compose v2 honouring limits, and the stand-in images.

Everything later is tested on these facts, so they are checked for real on every run.
"""

import json
import os
import subprocess
import tempfile
import time
import urllib.request

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _oom

PROJECT = 'sutazai-it-testbed'


def docker(*args, check=True):
    """Run the docker CLI and return its stdout."""
    proc = subprocess.run(['docker'] + list(args), capture_output=True, text=True, check=False, timeout=300)
    if check and proc.returncode:
        raise AssertionError('docker %s failed: %s' % (' '.join(args), proc.stderr))
    return proc.stdout


def test_module_runner_reaches_the_lab_host(module_runner):
    """The integration harness runs a module on the lab inventory's host and returns its result."""
    result = module_runner('ansible.builtin.ping', {'data': 'lab'})
    assert result.get('ping') == 'lab'
    assert not result.get('failed')


@pytest.mark.parametrize('image', ['base', 'redis', 'postgres', 'http', 'ollama'])
def test_images_present(image):
    """Every local image of the test bed exists under its stable tag."""
    out = docker('image', 'inspect', 'sutazai-testbed/%s:latest' % image, '--format', '{{json .RepoTags}}')
    tags = json.loads(out)
    # the recipe-hash tag sits beside :latest
    assert any(tag != 'sutazai-testbed/%s:latest' % image for tag in tags), tags


@pytest.fixture(name='compose_project')
def fixture_compose_project():
    """A Compose v2 project with limits in deploy.resources; always taken down."""
    directory = tempfile.mkdtemp(prefix='sutazai-it-compose-')
    path = os.path.join(directory, 'compose.yml')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('''
services:
  redis:
    image: sutazai-testbed/redis:latest
    command: ["--bind", "0.0.0.0", "--protected-mode", "no", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]
    deploy:
      resources:
        limits: {memory: 128M, cpus: "0.5"}
        reservations: {memory: 32M}
  app:
    image: sutazai-testbed/http:latest
    environment: {HOLD_MB: "20"}
    ports: ["127.0.0.1::8080"]
    memswap_limit: 96M   # no swap for it, so past its limit it is OOM-killed even on a host with swap on
    deploy:
      resources:
        limits: {memory: 96M, pids: 64}
''')
    base = ['compose', '-p', PROJECT, '-f', path]
    try:
        docker(*(base + ['up', '-d', '--wait']))
        yield base
    finally:
        docker(*(base + ['down', '-v', '--remove-orphans']), check=False)
        os.unlink(path)
        os.rmdir(directory)


def test_compose_v2_honours_deploy_resources(compose_project):
    """`docker compose up` applies deploy.resources limits and the settings passed as flags."""
    assert docker('compose', 'version', '--short').strip().startswith('2.')
    ids = docker(*(compose_project + ['ps', '-q'])).split()
    inspected = {c['Name'].lstrip('/'): c for c in json.loads(docker('inspect', *ids))}
    redis = next(c for name, c in inspected.items() if 'redis' in name)
    app = next(c for name, c in inspected.items() if 'app' in name)
    assert redis['HostConfig']['Memory'] == 128 * 1024 ** 2
    assert redis['HostConfig']['NanoCpus'] == 500000000
    assert redis['HostConfig']['MemoryReservation'] == 32 * 1024 ** 2
    assert app['HostConfig']['Memory'] == 96 * 1024 ** 2
    assert app['HostConfig']['PidsLimit'] == 64
    maxmemory = docker('exec', redis['Id'], 'redis-cli', 'config', 'get', 'maxmemory').split()
    assert maxmemory[-1] == str(64 * 1024 ** 2)


def test_http_stand_in_holds_real_memory(compose_project):
    """The HTTP stand-in answers /health and its cgroup usage follows what it is told to hold."""
    app_id = docker(*(compose_project + ['ps', '-q', 'app'])).split()[0]
    port = docker('port', app_id, '8080').split(':')[-1].strip()
    url = 'http://127.0.0.1:%s' % port
    with urllib.request.urlopen(url + '/health', timeout=5) as resp:
        assert json.loads(resp.read())['held_mb'] == 20
    usage_file = '/sys/fs/cgroup/memory/docker/%s/memory.usage_in_bytes' % app_id
    if not os.path.exists(usage_file):
        pytest.skip('cgroup v1 memory controller not at %s' % usage_file)

    def usage_mb():
        with open(usage_file, encoding='ascii') as handle:
            return int(handle.read()) / 1024 ** 2

    before = usage_mb()
    with urllib.request.urlopen(urllib.request.Request(url + '/hold?mb=60', method='POST'), timeout=10) as resp:
        assert json.loads(resp.read())['held_mb'] == 60
    time.sleep(0.5)
    grown = usage_mb() - before
    assert 30 <= grown <= 60, 'usage grew by %.1f MB after holding 40 MB more' % grown
    # past its 96M limit the container is OOM-killed, as production containers are. Docker's OOMKilled is not
    # a reliable witness on cgroup v1 (it misses kills, and flags bystanders): the collection's detector is
    detector = _oom.OomDetector(containers=[app_id]).baseline()
    with pytest.raises(Exception):
        urllib.request.urlopen(urllib.request.Request(url + '/hold?mb=200', method='POST'), timeout=10)
    state = json.loads(docker('inspect', app_id, '--format', '{{json .State}}'))
    deadline = time.time() + 10
    while state['Running'] and time.time() < deadline:
        time.sleep(0.2)
        state = json.loads(docker('inspect', app_id, '--format', '{{json .State}}'))
    assert state['ExitCode'] == 137
    kills = []
    while time.time() < deadline + 5 and not kills:
        kills = [kill for kill in detector.poll() if kill.get('container_id') == app_id]
        time.sleep(0.2)
    assert kills, 'no OOM kill of %s seen: %s' % (app_id, detector.report())


def test_systemd_container_boots():
    """The base image boots systemd as PID 1 with the flags of the Molecule base (no --privileged)."""
    name = 'sutazai-it-systemd'
    docker('rm', '-f', name, check=False)
    try:
        docker('run', '-d', '--name', name, '--cap-add', 'SYS_ADMIN', '--cgroupns=host', '--security-opt', 'seccomp=unconfined',
               '--tmpfs', '/run', '--tmpfs', '/run/lock', '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw',
               'sutazai-testbed/base:latest', '/lib/systemd/systemd')
        state = ''
        deadline = time.time() + 30
        while time.time() < deadline:
            state = subprocess.run(['docker', 'exec', name, 'systemctl', 'is-system-running'],
                                   capture_output=True, text=True, check=False).stdout.strip()
            if state in ('running', 'degraded'):
                break
            time.sleep(0.5)
        assert state == 'running', 'systemd state: %r; failed units: %s' % (
            state, docker('exec', name, 'systemctl', '--failed', '--no-legend', check=False))
    finally:
        docker('rm', '-f', name, check=False)
