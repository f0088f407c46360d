"""The modules on a real cgroup v2 kernel with Docker's systemd cgroup driver (the QEMU guest of conftest.py).

What differs from the cgroup v1 test bed: the stack cgroup is a systemd slice (`sutazai.slice`, MemoryMax) and the
containers are `docker-<id>.scope` units in it; limits live in memory.max / cpu.max, usage in memory.current, the
inactive file cache in memory.stat's `inactive_file` (no `total_` keys), OOM kills in memory.events, which on v2 also
counts the kills of descendants. Every assertion is checked against the guest kernel's own files.

With SUTAZAI_VM_CAPTURE=<directory> the run also copies the cgroup files it read into <directory>/cgroup_v2_real
(the unit tests' recorded fixtures, tests/unit/plugins/module_utils/fixtures/cgroup_v2_real).
"""

import json
import os
import shlex

import pytest

MIB = 1024 * 1024
MB = 1000 * 1000
CG = '/sys/fs/cgroup'
SLICE = 'sutazai.slice'
SLICE_DIR = CG + '/' + SLICE
SLICE_MAX = 600 * MIB
STATE_DIR = '/var/lib/sutazai-vm'
CAPTURE_FILES = ('memory.current', 'memory.max', 'memory.high', 'memory.low', 'memory.min', 'memory.stat', 'memory.events',
                 'memory.events.local', 'memory.swap.current', 'memory.swap.max', 'memory.peak', 'memory.pressure',
                 'cgroup.controllers', 'cgroup.subtree_control', 'cgroup.type', 'cpu.max')


def _working_set(guest, directory):
    """memory.current minus memory.stat inactive_file, as read from the guest's kernel now."""
    usage = guest.read_int(directory + '/memory.current')
    return usage - guest.read_keyed(directory + '/memory.stat')['inactive_file']


def _holder(guest, name, hold_mb, tier=None, parent=None, extra=''):
    """A container of the guest's python3 image holding `hold_mb` MB of touched memory (the memhog service)."""
    labels = ' -l sutazai.tier=%s' % tier if tier is not None else ''
    parent_opt = ' --cgroup-parent ' + parent if parent else ''
    guest.sh('docker rm -f %s >/dev/null 2>&1; docker run -d --name %s --network none%s%s %s -e HOLD_MB=%d -e PYTHONUNBUFFERED=1 '
             '-v %s:/app:ro %s python3 /app/memhog_http.py >/dev/null'
             % (name, name, labels, parent_opt, extra, hold_mb, guest.payload_dir, guest.python_image))
    return guest.container_id(name)


def _wait_usage(guest, directory, at_least):
    guest.wait_for('test "$(cat %s/memory.current)" -ge %d' % (directory, at_least), timeout=180,
                   what='%s/memory.current reaching %d' % (directory, at_least))


def _capture(guest, remote_dir, name):
    target = os.environ.get('SUTAZAI_VM_CAPTURE')
    if target:
        guest.get_tree(remote_dir, os.path.join(target, 'cgroup_v2_real', name), CAPTURE_FILES)


@pytest.fixture(name='stack', scope='module')
def fixture_stack(guest):
    """sutazai.slice with MemoryMax=600M, a tier-1 holder (100 MB) and a tier-3 holder (250 MB) in it."""
    guest.sh('mkdir -p /run/systemd/system && printf "[Slice]\\nMemoryMax=%d\\n" >/run/systemd/system/%s '
             '&& systemctl daemon-reload && systemctl start %s' % (SLICE_MAX, SLICE, SLICE))
    try:
        ids = {'tier1': _holder(guest, 'vm-tier1', 100, tier=1, parent=SLICE),
               'tier3': _holder(guest, 'vm-tier3', 250, tier=3, parent=SLICE)}
        dirs = {key: '%s/docker-%s.scope' % (SLICE_DIR, value) for key, value in ids.items()}
        _wait_usage(guest, dirs['tier1'], 100 * MB)
        _wait_usage(guest, dirs['tier3'], 250 * MB)
        yield {'ids': ids, 'dirs': dirs}
    finally:
        guest.sh('docker rm -f vm-tier1 vm-tier3 >/dev/null 2>&1; rm -rf %s/guard*; true' % STATE_DIR, check=False)


