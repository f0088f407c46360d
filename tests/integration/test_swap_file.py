"""Integration tests of sutazai.ops.swap_file on the real kernel, through ansible-playbook.

Swap is global to the kernel. Every test works in its own directory on a disk filesystem and the
`swapdir` fixture, whatever happens, turns off exactly the swap files under that directory (never
`swapoff -a`), deletes them, restores /etc/fstab byte for byte and removes the fstab backups made.
"""

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='swap needs root')

SWAP_FILESYSTEMS = ('ext2/ext3', 'xfs', 'btrfs')
FSTAB = '/etc/fstab'
MiB = 1024 ** 2


def active_swaps():
    """{path: (size_kib, used_kib, priority)} from /proc/swaps."""
    with open('/proc/swaps', encoding='utf-8') as handle:
        lines = handle.read().splitlines()[1:]
    areas = {}
    for line in lines:
        fields = line.split()
        areas[fields[0].replace('\\040', ' ')] = (int(fields[2]), int(fields[3]), int(fields[4]))
    return areas


def fs_type(path):
    """The filesystem type name of `path` as stat -f reports it."""
    return subprocess.run(['stat', '-f', '-c', '%T', path], check=True, capture_output=True, text=True).stdout.strip()


def read_bytes(path):
    """The content of a file, or None."""
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


@pytest.fixture(name='swapdir')
def fixture_swapdir():
    """A fresh directory on a disk filesystem; everything swap-related is undone afterwards."""
    base = next((d for d in ('/var/tmp', '/var/lib', '/root') if fs_type(d) in SWAP_FILESYSTEMS), None)
    if base is None:
        pytest.skip('no directory on a filesystem that can hold swap files')
    fstab_before = read_bytes(FSTAB)
    backups_before = set(glob.glob(FSTAB + '.*~'))
    directory = os.path.realpath(tempfile.mkdtemp(prefix='sutazai-swap-it.', dir=base))
    try:
        yield directory
    finally:
        for path in active_swaps():
            if path.startswith(directory + '/'):
                subprocess.run(['swapoff', path], check=False)
        shutil.rmtree(directory, ignore_errors=True)
        if read_bytes(FSTAB) != fstab_before:
            if fstab_before is None:
                os.unlink(FSTAB)
            else:
                with open(FSTAB, 'wb') as handle:
                    handle.write(fstab_before)
        for backup in set(glob.glob(FSTAB + '.*~')) - backups_before:
            os.unlink(backup)
    assert not [path for path in active_swaps() if path.startswith(directory + '/')], 'swap left on'


@pytest.fixture(name='tmpfs_dir')
def fixture_tmpfs_dir():
    """A small tmpfs of our own, unmounted afterwards."""
    directory = tempfile.mkdtemp(prefix='sutazai-swap-tmpfs.', dir='/var/tmp')
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=10m', 'tmpfs', directory], check=True)
    try:
        yield directory
    finally:
        subprocess.run(['umount', directory], check=False)
        os.rmdir(directory)


def test_lifecycle_create_rerun_resize_absent(module_runner, swapdir):
    path = os.path.join(swapdir, 'swapfile')

    created = module_runner('swap_file', {'path': path, 'size': '64M'})
    assert created['changed'] is True and not created.get('failed'), created
    assert created['actions'] == ['create', 'mkswap', 'swapon', 'fstab_add']
    assert created['size_bytes'] == 64 * MiB and created['active'] is True and created['used_bytes'] == 0
    assert active_swaps()[path][0] == 64 * 1024 - 4
    assert '%s none swap sw 0 0\n' % path in read_bytes(FSTAB).decode()
    assert os.stat(path).st_mode & 0o777 == 0o600 and os.stat(path).st_uid == 0

    rerun = module_runner('swap_file', {'path': path, 'size': '64M'})
    assert rerun['changed'] is False and rerun['actions'] == [], rerun

    resized = module_runner('swap_file', {'path': path, 'size': '128M'}, diff=True)
    assert resized['changed'] is True, resized
    assert resized['actions'] == ['swapoff', 'create', 'mkswap', 'swapon']
    assert active_swaps()[path][0] == 128 * 1024 - 4
    assert resized['diff'][0]['before']['size_bytes'] == 64 * MiB and resized['diff'][0]['after']['size_bytes'] == 128 * MiB

    assert module_runner('swap_file', {'path': path, 'size': '128M'})['changed'] is False

    removed = module_runner('swap_file', {'path': path, 'state': 'absent'})
    assert removed['changed'] is True and removed['actions'] == ['swapoff', 'fstab_remove', 'remove'], removed
    assert path not in active_swaps() and not os.path.exists(path)
    assert path not in read_bytes(FSTAB).decode()
    assert module_runner('swap_file', {'path': path, 'state': 'absent'})['changed'] is False


