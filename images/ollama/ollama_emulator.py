"""An emulator of Ollama's HTTP API (v0.33) that the sutazai.ops tests use in place of Ollama.

It follows /work/shared/OLLAMA_API.md (read from Ollama's own source), odd parts included:
names and their equivalent forms, keep_alive as Go durations, the pull NDJSON sequence with
an error as the last line, DELETE (not POST) /api/delete, /api/show parameters as Go
``%-30s %#v`` lines in random order, asynchronous unload, LRU-ish eviction, 503 when the
queue is full. Loaded models hold REAL memory: a bytearray of the model's (scaled) size
whose every page is written, dropped on unload so the memory returns to the OS.

Standard library only (Python 3.11). Run::

    python3 ollama_emulator.py [--host H] [--port P] [--catalog FILE] [--scale F]

Environment (Ollama's own):
  OLLAMA_HOST               bind address, default 127.0.0.1:11434 (``host:port``, ``host``, ``http://host:port``)
  OLLAMA_KEEP_ALIVE         default keep-alive, default 5m; a Go duration or a bare integer of seconds
  OLLAMA_MAX_LOADED_MODELS  models loaded at once, 0 = 3 (CPU); a load beyond it evicts an idle model
  OLLAMA_NUM_PARALLEL       parallel requests per loaded model, default 1
  OLLAMA_MAX_QUEUE          in-flight generate/chat/pull/create requests before 503, default 512
  OLLAMA_CONTEXT_LENGTH     default context length, 0 = 4096
  OLLAMA_MODELS             model store directory (manifests persisted as JSON); unset = in memory
Environment (emulator only):
  OLLAMA_EMULATOR_CATALOG         catalog of pullable models: a JSON file path or inline JSON
                                  ``{"name": {"size": bytes, "digest": hex, ...}}`` (replaces the default)
  OLLAMA_EMULATOR_SCALE           every model behaves as size x scale bytes (tags, ps, memory), default 1.0
  OLLAMA_EMULATOR_PULL_DELAY      seconds per pull progress step, default 0.01
  OLLAMA_EMULATOR_UNLOAD_DELAY    seconds between a keep_alive 0 answer and the unload, default 0.2
  OLLAMA_EMULATOR_GENERATE_DELAY  seconds a generate/chat with a prompt takes, default 0
The command-line options override OLLAMA_HOST (--host, --port), OLLAMA_EMULATOR_CATALOG and
OLLAMA_EMULATOR_SCALE.

Catalog entry fields (all optional): size (bytes, before scaling), digest (64 hex, the /api/tags
digest; derived from the name and fields when absent), family, families, format,
parameter_size, quantization_level, template, system, license, parameters, capabilities,
context_length, model_info, model_digest.

Test hooks (not Ollama routes):
  POST /_emulator/busy {"count": N}
      the next N requests to /api/generate, /api/chat (those that would queue), /api/pull and
      /api/create answer 503 with Ollama's "server busy" body. Answers {"busy": N}.
  POST /_emulator/catalog {"name": ..., "digest": ..., "size": ..., <other entry fields>}
      adds or modifies a catalog entry (e.g. a new upstream version of a tag). Answers
      {"name", "digest", "size"}; a modified entry without "digest" gets a new derived digest.
  GET /_emulator/state
      {"loaded": [{"name", "digest", "size", "held_bytes", "refs", "expires_at"}], "held_bytes": N,
       "in_flight": N, "busy": N, "models": [local model names]}
"""

import argparse
import hashlib
import json
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import traceback
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = '0.33.0'
NS = 10 ** 9
FOREVER_NS = 2 ** 63 - 1
PAGE = 4096
BUSY_MESSAGE = 'server busy, please try again.  maximum pending requests exceeded'
LOAD_TIME_OPTIONS = ('num_ctx', 'num_batch', 'num_gpu', 'main_gpu', 'use_mmap', 'num_thread')
QUANT_TYPES = {'F32': 0, 'F16': 1, 'Q4_0': 2, 'Q8_0': 7, 'Q4_K_S': 14, 'Q4_K_M': 15}
QUANT_RATIO = {'F32': 2.0, 'F16': 1.0, 'Q8_0': 0.53, 'Q4_K_S': 0.29, 'Q4_K_M': 0.3}
ANSWER = 'This is a fixed answer from the Ollama emulator.'

MEDIA = {
    'model': 'application/vnd.ollama.image.model',
    'template': 'application/vnd.ollama.image.template',
    'system': 'application/vnd.ollama.image.system',
    'license': 'application/vnd.ollama.image.license',
    'params': 'application/vnd.ollama.image.params',
    'messages': 'application/vnd.ollama.image.messages',
    'config': 'application/vnd.docker.container.image.v1+json',
    'manifest': 'application/vnd.docker.distribution.manifest.v2+json',
}


class ApiError(Exception):
    """An error answered as {"error": message} with an HTTP status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# --- Go behaviours ---------------------------------------------------------------------

_DURATION_UNITS = {'ns': 1, 'us': 1000, '\u00b5s': 1000, '\u03bcs': 1000, 'ms': 10 ** 6, 's': NS, 'm': 60 * NS, 'h': 3600 * NS}
_GO_ESCAPES = {'\a': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '"': '\\"', '\\': '\\\\'}


def _time_quote(text):
    return '"' + text.replace('\\', '\\\\').replace('"', '\\"') + '"'


def parse_go_duration(text):
    """Nanoseconds of a Go duration string, as time.ParseDuration; ValueError carries Go's message."""
    invalid = ValueError('time: invalid duration ' + _time_quote(text))
    rest, negative = text, False
    if rest[:1] in ('-', '+'):
        negative, rest = rest[0] == '-', rest[1:]
    if rest == '0':
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        number = re.match(r'([0-9]*)(?:\.([0-9]*))?', rest)
        whole, fraction = number.group(1), number.group(2)
        if not whole and not fraction:
            raise invalid
        rest = rest[number.end():]
        unit = re.match(r'[^0-9.]*', rest).group(0)
        if not unit:
            raise ValueError('time: missing unit in duration ' + _time_quote(text))
        if unit not in _DURATION_UNITS:
            raise ValueError('time: unknown unit %s in duration %s' % (_time_quote(unit), _time_quote(text)))
        rest = rest[len(unit):]
        scale = _DURATION_UNITS[unit]
        total += int(whole or '0') * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        if total > 2 ** 63:
            raise invalid
    if negative:
        return -total
    if total > FOREVER_NS:
        raise invalid
    return total


def _go_type_name(value):
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, list):
        return '[]interface {}'
    if isinstance(value, dict):
        return 'map[string]interface {}'
    return type(value).__name__


