"""memory_guard never stops a container it cannot record, and fails clearly: a real tier-3 container, the real
Docker engine, the module run by ansible-playbook, and a state file or directory the guard cannot write.

The guard sees the engine through a small proxy that adds this test's own label to every container listing,
so an emergency pass here can only ever reach this test's container, whatever else runs on the host.
"""

import fcntl
import json
import os
import socket
import subprocess
import threading
import urllib.parse
import uuid

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate

docker = pytest.importorskip('docker')

PREFIX = 'sutazai-hc'
SCOPE_LABEL = 'sutazai.test-scope'


class ScopedDockerProxy:
    """A unix socket that forwards to the Docker engine, adding `label=<SCOPE_LABEL>=<scope>` to container listings.

    A stop of a container whose id is in `refuse_stop` gets the engine's kind of error (HTTP 500) instead.
    """

    def __init__(self, path, scope, upstream='/var/run/docker.sock'):
        self.path = path
        self.scope = scope
        self.upstream = upstream
        self.listings = 0
        self.refuse_stop = set()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                client, _addr = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _rewrite(self, request_line):
        method, target, version = request_line.split(' ', 2)
        url = urllib.parse.urlsplit(target)
        if not url.path.endswith('/containers/json'):
            return request_line
        self.listings += 1
        query = urllib.parse.parse_qs(url.query)
        filters = json.loads(query.get('filters', ['{}'])[0])
        labels = filters.get('label', [])
        if isinstance(labels, dict):  # the {"label": {"a=b": true}} form
            labels = [key for key, on in labels.items() if on]
        filters['label'] = list(labels) + ['%s=%s' % (SCOPE_LABEL, self.scope)]
        query['filters'] = [json.dumps(filters)]
        target = urllib.parse.urlunsplit(('', '', url.path, urllib.parse.urlencode(query, doseq=True), ''))
        return ' '.join((method, target, version))

    def _connection(self, client):
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.upstream)
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        buffer = b''
        try:
            while True:
                while b'\r\n\r\n' not in buffer:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b'\r\n\r\n', 1)
                lines = head.decode('latin-1').split('\r\n')
                lines[0] = self._rewrite(lines[0])
                length = 0
                for line in lines[1:]:
                    name, _sep, value = line.partition(':')
                    if name.strip().lower() == 'content-length':
                        length = int(value.strip())
                while len(buffer) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                if self._refused(lines[0]):
                    message = json.dumps({'message': 'cannot stop container: permission denied'}).encode()
                    client.sendall(b'HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s'
                                   % (len(message), message))
                    continue
                upstream.sendall('\r\n'.join(lines).encode('latin-1') + b'\r\n\r\n' + body)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _refused(self, request_line):
        method, target, _version = request_line.split(' ', 2)
        parts = urllib.parse.urlsplit(target).path.strip('/').split('/')
        return method == 'POST' and parts[-1:] == ['stop'] and len(parts) >= 3 and parts[-2] in self.refuse_stop

    @staticmethod
    def _pipe(source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass

    def close(self):
        self.server.close()
        os.unlink(self.path)


@pytest.fixture(name='agent')
def fixture_agent(tmp_path):
    """A running tier-3 container of this test, reachable by the guard only through the scoped proxy."""
    if not os.path.exists('/var/run/docker.sock'):
        pytest.skip('no Docker engine')
    client = docker.from_env()
    scope = uuid.uuid4().hex[:12]
    name = '%s-guard-safety-%s' % (PREFIX, scope)
    proxy = ScopedDockerProxy(str(tmp_path / 'docker.sock'), scope)
    container = None
    try:
        container = client.containers.run('sutazai-testbed/http:latest', name=name, detach=True, environment={'HOLD_MB': '16'},
                                          labels={'sutazai.tier': '3', SCOPE_LABEL: scope})
        yield {'client': client, 'name': name, 'id': container.id, 'docker_host': 'unix://' + proxy.path, 'proxy': proxy}
    finally:
        if container is not None:
            container.remove(force=True)
        proxy.close()


def _running(agent):
    agent['client'].containers.get(agent['id']).reload()
    return agent['client'].containers.get(agent['id']).status == 'running'


def _emergency(module_runner, agent, state_file, **extra):
    """An emergency pass: it stops every tier-3 container it sees (here: only the test's own) whatever the readings."""
    args = dict(level='emergency', ollama_host='', docker_host=agent['docker_host'], state_file=str(state_file), stop_timeout=1)
    args.update(extra)
    return module_runner('memory_guard', args)


def _records(state_file):
    with open(state_file, encoding='utf-8') as handle:
        return [(r['name'], r.get('status')) for r in json.load(handle)['stopped']]


def test_an_emergency_pass_that_can_write_stops_and_records_the_container(module_runner, agent, tmp_path):
    """The control: with a writable state file the same pass stops the container, so the tests below can see a stop."""
    state_file = tmp_path / 'state' / 'guard.json'
    result = _emergency(module_runner, agent, state_file)
    assert not result.get('failed'), result.get('msg')
    assert [a['container'] for a in result['actions']] == [agent['name']]
    assert not _running(agent)
    assert _records(state_file) == [(agent['name'], 'stopped')]
    assert agent['proxy'].listings > 0


def test_an_unwritable_state_file_means_no_stop(module_runner, agent, tmp_path):
    """An immutable state file (root cannot replace it either): the record of the stop cannot be written, so no stop."""
    state_dir = tmp_path / 'state'
    state_file = state_dir / 'guard.json'
    gstate.StateStore(str(state_file)).save(gstate.empty_state())
    subprocess.run(['chattr', '+i', str(state_file)], check=True)
    try:
        result = _emergency(module_runner, agent, state_file)
    finally:
        subprocess.run(['chattr', '-i', str(state_file)], check=True)
    assert _running(agent), 'the container was stopped without a record: %s' % result.get('msg')
    assert result.get('failed') is True
    assert result['msg'] == ('memory_guard: cannot write the state file %s: Operation not permitted (at recording the stop of %s); '
                             '%s was not stopped. Nothing was done in this pass' % (state_file, agent['name'], agent['name']))
    assert result['actions'] == [] and result['changed'] is False and result['stopped_by_guard'] == []
    assert 'Traceback' not in json.dumps(result)
    assert _running(agent)
    assert _records(state_file) == []
    assert sorted(os.listdir(state_dir)) == ['guard.json', 'guard.json.bak', 'guard.json.lock']  # no temporary file left


def test_an_unwritable_state_directory_means_no_stop(module_runner, agent, tmp_path):
    """The state file's directory cannot exist (a file is in its place): the pass fails before it does anything."""
    (tmp_path / 'state').write_text('not a directory\n')
    state_file = tmp_path / 'state' / 'guard.json'
    result = _emergency(module_runner, agent, state_file)
    assert result.get('failed') is True
    assert result['msg'].startswith('memory_guard: cannot open the lock file %s.lock of the state file' % state_file)
    assert result['msg'].endswith('Nothing was done in this pass')
    assert result['actions'] == [] and 'Traceback' not in json.dumps(result)
    assert _running(agent)


def test_a_pass_waits_for_the_lock_and_fails_clearly_when_it_is_held_too_long(module_runner, agent, tmp_path):
    """This process holds the state file's lock (as the daemon would mid-pass): the module waits lock_timeout, then fails."""
    state_file = tmp_path / 'state' / 'guard.json'
    os.makedirs(state_file.parent)
    with open(str(state_file) + '.lock', 'w', encoding='ascii') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write('%d\n' % os.getpid())
        lock.flush()
        result = _emergency(module_runner, agent, state_file, lock_timeout=1)
    assert result.get('failed') is True
    assert result['msg'] == ('memory_guard: the state file %s is locked by another guard pass (pid %d) and was not released within '
                             '1 seconds. Nothing was done in this pass' % (state_file, os.getpid()))
    assert _running(agent)
    assert not state_file.exists()
    # released: the same pass goes through
    result = _emergency(module_runner, agent, state_file, lock_timeout=1)
    assert not result.get('failed'), result.get('msg')
    assert not _running(agent) and _records(state_file) == [(agent['name'], 'stopped')]


def _tree(directory):
    result = {}
    for parent, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(parent, name)
            info = os.stat(path)
            content = None
            if name in files:
                with open(path, 'rb') as handle:
                    content = handle.read()
            result[os.path.relpath(path, directory)] = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, content)
    return result


