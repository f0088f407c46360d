"""Unit tests of the one Docker client (module_utils/_docker.py) and of the rule that plugins import no other collection's code.

The settings are resolved from plain dicts and a given environment, as the monitor daemon will call them; the
clients are the docker SDK's real ones (made with an api_version, so nothing is asked of an engine), and the
last tests talk to this machine's engine when its socket is there.
"""

import ast
import os
import re

import docker
import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _docker

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
SOCKET = '/var/run/docker.sock'


def cert_dir(tmp_path, names=('ca.pem', 'cert.pem', 'key.pem')):
    for name in names:
        (tmp_path / name).write_text('-----BEGIN CERTIFICATE-----\n')
    return str(tmp_path)


def test_defaults_without_environment(tmp_path):
    resolved = _docker.settings({}, environ={}, home=str(tmp_path))
    assert resolved == {'docker_host': 'unix:///var/run/docker.sock', 'tls': False, 'validate_certs': False, 'ca_path': None,
                        'client_cert': None, 'client_key': None, 'timeout': 60, 'api_version': 'auto'}


def test_environment_is_read_as_the_docker_cli_reads_it(tmp_path):
    environ = {'DOCKER_HOST': 'tcp://192.0.2.5:2376', 'DOCKER_TLS_VERIFY': '1', 'DOCKER_CERT_PATH': cert_dir(tmp_path),
               'DOCKER_TIMEOUT': '15', 'DOCKER_API_VERSION': '1.41'}
    resolved = _docker.settings({}, environ=environ)
    assert resolved == {'docker_host': 'tcp://192.0.2.5:2376', 'tls': True, 'validate_certs': True,
                        'ca_path': str(tmp_path / 'ca.pem'), 'client_cert': str(tmp_path / 'cert.pem'),
                        'client_key': str(tmp_path / 'key.pem'), 'timeout': 15, 'api_version': '1.41'}


@pytest.mark.parametrize('value, verify', [('1', True), ('0', True), ('yes', True), ('', False)])
def test_docker_tls_verify_any_non_empty_value_is_on(tmp_path, value, verify):
    # the docker CLI: os.Getenv("DOCKER_TLS_VERIFY") != ""
    resolved = _docker.settings({}, environ={'DOCKER_TLS_VERIFY': value}, home=str(tmp_path))
    assert resolved['validate_certs'] is verify and resolved['tls'] is verify


def test_docker_tls_without_verify_and_certificates_from_home(tmp_path):
    (tmp_path / '.docker').mkdir()
    cert_dir(tmp_path / '.docker', names=('cert.pem', 'key.pem'))
    resolved = _docker.settings({}, environ={'DOCKER_TLS': '1'}, home=str(tmp_path))
    assert resolved['tls'] is True and resolved['validate_certs'] is False
    # ca.pem does not exist, so it is left out, as the docker CLI leaves it out
    assert resolved['ca_path'] is None and resolved['client_cert'] == str(tmp_path / '.docker' / 'cert.pem')


def test_certificate_files_are_not_used_without_tls(tmp_path):
    resolved = _docker.settings({}, environ={'DOCKER_CERT_PATH': cert_dir(tmp_path)})
    assert resolved['tls'] is False and resolved['ca_path'] is None and resolved['client_cert'] is None


def test_options_win_over_the_environment(tmp_path):
    environ = {'DOCKER_HOST': 'tcp://192.0.2.5:2376', 'DOCKER_TLS_VERIFY': '1', 'DOCKER_TIMEOUT': '15'}
    options = {'docker_host': 'unix:///run/other.sock', 'validate_certs': False, 'tls': False, 'timeout': 5, 'api_version': '1.40'}
    resolved = _docker.settings(options, environ=environ, home=str(tmp_path))
    assert (resolved['docker_host'], resolved['tls'], resolved['validate_certs'], resolved['timeout'], resolved['api_version']) == \
        ('unix:///run/other.sock', False, False, 5, '1.40')


@pytest.mark.parametrize('options, environ, message', [
    ({'ca_path': '/nonexistent/ca.pem'}, {}, 'ca_path: /nonexistent/ca.pem is not a file'),
    ({'timeout': 0}, {}, 'timeout 0 must be a positive number of seconds'),
    ({}, {'DOCKER_TIMEOUT': 'soon'}, "DOCKER_TIMEOUT 'soon' is not a number of seconds"),
    ({'docker_host': ' '}, {}, 'docker_host is empty'),
])
def test_bad_settings_are_refused_with_the_reason(tmp_path, options, environ, message):
    with pytest.raises(_docker.DockerSetupError, match=message):
        _docker.settings(options, environ=environ, home=str(tmp_path))


def test_a_client_certificate_needs_its_key(tmp_path):
    cert_dir(tmp_path, names=('cert.pem',))
    with pytest.raises(_docker.DockerSetupError, match='client_cert is .* but client_key is missing'):
        _docker.settings({'tls': True, 'client_cert': str(tmp_path / 'cert.pem')}, environ={})