def keep_alive_ns(value):
    """Nanoseconds of an API keep_alive (api.Duration.UnmarshalJSON); negative = forever; ValueError as Go."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("Unsupported type: '%s'" % _go_type_name(value))
    if isinstance(value, str):
        duration = parse_go_duration(value)
        return FOREVER_NS if duration < 0 else duration
    if value < 0:
        return FOREVER_NS
    duration = float(value) * NS
    return int(duration) if duration < FOREVER_NS else FOREVER_NS


def env_var(env, key):
    """An environment variable as envconfig.Var reads it: spaces and quotes trimmed."""
    return env.get(key, '').strip().strip('"\'')


def env_keep_alive(raw):
    """OLLAMA_KEEP_ALIVE: a Go duration or a bare integer of seconds; negative = forever; default 5m."""
    result = 5 * 60 * NS
    if raw:
        try:
            result = parse_go_duration(raw)
        except ValueError:
            try:
                result = int(raw, 10) * NS
            except ValueError:
                pass
    return FOREVER_NS if result < 0 else result


def env_uint(env, key, default):
    """An unsigned integer variable (envconfig.Uint): invalid values give the default."""
    raw = env_var(env, key)
    return int(raw) if re.fullmatch('[0-9]+', raw) else default


def env_float(env, key, default):
    """A float variable of the emulator; invalid values are an error."""
    raw = env_var(env, key)
    return float(raw) if raw else default


def _split_host_port(hostport):
    if hostport.startswith('['):
        end = hostport.find(']')
        if end < 0 or hostport[end + 1:end + 2] != ':':
            raise ValueError(hostport)
        return hostport[1:end], hostport[end + 2:]
    if hostport.count(':') != 1:
        raise ValueError(hostport)
    return tuple(hostport.split(':'))


def parse_ollama_host(raw):
    """(host, port) of an OLLAMA_HOST value, as envconfig.Host."""
    scheme, sep, hostport = raw.strip().partition('://')
    default_port = {'http': 80, 'https': 443}.get(scheme, 11434) if sep else 11434
    hostport = (hostport if sep else scheme).split('/', 1)[0]
    try:
        host, port = _split_host_port(hostport)
    except ValueError:
        host, port = (hostport.strip('[]') or '127.0.0.1'), str(default_port)
    port = int(port) if port.isdigit() and int(port) <= 65535 else default_port
    return host, port


def go_float(value):
    """A float64 as Go's %v / %#v prints it (strconv 'g', shortest, exponent from 1e+06 or below 1e-04)."""
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    if value == 0:
        return '-0' if math.copysign(1, value) < 0 else '0'
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = ''.join(map(str, digit_tuple))
    point = len(digits) + exponent
    digits = digits.rstrip('0')
    prefix = '-' if sign else ''
    exp = point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ('.' + digits[1:] if len(digits) > 1 else '')
        return '%s%se%s%02d' % (prefix, mantissa, '-' if exp < 0 else '+', abs(exp))
    if point <= 0:
        return prefix + '0.' + '0' * -point + digits
    if point >= len(digits):
        return prefix + digits + '0' * (point - len(digits))
    return prefix + digits[:point] + '.' + digits[point:]


def go_quote(text):
    """A string as Go's strconv.Quote (%#v of a string)."""
    out = []
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append('\\x%02x' % ord(char))
        elif ord(char) < 0x10000:
            out.append('\\u%04x' % ord(char))
        else:
            out.append('\\U%08x' % ord(char))
    return '"' + ''.join(out) + '"'


def go_sharp_v(value):
    """A JSON-decoded value as Go's %#v prints it (numbers are float64 after json.Unmarshal)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    if value is None:
        return '<nil>'
    if isinstance(value, list):
        return '[]interface {}{%s}' % ', '.join(go_sharp_v(item) for item in value)
    return 'map[string]interface {}{%s}' % ', '.join('%s:%s' % (go_quote(k), go_sharp_v(v)) for k, v in sorted(value.items()))


def go_v(value):
    """A JSON-decoded value as Go's %v prints it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or isinstance(value, (int, float)) or value is None:
        return go_sharp_v(value)
    return json.dumps(value)


