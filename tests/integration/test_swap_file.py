"""Integration tests of sutazai.ops.swap_file on the real kernel, through ansible-playbook.

Swap is global to the kernel. Every test works in its own directory on a disk filesystem and the
`swapdir` fixture, whatever happens, turns off exactly the swap files under that directory (never
`swapoff -a`), deletes them, restores /etc/fstab byte for byte and removes the fstab backups made.
"""

import glob
import hashlib
import os
import shutil
import stat
import subprocess
import sys
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
    assert resized['actions'] == ['create', 'mkswap', 'swapon', 'swapoff', 'replace']
    assert sorted(os.listdir(swapdir)) == ['swapfile']  # no temporary or backup file left
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


def directory_snapshot(directory):
    """Names, sizes, access, modification and change times and content hashes of `directory` and everything in it, with
    /etc/fstab and the swap areas of /proc/swaps (path, size, priority). Files are read with O_NOATIME, so taking the
    snapshot changes no access time. An active swap file's pages belong to the kernel, which may write to them at any
    time: only its first page (the header) is hashed; every other file is hashed whole."""
    active = active_swaps()
    entries = {}
    for root, dirs, files in os.walk(directory):
        for name in [''] + dirs + files:
            path = os.path.join(root, name) if name else root
            info = os.lstat(path)
            digest = None
            if stat.S_ISREG(info.st_mode):
                with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOATIME), 'rb') as handle:
                    data = handle.read(os.sysconf('SC_PAGE_SIZE')) if path in active else handle.read()
                digest = hashlib.sha256(data).hexdigest()
            entries[os.path.relpath(path, directory)] = (info.st_ino, info.st_mode, info.st_size, info.st_atime_ns, info.st_mtime_ns,
                                                         info.st_ctime_ns, digest)
    swaps = {path: (size, priority) for path, (size, _used, priority) in active.items()}
    return entries, swaps, read_bytes(FSTAB)


def make_inactive_swap_file(path, size):
    """A fully allocated swap file with a signature, not turned on."""
    subprocess.run(['fallocate', '--length', str(size), path], check=True)
    os.chmod(path, 0o600)
    subprocess.run(['mkswap', path], check=True, capture_output=True)


def test_check_mode_writes_nothing_on_disk(module_runner, swapdir):
    """Check mode of every state on real files leaves every name, size, mtime, ctime and byte as it was.

    The inactive file with a swap signature is the case where check mode used to learn whether the kernel had the
    file active under another name by truncating it to its own size, which changed its ctime."""
    new = os.path.join(swapdir, 'new')
    inactive = os.path.join(swapdir, 'inactive')
    active = os.path.join(swapdir, 'active')
    make_inactive_swap_file(inactive, 64 * MiB)
    assert module_runner('swap_file', {'path': active, 'size': '64M', 'fstab': False})['active'] is True
    before = directory_snapshot(swapdir)
    runs = [
        ({'path': new, 'size': '64M'}, ['create', 'mkswap', 'swapon', 'fstab_add']),
        ({'path': inactive, 'size': '64M', 'fstab': False}, ['swapon']),
        ({'path': inactive, 'size': '128M', 'fstab': False}, ['create', 'mkswap', 'swapon', 'replace']),
        ({'path': inactive, 'state': 'absent'}, ['remove']),
        ({'path': active, 'size': '128M', 'fstab': False}, ['create', 'mkswap', 'swapon', 'swapoff', 'replace']),
        ({'path': active, 'size': '64M', 'priority': 3, 'fstab': False}, ['swapoff', 'swapon']),
        ({'path': active, 'state': 'absent'}, ['swapoff', 'remove']),
    ]
    for args, actions in runs:
        result = module_runner('swap_file', args, check=True, diff=True)
        assert result['changed'] is True and not result.get('failed'), (args, result)
        assert result['actions'] == actions, (args, result)
        assert directory_snapshot(swapdir) == before, args
        if args['path'] == inactive:
            # the active file has the inactive one's size and another inode: reading alone cannot rule out that its area
            # is the inactive file turned on through a mount no process shows any more, so check mode says so
            assert len(result['unanswered']) == 1 and active in result['unanswered'][0], result
        else:
            assert result['unanswered'] == [], result


def swapon_that_refuses(directory, size):
    """A directory holding a `swapon` that punches a hole into any file of `size` bytes before running the real swapon,
    which then refuses it ("it appears to have holes"), exactly as it refuses a file the kernel cannot map."""
    real = shutil.which('swapon') or shutil.which('swapon', path='/usr/sbin:/sbin')
    bindir = os.path.join(directory, 'refusing-bin')
    os.makedirs(bindir)
    script = os.path.join(bindir, 'swapon')
    with open(script, 'w', encoding='utf-8') as handle:
        handle.write('#!/bin/sh\n'
                     'for last; do :; done\n'
                     'if [ -f "$last" ] && [ "$(stat -c %%s "$last")" = %d ]; then\n'
                     '  fallocate --punch-hole --offset 1048576 --length 1048576 "$last"\n'
                     'fi\n'
                     'exec %s "$@"\n' % (size, real))
    os.chmod(script, 0o755)
    return {'PATH': os.pathsep.join([bindir, os.path.dirname(sys.executable), os.environ.get('PATH', '')])}