def test_client_from_a_plain_dict_with_tls(tmp_path):
    environ = {'DOCKER_CERT_PATH': cert_dir(tmp_path)}
    client = _docker.create_client({'docker_host': 'tcp://192.0.2.5:2376', 'validate_certs': True, 'api_version': '1.41',
                                    'timeout': 7}, environ=environ)
    try:
        assert isinstance(client, docker.DockerClient)
        assert client.api.base_url == 'https://192.0.2.5:2376'
        assert client.api.verify == str(tmp_path / 'ca.pem')
        assert client.api.cert == (str(tmp_path / 'cert.pem'), str(tmp_path / 'key.pem'))
        assert client.api.timeout == 7 and client.api.api_version == '1.41'
    finally:
        client.close()


@pytest.mark.parametrize('options, expected', [
    ({'validate_certs': True}, 'ca'),     # the engine's CA, not the bundle REQUESTS_CA_BUNDLE names
    ({'tls': True}, False),               # TLS without checking stays unchecked
])
def test_requests_ca_bundle_does_not_replace_the_engines_ca(tmp_path, monkeypatch, options, expected):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/etc/ssl/certs/ca-certificates.crt')
    monkeypatch.setenv('CURL_CA_BUNDLE', '/etc/ssl/certs/ca-certificates.crt')
    environ = {'DOCKER_CERT_PATH': cert_dir(tmp_path)}
    client = _docker.create_client(dict(options, docker_host='tcp://192.0.2.5:2376', api_version='1.41'), environ=environ)
    try:
        merged = client.api.merge_environment_settings('https://192.0.2.5:2376/v1.41/version', {}, False, None, None)
        assert merged['verify'] == (str(tmp_path / 'ca.pem') if expected == 'ca' else expected)
    finally:
        client.close()


def test_client_with_tls_not_verified(tmp_path):
    client = _docker.create_client({'docker_host': 'tcp://192.0.2.5:2376', 'tls': True, 'api_version': '1.41'}, environ={})
    try:
        assert client.api.base_url == 'https://192.0.2.5:2376' and client.api.verify is False
    finally:
        client.close()


def test_prefixed_argument_spec_for_modules_that_talk_to_another_service_too():
    plain = _docker.argument_spec()
    prefixed = _docker.argument_spec('docker_')
    assert set(plain) == set(_docker.OPTION_NAMES)
    assert set(prefixed) == {'docker_host'} | {'docker_' + name for name in _docker.OPTION_NAMES if name != 'docker_host'}
    # no Ansible defaults: "not given" must reach settings() as None, so the environment can apply
    assert all('default' not in option for option in list(plain.values()) + list(prefixed.values()))
    params = {'docker_host': 'unix:///x.sock', 'docker_timeout': 9, 'timeout': 120, 'validate_certs': True}
    assert _docker.options_from(params, 'docker_') == {'docker_host': 'unix:///x.sock', 'tls': None, 'validate_certs': None,
                                                       'ca_path': None, 'client_cert': None, 'client_key': None, 'timeout': 9,
                                                       'api_version': None}


def test_doc_fragment_documents_the_options_of_both_specs():
    import yaml  # pylint: disable=import-outside-toplevel
    from ansible_collections.sutazai.ops.plugins.doc_fragments import docker as fragment  # pylint: disable=import-outside-toplevel
    for text, spec in ((fragment.ModuleDocFragment.DOCUMENTATION, _docker.argument_spec()),
                       (fragment.ModuleDocFragment.PREFIXED, _docker.argument_spec('docker_'))):
        options = yaml.safe_load(text)['options']
        assert set(options) == set(spec)
        for name, option in spec.items():
            assert options[name]['type'] == option['type'], name
            assert sorted(options[name].get('aliases', [])) == sorted(option.get('aliases', [])), name
            assert 'default' not in options[name], name


@pytest.mark.skipif(not os.access(SOCKET, os.R_OK | os.W_OK), reason='no Docker engine on this machine')
def test_client_reaches_this_machines_engine_and_posts_json(monkeypatch):
    monkeypatch.delenv('DOCKER_HOST', raising=False)
    client = _docker.create_client({})
    try:
        assert client.ping() is True
        with pytest.raises(docker.errors.NotFound) as caught:
            _docker.post_json(client.api, '/containers/{0}/update', {'NanoCpus': 10 ** 9}, 'sutazai-hb-no-such-container')
        assert 'sutazai-hb-no-such-container' in _docker.error_message(caught.value)
    finally:
        client.close()


# ---------------------------------------------------------------- no private imports of other collections

def _python_files(top):
    for directory, _dirs, files in os.walk(top):
        for name in files:
            if name.endswith('.py'):
                yield os.path.join(directory, name)


