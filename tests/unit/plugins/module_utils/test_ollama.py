"""Unit tests of plugins/module_utils/_ollama.py: names, keep_alive, parameters, hosts and the HTTP client."""

import ast
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _ollama as ollama

# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------

# (given, shortest display form, full form)
NAMES = [
    # the four forms of OLLAMA_API.md that are the same model
    ('tinyllama', 'tinyllama:latest', 'registry.ollama.ai/library/tinyllama:latest'),
    ('tinyllama:latest', 'tinyllama:latest', 'registry.ollama.ai/library/tinyllama:latest'),
    ('library/tinyllama', 'tinyllama:latest', 'registry.ollama.ai/library/tinyllama:latest'),
    ('registry.ollama.ai/library/tinyllama:latest', 'tinyllama:latest', 'registry.ollama.ai/library/tinyllama:latest'),
    ('registry.ollama.ai/library/tinyllama', 'tinyllama:latest', 'registry.ollama.ai/library/tinyllama:latest'),
    ('library/tinyllama:latest', 'tinyllama:latest', 'registry.ollama.ai/library/tinyllama:latest'),
    # tags with dots, as in the seeds
    ('llama3.2:3b', 'llama3.2:3b', 'registry.ollama.ai/library/llama3.2:3b'),
    ('qwen2.5:3b', 'qwen2.5:3b', 'registry.ollama.ai/library/qwen2.5:3b'),
    ('llama3.2-prod', 'llama3.2-prod:latest', 'registry.ollama.ai/library/llama3.2-prod:latest'),
    # other namespaces are kept
    ('user/model:tag', 'user/model:tag', 'registry.ollama.ai/user/model:tag'),
    ('registry.ollama.ai/user/model:tag', 'user/model:tag', 'registry.ollama.ai/user/model:tag'),
    ('user/model', 'user/model:latest', 'registry.ollama.ai/user/model:latest'),
    # other hosts are kept, with their namespace (even library)
    ('hf.co/user/repo:Q4_K_M', 'hf.co/user/repo:Q4_K_M', 'hf.co/user/repo:Q4_K_M'),
    ('hf.co/user/repo', 'hf.co/user/repo:latest', 'hf.co/user/repo:latest'),
    ('example.com/library/foo', 'example.com/library/foo:latest', 'example.com/library/foo:latest'),
    # the tag is split only at a ':' after the last '/': a host port is not a tag
    ('localhost:5000/ns/model', 'localhost:5000/ns/model:latest', 'localhost:5000/ns/model:latest'),
    ('localhost:5000/ns/model:v1', 'localhost:5000/ns/model:v1', 'localhost:5000/ns/model:v1'),
    # the default host and namespace are dropped whatever their case; the rest keeps its case
    ('Registry.Ollama.AI/Library/TinyLlama:Latest', 'TinyLlama:Latest', 'Registry.Ollama.AI/Library/TinyLlama:Latest'),
    ('LIBRARY/tinyllama', 'tinyllama:latest', 'registry.ollama.ai/LIBRARY/tinyllama:latest'),
    # surrounding blanks
    ('  tinyllama  ', 'tinyllama:latest', 'registry.ollama.ai/library/tinyllama:latest'),
    # parts of the maximum length
    ('m' * 80 + ':' + 't' * 80, 'm' * 80 + ':' + 't' * 80, 'registry.ollama.ai/library/' + 'm' * 80 + ':' + 't' * 80),
    ('_under.score-dash', '_under.score-dash:latest', 'registry.ollama.ai/library/_under.score-dash:latest'),
]


@pytest.mark.parametrize('given, display, full', NAMES)
def test_normalize_name(given, display, full):
    assert ollama.normalize_name(given) == display
    assert ollama.parse_name(given).full == full
    assert ollama.parse_name(given).key == full.lower()


@pytest.mark.parametrize('display', sorted(set(row[1] for row in NAMES)))
def test_display_form_is_stable(display):
    assert ollama.normalize_name(display) == display


SAME = [
    ('tinyllama', 'tinyllama:latest', True),
    ('tinyllama', 'library/tinyllama', True),
    ('tinyllama', 'registry.ollama.ai/library/tinyllama:latest', True),
    ('TinyLlama', 'tinyllama', True),
    ('tinyllama:LATEST', 'tinyllama', True),
    ('hf.co/User/Repo:Q4_K_M', 'HF.CO/user/repo:q4_k_m', True),
    ('tinyllama', 'tinyllama:1.1b', False),
    ('user/tinyllama', 'tinyllama', False),
    ('example.com/library/tinyllama', 'tinyllama', False),
    ('llama3.2', 'llama3.2:3b', False),
    ('tinyllama', 'not a name', False),
]


