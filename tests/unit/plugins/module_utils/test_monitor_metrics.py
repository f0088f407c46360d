"""The monitor's Prometheus collector and /health over a fake daemon view and a fake /proc."""

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.sutazai.ops.plugins.module_utils import _monitor_metrics as mm

GIB = 2 ** 30


class FakeView:
    """What the daemon exposes to the collector, as plain values."""

    def __init__(self, proc_root):
        self.proc_root = proc_root
        self.stack = {'usage': 3 * GIB, 'limit': 4 * GIB, 'oom_kills': 0}
        self.listed = [{'id': 'a' * 64, 'name': 'sutazai-backend', 'service': 'backend', 'tier': 1},
                       {'id': 'b' * 64, 'name': 'sutazai-agent', 'service': 'agent', 'tier': 3},
                       {'id': 'c' * 64, 'name': 'sutazai-gone', 'service': '', 'tier': 2}]
        self.memory = {'a' * 64: {'usage': 512 * 2 ** 20, 'limit': GIB}, 'b' * 64: {'usage': 100 * 2 ** 20, 'limit': None}}
        self.status = {'sutazai-agent': {'restarts_in_window': 3, 'remaining': 0, 'given_up': True, 'totals': {'crash': 2, 'oom_pressure': 1},
                                         'oom_kills': {'oom_pressure': 1}},
                       'sutazai-backend': {'restarts_in_window': 0, 'remaining': 3, 'given_up': False, 'totals': {}}}
        self.facts = {'started': 100.0, 'last_success': 200.0, 'duration': 0.004, 'cycles': 42, 'warnings': [], 'docker_down': False}
        self.level = 'soft'

    def read_stack(self):
        return self.stack

    def containers(self):
        return self.listed

    def read_container(self, cid):
        return self.memory.get(cid)

    def restart_status(self):
        return self.status

    def guard_actions(self):
        return {'unload': 2, 'stop': 1}

    def guard_level(self):
        return self.level

    def models(self):
        return [{'name': 'tinyllama:latest', 'size': 700 * 2 ** 20}]

    def loop_facts(self):
        return dict(self.facts)


@pytest.fixture(name='view')
def fixture_view(tmp_path):
    (tmp_path / 'meminfo').write_text('MemTotal: 16777216 kB\nMemFree: 1000 kB\nMemAvailable: 4194304 kB\n'
                                      'SwapTotal: 2097152 kB\nSwapFree: 1048576 kB\n')
    (tmp_path / 'pressure').mkdir()
    (tmp_path / 'pressure' / 'memory').write_text('some avg10=12.50 avg60=1.00 avg300=0.10 total=2500000\n'
                                                  'full avg10=5.00 avg60=0.50 avg300=0.05 total=1000000\n')
    return FakeView(str(tmp_path))


def scrape(view):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(mm.MonitorCollector(view))
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_memory_and_psi(view):
    samples = scrape(view)
    assert samples[('sutazai_memory_pressure_ratio', (('scope', 'host'),))] == pytest.approx(0.75)
    assert samples[('sutazai_memory_pressure_ratio', (('scope', 'stack'),))] == pytest.approx(0.75)
    assert samples[('sutazai_memory_bytes', (('kind', 'limit'), ('scope', 'stack')))] == 4 * GIB
    assert samples[('sutazai_swap_used_ratio', ())] == pytest.approx(0.5)
    assert samples[('sutazai_pressure_memory_avg10_ratio', (('kind', 'some'),))] == pytest.approx(0.125)
    assert samples[('sutazai_pressure_memory_stalled_seconds_total', (('kind', 'full'),))] == pytest.approx(1.0)


def test_containers_carry_cadvisor_names_and_labels(view):
    samples = scrape(view)
    backend = (('name', 'sutazai-backend'), ('service', 'backend'), ('tier', '1'))
    agent = (('name', 'sutazai-agent'), ('service', 'agent'), ('tier', '3'))
    assert samples[('container_memory_working_set_bytes', backend)] == 512 * 2 ** 20
    assert samples[('container_spec_memory_limit_bytes', backend)] == GIB
    assert samples[('container_spec_memory_limit_bytes', agent)] == 0  # unlimited, as cAdvisor
    assert not [k for k in samples if ('name', 'sutazai-gone') in k[1]]  # no cgroup: no sample


