"""Contract tests of the Ollama emulator (images/ollama/ollama_emulator.py) against OLLAMA_API.md.

Each test runs the emulator in-process on a free loopback port, at a tiny scale so that the
memory it really holds stays small, and talks to it over HTTP with urllib.
"""

import calendar
import importlib.util
import io
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
EMULATOR_PATH = os.path.join(ROOT, 'images', 'ollama', 'ollama_emulator.py')
_SPEC = importlib.util.spec_from_file_location('ollama_emulator', EMULATOR_PATH)
emu = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(emu)

OPENER = urllib.request.build_opener()
SCALE = 0.001
TINYLLAMA_SIZE = 637700138
TINYLLAMA_DIGEST = '2644915ede352ea7bdfaff0bfac0be74c719d5d5202acb63a6fb095b52f394a4'
BUSY = {'error': 'server busy, please try again.  maximum pending requests exceeded'}
YEAR = 365.25 * 24 * 3600
GUARDS = json.dumps({'guard-a': {'size': 100000000}, 'guard-b': {'size': 200000000}, 'guard-c': {'size': 300000000}})


class Answer:
    """An HTTP answer: status, headers, body."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        """The body as JSON."""
        return json.loads(self.body)

    def lines(self):
        """The body as NDJSON lines."""
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]

    @property
    def content_type(self):
        """The Content-Type header."""
        return self.headers.get('Content-Type', '')


class Client:
    """A tiny urllib client of one emulator."""

    def __init__(self, server):
        self.server = server
        self.base = 'http://127.0.0.1:%d' % server.server_address[1]

    def call(self, method, path, body=None, raw=None):
        """Send a request; return an Answer whatever the status."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with OPENER.open(request, timeout=15) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as err:
            return Answer(err.code, err.headers, err.read())

    def post(self, path, body=None, **kwargs):
        """POST a JSON body."""
        return self.call('POST', path, body, **kwargs)

    def get(self, path):
        """GET a path."""
        return self.call('GET', path)

    def pull(self, model, **extra):
        """Pull `model` without streaming; the Answer."""
        return self.post('/api/pull', dict({'model': model, 'stream': False}, **extra))

    def tags(self):
        """{name: entry} of /api/tags."""
        return {entry['name']: entry for entry in self.get('/api/tags').json()['models']}

    def ps(self):
        """{name: entry} of /api/ps."""
        return {entry['name']: entry for entry in self.get('/api/ps').json()['models']}

    def state(self):
        """The /_emulator/state hook."""
        return self.get('/_emulator/state').json()


