"""The monitor role's alert rules and Grafana dashboard, against promtool and a real scrape of the daemon.

- `promtool check rules` accepts roles/monitor/files/sutazai-alerts.yml and `promtool test rules` passes its
  unit tests (files/tests/sutazai-alerts.test.yml);
- those unit tests show every alert firing AND not firing: with an alert's expression replaced by one that
  never fires, or by one that always fires, `promtool test rules` must fail;
- the dashboard provisions from a file: no ${DS_*} import placeholders and no __inputs, every query on the
  `datasource` variable;
- every metric named in a dashboard query or an alert expression is in a real scrape of the daemon, run as a
  process on this host beside a real labelled container (the only exception: node_exporter's CPU counter,
  because the daemon exports no CPU figures).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
FILES = os.path.join(ROOT, 'roles', 'monitor', 'files')
RULES = os.path.join(FILES, 'sutazai-alerts.yml')
RULE_TESTS = os.path.join(FILES, 'tests', 'sutazai-alerts.test.yml')
DASHBOARD = os.path.join(FILES, 'sutazai-dashboard.json')
PREFIX = 'sutazai-mr-rules-'
# metrics an alert reads from another exporter, with the reason
EXTERNAL = {'node_cpu_seconds_total': 'node_exporter: sutazai-monitor exports no CPU figures'}
PROMQL_WORDS = {'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'and', 'or', 'unless', 'bool',
                'inf', 'nan'}
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DAEMON = 'import sys\nfrom ansible_collections.sutazai.ops.plugins.module_utils._monitor import main\nsys.exit(main(sys.argv[1:]))\n'


def promtool():
    path = shutil.which('promtool')
    if path is None:
        pytest.fail('promtool is missing: testbed/testbed.sh installs it from Debian\'s prometheus package')
    return path


def load_rules():
    with open(RULES, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def alert_names():
    return [rule['alert'] for group in load_rules()['groups'] for rule in group['rules'] if 'alert' in rule]


def metric_names(expr):
    """The metric names a PromQL expression reads (not functions, keywords, label names or durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                      # string literals
    text = re.sub(r'\{[^}]*\}', ' ', text)                                # label matchers
    text = re.sub(r'\[[^\]]*\]', ' ', text)                               # range selectors
    text = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', text)  # label lists
    text = re.sub(r'\boffset\s+\w+', ' ', text)
    names = set()
    for match in re.finditer(r'(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?', text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def dashboard_exprs():
    with open(DASHBOARD, encoding='utf-8') as handle:
        dashboard = json.load(handle)
    return [target['expr'] for panel in dashboard['panels'] for target in panel.get('targets', [])]


def rule_exprs():
    return [rule['expr'] for group in load_rules()['groups'] for rule in group['rules']]


def test_metric_names_reads_promql():
    assert metric_names('sum by (name) (increase(a_total{x="b(c)"}[1h])) > 3') == {'a_total'}
    assert metric_names('1 - avg by (instance) (rate(n{mode="idle"}[5m])) > 0.8') == {'n'}
    assert metric_names('(x unless x offset 15m) and on (job, instance) (up offset 15m)') == {'x', 'up'}
    assert metric_names('time() - s_seconds') == {'s_seconds'}


def test_promtool_check_rules():
    result = subprocess.run([promtool(), 'check', 'rules', RULES], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'SUCCESS: %d rules found' % len(rule_exprs()) in result.stdout


def run_rule_tests(rules_text, tmp_path):
    """`promtool test rules` of the shipped unit tests against the given rules text; (rc, output)."""
    (tmp_path / 'tests').mkdir(exist_ok=True)
    (tmp_path / 'sutazai-alerts.yml').write_text(rules_text, encoding='utf-8')
    shutil.copy(RULE_TESTS, tmp_path / 'tests' / 'sutazai-alerts.test.yml')
    result = subprocess.run([promtool(), 'test', 'rules', 'sutazai-alerts.test.yml'], cwd=str(tmp_path / 'tests'),
                            capture_output=True, text=True, check=False)
    return result.returncode, result.stdout + result.stderr


def test_promtool_unit_tests_pass(tmp_path):
    with open(RULES, encoding='utf-8') as handle:
        rc, output = run_rule_tests(handle.read(), tmp_path)
    assert rc == 0, output


def test_every_alert_has_unit_tests():
    with open(RULE_TESTS, encoding='utf-8') as handle:
        tests = yaml.safe_load(handle)['tests']
    tested = {case['alertname'] for test in tests for case in test.get('alert_rule_test', [])}
    assert set(alert_names()) <= tested, set(alert_names()) - tested
    for name in alert_names():
        cases = [case for test in tests for case in test.get('alert_rule_test', []) if case['alertname'] == name]
        assert any(case.get('exp_alerts') for case in cases), '%s is never shown firing' % name
        assert any(not case.get('exp_alerts') for case in cases), '%s is never shown not firing' % name


@pytest.mark.parametrize('alert', alert_names())
@pytest.mark.parametrize('replacement', ['vector(0) > 1', 'vector(1)'], ids=['never-fires', 'always-fires'])
def test_the_unit_tests_catch_a_broken_alert(alert, replacement, tmp_path):
    rules = load_rules()
    for group in rules['groups']:
        for rule in group['rules']:
            if rule.get('alert') == alert:
                rule['expr'] = replacement
    rc, output = run_rule_tests(yaml.safe_dump(rules, sort_keys=False), tmp_path)
    assert rc != 0, 'promtool test rules still passes with %s replaced by %r:\n%s' % (alert, replacement, output)
    assert alert in output


def test_dashboard_provisions_from_a_file():
    with open(DASHBOARD, encoding='utf-8') as handle:
        text = handle.read()
    dashboard = json.loads(text)
    assert '${DS_' not in text and '__inputs' not in dashboard and '__requires' not in dashboard
    variables = {item['name']: item for item in dashboard['templating']['list']}
    assert variables['datasource']['type'] == 'datasource' and variables['datasource']['query'] == 'prometheus'
    assert dashboard['uid'] and dashboard.get('id') is None
    for panel in dashboard['panels']:
        assert panel['targets'], panel['title']
        for target in panel['targets']:
            assert target['datasource'] == {'type': 'prometheus', 'uid': '${datasource}'}, panel['title']
    ids = [panel['id'] for panel in dashboard['panels']]
    assert len(ids) == len(set(ids))


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def http_get(url):
    try:
        with OPENER.open(url, timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ''


@pytest.fixture(name='scrape', scope='module')
def fixture_scrape(tmp_path_factory):
    """/metrics of the daemon run for real beside one labelled container, parsed: {family name: family}."""
    docker = pytest.importorskip('docker')
    parser = pytest.importorskip('prometheus_client.parser')
    client = docker.from_env()
    state = tmp_path_factory.mktemp('monitor-rules')
    name = PREFIX + 'agent'
    for old in client.containers.list(all=True, filters={'name': PREFIX}):
        old.remove(force=True)
    container = client.containers.run('sutazai-testbed/http:latest', name=name, detach=True, mem_limit='64m',
                                      labels={'sutazai.tier': '3', 'sutazai.service': 'agent'})
    port = free_port()
    settings = {'name_prefix': PREFIX, 'listen_port': port, 'ollama_host': '', 'guard_soft': 97, 'guard_hard': 98,
                'guard_state_file': str(state / 'guard.json'), 'restart_state_file': str(state / 'restarts.json'),
                'health_interval': 1}
    args = [sys.executable, '-c', DAEMON]
    for key, value in settings.items():
        args += ['--set', '%s=%s' % (key, value)]
    log = open(state / 'daemon.log', 'w', encoding='utf-8')  # pylint: disable=consider-using-with
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                            env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.collections')))
    try:
        deadline = time.monotonic() + 30
        text = ''
        while time.monotonic() < deadline:
            status, text = http_get('http://127.0.0.1:%d/metrics' % port)
            if status == 200 and ('name="%s"' % name) in text:
                break
            time.sleep(0.5)
        assert status == 200 and ('name="%s"' % name) in text, 'no scrape with the container: %s' % (state / 'daemon.log').read_text()
        families = {family.name: family for family in parser.text_string_to_metric_families(text)}
        yield families
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        container.remove(force=True)


def exported_names(families):
    """Every name a scrape can be queried by: sample names plus a counter family's _total."""
    names = set()
    for family in families.values():
        names.add(family.name)
        if family.type == 'counter':
            names.add(family.name + '_total')
        names.update(sample.name for sample in family.samples)
    return names


def test_the_scrape_carries_the_containers_and_the_monitors_figures(scrape):
    samples = {sample.name: sample for family in scrape.values() for sample in family.samples}
    assert samples['sutazai_monitor_up'].value == 1
    working = [s for s in scrape['container_memory_working_set_bytes'].samples if s.labels['name'] == PREFIX + 'agent']
    assert working and working[0].labels['tier'] == '3' and working[0].value > 0
    limit = [s for s in scrape['container_spec_memory_limit_bytes'].samples if s.labels['name'] == PREFIX + 'agent']
    assert limit[0].value == 64 * 1024 * 1024


@pytest.mark.parametrize('source', ['dashboard', 'alerts'])
def test_every_metric_queried_is_in_a_real_scrape(scrape, source):
    exprs = dashboard_exprs() if source == 'dashboard' else rule_exprs()
    wanted = set()
    for expr in exprs:
        wanted |= metric_names(expr)
    assert wanted, 'no metric found in the %s queries' % source
    missing = sorted(wanted - exported_names(scrape) - set(EXTERNAL))
    assert not missing, '%s queries metrics the daemon does not export: %s' % (source, missing)
