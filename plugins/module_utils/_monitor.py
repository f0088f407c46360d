# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""sutazai-monitor: the self-healing daemon (memory guard in a loop, health checks, bounded restarts, metrics).

PRIVATE to the collection: no compatibility promise. Plain Python with no Ansible import: it runs
on hosts without Ansible with the standard library, the docker SDK, prometheus_client (both
optional at import time) and the collection's module_utils. Entry point: `main(argv)`.

One loop, three duties, each on its own period:
  1. guard: a memory guard pass (`_guard.Guard.run`) every `guard_interval` seconds (default 1),
     reading cgroupfs and /proc, never `docker stats`; scoped to the containers the monitor manages,
     whose list is asked of the engine only when its events say something changed (or every
     `list_refresh` seconds, or every pass while the event stream is down);
  2. health: every `health_interval` seconds, Docker's health status (from one container list call)
     and the HTTP health URL a container names in its `sutazai.health_url` label (`{ip}` and `{name}`
     are replaced by the container's address and name), probed in parallel with `http_timeout`;
  3. restarts: the engine's /events stream (read by a thread, replayed from the last event handled
     after a daemon restart) feeds `_monitor_restarts.RestartPolicy`, whose decisions are carried out
     here: start a dead container, restart an unhealthy one, count the restarts Docker's own restart
     policy (`unless-stopped`) makes after a failure, give up after `restart_limit` per
     `restart_window` (restarts by Docker and by the monitor alike; giving up stops the container, which
     also ends Docker's restart loop). OOM-killed containers the monitor restarts wait until the guard
     level is back to `ok`; when Docker restarts one at once, a guard pass runs at once (not at the next
     interval) to make room. The engine calls that restart or stop a container run in a worker thread,
     so an unhealthy container's `docker restart` (up to `stop_timeout`) never holds up the loop.
Watchdog: the loop pings systemd's watchdog after every cycle. A cycle still waits on the engine
(one call that hangs until `docker_timeout`, one guard stop: `docker_timeout` + `stop_timeout`), on
the health probes (`http_timeout`) and on the state file's lock (`state_lock_timeout`, twice);
`watchdog_seconds(config)` adds these up with the longer interval and is printed as `watchdog_sec` by
--check-config: WatchdogSec must be at least that (the daemon warns at start when $WATCHDOG_USEC is
shorter).
Managed containers: those with the label `label` (default `sutazai.tier`) whose name starts with
`name_prefix` (default: any), of the Compose project or Swarm stack `project` when it is set (the memory
guard's scope, `_containers.Scope`: on an engine shared with other projects theirs are neither stopped,
restarted nor restored), minus those labelled `sutazai.monitor=false`.

Every decision is one JSON line on stdout (journald keeps and rotates it): ts, level, event, and the
what / why / figures of the decision. A failing dependency (Docker restarting, Ollama unreachable,
a damaged state file) gives one warning line per distinct message per `warn_every` seconds and a
retry on the next cycle, never a traceback. systemd: READY=1 after the first cycle, WATCHDOG=1 after
every cycle, STOPPING=1 on SIGTERM/SIGINT (stdlib socket to $NOTIFY_SOCKET; no systemd module).

Configuration: a file given with --config, JSON (a `{...}` object), YAML (`.yml`/`.yaml`, when
PyYAML is installed: Debian's python3-yaml) or `key = value` lines (`#` comments); `--set key=value`
overrides. Keys and defaults are in DEFAULTS.
"""

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups
from ansible_collections.sutazai.ops.plugins.module_utils import _guard
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_policy as gpolicy
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate
from ansible_collections.sutazai.ops.plugins.module_utils import _monitor_metrics as mmetrics
from ansible_collections.sutazai.ops.plugins.module_utils import _monitor_restarts as mrestarts
from ansible_collections.sutazai.ops.plugins.module_utils._ollama import OllamaClient

try:
    from ansible_collections.sutazai.ops.plugins.module_utils import _docker as docker_factory
except ImportError:  # pragma: no cover - an older copy of the collection
    docker_factory = None

try:
    from ansible_collections.sutazai.ops.plugins.module_utils import _oom
except ImportError:  # pragma: no cover - an older copy of the collection
    _oom = None

from ansible_collections.sutazai.ops.plugins.module_utils import _containers

try:
    import docker
    import docker.errors
    HAS_DOCKER = True
except ImportError:  # pragma: no cover - depends on the host
    docker = None
    HAS_DOCKER = False

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - depends on the host
    HAS_YAML = False

TIER_LABEL = _containers.TIER_LABEL
SERVICE_LABEL = _containers.SERVICE_LABEL
HEALTH_URL_LABEL = 'sutazai.health_url'
OPT_OUT_LABEL = 'sutazai.monitor'
SERVICE_LABELS = (SERVICE_LABEL, 'com.docker.compose.service')
EVENT_ACTIONS = ('die', 'kill', 'stop', 'oom', 'start', 'destroy', 'health_status')

DEFAULTS = {
    'docker_host': None,                  # None: DOCKER_HOST, else unix:///var/run/docker.sock
    'docker_timeout': 30,
    'ollama_host': 'http://127.0.0.1:11434',  # empty: no Ollama
    'ollama_timeout': 2.0,
    'stack_cgroup': None,
    'label': TIER_LABEL,
    'name_prefix': '',
    'project': None,                      # the Compose project / Swarm stack managed (None: any)
    'guard_enabled': True,
    'guard_mode': gpolicy.DEFAULT_MODE,
    'guard_soft': None,
    'guard_hard': None,
    'guard_restore_below': None,
    'guard_restore_after': None,
    'guard_interval': 1.0,
    'guard_state_file': '/var/lib/sutazai/memory_guard.json',
    'stop_timeout': 20,
    'health_interval': 2.0,
    'list_refresh': 30.0,
    'replay_max': 900.0,                  # after a daemon restart, engine events are replayed at most this far back
    'http_timeout': 2.0,
    'unhealthy_for': 60.0,
    'restart_limit': 3,
    'restart_window': 3600.0,
    'restart_backoff': 1.0,
    'restart_backoff_max': 60.0,
    'restart_state_file': '/var/lib/sutazai/monitor_restarts.json',  # older separate history: moved into guard_state_file once
    'state_lock_timeout': 10.0,           # seconds a guard pass or a restart record waits for the state file's lock
    'listen_address': '127.0.0.1',
    'listen_port': 8082,
    'stall_intervals': 10,
    'warn_every': 60.0,
    'kernel_log': True,                   # read /dev/kmsg (or dmesg) to tell OOM kills the engine does not report
    'proc_root': '/proc',
    'cgroup_root': '/sys/fs/cgroup',
}


class ConfigError(ValueError):
    """A configuration value or file the daemon cannot use; the message names it."""


def _coerce(key, value):
    default = DEFAULTS[key]
    if value is None or (isinstance(value, str) and value.strip().lower() in ('', 'none', 'null') and default is None):
        return None
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ('1', 'true', 'yes', 'on'):
                return True
            if text in ('0', 'false', 'no', 'off'):
                return False
            raise ValueError('not a boolean')
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float) or key.startswith('guard_') and key not in ('guard_mode', 'guard_state_file'):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError('%s: %r is not usable (%s)' % (key, value, exc)) from None
    return str(value).strip() if isinstance(value, str) else value


def parse_config_text(text, name='config'):
    """Settings from the text of a config file: JSON object, YAML mapping (for .yml/.yaml) or key=value lines."""
    stripped = text.strip()
    if stripped.startswith('{'):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise ConfigError('%s: not valid JSON: %s' % (name, exc)) from None
    elif name.endswith(('.yml', '.yaml')):
        if not HAS_YAML:
            raise ConfigError('%s: YAML needs PyYAML (Debian: python3-yaml); use JSON or key=value lines' % name)
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError('%s: not valid YAML: %s' % (name, exc)) from None
    else:
        data = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            key, sep, value = line.partition('=')
            if not sep:
                raise ConfigError('%s line %d: expected key = value, got %r' % (name, number, line))
            data[key.strip()] = value.strip().strip('"\'')
    if not isinstance(data, dict):
        raise ConfigError('%s: expected a mapping of settings' % name)
    return data


def build_config(values=None, overrides=None):
    """DEFAULTS updated by `values` then `overrides` (dicts), checked and typed. Raises ConfigError."""
    config = dict(DEFAULTS)
    for source in (values or {}, overrides or {}):
        for key, value in source.items():
            if key not in DEFAULTS:
                raise ConfigError('unknown setting %r (known: %s)' % (key, ', '.join(sorted(DEFAULTS))))
            config[key] = _coerce(key, value)
    for key in ('guard_interval', 'health_interval', 'list_refresh', 'replay_max', 'http_timeout', 'restart_window', 'restart_backoff', 'docker_timeout',
                'state_lock_timeout'):
        if config[key] <= 0:
            raise ConfigError('%s must be positive, got %s' % (key, config[key]))
    if config['restart_limit'] < 0:
        raise ConfigError('restart_limit must not be negative, got %s' % config['restart_limit'])
    if not 0 <= config['listen_port'] <= 65535:
        raise ConfigError('listen_port %s is not a TCP port' % config['listen_port'])
    try:
        config['_scope'] = _containers.Scope(config['project'])
    except _containers.ScopeError as exc:
        raise ConfigError(str(exc)) from None
    try:
        config['_thresholds'] = gpolicy.resolve_thresholds(config['guard_mode'], config['guard_soft'], config['guard_hard'],
                                                           config['guard_restore_below'], config['guard_restore_after'])
    except gpolicy.GuardConfigError as exc:
        raise ConfigError('guard: %s' % exc) from None
    return config


def watchdog_seconds(config):
    """The shortest systemd WatchdogSec (whole seconds) for `config`: the longest a cycle may legitimately block.

    The longer interval, plus one engine call that hangs until `docker_timeout`, one guard stop
    (`docker_timeout` + `stop_timeout`: the SDK adds the stop timeout to the HTTP timeout), the health
    probes (`http_timeout`, in parallel) and two waits for the state file's lock (the guard pass and a
    restart record). Restarts and give-up stops do not count: they run in a worker thread.
    """
    return int(math.ceil(max(config['guard_interval'], config['health_interval']) + 2 * config['docker_timeout']
                         + config['stop_timeout'] + config['http_timeout'] + 2 * config['state_lock_timeout']))


def load_config(path=None, overrides=None):
    """The daemon's configuration from a file (or none) and overrides."""
    values = {}
    if path:
        try:
            with open(path, 'r', encoding='utf-8') as handle:
                values = parse_config_text(handle.read(), path)
        except OSError as exc:
            raise ConfigError('cannot read the config file %s: %s' % (path, exc.strerror or exc)) from None
    return build_config(values, overrides)


def sd_notify(message, environ=None):
    """Send `message` (READY=1, WATCHDOG=1, STOPPING=1) to systemd's $NOTIFY_SOCKET; False when there is none."""
    environ = os.environ if environ is None else environ
    address = environ.get('NOTIFY_SOCKET')
    if not address:
        return False
    if address.startswith('@'):
        address = '\0' + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


class JsonLog:
    """One JSON object per line: ts, level, event and the decision's fields. Repeated warnings are rate-limited."""

    def __init__(self, out=None, clock=time.time, warn_every=60.0):
        self.out = out or sys.stdout
        self.clock = clock
        self.warn_every = warn_every
        self._warned = {}
        self.lock = threading.Lock()

    def __call__(self, event, level='info', **fields):
        now = self.clock()
        record = {'ts': datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec='milliseconds'),
                  'level': level, 'event': event}
        record.update(fields)
        line = json.dumps(record, sort_keys=False, default=str)
        with self.lock:
            try:
                self.out.write(line + '\n')
                self.out.flush()
            except (OSError, ValueError):
                pass  # stdout gone (journald restarting): the decision is still taken

    def warn(self, message, key=None, **fields):
        """A warning, logged at most once per `warn_every` seconds for the same key (default: the message)."""
        now = self.clock()
        key = key or message
        last = self._warned.get(key)
        if last is not None and now - last < self.warn_every:
            return False
        self._warned[key] = now
        self('warning', level='warning', msg=message, **fields)
        return True


