"""The Ollama emulator really holds a loaded model's memory and gives it back on unload.

Runs images/ollama/ollama_emulator.py as a subprocess with one ~200 MB model and
measures the process's resident set (psutil) before a load, while loaded, and after an
unload by keep_alive 0 and after an unload by keep-alive expiry.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
EMULATOR = os.path.join(ROOT, 'images', 'ollama', 'ollama_emulator.py')
MODEL_SIZE = 200 * 1000 * 1000
TOLERANCE = 0.15
OPENER = urllib.request.build_opener()


def free_port():
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Emulator:
    """The emulator subprocess and a small client of it."""

    def __init__(self, process, port):
        self.process = process
        self.base = 'http://127.0.0.1:%d' % port

    def call(self, method, path, body=None):
        """JSON answer of a request (raises on HTTP errors)."""
        data = json.dumps(body).encode() if body is not None else None
        with OPENER.open(urllib.request.Request(self.base + path, data=data, method=method), timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else None

    def loaded(self):
        """Names of the loaded models (/api/ps)."""
        return [entry['name'] for entry in self.call('GET', '/api/ps')['models']]

    def rss(self):
        """Resident bytes of the emulator process, after a moment to settle."""
        time.sleep(0.3)
        return psutil.Process(self.process.pid).memory_info().rss

    def wait_unloaded(self, timeout=10):
        """Wait until nothing is loaded."""
        deadline = time.monotonic() + timeout
        while self.loaded():
            assert time.monotonic() < deadline, 'the model is still loaded after %ss' % timeout
            time.sleep(0.05)


@pytest.fixture(name='emulator')
def fixture_emulator(tmp_path):
    """The emulator as a subprocess with one model of MODEL_SIZE bytes; always killed at teardown."""
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST='127.0.0.1:%d' % port, OLLAMA_EMULATOR_SCALE='1',
               OLLAMA_EMULATOR_CATALOG=json.dumps({'mem-model': {'size': MODEL_SIZE}}), OLLAMA_EMULATOR_PULL_DELAY='0')
    env.pop('OLLAMA_MODELS', None)
    with open(tmp_path / 'emulator.log', 'wb') as log:
        process = subprocess.Popen([sys.executable, EMULATOR], env=env, stdout=log, stderr=subprocess.STDOUT)  # pylint: disable=consider-using-with
    emulator = Emulator(process, port)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                emulator.call('GET', '/api/version')
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, (tmp_path / 'emulator.log').read_text()
                assert time.monotonic() < deadline, 'the emulator did not answer'
                time.sleep(0.05)
        yield emulator
    finally:
        process.kill()
        process.wait(timeout=10)


def test_loaded_model_holds_real_memory_and_unload_frees_it(emulator):
    emulator.call('POST', '/api/pull', {'model': 'mem-model', 'stream': False})
    size = emulator.call('GET', '/api/tags')['models'][0]['size']
    assert size == MODEL_SIZE
    emulator.call('GET', '/api/ps')
    baseline = emulator.rss()

    # load / unload by keep_alive 0
    assert emulator.call('POST', '/api/generate', {'model': 'mem-model'})['done_reason'] == 'load'
    loaded = emulator.rss()
    assert emulator.call('GET', '/_emulator/state')['held_bytes'] == size
    emulator.call('POST', '/api/generate', {'model': 'mem-model', 'keep_alive': 0})
    emulator.wait_unloaded()
    unloaded = emulator.rss()

    # load / unload by keep-alive expiry
    emulator.call('POST', '/api/generate', {'model': 'mem-model', 'keep_alive': '1s'})
    reloaded = emulator.rss()
    emulator.wait_unloaded()
    expired = emulator.rss()

    mib = 1024.0 * 1024
    print('RSS MiB: baseline %.1f, loaded %.1f (+%.1f), unloaded %.1f, reloaded %.1f (+%.1f), expired %.1f; model %.1f'
          % (baseline / mib, loaded / mib, (loaded - baseline) / mib, unloaded / mib, reloaded / mib, (reloaded - unloaded) / mib,
             expired / mib, size / mib))
    for rise in (loaded - baseline, reloaded - unloaded):
        assert abs(rise - size) <= TOLERANCE * size, 'RSS rose by %d bytes for a %d-byte model' % (rise, size)
    for after in (unloaded, expired):
        assert abs(after - baseline) <= TOLERANCE * baseline, 'RSS %d bytes after unload, %d before load' % (after, baseline)
