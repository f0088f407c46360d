# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way sutazai.ops reaches a Docker engine. PRIVATE to the collection: no compatibility promise.

Plain Python with no Ansible import: the modules build their client here from their params, and the
monitor daemon builds its own from a plain dict, so both read the same options the same way.

The options (documented once, in the doc fragment sutazai.ops.docker; `argument_spec()` gives them to
each module):
  docker_host     unix:///var/run/docker.sock, tcp://host:2376, ssh://user@host; env DOCKER_HOST
  tls             talk TLS without checking the engine's certificate; env DOCKER_TLS
  validate_certs  talk TLS and check the engine's certificate (implies tls); env DOCKER_TLS_VERIFY
  ca_path         CA certificate; default DOCKER_CERT_PATH/ca.pem (else ~/.docker/ca.pem) when it exists
  client_cert     client certificate; default DOCKER_CERT_PATH/cert.pem (else ~/.docker/cert.pem) when it exists
  client_key      client key; default DOCKER_CERT_PATH/key.pem (else ~/.docker/key.pem) when it exists
  timeout         seconds per API call; env DOCKER_TIMEOUT, default 60
  api_version     the API version to speak, or `auto` to ask the engine; env DOCKER_API_VERSION
The environment is read as the docker CLI reads it: DOCKER_TLS_VERIFY or DOCKER_TLS set to any
non-empty value (even 0) turns them on, and a certificate file of DOCKER_CERT_PATH that does not
exist is left out. An option given (not None) wins over the environment.

The docker SDK (7.x) is imported lazily, so importing this file never fails; `create_client` raises
DockerSetupError (with the import error) when the SDK is missing.
"""

import json
import os
import urllib.parse

try:
    import docker
    import docker.constants
    import docker.errors
    import docker.tls
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - depends on the host
    docker = None
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = str(_exc)

DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock'
DEFAULT_TIMEOUT = 60
DEFAULT_API_VERSION = 'auto'
CERT_FILES = {'ca_path': 'ca.pem', 'client_cert': 'cert.pem', 'client_key': 'key.pem'}
OPTION_NAMES = ('docker_host', 'tls', 'validate_certs', 'ca_path', 'client_cert', 'client_key', 'timeout', 'api_version')


class DockerSetupError(Exception):
    """The options cannot make a client (SDK missing, a certificate file missing, a bad value); the message says which."""


def argument_spec(prefix=''):
    """The Docker options of a module's argument_spec (plain dicts; defaults are applied by `settings`, not by Ansible).

    No option has an Ansible default, so `settings` can tell "not given" (None: environment, then default)
    from a value the task gave. A module that also talks to another service (memory_guard, ollama_model)
    passes prefix='docker_' so `timeout` and `validate_certs` stay that service's: its options are then
    docker_host, docker_tls, docker_validate_certs, ... (docker_host is docker_host either way).
    """
    spec = {
        'docker_host': {'type': 'str', 'aliases': ['docker_url']},
        'tls': {'type': 'bool'},
        'validate_certs': {'type': 'bool', 'aliases': ['tls_verify']},
        'ca_path': {'type': 'path', 'aliases': ['ca_cert', 'tls_ca_cert']},
        'client_cert': {'type': 'path', 'aliases': ['tls_client_cert', 'cert_path']},
        'client_key': {'type': 'path', 'aliases': ['tls_client_key', 'key_path']},
        'timeout': {'type': 'int'},
        'api_version': {'type': 'str', 'aliases': ['docker_api_version']},
    }
    if not prefix:
        return spec
    return {_prefixed(name, prefix): {'type': option['type']} if name != 'docker_host' else dict(option)
            for name, option in spec.items()}


def _prefixed(name, prefix):
    return name if name == 'docker_host' else prefix + name


def options_from(params, prefix=''):
    """The options dict `settings` / `create_client` take, from a module's params made with argument_spec(prefix)."""
    return {name: params.get(_prefixed(name, prefix)) for name in OPTION_NAMES}


def _env_flag(environ, name):
    """The docker CLI's reading of DOCKER_TLS / DOCKER_TLS_VERIFY: set to anything non-empty means on."""
    return bool((environ.get(name) or '').strip())


