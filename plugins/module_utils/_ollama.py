# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client of the Ollama HTTP API and the rules of its names, keep_alive and parameters.

PRIVATE to the collection: no compatibility promise to anything outside sutazai.ops.

Plain Python (urllib, json) with no Ansible import: the `ollama_model` module and the memory
guard daemon share it, and the daemon runs on hosts without Ansible. It follows the API
contract of the collection (``OLLAMA_API.md``, read from Ollama's own source):

- ``OllamaClient``: tags, ps, show, pull (NDJSON stream), delete, create, load, unload, version;
  a 503 ("server busy") is retried with a bounded exponential backoff.
- ``normalize_name``: the model name rules (default registry and ``library/`` dropped,
  tag split only after the last ``/``, case-insensitive matching, part validation).
- ``validate_keep_alive``: a JSON number is seconds; a string must be a Go duration.
- ``parse_show_parameters`` / ``parameters_equal`` / ``coerce_parameters``: the ``parameters``
  string of ``/api/show`` (Go ``%-30s %#v`` lines) and comparison with desired values.
- ``resolve_host`` / ``host_from_env`` / ``parse_host``: the forms of ``OLLAMA_HOST`` (one default, ``DEFAULT_HOST``).
"""

import ast
import http.client
import json
import math
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_HOST = 'http://127.0.0.1:11434'
DEFAULT_PORT = 11434
DEFAULT_REGISTRY = 'registry.ollama.ai'
DEFAULT_NAMESPACE = 'library'
DEFAULT_TAG = 'latest'
MAX_PART_LENGTH = 80

# Parameters of /api/create `parameters` and request `options`, with the type Ollama gives them.
RUNTIME_PARAMETERS = {
    'num_keep': 'int', 'seed': 'int', 'num_predict': 'int', 'top_k': 'int', 'top_p': 'float',
    'min_p': 'float', 'typical_p': 'float', 'repeat_last_n': 'int', 'temperature': 'float',
    'repeat_penalty': 'float', 'presence_penalty': 'float', 'frequency_penalty': 'float', 'stop': 'list',
}
# Changing one of these makes Ollama reload the model.
LOAD_PARAMETERS = {
    'num_ctx': 'int', 'num_batch': 'int', 'num_gpu': 'int', 'main_gpu': 'int', 'use_mmap': 'bool', 'num_thread': 'int',
}
PARAMETER_TYPES = dict(RUNTIME_PARAMETERS, **LOAD_PARAMETERS)
VALID_PARAMETERS = tuple(sorted(PARAMETER_TYPES))
REMOVED_PARAMETERS = ('tfs_z', 'mirostat', 'mirostat_eta', 'mirostat_tau', 'penalize_newline', 'low_vram', 'f16_kv',
                      'logits_all', 'vocab_only', 'use_mlock')

_PART_RE = re.compile(r'^[A-Za-z0-9_.-]+$')
_HOST_RE = re.compile(r'^[A-Za-z0-9_.-]+(:[0-9]+)?$')
_GO_DURATION_RE = re.compile(r'^[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+$')
_GO_UNITS = {'ns': 1e-9, 'us': 1e-6, '\u00b5s': 1e-6, '\u03bcs': 1e-6, 'ms': 1e-3, 's': 1.0, 'm': 60.0, 'h': 3600.0}
_NUMBER_RE = re.compile(r'^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$')
_BUSY_STATUS = 503


class OllamaError(Exception):
    """A failed call to the Ollama API: the message, the HTTP status (None when unreachable) and the URL."""

    def __init__(self, message, status=None, url=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url

    def __str__(self):
        if self.status is None:
            return '%s (%s)' % (self.message, self.url) if self.url and self.url not in self.message else self.message
        return '%s (HTTP %s from %s)' % (self.message, self.status, self.url)


class ModelNameError(ValueError):
    """A model name that breaks the naming rules; the message names the value and the rule."""


class KeepAliveError(ValueError):
    """A keep_alive value the API would refuse; the message suggests a valid form."""


class ParameterError(ValueError):
    """An unknown parameter name or a value of the wrong type; the message lists what is valid."""


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

class ModelName:
    """A parsed model name: host, namespace, model, tag.

    `display` is the shortest form that names the same model (always with a tag);
    `key` is the case-folded full form, for matching.
    """

    __slots__ = ('host', 'namespace', 'model', 'tag')

    def __init__(self, host, namespace, model, tag):
        self.host = host
        self.namespace = namespace
        self.model = model
        self.tag = tag

    @property
    def display(self):
        """The shortest display form: `tinyllama:latest`, `user/model:tag`, `hf.co/user/repo:Q4_K_M`."""
        if self.host.lower() != DEFAULT_REGISTRY:
            prefix = '%s/%s/' % (self.host, self.namespace)
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = '%s/' % self.namespace
        else:
            prefix = ''
        return '%s%s:%s' % (prefix, self.model, self.tag)

    @property
    def full(self):
        """host/namespace/model:tag."""
        return '%s/%s/%s:%s' % (self.host, self.namespace, self.model, self.tag)

    @property
    def key(self):
        """The case-folded full form: two names are the same model when their keys are equal."""
        return self.full.lower()

    def __eq__(self, other):
        return isinstance(other, ModelName) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return 'ModelName(%r)' % self.display

    def __str__(self):
        return self.display


def parse_name(name):
    """Parse a model name into a ModelName; raise ModelNameError naming the value and the rule broken."""
    if not isinstance(name, str) or not name.strip():
        raise ModelNameError('model name %r is empty or not a string' % (name,))
    text = name.strip()
    last_slash = text.rfind('/')
    colon = text.rfind(':')
    if colon > last_slash:
        rest, tag = text[:colon], text[colon + 1:]
        if not tag:
            raise ModelNameError('model name %r has an empty tag after ":"' % name)
    else:
        rest, tag = text, DEFAULT_TAG
    parts = rest.split('/')
    if len(parts) > 3:
        raise ModelNameError('model name %r has %d parts separated by "/"; at most 3 (host/namespace/model) are allowed' % (name, len(parts)))
    if len(parts) == 3:
        host, namespace, model = parts
    elif len(parts) == 2:
        host, (namespace, model) = DEFAULT_REGISTRY, parts
    else:
        host, namespace, model = DEFAULT_REGISTRY, DEFAULT_NAMESPACE, parts[0]
    for kind, value in (('host', host), ('namespace', namespace), ('model', model), ('tag', tag)):
        if not value:
            raise ModelNameError('model name %r has an empty %s part' % (name, kind))
        if len(value) > MAX_PART_LENGTH:
            raise ModelNameError('model name %r: the %s part %r is longer than %d characters' % (name, kind, value, MAX_PART_LENGTH))
        pattern = _HOST_RE if kind == 'host' else _PART_RE
        if not pattern.match(value):
            raise ModelNameError('model name %r: the %s part %r may hold only letters, digits, "_", "-" and "."%s'
                                 % (name, kind, value, ' (and a ":port")' if kind == 'host' else ''))
    return ModelName(host, namespace, model, tag)


def normalize_name(name):
    """The shortest display form of a model name (`library/tinyllama` -> `tinyllama:latest`)."""
    return parse_name(name).display


def same_model(first, second):
    """True when two names (strings or ModelName) name the same model; False when either is invalid."""
    try:
        one = first if isinstance(first, ModelName) else parse_name(first)
        two = second if isinstance(second, ModelName) else parse_name(second)
    except ModelNameError:
        return False
    return one.key == two.key


def find_model(models, name):
    """The entry of a /api/tags or /api/ps `models` list that names `name` (ModelName or string), or None."""
    wanted = name if isinstance(name, ModelName) else parse_name(name)
    for entry in models or ():
        for field in ('name', 'model'):
            if entry.get(field) and same_model(entry[field], wanted):
                return entry
    return None


# --------------------------------------------------------------------------------------------
# keep_alive
# --------------------------------------------------------------------------------------------

def _go_duration_seconds(text):
    sign = -1.0 if text.startswith('-') else 1.0
    body = text.lstrip('+-')
    if body == '0':
        return 0.0
    total = 0.0
    for number, unit in re.findall(r'((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(ns|us|\u00b5s|\u03bcs|ms|s|m|h)', body):
        total += float(number) * _GO_UNITS[unit]
    return sign * total


def validate_keep_alive(value):
    """Check `value` as the API would; return (value to send, seconds or None for "forever").

    A number (int or float) is seconds and a negative one means forever. A string must be a Go
    duration ("5m", "24h", "0s", "-1m" = forever); a number in a string ("-1", "5") is refused
    by the API ("time: missing unit in duration"), and so it is here, with a suggestion.
    """
    if isinstance(value, bool) or value is None:
        raise KeepAliveError('keep_alive: %r is not a number of seconds or a duration such as "5m"; use -1 to keep the model loaded forever' % (value,))
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise KeepAliveError('keep_alive: %r is not a finite number of seconds' % (value,))
        return value, (None if value < 0 else float(int(value)))
    if not isinstance(value, str):
        raise KeepAliveError('keep_alive: %r is not a number of seconds or a duration string' % (value,))
    text = value.strip()
    if text.lstrip('+-') == '0' and text.count('-') + text.count('+') <= 1:
        return text, 0.0
    if _NUMBER_RE.match(text):
        raise KeepAliveError('keep_alive: %r is a number in a string, which the Ollama API refuses (time: missing unit in duration "%s"). '
                             'Use a number of seconds, such as -1 (forever), or a duration string with a unit, such as "5m" or "24h".'
                             % (value, text))
    if not _GO_DURATION_RE.match(text):
        raise KeepAliveError('keep_alive: %r is not a duration; use a number of seconds such as -1 (forever) or 300, '
                             'or a string with units such as "5m", "1h30m" or "-1m" (forever)' % (value,))
    seconds = _go_duration_seconds(text)
    return text, (None if seconds < 0 else seconds)


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

def _parse_go_value(text):
    """A Go `%#v` value: a quoted string, true/false, an integer or a float; other text as is."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            result = ast.literal_eval(text)
            if isinstance(result, str):
                return result
        except (ValueError, SyntaxError):
            pass
        try:
            return json.loads(text)
        except ValueError:
            return text[1:-1]
    if text in ('true', 'false'):
        return text == 'true'
    if re.match(r'^[-+]?[0-9]+$', text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number


def parse_show_parameters(text):
    """Parse the `parameters` string of /api/show into a dict.

    Each line is `<name padded to 30> <Go %#v value>`; strings are quoted. A name that appears
    more than once (such as `stop`) gives a list, and `stop` is always a list.
    """
    values = {}
    for line in (text or '').splitlines():
        fields = line.strip().split(None, 1)
        if not fields:
            continue
        values.setdefault(fields[0], []).append(_parse_go_value(fields[1]) if len(fields) > 1 else '')
    return {key: items if len(items) > 1 or PARAMETER_TYPES.get(key) == 'list' else items[0] for key, items in values.items()}


def check_parameter_names(parameters):
    """Raise ParameterError when `parameters` holds names Ollama does not know, listing the valid ones."""
    unknown = sorted(str(key) for key in (parameters or {}) if key not in PARAMETER_TYPES)
    if not unknown:
        return
    removed = [key for key in unknown if key in REMOVED_PARAMETERS]
    note = ' (%s removed from Ollama)' % ', '.join(removed) if removed else ''
    raise ParameterError('unknown parameter%s %s%s; valid parameters are: %s'
                         % ('s' if len(unknown) > 1 else '', ', '.join(unknown), note, ', '.join(VALID_PARAMETERS)))


def _to_bool(key, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ('true', 'yes', 'on', '1', 'false', 'no', 'off', '0'):
        return value.strip().lower() in ('true', 'yes', 'on', '1')
    raise ParameterError('parameter %s: %r is not a boolean (true or false)' % (key, value))


def _to_number(key, value, kind):
    if isinstance(value, bool):
        raise ParameterError('parameter %s: %r is not a number' % (key, value))
    number = value
    if isinstance(value, str):
        if not _NUMBER_RE.match(value.strip()):
            raise ParameterError('parameter %s: %r is not a number' % (key, value))
        number = float(value.strip())
    if not isinstance(number, (int, float)) or not math.isfinite(number):
        raise ParameterError('parameter %s: %r is not a number' % (key, value))
    if kind == 'int':
        if number != int(number):
            raise ParameterError('parameter %s: %r is not a whole number' % (key, value))
        return int(number)
    return float(number)


def coerce_parameter(key, value):
    """The value of parameter `key` as Ollama types it (int, float, bool or list of strings)."""
    kind = PARAMETER_TYPES.get(key)
    if kind is None:
        check_parameter_names({key: value})
    if kind == 'list':
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if not isinstance(item, str):
                raise ParameterError('parameter %s: %r is not a string (give a string or a list of strings)' % (key, item))
        return list(values)
    if kind == 'bool':
        return _to_bool(key, value)
    return _to_number(key, value, kind)


def coerce_parameters(parameters):
    """Check the names and types of desired parameters; return them as Ollama types them."""
    check_parameter_names(parameters)
    return {key: coerce_parameter(key, value) for key, value in (parameters or {}).items()}


def _values_equal(key, one, two):
    kind = PARAMETER_TYPES.get(key)
    if kind == 'list' or isinstance(one, list) or isinstance(two, list):
        first = one if isinstance(one, list) else [one]
        second = two if isinstance(two, list) else [two]
        return sorted(str(item) for item in first) == sorted(str(item) for item in second)
    if kind == 'bool' or isinstance(one, bool) or isinstance(two, bool):
        try:
            return _to_bool(key, one) == _to_bool(key, two)
        except ParameterError:
            return one == two
    try:
        first, second = _to_number(key, one, 'float'), _to_number(key, two, 'float')
    except ParameterError:
        return one == two
    return math.isclose(first, second, rel_tol=1e-6, abs_tol=1e-9)


def parameters_equal(current, desired, inherited=None):
    """True when the `current` parameters of a model (parsed /api/show) match the `desired` ones.

    Names are compared regardless of order; numbers as numbers (2048 == "2048" == 2048.0,
    0.7 == 0.7000000001); `stop` as a set of strings. A name in `current` that is not desired
    is accepted only when it has the value inherited from the base model (`inherited`, the
    parsed /api/show parameters of the base; Ollama copies the base's parameters into a
    variant). With `inherited` None (base unknown), extra names are ignored.
    """
    return not parameter_differences(current, desired, inherited)


def parameter_differences(current, desired, inherited=None):
    """The names whose values differ between `current` and `desired` (see parameters_equal), sorted."""
    current = current or {}
    desired = desired or {}
    differ = set()
    for key, value in desired.items():
        if key not in current or not _values_equal(key, current[key], value):
            differ.add(key)
    if inherited is not None:
        for key, value in current.items():
            if key in desired:
                continue
            if key not in inherited or not _values_equal(key, value, inherited[key]):
                differ.add(key)
    return sorted(differ)


# --------------------------------------------------------------------------------------------
# Host
# --------------------------------------------------------------------------------------------

def parse_host(value, default_port=DEFAULT_PORT):
    """The base URL for an OLLAMA_HOST-style value, as Ollama's client reads it.

    `0.0.0.0:11434` -> http://127.0.0.1:11434 (a bind-any address is reached on loopback),
    `example.com` -> http://example.com:11434, `http://h:8080` -> http://h:8080,
    `https://h` -> https://h:443, `[::1]:11434` -> http://[::1]:11434, a path is kept.
    """
    text = (value or '').strip()
    if not text:
        return DEFAULT_HOST
    scheme, sep, hostport = text.partition('://')
    port_default = default_port
    if not sep:
        scheme, hostport = 'http', text
    else:
        scheme = scheme.lower()
        if scheme == 'http':
            port_default = 80
        elif scheme == 'https':
            port_default = 443
        else:
            raise ValueError('host %r: the scheme must be http or https' % value)
    hostport, _sep, path = hostport.partition('/')
    host, port = hostport, None
    if hostport.startswith('['):
        end = hostport.find(']')
        if end < 0:
            raise ValueError('host %r: unbalanced "[" in an IPv6 address' % value)
        host = hostport[1:end]
        tail = hostport[end + 1:]
        if tail.startswith(':') and tail[1:]:
            port = tail[1:]
    elif hostport.count(':') == 1:
        host, port = hostport.split(':')
    elif hostport.count(':') > 1:
        host = hostport  # a bare IPv6 address
    if port is not None:
        if not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError('host %r: %r is not a valid port' % (value, port))
        port = int(port)
    else:
        port = port_default
    if not host:
        host = '127.0.0.1'
    if host in ('0.0.0.0', '::', '[::]'):
        host = '::1' if ':' in host else '127.0.0.1'
    netloc = '[%s]:%d' % (host, port) if ':' in host else '%s:%d' % (host, port)
    url = '%s://%s' % (scheme, netloc)
    if path.strip('/'):
        url += '/' + path.strip('/')
    return url


def host_from_env(environ=None, default=DEFAULT_HOST):
    """The base URL from OLLAMA_HOST in `environ` (default os.environ), or `default` when unset."""
    environ = os.environ if environ is None else environ
    value = (environ.get('OLLAMA_HOST') or '').strip()
    return parse_host(value) if value else default


def resolve_host(value=None, environ=None):
    """The base URL of the server for an `ollama_host` option (every module and the daemon use this one function).

    The value given (any OLLAMA_HOST form), else OLLAMA_HOST of `environ` (default os.environ), else DEFAULT_HOST.
    None or blank counts as not given. Raises ValueError for a value Ollama's client would not take (ftp://x).
    """
    if value is not None and str(value).strip():
        return parse_host(str(value))
    return host_from_env(environ)


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------

class OllamaClient:
    """Talks to one Ollama server. Every method raises OllamaError on failure.

    host: a base URL or any OLLAMA_HOST form; timeout: seconds per socket operation (a
    streamed pull only times out when no line arrives for that long); validate_certs: check
    the TLS certificate of an https host; headers: extra request headers (such as
    Authorization for a proxy). A 503 is retried `retries` times, waiting `backoff` seconds,
    then twice as long each time up to `max_backoff`.
    """

    def __init__(self, host=None, timeout=120, validate_certs=True, headers=None, retries=5, backoff=0.5, max_backoff=8.0,
                 sleep=time.sleep):
        self.base_url = resolve_host(host)
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.headers = dict(headers or {})
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retried = 0
        self._sleep = sleep
        handlers = []
        if self.base_url.startswith('https:') and not validate_certs:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        if _is_loopback(urllib.parse.urlsplit(self.base_url).hostname or ''):
            handlers.append(urllib.request.ProxyHandler({}))  # never send loopback traffic to an http_proxy
        self._opener = urllib.request.build_opener(*handlers)

    def url(self, path):
        """The full URL of an API path."""
        return self.base_url.rstrip('/') + path

    def _open(self, method, path, body=None):
        """Send one request, retrying 503s; return the open response."""
        url = self.url(path)
        data = None
        headers = {'Accept': 'application/json', 'User-Agent': 'sutazai.ops-ollama'}
        headers.update(self.headers)
        if body is not None:
            data = json.dumps(body).encode('utf-8')
            headers['Content-Type'] = 'application/json'
        delay = self.backoff
        attempt = 0
        while True:
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                return self._opener.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                message = _error_message(exc)
                if exc.code == _BUSY_STATUS and attempt < self.retries:
                    attempt += 1
                    self.retried += 1
                    self._sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
                if exc.code == _BUSY_STATUS:
                    message = '%s (still busy after %d retries)' % (message, attempt)
                raise OllamaError(message, status=exc.code, url=url) from None
            except urllib.error.URLError as exc:
                raise OllamaError('cannot reach Ollama at %s: %s' % (url, exc.reason), url=url) from None
            except (socket.timeout, TimeoutError) as exc:
                raise OllamaError('no answer from Ollama at %s within %s seconds (%s)' % (url, self.timeout, exc), url=url) from None
            except (OSError, ValueError) as exc:
                raise OllamaError('cannot reach Ollama at %s: %s' % (url, exc), url=url) from None

    def request(self, method, path, body=None):
        """One call; return the decoded JSON answer, or None for an empty body (text answers as a string)."""
        url = self.url(path)
        response = self._open(method, path, body)
        try:
            with response:
                raw = response.read()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise OllamaError('reading the answer of %s failed: %s' % (url, exc), url=url) from None
        if not raw.strip():
            return None
        try:
            result = json.loads(raw.decode('utf-8'))
        except ValueError:
            return raw.decode('utf-8', 'replace')
        if isinstance(result, dict) and result.get('error'):
            raise OllamaError(str(result['error']), status=response.status, url=url)
        return result

    def stream(self, method, path, body):
        """Iterate over the NDJSON lines of a streamed answer; raise OllamaError on an `error` line."""
        url = self.url(path)
        response = self._open(method, path, body)
        with response:
            try:
                for raw in response:
                    line = raw.strip()
                    if not line:
                        continue
                    try:
                        item = json.loads(line.decode('utf-8'))
                    except ValueError:
                        raise OllamaError('%s answered a line that is not JSON: %r' % (url, line[:200]), status=response.status, url=url) from None
                    if isinstance(item, dict) and item.get('error'):
                        raise OllamaError(str(item['error']), status=response.status, url=url)
                    yield item
            except (socket.timeout, TimeoutError):
                raise OllamaError('Ollama at %s sent nothing for %s seconds' % (url, self.timeout), url=url) from None
            except (OSError, http.client.HTTPException) as exc:
                # a connection cut mid-stream surfaces as http.client.IncompleteRead, which is not an OSError
                raise OllamaError('reading the stream of %s failed: %s' % (url, exc or type(exc).__name__), url=url) from None

    # --- endpoints ----------------------------------------------------------------------

    def version(self):
        """The server version string."""
        return (self.request('GET', '/api/version') or {}).get('version')

    def tags(self):
        """The local models (/api/tags `models`), newest first."""
        return (self.request('GET', '/api/tags') or {}).get('models') or []

    def ps(self):
        """The loaded models (/api/ps `models`)."""
        return (self.request('GET', '/api/ps') or {}).get('models') or []

    def show(self, name):
        """The /api/show answer of a model; OllamaError with status 404 when it does not exist."""
        return self.request('POST', '/api/show', {'model': name}) or {}

    def pull(self, name, stream=True, insecure=False):
        """Pull a model. With stream (the default), iterate over the progress lines; else return the one answer."""
        body = {'model': name, 'stream': bool(stream)}
        if insecure:
            body['insecure'] = True
        if stream:
            return self.stream('POST', '/api/pull', body)
        return self.request('POST', '/api/pull', body)

    def pull_all(self, name):
        """Pull a model, consuming the stream; return the last status line, which must say success."""
        return self._finished(self.pull(name, stream=True), '/api/pull', name)

    def _finished(self, lines, path, name):
        """The last line of a progress stream; OllamaError when the stream ends before its `success` line."""
        last = None
        for last in lines:
            pass
        if not isinstance(last, dict) or last.get('status') != 'success':
            raise OllamaError('%s for %s ended before it reported success (last line: %s)' % (path, name, json.dumps(last)[:200]),
                              url=self.url(path))
        return last

    def delete(self, name):
        """Delete a model (DELETE /api/delete); OllamaError with status 404 when it does not exist."""
        return self.request('DELETE', '/api/delete', {'model': name})

    def create(self, name, from_, parameters=None, system=None, template=None, stream=True):
        """Create (or overwrite) model `name` from `from_` with parameters/system/template; return the last status line."""
        body = {'model': name, 'from': from_, 'stream': bool(stream)}
        if parameters:
            body['parameters'] = parameters
        if system is not None:
            body['system'] = system
        if template is not None:
            body['template'] = template
        if not stream:
            return self.request('POST', '/api/create', body)
        return self._finished(self.stream('POST', '/api/create', body), '/api/create', name)

    def load(self, name, keep_alive=None):
        """Load a model into memory (/api/generate with no prompt); keep_alive as validate_keep_alive returns it."""
        body = {'model': name, 'stream': False}
        if keep_alive is not None:
            body['keep_alive'] = keep_alive
        return self.request('POST', '/api/generate', body)

    def unload(self, name):
        """Ask Ollama to unload a model (keep_alive 0). Asynchronous: /api/ps may list it for a moment."""
        return self.request('POST', '/api/generate', {'model': name, 'keep_alive': 0, 'stream': False})

    def wait_unloaded(self, name, timeout=30.0, interval=0.25, clock=time.monotonic):
        """Poll /api/ps until `name` is gone; return True, or False after `timeout` seconds."""
        deadline = clock() + timeout
        while True:
            if find_model(self.ps(), name) is None:
                return True
            if clock() >= deadline:
                return False
            self._sleep(interval)


def _error_message(exc):
    """The `error` of an HTTPError's JSON body, else its text, else the reason."""
    try:
        raw = exc.read()
    except (OSError, ValueError):
        raw = b''
    text = raw.decode('utf-8', 'replace').strip() if raw else ''
    if text:
        try:
            data = json.loads(text)
            if isinstance(data, dict) and data.get('error'):
                return str(data['error'])
        except ValueError:
            pass
        return text[:500]
    return str(exc.reason or 'HTTP %s' % exc.code)


def url_port(url):
    """The port of a base URL (80 or 443 when it has none)."""
    parts = urllib.parse.urlsplit(url)
    return parts.port or (443 if parts.scheme == 'https' else 80)


def _is_loopback(host):
    """True for a loopback name or literal address (no name resolution)."""
    host = host.lower()
    return host in ('localhost', 'ip6-localhost', 'ip6-loopback', '::1') or host.endswith('.localhost') or bool(re.match(r'^127\.[0-9.]+$', host))


def is_local_url(url):
    """True when the host of `url` is this machine: a loopback name or address, or an address of ours."""
    host = urllib.parse.urlsplit(url).hostname or ''
    if _is_loopback(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    for family, _type, _proto, _name, address in infos:
        ip = address[0]
        if ip.startswith('127.') or ip == '::1':
            return True
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((ip, 0))
            return True
        except OSError:
            continue
    return False