def restart_policy_of(details):
    """The name of a container's Docker restart policy from its inspect data ('no' when none)."""
    return (((details or {}).get('HostConfig') or {}).get('RestartPolicy') or {}).get('Name') or 'no'


def container_name(item):
    """A container's name from the engine's list entry."""
    return (item.get('Names') or ['/' + item['Id'][:12]])[0].lstrip('/')


def container_ip(item):
    """The first IP address of a listed container, or None."""
    for network in ((item.get('NetworkSettings') or {}).get('Networks') or {}).values():
        if network.get('IPAddress'):
            return network['IPAddress']
    return None


def docker_health(item):
    """'healthy', 'unhealthy', 'starting' or None from the list entry's Status text (`Up 3 minutes (unhealthy)`)."""
    status = item.get('Status') or ''
    if '(unhealthy)' in status:
        return 'unhealthy'
    if '(healthy)' in status:
        return 'healthy'
    if '(health: starting)' in status:
        return 'starting'
    return None


def probe_http(url, timeout):
    """(healthy, detail) of one GET of a health URL: healthy for a 2xx/3xx answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, method='GET'), timeout=timeout) as response:
            return response.status < 400, 'GET %s: %s' % (url, response.status)
    except urllib.error.HTTPError as exc:
        return False, 'GET %s: %s' % (url, exc.code)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, 'GET %s: %s' % (url, getattr(exc, 'reason', exc))


class LightCgroupReader:
    """A container's working set and limit from three cgroupfs files (v1 or v2), for a reading every second.

    The same figures as _cgroups.read_memory (working set = usage - inactive_file, limit None when
    unlimited) without the OOM and swap files the loop does not need; the stack cgroup is read by
    the guard's own CgroupReader.
    """

    UNLIMITED = 2 ** 60

    def __init__(self, root=_cgroups.DEFAULT_ROOT):
        self.root = root
        self.full = _guard.CgroupReader(root)
        self._lookup = _containers.ContainerMemory(root)  # the one container -> cgroup lookup
        self._paths = {}

    def read_group(self, name):
        """The stack cgroup's figures (the guard's reader)."""
        return self.full.read_group(name)

    @staticmethod
    def _text(path):
        with open(path, 'rb') as handle:
            return handle.read()

    def read_container(self, container_id):
        """{'usage': working set, 'limit': bytes or None}; None when the container has no cgroup (not running)."""
        found = self._paths.get(container_id)
        if found is None:
            path = self._lookup.cgroup_path(container_id)
            if path is None:
                return None
            version = 2 if os.path.isfile(os.path.join(path, 'memory.current')) else 1
            found = self._paths[container_id] = (path, version)
        path, version = found
        try:
            if version == 2:
                usage = int(self._text(path + '/memory.current'))
                limit_text = self._text(path + '/memory.max').strip()
                limit = None if limit_text == b'max' else int(limit_text)
                key = b'\ninactive_file '
            else:
                usage = int(self._text(path + '/memory.usage_in_bytes'))
                limit = int(self._text(path + '/memory.limit_in_bytes'))
                key = b'\ntotal_inactive_file '
            stat = b'\n' + self._text(path + '/memory.stat')
        except (OSError, ValueError):
            self._paths.pop(container_id, None)
            return None
        inactive = 0
        start = stat.find(key)
        if start >= 0:
            end = stat.find(b'\n', start + len(key))
            inactive = int(stat[start + len(key):end if end >= 0 else None])
        working_set = usage - inactive if inactive < usage else usage
        if limit is not None and limit >= self.UNLIMITED:
            limit = None
        return {'usage': working_set, 'limit': limit, 'oom_kills': None}

    def forget(self, container_id):
        """Drop the cached path of a container (it was removed)."""
        self._paths.pop(container_id, None)


class KernelOomDetector:
    """Tells an OOM kill from the kernel log for a container that died with exit code 137 and no stop request.

    Where cgroup v1 hides a kill caused by the stack cgroup's limit (no `oom` event, no OOMKilled),
    the kernel's "Killed process" line names the victim's cgroup (task_memcg) and the cgroup whose
    limit was hit (oom_memcg): the same cgroup means the container's OWN limit ('own_limit'); an
    ancestor (the stack) or none (the whole host) means memory pressure ('pressure'). Reads
    /dev/kmsg (or dmesg) from where it was when the daemon started, through _oom.KernelLog.
    """

    def __init__(self, kernel_log=None, keep=300.0, clock=time.time):
        self.kernel = kernel_log
        if self.kernel is None and _oom is not None:
            try:
                self.kernel = _oom.KernelLog('auto')
                if self.kernel.readable:
                    self.kernel.seek_end()
            except Exception:  # pylint: disable=broad-exception-caught
                self.kernel = None
        self.keep = keep
        self.clock = clock
        self.seen = {}  # container id -> (time read, kind)

    @property
    def readable(self):
        """True when a kernel log can be read."""
        return bool(self.kernel is not None and self.kernel.readable)

    def __call__(self, container_id, name, exit_code, died_at):
        if exit_code != 137 or not self.readable:
            return None
        now = self.clock()
        for kill in self.kernel.read():
            task = kill.get('task_memcg')
            victim = kill.get('container_id') or (_oom.container_id_of(task) if _oom else None)
            if victim:
                own = kill.get('oom_memcg') is not None and kill.get('oom_memcg').rstrip('/') == (task or '').rstrip('/')
                self.seen[victim] = (now, 'own_limit' if own else 'pressure')
        for cid, (when, _kind) in list(self.seen.items()):
            if now - when > self.keep:
                del self.seen[cid]
        found = self.seen.pop(container_id, None)
        return found[1] if found else None


class ScopedReadings(_guard.Readings):
    """The guard's readings limited to the monitor's containers, with one engine call per reading (a list, no inspect)."""

    def __init__(self, monitor, cgroups, **kwargs):
        super().__init__(cgroups, **kwargs)
        self.monitor = monitor

    def containers(self):
        listed = self.monitor.list_containers(warn=self._warn)
        self.scope = self.monitor.config['_scope']
        self.outside = list(self.monitor.outside)  # listed but not managed: never stopped, their records never restored
        if listed is None:
            return []
        result = []
        for item in listed:
            running = item.get('State') == 'running'
            entry = {'id': item['Id'], 'name': container_name(item), 'tier': self.monitor.tier_of(item), 'running': running,
                     'project': _containers.project_of(item.get('Labels')),
                     'usage': 0, 'limit': None, 'oom_killed': False, 'restart_count': 0}
            if running:
                stats = self.cgroups.read_container(item['Id'])
                if stats:
                    entry['usage'], entry['limit'] = stats['usage'], stats['limit']
            result.append(entry)
        return result


class EventPump(threading.Thread):
    """Reads the engine's container events into a queue; reconnects (from the last event) when the engine goes away."""

    def __init__(self, monitor, events, since_nanos, stop, retry=2.0):
        super().__init__(name='monitor-events', daemon=True)
        self.monitor = monitor
        self.events = events
        self.since = since_nanos
        self.stop_event = stop
        self.retry = retry
        self.stream = None

    def run(self):
        while not self.stop_event.is_set():
            client = self.monitor.docker_client()
            if client is None:
                self.stop_event.wait(self.retry)
                continue
            try:
                since = '%d.%09d' % divmod(self.since, 10 ** 9) if self.since else None
                self.stream = client.api.events(since=since, decode=True,
                                                filters={'type': 'container', 'label': [self.monitor.config['label']]})
                self.events.put({'_connected': True})
                for event in self.stream:
                    if self.stop_event.is_set():
                        break
                    nanos = event.get('timeNano') or int(event.get('time', 0)) * 10 ** 9
                    self.since = max(self.since or 0, nanos)
                    self.events.put(event)
                if not self.stop_event.is_set():
                    self.events.put({'_error': 'the engine closed the event stream'})
            except Exception as exc:  # pylint: disable=broad-exception-caught
                if not self.stop_event.is_set():
                    self.events.put({'_error': 'engine events: %s' % exc})
            self.stream = None
            self.stop_event.wait(self.retry)

    def close(self):
        """Unblock the reading thread."""
        stream = self.stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # pylint: disable=broad-exception-caught
                pass