def test_failed_resize_keeps_the_old_swap_on(module_runner, swapdir):
    """swapon refuses the new, bigger file: the old file stays active with its size and priority, fstab is unchanged
    and no temporary file is left behind."""
    path = os.path.join(swapdir, 'swapfile')
    created = module_runner('swap_file', {'path': path, 'size': '64M', 'priority': 4})
    assert created['active'] is True, created
    inode = os.stat(path).st_ino
    fstab = read_bytes(FSTAB)
    env = swapon_that_refuses(swapdir, 128 * MiB)

    result = module_runner('swap_file', {'path': path, 'size': '128M', 'priority': 4}, extra_env=env)
    assert result['failed'] is True, result
    assert 'holes' in result['msg'] and 'still on' in result['msg'] and result['changed'] is False, result
    assert active_swaps()[path][0] == 64 * 1024 - 4 and active_swaps()[path][2] == 4
    assert os.stat(path).st_ino == inode and os.path.getsize(path) == 64 * MiB
    assert read_bytes(FSTAB) == fstab
    assert sorted(os.listdir(swapdir)) == ['refusing-bin', 'swapfile']
    assert [p for p in active_swaps() if p.startswith(swapdir + '/')] == [path]

    resized = module_runner('swap_file', {'path': path, 'size': '128M', 'priority': 4})
    assert resized['changed'] is True and resized['size_bytes'] == 128 * MiB, resized
    assert active_swaps()[path][0] == 128 * 1024 - 4 and active_swaps()[path][2] == 4


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


def test_file_on_in_another_mount_namespace(module_runner, swapdir):
    """A file turned on in a mount namespace of its own (as in a container), through a bind mount only that namespace
    has: /proc/swaps names it by a path that leads nowhere here. Check mode finds it, without writing, through
    /proc/PID/root of a process in that namespace and refuses; once no process is left there, check mode says it
    cannot tell, and a real run stops where the kernel refuses to delete the file, which stays on."""
    path = os.path.join(swapdir, 'real', 'swapfile')
    hidden = os.path.join(swapdir, 'ns-only')
    os.makedirs(os.path.dirname(path))
    os.makedirs(hidden)
    make_inactive_swap_file(path, 64 * MiB)
    listed = os.path.join(hidden, 'swapfile')
    ready = os.path.join(swapdir, 'ready')
    holder = subprocess.Popen(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                               'mount --bind "$1" "$2" && swapon "$2/swapfile" && touch "$3" && exec sleep 600',
                               'sh', os.path.dirname(path), hidden, ready])
    try:
        for _attempt in range(100):
            if os.path.exists(ready) or holder.poll() is not None:
                break
            subprocess.run(['sleep', '0.1'], check=True)
        assert os.path.exists(ready), 'the namespace holder did not turn the file on'
        assert listed in active_swaps() and not os.path.exists(listed)
        before = directory_snapshot(swapdir)
        for args in ({'path': path, 'state': 'absent'}, {'path': path, 'size': '128M'}):
            result = module_runner('swap_file', args, check=True)
            assert result['failed'] is True and 'lists it under another name (/proc/%d/root%s' % (holder.pid, listed) in result['msg'], result
            assert directory_snapshot(swapdir) == before

        others = set(active_swaps()) - {listed}
        holder.kill()
        holder.wait()
        # the kernel keeps the area and now names it by its path inside the bind mount it was turned on through
        (listed,) = set(active_swaps()) - others
        assert active_swaps()[listed][0] == 64 * 1024 - 4
        before = directory_snapshot(swapdir)
        predicted = module_runner('swap_file', {'path': path, 'state': 'absent'}, check=True)
        assert not predicted.get('failed') and predicted['actions'] == ['remove'], predicted
        assert len(predicted['unanswered']) == 1 and listed in predicted['unanswered'][0] and 'without writing' in predicted['unanswered'][0]
        assert predicted['warnings'] == predicted['unanswered']
        assert directory_snapshot(swapdir) == before

        removal = module_runner('swap_file', {'path': path, 'state': 'absent', 'fstab': False})
        assert removal['failed'] is True and 'Deleting %s failed' % path in removal['msg'], removal
        assert listed in active_swaps() and os.path.getsize(path) == 64 * MiB

        resize = module_runner('swap_file', {'path': path, 'size': '128M', 'fstab': False})
        assert resize['failed'] is True and 'Cannot move the old file %s aside' % path in resize['msg'], resize
        assert listed in active_swaps() and os.path.getsize(path) == 64 * MiB
        assert sorted(os.listdir(os.path.dirname(path))) == ['swapfile']
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        # swapoff finds the area by the file itself, whatever name /proc/swaps shows
        subprocess.run(['swapoff', path], check=False)
    assert listed not in active_swaps()


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
