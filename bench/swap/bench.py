"""Benchmark: an N GiB swap file made by sutazai.ops.swap_file vs. the dd method, on the same filesystem.

    .venv/bin/python bench/swap/bench.py [--size 8G] [--dir /var/tmp]

Each way ends with an active swap file of the same size; the times are wall clock:

  module, ansible-playbook   one task running sutazai.ops.swap_file (controller start-up included)
  module, direct             the module's own process (python -m ...swap_file args.json), no controller
  module code, in-process    the module's create + mkswap + swapon code (module_utils/_swap_file.py) without Python start-up
  dd                         dd if=/dev/zero of=F bs=1M count=N, then mkswap, then swapon

dd returns once the zeros are in the page cache; the `sync` column shows the write-back that
is still owed to the disk (not counted in the dd total, which makes the comparison kind to dd).
The module never touches /etc/fstab here (fstab: false). Whatever happens, every file this
script made is turned off (swapoff FILE, never -a) and deleted, and /etc/fstab is checked unchanged.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(ROOT, '.collections'))

# pylint: disable=wrong-import-position
from ansible_collections.sutazai.ops.plugins.module_utils import _swap  # noqa: E402
from ansible_collections.sutazai.ops.plugins.module_utils._swap_file import SwapFile  # noqa: E402
from ansible_collections.sutazai.ops.plugins.module_utils._units import format_size, parse_size  # noqa: E402

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), PYTHONPATH=os.path.join(ROOT, '.collections'),
           ANSIBLE_STDOUT_CALLBACK='ansible.posix.json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_NOCOLOR='1')


def active_swaps():
    """Paths of the active swap areas."""
    with open('/proc/swaps', encoding='utf-8') as handle:
        return [line.split()[0].replace('\\040', ' ') for line in handle.read().splitlines()[1:]]


def timed(args, **kwargs):
    """Run a command; return (seconds, completed process). Fails loudly on a non-zero exit."""
    start = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit('%s failed (rc %d): %s%s' % (' '.join(args), proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    return elapsed, proc


def module_playbook(workdir, args):
    """Run sutazai.ops.swap_file through ansible-playbook on localhost; return (seconds, result)."""
    play = [{'name': 'bench', 'hosts': 'localhost', 'gather_facts': False,
             'tasks': [{'name': 'swap file', 'sutazai.ops.swap_file': args, 'register': 'result'}]}]
    playbook = os.path.join(workdir, 'play.yml')
    with open(playbook, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(play, handle)
    seconds, proc = timed([os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventories', 'local', 'hosts.yml'), playbook],
                          cwd=ROOT, env=ENV)
    return seconds, json.loads(proc.stdout)['plays'][0]['tasks'][0]['hosts']['localhost']


def module_direct(workdir, args):
    """Run the module's own process with an args file, as AnsiballZ would on the target; return (seconds, result)."""
    args_file = os.path.join(workdir, 'args.json')
    with open(args_file, 'w', encoding='utf-8') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    seconds, proc = timed([sys.executable, '-m', 'ansible_collections.sutazai.ops.plugins.modules.swap_file', args_file], cwd=ROOT, env=ENV)
    return seconds, json.loads(proc.stdout)


def module_internal(path, size):
    """The module's own create + mkswap + swapon code (SwapFile.build, SwapFile.swapon_new), timed in-process with the
    standard-library tools (no Ansible)."""
    swap = SwapFile({'path': path, 'size': size, 'fstab': False})
    mount = swap.mount()
    start = time.monotonic()
    swap.swapon_new(swap.build(size, mount, True, ''), size, mount, True, '')
    return time.monotonic() - start, swap.method


def check_result(name, result, path, size):
    """The module made an active swap file of the right size."""
    if result.get('failed') or not result.get('active') or result.get('size_bytes') != size or path not in active_swaps():
        raise SystemExit('%s did not make an active %s swap file: %s' % (name, format_size(size), result.get('msg', result)))