@pytest.mark.parametrize('one, two, same', SAME)
def test_same_model(one, two, same):
    assert ollama.same_model(one, two) is same
    assert ollama.same_model(two, one) is same


BAD_NAMES = [
    ('', 'empty'),
    ('   ', 'empty'),
    (None, 'empty'),
    (42, 'empty or not a string'),
    ('tinyllama:', 'empty tag'),
    ('a/b/c/d', '4 parts'),
    ('/tinyllama', 'empty namespace'),
    ('ns//model', 'empty'),
    ('hf.co//model', 'empty namespace'),
    ('tiny llama', 'model part'),
    ('tinyllama:la test', 'tag part'),
    ('tiny$llama', 'model part'),
    ('m' * 81, 'longer than 80'),
    ('tinyllama:' + 't' * 81, 'longer than 80'),
    ('n' * 81 + '/model', 'longer than 80'),
    ('model:tag:extra', 'model part'),
    ('localhost:5000/model', 'namespace part'),
    ('tinyllama@sha256:abc', 'model part'),
    ('host:port/ns/model', 'host part'),
]


@pytest.mark.parametrize('given, words', BAD_NAMES)
def test_bad_names_are_refused_naming_the_value(given, words):
    with pytest.raises(ollama.ModelNameError) as info:
        ollama.parse_name(given)
    assert words in str(info.value)
    assert repr(given) in str(info.value) or repr(given.strip()) in str(info.value)


def test_model_name_equality_and_hash():
    assert ollama.parse_name('tinyllama') == ollama.parse_name('Library/TinyLlama:latest')
    assert len({ollama.parse_name('tinyllama'), ollama.parse_name('tinyllama:latest')}) == 1
    assert str(ollama.parse_name('library/tinyllama')) == 'tinyllama:latest'


TAGS = [
    {'name': 'llama3.2-prod:latest', 'model': 'llama3.2-prod:latest', 'digest': 'a' * 64},
    {'name': 'TinyLlama:latest', 'model': 'TinyLlama:latest', 'digest': 'b' * 64},
    {'name': 'hf.co/user/repo:Q4_K_M', 'model': 'hf.co/user/repo:Q4_K_M', 'digest': 'c' * 64},
    {'name': 'not valid name', 'model': 'not valid name', 'digest': 'd' * 64},
]


@pytest.mark.parametrize('wanted, digest', [
    ('tinyllama', 'b' * 64),
    ('library/tinyllama:latest', 'b' * 64),
    ('llama3.2-prod', 'a' * 64),
    ('hf.co/user/repo:q4_k_m', 'c' * 64),
    ('llama3.2', None),
    ('tinyllama:1.1b', None),
])
def test_find_model(wanted, digest):
    entry = ollama.find_model(TAGS, wanted)
    assert (entry or {}).get('digest') == digest


def test_find_model_in_empty_lists():
    assert ollama.find_model([], 'tinyllama') is None
    assert ollama.find_model(None, 'tinyllama') is None


# --------------------------------------------------------------------------------------------
# keep_alive
# --------------------------------------------------------------------------------------------

KEEP_ALIVE_OK = [
    (-1, -1, None),
    (-300, -300, None),
    (0, 0, 0.0),
    (300, 300, 300.0),
    (1.5, 1.5, 1.0),
    ('5m', '5m', 300.0),
    ('24h', '24h', 86400.0),
    ('0s', '0s', 0.0),
    ('0', '0', 0.0),
    ('-1m', '-1m', None),
    ('-1h', '-1h', None),
    ('1h30m', '1h30m', 5400.0),
    ('1.5h', '1.5h', 5400.0),
    ('300ms', '300ms', 0.3),
    ('+10s', '+10s', 10.0),
    ('.5m', '.5m', 30.0),
    (' 5m ', '5m', 300.0),
    ('2h45m30s', '2h45m30s', 9930.0),
    ('1500us', '1500us', 0.0015),
]


@pytest.mark.parametrize('value, sent, seconds', KEEP_ALIVE_OK)
def test_keep_alive_valid(value, sent, seconds):
    result, result_seconds = ollama.validate_keep_alive(value)
    assert result == sent
    if seconds is None:
        assert result_seconds is None
    else:
        assert result_seconds == pytest.approx(seconds)


