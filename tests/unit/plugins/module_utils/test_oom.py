"""Unit tests of plugins/module_utils/_oom.py over recorded kernel log lines and cgroup v1/v2 trees (fixtures/oom/).

kmsg_v1_parent_limit.txt, dmesg_v1_parent_limit.txt and dmesg_v1_six_kills.txt were recorded on the
test bed (kernel 6.18, cgroup v1) while tests/integration/test_oom.py caused kills with a parent
cgroup's limit; the *_hand_written.txt files follow the kernel's formats for 4.14 and for v2 with
the systemd driver.
"""

import os
import shutil

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _oom

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'oom')
WORKER = 'bd692285246f9368360118613db43219668ed149b31020e28df49fe0c000db18'
OTHER = 'a' * 64
V2_ID = '0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9'


def _fixture(name):
    with open(os.path.join(FIXTURES, name), encoding='utf-8') as handle:
        return handle.read()


def _kmsg_records(text):
    """The records of a recorded /dev/kmsg read: a line not starting with a space begins one."""
    records = []
    for line in text.splitlines(True):
        if line.startswith(' ') and records:
            records[-1] += line
        else:
            records.append(line)
    return records


def _parse_dmesg(text):
    parser = _oom.KillLineParser()
    kills = []
    for line in text.splitlines():
        parsed = _oom.parse_dmesg_line(line)
        if parsed:
            kill = parser.feed(*parsed)
            if kill:
                kills.append(kill)
    return kills


def test_recorded_kmsg_parent_limit_kill():
    parser = _oom.KillLineParser()
    kills = []
    for record in _kmsg_records(_fixture('kmsg_v1_parent_limit.txt')):
        seq, usec, message = _oom.parse_kmsg_record(record)
        assert seq > 0
        kill = parser.feed(usec, message)
        if kill:
            kills.append(kill)
    assert len(kills) == 1
    kill = kills[0]
    assert (kill['pid'], kill['comm'], kill['usec']) == (25113, 'python3', 528322609)
    assert kill['oom_memcg'] == '/sutazai-hd-oom-23382'
    assert kill['task_memcg'] == '/sutazai-hd-oom-23382/' + WORKER
    assert kill['container_id'] == WORKER and kill['constraint'] == 'CONSTRAINT_MEMCG'


def test_recorded_dmesg_gives_the_same_kill_and_six_kills_count_six():
    kills = _parse_dmesg(_fixture('dmesg_v1_parent_limit.txt'))
    assert [(k['pid'], k['usec'], k['container_id']) for k in kills] == [(25113, 528322609, WORKER)]
    six = _parse_dmesg(_fixture('dmesg_v1_six_kills.txt'))
    assert len(six) == 6 and len(set(k['pid'] for k in six)) == 6
    assert all(k['oom_memcg'].startswith('/sutazai-hd-oom-') and k['container_id'] for k in six)


def test_kernel_4_14_lines_and_a_global_oom():
    kills = _parse_dmesg(_fixture('dmesg_v4_14_hand_written.txt'))
    assert [(k['pid'], k['comm']) for k in kills] == [(4242, 'python3'), (777, 'ollama')]  # "Kill process", oom_reaper: not kills
    assert kills[0]['oom_memcg'] == '/sutazai' and kills[0]['task_memcg'].startswith('/sutazai/3f1e0c9a')
    assert kills[1]['oom_memcg'] is None and kills[1]['constraint'] == 'CONSTRAINT_NONE'


def test_v2_systemd_kmsg_records():
    parser = _oom.KillLineParser()
    kills = [k for k in (parser.feed(*_oom.parse_kmsg_record(r)[1:]) for r in _kmsg_records(_fixture('kmsg_v2_systemd_hand_written.txt'))) if k]
    assert [(k['pid'], k['container_id']) for k in kills] == [(5151, V2_ID), (600, None)]
    assert kills[0]['oom_memcg'] == '/sutazai.slice'
    assert kills[1]['task_memcg'] == '/system.slice/cron.service' and kills[1]['constraint'] == 'CONSTRAINT_NONE'


@pytest.mark.parametrize('line, expected', [
    ('[  528.322609] Memory cgroup out of memory: Killed process 1 (x)', (528322609, 'Memory cgroup out of memory: Killed process 1 (x)')),
    ('[    0.000001] Linux version', (1, 'Linux version')),
    ('  continuation without a timestamp', None),
])
def test_parse_dmesg_line(line, expected):
    assert _oom.parse_dmesg_line(line) == expected