def run_dd(path, size):
    """dd + mkswap + swapon, timed step by step; sync timed separately."""
    count = size // (1024 * 1024)
    times = {}
    times['dd'], _proc = timed(['dd', 'if=/dev/zero', 'of=' + path, 'bs=1M', 'count=%d' % count, 'status=none'])
    os.chmod(path, 0o600)
    times['sync'], _proc = timed(['sync', path])
    times['mkswap'], _proc = timed(['mkswap', path])
    times['swapon'], _proc = timed(['swapon', path])
    if path not in active_swaps():
        raise SystemExit('dd swap file %s is not active' % path)
    return times


def cleanup(workdir):
    """Turn off exactly our swap files (never -a) and delete the work directory."""
    for path in active_swaps():
        if path.startswith(workdir + '/'):
            subprocess.run(['swapoff', path], check=False)
    shutil.rmtree(workdir, ignore_errors=True)


def main():
    """Parse options, check the ground, run the three ways, print the table, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--size', default='8G', help='swap file size (default 8G)')
    parser.add_argument('--dir', default='/var/tmp', help='directory on the filesystem to test (default /var/tmp)')
    options = parser.parse_args()
    size = parse_size(options.size, '--size')
    size -= size % (1024 * 1024)
    if os.geteuid() != 0:
        raise SystemExit('The swap benchmark needs root (mkswap/swapon).')
    vfs = os.statvfs(options.dir)
    free = vfs.f_bavail * vfs.f_frsize
    if free - vfs.f_blocks * vfs.f_frsize // 10 < size * 1.05:
        raise SystemExit('Not enough free space in %s for a %s file plus the 10%% reserve: %s free.' % (options.dir, format_size(size), format_size(free)))
    with open('/proc/self/mountinfo', encoding='utf-8') as handle:
        fstype = _swap.mount_of(os.path.realpath(options.dir), _swap.parse_mountinfo(handle.read()))['fstype']
    with open('/etc/fstab', 'rb') as handle:
        fstab = handle.read()

    workdir = os.path.realpath(tempfile.mkdtemp(prefix='sutazai-swap-bench.', dir=options.dir))
    path = os.path.join(workdir, 'swapfile')
    rows = []
    try:
        present = {'path': path, 'size': size, 'fstab': False}
        absent = {'path': path, 'state': 'absent'}
        seconds, result = module_playbook(workdir, present)
        check_result('ansible-playbook', result, path, size)
        rows.append(('module, ansible-playbook (%s)' % result['method'], seconds, {}))
        removal, _result = module_playbook(workdir, absent)

        seconds, result = module_direct(workdir, present)
        check_result('module', result, path, size)
        rows.append(('module, direct (%s)' % result['method'], seconds, {}))
        module_direct(workdir, absent)

        seconds, method = module_internal(path, size)
        check_result('module code', {'active': True, 'size_bytes': os.path.getsize(path)}, path, size)
        rows.append(('module code, in-process (%s)' % method, seconds, {}))
        subprocess.run(['swapoff', path], check=True)
        os.unlink(path)

        steps = run_dd(path, size)
        rows.append(('dd bs=1M + mkswap + swapon', steps['dd'] + steps['mkswap'] + steps['swapon'], steps))
    finally:
        cleanup(workdir)
        with open('/etc/fstab', 'rb') as handle:
            if handle.read() != fstab:
                print('WARNING: /etc/fstab changed during the benchmark', file=sys.stderr)

    dd_total = rows[-1][1]
    print('swap file of %s (%d bytes) on %s (%s), %s' % (format_size(size), size, options.dir, fstype, time.strftime('%Y-%m-%d %H:%M')))
    print('%-40s %10s %10s' % ('method', 'seconds', 'dd / this'))
    for name, seconds, _steps in rows:
        print('%-40s %10.3f %9.1fx' % (name, seconds, dd_total / seconds))
    steps = rows[-1][2]
    print('dd steps: dd %.3f s, mkswap %.3f s, swapon %.3f s; write-back still owed after dd (sync, not counted) %.3f s'
          % (steps['dd'], steps['mkswap'], steps['swapon'], steps['sync']))
    print('removal through ansible-playbook (swapoff + delete): %.3f s' % removal)
    print('swap left on by the benchmark: %s' % ([p for p in active_swaps() if p.startswith(workdir)] or 'none'))


if __name__ == '__main__':
    main()