def test_priority_and_fstab_option(module_runner, swapdir):
    path = os.path.join(swapdir, 'swapfile')
    result = module_runner('swap_file', {'path': path, 'size': '64M', 'priority': 5}, diff=True)
    assert result['changed'] is True and active_swaps()[path][2] == 5, result
    assert result['fstab'] == '%s none swap sw,pri=5 0 0' % path
    fstab_diff = result['diff'][1]
    assert fstab_diff['before_header'] == FSTAB and fstab_diff['after'] == fstab_diff['before'] + result['fstab'] + '\n'

    changed = module_runner('swap_file', {'path': path, 'size': '64M', 'priority': 9, 'fstab': False})
    assert changed['actions'] == ['swapoff', 'swapon', 'fstab_remove'], changed
    assert active_swaps()[path][2] == 9 and path not in read_bytes(FSTAB).decode()


def test_check_mode_changes_nothing(module_runner, swapdir):
    path = os.path.join(swapdir, 'swapfile')
    fstab = read_bytes(FSTAB)

    predicted = module_runner('swap_file', {'path': path, 'size': '64M'}, check=True, diff=True)
    assert predicted['changed'] is True and predicted['actions'] == ['create', 'mkswap', 'swapon', 'fstab_add'], predicted
    assert not os.path.exists(path) and path not in active_swaps() and read_bytes(FSTAB) == fstab
    assert os.listdir(swapdir) == []

    made = module_runner('swap_file', {'path': path, 'size': '64M', 'fstab': False})
    assert made['priority'] == predicted['priority'] < 0  # check mode predicted the priority the kernel gave

    def observed():
        # the kernel may page out to the active file at any time, so its pages and the Used column are not compared:
        # the file's identity, size, mtime and swap header, its /proc/swaps size and priority, and fstab are
        stat = os.stat(path)
        with open(path, 'rb') as handle:
            header = handle.read(os.sysconf('SC_PAGE_SIZE'))
        swaps = {name: (size, priority) for name, (size, _used, priority) in active_swaps().items()}
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns, header), swaps, read_bytes(FSTAB)

    state = observed()
    for args in ({'path': path, 'size': '128M'}, {'path': path, 'size': '64M', 'priority': 3}, {'path': path, 'state': 'absent'}):
        result = module_runner('swap_file', args, check=True, diff=True)
        assert result['changed'] is True and not result.get('failed'), result
        assert observed() == state


@pytest.mark.usefixtures('swapdir')  # its cleanup guards fstab
def test_refuse_on_tmpfs(module_runner, tmpfs_dir):
    path = os.path.join(tmpfs_dir, 'swapfile')
    fstab = read_bytes(FSTAB)
    result = module_runner('swap_file', {'path': path, 'size': '1M'})
    assert result['failed'] is True and result['changed'] is False
    assert 'tmpfs' in result['msg'] and path in result['msg']
    assert os.listdir(tmpfs_dir) == [] and path not in active_swaps() and read_bytes(FSTAB) == fstab


def test_refuse_existing_data_file(module_runner, swapdir):
    path = os.path.join(swapdir, 'precious.db')
    with open(path, 'wb') as handle:
        handle.write(os.urandom(4 * MiB))
    os.chmod(path, 0o640)
    digest = hashlib.sha256(read_bytes(path)).hexdigest()
    before = (os.stat(path).st_mode, os.stat(path).st_mtime_ns, read_bytes(FSTAB), sorted(os.listdir(swapdir)))

    for args, check in (({'path': path, 'size': '64M'}, False), ({'path': path, 'size': '4M'}, False),
                        ({'path': path, 'size': '64M'}, True), ({'path': path, 'state': 'absent'}, False)):
        result = module_runner('swap_file', args, check=check)
        assert result['failed'] is True and result['changed'] is False, result
        assert 'is not a swap file' in result['msg'] and path in result['msg']

    assert hashlib.sha256(read_bytes(path)).hexdigest() == digest
    assert (os.stat(path).st_mode, os.stat(path).st_mtime_ns, read_bytes(FSTAB), sorted(os.listdir(swapdir))) == before
    assert path not in active_swaps()