def settings(options, environ=None, home=None):
    """The resolved connection settings for `options` (a dict with any of OPTION_NAMES; missing or None = not given).

    Returns a dict: docker_host, tls (bool), validate_certs (bool), ca_path, client_cert, client_key (paths or
    None), timeout (int), api_version (str). Raises DockerSetupError for a value that cannot work.
    """
    environ = os.environ if environ is None else environ
    options = options or {}

    def given(name):
        return options.get(name)

    host = given('docker_host')
    if host is None:
        host = (environ.get('DOCKER_HOST') or '').strip() or DEFAULT_DOCKER_HOST
    host = host.strip()
    if not host:
        raise DockerSetupError('docker_host is empty; give the engine address such as %s' % DEFAULT_DOCKER_HOST)
    verify = given('validate_certs')
    if verify is None:
        verify = _env_flag(environ, 'DOCKER_TLS_VERIFY')
    tls = given('tls')
    if tls is None:
        tls = _env_flag(environ, 'DOCKER_TLS')
    tls = bool(tls or verify)
    cert_dir = (environ.get('DOCKER_CERT_PATH') or '').strip() or os.path.join(home or os.path.expanduser('~'), '.docker')
    files = {}
    for name, file_name in CERT_FILES.items():
        value = given(name)
        if value is not None:
            if not os.path.isfile(value):
                raise DockerSetupError('%s: %s is not a file' % (name, value))
            files[name] = value
        else:
            default = os.path.join(cert_dir, file_name)
            files[name] = default if tls and os.path.isfile(default) else None
    if bool(files['client_cert']) != bool(files['client_key']):
        given_one = 'client_cert' if files['client_cert'] else 'client_key'
        raise DockerSetupError('%s is %s but %s is missing: a client certificate needs its key and the key its certificate'
                               % (given_one, files[given_one], 'client_key' if given_one == 'client_cert' else 'client_cert'))
    timeout = given('timeout')
    if timeout is None:
        text = (environ.get('DOCKER_TIMEOUT') or '').strip()
        try:
            timeout = int(text) if text else DEFAULT_TIMEOUT
        except ValueError:
            raise DockerSetupError('DOCKER_TIMEOUT %r is not a number of seconds' % text) from None
    if int(timeout) <= 0:
        raise DockerSetupError('timeout %r must be a positive number of seconds' % (timeout,))
    version = given('api_version')
    if version is None:
        version = (environ.get('DOCKER_API_VERSION') or '').strip() or DEFAULT_API_VERSION
    return {'docker_host': host, 'tls': tls, 'validate_certs': bool(verify), 'ca_path': files['ca_path'],
            'client_cert': files['client_cert'], 'client_key': files['client_key'], 'timeout': int(timeout),
            'api_version': version}


def tls_config(resolved):
    """The SDK's TLSConfig for resolved settings, or None without TLS."""
    if not resolved['tls']:
        return None
    client_cert = (resolved['client_cert'], resolved['client_key']) if resolved['client_cert'] else None
    verify = resolved['validate_certs']
    return docker.tls.TLSConfig(client_cert=client_cert, ca_cert=resolved['ca_path'] if verify else None, verify=verify)


def create_client(options=None, environ=None):
    """A docker.DockerClient built from `options` (module params or the daemon's config dict) and the environment.

    With api_version `auto` the SDK asks the engine for its version here, so an unreachable engine raises
    (docker.errors.DockerException). Raises DockerSetupError when the SDK is missing or an option is wrong.
    """
    if not HAS_DOCKER:
        raise DockerSetupError('the Docker SDK for Python (docker) is not installed: %s' % DOCKER_IMPORT_ERROR)
    resolved = settings(options, environ)
    version = resolved['api_version']
    if resolved['tls'] and version == 'auto':
        # the SDK would ask the engine for its version while it builds the client, before _keep_tls_verification
        # can apply: ask it with a client that has it applied, then build the client for that version
        probe = _client(resolved, docker.constants.MINIMUM_DOCKER_API_VERSION)
        try:
            version = probe.api.version(api_version=False)['ApiVersion']
        except Exception as exc:  # pylint: disable=broad-exception-caught
            raise docker.errors.DockerException('Error while fetching server API version: %s' % exc) from None
        finally:
            probe.close()
    return _client(resolved, version)


def _client(resolved, version):
    try:
        client = docker.DockerClient(base_url=resolved['docker_host'], version=version, timeout=resolved['timeout'],
                                     tls=tls_config(resolved))
    except docker.errors.TLSParameterError as exc:
        raise DockerSetupError('TLS settings for %s: %s' % (resolved['docker_host'], exc)) from None
    if resolved['tls']:
        _keep_tls_verification(client.api)
    return client


def _keep_tls_verification(api):
    """Make the APIClient check the engine's certificate as configured, whatever REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE say.

    requests lets those variables replace a session's CA file (and turn checking on for a session that has it off),
    so with them set - as many hosts have - the engine's own CA would be ignored and its certificate refused. The
    docker CLI does not read them; proxies from the environment are still used, as the docker CLI uses them.
    """
    if api.verify is True:  # the system's CAs: the variables name those anyway
        return
    merge = api.merge_environment_settings

    def merge_keeping_verify(url, proxies, stream, verify, cert):
        merged = merge(url, proxies, stream, verify, cert)
        merged['verify'] = api.verify
        return merged
    api.merge_environment_settings = merge_keeping_verify


def describe(options=None, environ=None):
    """A one-line account of where the client connects, for messages (no secrets: paths only)."""
    try:
        resolved = settings(options, environ)
    except DockerSetupError as exc:
        return str(exc)
    text = resolved['docker_host']
    if resolved['tls']:
        text += ' (TLS%s)' % (', certificate checked' if resolved['validate_certs'] else ', certificate not checked')
    return text


def post_json(api, path, body, *path_args):
    """POST a JSON body to an engine endpoint through the SDK's APIClient; the decoded JSON answer (or None).

    For endpoints whose fields the SDK's own methods do not send (NanoCpus and PidsLimit of
    /containers/{id}/update). Errors are the SDK's (docker.errors.APIError / NotFound).
    """
    quoted = [urllib.parse.quote(str(arg), safe='') for arg in path_args]
    url = '%s/v%s%s' % (api.base_url, api.api_version, path.format(*quoted))
    response = api.post(url, data=json.dumps(body), headers={'Content-Type': 'application/json'}, timeout=api.timeout)
    try:
        response.raise_for_status()
    except Exception as exc:  # pylint: disable=broad-exception-caught  # requests.HTTPError
        docker.errors.create_api_error_from_http_exception(exc)  # raises the SDK's APIError / NotFound
        raise
    if not response.content:
        return None
    return response.json()


def error_message(exc):
    """What the engine said (an APIError's explanation), else the exception's text."""
    return getattr(exc, 'explanation', None) or str(exc)