def test_stack_paths():
    assert _oom.stack_key('sutazai') == _oom.stack_key('/sutazai/') == '/sutazai'
    assert _oom.stack_key('sutazai-agents.slice') == '/sutazai.slice/sutazai-agents.slice'
    assert _oom.is_below('/sutazai/' + OTHER, '/sutazai') and not _oom.is_below('/sutazai-other/x', '/sutazai')
    assert _oom.container_id_of('/system.slice/docker-%s.scope' % V2_ID) == V2_ID
    assert _oom.container_id_of('/system.slice/cron.service') is None


class FakeDmesg:
    """`dmesg` whose output grows as the test appends lines."""

    def __init__(self, text=''):
        self.text = text

    def __call__(self, command):
        return self.text


def test_kernel_log_from_dmesg_is_incremental():
    dmesg = FakeDmesg('[    1.000000] boot\n')
    log = _oom.KernelLog('dmesg', runner=dmesg)
    assert log.readable and log.source == 'dmesg'
    dmesg.text = _fixture('dmesg_v1_six_kills.txt')
    log.seek_end()  # the six kills happened before the baseline
    assert log.read() == []
    dmesg.text += _fixture('dmesg_v1_parent_limit.txt').replace('[  528.', '[  999.')
    assert [k['pid'] for k in log.read()] == [25113]
    assert log.read() == []
    log.seek(None)  # from the oldest message the kernel holds
    assert len(log.read()) == 7


def test_unreadable_kernel_log_says_why(tmp_path):
    def refuse(command):
        raise OSError('dmesg: read kernel buffer failed: Operation not permitted')
    log = _oom.KernelLog('auto', kmsg_path=str(tmp_path / 'no-kmsg'), runner=refuse)
    assert not log.readable
    assert 'not readable' in log.reason and 'no-kmsg' in log.reason and 'Operation not permitted' in log.reason
    assert log.read() == []
    assert not _oom.KernelLog(None).readable


class FakeApi:
    """The docker SDK's low-level API as far as the detector uses it."""

    def __init__(self, parents=None):
        self.events_list = []
        self.parents = parents or {}

    def events(self, since=None, until=None, decode=None, filters=None):
        return [e for e in self.events_list if float(since) <= e['timeNano'] / 1e9 <= float(until)]

    def inspect_container(self, cid):
        return {'HostConfig': {'CgroupParent': self.parents.get(cid, '')}}


class FakeClient:
    def __init__(self, parents=None):
        self.api = FakeApi(parents)


class Clock:
    def __init__(self):
        self.now = 1000000.0

    def __call__(self):
        return self.now


def _event(clock, cid, action, exit_code=None, name='c'):
    clock.now += 1
    attributes = {'name': name}
    if exit_code is not None:
        attributes['exitCode'] = str(exit_code)
    return {'id': cid, 'Action': action, 'status': action, 'timeNano': int(clock.now * 1e9), 'Actor': {'ID': cid, 'Attributes': attributes}}


def _v1_tree(tmp_path):
    root = tmp_path / 'cgroup'
    memory = root / 'memory'
    memory.mkdir(parents=True)
    (memory / 'memory.usage_in_bytes').write_text('0\n')
    stack = memory / 'sutazai'
    stack.mkdir()
    shutil.copy(os.path.join(FIXTURES, 'v1_memory.oom_control.none'), str(stack / 'memory.oom_control'))
    return root, stack


def _v1_container(stack, cid, fixture='v1_memory.oom_control.none'):
    directory = stack / cid
    directory.mkdir(exist_ok=True)
    (directory / 'memory.usage_in_bytes').write_text('0\n')
    shutil.copy(os.path.join(FIXTURES, fixture), str(directory / 'memory.oom_control'))
    return directory