@pytest.mark.parametrize('value', ['-1', '5', '300', '1.5', '-0.5', '+5', '5.', '1e3'])
def test_keep_alive_number_in_a_string_is_refused_with_a_suggestion(value):
    with pytest.raises(ollama.KeepAliveError) as info:
        ollama.validate_keep_alive(value)
    message = str(info.value)
    assert 'missing unit in duration "%s"' % value in message
    assert '-1' in message and '"5m"' in message


@pytest.mark.parametrize('value', ['', '5 m', '5min', 'm', 'forever', '5m-', '--5m', '5d', '1w', '1h 30m', '-', 'infinity'])
def test_keep_alive_not_a_duration(value):
    with pytest.raises(ollama.KeepAliveError) as info:
        ollama.validate_keep_alive(value)
    assert repr(value) in str(info.value)
    assert '"5m"' in str(info.value)


@pytest.mark.parametrize('value', [True, False, None, [], {}, float('nan'), float('inf')])
def test_keep_alive_wrong_type(value):
    with pytest.raises(ollama.KeepAliveError):
        ollama.validate_keep_alive(value)


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------

def go_show(pairs):
    """The `parameters` string as Ollama writes it: fmt.Sprintf("%-30s %#v", key, value) per value."""
    lines = []
    for key, value in pairs:
        if isinstance(value, bool):
            text = 'true' if value else 'false'
        elif isinstance(value, str):
            text = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, float) and value == int(value):
            text = '%d' % value  # Go's %#v prints float64(4) as 4
        else:
            text = repr(value)
        lines.append('%-30s %s' % (key, text))
    return '\n'.join(lines)