def test_slice_and_scopes_are_systemd_units_with_the_slice_limit(guest, stack):
    """Docker's systemd driver put each container in sutazai.slice as docker-<id>.scope; the slice's limit is MemoryMax."""
    assert guest.read_int(SLICE_DIR + '/memory.max') == SLICE_MAX
    for directory in stack['dirs'].values():
        assert guest.sh('test -d %s && echo yes' % directory) == 'yes'
        assert guest.read(directory + '/memory.max') == 'max'
    assert guest.sh('systemctl show -p MemoryMax --value ' + SLICE) == str(SLICE_MAX)
    # the slice's memory.current counts its scopes'
    assert guest.read_int(SLICE_DIR + '/memory.current') >= 350 * MB


def test_slice_memory_events_count_a_descendant_oom_kill(guest):
    """On v2 an ancestor's memory.events counts the kills its limit causes below it: the guard test's `0 OOM kills` can fail."""
    name = 'oomcheck.slice'  # a dash would make it a child of sutazai.slice
    guest.sh('printf "[Slice]\\nMemoryMax=%d\\nMemorySwapMax=0\\n" >/run/systemd/system/%s && systemctl daemon-reload && systemctl start %s'
             % (80 * MIB, name, name))
    try:
        _holder(guest, 'vm-oom-victim', 200, parent=name)
        guest.wait_for('test "$(docker inspect -f {{.State.Running}} vm-oom-victim)" = false', timeout=180, what='the victim dying')
        events = guest.read_keyed('%s/%s/memory.events' % (CG, name))
        assert events['oom_kill'] >= 1, events
        assert guest.sh('docker inspect -f {{.State.ExitCode}} vm-oom-victim') == '137'
    finally:
        guest.sh('docker rm -f vm-oom-victim >/dev/null 2>&1; systemctl stop %s; rm -f /run/systemd/system/%s; systemctl daemon-reload'
                 % (name, name), check=False)


def _shell(command):
    return {'ansible.builtin.shell': command, 'changed_when': False}


def _figures(text):
    """`usage inactive_file` lines (see _WS) as [(usage, inactive_file), ...]."""
    return [tuple(int(word) for word in line.split()) for line in text.splitlines()]


# memory.current and memory.stat's inactive_file of a cgroup directory, on one line
_WS = 'echo $(cat {0}/memory.current) $(sed -n "s/^inactive_file //p" {0}/memory.stat)'


def test_guard_reads_the_slice_and_stops_tier3_at_hard(guest, stack):
    """memory_guard with stack_cgroup=sutazai.slice: the stack's figures are the kernel's; at hard it stops tier 3, never tier 1."""
    # some inactive file cache in the tier-3 scope, so usage and working set differ in what is captured
    guest.sh("docker exec vm-tier3 python3 -c \"open('/tmp/cache', 'wb').write(b'x' * (24 << 20))\"")
    _capture(guest, SLICE_DIR, 'sutazai.slice')
    _capture(guest, stack['dirs']['tier3'], 'sutazai.slice/docker-%s.scope' % stack['ids']['tier3'])
    _capture(guest, CG, '.')
    kills_before = guest.read_keyed(SLICE_DIR + '/memory.events')['oom_kill']

    base = {'stack_cgroup': SLICE, 'soft': 45, 'hard': 55, 'restore_after': 3600, 'ollama_host': '',
            'state_file': STATE_DIR + '/guard.json'}
    report, read, result = guest.play([
        ('memory_guard', dict(base, act=False)),
        _shell('%s; %s' % (_WS.format(SLICE_DIR), _WS.format(stack['dirs']['tier3']))),
        ('memory_guard', base),
    ])
    assert not report.get('failed'), report
    (slice_usage, slice_inactive), (tier3_usage, tier3_inactive) = _figures(read['stdout'])
    stack_reading = report['snapshot']['stack']
    assert stack_reading['limit'] == guest.read_int(SLICE_DIR + '/memory.max') == SLICE_MAX
    assert abs(stack_reading['usage'] - (slice_usage - slice_inactive)) < 16 * MIB, (stack_reading, slice_usage, slice_inactive)
    by_name = {item['name']: item for item in report['snapshot']['containers']}
    assert abs(by_name['vm-tier3']['usage'] - (tier3_usage - tier3_inactive)) < 16 * MIB
    assert tier3_inactive >= 16 * MIB          # the cache written above is not counted as used
    assert report['level'] == 'hard', report['snapshot']
    assert report['snapshot']['pressure_source'] == 'stack'

    assert not result.get('failed'), result
    assert result['changed'] is True
    stops = [action for action in result['actions'] if action['action'] == 'stop']
    assert [action['container'] for action in stops] == ['vm-tier3'], result['actions']
    assert guest.sh('docker inspect -f {{.State.Running}} vm-tier3') == 'false'
    assert guest.sh('docker inspect -f {{.State.Running}} vm-tier1') == 'true'
    # what the kernel shows after: the scope is gone, the slice is below soft, nobody was OOM-killed
    assert guest.sh('test -e %s && echo present || echo gone' % stack['dirs']['tier3']) == 'gone'
    assert _working_set(guest, SLICE_DIR) < 0.45 * SLICE_MAX
    assert guest.read_keyed(SLICE_DIR + '/memory.events')['oom_kill'] == kills_before
    assert guest.read_keyed(stack['dirs']['tier1'] + '/memory.events')['oom_kill'] == 0
    assert guest.sh('docker inspect -f {{.State.OOMKilled}} vm-tier3') == 'false'
    record = json.loads(guest.read(STATE_DIR + '/guard.json'))
    assert 'vm-tier3' in json.dumps(record)