def test_restarts_budget_and_guard(view):
    samples = scrape(view)
    assert samples[('sutazai_monitor_restarts_total', (('name', 'sutazai-agent'), ('reason', 'crash')))] == 2
    assert samples[('sutazai_monitor_oom_kills_total', (('kind', 'pressure'), ('name', 'sutazai-agent')))] == 1
    assert samples[('sutazai_monitor_restart_budget_remaining', (('name', 'sutazai-agent'),))] == 0
    assert samples[('sutazai_monitor_restart_budget_exhausted', (('name', 'sutazai-agent'),))] == 1
    assert samples[('sutazai_monitor_restart_budget_exhausted', (('name', 'sutazai-backend'),))] == 0
    assert samples[('sutazai_monitor_containers_given_up', ())] == 1
    assert samples[('sutazai_guard_actions_total', (('kind', 'unload'),))] == 2
    assert samples[('sutazai_guard_actions_total', (('kind', 'start'),))] == 0
    assert samples[('sutazai_guard_level', ())] == 1
    assert samples[('sutazai_ollama_models_loaded', ())] == 1
    assert samples[('sutazai_ollama_model_memory_bytes', (('model', 'tinyllama:latest'),))] == 700 * 2 ** 20
    assert samples[('sutazai_monitor_last_success_timestamp_seconds', ())] == 200.0
    assert samples[('sutazai_monitor_loop_duration_seconds', ())] == pytest.approx(0.004)
    assert samples[('sutazai_monitor_cycles_total', ())] == 42


def test_missing_sources_give_no_sample_not_an_error(view, tmp_path):
    view.proc_root = str(tmp_path / 'nowhere')
    view.stack = None
    view.level = None
    samples = scrape(view)
    assert not [k for k in samples if k[0] == 'sutazai_memory_pressure_ratio']
    assert samples[('sutazai_guard_level', ())] == -1


@pytest.mark.parametrize('facts, given_up, now, status, code', [
    ({'last_success': 100.0}, False, 105.0, 'ok', 200),
    ({'last_success': 100.0}, True, 105.0, 'degraded', 200),
    ({'last_success': 100.0, 'docker_down': True}, False, 105.0, 'degraded', 200),
    ({'last_success': 100.0}, False, 111.0, 'stalled', 503),
    ({'last_success': None, 'started': 100.0}, False, 105.0, 'starting', 200),
    ({'last_success': None, 'started': 100.0}, False, 120.0, 'starting', 503),
], ids=['ok', 'given-up-is-degraded', 'docker-down-is-degraded', 'stalled', 'starting', 'never-started'])
def test_health(view, facts, given_up, now, status, code):
    view.facts.update(facts)
    view.status['sutazai-agent']['given_up'] = given_up
    answer, body = mm.health(view, stall_after=10.0, now=now)
    assert (answer, body['status']) == (code, status)
    assert body['given_up'] == (['sutazai-agent'] if given_up else [])


def test_http_server_serves_metrics_and_health(view):
    view.facts['last_success'] = 1e12  # far in the future: never stalled
    server = mm.MonitorHTTPServer(view, '127.0.0.1', 0, stall_after=10.0)
    server.start()
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        base = 'http://127.0.0.1:%d' % server.port
        with opener.open(base + '/metrics', timeout=5) as response:
            names = [f.name for f in text_string_to_metric_families(response.read().decode())]
        assert 'container_memory_working_set_bytes' in names
        with opener.open(base + '/health', timeout=5) as response:
            assert json.loads(response.read())['status'] == 'degraded'
        view.facts['last_success'] = 1.0
        with pytest.raises(urllib.error.HTTPError) as failure:
            opener.open(base + '/health', timeout=5)
        assert failure.value.code == 503
        assert json.loads(failure.value.read())['status'] == 'stalled'
        with pytest.raises(urllib.error.HTTPError) as missing:
            opener.open(base + '/nothing', timeout=5)
        assert missing.value.code == 404
    finally:
        server.stop()