def go_json(obj):
    """JSON as Go's encoding/json writes it: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(obj, separators=(',', ':'), ensure_ascii=False)
    for char, escaped in (('<', '\\u003c'), ('>', '\\u003e'), ('&', '\\u0026'), ('\u2028', '\\u2028'), ('\u2029', '\\u2029')):
        text = text.replace(char, escaped)
    return text


def rfc3339(ns, utc=False):
    """A Go time (RFC3339 with nanoseconds, trailing zeros trimmed) of epoch nanoseconds."""
    seconds, fraction = divmod(ns, NS)
    stamp = time.gmtime(seconds) if utc else time.localtime(seconds)
    text = time.strftime('%Y-%m-%dT%H:%M:%S', stamp)
    if fraction:
        text += ('.%09d' % fraction).rstrip('0')
    offset = stamp.tm_gmtoff or 0
    if offset == 0:
        return text + 'Z'
    return text + '%s%02d:%02d' % ('-' if offset < 0 else '+', abs(offset) // 3600, abs(offset) % 3600 // 60)


def human_number(count):
    """A parameter count as Ollama's format.HumanNumber ("1.1B", "494.03M")."""
    for limit, suffix, decimals in ((10 ** 9, 'B', 1), (10 ** 6, 'M', 2)):
        if count >= limit:
            number = count / limit
            return '%d%s' % (number, suffix) if number == math.floor(number) else '%.*f%s' % (decimals, number, suffix)
    return '%dK' % (count // 1000) if count >= 1000 else str(count)


def sha256_hex(data):
    """Hex sha256 of text or bytes."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


# --- names -----------------------------------------------------------------------------

class ModelName:
    """A model name as types/model/name.go parses it: host/namespace/model:tag."""

    DEFAULT_HOST = 'registry.ollama.ai'
    DEFAULT_NAMESPACE = 'library'
    DEFAULT_TAG = 'latest'
    MISSING = '!MISSING!'

    def __init__(self, host, namespace, model, tag):
        self.host, self.namespace, self.model, self.tag = host, namespace, model, tag

    @classmethod
    def parse(cls, text):
        """Parse `text`, filling the default host, namespace and tag; the result may be invalid."""
        host = namespace = tag = ''
        rest = text
        if rest.rfind(':') > rest.rfind('/'):
            rest, tag = cls._cut_last(rest, ':')
        if '/' not in rest:
            model = rest
        else:
            rest, model = cls._cut_last(rest, '/')
            if '/' not in rest:
                namespace = rest
            else:
                rest, namespace = cls._cut_last(rest, '/')
                host = rest.split('://', 1)[1] if '://' in rest else rest
        return cls(host or cls.DEFAULT_HOST, namespace or cls.DEFAULT_NAMESPACE, model, tag or cls.DEFAULT_TAG)

    @classmethod
    def _cut_last(cls, text, sep):
        before, _sep, after = text.rpartition(sep)
        return before or cls.MISSING, after or cls.MISSING

    @staticmethod
    def _valid_part(part, extra, limit):
        if not 1 <= len(part) <= limit or not (part[0].isascii() and (part[0].isalnum() or part[0] == '_')):
            return False
        return all(char.isascii() and (char.isalnum() or char in '_-.' + extra) for char in part)

    def is_valid(self):
        """Every part non-empty, alphanumerics and _-. (the host may hold a :port), at most 80 characters."""
        return (self._valid_part(self.host, ':', 350) and self._valid_part(self.namespace, '', 80)
                and self._valid_part(self.model, '', 80) and self._valid_part(self.tag, '', 80))

    @property
    def key(self):
        """The case-insensitive identity of the name."""
        return self.full().lower()

    def full(self):
        """host/namespace/model:tag."""
        return '%s/%s/%s:%s' % (self.host, self.namespace, self.model, self.tag)

    def display(self):
        """The shortest display form: always a tag, no default host, no `library/`."""
        if self.host.lower() != self.DEFAULT_HOST:
            return '%s/%s/%s:%s' % (self.host, self.namespace, self.model, self.tag)
        if self.namespace.lower() != self.DEFAULT_NAMESPACE:
            return '%s/%s:%s' % (self.namespace, self.model, self.tag)
        return '%s:%s' % (self.model, self.tag)

    def parts(self):
        """(host, namespace, model, tag), the manifest path under manifests/."""
        return (self.host, self.namespace, self.model, self.tag)


# --- catalog ---------------------------------------------------------------------------

_LLAMA3_TEMPLATE = ('<|start_header_id|>system<|end_header_id|>\n\n{{ if .System }}{{ .System }}{{ end }}<|eot_id|>'
                    '{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}'
                    '<|start_header_id|>assistant<|end_header_id|>\n\n')
_QWEN_TEMPLATE = ('{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
                  '{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n')

DEFAULT_CATALOG = {
    'tinyllama:latest': {
        'size': 637700138, 'digest': '2644915ede352ea7bdfaff0bfac0be74c719d5d5202acb63a6fb095b52f394a4',
        'model_digest': '2af3b81862c6be03c769683af18efdadb2c33f60ff32ab6f83e42c043d6c7816',
        'family': 'llama', 'parameter_size': '1B', 'quantization_level': 'Q4_0', 'context_length': 2048, 'parameter_count': 1100048384,
        'template': '<|system|>\n{{ .System }}</s>\n<|user|>\n{{ .Prompt }}</s>\n<|assistant|>\n',
        'system': 'You are a helpful AI assistant.',
        'parameters': {'stop': ['<|system|>', '<|user|>', '<|assistant|>', '</s>']},
    },
    'llama3.2:3b': {
        'size': 2019393189, 'digest': 'a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72',
        'model_digest': 'dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff',
        'family': 'llama', 'parameter_size': '3.2B', 'quantization_level': 'Q4_K_M', 'context_length': 131072, 'parameter_count': 3212749888,
        'template': _LLAMA3_TEMPLATE, 'license': 'LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version Release Date: September 25, 2024',
        'parameters': {'stop': ['<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>']},
        'capabilities': ['completion', 'tools'],
    },
    'qwen2.5:3b': {
        'size': 1929912432, 'digest': '357c53fb659c5076de1d65ccb0b397446227b71a42be9d1603d46168015c9e4b',
        'model_digest': '5ee4f07cdb9beadbbb293e85803c569b01bd37ed059d2715faa7bb405f31caa6',
        'family': 'qwen2', 'parameter_size': '3.1B', 'quantization_level': 'Q4_K_M', 'context_length': 32768, 'parameter_count': 3085938688,
        'template': _QWEN_TEMPLATE, 'system': 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.',
        'license': 'Qwen RESEARCH LICENSE AGREEMENT\nQwen RESEARCH LICENSE AGREEMENT Release Date: September 19, 2024',
        'capabilities': ['completion', 'tools'],
    },
    'codellama:7b': {
        'size': 3825910662, 'digest': '8fdf8f752f6e80de33e82f381aba784c025982752cd1ae9377add66449d2225f',
        'model_digest': '3a43f93b78ec50f7c4e4dc8bd1cb3fff5a900e7d574c51a6f7495e48486e0dac',
        'family': 'llama', 'parameter_size': '7B', 'quantization_level': 'Q4_0', 'context_length': 16384, 'parameter_count': 6738546688,
        'template': '[INST] <<SYS>>{{ .System }}<</SYS>>\n\n{{ .Prompt }} [/INST]\n',
        'license': 'LLAMA 2 COMMUNITY LICENSE AGREEMENT\nLlama 2 Version Release Date: July 18, 2023',
        'parameters': {'rope_frequency_base': 1000000, 'stop': ['[INST]', '[/INST]', '<<SYS>>', '<</SYS>>']},
    },
}

_ENTRY_FIELDS = ('size', 'digest', 'model_digest', 'family', 'families', 'format', 'parameter_size', 'quantization_level', 'template',
                 'system', 'license', 'parameters', 'capabilities', 'context_length', 'parameter_count', 'model_info')


def complete_entry(name, fields):
    """A catalog entry with every field, defaults filled in; ValueError on a bad field."""
    unknown = sorted(set(fields) - set(_ENTRY_FIELDS) - {'name'})
    if unknown:
        raise ValueError('catalog entry %s: unknown fields %s (known: %s)' % (name.display(), ', '.join(unknown), ', '.join(_ENTRY_FIELDS)))
    entry = {key: value for key, value in fields.items() if key != 'name'}
    size = entry.get('size', 500 * 1000 * 1000)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError('catalog entry %s: size must be a number of bytes, got %r' % (name.display(), size))
    entry['size'] = size
    if 'digest' not in entry:
        entry['digest'] = sha256_hex(name.key + '\n' + json.dumps(entry, sort_keys=True))
    for key in ('digest', 'model_digest'):
        if key in entry:
            entry[key] = str(entry[key]).lower().replace('sha256:', '').replace('sha256-', '')
            if not re.fullmatch('[0-9a-f]{64}', entry[key]):
                raise ValueError('catalog entry %s: %s must be 64 hex digits, got %r' % (name.display(), key, fields[key]))
    entry.setdefault('model_digest', sha256_hex(entry['digest'] + ':model'))
    entry.setdefault('family', 'llama')
    entry.setdefault('families', [entry['family']])
    entry.setdefault('format', 'gguf')
    entry.setdefault('quantization_level', 'Q4_0')
    entry.setdefault('parameter_count', int(size * 8 / 4.5))
    entry.setdefault('parameter_size', human_number(entry['parameter_count']))
    entry.setdefault('template', '{{ .Prompt }}')
    entry.setdefault('system', '')
    entry.setdefault('license', '')
    entry.setdefault('parameters', {})
    entry.setdefault('capabilities', ['completion'])
    entry.setdefault('context_length', 2048)
    return entry


def read_catalog(source):
    """{name key: (ModelName, entry)} of a catalog given as a file path or inline JSON; ValueError when bad."""
    if source.lstrip().startswith('{'):
        raw = json.loads(source)
    else:
        with open(source, encoding='utf-8') as handle:
            raw = json.load(handle)
    if not isinstance(raw, dict):
        raise ValueError('the catalog must be a JSON object of model name -> entry')
    return build_catalog(raw)


def build_catalog(raw):
    """{name key: (ModelName, entry)} of {name: fields}."""
    catalog = {}
    for text, fields in raw.items():
        name = ModelName.parse(text)
        if not name.is_valid() or not isinstance(fields, dict):
            raise ValueError('catalog entry %r: invalid model name or entry' % text)
        catalog[name.key] = (name, complete_entry(name, fields))
    return catalog


# --- settings --------------------------------------------------------------------------

class Settings:
    """Configuration from the environment (Ollama's variables and the emulator's) and the command line."""

    def __init__(self, env=None, host=None, port=None, catalog=None, scale=None):
        env = os.environ if env is None else env
        self.host, self.port = parse_ollama_host(env_var(env, 'OLLAMA_HOST'))
        self.host = self.host if host is None else host
        self.port = self.port if port is None else port
        self.keep_alive_ns = env_keep_alive(env_var(env, 'OLLAMA_KEEP_ALIVE'))
        self.max_loaded = env_uint(env, 'OLLAMA_MAX_LOADED_MODELS', 0) or 3
        self.num_parallel = env_uint(env, 'OLLAMA_NUM_PARALLEL', 0) or 1
        self.max_queue = env_uint(env, 'OLLAMA_MAX_QUEUE', 512)
        self.context_length = env_uint(env, 'OLLAMA_CONTEXT_LENGTH', 0) or 4096
        self.models_dir = env_var(env, 'OLLAMA_MODELS') or None
        self.scale = float(scale) if scale is not None else env_float(env, 'OLLAMA_EMULATOR_SCALE', 1.0)
        if not self.scale > 0:
            raise ValueError('the scale must be > 0, got %r' % self.scale)
        self.pull_delay = env_float(env, 'OLLAMA_EMULATOR_PULL_DELAY', 0.01)
        self.unload_delay = env_float(env, 'OLLAMA_EMULATOR_UNLOAD_DELAY', 0.2)
        self.generate_delay = env_float(env, 'OLLAMA_EMULATOR_GENERATE_DELAY', 0.0)
        source = catalog if catalog is not None else env.get('OLLAMA_EMULATOR_CATALOG', '').strip()
        self.catalog = read_catalog(source) if source else build_catalog(DEFAULT_CATALOG)


# --- local models and their store ------------------------------------------------------

def _layer(kind, content=None, digest=None, size=None):
    data = content.encode() if isinstance(content, str) else content
    return {'mediaType': MEDIA[kind], 'digest': 'sha256:' + (digest or sha256_hex(data)), 'size': len(data) if size is None else size}


def _blob(kind, value):
    return json.dumps(value, separators=(',', ':')) if kind in ('params', 'messages') else value


class LocalModel:
    """A model in the local store: its manifest (layers, digest) and what its layers say."""

    def __init__(self, name, **attrs):
        self.name = name
        self.digest = attrs['digest']
        self.layers = attrs['layers']
        self.config = attrs['config']
        self.template = attrs.get('template', '')
        self.system = attrs.get('system', '')
        self.license = list(attrs.get('license', []))
        self.parameters = dict(attrs.get('parameters', {}))
        self.messages = list(attrs.get('messages', []))
        self.capabilities = list(attrs.get('capabilities', ['completion']))
        self.model_info = dict(attrs.get('model_info', {}))
        self.modified_ns = attrs.get('modified_ns', time.time_ns())

    def attrs(self):
        """The keyword arguments that rebuild this model (persisted in the manifest)."""
        keys = ('digest', 'layers', 'config', 'template', 'system', 'license', 'parameters', 'messages', 'capabilities', 'model_info',
                'modified_ns')
        return {key: getattr(self, key) for key in keys}

    def renamed(self, name):
        """A copy of this model under another name, modified now (as /api/copy)."""
        attrs = self.attrs()
        attrs['modified_ns'] = time.time_ns()
        return LocalModel(name, **json.loads(json.dumps(attrs)))

    @property
    def size(self):
        """Bytes of all layers and the config blob, as /api/tags reports."""
        return sum(layer['size'] for layer in self.layers) + self.config['size']

    @property
    def model_layer(self):
        """The weights layer: its digest identifies a runner, as the blob path does in Ollama."""
        return next(layer for layer in self.layers if layer['mediaType'] == MEDIA['model'])

    @property
    def context_length(self):
        """The trained context length of the model."""
        return self.model_info.get('%s.context_length' % self.config['model_family'], 2048)

    def details(self, parent=''):
        """The `details` object of /api/tags, /api/ps and /api/show."""
        return {'parent_model': parent, 'format': self.config['model_format'], 'family': self.config['model_family'],
                'families': self.config['model_families'], 'parameter_size': self.config['model_type'],
                'quantization_level': self.config['file_type']}

    def manifest(self):
        """The manifest document whose sha256 is the model's digest."""
        config = {'mediaType': MEDIA['config'], 'digest': self.config['digest'], 'size': self.config['size']}
        return {'schemaVersion': 2, 'mediaType': MEDIA['manifest'], 'config': config, 'layers': self.layers}


def _config_blob(details, layers):
    document = {'model_format': details['format'], 'model_family': details['family'], 'model_families': details['families'],
                'model_type': details['parameter_size'], 'file_type': details['quantization_level'], 'architecture': 'amd64', 'os': 'linux',
                'rootfs': {'type': 'layers', 'diff_ids': [layer['digest'] for layer in layers]}}
    data = json.dumps(document, separators=(',', ':'))
    config = {key: document[key] for key in ('model_format', 'model_family', 'model_families', 'model_type', 'file_type')}
    config.update(digest='sha256:' + sha256_hex(data), size=len(data))
    return config


def _text_layers(template, system, licenses, parameters, messages):
    layers = []
    for kind, value in (('template', template), ('system', system)):
        if value:
            layers.append(_layer(kind, value))
    layers.extend(_layer('license', text) for text in licenses)
    for kind, value in (('params', parameters), ('messages', messages)):
        if value:
            layers.append(_layer(kind, _blob(kind, value)))
    return layers


def model_from_catalog(name, entry, scale):
    """The local model a pull of catalog `entry` writes, sizes scaled."""
    licenses = [entry['license']] if isinstance(entry['license'], str) and entry['license'] else list(entry['license'] or [])
    texts = _text_layers(entry['template'], entry['system'], licenses, entry['parameters'], [])
    details = {'format': entry['format'], 'family': entry['family'], 'families': entry['families'],
               'parameter_size': entry['parameter_size'], 'quantization_level': entry['quantization_level']}
    total = int(entry['size'] * scale)
    weights = _layer('model', b'', digest=entry['model_digest'], size=0)
    config = _config_blob(details, [weights] + texts)
    weights['size'] = max(total - sum(layer['size'] for layer in texts) - config['size'], 0)
    arch = entry['family']
    model_info = {'general.architecture': arch, 'general.file_type': QUANT_TYPES.get(entry['quantization_level'], 2),
                  'general.parameter_count': entry['parameter_count'], 'general.quantization_version': 2,
                  '%s.context_length' % arch: entry['context_length']}
    model_info.update(entry.get('model_info') or {})
    return LocalModel(name, digest=entry['digest'], layers=[weights] + texts, config=config, template=entry['template'],
                      system=entry['system'], license=licenses, parameters=entry['parameters'], capabilities=entry['capabilities'],
                      model_info=model_info)


class ModelStore:
    """The local models, keyed by case-insensitive name; persisted under OLLAMA_MODELS when set."""

    def __init__(self, directory=None):
        self.directory = directory
        self.models = {}
        if directory:
            self._load()

    def get(self, name):
        """The local model of ModelName `name`, or None."""
        return self.models.get(name.key)

    def existing_name(self, name):
        """`name` as already stored (case preserved), or `name` itself (getExistingName)."""
        model = self.get(name)
        return model.name if model else name

    def listing(self):
        """The local models, newest first."""
        return sorted(self.models.values(), key=lambda model: model.modified_ns, reverse=True)

    def blobs(self):
        """Digests of every layer held locally."""
        return {layer['digest'] for model in self.models.values() for layer in model.layers + [self.config_layer(model)]}

    @staticmethod
    def config_layer(model):
        """The config blob as a layer."""
        return {'mediaType': MEDIA['config'], 'digest': model.config['digest'], 'size': model.config['size']}

    def put(self, model):
        """Store (or overwrite) `model`, modified now."""
        model.modified_ns = time.time_ns()
        self.models[model.name.key] = model
        self._write(model)

    def remove(self, model):
        """Delete `model` from the store."""
        del self.models[model.name.key]
        if self.directory:
            path = self._path(model.name)
            os.unlink(path)
            root = os.path.join(self.directory, 'manifests')
            parent = os.path.dirname(path)
            while parent != root and not os.listdir(parent):
                os.rmdir(parent)
                parent = os.path.dirname(parent)

    def _path(self, name):
        return os.path.join(self.directory, 'manifests', *name.parts())

    def _write(self, model):
        if not self.directory:
            return
        path = self._path(model.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        document = model.manifest()
        document['x-sutazai-emulator'] = model.attrs()
        temporary = path + '.tmp'
        with open(temporary, 'w', encoding='utf-8') as handle:
            json.dump(document, handle, indent=1)
        os.utime(temporary, ns=(model.modified_ns, model.modified_ns))
        os.replace(temporary, path)

    def _load(self):
        root = os.path.join(self.directory, 'manifests')
        for folder, _dirs, files in os.walk(root):
            for filename in files:
                parts = os.path.relpath(os.path.join(folder, filename), root).split(os.sep)
                if filename.endswith('.tmp') or len(parts) != 4:
                    continue
                try:
                    with open(os.path.join(folder, filename), encoding='utf-8') as handle:
                        attrs = json.load(handle)['x-sutazai-emulator']
                except (OSError, ValueError, KeyError):
                    continue
                name = ModelName(*parts)
                self.models[name.key] = LocalModel(name, **attrs)


# --- the scheduler: loaded models and the memory they hold ------------------------------

def allocate(size):
    """A bytearray of `size` bytes with every page written, so that it is resident."""
    buffer = bytearray(size)
    if size:
        buffer[::PAGE] = b'\x01' * len(range(0, size, PAGE))
    return buffer


class Runner:
    """A loaded model: the memory it holds, its users and when it expires."""

    def __init__(self, model, session_ns, options, context_length, buffer, slots):
        self.key = model.model_layer['digest']
        self.model = model
        self.buffer = buffer
        self.session_ns = session_ns
        self.expires_ns = _expiry(session_ns)
        self.refs = 1
        self.last_used = time.monotonic()
        self.options = options
        self.context_length = context_length
        self.unload_generation = 0
        self.slots = threading.Semaphore(slots)

    @property
    def held(self):
        """Bytes this runner holds now."""
        return len(self.buffer) if self.buffer is not None else 0


def _expiry(session_ns):
    return time.time_ns() + session_ns


class Scheduler:
    """Loads, evicts and unloads models like Ollama's server/sched.go (simplified)."""

    def __init__(self, settings):
        self.settings = settings
        self.runners = {}
        self.lock = threading.Lock()
        self.load_lock = threading.Lock()
        self.stopping = threading.Event()
        self.expiry_thread = threading.Thread(target=self._expire_loop, name='keep-alive-expiry', daemon=True)
        self.expiry_thread.start()

    def acquire(self, model, session_ns, options):
        """The runner of `model`, loaded (evicting another if needed) and referenced; ApiError 500 if memory fails."""
        load_options = {key: value for key, value in {**model.parameters, **options}.items() if key in LOAD_TIME_OPTIONS}
        key = model.model_layer['digest']
        with self.load_lock:
            with self.lock:
                runner = self.runners.get(key)
                if runner is not None and runner.options == load_options:
                    runner.refs += 1
                    runner.session_ns = session_ns
                    runner.unload_generation += 1
                    runner.last_used = time.monotonic()
                    return runner
                if runner is not None:
                    self._drop(runner)
                while len(self.runners) >= self.settings.max_loaded:
                    self._drop(min(self.runners.values(), key=lambda r: (r.refs > 0, r.session_ns, r.last_used)))
            try:
                buffer = allocate(model.size)
            except (MemoryError, OverflowError):
                raise ApiError(500, 'llama runner process has terminated: error loading model: unable to allocate CPU buffer of %d bytes'
                               % model.size) from None
            context = int(load_options.get('num_ctx') or self.settings.context_length)
            runner = Runner(model, session_ns, load_options, context, buffer, self.settings.num_parallel)
            with self.lock:
                self.runners[key] = runner
            return runner

    def release(self, runner):
        """A request is done with `runner`: start its keep-alive clock, or unload it if that is 0."""
        with self.lock:
            runner.refs -= 1
            runner.last_used = time.monotonic()
            if runner.refs == 0:
                runner.expires_ns = _expiry(runner.session_ns)
                if runner.session_ns == 0:
                    self._schedule_unload(runner)

    def expire(self, model):
        """keep_alive 0 without a prompt: unload the model's runner soon (after its requests finish)."""
        with self.lock:
            runner = self.runners.get(model.model_layer['digest'])
            if runner is None:
                return
            runner.session_ns = 0
            runner.expires_ns = time.time_ns()
            if runner.refs == 0:
                self._schedule_unload(runner)

    def loaded(self):
        """The runners, longest remaining keep-alive first (as /api/ps)."""
        with self.lock:
            return sorted(self.runners.values(), key=lambda r: r.expires_ns, reverse=True)

    def held_bytes(self):
        """Bytes held by all runners."""
        with self.lock:
            return sum(runner.held for runner in self.runners.values())

    def close(self):
        """Stop the expiry thread and free every runner."""
        self.stopping.set()
        with self.lock:
            for runner in list(self.runners.values()):
                self._drop(runner)

    def _drop(self, runner):
        if self.runners.get(runner.key) is runner:
            del self.runners[runner.key]
        runner.buffer = None

    def _schedule_unload(self, runner):
        runner.unload_generation += 1
        timer = threading.Timer(self.settings.unload_delay, self._unload_if_still_due, (runner, runner.unload_generation))
        timer.daemon = True
        timer.start()

    def _unload_if_still_due(self, runner, generation):
        with self.lock:
            if runner.unload_generation == generation and runner.refs == 0 and runner.session_ns == 0:
                self._drop(runner)

    def _expire_loop(self):
        while not self.stopping.wait(0.05):
            now = time.time_ns()
            with self.lock:
                for runner in list(self.runners.values()):
                    if runner.refs == 0 and 0 < runner.session_ns < FOREVER_NS and runner.expires_ns <= now:
                        self._drop(runner)


# --- the API ---------------------------------------------------------------------------

def _progress(status, digest=None, total=0, completed=0):
    line = {'status': status}
    if digest:
        line['digest'] = digest
    if total:
        line['total'] = total
    if completed:
        line['completed'] = completed
    return line


class Emulator:
    """The state behind the API: catalog, local store, scheduler, queue."""

    def __init__(self, settings):
        self.settings = settings
        self.lock = threading.RLock()
        self.catalog = dict(settings.catalog)
        self.store = ModelStore(settings.models_dir)
        self.scheduler = Scheduler(settings)
        self.busy = 0
        self.in_flight = 0

    def close(self):
        """Free everything held."""
        self.scheduler.close()

    # queue

    def admit(self):
        """Count a queued request in, or raise the 503 of a full queue (or of the busy hook)."""
        with self.lock:
            if self.busy > 0:
                self.busy -= 1
                raise ApiError(503, BUSY_MESSAGE)
            if self.in_flight >= self.settings.max_queue:
                raise ApiError(503, BUSY_MESSAGE)
            self.in_flight += 1

    def leave(self):
        """Count a queued request out."""
        with self.lock:
            self.in_flight -= 1

    # models

    def local(self, name):
        """The local model of `name`, or None."""
        with self.lock:
            return self.store.get(name)

    def pull(self, name, emit):
        """Pull `name` from the catalog, reporting progress through `emit`."""
        delay = self.settings.pull_delay
        emit(_progress('pulling manifest'))
        time.sleep(delay)
        with self.lock:
            found = self.catalog.get(name.key)
            target = self.store.existing_name(name)
            have = self.store.blobs()
        if found is None:
            raise ApiError(500, 'pull model manifest: file does not exist')
        model = model_from_catalog(target, found[1], self.settings.scale)
        for layer in model.layers + [ModelStore.config_layer(model)]:
            status, digest, size = 'pulling ' + layer['digest'][7:19], layer['digest'], layer['size']
            steps = [size] if layer['digest'] in have else [0, size // 2, size]
            for done in steps:
                emit(_progress(status, digest, size, done))
                time.sleep(delay)
        emit(_progress('verifying sha256 digest'))
        time.sleep(delay)
        emit(_progress('writing manifest'))
        with self.lock:
            self.store.put(model)
        time.sleep(delay)
        emit(_progress('success'))

    def create(self, name, request, emit):
        """Create `name` from request['from'] (pulled first if missing), reporting progress through `emit`."""
        if not request.get('from'):
            if request.get('files') or request.get('adapters'):
                raise ApiError(400, "the Ollama emulator creates models from 'from' only; 'files' and 'adapters' are not emulated")
            raise ApiError(400, "neither 'from' or 'files' was specified")
        source = ModelName.parse(request['from'])
        if not source.is_valid():
            raise ApiError(400, 'invalid model name')
        base = self.local(source)
        if base is None:
            self.pull(source, emit)
            base = self.local(source)
        with self.lock:
            target = self.store.existing_name(name)
            have = self.store.blobs()
        model = derive_model(base, target, request, emit)
        for layer in model.layers:
            emit(_progress(('using existing layer ' if layer['digest'] in have else 'creating new layer ') + layer['digest']))
        emit(_progress('writing manifest'))
        with self.lock:
            self.store.put(model)
        emit(_progress('success'))

    def copy(self, source, destination):
        """Copy a local model; False when the source does not exist."""
        with self.lock:
            model = self.store.get(source)
            if model is None:
                return False
            self.store.put(model.renamed(self.store.existing_name(destination)))
            return True

    def delete(self, name):
        """Delete a local model; False when it does not exist. A loaded model stays loaded, as in Ollama."""
        with self.lock:
            model = self.store.get(name)
            if model is None:
                return False
            self.store.remove(model)
            return True

    def set_catalog_entry(self, fields):
        """Add or modify a catalog entry (test hook); returns (name, entry)."""
        name = ModelName.parse(str(fields.get('name', '')))
        if not name.is_valid():
            raise ApiError(400, 'invalid model name')
        with self.lock:
            merged = dict(self.catalog.get(name.key, (name, {}))[1])
            for derived in ('digest', 'model_digest'):
                if derived not in fields:
                    merged.pop(derived, None)
            merged.update(fields)
            try:
                entry = complete_entry(name, merged)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
            self.catalog[name.key] = (name, entry)
            return name, entry


def _quantize(base, request, emit):
    """The weights layer and quantization level of a create with `quantize`, or the base's."""
    weights = dict(base.model_layer)
    level = base.config['file_type']
    wanted = str(request.get('quantize') or request.get('quantization') or '').upper()
    if not wanted:
        return weights, level
    if wanted not in QUANT_RATIO:
        raise ApiError(500, 'unsupported quantization type %s - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0' % wanted)
    if level not in ('F16', 'F32'):
        raise ApiError(500, 'quantization is only supported for F16 and F32 models')
    if level == wanted:
        return weights, level
    size = int(weights['size'] * QUANT_RATIO[wanted] / QUANT_RATIO[level])
    emit({'status': 'quantizing %s model to %s' % (level, wanted), 'digest': '0000000000000000000', 'total': weights['size'],
          'completed': weights['size']})
    return _layer('model', b'', digest=sha256_hex(weights['digest'] + wanted), size=size), wanted


def derive_model(base, name, request, emit):
    """The model /api/create writes: `base` with the request's template, system, license, parameters, messages, quantize."""
    weights, level = _quantize(base, request, emit)
    parent = base.name.display()
    layers = [dict(layer, **{'from': parent}) for layer in base.layers if layer['mediaType'] != MEDIA['model']]
    layers.insert(0, dict(weights, **{'from': parent}) if weights['digest'] == base.model_layer['digest'] else weights)
    for kind in ('template', 'system'):
        if request.get(kind):
            layers = [layer for layer in layers if layer['mediaType'] != MEDIA[kind]] + [_layer(kind, request[kind])]
    template, system = request.get('template') or base.template, request.get('system') or base.system
    added = request.get('license') or []
    added = [added] if isinstance(added, str) else [str(text) for text in added] if isinstance(added, list) else []
    layers += [_layer('license', text) for text in added]
    parameters = dict(base.parameters)
    parameters.update(request.get('parameters') or {})
    if parameters:
        layers = [layer for layer in layers if layer['mediaType'] != MEDIA['params']] + [_layer('params', _blob('params', parameters))]
    messages = request.get('messages') or base.messages
    if request.get('messages'):
        layers = [layer for layer in layers if layer['mediaType'] != MEDIA['messages']] + [_layer('messages', _blob('messages', messages))]
    details = base.details()
    details['quantization_level'] = level
    model_info = dict(base.model_info, **{'general.file_type': QUANT_TYPES.get(level, 2)})
    model = LocalModel(name, digest='', layers=layers, config=_config_blob(details, layers), template=template, system=system,
                       license=base.license + added, parameters=parameters, messages=messages, capabilities=base.capabilities,
                       model_info=model_info)
    model.digest = sha256_hex(json.dumps(model.manifest(), separators=(',', ':')))
    return model


def parameters_text(parameters):
    """/api/show `parameters`: Go `%-30s %#v` lines, one per list element, in random (map) order."""
    items = list(parameters.items())
    random.shuffle(items)
    lines = []
    for key, value in items:
        for item in (value if isinstance(value, list) else [value]):
            lines.append('%-30s %s' % (key, go_sharp_v(item)))
    return '\n'.join(lines)


def _modelfile_quote(text):
    if '\n' in text or text.startswith(' ') or text.endswith(' '):
        return '"""' + text + '"""'
    return text


def modelfile_text(model):
    """/api/show `modelfile`, as Ollama generates it (parameters in random order)."""
    lines = ['# Modelfile generated by "ollama show"', '# To build a new Modelfile based on this, replace FROM with:',
             '# FROM %s' % model.name.display(), '',
             'FROM /root/.ollama/models/blobs/%s' % model.model_layer['digest'].replace(':', '-')]
    if model.template:
        lines.append('TEMPLATE %s' % _modelfile_quote(model.template))
    if model.system:
        lines.append('SYSTEM %s' % _modelfile_quote(model.system))
    items = list(model.parameters.items())
    random.shuffle(items)
    for key, value in items:
        for item in (value if isinstance(value, list) else [value]):
            lines.append('PARAMETER %s %s' % (key, _modelfile_quote(go_v(item))))
    lines.extend('LICENSE %s' % _modelfile_quote(text) for text in model.license)
    for message in model.messages:
        lines.append('MESSAGE %s %s' % (message.get('role', ''), _modelfile_quote(str(message.get('content', '')))))
    return '\n'.join(lines) + '\n'


def show_response(model):
    """The /api/show answer; empty strings and lists are left out (Go omitempty)."""
    parent = next((layer.get('from', '') for layer in model.layers if layer['mediaType'] == MEDIA['model']), '')
    response = {'license': '\n'.join(model.license), 'modelfile': modelfile_text(model), 'parameters': parameters_text(model.parameters),
                'template': model.template, 'system': model.system, 'details': model.details(parent), 'messages': model.messages,
                'model_info': model.model_info, 'capabilities': model.capabilities, 'modified_at': rfc3339(model.modified_ns)}
    return {key: value for key, value in response.items() if value}


# --- request bodies (Go's encoding/json into api.*Request) -------------------------------

_STRING, _BOOL, _OBJECT, _ARRAY, _ANY, _DURATION = 'string', 'bool', 'map[string]interface {}', '[]api.Message', 'any', 'duration'
REQUESTS = {
    'PullRequest': {'model': _STRING, 'name': _STRING, 'insecure': _BOOL, 'stream': _BOOL},
    'DeleteRequest': {'model': _STRING, 'name': _STRING},
    'CopyRequest': {'source': _STRING, 'destination': _STRING},
    'ShowRequest': {'model': _STRING, 'name': _STRING, 'system': _STRING, 'template': _STRING, 'verbose': _BOOL, 'options': _OBJECT},
    'CreateRequest': {'model': _STRING, 'name': _STRING, 'from': _STRING, 'files': _OBJECT, 'adapters': _OBJECT, 'template': _STRING,
                      'license': _ANY, 'system': _STRING, 'parameters': _OBJECT, 'messages': _ARRAY, 'stream': _BOOL, 'quantize': _STRING,
                      'quantization': _STRING},
    'GenerateRequest': {'model': _STRING, 'prompt': _STRING, 'suffix': _STRING, 'system': _STRING, 'template': _STRING, 'stream': _BOOL,
                        'raw': _BOOL, 'format': _ANY, 'images': _ANY, 'options': _OBJECT, 'keep_alive': _DURATION, 'think': _ANY,
                        'context': _ANY},
    'ChatRequest': {'model': _STRING, 'messages': _ARRAY, 'stream': _BOOL, 'format': _ANY, 'options': _OBJECT, 'keep_alive': _DURATION,
                    'tools': _ANY, 'think': _ANY},
}
_PYTHON_TYPES = {_STRING: str, _BOOL: bool, _OBJECT: dict, _ARRAY: list}


def _json_kind(value):
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, (int, float)):
        return 'number'
    return {str: 'string', list: 'array', dict: 'object'}.get(type(value), 'null')


def _syntax_error(raw, exc):
    text = raw.decode('utf-8', 'replace')
    if exc.pos >= len(text.rstrip()):
        return 'unexpected EOF'
    return "invalid character %s looking for beginning of value" % ("'%s'" % text[exc.pos])


def decode_request(raw, struct):
    """The known fields of a JSON body as Go decodes it into api.<struct>; ApiError 400 as Ollama answers."""
    if not raw.strip():
        raise ApiError(400, 'missing request body')
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, _syntax_error(raw, exc) if isinstance(exc, json.JSONDecodeError) else str(exc)) from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, 'json: cannot unmarshal %s into Go value of type api.%s' % (_json_kind(body), struct))
    fields = REQUESTS[struct]
    request = {}
    for key in sorted(body, key=lambda k: k not in fields):
        field = key if key in fields else next((name for name in fields if name.lower() == key.lower()), None)
        value = body[key]
        if field is None or field in request or value is None:
            continue
        kind = fields[field]
        if kind == _DURATION:
            try:
                value = keep_alive_ns(value)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        elif kind in _PYTHON_TYPES and not (isinstance(value, _PYTHON_TYPES[kind]) and (kind == _BOOL or not isinstance(value, bool))):
            raise ApiError(400, 'json: cannot unmarshal %s into Go struct field %s.%s of type %s' % (_json_kind(value), struct, key, kind))
        request[field] = value
    return request