class Monitor:  # pylint: disable=too-many-instance-attributes
    """The daemon. Injectable parts (docker_client_factory, ollama_client, cgroups, clock, out) make it testable."""

    def __init__(self, config, docker_client_factory=None, ollama_client=None, cgroups=None, clock=time.time,
                 monotonic=time.monotonic, out=None, environ=None, oom_detector=None, run_action=None):
        self.config = config
        self.clock = clock
        self.monotonic = monotonic
        self.environ = os.environ if environ is None else environ
        self.facts = {'started': clock(), 'last_success': None, 'duration': None, 'cycles': 0, 'warnings': [], 'docker_down': False}
        self.log = JsonLog(out, clock, config['warn_every'])
        self._docker_factory = docker_client_factory or self._default_docker_client
        self._docker = None
        self._docker_lock = threading.Lock()  # the event thread and the loop both ask for the client
        self.docker_down = False
        self.cgroups = cgroups or LightCgroupReader(config['cgroup_root'])
        if ollama_client is None and config['ollama_host']:
            ollama_client = OllamaClient(config['ollama_host'], timeout=config['ollama_timeout'], retries=0)
        self.ollama = ollama_client
        self.guard_store = gstate.StateStore(config['guard_state_file'], lock_timeout=config['state_lock_timeout'])
        self.guard_stopped = set()
        self._load_guard_stopped()
        if oom_detector is None and config['kernel_log']:
            oom_detector = KernelOomDetector(clock=clock)
        store = mrestarts.GuardFileRestartStore(gstate.StateStore(config['guard_state_file'], lock_timeout=config['state_lock_timeout']),
                                                legacy=config['restart_state_file'])
        self.policy = mrestarts.RestartPolicy(
            store, limit=config['restart_limit'], window=config['restart_window'],
            unhealthy_for=config['unhealthy_for'], backoff=config['restart_backoff'], backoff_max=config['restart_backoff_max'],
            clock=clock, guard_stopped=lambda: self.guard_stopped, oom_detector=oom_detector, engine_started=self._started_by_engine)
        self.readings = ScopedReadings(self, self.cgroups, proc_root=config['proc_root'], stack_cgroup=config['stack_cgroup'],
                                       ollama_client=self.ollama, clock=clock)
        self.guard = _guard.Guard(config['_thresholds'], self.readings, _guard.Actions(None, self.ollama, stop_timeout=config['stop_timeout']),
                                  self.guard_store, clock=clock)
        self.events = queue.Queue()
        self.stop_event = threading.Event()
        self.pump = None
        self.server = None
        self._listed = None
        self.outside = []  # ids the engine listed with the label that the monitor does not manage (the guard leaves them alone)
        self._listed_at = None
        self._list_dirty = True
        self._events_live = False
        self._next_guard = 0.0
        self._next_health = 0.0
        self._level = None
        self._models = []
        self._events_saved = self.policy.history.get('events_since')
        self._executor = None
        self._run_action = run_action  # callable(fn): runs fn later (default: the restart worker thread)
        self._action_worker = None
        self._guard_now = None         # why a guard pass must run before the next interval

    # ---- dependencies ---------------------------------------------------------------------
    def _default_docker_client(self):
        options = {'docker_host': self.config['docker_host'], 'timeout': int(self.config['docker_timeout'])}
        if docker_factory is not None and hasattr(docker_factory, 'create_client'):
            return docker_factory.create_client(options)
        if not HAS_DOCKER:
            raise RuntimeError('the Docker SDK for Python (docker) is not installed')
        return docker.DockerClient(base_url=self.config['docker_host'] or os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock',
                                   version='auto', timeout=int(self.config['docker_timeout']))

    def docker_client(self):
        """The engine client, made on first use; None (with a warning) while the engine cannot be reached."""
        with self._docker_lock:
            if self._docker is None:
                try:
                    self._docker = self._docker_factory()
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    self._docker_problem('cannot connect to the Docker engine: %s' % exc)
                    return None
                self.guard.actions.docker = self._docker
            return self._docker

    def _docker_problem(self, message):
        self.docker_down = self.facts['docker_down'] = True
        self._warn(message, key='docker')

    def _warn(self, message, key=None):
        if self.log.warn(message, key=key):
            self.facts['warnings'] = (self.facts['warnings'] + [message])[-10:]

    def _load_guard_stopped(self):
        try:
            state = self.guard_store.load()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn('guard state %s not readable: %s' % (self.config['guard_state_file'], exc), key='guard-state')
            return
        self.guard_stopped = set(r['id'] for r in state.get('stopped', [])) | set(r['name'] for r in state.get('stopped', []))

    def _started_by_engine(self, container_id):
        """True when the container's latest start was Docker's restart policy (RestartCount > 0: a `docker start`
        sets it to 0), False when someone started it, None when the engine cannot say."""
        client = self.docker_client()
        if client is None:
            return None
        try:
            details = client.api.inspect_container(container_id)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            if type(exc).__name__ == 'NotFound':
                return False
            self._docker_problem('Docker engine not readable: %s' % exc)
            return None
        return restart_policy_of(details) != 'no' and int(details.get('RestartCount') or 0) > 0

    # ---- containers -----------------------------------------------------------------------
    def tier_of(self, item):
        """The tier of a listed container (int), or None."""
        try:
            return int((item.get('Labels') or {}).get(TIER_LABEL))
        except (TypeError, ValueError):
            return None

    def in_scope(self, name, labels):
        """True for a container the monitor manages (`labels`: its labels, or an event's attributes, which hold them)."""
        if (labels or {}).get(OPT_OUT_LABEL, '').lower() in ('false', 'no', '0', 'off'):
            return False
        return name.startswith(self.config['name_prefix']) and self.config['_scope'].matches(labels)

    def list_containers(self, warn=None):
        """The managed containers; None when the engine cannot be read.

        The engine is asked (one call) only when its events said something changed, when the event
        stream is down, or after `list_refresh` seconds; otherwise the last list is reused (the memory
        figures are always read fresh from cgroupfs).
        """
        if (self._listed is not None and not self._list_dirty and self._events_live
                and self.monotonic() - self._listed_at < self.config['list_refresh']):
            return self._listed
        client = self.docker_client()
        if client is None:
            return None
        try:
            listed = client.api.containers(all=True, filters={'label': self.config['label']})
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._docker_problem('Docker engine not readable: %s' % exc)
            if warn is not None:
                warn('Docker engine not readable: %s' % exc)
            return None
        if self.docker_down:
            self.log('docker_reachable', msg='the Docker engine answers again')
        self.docker_down = self.facts['docker_down'] = False
        self._listed = [item for item in listed if self.in_scope(container_name(item), item.get('Labels'))]
        managed = set(item['Id'] for item in self._listed)
        self.outside = [item['Id'] for item in listed if item['Id'] not in managed]
        self._listed_at = self.monotonic()
        self._list_dirty = False
        return self._listed

    # ---- the loop -------------------------------------------------------------------------
    def cycle(self):
        """One pass of the loop: events, guard (when due), health (when due), restarts. Never raises."""
        started = self.monotonic()
        ok = True
        for duty in (self._drain_events, self._guard_duty, self._health_duty, self._restart_duty, self._save_events_since):
            try:
                duty()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                ok = False
                self._warn('%s failed: %s: %s; retried next cycle' % (duty.__name__.strip('_'), type(exc).__name__, exc),
                           key=duty.__name__ + type(exc).__name__)
        self.facts['duration'] = self.monotonic() - started
        self.facts['cycles'] += 1
        if ok:
            self.facts['last_success'] = self.clock()
        return ok

    def _drain_events(self):
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self._handle_event(event)
        while self.policy.warnings:
            self._warn(self.policy.warnings.pop(0))

    def _handle_event(self, event):
        if '_done' in event:
            self._action_done(event)
            return
        if '_error' in event:
            self._events_live = False
            self._docker_problem(event['_error'] + '; reconnecting')
            return
        if event.get('_connected'):
            self._events_live = self._list_dirty = True
            return
        if not str(event.get('Action', '')).startswith('exec_'):  # health checks run as execs: no change of state
            self._list_dirty = True
        attrs = (event.get('Actor') or {}).get('Attributes') or {}
        name = attrs.get('name') or ''
        if not self.in_scope(name, attrs):
            return
        nanos = event.get('timeNano') or int(event.get('time', 0)) * 10 ** 9
        history = self.policy.history
        since = history.get('events_since') or 0
        key = '%s %s' % ((event.get('Actor') or {}).get('ID', ''), event.get('Action'))
        if nanos < since or (nanos == since and key in history.get('events_at_since', [])):
            return  # replayed by the engine: handled before (the daemon restarted or reconnected)
        if event.get('Action') == 'die':
            self._load_guard_stopped()
        decision = self.policy.on_event(event)
        if nanos > since:
            history['events_since'], history['events_at_since'] = nanos, [key]
        else:
            history.setdefault('events_at_since', []).append(key)
        if decision:
            self._decided(decision)

    def _decided(self, decision):
        """Log a decision of the policy; a give-up stop to repeat, or an OOM death, starts work at once."""
        stop_again = decision.pop('stop_again', False)
        kind = decision.pop('decision')
        level = 'alert' if stop_again else 'info'
        self.log(kind, level=level, **decision)
        if stop_again:
            self._submit('stop', {'id': decision['id'], 'name': decision['container'], 'reason': decision.get('reason')},
                         {'container': decision['container'], 'id': decision['id'], 'reason': decision.get('reason')})
        if kind in ('restart_scheduled', 'restarted') and str(decision.get('reason', '')).startswith('oom'):
            how = 'restarted by Docker' if decision.get('by') == 'docker' else 'its restart waits for room'
            self._guard_now = 'OOM kill of %s (%s)' % (decision['container'], how)

    def _save_events_since(self):
        current = self.policy.history.get('events_since')
        if current != self._events_saved:
            self.policy.store.save(self.policy.history)
            self._events_saved = current

    def _guard_duty(self):
        if not self.config['guard_enabled']:
            self._guard_now = None
            return
        now = self.monotonic()
        early, self._guard_now = self._guard_now, None
        if now < self._next_guard and not early:
            return
        self._next_guard = now + self.config['guard_interval']
        self.docker_client()
        if early:
            self.log('guard_pass_now', why=early)
        result = self.guard.run(act=True)
        self._level = result.get('level') or self._level
        self.guard_stopped = set(r['id'] for r in result.get('stopped_by_guard', [])) | set(r['name'] for r in result.get('stopped_by_guard', []))
        for warning in result.get('warnings', []):
            if 'Docker engine not readable' in warning:
                continue  # reported once by list_containers
            self._warn('guard: %s' % warning)
        if result.get('failed'):
            self._warn('guard pass failed: %s' % result.get('msg'), key='guard-failed')
        snapshot = result.get('_after_snapshot') or result.get('snapshot')
        if snapshot:
            self._models = snapshot.get('models', [])
            for item in snapshot.get('containers', []):
                if item.get('running'):
                    self.policy.note_memory(item['id'], item.get('usage'), item.get('limit'))
            if snapshot.get('stack'):
                self.policy.note_stack_oom_kills(snapshot['stack'].get('oom_kills'))
        if result.get('actions'):
            self._list_dirty = True
        for action in result.get('actions', []):
            self.policy.count_guard_action(action['action'])
            fields = {k: v for k, v in action.items() if k != 'action'}
            self.log('guard_' + action['action'], guard_level=result.get('level'), pressure=result.get('pressure_before'), **fields)

    def _health_duty(self):
        now = self.monotonic()
        if now < self._next_health:
            return
        self._next_health = now + self.config['health_interval']
        listed = self.list_containers()
        if listed is None:
            return
        probes = {}
        wall = self.clock()
        for item in listed:
            if item.get('State') != 'running':
                continue
            name = container_name(item)
            status = docker_health(item)
            url = (item.get('Labels') or {}).get(HEALTH_URL_LABEL)
            if status == 'unhealthy':
                self._note_health(name, item['Id'], False, 'docker health status unhealthy', wall)
            elif url:
                ip = container_ip(item) or '127.0.0.1'
                probes[name] = (item['Id'], url.replace('{ip}', ip).replace('{name}', name))
            else:
                self._note_health(name, item['Id'], True, 'docker health status %s' % status, wall)
        if probes:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix='monitor-probe')
            futures = {name: self._executor.submit(probe_http, url, self.config['http_timeout']) for name, (_cid, url) in probes.items()}
            for name, future in futures.items():
                healthy, detail = future.result()
                self._note_health(name, probes[name][0], healthy, detail, self.clock())

    def _note_health(self, name, cid, healthy, detail, now):
        decision = self.policy.on_health(name, cid, healthy, detail, now)
        if decision:
            self.log(decision.pop('decision'), **decision)

    def _restart_duty(self):
        if not self.policy.pending:
            return
        level = self._level if self.config['guard_enabled'] else None
        for decision in self.policy.due(self.clock(), level):
            action = decision['action']
            fields = {'container': decision['name'], 'id': decision['id'], 'reason': decision['reason'], 'why': decision.get('why') or decision['detail']}
            if action == 'wait':
                self.log('restart_waiting', **fields)
                continue
            if action == 'give_up':
                self._give_up(decision, fields)
                continue
            self._restart(decision, fields)

    def _inspect(self, decision, fields):
        """The engine's view of the decision's container; None (decision dropped or kept pending) when it cannot be had."""
        client = self.docker_client()
        if client is None:
            return None  # stays pending: retried when the engine answers
        try:
            return client.api.inspect_container(decision['id'])
        except Exception as exc:  # pylint: disable=broad-exception-caught
            if type(exc).__name__ == 'NotFound':
                self.policy.drop(decision['name'])
                self.log('restart_skipped', why='the container no longer exists', **{k: v for k, v in fields.items() if k != 'why'})
            else:
                self._docker_problem('Docker engine not readable: %s' % exc)
            return None

    def _give_up(self, decision, fields):
        """Record the give-up, alert, and stop the container if it runs or Docker is restarting it."""
        details = self._inspect(decision, fields)
        if details is None and decision['name'] not in self.policy.pending:
            return  # the container is gone
        state = (details or {}).get('State') or {}
        decision['stop'] = details is None or bool(state.get('Running') or state.get('Restarting'))
        self.policy.begin(decision)  # on disk before the stop
        self.log('restart_given_up', level='alert', restarts_in_window=decision['restarts_in_window'],
                 limit=self.config['restart_limit'], stopped=decision['stop'],
                 restart_policy=restart_policy_of(details) if details else None, **fields)
        if decision['stop']:
            self._submit('stop', decision, fields)

    def _restart(self, decision, fields):
        details = self._inspect(decision, fields)
        if details is None:
            return
        state = details.get('State') or {}
        if decision['action'] == 'start' and (state.get('Running') or state.get('Restarting')):
            policy = restart_policy_of(details)
            if state.get('Restarting') or policy != 'no':
                self.policy.engine_restarting(decision['name'])
                self.log('restart_by_engine', restart_policy=policy, restarting=bool(state.get('Restarting')),
                         why="Docker's restart policy restarts it; the monitor counts that restart",
                         **{k: v for k, v in fields.items() if k != 'why'})
                return
            self.policy.drop(decision['name'])
            self.log('restart_skipped', why='already running again (started by an operator)',
                     **{k: v for k, v in fields.items() if k != 'why'})
            return
        self.policy.begin(decision)  # on disk before the engine is asked
        self._submit(decision['action'], decision, fields)

    def _submit(self, action, decision, fields):
        """Carry out an engine call (start, restart, stop) in the worker thread; its outcome comes back through the event queue."""
        client = self.docker_client()
        started = self.monotonic()

        def work():
            error = None
            gone = False
            try:
                if client is None:
                    raise RuntimeError('the Docker engine cannot be reached')
                if action == 'restart':
                    client.api.restart(decision['id'], timeout=self.config['stop_timeout'])
                elif action == 'stop':
                    client.api.stop(decision['id'], timeout=self.config['stop_timeout'])
                else:
                    client.api.start(decision['id'])
            except Exception as exc:  # pylint: disable=broad-exception-caught
                error = str(exc) or type(exc).__name__
                gone = type(exc).__name__ == 'NotFound'
            return {'_done': action, 'decision': decision, 'fields': fields, 'error': error, 'gone': gone,
                    'seconds': round(self.monotonic() - started, 3)}
        if self._run_action is not None:  # tests: at once, in this thread
            self._action_done(self._run_action(work))
            return
        if self._action_worker is None:
            self._action_worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='monitor-restart')
        self._action_worker.submit(lambda: self.events.put(work()))

    def _action_done(self, event):
        """The outcome of a start/restart/stop made by the worker thread."""
        action, decision, fields = event['_done'], event['decision'], event['fields']
        if action == 'stop':
            if event['error'] and not event['gone']:
                self.policy.stop_failed(decision['id'])
                self.log('give_up_stop_failed', level='alert', error=event['error'], **fields)
            else:
                self.log('given_up_stopped', seconds=event['seconds'], **{k: v for k, v in fields.items() if k != 'why'})
            return
        if event['error']:
            self.policy.failed(decision, event['error'], gone=event['gone'])
            self.log('restart_failed', level='warning', error=event['error'], attempt=decision['attempt'], **fields)
            return
        self.log('restarted', attempt=decision['attempt'], limit=self.config['restart_limit'], by='monitor',
                 remaining=self.policy.remaining(decision['name']), exit_code=decision.get('exit_code'),
                 seconds=event['seconds'], **fields)

    def run(self, once=False):
        """Run until SIGTERM/SIGINT (or one cycle with once=True); returns the exit status."""
        if self.config['listen_port'] or not once:
            try:
                self.server = mmetrics.MonitorHTTPServer(MonitorView(self), self.config['listen_address'], self.config['listen_port'],
                                                         stall_after=self.config['stall_intervals'] * max(self.config['guard_interval'],
                                                                                                          self.config['health_interval']))
                self.server.start()
            except OSError as exc:
                self._warn('cannot serve /metrics on %s:%s: %s' % (self.config['listen_address'], self.config['listen_port'], exc))
        self.log('started', listen='%s:%s' % (self.config['listen_address'], self.server.port if self.server else None),
                 restart_limit=self.config['restart_limit'], restart_window=self.config['restart_window'],
                 unhealthy_for=self.config['unhealthy_for'], guard_interval=self.config['guard_interval'],
                 guard=self.config['guard_enabled'], thresholds=self.config['_thresholds'].as_dict(),
                 scope=self.config['_scope'].describe(),
                 known_restarts={name: s['restarts_in_window'] for name, s in self.policy.status().items()},
                 watchdog_sec=watchdog_seconds(self.config))
        self._check_watchdog()
        self.pump = EventPump(self, self.events, self._replay_from(), self.stop_event)
        self.pump.start()
        ready = False
        tick = min(self.config['guard_interval'], self.config['health_interval'], 1.0)
        try:
            while not self.stop_event.is_set():
                deadline = self.monotonic() + tick
                self.cycle()
                if not ready:
                    sd_notify('READY=1', self.environ)
                    ready = True
                sd_notify('WATCHDOG=1', self.environ)
                if once:
                    break
                self._wait(deadline)
        finally:
            sd_notify('STOPPING=1', self.environ)
            self.shutdown()
        self.log('stopped', cycles=self.facts['cycles'])
        return 0

    def _check_watchdog(self):
        """Warn when systemd's watchdog ($WATCHDOG_USEC) is shorter than a cycle may block."""
        try:
            usec = int(self.environ.get('WATCHDOG_USEC') or 0)
        except ValueError:
            usec = 0
        needed = watchdog_seconds(self.config)
        if usec and usec < needed * 1e6:
            self.log('watchdog_too_short', level='warning', watchdog_sec=usec / 1e6, needed_sec=needed,
                     why='a cycle may block up to %d s (engine calls, a guard stop, probes, the state file lock): '
                         'systemd would kill a working daemon; set WatchdogSec=%d or more' % (needed, needed))

    def _replay_from(self):
        """Where the engine's events are read from: the last one handled (at most `replay_max` seconds back).

        On the very first start that is now, and it is saved at once, so that a daemon killed before any
        event still replays what happened while it was down.
        """
        now = int(self.clock() * 1e9)
        since = self.policy.history.get('events_since')
        if not since:
            self.policy.history['events_since'], self.policy.history['events_at_since'] = now, []
            try:
                self.policy.store.save(self.policy.history)
                self._events_saved = now
            except (OSError, gstate.StateLockError) as exc:
                self._warn('cannot write the restart history to %s: %s' % (self.config['guard_state_file'], exc))
            return now
        return max(since, now - int(self.config['replay_max'] * 1e9))

    def _wait(self, deadline):
        """Sleep until the deadline; an engine event wakes the loop at once and is handled."""
        while not self.stop_event.is_set():
            left = deadline - self.monotonic()
            due = self.policy.next_due()
            if due is not None and 0 < due < left:
                left = due  # a restart's backoff ends before the next tick: wake for it
            elif due == 0 and self.policy.pending:
                self._restart_duty()
            if left <= 0:
                return
            try:
                event = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            try:
                self._handle_event(event)
                self._restart_duty()
                if self._guard_now:
                    self._guard_duty()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                self._warn('restart failed: %s: %s; retried next cycle' % (type(exc).__name__, exc))

    def stop(self, *_args):
        """Ask the loop to end (signal handler)."""
        self.stop_event.set()

    def shutdown(self):
        """Stop the threads and the HTTP server."""
        self.stop_event.set()
        if self.pump is not None:
            self.pump.close()
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self._action_worker is not None:
            self._action_worker.shutdown(wait=False)