def wait_until(predicate, timeout=5.0):
    """Poll `predicate` until true; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def epoch(stamp):
    """Epoch seconds of an RFC3339 time with nanoseconds."""
    match = re.fullmatch(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)', stamp)
    assert match, stamp
    seconds = calendar.timegm(time.strptime(match.group(1), '%Y-%m-%dT%H:%M:%S')) + float(match.group(2) or 0)
    if match.group(3) != 'Z':
        sign = 1 if match.group(3)[0] == '+' else -1
        seconds -= sign * (int(match.group(3)[1:3]) * 3600 + int(match.group(3)[4:6]) * 60)
    return seconds


@pytest.fixture(name='start')
def fixture_start():
    """start(**env) runs an emulator with the test defaults plus `env`; all are stopped at teardown."""
    servers = []

    def start(**env):
        settings_env = {'OLLAMA_EMULATOR_SCALE': str(SCALE), 'OLLAMA_EMULATOR_PULL_DELAY': '0', 'OLLAMA_EMULATOR_UNLOAD_DELAY': '0.05'}
        settings_env.update(env)
        server = emu.make_server(emu.Settings(env=settings_env, host='127.0.0.1', port=0))
        server.log = io.StringIO()
        threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
        servers.append(server)
        return Client(server)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(name='client')
def fixture_client(start):
    """An emulator with the default catalog."""
    return start()


# --- Go behaviours, without HTTP ----------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('5m', 300 * 10 ** 9), ('24h', 86400 * 10 ** 9), ('0s', 0), ('0', 0), ('-0', 0), ('1h30m', 5400 * 10 ** 9),
    ('1.5h', 5400 * 10 ** 9), ('.5s', 5 * 10 ** 8), ('300ms', 3 * 10 ** 8), ('-1m', -60 * 10 ** 9), ('10us', 10000),
    ('-1', 'time: missing unit in duration "-1"'), ('5', 'time: missing unit in duration "5"'),
    ('', 'time: invalid duration ""'), ('abc', 'time: invalid duration "abc"'), ('5x', 'time: unknown unit "x" in duration "5x"'),
])
def test_go_durations(text, expected):
    if isinstance(expected, int):
        assert emu.parse_go_duration(text) == expected
    else:
        with pytest.raises(ValueError, match='^%s$' % re.escape(expected)):
            emu.parse_go_duration(text)


def test_keep_alive_values():
    assert emu.keep_alive_ns(0) == 0
    assert emu.keep_alive_ns(300) == 300 * 10 ** 9
    assert emu.keep_alive_ns(0.5) == 5 * 10 ** 8
    assert emu.keep_alive_ns(-1) == emu.FOREVER_NS
    assert emu.keep_alive_ns('-1m') == emu.FOREVER_NS
    assert emu.keep_alive_ns('10m') == 600 * 10 ** 9
    with pytest.raises(ValueError, match="Unsupported type: 'bool'"):
        emu.keep_alive_ns(True)
    # the environment variable, unlike the API, takes bare integers as seconds
    assert emu.env_keep_alive('') == 300 * 10 ** 9
    assert emu.env_keep_alive('10m') == 600 * 10 ** 9
    assert emu.env_keep_alive('30') == 30 * 10 ** 9
    assert emu.env_keep_alive('-1') == emu.FOREVER_NS
    assert emu.env_keep_alive('junk') == 300 * 10 ** 9


@pytest.mark.parametrize('value, text', [
    (4096, '4096'), (4.0, '4'), (0.7, '0.7'), (0.9, '0.9'), (-2.5, '-2.5'), (123456, '123456'), (1000000, '1e+06'),
    (1234567.0, '1.234567e+06'), (0.0001, '0.0001'), (0.00001, '1e-05'), (True, 'true'), (False, 'false'),
    ('<|user|>', '"<|user|>"'), ('a "b"\n', '"a \\"b\\"\\n"'),
])
def test_go_sharp_v(value, text):
    assert emu.go_sharp_v(value) == text


@pytest.mark.parametrize('value, expected', [
    ('', ('127.0.0.1', 11434)), ('0.0.0.0', ('0.0.0.0', 11434)), ('0.0.0.0:8080', ('0.0.0.0', 8080)),
    ('127.0.0.1:21434', ('127.0.0.1', 21434)), ('http://10.0.0.5:11500', ('10.0.0.5', 11500)), ('http://example', ('example', 80)),
    ('https://example', ('example', 443)), ('[::1]:5000', ('::1', 5000)), ('host:notaport', ('host', 11434)),
])
def test_ollama_host(value, expected):
    assert emu.parse_ollama_host(value) == expected


EQUIVALENT = ['tinyllama', 'tinyllama:latest', 'library/tinyllama', 'library/tinyllama:latest', 'registry.ollama.ai/library/tinyllama',
              'registry.ollama.ai/library/tinyllama:latest', 'TinyLlama', 'TINYLLAMA:LATEST', 'Registry.Ollama.AI/Library/TinyLlama:Latest',
              'https://registry.ollama.ai/library/tinyllama:latest']
DISPLAY = [
    ('tinyllama', 'tinyllama:latest'), ('library/tinyllama:1.1b', 'tinyllama:1.1b'), ('user/model', 'user/model:latest'),
    ('user/model:tag', 'user/model:tag'), ('registry.ollama.ai/user/model:v1', 'user/model:v1'),
    ('hf.co/user/repo:Q4_K_M', 'hf.co/user/repo:Q4_K_M'), ('localhost:5000/ns/model', 'localhost:5000/ns/model:latest'),
    ('http://myhost:5000/ns/model:v2', 'myhost:5000/ns/model:v2'), ('llama3.2:3b', 'llama3.2:3b'),
]
INVALID = ['', 'tinyllama:', ':latest', 'tiny llama', 'a/b/c/d', '/tinyllama', 'user//model', '-model', 'mödel', 'model:t@g',
           'x' * 81, 'model:' + 't' * 81, 'n' * 81 + '/model']


def test_names_equivalent_forms():
    keys = {emu.ModelName.parse(text).key for text in EQUIVALENT}
    assert keys == {'registry.ollama.ai/library/tinyllama:latest'}
    assert all(emu.ModelName.parse(text).is_valid() for text in EQUIVALENT)


@pytest.mark.parametrize('text, display', DISPLAY)
def test_names_display(text, display):
    name = emu.ModelName.parse(text)
    assert name.is_valid()
    assert name.display() == display


@pytest.mark.parametrize('text', INVALID)
def test_names_invalid(text):
    assert not emu.ModelName.parse(text).is_valid()


def test_names_limits():
    assert emu.ModelName.parse('x' * 80 + ':' + 't' * 80).is_valid()
    assert emu.ModelName.parse('a_b-c.d/e_f-g.h:i_j-k.l').is_valid()


# --- general -------------------------------------------------------------------------------

def test_root_version_and_head(client):
    root = client.get('/')
    assert (root.status, root.body) == (200, b'Ollama is running')
    assert root.content_type.startswith('text/plain')
    head = client.call('HEAD', '/')
    assert (head.status, head.body) == (200, b'')
    version = client.get('/api/version')
    assert version.json() == {'version': '0.33.0'}
    assert version.content_type.startswith('application/json')
    assert client.call('HEAD', '/api/tags').status == 200


def test_unknown_route_is_plain_404_and_wrong_method_405(client):
    for method, path in (('GET', '/api/nothing'), ('POST', '/v2/anything'), ('GET', '/api/tags/extra')):
        answer = client.call(method, path)
        assert (answer.status, answer.body) == (404, b'404 page not found')
        assert answer.content_type.startswith('text/plain')
    for method, path in (('GET', '/api/pull'), ('POST', '/api/delete'), ('POST', '/api/tags'), ('GET', '/api/generate'),
                         ('DELETE', '/api/show'), ('POST', '/api/ps')):
        assert client.call(method, path, {'model': 'tinyllama'}).status == 405, (method, path)


def test_request_body_errors(client):
    missing = client.post('/api/pull', raw=b'')
    assert (missing.status, missing.json()) == (400, {'error': 'missing request body'})
    assert missing.content_type.startswith('application/json')
    assert client.post('/api/pull', raw=b'{"model": ').status == 400
    wrong_type = client.post('/api/pull', {'model': 5})
    assert wrong_type.status == 400
    assert wrong_type.json()['error'] == 'json: cannot unmarshal number into Go struct field PullRequest.model of type string'
    # unknown fields are ignored; field names match case-insensitively, as Go's encoding/json does
    assert client.post('/api/pull', {'Model': 'tinyllama', 'stream': False, 'whatever': [1, 2]}).json() == {'status': 'success'}


# --- pull / tags ---------------------------------------------------------------------------

def test_tags_empty(client):
    assert client.get('/api/tags').json() == {'models': []}
    assert client.get('/api/ps').json() == {'models': []}


def test_pull_streams_the_status_sequence(client):
    answer = client.post('/api/pull', {'model': 'tinyllama'})
    assert answer.status == 200
    assert answer.content_type == 'application/x-ndjson'
    lines = answer.lines()
    assert lines[0] == {'status': 'pulling manifest'}
    assert [line['status'] for line in lines[-3:]] == ['verifying sha256 digest', 'writing manifest', 'success']
    layers = lines[1:-3]
    assert layers
    for line in layers:
        assert re.fullmatch('sha256:[0-9a-f]{64}', line['digest'])
        assert line['status'] == 'pulling ' + line['digest'][7:19]
        assert line['total'] > 0
        assert 0 <= line.get('completed', 0) <= line['total']
    # each layer ends complete; a fresh layer starts without "completed" (omitempty when 0)
    digests = list(dict.fromkeys(line['digest'] for line in layers))
    for digest in digests:
        own = [line for line in layers if line['digest'] == digest]
        assert 'completed' not in own[0]
        assert own[-1]['completed'] == own[-1]['total']
    assert sum(max(line['total'] for line in layers if line['digest'] == digest) for digest in digests) == int(TINYLLAMA_SIZE * SCALE)

    entry = client.tags()['tinyllama:latest']
    assert entry['model'] == 'tinyllama:latest'
    assert entry['size'] == int(TINYLLAMA_SIZE * SCALE)
    assert entry['digest'] == TINYLLAMA_DIGEST
    assert entry['details'] == {'parent_model': '', 'format': 'gguf', 'family': 'llama', 'families': ['llama'],
                                'parameter_size': '1B', 'quantization_level': 'Q4_0'}
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}(Z|[+-]\d\d:\d\d)', entry['modified_at'])
    assert abs(epoch(entry['modified_at']) - time.time()) < 5


def test_pull_again_uses_cached_layers_and_keeps_the_digest(client):
    client.pull('tinyllama')
    first = client.tags()['tinyllama:latest']
    time.sleep(0.01)
    lines = client.post('/api/pull', {'model': 'tinyllama:latest'}).lines()
    layers = lines[1:-3]
    assert all(line['completed'] == line['total'] for line in layers)
    assert len(layers) == len({line['digest'] for line in layers})
    second = client.tags()['tinyllama:latest']
    assert second['digest'] == first['digest']
    assert epoch(second['modified_at']) > epoch(first['modified_at'])


def test_pull_stream_false_and_unknown_models(client):
    answer = client.pull('tinyllama')
    assert (answer.status, answer.json()) == (200, {'status': 'success'})
    assert answer.content_type.startswith('application/json')
    streamed = client.post('/api/pull', {'model': 'no-such-model'})
    assert streamed.status == 200
    assert streamed.lines()[-1] == {'error': 'pull model manifest: file does not exist'}
    assert streamed.lines()[0] == {'status': 'pulling manifest'}
    whole = client.pull('no-such-model')
    assert (whole.status, whole.json()) == (500, {'error': 'pull model manifest: file does not exist'})
    assert set(client.tags()) == {'tinyllama:latest'}


@pytest.mark.parametrize('name', ['tiny llama', 'tinyllama:', 'a/b/c/d', 'x' * 81, ''])
def test_pull_invalid_name_is_400(client, name):
    answer = client.pull(name)
    assert (answer.status, answer.json()) == (400, {'error': 'invalid model name'})


def test_tags_newest_first(client):
    client.pull('tinyllama')
    time.sleep(0.01)
    client.pull('qwen2.5:3b')
    assert [entry['name'] for entry in client.get('/api/tags').json()['models']] == ['qwen2.5:3b', 'tinyllama:latest']


# --- names over HTTP -----------------------------------------------------------------------

def test_every_equivalent_name_reaches_the_same_model(client):
    client.pull('registry.ollama.ai/library/tinyllama:latest')
    assert list(client.tags()) == ['tinyllama:latest']
    for text in EQUIVALENT:
        assert client.post('/api/show', {'model': text}).status == 200, text
        assert client.pull(text).status == 200, text
    assert list(client.tags()) == ['tinyllama:latest']


def test_display_forms_over_http(client):
    client.pull('tinyllama')
    for destination, display in DISPLAY:
        assert client.post('/api/copy', {'source': 'tinyllama', 'destination': destination}).status == 200
        assert display in client.tags(), destination
    client.post('/api/copy', {'source': 'tinyllama', 'destination': 'registry.ollama.ai/library/foo'})
    assert 'foo:latest' in client.tags()
    assert client.call('DELETE', '/api/delete', {'model': 'Library/FOO:Latest'}).status == 200
    assert 'foo:latest' not in client.tags()


def test_invalid_names_over_http(client):
    client.pull('tinyllama')
    for text in ('tiny llama', 'a/b/c/d', 'tinyllama:'):
        assert client.pull(text).status == 400
        assert client.post('/api/show', {'model': text}).status == 400
        assert client.post('/api/create', {'model': text, 'from': 'tinyllama'}).status == 400
        assert client.call('DELETE', '/api/delete', {'model': text}).json() == {'error': 'name "%s" is invalid' % text}
        assert client.post('/api/copy', {'source': 'tinyllama', 'destination': text}).json() == {'error': 'destination "%s" is invalid' % text}
        assert client.post('/api/chat', {'model': text}).json() == {'error': 'model is required'}
        # generate answers an invalid name as not found (Ollama keeps that for compatibility)
        assert client.post('/api/generate', {'model': text}).status == 404


# --- delete / copy -------------------------------------------------------------------------

def test_delete(client):
    client.pull('tinyllama')
    assert client.post('/api/delete', {'model': 'tinyllama'}).status == 405
    missing = client.call('DELETE', '/api/delete', {'model': 'foo'})
    assert (missing.status, missing.json()) == (404, {'error': "model 'foo' not found"})
    empty = client.call('DELETE', '/api/delete', {'model': ''})
    assert empty.status == 400
    done = client.call('DELETE', '/api/delete', {'model': 'tinyllama'})
    assert (done.status, done.body) == (200, b'')
    assert client.tags() == {}


def test_copy(client):
    client.pull('tinyllama')
    answer = client.post('/api/copy', {'source': 'tinyllama', 'destination': 'my-tiny'})
    assert (answer.status, answer.body) == (200, b'')
    tags = client.tags()
    assert tags['my-tiny:latest']['digest'] == tags['tinyllama:latest']['digest']
    assert tags['my-tiny:latest']['size'] == tags['tinyllama:latest']['size']
    missing = client.post('/api/copy', {'source': 'nope', 'destination': 'x'})
    assert (missing.status, missing.json()) == (404, {'error': 'model "nope" not found'})


# --- create --------------------------------------------------------------------------------

def test_create_modelfile_alone_is_400(client):
    client.pull('tinyllama')
    for stream in (True, False):
        answer = client.post('/api/create', {'model': 'x', 'modelfile': 'FROM tinyllama\nPARAMETER num_ctx 2048', 'stream': stream})
        assert (answer.status, answer.json()) == (400, {'error': "neither 'from' or 'files' was specified"})


def test_create_from_a_catalog_model_pulls_it_first(client):
    answer = client.post('/api/create', {'model': 'llama3.2-prod', 'from': 'llama3.2:3b',
                                         'parameters': {'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7, 'top_p': 0.9}})
    assert answer.status == 200
    statuses = [line['status'] for line in answer.lines()]
    assert statuses[0] == 'pulling manifest'
    assert statuses.index('success') < statuses.index('writing manifest', statuses.index('success'))
    create_part = statuses[statuses.index('success') + 1:]
    assert create_part[-2:] == ['writing manifest', 'success']
    assert all(re.fullmatch('(using existing|creating new) layer sha256:[0-9a-f]{64}', status) for status in create_part[:-2])
    assert any(status.startswith('creating new layer') for status in create_part)
    tags = client.tags()
    assert set(tags) == {'llama3.2:3b', 'llama3.2-prod:latest'}
    assert tags['llama3.2-prod:latest']['details']['quantization_level'] == 'Q4_K_M'
    assert tags['llama3.2-prod:latest']['digest'] != tags['llama3.2:3b']['digest']
    show = client.post('/api/show', {'model': 'llama3.2-prod'}).json()
    assert show['details']['parent_model'] == 'llama3.2:3b'


def test_create_from_unknown_model(client):
    streamed = client.post('/api/create', {'model': 'x', 'from': 'no-such-base'})
    assert streamed.status == 200
    assert streamed.lines()[-1] == {'error': 'pull model manifest: file does not exist'}
    whole = client.post('/api/create', {'model': 'x', 'from': 'no-such-base', 'stream': False})
    assert whole.status == 500
    assert client.tags() == {}


def test_create_overwrites_and_is_deterministic(client):
    client.pull('tinyllama')
    first = client.post('/api/create', {'model': 'tiny-prod', 'from': 'tinyllama', 'parameters': {'num_ctx': 2048}, 'stream': False})
    assert (first.status, first.json()) == (200, {'status': 'success'})
    digest_a = client.tags()['tiny-prod:latest']['digest']
    client.post('/api/create', {'model': 'tiny-prod', 'from': 'tinyllama', 'parameters': {'num_ctx': 4096}, 'stream': False})
    digest_b = client.tags()['tiny-prod:latest']['digest']
    assert digest_b != digest_a
    again = client.post('/api/create', {'model': 'Tiny-Prod', 'from': 'tinyllama', 'parameters': {'num_ctx': 4096}})
    assert all(line['status'].startswith('using existing layer') for line in again.lines()[:-2])
    tags = client.tags()
    assert tags['tiny-prod:latest']['digest'] == digest_b
    assert len(tags) == 2
    # parameters are not validated at create
    assert client.post('/api/create', {'model': 'odd', 'from': 'tinyllama', 'parameters': {'no_such_option': 'x'}}).status == 200


def test_create_system_template_license_messages(client):
    client.pull('tinyllama')
    client.post('/api/create', {'model': 'custom', 'from': 'tinyllama', 'system': 'Be terse.', 'template': '{{ .Prompt }}',
                                'license': 'MIT', 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': False})
    show = client.post('/api/show', {'model': 'custom'}).json()
    assert show['system'] == 'Be terse.'
    assert show['template'] == '{{ .Prompt }}'
    assert show['license'] == 'MIT'
    assert show['messages'] == [{'role': 'user', 'content': 'hi'}]
    assert 'SYSTEM Be terse.' in show['modelfile']


def test_create_quantize(start):
    catalog = json.dumps({'f16-model': {'size': 2000000000, 'quantization_level': 'F16'}, 'q4-model': {'size': 500000000}})
    client = start(OLLAMA_EMULATOR_CATALOG=catalog)
    refused = client.post('/api/create', {'model': 'x', 'from': 'q4-model', 'quantize': 'q4_K_M', 'stream': False})
    assert (refused.status, refused.json()) == (500, {'error': 'quantization is only supported for F16 and F32 models'})
    client.pull('f16-model')
    unknown = client.post('/api/create', {'model': 'x', 'from': 'f16-model', 'quantize': 'q2_k'})
    assert unknown.status == 500
    assert unknown.json()['error'].startswith('unsupported quantization type Q2_K')
    done = client.post('/api/create', {'model': 'small', 'from': 'f16-model', 'quantize': 'q4_K_M', 'stream': False})
    assert done.status == 200
    tags = client.tags()
    assert tags['small:latest']['details']['quantization_level'] == 'Q4_K_M'
    assert tags['small:latest']['size'] < tags['f16-model:latest']['size'] / 2


# --- show ----------------------------------------------------------------------------------

PARAMETER_LINE = re.compile(r'^(\S+) +(\S.*)$')


def parameter_lines(client, model):
    """The /api/show `parameters` lines of `model`."""
    return client.post('/api/show', {'model': model}).json()['parameters'].split('\n')


def test_show_parameters_format(client):
    client.pull('tinyllama')
    client.post('/api/create', {'model': 'tuned', 'from': 'tinyllama', 'stream': False,
                                'parameters': {'num_ctx': 4096, 'temperature': 0.7, 'top_p': 0.9, 'repeat_penalty': 4.0,
                                               'seed': 1000000, 'stop': ['<|user|>', 'END'], 'num_thread': 4}})
    lines = parameter_lines(client, 'tuned')
    for line in lines:
        assert PARAMETER_LINE.match(line), line
        key = line.split(' ', 1)[0]
        assert line[:31] == '%-30s ' % key  # Go %-30s then a space
    assert set(lines) == {
        'num_ctx                        4096', 'temperature                    0.7', 'top_p                          0.9',
        'repeat_penalty                 4', 'seed                           1e+06', 'stop                           "<|user|>"',
        'stop                           "END"', 'num_thread                     4'}
    assert lines.index('stop                           "<|user|>"') + 1 == lines.index('stop                           "END"')


def test_show_parameters_order_varies_but_the_set_is_stable(client):
    client.pull('tinyllama')
    client.post('/api/create', {'model': 'tuned', 'from': 'tinyllama', 'stream': False,
                                'parameters': {'num_ctx': 2048, 'temperature': 0.7, 'top_p': 0.9, 'num_thread': 4, 'top_k': 40}})
    orders = [tuple(parameter_lines(client, 'tuned')) for _attempt in range(25)]
    assert len(set(orders)) > 1
    assert len({frozenset(order) for order in orders}) == 1


def test_show_fields(client):
    client.pull('codellama:7b')
    client.pull('qwen2.5:3b')
    show = client.post('/api/show', {'model': 'codellama:7b'})
    assert show.status == 200
    body = show.json()
    for key in ('license', 'modelfile', 'parameters', 'template', 'details', 'model_info', 'capabilities', 'modified_at'):
        assert key in body, key
    assert 'rope_frequency_base            1e+06' in body['parameters'].split('\n')
    assert body['modelfile'].startswith('# Modelfile generated by "ollama show"\n')
    assert 'FROM /root/.ollama/models/blobs/sha256-' in body['modelfile']
    assert body['model_info']['general.architecture'] == 'llama'
    assert body['capabilities'] == ['completion']
    assert body['details']['parent_model'] == ''
    # empty fields are left out, as Go's omitempty does: qwen2.5 has a system prompt but no parameters
    qwen = client.post('/api/show', {'model': 'qwen2.5:3b'}).json()
    assert 'parameters' not in qwen
    assert qwen['system'].startswith('You are Qwen')
    assert show.body.count(b'\\u003c') > 0  # Go escapes < and > in JSON strings
    missing = client.post('/api/show', {'model': 'nope'})
    assert (missing.status, missing.json()) == (404, {'error': "model 'nope' not found"})
    assert client.post('/api/show', {}).status == 400


# --- generate / chat / ps --------------------------------------------------------------------

def test_generate_load_and_unload(client):
    client.pull('tinyllama')
    size = client.tags()['tinyllama:latest']['size']
    load = client.post('/api/generate', {'model': 'TinyLlama'})
    assert load.status == 200
    body = load.json()
    assert body['model'] == 'TinyLlama'  # echoed as sent
    assert (body['response'], body['done'], body['done_reason']) == ('', True, 'load')
    assert body['created_at'].endswith('Z')
    entry = client.ps()['tinyllama:latest']
    assert (entry['model'], entry['size'], entry['size_vram'], entry['digest']) == ('tinyllama:latest', size, 0, TINYLLAMA_DIGEST)
    assert entry['context_length'] == 4096
    assert entry['details']['family'] == 'llama'
    assert 295 < epoch(entry['expires_at']) - time.time() <= 301  # the default keep-alive, 5m
    assert client.state()['held_bytes'] == size

    unload = client.post('/api/generate', {'model': 'tinyllama', 'keep_alive': 0})
    assert unload.status == 200
    assert {key: unload.json()[key] for key in ('model', 'response', 'done', 'done_reason')} == \
        {'model': 'tinyllama', 'response': '', 'done': True, 'done_reason': 'unload'}
    assert wait_until(lambda: client.ps() == {})
    assert client.state()['held_bytes'] == 0
    # unloading a model that is not loaded is fine; an unknown model is not
    assert client.post('/api/generate', {'model': 'tinyllama', 'keep_alive': 0}).json()['done_reason'] == 'unload'
    for keep_alive in (None, 0):
        unknown = client.post('/api/generate', {'model': 'nope', 'keep_alive': keep_alive})
        assert (unknown.status, unknown.json()) == (404, {'error': "model 'nope' not found"})


def test_unload_is_asynchronous(start):
    client = start(OLLAMA_EMULATOR_UNLOAD_DELAY='0.5')
    client.pull('tinyllama')
    client.post('/api/generate', {'model': 'tinyllama'})
    client.post('/api/generate', {'model': 'tinyllama', 'keep_alive': '0s'})
    assert 'tinyllama:latest' in client.ps()  # still listed for a moment
    assert wait_until(lambda: client.ps() == {}, timeout=3)


@pytest.mark.parametrize('keep_alive, error', [
    ('-1', 'time: missing unit in duration "-1"'), ('5', 'time: missing unit in duration "5"'), ('300', 'time: missing unit in duration "300"'),
    ('forever', 'time: invalid duration "forever"'), (True, "Unsupported type: 'bool'"),
])
def test_keep_alive_bad_values_are_400(client, keep_alive, error):
    client.pull('tinyllama')
    answer = client.post('/api/generate', {'model': 'tinyllama', 'keep_alive': keep_alive})
    assert (answer.status, answer.json()) == (400, {'error': error})
    assert client.post('/api/chat', {'model': 'tinyllama', 'keep_alive': keep_alive}).status == 400


@pytest.mark.parametrize('keep_alive, seconds', [
    (-1, 292 * YEAR), ('-1m', 292 * YEAR), ('-1s', 292 * YEAR), ('24h', 86400), (3600, 3600), ('10m', 600), (None, 300),
])
def test_keep_alive_expires_at(client, keep_alive, seconds):
    client.pull('tinyllama')
    body = {'model': 'tinyllama'}
    if keep_alive is not None:
        body['keep_alive'] = keep_alive
    assert client.post('/api/generate', body).json()['done_reason'] == 'load'
    remaining = epoch(client.ps()['tinyllama:latest']['expires_at']) - time.time()
    assert abs(remaining - seconds) < max(5, seconds * 0.005), remaining


def test_string_zero_keep_alive_unloads(client):
    client.pull('tinyllama')
    client.post('/api/generate', {'model': 'tinyllama'})
    assert client.post('/api/generate', {'model': 'tinyllama', 'keep_alive': '0'}).json()['done_reason'] == 'unload'
    assert wait_until(lambda: client.ps() == {})


def test_keep_alive_expiry_unloads(client):
    client.pull('tinyllama')
    client.post('/api/generate', {'model': 'tinyllama', 'keep_alive': '700ms'})
    assert 'tinyllama:latest' in client.ps()
    assert wait_until(lambda: client.ps() == {}, timeout=3)
    assert client.state()['held_bytes'] == 0


def test_default_keep_alive_from_the_environment(start):
    client = start(OLLAMA_KEEP_ALIVE='1')  # a bare integer: seconds
    client.pull('tinyllama')
    client.post('/api/generate', {'model': 'tinyllama'})
    assert epoch(client.ps()['tinyllama:latest']['expires_at']) - time.time() < 2
    assert wait_until(lambda: client.ps() == {}, timeout=3)


def test_generate_with_a_prompt(client):
    client.pull('tinyllama')
    streamed = client.post('/api/generate', {'model': 'tinyllama', 'prompt': 'Why is the sky blue?'})
    assert streamed.content_type == 'application/x-ndjson'
    lines = streamed.lines()
    assert all(line['done'] is False for line in lines[:-1])
    assert lines[-1]['done'] is True and lines[-1]['done_reason'] == 'stop'
    text = ''.join(line['response'] for line in lines)
    assert text
    whole = client.post('/api/generate', {'model': 'tinyllama', 'prompt': 'Why?', 'stream': False}).json()
    assert (whole['response'], whole['done'], whole['done_reason']) == (text, True, 'stop')
    assert 'tinyllama:latest' in client.ps()
    # keep_alive 0 with a prompt answers, then unloads
    client.post('/api/generate', {'model': 'tinyllama', 'prompt': 'Bye', 'keep_alive': 0, 'stream': False})
    assert wait_until(lambda: client.ps() == {})


def test_chat(client):
    client.pull('tinyllama')
    load = client.post('/api/chat', {'model': 'tinyllama', 'messages': []}).json()
    assert (load['message'], load['done'], load['done_reason']) == ({'role': 'assistant', 'content': ''}, True, 'load')
    answer = client.post('/api/chat', {'model': 'tinyllama', 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': False}).json()
    assert answer['message']['role'] == 'assistant' and answer['message']['content']
    assert answer['done_reason'] == 'stop'
    streamed = client.post('/api/chat', {'model': 'tinyllama', 'messages': [{'role': 'user', 'content': 'hi'}]}).lines()
    assert ''.join(line['message']['content'] for line in streamed) == answer['message']['content']
    unload = client.post('/api/chat', {'model': 'tinyllama', 'keep_alive': 0}).json()
    assert (unload['message'], unload['done_reason']) == ({'role': 'assistant', 'content': ''}, 'unload')
    assert wait_until(lambda: client.ps() == {})
    assert client.post('/api/chat', {'model': 'nope'}).status == 404


def test_copies_share_one_runner(client):
    # Ollama keys loaded models by their weights blob: a copy is the same runner
    client.pull('tinyllama')
    client.post('/api/copy', {'source': 'tinyllama', 'destination': 'alias'})
    client.post('/api/generate', {'model': 'tinyllama'})
    client.post('/api/generate', {'model': 'alias'})
    assert list(client.ps()) == ['tinyllama:latest']
    client.post('/api/generate', {'model': 'alias', 'keep_alive': 0})
    assert wait_until(lambda: client.ps() == {})


def test_load_time_option_change_reloads(client):
    client.pull('tinyllama')
    client.post('/api/generate', {'model': 'tinyllama', 'options': {'num_ctx': 2048}})
    assert client.ps()['tinyllama:latest']['context_length'] == 2048
    client.post('/api/generate', {'model': 'tinyllama', 'options': {'num_ctx': 8192, 'temperature': 0.1}})
    assert client.ps()['tinyllama:latest']['context_length'] == 8192
    assert len(client.state()['loaded']) == 1


def test_deleted_model_stays_loaded(client):
    client.pull('tinyllama')
    client.post('/api/generate', {'model': 'tinyllama'})
    client.call('DELETE', '/api/delete', {'model': 'tinyllama'})
    assert 'tinyllama:latest' in client.ps()


def test_least_recently_used_model_is_evicted(start):
    client = start(OLLAMA_MAX_LOADED_MODELS='2', OLLAMA_EMULATOR_CATALOG=GUARDS)
    for name in ('guard-a', 'guard-b', 'guard-c'):
        client.pull(name)
    client.post('/api/generate', {'model': 'guard-a'})
    client.post('/api/generate', {'model': 'guard-b'})
    client.post('/api/generate', {'model': 'guard-a'})  # a is now the most recently used
    client.post('/api/generate', {'model': 'guard-c'})
    assert set(client.ps()) == {'guard-a:latest', 'guard-c:latest'}
    sizes = {name: entry['size'] for name, entry in client.tags().items()}
    assert client.state()['held_bytes'] == sizes['guard-a:latest'] + sizes['guard-c:latest']


def test_three_models_by_default(start):
    client = start(OLLAMA_EMULATOR_CATALOG=json.dumps({'m%d' % i: {'size': 1000000} for i in range(4)}))
    for i in range(4):
        client.pull('m%d' % i)
        client.post('/api/generate', {'model': 'm%d' % i})
    assert len(client.ps()) == 3


def test_memory_error_is_500(start):
    client = start(OLLAMA_EMULATOR_CATALOG=json.dumps({'huge': {'size': 10 ** 18}}))
    client.pull('huge')
    answer = client.post('/api/generate', {'model': 'huge'})
    assert answer.status == 500
    assert 'unable to allocate' in answer.json()['error']
    assert client.ps() == {}


# --- 503 -----------------------------------------------------------------------------------

def test_busy_hook(client):
    client.pull('tinyllama')
    assert client.post('/_emulator/busy', {'count': 3}).json() == {'busy': 3}
    for path, body in (('/api/generate', {'model': 'tinyllama'}), ('/api/pull', {'model': 'tinyllama'}),
                       ('/api/chat', {'model': 'tinyllama', 'messages': [{'role': 'user', 'content': 'hi'}]})):
        answer = client.post(path, body)
        assert (answer.status, answer.json()) == (503, BUSY), path
        assert answer.content_type.startswith('application/json')
    assert client.post('/api/generate', {'model': 'tinyllama'}).status == 200
    # an unload does not queue, so it is never busy
    client.post('/_emulator/busy', {'count': 1})
    assert client.post('/api/generate', {'model': 'tinyllama', 'keep_alive': 0}).status == 200
    assert client.post('/api/create', {'model': 'x', 'from': 'tinyllama'}).status == 503


def test_full_queue_is_503(start):
    client = start(OLLAMA_MAX_QUEUE='1', OLLAMA_EMULATOR_GENERATE_DELAY='1')
    client.pull('tinyllama')
    results = []
    slow = threading.Thread(target=lambda: results.append(client.post('/api/generate', {'model': 'tinyllama', 'prompt': 'x', 'stream': False})))
    slow.start()
    assert wait_until(lambda: client.state()['in_flight'] == 1)
    answer = client.post('/api/generate', {'model': 'tinyllama', 'prompt': 'y'})
    assert (answer.status, answer.json()) == (503, BUSY)
    slow.join()
    assert results[0].status == 200
    assert client.post('/api/generate', {'model': 'tinyllama', 'prompt': 'z', 'stream': False}).status == 200


# --- store, catalog --------------------------------------------------------------------------

def test_models_persist_across_a_restart(start, tmp_path):
    store = str(tmp_path / 'models')
    first = start(OLLAMA_MODELS=store)
    first.pull('tinyllama')
    first.post('/api/create', {'model': 'user/tuned:v1', 'from': 'tinyllama', 'parameters': {'num_ctx': 2048}, 'stream': False})
    before = first.tags()
    first.server.shutdown()
    first.server.server_close()
    assert os.path.isfile(os.path.join(store, 'manifests', 'registry.ollama.ai', 'library', 'tinyllama', 'latest'))

    second = start(OLLAMA_MODELS=store)
    assert second.tags() == before
    assert 'num_ctx                        2048' in parameter_lines(second, 'user/tuned:v1')
    second.call('DELETE', '/api/delete', {'model': 'user/tuned:v1'})
    second.server.shutdown()
    second.server.server_close()
    assert set(start(OLLAMA_MODELS=store).tags()) == {'tinyllama:latest'}


def test_catalog_hook_simulates_a_new_upstream_version(client):
    client.pull('tinyllama')
    old = client.tags()['tinyllama:latest']['digest']
    new_digest = 'ab' * 32
    hook = client.post('/_emulator/catalog', {'name': 'tinyllama', 'digest': new_digest, 'size': 640000000})
    assert hook.json() == {'name': 'tinyllama:latest', 'digest': new_digest, 'size': 640000000}
    lines = client.post('/api/pull', {'model': 'tinyllama'}).lines()
    assert any('completed' not in line for line in lines[1:-3])  # a new weights layer was downloaded
    entry = client.tags()['tinyllama:latest']
    assert old != new_digest
    assert entry['digest'] == new_digest and entry['size'] == int(640000000 * SCALE)
    # a brand-new name becomes pullable
    client.post('/_emulator/catalog', {'name': 'fresh/model:v2', 'size': 1000000})
    assert client.pull('fresh/model:v2').status == 200
    assert re.fullmatch('[0-9a-f]{64}', client.tags()['fresh/model:v2']['digest'])


def test_catalog_from_the_environment(start, tmp_path):
    catalog_file = tmp_path / 'catalog.json'
    catalog_file.write_text(GUARDS)
    for source in (GUARDS, str(catalog_file)):
        client = start(OLLAMA_EMULATOR_CATALOG=source)
        assert client.pull('tinyllama').status == 500  # replaced, not merged
        assert client.pull('guard-b').status == 200
        entry = client.tags()['guard-b:latest']
        assert entry['size'] == int(200000000 * SCALE)
        assert re.fullmatch('[0-9a-f]{64}', entry['digest'])
        assert entry['details']['parameter_size'] and entry['details']['format'] == 'gguf'
    with pytest.raises(ValueError):
        emu.Settings(env={'OLLAMA_EMULATOR_CATALOG': '{"bad name": {}}'})


def test_state_hook(client):
    client.pull('tinyllama')
    client.post('/api/generate', {'model': 'tinyllama', 'keep_alive': -1})
    state = client.state()
    assert state['models'] == ['tinyllama:latest']
    assert [entry['name'] for entry in state['loaded']] == ['tinyllama:latest']
    assert state['held_bytes'] == state['loaded'][0]['held_bytes'] == client.tags()['tinyllama:latest']['size']
    # the server counts a request out just after its answer is written: wait (bounded) for that to land
    for _attempt in range(200):
        if state['in_flight'] == 0:
            break
        time.sleep(0.01)
        state = client.state()
    assert (state['in_flight'], state['busy']) == (0, 0)
