"""sutazai.ops.ollama_model for real: ansible-playbook against the Ollama emulator of the test bed.

The emulator (images/ollama/ollama_emulator.py) runs as a subprocess on a free loopback
port with a small scale, its store in a temporary directory. Each state runs twice (changed,
then not changed); check mode must leave the emulator as it was. The memory check runs the
emulator's image in a container with a 64 MiB memory limit and a model larger than that.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
EMULATOR = os.path.join(ROOT, 'images', 'ollama', 'ollama_emulator.py')
IMAGE = 'sutazai-testbed/ollama:latest'
SCALE = '0.01'
SEED_002 = {'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7, 'top_p': 0.9}
VARIANT = {'name': 'llama3.2-prod', 'from': 'llama3.2:3b', 'parameters': SEED_002}
MIB = 1024 * 1024


def free_port():
    """A TCP port nobody listens on, on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Ollama:
    """Direct calls to an Ollama API (the emulator), to set up and to check what the module did."""

    def __init__(self, url):
        self.url = url

    def call(self, method, path, body=None, timeout=30):
        """(status, decoded JSON or text) of one request."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        text = raw.decode('utf-8', 'replace')
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            # a streamed answer: the last line
            lines = [line for line in text.splitlines() if line.strip()]
            return status, json.loads(lines[-1]) if lines else text

    def up(self):
        """True once GET / answers."""
        try:
            with urllib.request.urlopen(self.url + '/', timeout=2) as response:
                return response.status == 200
        except (OSError, ValueError):
            return False

    def wait_up(self, seconds, proc=None):
        """Wait until the server answers; fail with what it printed when it does not."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.up():
                return
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError('the Ollama emulator at %s did not come up within %ss' % (self.url, seconds))

    def tags(self):
        """{display name: entry} of /api/tags."""
        return {entry['name']: entry for entry in self.call('GET', '/api/tags')[1]['models']}

    def ps(self):
        """{display name: entry} of /api/ps."""
        return {entry['name']: entry for entry in self.call('GET', '/api/ps')[1]['models']}

    def show(self, name):
        """The /api/show answer (None when not found)."""
        status, body = self.call('POST', '/api/show', {'model': name})
        return body if status == 200 else None

    def view(self):
        """What the module may change: local models with digests and parameters, loaded models."""
        tags = self.tags()
        return {'tags': {name: (entry['digest'], parse_parameters((self.show(name) or {}).get('parameters'))) for name, entry in tags.items()},
                'ps': sorted(self.ps())}

    def pull(self, name):
        """Pull a model directly (non-streamed)."""
        status, body = self.call('POST', '/api/pull', {'model': name, 'stream': False}, timeout=120)
        assert status == 200, body

    def load(self, name):
        """Load a model directly."""
        status, body = self.call('POST', '/api/generate', {'model': name, 'keep_alive': '10m'}, timeout=120)
        assert status == 200, body

    def wait_unloaded(self, name, seconds=10):
        """Wait until /api/ps no longer lists `name`."""
        deadline = time.monotonic() + seconds
        while name in self.ps() and time.monotonic() < deadline:
            time.sleep(0.1)


def parse_parameters(text):
    """Minimal parse of /api/show `parameters` for assertions (the module's parser is unit-tested)."""
    result = {}
    for line in (text or '').splitlines():
        key, _sep, value = line.strip().partition(' ')
        value = value.strip()
        try:
            value = json.loads(value)
        except ValueError:
            pass
        result.setdefault(key, []).append(value)
    return {key: sorted(values, key=str) if len(values) > 1 else values[0] for key, values in result.items()}