SHOW_CASES = [
    # the seed 002 variant, as Ollama lists it (JSON numbers come back as float64)
    ([('num_thread', 4.0), ('num_ctx', 2048.0), ('temperature', 0.7), ('top_p', 0.9)],
     {'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7, 'top_p': 0.9}),
    # repeated stop lines make a list, in order; quoted strings with escapes
    ([('stop', '<|start_header_id|>'), ('stop', '<|end_header_id|>'), ('stop', '<|eot_id|>'), ('temperature', 1.0)],
     {'stop': ['<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'], 'temperature': 1}),
    # one stop is a list too
    ([('stop', '</s>')], {'stop': ['</s>']}),
    # strings with quotes, backslashes, tabs, newlines and non-ASCII
    ([('stop', 'say "hi"'), ('stop', 'back\\slash'), ('stop', 'tab\there'), ('stop', 'line\nbreak'), ('stop', '\u00e9t\u00e9')],
     {'stop': ['say "hi"', 'back\\slash', 'tab\there', 'line\nbreak', '\u00e9t\u00e9']}),
    # booleans, negative numbers, zero, big integers
    ([('use_mmap', False), ('num_gpu', -1.0), ('seed', 0.0), ('num_predict', 4096.0), ('repeat_penalty', 1.1)],
     {'use_mmap': False, 'num_gpu': -1, 'seed': 0, 'num_predict': 4096, 'repeat_penalty': 1.1}),
    # a name longer than the 30-character padding is followed by one space
    ([('a_parameter_name_longer_than_thirty', 'x')], {'a_parameter_name_longer_than_thirty': 'x'}),
    # an unknown repeated name becomes a list as well
    ([('custom', 'a'), ('custom', 'b')], {'custom': ['a', 'b']}),
    ([], {}),
]


@pytest.mark.parametrize('pairs, expected', SHOW_CASES)
def test_parse_show_parameters(pairs, expected):
    parsed = ollama.parse_show_parameters(go_show(pairs))
    assert parsed == expected
    for key, value in expected.items():
        assert type(parsed[key]) is type(value) or isinstance(value, (int, float)) and isinstance(parsed[key], (int, float))


def test_parse_show_parameters_tolerates_order_blank_lines_and_none():
    text = '\n' + go_show([('top_p', 0.9), ('num_ctx', 2048.0)]) + '\n\n' + go_show([('num_thread', 4.0)]) + '\n'
    assert ollama.parse_show_parameters(text) == {'top_p': 0.9, 'num_ctx': 2048, 'num_thread': 4}
    assert not ollama.parse_show_parameters(None)
    assert not ollama.parse_show_parameters('')


@pytest.mark.parametrize('literal', ['"\\x41"', '"\\u00e9"', '"\\a\\v"', '"\\\\n"', '"\\U0001F600"'])
def test_go_quoted_escapes(literal):
    assert ollama.parse_show_parameters('stop ' + literal) == {'stop': [ast.literal_eval(literal)]}


SEED_002 = {'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7, 'top_p': 0.9}
EQUAL = [
    # order does not matter
    ({'top_p': 0.9, 'temperature': 0.7, 'num_ctx': 2048, 'num_thread': 4}, SEED_002, None, True),
    # numbers compare as numbers
    ({'num_thread': 4.0, 'num_ctx': 2048.0, 'temperature': 0.7, 'top_p': 0.9}, SEED_002, None, True),
    ({'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7, 'top_p': 0.9},
     {'num_thread': '4', 'num_ctx': '2048', 'temperature': '0.70', 'top_p': '.9'}, None, True),
    # float32 round trips still compare equal
    ({'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.699999988079071, 'top_p': 0.8999999761581421}, SEED_002, None, True),
    # one value differs
    ({'num_thread': 4, 'num_ctx': 4096, 'temperature': 0.7, 'top_p': 0.9}, SEED_002, None, False),
    ({'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.71, 'top_p': 0.9}, SEED_002, None, False),
    # a desired one is missing
    ({'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7}, SEED_002, None, False),
    # stop as a set of strings; a string is a one-element list
    ({'stop': ['a', 'b']}, {'stop': ['b', 'a']}, None, True),
    ({'stop': ['a']}, {'stop': 'a'}, None, True),
    ({'stop': ['a', 'b']}, {'stop': ['a']}, None, False),
    # booleans
    ({'use_mmap': False}, {'use_mmap': 'false'}, None, True),
    ({'use_mmap': True}, {'use_mmap': False}, None, False),
    # parameters inherited from the base are not differences...
    (dict(SEED_002, stop=['<|eot_id|>']), SEED_002, {'stop': ['<|eot_id|>'], 'num_ctx': 8192}, True),
    # ...unless their value is not the base's (a parameter set earlier and no longer asked for)
    (dict(SEED_002, seed=42), SEED_002, {'stop': ['<|eot_id|>']}, False),
    (dict(SEED_002, stop=['x']), SEED_002, {'stop': ['<|eot_id|>']}, False),
    # with the base unknown, extra names are ignored
    (dict(SEED_002, seed=42), SEED_002, None, True),
    # nothing desired, nothing inherited: equal only if the model has no parameters
    ({}, {}, {}, True),
    ({'seed': 1}, {}, {}, False),
]


@pytest.mark.parametrize('current, desired, inherited, equal', EQUAL)
def test_parameters_equal(current, desired, inherited, equal):
    assert ollama.parameters_equal(current, desired, inherited) is equal
    assert bool(ollama.parameter_differences(current, desired, inherited)) is not equal


def test_parameter_differences_names_the_keys():
    current = {'num_thread': 4, 'num_ctx': 4096, 'temperature': 0.7, 'seed': 3}
    assert ollama.parameter_differences(current, SEED_002, {}) == ['num_ctx', 'seed', 'top_p']


def test_parse_then_compare_is_order_independent():
    one = ollama.parse_show_parameters(go_show([('num_thread', 4.0), ('num_ctx', 2048.0), ('temperature', 0.7), ('top_p', 0.9)]))
    two = ollama.parse_show_parameters(go_show([('top_p', 0.9), ('temperature', 0.7), ('num_ctx', 2048.0), ('num_thread', 4.0)]))
    assert ollama.parameters_equal(one, SEED_002, {})
    assert ollama.parameters_equal(two, SEED_002, {})
    assert ollama.parameters_equal(one, two, {})


COERCE = [
    ({'num_ctx': '2048', 'num_thread': 4.0, 'temperature': '0.7', 'top_p': 1}, {'num_ctx': 2048, 'num_thread': 4, 'temperature': 0.7, 'top_p': 1.0}),
    ({'stop': '</s>'}, {'stop': ['</s>']}),
    ({'stop': ['a', 'b']}, {'stop': ['a', 'b']}),
    ({'use_mmap': 'yes', 'num_gpu': -1}, {'use_mmap': True, 'num_gpu': -1}),
    ({}, {}),
    (None, {}),
]


@pytest.mark.parametrize('given, expected', COERCE)
def test_coerce_parameters(given, expected):
    result = ollama.coerce_parameters(given)
    assert result == expected
    for key, value in expected.items():
        assert type(result[key]) is type(value)


@pytest.mark.parametrize('given, words', [
    ({'num_ctx': 'big'}, "parameter num_ctx: 'big' is not a number"),
    ({'num_ctx': 2048.5}, 'not a whole number'),
    ({'num_ctx': True}, 'not a number'),
    ({'temperature': 'hot'}, 'not a number'),
    ({'temperature': float('inf')}, 'not a number'),
    ({'use_mmap': 'maybe'}, 'not a boolean'),
    ({'stop': 5}, 'not a string'),
    ({'stop': ['a', 5]}, 'not a string'),
])
def test_coerce_parameters_refuses_wrong_types(given, words):
    with pytest.raises(ollama.ParameterError) as info:
        ollama.coerce_parameters(given)
    assert words in str(info.value)


@pytest.mark.parametrize('given, named, note', [
    ({'num_threads': 4}, 'num_threads', None),
    ({'mirostat': 1, 'num_ctx': 2048}, 'mirostat', 'removed from Ollama'),
    ({'tfs_z': 1.0, 'use_mlock': True}, 'tfs_z, use_mlock', 'removed from Ollama'),
    ({'OLLAMA_NUM_THREADS': 6}, 'OLLAMA_NUM_THREADS', None),
])
def test_unknown_parameter_names_are_refused_with_the_valid_ones(given, named, note):
    with pytest.raises(ollama.ParameterError) as info:
        ollama.coerce_parameters(given)
    message = str(info.value)
    assert named in message
    assert 'valid parameters are: ' + ', '.join(sorted(ollama.VALID_PARAMETERS)) in message
    if note:
        assert note in message


def test_parameter_lists_match_the_contract():
    assert set(ollama.RUNTIME_PARAMETERS) == {'num_keep', 'seed', 'num_predict', 'top_k', 'top_p', 'min_p', 'typical_p', 'repeat_last_n',
                                              'temperature', 'repeat_penalty', 'presence_penalty', 'frequency_penalty', 'stop'}
    assert set(ollama.LOAD_PARAMETERS) == {'num_ctx', 'num_batch', 'num_gpu', 'main_gpu', 'use_mmap', 'num_thread'}
    assert not set(ollama.REMOVED_PARAMETERS) & set(ollama.VALID_PARAMETERS)


# --------------------------------------------------------------------------------------------
# host
# --------------------------------------------------------------------------------------------

HOSTS = [
    ('', 'http://127.0.0.1:11434'),
    ('127.0.0.1:11434', 'http://127.0.0.1:11434'),
    ('0.0.0.0:11434', 'http://127.0.0.1:11434'),
    ('0.0.0.0', 'http://127.0.0.1:11434'),
    ('0.0.0.0:8080', 'http://127.0.0.1:8080'),
    (':11435', 'http://127.0.0.1:11435'),
    ('ollama', 'http://ollama:11434'),
    ('ollama.internal.example', 'http://ollama.internal.example:11434'),
    ('ollama:1234', 'http://ollama:1234'),
    ('http://h:8080', 'http://h:8080'),
    ('http://h', 'http://h:80'),
    ('https://h', 'https://h:443'),
    ('https://h:8443/', 'https://h:8443'),
    ('HTTP://h:1', 'http://h:1'),
    ('http://h:8080/ollama/', 'http://h:8080/ollama'),
    ('[::1]:11434', 'http://[::1]:11434'),
    ('[::1]', 'http://[::1]:11434'),
    ('::1', 'http://[::1]:11434'),
    ('[::]:11434', 'http://[::1]:11434'),
    ('  127.0.0.1:11434  ', 'http://127.0.0.1:11434'),
]


@pytest.mark.parametrize('value, url', HOSTS)
def test_parse_host(value, url):
    assert ollama.parse_host(value) == url


@pytest.mark.parametrize('value', ['ftp://h', 'h:port', 'h:0', 'h:70000', '[::1'])
def test_parse_host_refuses(value):
    with pytest.raises(ValueError) as info:
        ollama.parse_host(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize('environ, url', [
    ({}, 'http://127.0.0.1:11434'),
    ({'OLLAMA_HOST': ''}, 'http://127.0.0.1:11434'),
    ({'OLLAMA_HOST': '0.0.0.0:11434'}, 'http://127.0.0.1:11434'),
    ({'OLLAMA_HOST': 'http://ollama:8080'}, 'http://ollama:8080'),
    ({'OLLAMA_HOST': 'ollama'}, 'http://ollama:11434'),
])
def test_host_from_env(environ, url):
    assert ollama.host_from_env(environ) == url


def test_host_from_env_reads_os_environ(monkeypatch):
    monkeypatch.setenv('OLLAMA_HOST', '127.0.0.1:9999')
    assert ollama.host_from_env() == 'http://127.0.0.1:9999'
    assert ollama.OllamaClient().base_url == 'http://127.0.0.1:9999'


@pytest.mark.parametrize('url, local', [
    ('http://127.0.0.1:11434', True),
    ('http://127.0.0.2:11434', True),
    ('http://localhost:11434', True),
    ('http://[::1]:11434', True),
    ('http://192.0.2.10:11434', False),
    ('http://ollama.invalid:11434', False),
])
def test_is_local_url(url, local):
    assert ollama.is_local_url(url) is local


# --------------------------------------------------------------------------------------------
# the client, against a stub server on loopback
# --------------------------------------------------------------------------------------------

class Stub:
    """Programmable answers: a list of (status, body, content type) per (method, path); records requests."""

    def __init__(self):
        self.routes = {}
        self.requests = []

    def add(self, method, path, *answers):
        self.routes.setdefault((method, path), []).extend(answers)


@pytest.fixture(name='stub')
def fixture_stub():
    stub = Stub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *args):  # pylint: disable=arguments-differ
            pass

        def _answer(self):
            length = int(self.headers.get('Content-Length') or 0)
            body = self.rfile.read(length) if length else b''
            stub.requests.append({'method': self.command, 'path': self.path, 'headers': dict(self.headers),
                                  'body': json.loads(body) if body else None})
            answers = stub.routes.get((self.command, self.path))
            if not answers:
                status, payload, ctype = 404, '404 page not found', 'text/plain'
            else:
                status, payload, ctype = answers.pop(0) if len(answers) > 1 else answers[0]
            if isinstance(payload, (dict, list)):
                payload = json.dumps(payload)
            data = payload.encode() if isinstance(payload, str) else payload
            self.send_response(status)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_HEAD = _answer

    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
    thread.start()
    stub.url = 'http://127.0.0.1:%d' % server.server_address[1]
    yield stub
    server.shutdown()
    server.server_close()


def client_for(stub, **kwargs):
    sleeps = []
    kwargs.setdefault('timeout', 5)
    client = ollama.OllamaClient(stub.url, sleep=sleeps.append, **kwargs)
    client.sleeps = sleeps
    return client


JSON = 'application/json'
NDJSON = 'application/x-ndjson'
BUSY = (503, {'error': 'server busy, please try again.  maximum pending requests exceeded'}, JSON)


def test_tags_ps_version_show(stub):
    stub.add('GET', '/api/tags', (200, {'models': [{'name': 'tinyllama:latest', 'size': 1, 'digest': 'a' * 64}]}, JSON))
    stub.add('GET', '/api/ps', (200, {'models': []}, JSON))
    stub.add('GET', '/api/version', (200, {'version': '0.33.0'}, JSON))
    stub.add('POST', '/api/show', (200, {'parameters': 'num_ctx                        2048', 'template': '{{ .Prompt }}'}, JSON))
    client = client_for(stub)
    assert client.tags()[0]['name'] == 'tinyllama:latest'
    assert not client.ps()
    assert client.version() == '0.33.0'
    assert client.show('tinyllama:latest')['template'] == '{{ .Prompt }}'
    assert stub.requests[-1]['body'] == {'model': 'tinyllama:latest'}


def test_headers_are_sent(stub):
    stub.add('GET', '/api/tags', (200, {'models': []}, JSON))
    client_for(stub, headers={'Authorization': 'Bearer s3cret', 'X-Tenant': 'ops'}).tags()
    headers = stub.requests[0]['headers']
    assert headers['Authorization'] == 'Bearer s3cret'
    assert headers['X-Tenant'] == 'ops'


def test_not_found_carries_status_and_url(stub):
    stub.add('POST', '/api/show', (404, {'error': "model 'nope' not found"}, JSON))
    with pytest.raises(ollama.OllamaError) as info:
        client_for(stub).show('nope')
    assert info.value.status == 404
    assert info.value.url == stub.url + '/api/show'
    assert "model 'nope' not found" in str(info.value)
    assert 'HTTP 404' in str(info.value)


def test_plain_text_errors(stub):
    with pytest.raises(ollama.OllamaError) as info:
        client_for(stub).request('GET', '/api/unknown')
    assert info.value.status == 404
    assert '404 page not found' in str(info.value)


def test_delete_uses_delete_with_a_body(stub):
    stub.add('DELETE', '/api/delete', (200, '', JSON))
    assert client_for(stub).delete('tinyllama:latest') is None
    assert stub.requests[0]['method'] == 'DELETE'
    assert stub.requests[0]['body'] == {'model': 'tinyllama:latest'}


def test_busy_is_retried_with_exponential_backoff_then_succeeds(stub):
    stub.add('GET', '/api/tags', BUSY, BUSY, BUSY, (200, {'models': []}, JSON))
    client = client_for(stub, backoff=0.5, max_backoff=8)
    assert not client.tags()
    assert client.sleeps == [0.5, 1.0, 2.0]
    assert client.retried == 3
    assert len(stub.requests) == 4


def test_busy_retries_are_bounded(stub):
    stub.add('POST', '/api/generate', BUSY)
    client = client_for(stub, retries=5, backoff=0.5, max_backoff=2)
    with pytest.raises(ollama.OllamaError) as info:
        client.load('tinyllama:latest')
    assert info.value.status == 503
    assert 'server busy' in str(info.value) and 'after 5 retries' in str(info.value)
    assert client.sleeps == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert len(stub.requests) == 6


def test_busy_pull_is_retried(stub):
    lines = '\n'.join(json.dumps(item) for item in ({'status': 'pulling manifest'}, {'status': 'success'})) + '\n'
    stub.add('POST', '/api/pull', BUSY, (200, lines, NDJSON))
    client = client_for(stub)
    assert client.pull_all('tinyllama:latest') == {'status': 'success'}
    assert client.retried == 1


def test_pull_streams_every_line(stub):
    items = [{'status': 'pulling manifest'},
             {'status': 'pulling 2af3b81862c6', 'digest': 'sha256:' + '2af3b81862c6' * 5 + 'abcd', 'total': 100, 'completed': 50},
             {'status': 'pulling 2af3b81862c6', 'digest': 'sha256:' + '2af3b81862c6' * 5 + 'abcd', 'total': 100, 'completed': 100},
             {'status': 'verifying sha256 digest'}, {'status': 'writing manifest'}, {'status': 'success'}]
    stub.add('POST', '/api/pull', (200, '\n'.join(json.dumps(item) for item in items) + '\n', NDJSON))
    assert list(client_for(stub).pull('tinyllama')) == items
    assert stub.requests[0]['body'] == {'model': 'tinyllama', 'stream': True}


def test_pull_error_line_raises_with_the_error(stub):
    lines = json.dumps({'status': 'pulling manifest'}) + '\n' + json.dumps({'error': 'pull model manifest: file does not exist'}) + '\n'
    stub.add('POST', '/api/pull', (200, lines, NDJSON))
    with pytest.raises(ollama.OllamaError) as info:
        client_for(stub).pull_all('nosuchmodel')
    assert info.value.message == 'pull model manifest: file does not exist'
    assert info.value.status == 200


def test_pull_not_streamed(stub):
    stub.add('POST', '/api/pull', (500, {'error': 'pull model manifest: file does not exist'}, JSON))
    with pytest.raises(ollama.OllamaError) as info:
        client_for(stub).pull('nosuchmodel', stream=False)
    assert info.value.status == 500


def test_create_sends_the_new_api_fields(stub):
    stub.add('POST', '/api/create', (200, json.dumps({'status': 'using existing layer'}) + '\n' + json.dumps({'status': 'success'}) + '\n', NDJSON))
    result = client_for(stub).create('llama3.2-prod', 'llama3.2:3b', parameters={'num_ctx': 2048}, system='Be brief.')
    assert result == {'status': 'success'}
    assert stub.requests[0]['body'] == {'model': 'llama3.2-prod', 'from': 'llama3.2:3b', 'stream': True,
                                        'parameters': {'num_ctx': 2048}, 'system': 'Be brief.'}
    assert 'modelfile' not in stub.requests[0]['body']


def test_load_and_unload_bodies(stub):
    stub.add('POST', '/api/generate', (200, {'model': 'tinyllama', 'done': True, 'done_reason': 'load'}, JSON))
    client = client_for(stub)
    client.load('tinyllama:latest', '10m')
    client.load('tinyllama:latest', -1)
    client.load('tinyllama:latest')
    client.unload('tinyllama:latest')
    bodies = [request['body'] for request in stub.requests]
    assert bodies == [{'model': 'tinyllama:latest', 'stream': False, 'keep_alive': '10m'},
                      {'model': 'tinyllama:latest', 'stream': False, 'keep_alive': -1},
                      {'model': 'tinyllama:latest', 'stream': False},
                      {'model': 'tinyllama:latest', 'keep_alive': 0, 'stream': False}]
    assert all('prompt' not in body for body in bodies)


def test_wait_unloaded_polls_until_gone(stub):
    loaded = (200, {'models': [{'name': 'tinyllama:latest', 'model': 'tinyllama:latest'}]}, JSON)
    stub.add('GET', '/api/ps', loaded, loaded, (200, {'models': []}, JSON))
    client = client_for(stub)
    assert client.wait_unloaded('tinyllama', timeout=10, interval=0.1) is True
    assert client.sleeps == [0.1, 0.1]


def test_wait_unloaded_is_bounded(stub):
    stub.add('GET', '/api/ps', (200, {'models': [{'name': 'tinyllama:latest', 'model': 'tinyllama:latest'}]}, JSON))
    ticks = iter(range(100))
    client = client_for(stub)
    assert client.wait_unloaded('tinyllama', timeout=3, interval=1, clock=lambda: next(ticks)) is False


def test_unreachable_host_names_the_url():
    client = ollama.OllamaClient('http://127.0.0.1:1', timeout=2)
    with pytest.raises(ollama.OllamaError) as info:
        client.tags()
    assert info.value.status is None
    assert 'cannot reach Ollama at http://127.0.0.1:1/api/tags' in str(info.value)


def test_module_utils_are_stdlib_only(top_level_imports):
    """The guard daemon imports _ollama without Ansible: no ansible import anywhere in it."""
    imported = top_level_imports(ollama.__file__)
    assert 'ansible' not in imported and 'ansible_collections' not in imported
    assert imported <= set(sys.stdlib_module_names)
    assert 'PRIVATE to the collection' in ollama.__doc__


def test_loopback_traffic_ignores_http_proxy(stub, monkeypatch):
    monkeypatch.setenv('http_proxy', 'http://127.0.0.1:1')
    monkeypatch.setenv('HTTP_PROXY', 'http://127.0.0.1:1')
    monkeypatch.delenv('no_proxy', raising=False)
    monkeypatch.delenv('NO_PROXY', raising=False)
    stub.add('GET', '/api/tags', (200, {'models': []}, JSON))
    assert not client_for(stub).tags()


@pytest.mark.parametrize('validate, verify_mode', [(False, 'CERT_NONE'), (True, None)])
def test_validate_certs_false_turns_off_verification(validate, verify_mode):
    client = ollama.OllamaClient('https://ollama.example:8443', validate_certs=validate)
    https = [handler for handler in client._opener.handlers if handler.__class__.__name__ == 'HTTPSHandler']  # pylint: disable=protected-access
    contexts = [handler._context for handler in https if getattr(handler, '_context', None)]  # pylint: disable=protected-access
    if verify_mode is None:
        assert not contexts
    else:
        assert contexts and contexts[0].verify_mode.name == verify_mode and not contexts[0].check_hostname


def test_pull_that_ends_before_success_is_an_error(stub):
    # a stream cut short (the server restarted, a proxy gave up) must not count as a finished pull
    stub.add('POST', '/api/pull', (200, json.dumps({'status': 'pulling manifest'}) + '\n', NDJSON))
    with pytest.raises(ollama.OllamaError) as info:
        client_for(stub).pull_all('tinyllama')
    assert 'ended before it reported success' in info.value.message and 'pulling manifest' in info.value.message
    assert info.value.url.endswith('/api/pull')


@pytest.fixture(name='short_server')
def fixture_short_server():
    """A server that promises 1000 bytes of body, sends a few, and hangs up."""
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(4)

    def serve():
        while True:
            try:
                conn, _address = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n'
                             b'{"status": "pulling manifest"}\n{"status": "pull')

    threading.Thread(target=serve, daemon=True).start()
    yield 'http://127.0.0.1:%d' % listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize('call', ['stream', 'request'])
def test_a_connection_cut_mid_answer_is_an_ollama_error_naming_the_url(short_server, call):
    client = ollama.OllamaClient(short_server, timeout=5)
    with pytest.raises(ollama.OllamaError) as info:
        if call == 'stream':
            client.pull_all('tinyllama')
        else:
            client.tags()
    assert info.value.url.startswith(short_server)


@pytest.mark.parametrize('value, environ, url', [
    ('http://h:8080', {'OLLAMA_HOST': 'other:1'}, 'http://h:8080'),      # the option wins
    (None, {'OLLAMA_HOST': '0.0.0.0:11500'}, 'http://127.0.0.1:11500'),  # else OLLAMA_HOST, as Ollama's client reads it
    ('  ', {'OLLAMA_HOST': 'myhost'}, 'http://myhost:11434'),            # blank is not given
    (None, {}, ollama.DEFAULT_HOST),                                      # else the one default
])
def test_resolve_host_option_then_environment_then_default(value, environ, url):
    assert ollama.resolve_host(value, environ) == url


def test_resolve_host_refuses_another_scheme():
    with pytest.raises(ValueError, match='the scheme must be http or https'):
        ollama.resolve_host('ftp://x', {})