def _valid_name(text, status=400, message='invalid model name'):
    name = ModelName.parse(text)
    if not name.is_valid():
        raise ApiError(status, message)
    return name


# --- HTTP ------------------------------------------------------------------------------

ROUTES = {
    '/': {'GET': 'root', 'HEAD': 'root'},
    '/api/version': {'GET': 'version', 'HEAD': 'version'},
    '/api/tags': {'GET': 'tags', 'HEAD': 'tags'},
    '/api/ps': {'GET': 'ps'},
    '/api/pull': {'POST': 'pull'},
    '/api/push': {'POST': 'not_emulated'},
    '/api/delete': {'DELETE': 'delete'},
    '/api/create': {'POST': 'create'},
    '/api/show': {'POST': 'show'},
    '/api/copy': {'POST': 'copy'},
    '/api/generate': {'POST': 'generate'},
    '/api/chat': {'POST': 'chat'},
    '/api/embed': {'POST': 'not_emulated'},
    '/api/embeddings': {'POST': 'not_emulated'},
    '/api/blobs/': {'POST': 'not_emulated', 'HEAD': 'not_emulated'},
    '/_emulator/busy': {'POST': 'hook_busy'},
    '/_emulator/catalog': {'POST': 'hook_catalog'},
    '/_emulator/state': {'GET': 'hook_state'},
}