def _fragments(documentation):
    """The extends_documentation_fragment entries of a DOCUMENTATION string (read as text, so a YAML slip elsewhere does not hide them)."""
    fragments = []
    inside = False
    for line in documentation.splitlines():
        if line.startswith('extends_documentation_fragment:'):
            inside = True
            rest = line.split(':', 1)[1].strip()
            if rest.startswith('['):
                return [item.strip() for item in rest.strip('[]').split(',') if item.strip()]
            if rest:
                return [rest]
            continue
        if inside:
            match = re.match(r'^\s+-\s+(\S+)', line)
            if match:
                fragments.append(match.group(1).strip('\'"'))
            elif line.strip() and not line.startswith(' '):
                break
    return fragments


def foreign_references(path):
    """Imports of another collection's code and doc fragments of another collection used by one file: [(line, text)]."""
    with open(path, encoding='utf-8') as handle:
        source = handle.read()
    found = []
    tree = ast.parse(source, path)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.startswith('ansible_collections.') and not name.startswith('ansible_collections.sutazai.ops.'):
                found.append((node.lineno, 'import of %s' % name))
    for name in ('DOCUMENTATION',):
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == name for t in node.targets) \
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                for fragment in _fragments(node.value.value):
                    if not fragment.startswith('sutazai.ops.') and '.' in fragment:
                        found.append((node.lineno, 'doc fragment %s' % fragment))
    return found


def test_the_scan_sees_a_foreign_import_and_fragment(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('DOCUMENTATION = r"""\nmodule: x\nextends_documentation_fragment:\n  - sutazai.ops.attributes\n'
                   '  - community.docker.docker.api_documentation\n"""\n'
                   'from ansible_collections.community.docker.plugins.module_utils.common_api import AnsibleDockerClient\n'
                   'import ansible_collections.community.general.plugins.module_utils.x\n')
    assert [text for _line, text in foreign_references(str(bad))] == [
        'import of ansible_collections.community.docker.plugins.module_utils.common_api',
        'import of ansible_collections.community.general.plugins.module_utils.x',
        'doc fragment community.docker.docker.api_documentation']


def test_plugins_import_no_other_collections_code_or_doc_fragments():
    offenders = ['%s:%d: %s' % (os.path.relpath(path, ROOT), line, text)
                 for path in sorted(_python_files(os.path.join(ROOT, 'plugins')))
                 for line, text in foreign_references(path)]
    assert offenders == []


# ---------------------------------------------------------------- dependency ranges say what is tested

def _installed_version(namespace, name):
    """The version of the collection the tests import (its MANIFEST.json or galaxy.yml), or None."""
    import importlib  # pylint: disable=import-outside-toplevel
    import json  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel
    try:
        package = importlib.import_module('ansible_collections.%s.%s' % (namespace, name))
    except ImportError:
        return None
    for directory in list(getattr(package, '__path__', [])):
        manifest = os.path.join(directory, 'MANIFEST.json')
        if os.path.isfile(manifest):
            with open(manifest, encoding='utf-8') as handle:
                return json.load(handle)['collection_info']['version']
        galaxy = os.path.join(directory, 'galaxy.yml')
        if os.path.isfile(galaxy):
            with open(galaxy, encoding='utf-8') as handle:
                return yaml.safe_load(handle)['version']
    return None


def _satisfies(version, spec):
    def key(text):
        return tuple(int(part) for part in text.split('.')[:3])
    operators = {'>=': lambda a, b: a >= b, '<': lambda a, b: a < b, '<=': lambda a, b: a <= b, '>': lambda a, b: a > b,
                 '==': lambda a, b: a == b}
    for clause in spec.split(','):
        clause = clause.strip()
        operator = next(op for op in ('>=', '<=', '==', '>', '<') if clause.startswith(op))
        if not operators[operator](key(version), key(clause[len(operator):].strip())):
            return False
    return True


def test_dependency_ranges_agree_have_an_upper_bound_and_hold_the_tested_versions():
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.path.join(ROOT, 'galaxy.yml'), encoding='utf-8') as handle:
        galaxy = yaml.safe_load(handle)['dependencies']
    with open(os.path.join(ROOT, 'requirements.yml'), encoding='utf-8') as handle:
        requirements = {item['name']: item['version'] for item in yaml.safe_load(handle)['collections']}
    assert galaxy == requirements
    for collection, spec in galaxy.items():
        # a major version nobody has run the tests with is not promised
        assert '<' in spec, '%s: %s has no upper bound' % (collection, spec)
        installed = _installed_version(*collection.split('.'))
        if installed is not None:
            assert _satisfies(installed, spec), '%s %s (the one tested) is outside %s' % (collection, installed, spec)
            lowest = spec.split(',')[0].strip()
            assert lowest.startswith('>=') and _satisfies(installed, lowest), spec
    assert _satisfies('4.8.5', galaxy['community.docker']) and _satisfies('5.2.2', galaxy['community.docker'])
    assert not _satisfies('3.10.0', galaxy['community.docker'])
