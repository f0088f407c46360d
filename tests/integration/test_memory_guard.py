"""memory_guard on real memory: a 1 GiB stack cgroup, the Ollama emulator holding real model
memory, a tier-1 redis and tier-3 HTTP containers that hold memory.

soft -> models unloaded, no container stopped; hard -> models, then tier 3 stopped, tier 1
untouched; low long enough -> restored. No process in the stack is OOM-killed at any point: the
OOM-kill detector (module_utils/_oom.py) watches the stack cgroup from the fixture's start, since
Docker's OOMKilled and the stack's own oom_kill counter miss a kill caused by the stack's limit;
the last stack test causes such a kill and shows the check sees it.
"""

import json
import os
import socket
import time
import urllib.request

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _oom

docker = pytest.importorskip('docker')

STACK = 'sutazai-it-guard'
V1_DIR = '/sys/fs/cgroup/memory/' + STACK
MB = 1000 * 1000
MIB = 1024 * 1024
LABEL = 'sutazai.test'
CATALOG = {'guard-a': {'size': 120 * MB}, 'guard-b': {'size': 120 * MB}, 'guard-c': {'size': 120 * MB}}
THRESHOLDS = {'soft': 50, 'hard': 70, 'restore_below': 40, 'restore_after': 3}


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _post(url, body, timeout=60):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method='POST', headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return resp.read()


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _stack_usage_mib():
    with open(V1_DIR + '/memory.usage_in_bytes', encoding='ascii') as handle:
        usage = int(handle.read())
    with open(V1_DIR + '/memory.stat', encoding='ascii') as handle:
        stat = dict(line.split() for line in handle)
    return (usage - int(stat.get('total_inactive_file', 0))) / MIB


@pytest.fixture(name='stack', scope='module')
def fixture_stack(tmp_path_factory):
    """The stack: cgroup with a 1 GiB limit, emulator, redis (tier 1), two tier-3 memory holders."""
    if not os.path.isdir('/sys/fs/cgroup/memory'):
        pytest.skip('this test drives a cgroup v1 memory hierarchy; the host has none')
    client = docker.from_env()
    os.makedirs(V1_DIR, exist_ok=True)
    with open(V1_DIR + '/memory.limit_in_bytes', 'w', encoding='ascii') as handle:
        handle.write(str(1024 * MIB))
    if os.path.exists(V1_DIR + '/memory.memsw.limit_in_bytes'):  # memory + swap too: swap turned on elsewhere changes nothing here
        with open(V1_DIR + '/memory.memsw.limit_in_bytes', 'w', encoding='ascii') as handle:
            handle.write(str(1024 * MIB))
    port = _free_port()
    common = {'detach': True, 'cgroup_parent': '/' + STACK, 'labels': {LABEL: 'guard'}}
    created = []
    try:
        created.append(client.containers.run(
            'sutazai-testbed/ollama:latest', name='it-guard-ollama', ports={'11434/tcp': ('127.0.0.1', port)},
            environment={'OLLAMA_EMULATOR_CATALOG': json.dumps(CATALOG), 'OLLAMA_KEEP_ALIVE': '-1', 'OLLAMA_MAX_LOADED_MODELS': '3',
                         'OLLAMA_EMULATOR_UNLOAD_DELAY': '0.1'},
            **dict(common, labels={LABEL: 'guard', 'sutazai.tier': '1'})))
        created.append(client.containers.run('sutazai-testbed/redis:latest', name='it-guard-redis',
                                             **dict(common, labels={LABEL: 'guard', 'sutazai.tier': '1'})))
        for name, hold in (('it-guard-agent-big', 200), ('it-guard-agent-small', 60)):
            created.append(client.containers.run('sutazai-testbed/http:latest', name=name, environment={'HOLD_MB': str(hold)},
                                                 **dict(common, labels={LABEL: 'guard', 'sutazai.tier': '3'})))
        url = 'http://127.0.0.1:%d' % port
        deadline = time.time() + 30
        while True:
            try:
                _get(url + '/api/version')
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        for model in CATALOG:
            _post(url + '/api/pull', {'model': model, 'stream': False})
        detector = _oom.OomDetector(stack_cgroup=STACK, docker_client=client).baseline()
        assert detector.kernel.readable, detector.sources()
        yield {'client': client, 'url': url, 'state_file': str(tmp_path_factory.mktemp('guard') / 'guard.json'), 'oom': detector}
    finally:
        for container in client.containers.list(all=True, filters={'label': LABEL + '=guard'}):
            container.remove(force=True)
        try:
            os.rmdir(V1_DIR)
        except OSError:
            pass