@pytest.fixture(name='limited')
def fixture_limited(guest):
    """A container with --memory 300m --cpus 0.5 holding 120 MB, in the engine's default slice."""
    cid = _holder(guest, 'vm-limits', 120, extra='--memory 300m --cpus 0.5')
    directory = '%s/system.slice/docker-%s.scope' % (CG, cid)
    _wait_usage(guest, directory, 120 * MB)
    try:
        yield {'id': cid, 'dir': directory}
    finally:
        guest.sh('docker rm -f vm-limits >/dev/null 2>&1', check=False)


def test_container_limits_in_place_read_back_from_memory_max_and_cpu_max(guest, limited):
    """container_limits changes memory and cpus in place; memory.max and cpu.max say so; a limit below usage is refused."""
    directory = limited['dir']
    assert guest.read_int(directory + '/memory.max') == 300 * MIB
    assert guest.read(directory + '/cpu.max') == '50000 100000'
    started = guest.sh('docker inspect -f {{.State.StartedAt}} vm-limits')

    result, read, refused = guest.play([
        ('container_limits', {'containers': [{'name': 'vm-limits', 'memory': '200M', 'cpus': 0.25}]}),
        _shell('cat {0}/memory.max {0}/cpu.max {0}/memory.swap.max; docker inspect vm-limits | {1}; {2}'.format(
            directory, "python3 -c 'import json, sys; print(json.load(sys.stdin)[0][\"HostConfig\"][\"MemorySwap\"])'", _WS.format(directory))),
        ('container_limits', {'containers': [{'name': 'vm-limits', 'memory': '64M'}]}),
    ])
    assert not result.get('failed'), result
    assert result['changed'] is True
    memory_max, cpu_max, swap_max, memory_swap, figures = read['stdout'].splitlines()
    assert int(memory_max) == 200 * MIB
    assert cpu_max == '25000 100000'
    assert int(swap_max) == int(memory_swap) - 200 * MIB, (swap_max, memory_swap)
    usage, inactive = _figures(figures)[0]

    assert refused.get('failed') is True, refused
    assert 'vm-limits' in refused['msg'] and 'use' in refused['msg'], refused['msg']
    assert usage - inactive > 64 * MIB
    assert guest.read_int(directory + '/memory.max') == 200 * MIB
    # in place: the same process, never restarted
    assert guest.sh('docker inspect -f {{.State.StartedAt}} vm-limits') == started


def _swaps(text):
    """/proc/swaps as {path: size in KiB}."""
    rows = (line.split() for line in text.splitlines())
    return {fields[0]: int(fields[2]) for fields in rows if len(fields) == 5 and fields[0].startswith('/')}


