"""Unit tests of the ollama_model module: main() with a fake Ollama client (the integration tests use the emulator)."""

import ast
import json

import pytest

from ansible.module_utils import basic

from ansible_collections.sutazai.ops.plugins.module_utils import _ollama as ollama
from ansible_collections.sutazai.ops.plugins.module_utils import _ollama_model
from ansible_collections.sutazai.ops.plugins.modules import ollama_model
from ansible_collections.sutazai.ops.tests.unit.plugins.modules.utils import patch_module_exits, run_main

GIB = 1024 ** 3
MIB = 1024 ** 2
BASE_PARAMS = '%-30s %s\n%-30s %s' % ('stop', '"<|eot_id|>"', 'num_ctx', '8192')


def go_params(params):
    lines = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append('%-30s %s' % (key, json.dumps(item) if isinstance(item, str) else json.dumps(item).lower()))
    return '\n'.join(lines)


class FakeOllama:
    """An in-memory Ollama with the behaviour of the contract; records the calls that change something."""

    def __init__(self):
        self.base_url = 'http://127.0.0.1:11434'
        self.models = {}       # display name -> {'size', 'digest', 'params' (dict), 'system', 'template'}
        self.loaded = {}       # display name -> expires_at
        self.catalog = {'tinyllama:latest': (637700138, 'a' * 64), 'llama3.2:3b': (2019393189, 'b' * 64)}
        self.calls = []

    def add(self, name, params=None, **extra):
        size, digest = self.catalog.get(name, (100, 'c' * 64))
        self.models[name] = dict({'size': size, 'digest': digest, 'params': dict(params or {}), 'system': '', 'template': ''}, **extra)

    def tags(self):
        return [{'name': name, 'model': name, 'size': m['size'], 'digest': m['digest']} for name, m in self.models.items()]

    def ps(self):
        return [{'name': name, 'model': name, 'size': self.models.get(name, {}).get('size', 0), 'expires_at': exp}
                for name, exp in self.loaded.items()]

    def show(self, name):
        key = ollama.normalize_name(name)
        if key not in self.models:
            raise ollama.OllamaError("model '%s' not found" % name, status=404, url=self.base_url + '/api/show')
        model = self.models[key]
        return {'parameters': go_params(model['params']), 'system': model['system'], 'template': model['template'],
                'details': {'parent_model': model.get('parent', '')}}

    def pull_all(self, name):
        self.calls.append(('pull', name))
        known = [key for key in self.catalog if ollama.same_model(key, name)]
        if not known:
            raise ollama.OllamaError('pull model manifest: file does not exist', status=200, url=self.base_url + '/api/pull')
        size, digest = self.catalog[known[0]]
        self.models[name] = {'size': size, 'digest': digest, 'params': {}, 'system': '', 'template': ''}
        return {'status': 'success'}

    def create(self, name, from_, parameters=None, system=None, template=None):
        self.calls.append(('create', name, from_, parameters, system, template))
        base = self.models[ollama.normalize_name(from_)]
        params = dict(base['params'])
        params.update(parameters or {})
        self.models[ollama.normalize_name(name)] = {'size': base['size'], 'digest': 'd' * 64, 'params': params,
                                                    'system': system if system is not None else base['system'],
                                                    'template': template if template is not None else base['template'],
                                                    'parent': from_}

    def load(self, name, keep_alive=None):
        self.calls.append(('load', name, keep_alive))
        self.loaded[name] = '2025-06-01T12:05:00.123456789Z'

    def unload(self, name):
        self.calls.append(('unload', name))
        self.loaded.pop(name, None)

    def wait_unloaded(self, name, timeout=30):  # pylint: disable=unused-argument
        return ollama.normalize_name(str(name)) not in self.loaded

    def delete(self, name):
        self.calls.append(('delete', name))
        if name not in self.models:
            raise ollama.OllamaError("model '%s' not found" % name, status=404, url=self.base_url + '/api/delete')
        del self.models[name]