class MonitorView:
    """What the metrics collector and /health read from the daemon."""

    def __init__(self, monitor):
        self.monitor = monitor
        self.proc_root = monitor.config['proc_root']

    def read_stack(self):
        """The stack cgroup's working set and limit, read now; None without one."""
        name = self.monitor.config['stack_cgroup']
        return self.monitor.cgroups.read_group(name) if name else None

    def containers(self):
        """Running managed containers from the last list: id, name, service, tier."""
        result = []
        for item in list(self.monitor._listed or []):  # pylint: disable=protected-access
            if item.get('State') != 'running':
                continue
            labels = item.get('Labels') or {}
            service = next((labels[k] for k in SERVICE_LABELS if labels.get(k)), '')
            result.append({'id': item['Id'], 'name': container_name(item), 'service': service, 'tier': self.monitor.tier_of(item)})
        return result

    def read_container(self, container_id):
        """A container's working set and limit, read now from cgroupfs."""
        return self.monitor.cgroups.read_container(container_id)

    def restart_status(self):
        """Restart budget per managed container (full budget for those never restarted) plus OOM counts."""
        policy = self.monitor.policy
        status = policy.status()
        for item in list(self.monitor._listed or []):  # pylint: disable=protected-access
            status.setdefault(container_name(item), {'restarts_in_window': 0, 'remaining': policy.limit, 'given_up': False,
                                                     'given_up_reason': None, 'totals': {}, 'by_docker_in_window': 0})
        for name, kinds in policy.history.get('oom_kills', {}).items():
            if name in status:
                status[name]['oom_kills'] = dict(kinds)
        return status

    def guard_actions(self):
        """Guard actions by kind since the history began."""
        return dict(self.monitor.policy.history.get('guard_actions', {}))

    def guard_level(self):
        """The level of the last guard pass, or None."""
        return self.monitor._level  # pylint: disable=protected-access

    def models(self):
        """Models loaded at the last guard pass."""
        return list(self.monitor._models)  # pylint: disable=protected-access

    def loop_facts(self):
        """started, last_success, duration, cycles, warnings, docker_down."""
        return dict(self.monitor.facts)