def _kill_line(pid, cid, usec, stack='/sutazai'):
    return ('[%6d.%06d] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=%s,mems_allowed=0,oom_memcg=%s,'
            'task_memcg=%s/%s,task=python3,pid=%d,uid=0\n'
            '[%6d.%06d] Memory cgroup out of memory: Killed process %d (python3) total-vm:1kB\n'
            % (usec // 1000000, usec % 1000000, cid, stack, stack, cid, pid, usec // 1000000, usec % 1000000 + 1, pid))


def _detector(tmp_path, root, dmesg, client=None, clock=None, **kwargs):
    return _oom.OomDetector(stack_cgroup='sutazai', cgroup_root=str(root), docker_client=client,
                            kernel_log=_oom.KernelLog('dmesg', runner=dmesg), clock=clock or Clock(), **kwargs)


def test_one_kill_seen_by_kernel_log_and_counter_counts_once_in_either_order(tmp_path):
    root, stack = _v1_tree(tmp_path)
    _v1_container(stack, WORKER)
    dmesg = FakeDmesg(_fixture('dmesg_v1_six_kills.txt'))
    detector = _detector(tmp_path, root, dmesg).baseline()
    assert detector.poll() == []
    # the counter is read before the kernel line is (a poll between the two)
    _v1_container(stack, WORKER, 'v1_memory.oom_control.one_kill')
    assert len(detector.poll()) == 1
    dmesg.text += _kill_line(25113, WORKER, 1000000000)
    assert detector.poll() == []
    assert detector.count() == 1
    kill = detector.kills[0]
    assert set(kill['evidence']) == {'kernel_log', 'cgroup_counter'} and kill['container_id'] == WORKER and kill['pid'] == 25113
    # the parent's own counter is untouched (v1): the old signal would have said 0
    assert 'oom_kill 0' in (stack / 'memory.oom_control').read_text()
    report = detector.report()
    assert report['oom_kills'] == 1 and report['sources']['kernel_log'] == 'dmesg'


def test_kills_outside_the_stack_and_before_the_baseline_are_not_counted(tmp_path):
    root, stack = _v1_tree(tmp_path)
    _v1_container(stack, WORKER, 'v1_memory.oom_control.one_kill')  # killed before the baseline
    dmesg = FakeDmesg(_kill_line(1, WORKER, 5000000))
    detector = _detector(tmp_path, root, dmesg).baseline()
    dmesg.text += _kill_line(2, OTHER, 6000000, stack='/sutazai-elsewhere')
    dmesg.text += _kill_line(3, OTHER, 7000000, stack='/sutazai/nested')
    assert [k['pid'] for k in detector.poll()] == [3]


def test_exit_137_counts_only_without_a_kill_or_stop_event(tmp_path):
    root, stack = _v1_tree(tmp_path)
    client = FakeClient(parents={WORKER: '/sutazai', OTHER: '/sutazai'})
    clock = Clock()
    dmesg = FakeDmesg()
    detector = _detector(tmp_path, root, dmesg, client=client, clock=clock).baseline()
    events = client.api.events_list
    # docker stop: kill (SIGTERM), kill (SIGKILL), die 137, stop
    events += [_event(clock, OTHER, 'start'), _event(clock, OTHER, 'kill'), _event(clock, OTHER, 'kill'),
               _event(clock, OTHER, 'die', 137), _event(clock, OTHER, 'stop')]
    assert detector.poll() == [] and detector.count() == 0
    # started again, then killed by the kernel: die 137 with no kill event since the start
    events += [_event(clock, OTHER, 'start'), _event(clock, OTHER, 'die', 137, name='agent')]
    found = detector.poll()
    assert [(k['container_id'], k['container'], list(k['evidence'])) for k in found] == [(OTHER, 'agent', ['exit_137'])]
    assert detector.poll() == []  # overlapping event windows do not count it again
    # a container outside the stack exits 137 unexplained: not ours
    events += [_event(clock, WORKER[::-1], 'die', 137)]
    assert detector.poll() == []
    # the kernel line of that kill arrives late: same kill
    dmesg.text += _kill_line(99, OTHER, 8000000)
    assert detector.poll() == [] and set(detector.kills[0]['evidence']) == {'exit_137', 'kernel_log'}
    # an exit with 0 or 143 is not a kill
    events += [_event(clock, OTHER, 'start'), _event(clock, OTHER, 'die', 0), _event(clock, OTHER, 'start'), _event(clock, OTHER, 'die', 143)]
    assert detector.poll() == [] and detector.count() == 1


def test_a_recreated_cgroup_counts_its_kills_again(tmp_path):
    root, stack = _v1_tree(tmp_path)
    directory = _v1_container(stack, WORKER, 'v1_memory.oom_control.one_kill')
    detector = _detector(tmp_path, root, FakeDmesg()).baseline()
    assert detector.poll() == []
    shutil.rmtree(str(directory))
    detector.poll()
    keep = stack / 'placeholder'  # so the new directory cannot reuse the old inode
    keep.mkdir()
    _v1_container(stack, WORKER, 'v1_memory.oom_control.one_kill')  # restarted, killed again
    assert len(detector.poll()) == 1


def _v2_tree(tmp_path, stack_events='v2_memory.events.before', child_events='v2_memory.events.before'):
    root = tmp_path / 'unified'
    root.mkdir(exist_ok=True)
    (root / 'cgroup.controllers').write_text('cpuset cpu io memory pids\n')
    stack = root / 'sutazai.slice'
    child = stack / ('docker-%s.scope' % V2_ID)
    child.mkdir(parents=True, exist_ok=True)
    for directory, fixture in ((stack, stack_events), (child, child_events)):
        (directory / 'memory.current').write_text('0\n')
        shutil.copy(os.path.join(FIXTURES, fixture), str(directory / 'memory.events'))
    return root, stack, child


def test_v2_memory_events_of_the_stack_count_descendants_kills_once(tmp_path):
    root, _stack, _child = _v2_tree(tmp_path)
    dmesg = FakeDmesg()
    detector = _oom.OomDetector(stack_cgroup='sutazai.slice', cgroup_root=str(root), kernel_log=_oom.KernelLog('dmesg', runner=dmesg),
                                clock=Clock()).baseline()
    assert detector.poll() == []
    # two kills in the container: the stack's memory.events (hierarchical) and the leaf's both say 2
    _v2_tree(tmp_path, 'v2_memory.events.two_kills', 'v2_memory.events.two_kills')
    dmesg.text += ''.join(_kill_line(pid, 'docker-%s.scope' % V2_ID, pid * 1000000, stack='/sutazai.slice') for pid in (11, 12))
    assert len(detector.poll()) == 2
    assert all(set(k['evidence']) == {'kernel_log', 'cgroup_counter', 'memory_events'} for k in detector.kills)
    assert [k['container_id'] for k in detector.kills] == [V2_ID, V2_ID]
    assert detector.poll() == [] and detector.count() == 2


def test_v2_stack_wide_kill_first_then_its_kernel_line(tmp_path):
    """memory.events alone first (a container gone before its counter was read), the kernel line next: one kill."""
    root, stack, child = _v2_tree(tmp_path)
    dmesg = FakeDmesg()
    detector = _oom.OomDetector(stack_cgroup='sutazai.slice', cgroup_root=str(root), kernel_log=_oom.KernelLog('dmesg', runner=dmesg),
                                clock=Clock()).baseline()
    shutil.rmtree(str(child))
    shutil.copy(os.path.join(FIXTURES, 'v2_memory.events.two_kills'), str(stack / 'memory.events'))
    found = detector.poll()
    assert len(found) == 2 and all(k['container_id'] is None for k in found)
    dmesg.text += _kill_line(11, 'docker-%s.scope' % V2_ID, 11000000, stack='/sutazai.slice')
    assert detector.poll() == [] and detector.count() == 2
    assert detector.kills[0]['container_id'] == V2_ID and set(detector.kills[0]['evidence']) == {'memory_events', 'kernel_log'}


def test_watched_containers_without_a_stack(tmp_path):
    root = tmp_path / 'cgroup'
    (root / 'memory').mkdir(parents=True)
    (root / 'memory' / 'memory.usage_in_bytes').write_text('0\n')
    docker_dir = root / 'memory' / 'docker'
    docker_dir.mkdir()
    _v1_container(docker_dir, WORKER)
    _v1_container(docker_dir, OTHER)
    dmesg = FakeDmesg()
    detector = _oom.OomDetector(containers=[WORKER], cgroup_root=str(root), kernel_log=_oom.KernelLog('dmesg', runner=dmesg),
                                clock=Clock()).baseline()
    _v1_container(docker_dir, OTHER, 'v1_memory.oom_control.one_kill')
    dmesg.text += _kill_line(5, OTHER, 5000000, stack='/docker')
    assert detector.poll() == []
    _v1_container(docker_dir, WORKER, 'v1_memory.oom_control.one_kill')
    dmesg.text += _kill_line(6, WORKER, 6000000, stack='/docker')
    assert [(k['pid'], sorted(k['evidence'])) for k in detector.poll()] == [(6, ['cgroup_counter', 'kernel_log'])]


def test_guard_readings_count_the_stack_kills_the_cgroup_counter_misses(tmp_path):
    """Readings.stack: oom_kills comes from the detector; the stack's own v1 counter stays 0 for a child's kill."""
    from ansible_collections.sutazai.ops.plugins.module_utils import _guard as guard  # pylint: disable=import-outside-toplevel
    root, stack = _v1_tree(tmp_path)
    for name, text in (('memory.usage_in_bytes', '104857600\n'), ('memory.limit_in_bytes', '209715200\n'), ('memory.stat', 'total_inactive_file 0\n')):
        (stack / name).write_text(text)
    _v1_container(stack, WORKER)
    dmesg = FakeDmesg()
    readings = guard.Readings(guard.CgroupReader(str(root)), stack_cgroup='sutazai')
    readings.oom_detector = _detector(tmp_path, root, dmesg).baseline()
    assert readings.stack()['oom_kills'] == 0
    _v1_container(stack, WORKER, 'v1_memory.oom_control.one_kill')
    dmesg.text += _kill_line(25113, WORKER, 1000000000)
    reading = readings.stack()
    assert 'oom_kill 0' in (stack / 'memory.oom_control').read_text()
    assert reading['oom_kills'] == 1
    assert reading['oom_kills_seen'] == [{'container_id': WORKER, 'container': None, 'pid': 25113, 'comm': 'python3',
                                          'evidence': ['cgroup_counter', 'kernel_log']}]
    assert readings.stack()['oom_kills'] == 1