@pytest.fixture(name='fake')
def fixture_fake(monkeypatch):
    fake = FakeOllama()

    patch_module_exits(monkeypatch)
    monkeypatch.setattr(ollama_model.ollama, 'OllamaClient', lambda base_url, **kwargs: fake)
    monkeypatch.setattr(_ollama_model._cgroups, 'read_meminfo', lambda path: {'MemAvailable': 16 * GIB})
    monkeypatch.setattr(_ollama_model.ContainerFinder, 'detect', lambda self: None)
    return fake


def run(args, check=False, diff=False):
    return run_main(ollama_model.main, args, check, diff)


SEED_002 = {'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7, 'top_p': 0.9}
VARIANT = {'name': 'llama3.2-prod', 'from': 'llama3.2:3b', 'parameters': SEED_002}


# --- input validation: refused before any call, naming the value -----------------------------

BAD_INPUT = [
    ({'name': 'tiny llama'}, "name: model name 'tiny llama'"),
    ({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': '-1'}, 'missing unit in duration "-1"'),
    ({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': '5'}, '"5m"'),
    ({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': 0}, 'use state=unloaded'),
    ({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': True}, 'keep_alive'),
    (dict(VARIANT, parameters={'num_threads': 4}), 'unknown parameter num_threads; valid parameters are: frequency_penalty, main_gpu'),
    (dict(VARIANT, parameters={'mirostat': 2}), 'removed from Ollama'),
    (dict(VARIANT, parameters={'num_ctx': 'big'}), "parameters: parameter num_ctx: 'big' is not a number"),
    ({'name': 'x', 'parameters': {'num_ctx': 1}}, 'parameters'),
    (dict(VARIANT, state='latest'), 'state=latest'),
    ({'name': 'tinyllama', 'from': 'library/tinyllama:latest'}, 'made from itself'),
    ({'name': 'x', 'from': 'a/b/c/d'}, 'from: model name'),
    ({'name': 'tinyllama', 'host': 'ftp://h'}, 'scheme must be http or https'),
    ({'name': 'tinyllama', 'timeout': 0}, 'timeout'),
]


@pytest.mark.parametrize('args, words', BAD_INPUT)
def test_bad_input_is_refused_and_nothing_changes(fake, args, words):
    result = run(args)
    assert result['failed'], result
    assert words in result['msg']
    assert not fake.calls


# --- present -----------------------------------------------------------------------------------

def test_present_pulls_then_is_idempotent(fake):
    first = run({'name': 'TinyLlama'})
    assert first['changed'] and first['actions'] == ['pulled TinyLlama:latest']
    assert first['model'] == 'TinyLlama:latest'
    assert first['digest'] == 'a' * 64 and first['size'] == 637700138
    second = run({'name': 'library/tinyllama:latest'})
    assert not second['changed'] and not second['actions']
    assert fake.calls == [('pull', 'TinyLlama:latest')]


def test_present_check_mode_and_diff(fake):
    result = run({'name': 'tinyllama'}, check=True, diff=True)
    assert result['changed'] and result['actions'] == ['pulled tinyllama:latest']
    assert result['diff']['before']['present'] is False
    assert result['diff']['after']['present'] is True
    assert not fake.calls and not fake.models


def test_pull_of_an_unknown_model_fails_with_the_error(fake):
    result = run({'name': 'nosuchmodel'})
    assert result['failed']
    assert 'pull model manifest: file does not exist' in result['msg']
    assert 'nosuchmodel:latest' in result['msg']


# --- variants ----------------------------------------------------------------------------------

def test_variant_pulls_the_missing_base_creates_and_is_idempotent(fake):
    first = run(VARIANT, diff=True)
    assert first['changed']
    assert first['actions'] == ['pulled base model llama3.2:3b', 'created llama3.2-prod:latest from llama3.2:3b']
    assert first['parameters'] == SEED_002
    assert first['diff']['after']['parameters'] == SEED_002
    assert not run(VARIANT)['changed']
    reordered = dict(VARIANT, parameters={'top_p': '0.9', 'temperature': 0.70, 'num_ctx': '2048', 'num_thread': 4.0})
    assert not run(reordered)['changed']


def test_variant_inherits_the_base_parameters_without_recreating(fake):
    fake.add('llama3.2:3b', params={'stop': ['<|eot_id|>'], 'num_ctx': 8192})
    assert run(VARIANT)['changed']
    again = run(VARIANT)
    assert not again['changed']
    assert again['parameters'] == dict(SEED_002, stop=['<|eot_id|>'])


@pytest.mark.parametrize('change, different', [
    ({'parameters': dict(SEED_002, num_ctx=4096)}, 'parameter num_ctx'),
    ({'parameters': dict(SEED_002, seed=42)}, 'parameter seed'),
    ({'parameters': {'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7}}, 'parameter top_p'),   # top_p no longer asked for
    ({'system': 'Be brief.'}, 'system'),
    ({'template': '{{ .Prompt }}'}, 'template'),
])
def test_variant_is_recreated_when_something_differs(fake, change, different):
    fake.add('llama3.2:3b', params={'stop': ['<|eot_id|>']})
    run(VARIANT)
    result = run(dict(VARIANT, **change), diff=True)
    assert result['changed']
    assert result['actions'] == ['re-created llama3.2-prod:latest from llama3.2:3b (different: %s)' % different]
    assert not run(dict(VARIANT, **change))['changed']


def test_variant_from_another_base_is_recreated(fake):
    run(VARIANT)
    fake.add('tinyllama:latest')
    result = run(dict(VARIANT, **{'from': 'tinyllama'}))
    assert result['changed'] and 'base model (llama3.2:3b)' in result['actions'][0]


def test_variant_check_mode_changes_nothing(fake):
    fake.add('llama3.2:3b')
    run(VARIANT)
    calls = list(fake.calls)
    result = run(dict(VARIANT, parameters=dict(SEED_002, num_ctx=4096)), check=True, diff=True)
    assert result['changed']
    assert result['diff']['before']['parameters']['num_ctx'] == 2048
    assert result['diff']['after']['parameters']['num_ctx'] == 4096
    assert fake.calls == calls
    assert fake.models['llama3.2-prod:latest']['params']['num_ctx'] == 2048


# --- loaded / fit check ---------------------------------------------------------------------------

def test_loaded_loads_with_keep_alive_then_is_idempotent(fake):
    fake.add('tinyllama:latest')
    first = run({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': '10m'}, diff=True)
    assert first['changed'] and first['loaded'] and first['expires_at']
    assert first['actions'] == ['loaded tinyllama:latest (keep_alive 10m)']
    assert first['memory']['checked'] and first['memory']['available'] == 16 * GIB
    assert first['memory']['source'].startswith('host MemAvailable')
    assert first['diff']['before']['loaded'] is False and first['diff']['after']['loaded'] is True
    assert ('load', 'tinyllama:latest', '10m') in fake.calls
    second = run({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': '10m'})
    assert not second['changed'] and 'memory' not in second


def test_loaded_pulls_a_missing_model_first(fake):
    result = run({'name': 'tinyllama', 'state': 'loaded', 'keep_alive': -1})
    assert result['actions'] == ['pulled tinyllama:latest', 'loaded tinyllama:latest (keep_alive -1)']


def test_loaded_refuses_a_model_that_does_not_fit_in_the_host(fake, monkeypatch):
    monkeypatch.setattr(_ollama_model._cgroups, 'read_meminfo', lambda path: {'MemAvailable': 300 * MIB})
    fake.add('tinyllama:latest')
    result = run({'name': 'tinyllama', 'state': 'loaded'})
    assert result['failed']
    assert 'tinyllama:latest does not fit' in result['msg']
    assert '608.16M (637700138 bytes)' in result['msg'] and '300M (314572800 bytes)' in result['msg']
    assert 'host MemAvailable' in result['msg'] and 'Nothing was loaded' in result['msg']
    assert result['memory']['model_size'] == 637700138
    assert not fake.loaded


def test_loaded_refuses_when_the_container_cgroup_is_too_small(fake, monkeypatch):
    container = {'id': 'f' * 64, 'name': 'ollama', 'cgroup': '/sys/fs/cgroup/memory/docker/' + 'f' * 64, 'limit': 64 * MIB,
                 'usage': 10 * MIB, 'available': 54 * MIB, 'limited_by': '/sys/fs/cgroup/memory/docker/' + 'f' * 64}
    seen = []
    monkeypatch.setattr(_ollama_model.ContainerFinder, 'explicit', lambda self, name: seen.append(name) or container)
    fake.add('tinyllama:latest')
    result = run({'name': 'tinyllama', 'state': 'loaded', 'container': 'ollama'})
    assert seen == ['ollama', 'ollama']  # checked before anything is done, read again (fresh usage) for the fit
    assert result['failed']
    assert '54M (56623104 bytes)' in result['msg']
    assert 'container ollama: cgroup /sys/fs/cgroup/memory/docker/%s limit 64M minus usage 10M' % ('f' * 64) in result['msg']
    assert result['memory']['source'].startswith('container ollama')
    assert result['memory']['host_available'] == 16 * GIB
    assert not fake.loaded


def test_detected_container_is_used(fake, monkeypatch):
    container = {'id': 'e' * 64, 'name': 'ollama-auto', 'cgroup': '/x', 'limit': 700 * MIB, 'usage': 100 * MIB,
                 'available': 600 * MIB, 'limited_by': '/x'}
    monkeypatch.setattr(_ollama_model.ContainerFinder, 'detect', lambda self: container)
    fake.add('tinyllama:latest')
    result = run({'name': 'tinyllama', 'state': 'loaded'})
    assert result['failed'] and 'ollama-auto' in result['msg']


def test_memory_check_false_skips_the_check(fake, monkeypatch):
    monkeypatch.setattr(_ollama_model._cgroups, 'read_meminfo', lambda path: {'MemAvailable': 1 * MIB})
    fake.add('tinyllama:latest')
    result = run({'name': 'tinyllama', 'state': 'loaded', 'memory_check': False})
    assert result['changed'] and result['loaded'] and 'memory' not in result


def test_remote_host_skips_the_host_check_with_a_warning(fake, monkeypatch):
    monkeypatch.setattr(ollama_model.ollama, 'is_local_url', lambda url: False)
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, text: warnings.append(text))
    fake.add('tinyllama:latest')
    result = run({'name': 'tinyllama', 'state': 'loaded', 'host': 'http://192.0.2.10:11434'})
    assert result['changed'] and result['memory']['checked'] is False
    assert warnings and 'memory_check skipped' in warnings[0]


def test_loaded_check_mode_changes_nothing(fake):
    fake.add('tinyllama:latest')
    result = run({'name': 'tinyllama', 'state': 'loaded'}, check=True, diff=True)
    assert result['changed'] and result['diff']['after']['loaded'] is True
    assert not fake.loaded and not fake.calls


def test_changed_variant_that_is_loaded_is_reloaded(fake):
    fake.add('llama3.2:3b')
    run(dict(VARIANT, state='loaded'))
    result = run(dict(VARIANT, state='loaded', parameters=dict(SEED_002, num_ctx=4096)))
    assert result['actions'][-1] == 'reloaded llama3.2-prod:latest (its variant changed)'
    assert not run(dict(VARIANT, state='loaded', parameters=dict(SEED_002, num_ctx=4096)))['changed']


# --- unloaded / absent / latest ----------------------------------------------------------------------

def test_unloaded(fake):
    fake.add('tinyllama:latest')
    fake.loaded['tinyllama:latest'] = 'x'
    check = run({'name': 'tinyllama', 'state': 'unloaded'}, check=True)
    assert check['changed'] and 'tinyllama:latest' in fake.loaded
    first = run({'name': 'tinyllama', 'state': 'unloaded'})
    assert first['changed'] and not first['loaded'] and first['expires_at'] is None
    assert not run({'name': 'tinyllama', 'state': 'unloaded'})['changed']


def test_unload_that_never_finishes_fails(fake, monkeypatch):
    fake.add('tinyllama:latest')
    fake.loaded['tinyllama:latest'] = 'x'
    monkeypatch.setattr(fake, 'unload', lambda name: None)
    result = run({'name': 'tinyllama', 'state': 'unloaded', 'timeout': 1})
    assert result['failed'] and 'still listed by /api/ps 1 seconds' in result['msg']


def test_absent_unloads_then_deletes(fake):
    fake.add('tinyllama:latest')
    fake.loaded['tinyllama:latest'] = 'x'
    check = run({'name': 'tinyllama', 'state': 'absent'}, check=True, diff=True)
    assert check['changed'] and check['diff']['after']['present'] is False and fake.models
    first = run({'name': 'tinyllama', 'state': 'absent'})
    assert first['changed'] and first['actions'] == ['unloaded tinyllama:latest', 'deleted tinyllama:latest']
    assert first['digest'] is None and not fake.models
    assert not run({'name': 'tinyllama', 'state': 'absent'})['changed']


def test_latest_is_changed_only_when_the_digest_changes(fake):
    fake.add('tinyllama:latest')
    assert not run({'name': 'tinyllama', 'state': 'latest'})['changed']
    fake.catalog['tinyllama:latest'] = (637700138, 'e' * 64)
    result = run({'name': 'tinyllama', 'state': 'latest'}, diff=True)
    assert result['changed'] and result['digest'] == 'e' * 64
    assert result['diff']['before']['digest'] == 'a' * 64 and result['diff']['after']['digest'] == 'e' * 64
    assert not run({'name': 'tinyllama', 'state': 'latest'})['changed']


def test_latest_check_mode(fake):
    missing = run({'name': 'tinyllama', 'state': 'latest'}, check=True)
    assert missing['changed'] and not fake.calls
    fake.add('tinyllama:latest')
    assert not run({'name': 'tinyllama', 'state': 'latest'}, check=True)['changed']
    assert not fake.calls


def test_errors_of_the_api_name_the_url(fake, monkeypatch):
    def unreachable():
        raise ollama.OllamaError('cannot reach Ollama at http://127.0.0.1:1/api/tags: [Errno 111] Connection refused',
                                 url='http://127.0.0.1:1/api/tags')
    monkeypatch.setattr(fake, 'tags', unreachable)
    result = run({'name': 'tinyllama'})
    assert result['failed'] and 'http://127.0.0.1:1/api/tags' in result['msg'] and result['url'] == 'http://127.0.0.1:1/api/tags'


def test_host_from_the_environment(fake, monkeypatch):
    seen = []
    monkeypatch.setattr(ollama_model.ollama, 'OllamaClient', lambda base_url, **kwargs: seen.append((base_url, kwargs)) or fake)
    monkeypatch.setenv('OLLAMA_HOST', '0.0.0.0:11500')
    run({'name': 'tinyllama', 'validate_certs': False, 'headers': {'Authorization': 'Bearer t'}, 'timeout': 7})
    assert seen == [('http://127.0.0.1:11500', {'timeout': 7, 'validate_certs': False, 'headers': {'Authorization': 'Bearer t'}})]


def test_docs_parse():
    import yaml  # pylint: disable=import-outside-toplevel
    from ansible_collections.sutazai.ops.plugins.doc_fragments import docker as docker_fragment  # pylint: disable=import-outside-toplevel
    doc = yaml.safe_load(ollama_model.DOCUMENTATION)
    fragment = yaml.safe_load(docker_fragment.ModuleDocFragment.PREFIXED)['options']
    spec = ollama_model.argument_spec()
    assert set(doc['options']) | set(fragment) == set(spec)
    assert set(doc['options']) == {'name', 'state', 'from', 'parameters', 'system', 'template', 'keep_alive', 'ollama_host', 'timeout',
                                   'validate_certs', 'headers', 'memory_check', 'container'}
    assert doc['options']['ollama_host']['aliases'] == spec['ollama_host']['aliases'] == ['host']
    assert 'sutazai.ops.docker.prefixed' in doc['extends_documentation_fragment']
    # state=latest cannot be predicted in check mode: partial, said so
    assert doc['attributes']['check_mode']['support'] == 'partial' and 'latest' in ' '.join(doc['attributes']['check_mode']['details'])
    assert doc['attributes']['idempotent']['support'] == 'full'
    examples = yaml.safe_load(ollama_model.EXAMPLES)
    states = {task['sutazai.ops.ollama_model'].get('state', 'present') for task in examples}
    assert states == {'present', 'latest', 'loaded', 'unloaded', 'absent'}
    assert set(yaml.safe_load(ollama_model.RETURN)) >= {'model', 'digest', 'size', 'loaded', 'expires_at', 'parameters', 'actions'}


@pytest.mark.parametrize('option', ['ollama_host', 'host'])
def test_ollama_host_and_its_alias_host(fake, monkeypatch, option):
    seen = []
    monkeypatch.setattr(ollama_model.ollama, 'OllamaClient', lambda base_url, **kwargs: seen.append(base_url) or fake)
    monkeypatch.setenv('OLLAMA_HOST', '192.0.2.1:1')
    fake.add('tinyllama:latest')
    result = run({'name': 'tinyllama', option: '127.0.0.1:11500'})
    assert not result['failed'], result
    assert seen == ['http://127.0.0.1:11500']


def test_without_ollama_host_or_environment_the_one_default_is_used(fake, monkeypatch):
    seen = []
    monkeypatch.setattr(ollama_model.ollama, 'OllamaClient', lambda base_url, **kwargs: seen.append(base_url) or fake)
    monkeypatch.delenv('OLLAMA_HOST', raising=False)
    run({'name': 'tinyllama'})
    assert seen == [ollama.DEFAULT_HOST]


def test_bad_ollama_host_scheme_is_refused(fake):
    result = run({'name': 'tinyllama', 'ollama_host': 'ftp://x'})
    assert result['failed'] and 'the scheme must be http or https' in result['msg']


def test_docker_options_reach_the_container_lookup(fake, monkeypatch):
    for variable in ('DOCKER_HOST', 'DOCKER_TLS', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_TIMEOUT', 'DOCKER_API_VERSION'):
        monkeypatch.delenv(variable, raising=False)
    made = []

    def create_client(options=None, environ=None):
        made.append(options)
        raise OSError('refused')
    monkeypatch.setattr(_ollama_model._docker, 'create_client', create_client)  # pylint: disable=protected-access
    fake.add('tinyllama:latest')
    result = run({'name': 'tinyllama', 'state': 'loaded', 'container': 'ollama', 'docker_host': 'unix:///run/other.sock',
                  'docker_timeout': 9, 'timeout': 30})
    assert result['failed']
    assert result['msg'] == "cannot inspect the Ollama container 'ollama' with the Docker engine at unix:///run/other.sock: refused"
    assert made == [{'docker_host': 'unix:///run/other.sock', 'tls': None, 'validate_certs': None, 'ca_path': None, 'client_cert': None,
                     'client_key': None, 'timeout': 9, 'api_version': None}]
    assert fake.calls == []  # refused before anything was pulled or loaded


def test_diff_is_built_by_the_shared_difference_tracker(fake, monkeypatch):
    used = []

    class Recording(_ollama_model.DifferenceTracker):
        def get_before_after(self, only_changed=False):
            used.append(only_changed)
            return super().get_before_after(only_changed)
    monkeypatch.setattr(_ollama_model, 'DifferenceTracker', Recording)
    result = run({'name': 'tinyllama'}, diff=True)
    assert used == [False]
    assert result['diff'] == {'before': {'model': 'tinyllama:latest', 'present': False, 'digest': None, 'loaded': False, 'parameters': {}},
                              'after': {'model': 'tinyllama:latest', 'present': True, 'digest': 'a' * 64, 'loaded': False, 'parameters': {}}}


def test_the_logic_runs_from_a_plain_dict_without_ansible(fake):
    """What the monitor daemon will do: OllamaModel from module_utils, failures as OllamaModelError, no AnsibleModule."""
    params = {name: option.get('default') for name, option in ollama_model.argument_spec().items()}
    params.update(name='tinyllama', state='present')
    warnings = []
    result = _ollama_model.OllamaModel(params, fake, warn=warnings.append).run()
    assert result['changed'] is True and result['actions'] == ['pulled tinyllama:latest']
    with pytest.raises(_ollama_model.OllamaModelError) as caught:
        _ollama_model.OllamaModel(dict(params, name='no/such:model'), fake).run()
    assert 'file does not exist' in caught.value.msg and caught.value.result['url'].endswith('/api/pull')
    with open(_ollama_model.__file__, encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert [name for name in imported if name.split('.')[0] == 'ansible'] == []


# ---------------------------------------------------------------- one ollama_host, one Docker option set, in both modules

def _memory_guard_clients(monkeypatch, tmp_path, args):
    """Run memory_guard (act=false) with `args`; the Ollama base URL and Docker options it built its clients from."""
    from ansible_collections.sutazai.ops.plugins.module_utils import _docker  # pylint: disable=import-outside-toplevel
    from ansible_collections.sutazai.ops.plugins.modules import memory_guard  # pylint: disable=import-outside-toplevel
    seen = {}

    class Ollama:
        def __init__(self, host=None, **_kwargs):
            seen['ollama'] = host

        def ps(self):
            return []

    def create_client(options=None, environ=None):
        seen['docker'] = dict(options)
        raise OSError('no engine here')
    monkeypatch.setattr(memory_guard, 'OllamaClient', Ollama)
    monkeypatch.setattr(_docker, 'create_client', create_client)
    patch_module_exits(monkeypatch)
    result = run_main(memory_guard.main, dict({'act': False, 'state_file': str(tmp_path / 'guard.json')}, **args))
    assert not result['failed'], result.get('msg')
    return seen, result


def test_both_modules_fall_back_to_ollama_host_the_same_way(fake, monkeypatch, tmp_path):
    monkeypatch.setenv('OLLAMA_HOST', '0.0.0.0:11500')
    seen_model = []
    monkeypatch.setattr(ollama_model.ollama, 'OllamaClient', lambda base_url, **kwargs: seen_model.append(base_url) or fake)
    run({'name': 'tinyllama'})
    seen_guard, _result = _memory_guard_clients(monkeypatch, tmp_path, {'docker_host': ''})
    assert seen_model == ['http://127.0.0.1:11500'] and seen_guard == {'ollama': 'http://127.0.0.1:11500'}
    monkeypatch.delenv('OLLAMA_HOST')
    seen_guard, _result = _memory_guard_clients(monkeypatch, tmp_path, {'docker_host': ''})
    assert seen_guard['ollama'] == ollama.DEFAULT_HOST


def test_memory_guard_docker_options_and_an_unreachable_engine_is_a_warning(monkeypatch, tmp_path):
    for variable in ('DOCKER_HOST', 'DOCKER_TLS', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_TIMEOUT', 'DOCKER_API_VERSION'):
        monkeypatch.delenv(variable, raising=False)
    seen, result = _memory_guard_clients(monkeypatch, tmp_path, {'ollama_host': '', 'docker_host': 'tcp://192.0.2.5:2376',
                                                                 'docker_validate_certs': True, 'docker_timeout': 5})
    assert 'ollama' not in seen  # '' leaves models out
    assert seen['docker'] == {'docker_host': 'tcp://192.0.2.5:2376', 'tls': None, 'validate_certs': True, 'ca_path': None,
                              'client_cert': None, 'client_key': None, 'timeout': 5, 'api_version': None}
    assert any('Docker engine at tcp://192.0.2.5:2376 (TLS, certificate checked) not reachable (no engine here)' in w
               for w in result['warnings'])