def main(argv=None):
    """Run the daemon: `--config FILE`, `--set key=value` (repeatable), `--once` (one cycle), `--check-config`."""
    parser = argparse.ArgumentParser(prog='sutazai-monitor', description='sutazai.ops self-healing monitor')
    parser.add_argument('--config', help='settings file: JSON, YAML or key=value lines')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='override one setting')
    parser.add_argument('--once', action='store_true', help='run one cycle and exit')
    parser.add_argument('--check-config', action='store_true', help='print the resolved settings as JSON and exit')
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition('=')
        if not sep:
            parser.error('--set expects KEY=VALUE, got %r' % item)
        overrides[key.strip()] = value
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        sys.stderr.write('sutazai-monitor: %s\n' % exc)
        return 2
    if args.check_config:
        shown = {k: v for k, v in config.items() if not k.startswith('_')}
        shown['thresholds'] = config['_thresholds'].as_dict()
        shown['watchdog_sec'] = watchdog_seconds(config)
        sys.stdout.write(json.dumps(shown, indent=2, sort_keys=True) + '\n')
        return 0
    monitor = Monitor(config)
    signal.signal(signal.SIGTERM, monitor.stop)
    signal.signal(signal.SIGINT, monitor.stop)
    return monitor.run(once=args.once)
