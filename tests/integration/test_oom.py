"""The OOM-kill detector (module_utils/_oom.py) against real kills caused by a PARENT cgroup's limit.

A parent cgroup capped at 200 MiB holds containers (`--cgroup-parent`); a process in one of them
allocates 300 MiB and the kernel kills it. The signals the guard used before (Docker's
State.OOMKilled, the parent's memory.oom_control oom_kill) miss such a kill; the detector must
count it once. A container stopped or killed by the operator exits 137 too: that is not a kill.
"""

import os
import time

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _oom

docker = pytest.importorskip('docker')

MIB = 1024 * 1024
LABEL = 'sutazai.test'
ALLOCATE = ("import time\nb = []\nfor i in range(300):\n    b.append(bytearray(1 << 20)); b[-1][::4096] = b'x' * 256\n"
            "time.sleep(600)\n")


@pytest.fixture(name='parent')
def fixture_parent():
    """A v1 memory cgroup capped at 200 MiB (memory and memory+swap), and a client; all removed afterwards."""
    if not os.path.isdir('/sys/fs/cgroup/memory'):
        pytest.skip('needs a cgroup v1 memory hierarchy')
    name = 'sutazai-hd-oom-%d' % os.getpid()
    path = '/sys/fs/cgroup/memory/' + name
    os.makedirs(path, exist_ok=True)
    for limit_file in ('memory.limit_in_bytes', 'memory.memsw.limit_in_bytes'):
        if os.path.exists(os.path.join(path, limit_file)):
            with open(os.path.join(path, limit_file), 'w', encoding='ascii') as handle:
                handle.write(str(200 * MIB))
    client = docker.from_env()

    def run(command, **kwargs):
        return client.containers.run('sutazai-testbed/base:latest', command, detach=True, cgroup_parent='/' + name,
                                     labels={LABEL: name}, **kwargs)
    try:
        yield {'name': name, 'path': path, 'client': client, 'run': run}
    finally:
        for container in client.containers.list(all=True, filters={'label': LABEL + '=' + name}):
            container.remove(force=True)
        for _attempt in range(50):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


def _parent_oom_kill(parent):
    with open(os.path.join(parent['path'], 'memory.oom_control'), encoding='ascii') as handle:
        return int(dict(line.split() for line in handle if line.strip())['oom_kill'])