def test_swap_file_create_resize_remove_on_the_guest_ext4(guest):
    """swap_file on the guest's own kernel and ext4: created and on, resized while on, turned off and removed."""
    path = STATE_DIR + '/swapfile'
    try:
        created, after_create, resized, after_resize, removed = guest.play([
            ('swap_file', {'path': path, 'size': '64M', 'fstab': False}),
            _shell('cat /proc/swaps; stat -c %a.%s ' + path),
            ('swap_file', {'path': path, 'size': '96M', 'fstab': False}),
            _shell('cat /proc/swaps; stat -c %a.%s ' + path),
            ('swap_file', {'path': path, 'state': 'absent'}),
        ])
        assert not created.get('failed') and created['changed'] is True, created
        assert _swaps(after_create['stdout']).get(path) == 64 * 1024 - 4
        assert after_create['stdout'].splitlines()[-1] == '600.%d' % (64 * MIB)
        assert not resized.get('failed') and resized['changed'] is True, resized
        assert _swaps(after_resize['stdout']).get(path) == 96 * 1024 - 4
        assert after_resize['stdout'].splitlines()[-1] == '600.%d' % (96 * MIB)
        assert not removed.get('failed') and removed['changed'] is True, removed
        assert path not in _swaps(guest.read('/proc/swaps'))
        assert guest.sh('test -e %s && echo present || echo gone' % path) == 'gone'
    finally:
        guest.sh('swapoff %s 2>/dev/null; rm -f %s' % (path, path), check=False)


@pytest.fixture(name='ollama')
def fixture_ollama(guest):
    """The Ollama emulator in a container with --memory 300m, publishing 127.0.0.1:11434 in the guest."""
    catalog = {'vm-small': {'size': 40 * MB}, 'vm-big': {'size': 400 * MB}}
    guest.sh('docker rm -f vm-ollama >/dev/null 2>&1; docker run -d --name vm-ollama --memory 300m -p 127.0.0.1:11434:11434 '
             '-e OLLAMA_HOST=0.0.0.0:11434 -e OLLAMA_KEEP_ALIVE=-1 -e PYTHONUNBUFFERED=1 -e OLLAMA_EMULATOR_CATALOG=%s '
             '-v %s:/app:ro %s python3 /app/ollama_emulator.py >/dev/null'
             % (shlex.quote(json.dumps(catalog)), guest.payload_dir, guest.python_image))
    try:
        cid = guest.container_id('vm-ollama')
        guest.wait_for("python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:11434/api/version', timeout=5)\"",
                       timeout=120, what='the emulator answering')
        yield {'id': cid, 'dir': '%s/system.slice/docker-%s.scope' % (CG, cid)}
    finally:
        guest.sh('docker rm -f vm-ollama >/dev/null 2>&1', check=False)


def test_ollama_fit_check_refuses_with_the_containers_v2_figures(guest, ollama):
    """ollama_model finds the emulator's container by its published port, reads its v2 cgroup, and refuses a model that does not fit."""
    directory = ollama['dir']
    assert guest.read_int(directory + '/memory.max') == 300 * MIB
    ps_url = 'http://127.0.0.1:11434/api/ps'
    refused, read, loaded = guest.play([
        ('ollama_model', {'name': 'vm-big', 'state': 'loaded', 'host': 'http://127.0.0.1:11434'}),
        _shell("%s; python3 -c \"import urllib.request; print(urllib.request.urlopen('%s').read().decode())\"" % (_WS.format(directory), ps_url)),
        ('ollama_model', {'name': 'vm-small', 'state': 'loaded', 'host': 'http://127.0.0.1:11434'}),
    ])
    assert refused.get('failed') is True, refused
    assert 'does not fit' in refused['msg'], refused['msg']
    assert 'vm-ollama' in refused['msg'] and directory in refused['msg'], refused['msg']
    assert 'limit 300M' in refused['msg'], refused['msg']
    container = refused['memory']['container']
    assert container['cgroup'] == directory and container['limited_by'] == directory
    assert container['limit'] == 300 * MIB
    figures, ps_text = read['stdout'].splitlines()
    usage, inactive = _figures(figures)[0]
    assert abs(container['usage'] - (usage - inactive)) < 8 * MIB
    assert refused['memory']['available'] == container['available'] < 400 * MB
    assert json.loads(ps_text)['models'] == []

    assert not loaded.get('failed') and loaded['changed'] is True, loaded
    assert loaded['memory']['container']['cgroup'] == directory
    # the emulator really holds the model's memory in the container's cgroup
    assert guest.read_int(directory + '/memory.current') - usage >= 30 * MB
    assert guest.read_keyed(directory + '/memory.events')['oom_kill'] == 0