def _load(stack, models):
    for model in models:
        _post(stack['url'] + '/api/generate', {'model': model, 'keep_alive': -1})


def _guard(module_runner, stack, **extra):
    args = dict(THRESHOLDS, stack_cgroup=STACK, ollama_host=stack['url'], ollama_keep_alive=300, state_file=stack['state_file'])
    args.update(extra)
    return module_runner('memory_guard', args)


def _running(stack):
    return sorted(c.name for c in stack['client'].containers.list(filters={'label': LABEL + '=guard'}))


def _state_text(stack):
    """The guard's state file as text, or None."""
    try:
        with open(stack['state_file'], encoding='utf-8') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _oom_killed(stack):
    """OOM kills in the stack cgroup since the fixture started, from the detector (kernel log, victim counters, exits)."""
    stack['oom'].poll()
    return ['%s %s pid %s (%s): %s' % (k.get('container_id'), k.get('container') or '', k.get('pid'), k.get('comm'), sorted(k['evidence']))
            for k in stack['oom'].kills]


def test_soft_unloads_models_and_stops_nothing(module_runner, stack):
    """Three loaded models push the stack above soft: models go, every container stays."""
    _load(stack, ['guard-a', 'guard-b', 'guard-c'])
    usage = _stack_usage_mib()
    assert 50 < usage / 10.24 < 70, 'stack at %.0f MiB: the test needs it between soft and hard' % usage
    everyone = _running(stack)
    check = module_runner('memory_guard', dict(THRESHOLDS, stack_cgroup=STACK, ollama_host=stack['url'], state_file=stack['state_file']),
                          check=True)
    assert check['changed'] and check['level'] == 'soft'
    assert len(_get(stack['url'] + '/api/ps')['models']) == 3, 'check mode unloaded a model'
    result = _guard(module_runner, stack)
    assert not result.get('failed'), result.get('msg')
    assert result['level'] == 'soft'
    unloaded = [a['model'] for a in result['actions'] if a['action'] == 'unload']
    assert unloaded and all(a['action'] == 'unload' for a in result['actions'])
    assert result['pressure_after'] < THRESHOLDS['soft']
    assert _stack_usage_mib() / 10.24 < THRESHOLDS['soft']
    assert _running(stack) == everyone
    assert not _oom_killed(stack)


def test_hard_stops_tier3_largest_first_and_never_tier1(module_runner, stack):
    """Models and tier-3 memory above hard: all models unloaded, then the big agent stopped; tier 1 runs on."""
    # the big agent leaks up to 450 MiB: unloading the models alone no longer brings the stack below soft
    code, out = stack['client'].containers.get('it-guard-agent-big').exec_run(['curl', '-sf', '-XPOST', 'http://127.0.0.1:8080/hold?mb=450'])
    assert code == 0, out
    _load(stack, ['guard-a', 'guard-b'])
    usage = _stack_usage_mib()
    assert usage / 10.24 > THRESHOLDS['hard'], 'stack at %.0f MiB: the test needs it above hard' % usage
    state_before = _state_text(stack)
    models_before = sorted(m['name'] for m in _get(stack['url'] + '/api/ps')['models'])
    plan = module_runner('memory_guard', dict(THRESHOLDS, stack_cgroup=STACK, ollama_host=stack['url'], state_file=stack['state_file'],
                                              restore_after=3600), check=True, diff=True)
    assert plan['changed'] and plan['level'] == 'hard'
    assert [a['container'] for a in plan['actions'] if a['action'] == 'stop'] == ['it-guard-agent-big']
    assert plan['diff']['before'] != plan['diff']['after']
    assert sorted(m['name'] for m in _get(stack['url'] + '/api/ps')['models']) == models_before, 'check mode unloaded a model'
    assert 'it-guard-agent-big' in _running(stack), 'check mode stopped a container'
    assert _state_text(stack) == state_before, 'check mode wrote the state file'
    result = _guard(module_runner, stack, restore_after=3600)
    assert not result.get('failed'), result.get('msg')
    assert result['level'] == 'hard'
    kinds = [a['action'] for a in result['actions']]
    assert kinds[:kinds.index('stop')] == ['unload'] * kinds.index('stop')
    stopped = [a['container'] for a in result['actions'] if a['action'] == 'stop']
    assert stopped == ['it-guard-agent-big']
    assert _get(stack['url'] + '/api/ps')['models'] == []
    running = _running(stack)
    assert 'it-guard-redis' in running and 'it-guard-ollama' in running
    assert 'it-guard-agent-big' not in running
    assert [r['name'] for r in result['stopped_by_guard']] == ['it-guard-agent-big']
    assert not _oom_killed(stack)
    # the record is on disk for the next run (or a restarted daemon)
    with open(stack['state_file'], encoding='utf-8') as handle:
        assert [r['name'] for r in json.load(handle)['stopped']] == ['it-guard-agent-big']