def _poll_until(detector, count, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        detector.poll()
        if detector.count() >= count:
            break
        time.sleep(0.2)
    for _extra in range(3):  # later polls must not count the same kill again
        time.sleep(0.3)
        detector.poll()
    return detector.count()


def _wait_exit(container, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        container.reload()
        if container.status == 'exited':
            return container.attrs['State']
        time.sleep(0.2)
    raise AssertionError('%s did not exit' % container.name)


def test_a_worker_killed_by_the_parent_limit_is_counted_once(parent):
    """A worker (not PID 1) is killed: the container runs on, OOMKilled false, parent oom_kill 0; the detector counts 1."""
    detector = _oom.OomDetector(stack_cgroup=parent['name'], docker_client=parent['client']).baseline()
    try:
        assert detector.kernel.readable, detector.sources()
        saved = detector.kernel.position
        hog = parent['run'](['sh', '-c', 'python3 -c "$0"; echo worker exit $?; sleep 600', ALLOCATE], name=parent['name'] + '-worker')
        assert _poll_until(detector, 1) == 1, detector.report()
        hog.reload()
        # the old signals see nothing
        assert hog.status == 'running' and hog.attrs['State']['OOMKilled'] is False
        assert _parent_oom_kill(parent) == 0
        assert b'worker exit 137' in hog.logs()
        kill = detector.kills[0]
        assert kill['container_id'] == hog.id
        assert kill['comm'] == 'python3' and kill['oom_memcg'] == '/' + parent['name']
        assert set(kill['evidence']) == {'kernel_log', 'cgroup_counter'}, kill
        assert kill['evidence']['kernel_log']['task_memcg'] == '/%s/%s' % (parent['name'], hog.id)
        # a reader resuming from the saved position (a restarted daemon) finds the same kill
        resumed = _oom.KernelLog(detector.kernel.source)
        try:
            resumed.seek(saved)
            assert [k['pid'] for k in resumed.read() if k['container_id'] == hog.id] == [kill['pid']]
        finally:
            resumed.close()
    finally:
        detector.close()


def test_pid1_killed_by_the_parent_limit_is_counted_once(parent):
    """PID 1 is killed: exit 137 with no kill/stop event; the kernel log and the exit agree on one kill."""
    detector = _oom.OomDetector(stack_cgroup=parent['name'], docker_client=parent['client']).baseline()
    try:
        hog = parent['run'](['python3', '-c', ALLOCATE], name=parent['name'] + '-pid1')
        state = _wait_exit(hog)
        assert state['ExitCode'] == 137
        assert _poll_until(detector, 1) == 1, detector.report()
        assert _parent_oom_kill(parent) == 0
        kill = detector.kills[0]
        assert kill['container_id'] == hog.id
        assert {'kernel_log', 'exit_137'} <= set(kill['evidence']), kill
    finally:
        detector.close()


def test_without_the_kernel_log_the_exit_and_the_counter_still_see_kills(parent):
    """kernel_log=None (a host where it is unreadable): a worker kill by its counter, a PID 1 kill by its exit."""
    detector = _oom.OomDetector(stack_cgroup=parent['name'], docker_client=parent['client'], kernel_log=None).baseline()
    assert 'not read' in detector.sources()['kernel_log']
    worker = parent['run'](['sh', '-c', 'python3 -c "$0"; sleep 600', ALLOCATE], name=parent['name'] + '-w')
    assert _poll_until(detector, 1) == 1, detector.report()
    assert set(detector.kills[0]['evidence']) == {'cgroup_counter'}
    worker.remove(force=True)  # rm -f sends `kill`: its exit is not a kill
    pid1 = parent['run'](['python3', '-c', ALLOCATE], name=parent['name'] + '-p')
    _wait_exit(pid1)
    assert _poll_until(detector, 2) == 2, detector.report()
    assert detector.kills[1]['container_id'] == pid1.id and 'exit_137' in detector.kills[1]['evidence']


@pytest.mark.parametrize('how', ['stop', 'kill'])
def test_exit_137_by_the_operator_is_not_a_kill(parent, how):
    """`docker stop` (no SIGTERM handler: SIGKILL after the timeout) and `docker kill` give exit 137 and no kill."""
    detector = _oom.OomDetector(stack_cgroup=parent['name'], docker_client=parent['client']).baseline()
    try:
        sleeper = parent['run'](['python3', '-c', 'import time; time.sleep(600)'], name=parent['name'] + '-' + how)
        time.sleep(1)
        if how == 'stop':
            sleeper.stop(timeout=1)
        else:
            sleeper.kill()
        assert _wait_exit(sleeper)['ExitCode'] == 137
        assert _poll_until(detector, 1, timeout=3) == 0, detector.report()
    finally:
        detector.close()


def test_bystander_stopped_after_a_parent_oom_is_not_a_kill(parent):
    """Docker marks a bystander OOMKilled after the parent ran out; the detector counts only the real victim."""
    detector = _oom.OomDetector(stack_cgroup=parent['name'], docker_client=parent['client']).baseline()
    try:
        bystander = parent['run'](['python3', '-c', 'import time; time.sleep(600)'], name=parent['name'] + '-bystander')
        parent['run'](['sh', '-c', 'python3 -c "$0"; sleep 600', ALLOCATE], name=parent['name'] + '-hog')
        assert _poll_until(detector, 1) == 1, detector.report()
        bystander.stop(timeout=1)
        state = _wait_exit(bystander)
        assert state['ExitCode'] == 137
        assert _poll_until(detector, 2, timeout=3) == 1, detector.report()
        assert detector.kills[0]['container_id'] != bystander.id
    finally:
        detector.close()