@pytest.mark.parametrize('kind', ['damaged', 'missing', 'good'])
def test_check_mode_and_act_false_write_nothing(module_runner, agent, tmp_path, kind):
    """A damaged, a missing and a good state file: the directory is byte for byte and timestamp for timestamp the same."""
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    state_file = state_dir / 'guard.json'
    if kind != 'missing':
        store = gstate.StateStore(str(state_file))
        state = gstate.empty_state()
        gstate.record_stop(state, {'id': 'f' * 64, 'container': PREFIX + '-gone', 'tier': 3, 'size': 1}, 1.0)
        store.save(state)
        store.save(state)  # and a backup
    if kind == 'damaged':
        state_file.write_text(state_file.read_text()[:40])
    before = _tree(tmp_path / 'state')
    planned = module_runner('memory_guard', dict(level='emergency', ollama_host='', docker_host=agent['docker_host'],
                                                 state_file=str(state_file)), check=True)
    assert not planned.get('failed'), planned.get('msg')
    assert [a['container'] for a in planned['actions']] == [agent['name']]
    report = module_runner('memory_guard', dict(act=False, ollama_host='', docker_host=agent['docker_host'], state_file=str(state_file)))
    assert not report.get('failed'), report.get('msg')
    assert _tree(tmp_path / 'state') == before
    assert _running(agent)
    if kind == 'damaged':
        assert [r['name'] for r in report['stopped_by_guard']] == [PREFIX + '-gone']  # from the backup, without writing


def test_a_docker_error_mid_pass_fails_and_lists_what_was_done(module_runner, agent, tmp_path):
    """The engine refuses to stop the largest container: the pass still stops the next one, then fails naming both."""
    big = agent['client'].containers.run('sutazai-testbed/http:latest', name=agent['name'] + '-big', detach=True,
                                         environment={'HOLD_MB': '96'}, labels={'sutazai.tier': '3', SCOPE_LABEL: agent['proxy'].scope})
    try:
        agent['proxy'].refuse_stop.add(big.id)
        state_file = tmp_path / 'state' / 'guard.json'
        result = _emergency(module_runner, agent, state_file)
        big.reload()
        assert big.status == 'running' and not _running(agent)
        assert result.get('failed') is True
        assert result['msg'].startswith('memory_guard: stop %s failed: 500 Server Error' % big.name)
        assert 'cannot stop container: permission denied' in result['msg']
        assert result['msg'].endswith('Done in this pass: stopped container %s (tier 3)' % agent['name'])
        assert [a['container'] for a in result['actions']] == [agent['name']] and result['changed'] is True
        # the refused one keeps a 'stopping' record (it might have stopped all the same); the next pass drops it as it runs
        assert _records(state_file) == [(big.name, 'stopping'), (agent['name'], 'stopped')]
        agent['proxy'].refuse_stop.clear()
        again = _emergency(module_runner, agent, state_file)
        assert not again.get('failed'), again.get('msg')
        assert _records(state_file) == [(agent['name'], 'stopped'), (big.name, 'stopped')]
    finally:
        big.remove(force=True)