def test_restore_after_pressure_stays_low(module_runner, stack):
    """Below restore_below for restore_after seconds: the stopped container is started again."""
    stack['client'].containers.get('it-guard-agent-small').stop(timeout=5)  # free memory (not the guard's doing)
    first = _guard(module_runner, stack)
    assert first['actions'] == [] and first['level'] == 'ok'
    time.sleep(THRESHOLDS['restore_after'] + 0.5)
    second = _guard(module_runner, stack)
    assert [(a['action'], a['container']) for a in second['actions']] == [('start', 'it-guard-agent-big')]
    assert 'it-guard-agent-big' in _running(stack)
    assert second['stopped_by_guard'] == []
    # the container the guard did not stop stays stopped: restore only undoes the guard's own work
    assert 'it-guard-agent-small' not in _running(stack)
    assert not _oom_killed(stack)


def test_the_oom_check_sees_a_kill_caused_by_the_stack_limit(stack):
    """The check the tests above rely on can fail: a container asks for more than the 1 GiB stack holds and is killed."""
    assert not _oom_killed(stack)
    hog = stack['client'].containers.get('it-guard-agent-small')
    hog.start()
    deadline = time.time() + 120  # generous: touching a GiB is slow on a loaded 2-core machine
    while hog.status != 'running' and time.time() < deadline:
        time.sleep(0.2)
        hog.reload()
    while hog.exec_run(['curl', '-sf', '-m', '5', 'http://127.0.0.1:8080/health'])[0] != 0 and time.time() < deadline:
        time.sleep(0.5)  # the service listens a moment after the container starts
    hog.exec_run(['curl', '-s', '-m', '90', '-XPOST', 'http://127.0.0.1:8080/hold?mb=1200'])
    while not _oom_killed(stack) and time.time() < deadline:
        time.sleep(0.2)
    killed = _oom_killed(stack)
    assert len(killed) == 1 and killed[0].startswith(hog.id), killed
    with open(os.path.join(V1_DIR, 'memory.oom_control'), encoding='ascii') as handle:
        assert 'oom_kill 0' in handle.read(), 'the stack\'s own counter counted the kill: the old check would have seen it too'


@pytest.mark.parametrize('args, message', [
    ({'soft': 95, 'hard': 90}, 'soft (95.0%) must be below hard (90.0%)'),
    ({'mode': 'yolo'}, 'yolo'),
    ({'hard': 120}, 'hard must be between 1 and 99 percent, got 120'),
    ({'soft': 0.5}, 'soft must be between 1 and 99 percent, got 0.5'),
    ({'restore_below': 85}, 'restore_below (85.0%) must be below soft (80.0%)'),
])
def test_bad_options_are_refused_and_nothing_is_written(module_runner, tmp_path, args, message):
    """A clear message naming the value; no state file appears."""
    state_file = tmp_path / 'guard.json'
    result = module_runner('memory_guard', dict(args, ollama_host='', state_file=str(state_file)))
    assert result.get('failed')
    assert message in result['msg']
    assert not state_file.exists()


def test_fail_above_gate_and_report_only(module_runner, tmp_path):
    """act=false reports the snapshot without a plan; fail_above fails naming the pressure."""
    state_file = tmp_path / 'guard.json'
    report = module_runner('memory_guard', {'act': False, 'ollama_host': '', 'state_file': str(state_file)}, diff=True)
    assert not report.get('failed') and report['changed'] is False and report['actions'] == []
    assert 0 < report['snapshot']['host']['mem_total'] and report['snapshot']['host']['mem_available'] > 0
    assert report['level'] == 'ok'
    gate = module_runner('memory_guard', {'act': False, 'ollama_host': '', 'fail_above': 1, 'state_file': str(state_file)})
    assert gate.get('failed')
    assert 'above fail_above 1.0%' in gate['msg']
    assert not state_file.exists()


def test_unreachable_docker_engine_is_a_warning_not_a_crash(module_runner, tmp_path):
    """A preflight on a host whose engine is down still reads the host and answers."""
    result = module_runner('memory_guard', {'act': False, 'ollama_host': '', 'docker_host': 'unix:///nonexistent/docker.sock',
                                            'state_file': str(tmp_path / 'guard.json')})
    assert not result.get('failed'), result.get('msg')
    assert result['snapshot']['host']['mem_total'] > 0
    assert any('/nonexistent/docker.sock' in w for w in result.get('warnings', []))