@pytest.fixture(scope='module', name='emulator')
def fixture_emulator(tmp_path_factory):
    """The emulator on a free loopback port, store in a temporary directory; stopped at the end."""
    assert os.path.isfile(EMULATOR), 'the Ollama emulator is missing: %s' % EMULATOR
    port = free_port()
    store = tmp_path_factory.mktemp('ollama-models')
    env = dict(os.environ, OLLAMA_MODELS=str(store), OLLAMA_EMULATOR_SCALE=SCALE, OLLAMA_KEEP_ALIVE='5m', OLLAMA_MAX_LOADED_MODELS='3')
    env.pop('OLLAMA_HOST', None)
    log = open(store / 'emulator.log', 'w+', encoding='utf-8')  # pylint: disable=consider-using-with
    proc = subprocess.Popen([sys.executable, EMULATOR, '--host', '127.0.0.1', '--port', str(port), '--scale', SCALE],  # pylint: disable=consider-using-with
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    api = Ollama('http://127.0.0.1:%d' % port)
    try:
        try:
            api.wait_up(30, proc)
        except AssertionError:
            log.seek(0)
            raise AssertionError('the emulator did not start: %s' % log.read()[-3000:]) from None
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(name='run')
def fixture_run(module_runner, emulator):
    """Run ollama_model against the emulator: run(args, check=False, diff=False)."""
    def run(args, check=False, diff=False, host=None):
        args = dict({'host': host or emulator.url, 'timeout': 30}, **args)
        return module_runner('ollama_model', args, check=check, diff=diff)
    return run


def ok(result):
    """The result, after checking it did not fail."""
    assert not result.get('failed'), result
    return result


# --- present -------------------------------------------------------------------------------------

def test_present_pulls_once(run, emulator):
    first = ok(run({'name': 'tinyllama'}))
    assert first['changed'] is True
    assert first['actions'] == ['pulled tinyllama:latest']
    assert first['model'] == 'tinyllama:latest'
    assert len(first['digest']) == 64 and first['size'] > 0
    assert 'tinyllama:latest' in emulator.tags()
    assert emulator.tags()['tinyllama:latest']['digest'] == first['digest']
    second = ok(run({'name': 'tinyllama'}))
    assert second['changed'] is False and not second['actions']
    assert second['digest'] == first['digest']
    # every form of the name is the same model
    for form in ('tinyllama:latest', 'library/tinyllama', 'registry.ollama.ai/library/tinyllama:latest', 'TinyLlama'):
        assert ok(run({'name': form}))['changed'] is False, form


def test_present_check_mode_changes_nothing(run, emulator):
    before = emulator.view()
    result = ok(run({'name': 'qwen2.5:3b'}, check=True, diff=True))
    assert result['changed'] is True
    assert result['actions'] == ['pulled qwen2.5:3b']
    assert result['diff']['before']['present'] is False and result['diff']['after']['present'] is True
    assert emulator.view() == before


# --- latest --------------------------------------------------------------------------------------

def test_latest_changes_only_when_the_digest_changes(run, emulator):
    ok(run({'name': 'qwen2.5:3b'}))
    old = emulator.tags()['qwen2.5:3b']['digest']
    assert ok(run({'name': 'qwen2.5:3b', 'state': 'latest'}))['changed'] is False
    new = uuid.uuid4().hex * 2
    status, body = emulator.call('POST', '/_emulator/catalog', {'name': 'qwen2.5:3b', 'digest': new, 'size': 1929912432})
    assert status == 200, body
    # check mode cannot know about the new version without pulling it, and pulls nothing
    check = ok(run({'name': 'qwen2.5:3b', 'state': 'latest'}, check=True))
    assert check['changed'] is False
    assert emulator.tags()['qwen2.5:3b']['digest'] == old
    result = ok(run({'name': 'qwen2.5:3b', 'state': 'latest'}, diff=True))
    assert result['changed'] is True
    assert result['digest'] == new == emulator.tags()['qwen2.5:3b']['digest']
    assert result['diff']['before']['digest'] == old and result['diff']['after']['digest'] == new
    assert ok(run({'name': 'qwen2.5:3b', 'state': 'latest'}))['changed'] is False


def test_latest_pulls_a_missing_model(run, emulator):
    assert 'codellama:7b' not in emulator.tags()
    first = run({'name': 'codellama:7b', 'state': 'latest'})
    assert ok(first)['changed'] is True
    assert 'codellama:7b' in emulator.tags()
    assert ok(run({'name': 'codellama:7b', 'state': 'latest'}))['changed'] is False


# --- variants ------------------------------------------------------------------------------------

def test_variant_created_once_pulling_its_base(run, emulator):
    assert 'llama3.2:3b' not in emulator.tags()
    first = ok(run(VARIANT, diff=True))
    assert first['changed'] is True
    assert first['actions'] == ['pulled base model llama3.2:3b', 'created llama3.2-prod:latest from llama3.2:3b']
    assert 'llama3.2:3b' in emulator.tags() and 'llama3.2-prod:latest' in emulator.tags()
    shown = parse_parameters(emulator.show('llama3.2-prod')['parameters'])
    for key, value in SEED_002.items():
        assert shown[key] == pytest.approx(value), (key, shown)
    assert first['parameters']['num_ctx'] == 2048
    assert first['diff']['before']['present'] is False
    assert ok(run(VARIANT))['changed'] is False


def test_variant_not_recreated_when_only_the_order_differs(run, emulator):
    ok(run(VARIANT))
    digest = emulator.tags()['llama3.2-prod:latest']['digest']
    reordered = dict(VARIANT, parameters={'top_p': '0.9', 'temperature': 0.70, 'num_ctx': '2048', 'num_thread': 4})
    assert ok(run(reordered))['changed'] is False
    assert ok(run(dict(VARIANT, name='library/llama3.2-prod:latest', **{'from': 'registry.ollama.ai/library/llama3.2:3b'})))['changed'] is False
    assert emulator.tags()['llama3.2-prod:latest']['digest'] == digest


def test_variant_recreated_when_one_parameter_changes(run, emulator):
    ok(run(VARIANT))
    changed = dict(VARIANT, parameters=dict(SEED_002, num_ctx=4096))
    before = emulator.view()
    check = ok(run(changed, check=True, diff=True))
    assert check['changed'] is True
    assert check['diff']['before']['parameters']['num_ctx'] == 2048 and check['diff']['after']['parameters']['num_ctx'] == 4096
    assert emulator.view() == before
    result = ok(run(changed, diff=True))
    assert result['changed'] is True
    assert result['actions'] == ['re-created llama3.2-prod:latest from llama3.2:3b (different: parameter num_ctx)']
    assert parse_parameters(emulator.show('llama3.2-prod')['parameters'])['num_ctx'] == 4096
    assert result['diff']['before']['parameters']['num_ctx'] == 2048 and result['diff']['after']['parameters']['num_ctx'] == 4096
    assert ok(run(changed))['changed'] is False
    # the system prompt is compared too
    prompt = dict(changed, system='You are a concise assistant for the SutazAI platform.')
    assert ok(run(prompt))['changed'] is True
    assert emulator.show('llama3.2-prod')['system'] == prompt['system']
    assert ok(run(prompt))['changed'] is False
    # back to the seed's values
    assert ok(run(VARIANT))['changed'] is True


def test_unknown_parameter_is_refused_with_the_valid_ones(run, emulator):
    before = emulator.view()
    result = run(dict(VARIANT, name='bad-variant', parameters={'num_threads': 4}))
    assert result.get('failed') is True
    assert 'unknown parameter num_threads' in result['msg'] and 'num_thread' in result['msg'].split('valid parameters are:')[1]
    assert emulator.view() == before


# --- loaded / unloaded -----------------------------------------------------------------------------

def test_loaded_then_unloaded(run, emulator):
    ok(run({'name': 'tinyllama'}))
    emulator.call('POST', '/api/generate', {'model': 'tinyllama', 'keep_alive': 0})
    emulator.wait_unloaded('tinyllama:latest')
    before = emulator.view()
    check = ok(run({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': '10m'}, check=True, diff=True))
    assert check['changed'] is True and check['diff']['after']['loaded'] is True
    assert emulator.view() == before
    first = ok(run({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': '10m'}, diff=True))
    assert first['changed'] is True and first['loaded'] is True
    assert first['actions'] == ['loaded tinyllama:latest (keep_alive 10m)']
    assert first['expires_at'] and first['expires_at'] == emulator.ps()['tinyllama:latest']['expires_at']
    assert first['memory']['checked'] is True and first['memory']['model_size'] == first['size']
    assert first['memory']['source'].startswith('host MemAvailable')
    assert first['diff']['before']['loaded'] is False and first['diff']['after']['loaded'] is True
    assert ok(run({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': '10m'}))['changed'] is False

    before = emulator.view()
    check = ok(run({'name': 'tinyllama', 'state': 'unloaded'}, check=True))
    assert check['changed'] is True
    assert emulator.view() == before
    unloaded = ok(run({'name': 'tinyllama', 'state': 'unloaded'}, diff=True))
    assert unloaded['changed'] is True and unloaded['loaded'] is False and unloaded['expires_at'] is None
    assert 'tinyllama:latest' not in emulator.ps()
    assert unloaded['diff']['before']['loaded'] is True and unloaded['diff']['after']['loaded'] is False
    assert ok(run({'name': 'tinyllama', 'state': 'unloaded'}))['changed'] is False


def test_loaded_forever_with_a_number(run, emulator):
    result = ok(run({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': -1}))
    assert int(result['expires_at'][:4]) > 2200       # "about 300 years ahead"
    ok(run({'name': 'tinyllama', 'state': 'unloaded'}))


def test_loaded_pulls_a_missing_model(run, emulator):
    emulator.call('DELETE', '/api/delete', {'model': 'qwen2.5:3b'})
    result = ok(run({'name': 'qwen2.5:3b', 'state': 'loaded'}))
    assert result['actions'] == ['pulled qwen2.5:3b', 'loaded qwen2.5:3b']
    assert 'qwen2.5:3b' in emulator.ps()
    assert ok(run({'name': 'qwen2.5:3b', 'state': 'loaded'}))['changed'] is False
    ok(run({'name': 'qwen2.5:3b', 'state': 'unloaded'}))


def test_unknown_container_is_refused_before_anything_is_pulled(run, emulator):
    emulator.call('DELETE', '/api/delete', {'model': 'qwen2.5:3b'})
    result = run({'name': 'qwen2.5:3b', 'state': 'loaded', 'container': 'sutazai-no-such-ollama'})
    assert result.get('failed') is True
    assert "'sutazai-no-such-ollama'" in result['msg']
    assert 'qwen2.5:3b' not in emulator.tags()


@pytest.mark.parametrize('keep_alive', ['-1', '5'])
def test_keep_alive_as_a_string_number_is_refused(run, emulator, keep_alive):
    before = emulator.view()
    result = run({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': keep_alive})
    assert result.get('failed') is True
    assert 'missing unit in duration "%s"' % keep_alive in result['msg'] and '"5m"' in result['msg']
    assert emulator.view() == before


# --- absent --------------------------------------------------------------------------------------

def test_absent(run, emulator):
    ok(run({'name': 'tinyllama', 'state': 'loaded'}))
    before = emulator.view()
    check = ok(run({'name': 'tinyllama', 'state': 'absent'}, check=True, diff=True))
    assert check['changed'] is True and check['diff']['after']['present'] is False
    assert emulator.view() == before
    first = ok(run({'name': 'tinyllama', 'state': 'absent'}, diff=True))
    assert first['changed'] is True
    assert first['actions'] == ['unloaded tinyllama:latest', 'deleted tinyllama:latest']
    assert 'tinyllama:latest' not in emulator.tags() and 'tinyllama:latest' not in emulator.ps()
    assert first['diff']['before']['present'] is True and first['diff']['after']['present'] is False
    assert ok(run({'name': 'tinyllama', 'state': 'absent'}))['changed'] is False
    assert ok(run({'name': 'never-pulled', 'state': 'absent'}))['changed'] is False


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize('state', ['present', 'loaded'])
def test_unknown_model_fails_with_the_pull_error(run, emulator, state):
    result = run({'name': 'nosuchmodel:13b', 'state': state})
    assert result.get('failed') is True
    assert 'pull model manifest: file does not exist' in result['msg']
    assert 'nosuchmodel:13b' in result['msg']
    assert 'nosuchmodel:13b' not in emulator.tags()


def test_unreachable_host_names_the_url(run):
    url = 'http://127.0.0.1:%d' % free_port()
    result = run({'name': 'tinyllama'}, host=url)
    assert result.get('failed') is True
    assert 'cannot reach Ollama at %s/api/tags' % url in result['msg']
    assert result['url'] == url + '/api/tags'


def test_busy_server_is_retried_then_succeeds(run, emulator):
    emulator.call('DELETE', '/api/delete', {'model': 'tinyllama'})
    status, body = emulator.call('POST', '/_emulator/busy', {'count': 2})
    assert status == 200, body
    result = ok(run({'name': 'tinyllama', 'state': 'loaded'}))
    assert result['changed'] is True and 'tinyllama:latest' in emulator.ps()
    status, state = emulator.call('GET', '/_emulator/state')
    assert status == 200 and state['busy'] == 0      # both 503 answers were met, and retried past
    ok(run({'name': 'tinyllama', 'state': 'unloaded'}))


def test_busy_server_retries_are_bounded(run, emulator):
    ok(run({'name': 'tinyllama'}))
    status, body = emulator.call('POST', '/_emulator/busy', {'count': 6})    # the first try and 5 retries
    assert status == 200, body
    result = run({'name': 'tinyllama', 'state': 'loaded', 'memory_check': False})
    assert result.get('failed') is True
    assert 'server busy' in result['msg'] and 'after 5 retries' in result['msg'] and result['status'] == 503
    assert 'tinyllama:latest' not in emulator.ps()
    # the busy spell is over
    assert ok(run({'name': 'tinyllama', 'state': 'loaded'}))['changed'] is True
    ok(run({'name': 'tinyllama', 'state': 'unloaded'}))


# --- memory check, with the emulator in a memory-limited container -------------------------------

def docker(*args, check=True, timeout=120):
    """Run the docker CLI; return its stdout."""
    proc = subprocess.run(['docker'] + list(args), capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError('docker %s failed: %s' % (' '.join(args), proc.stderr.strip()))
    return proc.stdout.strip()


def docker_usable():
    """True when the docker CLI reaches an engine."""
    try:
        return subprocess.run(['docker', 'info'], capture_output=True, check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# 64 MiB limit. Scaled by 0.16, tinyllama (637 MB) is ~97 MiB: it cannot fit. smollm:135m (91 MB) is ~14 MiB: it fits.
CONTAINER_LIMIT = '64m'
CONTAINER_SCALE = '0.16'
CONTAINER_CATALOG = {'tinyllama': {'size': 637700138}, 'smollm:135m': {'size': 91000000}}


@pytest.fixture(scope='module', name='limited')
def fixture_limited():
    """The emulator image in a container limited to 64 MiB, published on a loopback port; removed at the end."""
    if not docker_usable():
        pytest.skip('docker is not available here: the memory check in a container needs a Docker engine')
    if not docker('image', 'inspect', IMAGE, '--format', '{{.Id}}', check=False):
        pytest.fail('image %s is missing: run `bash testbed/testbed.sh` (make testbed) first' % IMAGE)
    name = 'sutazai-hb-ollama-%s' % uuid.uuid4().hex[:8]
    port = free_port()
    docker('run', '-d', '--name', name, '--memory', CONTAINER_LIMIT, '--memory-swap', CONTAINER_LIMIT,
           '-p', '127.0.0.1:%d:11434' % port, '-e', 'OLLAMA_EMULATOR_SCALE=' + CONTAINER_SCALE,
           '-e', 'OLLAMA_EMULATOR_CATALOG=' + json.dumps(CONTAINER_CATALOG), IMAGE)
    api = Ollama('http://127.0.0.1:%d' % port)
    try:
        try:
            api.wait_up(60)
        except AssertionError:
            raise AssertionError('the emulator container did not come up: %s' % docker('logs', name, check=False)[-3000:]) from None
        api.pull('tinyllama')
        api.pull('smollm:135m')
        api.name = name
        api.container_id = docker('inspect', '--format', '{{.Id}}', name)
        yield api
    finally:
        docker('rm', '-f', name, check=False)


@pytest.mark.parametrize('given', [True, False], ids=['container-given', 'container-detected'])
def test_memory_check_refuses_a_model_larger_than_the_container_limit(module_runner, limited, given):
    args = {'name': 'tinyllama', 'state': 'loaded', 'host': limited.url}
    if given:
        args['container'] = limited.name
    size = limited.tags()['tinyllama:latest']['size']
    assert size > 64 * MIB, 'the scaled model must exceed the limit (size %d)' % size
    result = module_runner('ollama_model', args)
    assert result.get('failed') is True, result
    memory = result['memory']
    assert memory['model_size'] == size
    assert memory['container']['id'] == limited.container_id and memory['container']['name'] == limited.name
    assert memory['container']['limit'] == 64 * MIB
    assert memory['available'] == memory['container']['available'] < 64 * MIB
    assert memory['source'].startswith('container %s' % limited.name)
    assert '(%d bytes)' % size in result['msg'] and '(%d bytes)' % memory['available'] in result['msg']
    assert 'tinyllama:latest does not fit' in result['msg'] and 'limit 64M' in result['msg']
    assert 'tinyllama:latest' not in limited.ps()
    assert docker('inspect', '--format', '{{.State.Running}} {{.State.OOMKilled}}', limited.name) == 'true false'


def test_memory_check_loads_a_model_that_fits_in_the_container(module_runner, limited):
    args = {'name': 'smollm:135m', 'state': 'loaded', 'host': limited.url, 'container': limited.name}
    first = ok(module_runner('ollama_model', args))
    assert first['changed'] is True and first['loaded'] is True
    assert first['memory']['source'].startswith('container %s' % limited.name)
    assert first['memory']['model_size'] <= first['memory']['available']
    assert 'smollm:135m' in limited.ps()
    assert ok(module_runner('ollama_model', args))['changed'] is False
    ok(module_runner('ollama_model', dict(args, state='unloaded')))


def test_without_the_check_the_container_is_oom_killed(module_runner, limited):
    """Why the check exists: Ollama (and the emulator) loads a model that does not fit, and the kernel kills it."""
    name = 'sutazai-it-ollama-oom-%s' % uuid.uuid4().hex[:8]
    port = free_port()
    docker('run', '-d', '--name', name, '--memory', CONTAINER_LIMIT, '--memory-swap', CONTAINER_LIMIT,
           '-p', '127.0.0.1:%d:11434' % port, '-e', 'OLLAMA_EMULATOR_SCALE=' + CONTAINER_SCALE,
           '-e', 'OLLAMA_EMULATOR_CATALOG=' + json.dumps(CONTAINER_CATALOG), IMAGE)
    try:
        api = Ollama('http://127.0.0.1:%d' % port)
        api.wait_up(60)
        api.pull('tinyllama')
        result = module_runner('ollama_model', {'name': 'tinyllama', 'state': 'loaded', 'memory_check': False, 'host': api.url})
        assert result.get('failed') is True and 'memory' not in result
        deadline = time.monotonic() + 20
        while docker('inspect', '--format', '{{.State.Running}}', name) == 'true' and time.monotonic() < deadline:
            time.sleep(0.2)
        assert docker('inspect', '--format', '{{.State.Running}} {{.State.ExitCode}}', name) == 'false 137'
    finally:
        docker('rm', '-f', name, check=False)
    assert limited.up()


def test_docker_options_and_ollama_host_reach_the_container_check(module_runner, limited):
    """ollama_host (the name memory_guard uses too) and the docker_ options: the engine named, then a wrong one refused first."""
    args = {'name': 'tinyllama', 'state': 'loaded', 'ollama_host': limited.url, 'container': limited.name,
            'docker_host': 'unix:///var/run/docker.sock', 'docker_timeout': 30}
    result = module_runner('ollama_model', args)
    assert result['failed'] and 'does not fit' in result['msg']
    assert result['memory']['container']['id'] == limited.container_id and result['memory']['container']['limit'] == 64 * MIB
    wrong = module_runner('ollama_model', dict(args, docker_host='unix:///nonexistent/docker.sock'))
    assert wrong['failed'] and 'unix:///nonexistent/docker.sock' in wrong['msg'] and wrong.get('actions', []) == []
