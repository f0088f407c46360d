# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The monitor daemon's Prometheus metrics and its /metrics and /health endpoints.

PRIVATE to the collection: no compatibility promise. Plain Python, no Ansible import;
prometheus_client is optional at import time (ansible-test imports every module_utils with
only ansible-core installed) and needed only to serve /metrics.

The collector reads at scrape time: host memory and PSI from /proc, the stack cgroup and each
known container's working set and limit from cgroupfs (no Docker API call per scrape), and the
daemon's own figures (restart history, guard actions, models, loop timing) from its `view`.

Metrics (names follow Prometheus conventions; the two per-container memory metrics carry cAdvisor's
names so one dashboard query works on both):
  sutazai_memory_pressure_ratio{scope="host"|"stack"}      used / total (host: 1 - MemAvailable/MemTotal;
                                                            stack: working set / limit of the stack cgroup)
  sutazai_memory_bytes{scope, kind="used"|"limit"}         the figures behind the ratios
  sutazai_swap_used_ratio                                  host swap in use / swap total (0 without swap)
  sutazai_pressure_memory_avg10_ratio{kind="some"|"full"}  PSI avg10 (0..1)
  sutazai_pressure_memory_stalled_seconds_total{kind}      PSI `total` (like node_exporter's)
  container_memory_working_set_bytes{name,service,tier}    as cAdvisor: usage - inactive_file
  container_spec_memory_limit_bytes{name,service,tier}     as cAdvisor: 0 when unlimited
  sutazai_monitor_restarts_total{name,reason}              restarts after failures, by the monitor or by Docker's restart
                                                            policy, by reason (kept in the guard's state file)
  sutazai_monitor_oom_kills_total{name,kind}               OOM deaths seen (own_limit / pressure)
  sutazai_monitor_restart_budget_remaining{name}           restarts left in the rolling window
  sutazai_monitor_restart_budget_exhausted{name}           1 when the monitor gave up on the container
  sutazai_monitor_containers_given_up                      how many it gave up on
  sutazai_guard_actions_total{kind="unload"|"stop"|"start"} memory guard actions (kept on disk)
  sutazai_guard_level                                      0 ok, 1 soft, 2 hard, 3 emergency
  sutazai_ollama_models_loaded / sutazai_ollama_model_memory_bytes{model}
  sutazai_monitor_loop_duration_seconds                    the last cycle's duration
  sutazai_monitor_last_success_timestamp_seconds           end of the last cycle that completed
  sutazai_monitor_cycles_total                             cycles run since the daemon started
  sutazai_monitor_up                                       1 (a scrape that answers)

/health (JSON): 503 `stalled` when no cycle completed for `stall_after` seconds (the loop hangs:
systemd's watchdog or the container's health check should restart the daemon), 503 `starting`
before the first cycle once that long has passed; otherwise 200, `ok`, or `degraded` when the
monitor has given up on a container or cannot reach Docker. A given-up container is a problem of
that service, not of the monitor: answering 503 for it would make the supervisor restart the
monitor, which cures nothing and loses the alerting path. The body names the containers.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups

try:
    from prometheus_client import CollectorRegistry, generate_latest, CONTENT_TYPE_LATEST
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    HAS_PROMETHEUS = True
except ImportError:  # pragma: no cover - depends on the host
    HAS_PROMETHEUS = False
    CONTENT_TYPE_LATEST = 'text/plain; version=0.0.4; charset=utf-8'

LEVEL_NUMBERS = {'ok': 0, 'soft': 1, 'hard': 2, 'emergency': 3}
CONTAINER_LABELS = ['name', 'service', 'tier']


def read_psi_totals(proc_root='/proc'):
    """Memory PSI as {'some': (avg10 percent, total microseconds), 'full': (...)}; {} without PSI."""
    try:
        with open(proc_root + '/pressure/memory', 'r', encoding='ascii') as handle:
            text = handle.read()
    except OSError:
        return {}
    result = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        values = dict(field.partition('=')[::2] for field in fields[1:])
        try:
            result[fields[0]] = (float(values.get('avg10', 0)), int(values.get('total', 0)))
        except ValueError:
            continue
    return result


def read_host_memory(proc_root='/proc'):
    """MemTotal, MemAvailable, SwapTotal, SwapFree in bytes."""
    values = _cgroups.read_meminfo(proc_root + '/meminfo')
    return {'total': values.get('MemTotal', 0), 'available': values.get('MemAvailable', values.get('MemFree', 0)),
            'swap_total': values.get('SwapTotal', 0), 'swap_free': values.get('SwapFree', 0)}


def _quietly(function, *args):
    """function(*args), or None when the source cannot be read now (a scrape never fails for one missing file)."""
    try:
        return function(*args)
    except (OSError, ValueError, _cgroups.CgroupError):
        return None


class MonitorCollector:
    """A prometheus_client custom collector over the daemon's `view` (see MonitorView in _monitor)."""

    def __init__(self, view):
        self.view = view

    def describe(self):
        """No fixed description: the registry then does not call collect() at registration."""
        return []

    def collect(self):
        """Build every metric family from fresh readings."""
        if not HAS_PROMETHEUS:  # pragma: no cover
            return
        view = self.view
        yield from self._memory(view)
        yield from self._containers(view)
        yield from self._restarts(view)
        yield from self._guard(view)
        yield from self._loop(view)

    @staticmethod
    def _memory(view):
        ratio = GaugeMetricFamily('sutazai_memory_pressure_ratio', 'Memory in use over memory available to it (host or stack cgroup).',
                                  labels=['scope'])
        figures = GaugeMetricFamily('sutazai_memory_bytes', 'Memory used and its limit, host and stack cgroup.', labels=['scope', 'kind'])
        swap = GaugeMetricFamily('sutazai_swap_used_ratio', 'Host swap in use over swap total (0 without swap).')
        host = _quietly(read_host_memory, view.proc_root)
        if host and host['total']:
            used = host['total'] - host['available']
            ratio.add_metric(['host'], used / float(host['total']))
            figures.add_metric(['host', 'used'], used)
            figures.add_metric(['host', 'limit'], host['total'])
            swap.add_metric([], (host['swap_total'] - host['swap_free']) / float(host['swap_total']) if host['swap_total'] else 0.0)
        stack = _quietly(view.read_stack)
        if stack:
            figures.add_metric(['stack', 'used'], stack['usage'])
            if stack.get('limit'):
                ratio.add_metric(['stack'], stack['usage'] / float(stack['limit']))
                figures.add_metric(['stack', 'limit'], stack['limit'])
        yield ratio
        yield figures
        yield swap
        psi = read_psi_totals(view.proc_root)
        avg = GaugeMetricFamily('sutazai_pressure_memory_avg10_ratio', 'Memory PSI avg10: share of the last 10 s with tasks stalled on memory.',
                                labels=['kind'])
        total = CounterMetricFamily('sutazai_pressure_memory_stalled_seconds', 'Memory PSI total: time tasks stalled on memory.',
                                    labels=['kind'])
        for kind, (avg10, micros) in sorted(psi.items()):
            avg.add_metric([kind], avg10 / 100.0)
            total.add_metric([kind], micros / 1e6)
        yield avg
        yield total

    @staticmethod
    def _containers(view):
        working = GaugeMetricFamily('container_memory_working_set_bytes', 'Current working set of the container (usage minus inactive file cache).',
                                    labels=CONTAINER_LABELS)
        limit = GaugeMetricFamily('container_spec_memory_limit_bytes', 'Memory limit of the container (0 when unlimited).',
                                  labels=CONTAINER_LABELS)
        for item in view.containers():
            figures = _quietly(view.read_container, item['id'])
            if figures is None:
                continue
            labels = [item['name'], item.get('service') or '', '' if item.get('tier') is None else str(item['tier'])]
            working.add_metric(labels, figures['usage'])
            limit.add_metric(labels, figures['limit'] or 0)
        yield working
        yield limit

    @staticmethod
    def _restarts(view):
        status = view.restart_status()
        restarts = CounterMetricFamily('sutazai_monitor_restarts',
                                       'Restarts after a failure, by reason: made by the monitor or by Docker\'s restart policy (one budget).',
                                       labels=['name', 'reason'])
        ooms = CounterMetricFamily('sutazai_monitor_oom_kills', 'OOM deaths the monitor saw, by kind (own_limit: the container\'s own limit).',
                                   labels=['name', 'kind'])
        remaining = GaugeMetricFamily('sutazai_monitor_restart_budget_remaining', 'Restarts (by the monitor or by Docker) still allowed in the rolling window.',
                                      labels=['name'])
        exhausted = GaugeMetricFamily('sutazai_monitor_restart_budget_exhausted', '1 when the monitor gave up on the container (and stopped it).',
                                      labels=['name'])
        given_up = 0
        for name, item in sorted(status.items()):
            for reason, count in sorted(item.get('totals', {}).items()):
                restarts.add_metric([name, reason], count)
            for kind, count in sorted(item.get('oom_kills', {}).items()):
                ooms.add_metric([name, kind.replace('oom_', '')], count)
            remaining.add_metric([name], item['remaining'])
            exhausted.add_metric([name], 1 if item['given_up'] else 0)
            given_up += 1 if item['given_up'] else 0
        yield restarts
        yield ooms
        yield remaining
        yield exhausted
        yield GaugeMetricFamily('sutazai_monitor_containers_given_up', 'Containers the monitor gave up restarting.', value=given_up)

    @staticmethod
    def _guard(view):
        actions = CounterMetricFamily('sutazai_guard_actions', 'Memory guard actions, by kind.', labels=['kind'])
        counts = view.guard_actions()
        for kind in sorted(set(('unload', 'stop', 'start')) | set(counts)):
            actions.add_metric([kind], counts.get(kind, 0))
        yield actions
        level = view.guard_level()
        yield GaugeMetricFamily('sutazai_guard_level', 'Memory guard level: 0 ok, 1 soft, 2 hard, 3 emergency (-1 unknown).',
                                value=LEVEL_NUMBERS.get(level, -1))
        models = view.models()
        yield GaugeMetricFamily('sutazai_ollama_models_loaded', 'Models Ollama holds in memory.', value=len(models))
        memory = GaugeMetricFamily('sutazai_ollama_model_memory_bytes', 'Memory of each loaded model.', labels=['model'])
        for model in models:
            memory.add_metric([model['name']], model.get('size') or 0)
        yield memory

    @staticmethod
    def _loop(view):
        loop = view.loop_facts()
        yield GaugeMetricFamily('sutazai_monitor_loop_duration_seconds', 'Duration of the last monitor cycle.', value=loop.get('duration') or 0.0)
        yield GaugeMetricFamily('sutazai_monitor_last_success_timestamp_seconds', 'When the last monitor cycle completed (epoch seconds).',
                                value=loop.get('last_success') or 0.0)
        yield CounterMetricFamily('sutazai_monitor_cycles', 'Monitor cycles run since the daemon started.', value=loop.get('cycles') or 0)
        yield GaugeMetricFamily('sutazai_monitor_up', '1 when the monitor answers.', value=1)


def health(view, stall_after, now=None):
    """(HTTP status, body dict) of /health; see the module docstring for the rules."""
    now = time.time() if now is None else now
    loop = view.loop_facts()
    last = loop.get('last_success')
    started = loop.get('started') or now
    given_up = sorted(name for name, item in view.restart_status().items() if item['given_up'])
    body = {'last_success': last, 'age_seconds': None if last is None else round(now - last, 3), 'stall_after': stall_after,
            'guard_level': view.guard_level(), 'given_up': given_up, 'warnings': list(loop.get('warnings') or [])[-5:]}
    if last is None:
        body['status'] = 'starting'
        return (503 if now - started > stall_after else 200), body
    if now - last > stall_after:
        body['status'] = 'stalled'
        return 503, body
    body['status'] = 'degraded' if given_up or loop.get('docker_down') else 'ok'
    return 200, body


class MonitorHTTPServer:
    """/metrics and /health on one address (127.0.0.1:8082 by default), in a thread of its own."""

    def __init__(self, view, host='127.0.0.1', port=8082, stall_after=10.0):
        self.view = view
        self.stall_after = stall_after
        self.registry = None
        if HAS_PROMETHEUS:
            self.registry = CollectorRegistry(auto_describe=False)
            self.registry.register(MonitorCollector(view))
        server = self

        class Handler(BaseHTTPRequestHandler):
            """Routes /metrics and /health; anything else is 404."""

            def do_GET(self):  # noqa: N802 - the name http.server calls
                """Answer one GET."""
                path = self.path.split('?', 1)[0]
                if path == '/metrics':
                    if server.registry is None:
                        self._send(503, b'prometheus_client is not installed\n', 'text/plain')
                        return
                    try:
                        data = generate_latest(server.registry)
                    except Exception as exc:  # pylint: disable=broad-exception-caught
                        self._send(500, ('metrics failed: %s\n' % exc).encode(), 'text/plain')
                        return
                    self._send(200, data, CONTENT_TYPE_LATEST)
                elif path == '/health':
                    status, body = health(server.view, server.stall_after)
                    self._send(status, (json.dumps(body, sort_keys=True) + '\n').encode(), 'application/json')
                else:
                    self._send(404, b'not found: try /metrics or /health\n', 'text/plain')

            def _send(self, status, data, content_type):
                self.send_response(status)
                self.send_header('Content-Type', content_type)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):  # pylint: disable=redefined-builtin
                """No access log: the daemon's stdout carries decisions only."""

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name='monitor-http', daemon=True)

    def start(self):
        """Serve in the background."""
        self.thread.start()

    def stop(self):
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