@pytest.mark.parametrize('args, words', [
    ({'path': 'swapfile', 'size': '64M'}, ('relative',)),
    ({'path': '/dev/shm/swapfile', 'size': '64M'}, ('/dev',)),
    ({'path': '{dir}', 'size': '64M'}, ('directory',)),
    ({'path': '{dir}/swapfile', 'size': '20K'}, ('20K', '40K')),
    ({'path': '{dir}/swapfile', 'size': 'eight gigs'}, ("'eight gigs'",)),
    ({'path': '{dir}/swapfile', 'size': '1P'}, ('does not fit',)),
])
def test_refuse_bad_input(module_runner, swapdir, args, words):
    args = {key: value.format(dir=swapdir) for key, value in args.items()}
    result = module_runner('swap_file', args)
    assert result['failed'] is True and result['changed'] is False, result
    for word in words:
        assert word in result['msg']
    assert os.listdir(swapdir) == []


def test_refuse_active_file_seen_through_bind_mount(module_runner, swapdir):
    """/proc/swaps names the file by the path it was turned on with; another path to it must not fool the module."""
    path = os.path.join(swapdir, 'real', 'swapfile')
    alias_dir = os.path.join(swapdir, 'alias')
    os.makedirs(os.path.dirname(path))
    os.makedirs(alias_dir)
    assert module_runner('swap_file', {'path': path, 'size': '64M', 'fstab': False})['active'] is True
    subprocess.run(['mount', '--bind', os.path.dirname(path), alias_dir], check=True)
    try:
        alias = os.path.join(alias_dir, 'swapfile')
        for args in ({'path': alias, 'state': 'absent'}, {'path': alias, 'size': '128M'}):
            result = module_runner('swap_file', args)
            assert result['failed'] is True and 'lists it under another name' in result['msg'], result
        assert os.path.getsize(path) == 64 * MiB and path in active_swaps()
    finally:
        subprocess.run(['umount', alias_dir], check=False)


@pytest.fixture(name='vm_sysctls')
def fixture_vm_sysctls():
    """The test's own sysctl file; the kernel's swap settings are put back as they were afterwards."""
    names = ('swappiness', 'vfs_cache_pressure')
    before = {name: read_bytes('/proc/sys/vm/' + name) for name in names}
    conf = '/etc/sysctl.d/60-sutazai-swap-it.conf'
    try:
        yield conf
    finally:
        for name, value in before.items():
            with open('/proc/sys/vm/' + name, 'wb') as handle:
                handle.write(value)
        if os.path.exists(conf):
            os.unlink(conf)


def test_swap_role_sets_swap_and_sysctls_then_is_idempotent(role_runner, swapdir, vm_sysctls):
    """The role on the real host: swap file on, fstab line, vm.swappiness 10 and vm.vfs_cache_pressure 50 set and persisted."""
    path = os.path.join(swapdir, 'swapfile')
    role_vars = {'swap_file_path': path, 'swap_size': '32M', 'swap_sysctl_file': vm_sysctls}
    first = role_runner('swap', role_vars)
    assert first['failures'] == 0, first['failed_tasks']
    assert first['changed'] >= 2  # the swap file task and the sysctl task (the test machine starts at 60 / 100)
    assert path in active_swaps()
    assert path in read_bytes(FSTAB).decode()
    assert read_bytes('/proc/sys/vm/swappiness').strip() == b'10'
    assert read_bytes('/proc/sys/vm/vfs_cache_pressure').strip() == b'50'
    persisted = read_bytes(vm_sysctls).decode()
    assert 'vm.swappiness=10' in persisted and 'vm.vfs_cache_pressure=50' in persisted
    second = role_runner('swap', role_vars)
    assert second['failures'] == 0 and second['changed'] == 0, second
    gone = role_runner('swap', dict(role_vars, swap_state='absent'))
    assert gone['failures'] == 0, gone['failed_tasks']
    assert path not in active_swaps() and not os.path.exists(path) and path not in read_bytes(FSTAB).decode()


def test_swap_role_preflight_refuses_a_bad_size(role_runner, swapdir, vm_sysctls):
    path = os.path.join(swapdir, 'swapfile')
    result = role_runner('swap', {'swap_file_path': path, 'swap_size': 'lots', 'swap_sysctl_file': vm_sysctls})
    assert result['failures'] == 1 and 'lots' in result['failed_tasks'][0][1]
    assert not os.path.exists(path) and not os.path.exists(vm_sysctls)