class StreamSink:
    """Progress as chunked NDJSON; an error before the first line becomes a plain JSON error answer."""

    def __init__(self, handler):
        self.handler = handler
        self.started = False

    def emit(self, line):
        """Send one line."""
        if not self.started:
            self.handler.start_chunked(200, 'application/x-ndjson')
            self.started = True
        self.handler.write_chunk((go_json(line) + '\n').encode())

    def fail(self, error):
        """End with an error."""
        if not self.started:
            self.handler.send_json(error.status, {'error': error.message})
            return
        self.handler.write_chunk((go_json({'error': error.message}) + '\n').encode())
        self.handler.end_chunked()

    def finish(self):
        """End normally."""
        if not self.started:
            self.handler.start_chunked(200, 'application/x-ndjson')
        self.handler.end_chunked()


class LatestSink:
    """Progress of a `"stream": false` request: only the last line is answered, or the error with its status."""

    def __init__(self, handler):
        self.handler = handler
        self.latest = {}

    def emit(self, line):
        """Remember the line."""
        self.latest = line

    def fail(self, error):
        """Answer the error."""
        self.handler.send_json(error.status, {'error': error.message})

    def finish(self):
        """Answer the last line."""
        self.handler.send_json(200, self.latest)


class Handler(BaseHTTPRequestHandler):  # pylint: disable=too-many-public-methods
    """Routes requests to the emulator's API, Gin-style."""

    protocol_version = 'HTTP/1.1'
    emulator = None  # set on the subclass made by make_server
    status = 0  # of the answer being sent, 0 before its status line
    head_only = False

    def do_GET(self):  # pylint: disable=invalid-name
        """GET."""
        self.dispatch('GET')

    def do_HEAD(self):  # pylint: disable=invalid-name
        """HEAD."""
        self.dispatch('HEAD')

    def do_POST(self):  # pylint: disable=invalid-name
        """POST."""
        self.dispatch('POST')

    def do_DELETE(self):  # pylint: disable=invalid-name
        """DELETE."""
        self.dispatch('DELETE')

    def do_PUT(self):  # pylint: disable=invalid-name
        """PUT."""
        self.dispatch('PUT')

    def do_PATCH(self):  # pylint: disable=invalid-name
        """PATCH."""
        self.dispatch('PATCH')

    def do_OPTIONS(self):  # pylint: disable=invalid-name
        """OPTIONS."""
        self.dispatch('OPTIONS')

    # plumbing

    def dispatch(self, method):
        """Read the body, route, answer, log one line."""
        started = time.monotonic()
        self.status = 0
        self.head_only = method == 'HEAD'
        path = self.path.split('?', 1)[0]
        try:
            self.route(method, path, self.read_body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        (self.server.log or sys.stderr).write('[GIN] %s | %3d | %12s | %15s | %-7s "%s"\n' % (
            time.strftime('%Y/%m/%d - %H:%M:%S'), self.status, '%.3fms' % ((time.monotonic() - started) * 1000),
            self.client_address[0], method, path))

    def route(self, method, path, body):
        """Answer one request: 404/405 as Gin, API errors as {"error": ...}, bugs as 500."""
        methods = ROUTES.get(path) or (ROUTES['/api/blobs/'] if path.startswith('/api/blobs/') else None)
        if methods is None:
            self.send_text(404, '404 page not found', 'text/plain')
            return
        if method not in methods:
            self.send_text(405, '405 method not allowed', 'text/plain', allow=', '.join(sorted(methods)))
            return
        try:
            getattr(self, 'api_' + methods[method])(body)
        except ApiError as error:
            self.send_json(error.status, {'error': error.message})
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # pylint: disable=broad-exception-caught
            traceback.print_exc()
            if not self.status:
                self.send_json(500, {'error': 'ollama emulator: %s: %s' % (type(exc).__name__, exc)})
            else:
                self.close_connection = True

    def read_body(self):
        """The request body (Content-Length or chunked)."""
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            data = b''
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length > 0 else b''

    def send_response(self, code, message=None):
        """Status line and Date, without Python's Server header."""
        self.status = code
        self.send_response_only(code, message)
        self.send_header('Date', self.date_time_string())

    def log_request(self, code='-', size='-'):
        """Requests are logged by dispatch, once."""

    def send_body(self, status, data, content_type=None, **headers):
        """A whole answer with Content-Length."""
        self.send_response(status)
        if content_type:
            self.send_header('Content-Type', content_type)
        for key, value in headers.items():
            self.send_header(key.capitalize(), value)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if not self.head_only:
            self.wfile.write(data)

    def send_json(self, status, obj):
        """A JSON answer (Gin's c.JSON)."""
        self.send_body(status, go_json(obj).encode(), 'application/json; charset=utf-8')

    def send_text(self, status, text, content_type='text/plain; charset=utf-8', **headers):
        """A text answer."""
        self.send_body(status, text.encode(), content_type, **headers)

    def start_chunked(self, status, content_type):
        """Begin a streamed answer."""
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()

    def write_chunk(self, data):
        """One chunk of a streamed answer."""
        self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
        self.wfile.flush()

    def end_chunked(self):
        """End a streamed answer."""
        self.wfile.write(b'0\r\n\r\n')
        self.wfile.flush()

    def run_progress(self, stream, work):
        """Run `work(emit)` answering its progress as a stream or, with stream false, its last line."""
        sink = StreamSink(self) if stream is not False else LatestSink(self)
        try:
            work(sink.emit)
        except ApiError as error:
            sink.fail(error)
            return
        sink.finish()

    def queued(self, work):
        """Run `work()` as a queued request (503 when the queue is full)."""
        self.emulator.admit()
        try:
            work()
        finally:
            self.emulator.leave()

    # routes

    def api_root(self, _body):
        """GET/HEAD /."""
        self.send_text(200, 'Ollama is running')

    def api_version(self, _body):
        """GET/HEAD /api/version."""
        self.send_json(200, {'version': VERSION})

    def api_tags(self, _body):
        """GET/HEAD /api/tags: local models, newest first."""
        with self.emulator.lock:
            models = self.emulator.store.listing()
        self.send_json(200, {'models': [{'name': m.name.display(), 'model': m.name.display(), 'modified_at': rfc3339(m.modified_ns),
                                         'size': m.size, 'digest': m.digest, 'details': m.details()} for m in models]})

    def api_ps(self, _body):
        """GET /api/ps: loaded models, longest remaining keep-alive first."""
        models = []
        for runner in self.emulator.scheduler.loaded():
            model = runner.model
            models.append({'name': model.name.display(), 'model': model.name.display(), 'size': model.size, 'digest': model.digest,
                           'details': model.details(), 'expires_at': rfc3339(runner.expires_ns), 'size_vram': 0,
                           'context_length': runner.context_length})
        self.send_json(200, {'models': models})

    def api_pull(self, body):
        """POST /api/pull."""
        request = decode_request(body, 'PullRequest')
        name = _valid_name(request.get('model') or request.get('name') or '')
        self.queued(lambda: self.run_progress(request.get('stream'), lambda emit: self.emulator.pull(name, emit)))

    def api_create(self, body):
        """POST /api/create."""
        request = decode_request(body, 'CreateRequest')
        name = _valid_name(request.get('model') or request.get('name') or '')
        self.queued(lambda: self.run_progress(request.get('stream'), lambda emit: self.emulator.create(name, request, emit)))

    def api_delete(self, body):
        """DELETE /api/delete."""
        request = decode_request(body, 'DeleteRequest')
        text = request.get('model') or request.get('name') or ''
        name = _valid_name(text, message='name %s is invalid' % go_quote(text))
        if not self.emulator.delete(name):
            raise ApiError(404, "model '%s' not found" % text)
        self.send_body(200, b'')

    def api_copy(self, body):
        """POST /api/copy."""
        request = decode_request(body, 'CopyRequest')
        source, destination = request.get('source', ''), request.get('destination', '')
        source_name = _valid_name(source, message='source %s is invalid' % go_quote(source))
        destination_name = _valid_name(destination, message='destination %s is invalid' % go_quote(destination))
        if not self.emulator.copy(source_name, destination_name):
            raise ApiError(404, 'model %s not found' % go_quote(source))
        self.send_body(200, b'')

    def api_show(self, body):
        """POST /api/show."""
        request = decode_request(body, 'ShowRequest')
        text = request.get('model') or request.get('name') or ''
        if not text:
            raise ApiError(400, 'model is required')
        model = self.emulator.local(_valid_name(text))
        if model is None:
            raise ApiError(404, "model '%s' not found" % text)
        self.send_json(200, show_response(model))

    def api_generate(self, body):
        """POST /api/generate: load/unload without a prompt, a fixed answer with one."""
        request = decode_request(body, 'GenerateRequest')
        text = request.get('model', '')
        model = self.emulator.local(_valid_name(text, 404, "model '%s' not found" % text))
        self.infer(request, model, bool(request.get('prompt')), {'response': ''})

    def api_chat(self, body):
        """POST /api/chat: load/unload without messages, a fixed answer with them."""
        request = decode_request(body, 'ChatRequest')
        model = self.emulator.local(_valid_name(request.get('model', ''), 400, 'model is required'))
        self.infer(request, model, bool(request.get('messages')), {'message': {'role': 'assistant', 'content': ''}})

    def infer(self, request, model, asked, empty):
        """The common part of generate and chat."""
        if model is None:
            raise ApiError(404, "model '%s' not found" % request.get('model', ''))
        keep_alive = request.get('keep_alive')
        if not asked and keep_alive == 0:
            self.emulator.scheduler.expire(model)
            self.send_json(200, self.answer(request, empty, done_reason='unload'))
            return

        def work():
            session = self.emulator.settings.keep_alive_ns if keep_alive is None else keep_alive
            runner = self.emulator.scheduler.acquire(model, session, request.get('options') or {})
            if not asked:
                # released before answering, so the client's next request sees this model idle
                self.emulator.scheduler.release(runner)
                self.send_json(200, self.answer(request, empty, done_reason='load'))
                return
            try:
                with runner.slots:
                    time.sleep(self.emulator.settings.generate_delay)
                self.send_answer(request, 'message' in empty)
            finally:
                self.emulator.scheduler.release(runner)
        self.queued(work)

    @staticmethod
    def answer(request, fields, **extra):
        """One generate/chat answer object; `extra` (done_reason, metrics) marks the last one, done."""
        result = {'model': request.get('model', ''), 'created_at': rfc3339(time.time_ns(), utc=True)}
        result.update(json.loads(json.dumps(fields)))
        result['done'] = bool(extra)
        result.update(extra)
        return result

    def send_answer(self, request, chat):
        """The fixed answer, streamed word by word or whole."""
        words = [word + ' ' for word in ANSWER.split(' ')]
        words[-1] = words[-1].rstrip()
        metrics = {'done_reason': 'stop', 'total_duration': 12345678, 'load_duration': 1234567, 'prompt_eval_count': 12,
                   'prompt_eval_duration': 2345678, 'eval_count': len(words), 'eval_duration': 8765432}
        if not chat:
            metrics['context'] = list(range(1, 13 + len(words)))

        def part(text):
            return {'message': {'role': 'assistant', 'content': text}} if chat else {'response': text}
        if request.get('stream') is False:
            self.send_json(200, self.answer(request, part(''.join(words)), **metrics))
            return
        self.start_chunked(200, 'application/x-ndjson')
        for word in words:
            self.write_chunk((go_json(self.answer(request, part(word))) + '\n').encode())
        self.write_chunk((go_json(self.answer(request, part(''), **metrics)) + '\n').encode())
        self.end_chunked()

    def api_not_emulated(self, _body):
        """Routes of Ollama that the emulator knows but does not emulate."""
        raise ApiError(500, 'not emulated by the Ollama emulator: %s' % self.path)

    # test hooks

    def api_hook_busy(self, body):
        """POST /_emulator/busy {"count": N}."""
        try:
            count = int(json.loads(body or b'{}').get('count', 1))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ApiError(400, 'expected {"count": N}: %s' % exc) from None
        with self.emulator.lock:
            self.emulator.busy = count
        self.send_json(200, {'busy': count})

    def api_hook_catalog(self, body):
        """POST /_emulator/catalog {"name", ...entry fields}."""
        try:
            fields = json.loads(body or b'{}')
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        name, entry = self.emulator.set_catalog_entry(fields)
        self.send_json(200, {'name': name.display(), 'digest': entry['digest'], 'size': entry['size']})

    def api_hook_state(self, _body):
        """GET /_emulator/state."""
        loaded = [{'name': r.model.name.display(), 'digest': r.model.digest, 'size': r.model.size, 'held_bytes': r.held,
                   'refs': r.refs, 'expires_at': rfc3339(r.expires_ns)} for r in self.emulator.scheduler.loaded()]
        with self.emulator.lock:
            state = {'loaded': loaded, 'held_bytes': self.emulator.scheduler.held_bytes(), 'in_flight': self.emulator.in_flight,
                     'busy': self.emulator.busy, 'models': [m.name.display() for m in self.emulator.store.listing()]}
        self.send_json(200, state)


class EmulatorServer(ThreadingHTTPServer):
    """The HTTP server, with its emulator."""

    daemon_threads = True
    block_on_close = False
    log = None  # where requests are logged: a file object, None = sys.stderr

    def __init__(self, settings):
        self.emulator = Emulator(settings)
        handler = type('BoundHandler', (Handler,), {'emulator': self.emulator})
        if ':' in settings.host:
            self.address_family = socket.AF_INET6
        super().__init__((settings.host, settings.port), handler)

    def server_close(self):
        """Close the socket and free the emulator's memory."""
        super().server_close()
        self.emulator.close()


def make_server(settings=None):
    """An EmulatorServer bound per `settings` (default: from the environment); call serve_forever()."""
    return EmulatorServer(settings or Settings())


def main(argv=None):
    """Command line entry point."""
    parser = argparse.ArgumentParser(description='An emulator of the Ollama HTTP API for tests.')
    parser.add_argument('--host', help='bind address (default: from OLLAMA_HOST, else 127.0.0.1)')
    parser.add_argument('--port', type=int, help='port (default: from OLLAMA_HOST, else 11434; 0 = any free port)')
    parser.add_argument('--catalog', help='JSON file of the pullable models (default: OLLAMA_EMULATOR_CATALOG, else built in)')
    parser.add_argument('--scale', type=float, help='size factor of every model (default: OLLAMA_EMULATOR_SCALE, else 1.0)')
    args = parser.parse_args(argv)
    try:
        settings = Settings(host=args.host, port=args.port, catalog=args.catalog, scale=args.scale)
        server = make_server(settings)
    except (OSError, ValueError) as exc:
        parser.exit(2, 'ollama_emulator: %s\n' % exc)
    host, port = server.server_address[:2]
    sys.stderr.write('time=%s level=INFO source=ollama_emulator.py msg="Listening on %s:%d (version %s)" models=%s scale=%s\n'
                     % (rfc3339(time.time_ns()), host, port, VERSION, settings.models_dir or '(memory)', settings.scale))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
