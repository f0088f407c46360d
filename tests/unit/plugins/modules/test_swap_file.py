"""Unit tests of the swap_file module: main() against a fake host (recorded /proc files, fake commands).

The swap files themselves are real files under tmp_path; mkswap, swapon, swapoff and fallocate are
replaced by fakes that write a real swap header and keep a fake /proc/swaps, so no swap is turned on.
As the kernel does, renaming or deleting a file the fake /proc/swaps lists fails with EPERM.
"""

import errno

import os
import struct

import pytest

from ansible.module_utils import basic

from ansible_collections.sutazai.ops.plugins.module_utils import _swap
from ansible_collections.sutazai.ops.plugins.module_utils import _swap_file
from ansible_collections.sutazai.ops.plugins.modules import swap_file
from ansible_collections.sutazai.ops.tests.unit.plugins.modules.utils import patch_module_exits, run_main

MiB = 1024 ** 2
GiB = 1024 ** 3
PAGE = os.sysconf('SC_PAGE_SIZE')
HEADER = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the module makes root-owned files; run the unit tests as root')


class FakeHost:
    """A fake /proc, /etc/fstab and the commands the module runs."""

    def __init__(self, root):
        self.root = root
        self.proc_swaps = str(root / 'proc_swaps')
        self.meminfo = str(root / 'meminfo')
        self.mountinfo = str(root / 'mountinfo')
        self.fstab = str(root / 'etc' / 'fstab')
        self.commands = []
        self.fail = {}
        self.fail_once = {}
        self.refuse = {}  # command name -> function(path) giving (rc, out, err) to fail with, or None
        os.makedirs(os.path.dirname(self.fstab))
        self.write(self.fstab, '# fstab\nUUID=abc / ext4 defaults 0 1\n')
        self.write(self.proc_swaps, HEADER)
        self.set_memory(available=20 * GiB, total=24 * GiB)
        for name in ('tmpfs', 'btrfs', 'ext3'):
            os.makedirs(str(root / name))
        self.write(self.mountinfo, '27 1 254:0 / / rw - ext4 /dev/vda rw\n'
                   '40 27 0:40 / {0}/tmpfs rw - tmpfs tmpfs rw,size=10m\n'
                   '41 27 0:41 / {0}/btrfs rw - btrfs /dev/vdb rw\n'
                   '42 27 0:42 / {0}/ext3 rw - ext3 /dev/vdc rw\n'.format(root))

    read = staticmethod(_swap.Host.read)

    @staticmethod
    def write(path, text):
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(text)

    def set_memory(self, available, total):
        self.write(self.meminfo, 'MemTotal: %d kB\nMemFree: %d kB\nMemAvailable: %d kB\n' % (total // 1024, available // 1024, available // 1024))

    def areas(self):
        return _swap.parse_proc_swaps(self.read(self.proc_swaps))

    def set_areas(self, areas):
        lines = ['%s file %d %d %d\n' % (_swap.escape(a['path']), a['size_bytes'] // 1024, a['used_bytes'] // 1024, a['priority']) for a in areas]
        self.write(self.proc_swaps, HEADER + ''.join(lines))

    def active(self, path):
        """True when the fake /proc/swaps lists `path`."""
        return os.path.realpath(path) in [a['path'] for a in self.areas()]

    def activate(self, path, used=0, priority=-2):
        """Put `path` into the fake /proc/swaps."""
        self.set_areas(self.areas() + [{'path': os.path.realpath(path), 'size_bytes': os.path.getsize(path) - PAGE,
                                        'used_bytes': used, 'priority': priority}])

    def run_command(self, args, **_kwargs):
        """Fake mkswap, swapon, swapoff, fallocate and chattr."""
        name = os.path.basename(args[0])
        if name in ('lsattr', 'chattr') and '+C' not in args:
            return 0, '', ''  # backup_local / atomic_move copying file attributes of fstab
        self.commands.append([name] + list(args[1:]))
        if name in self.fail:
            return self.fail[name]
        if self.fail_once.get(name):
            return self.fail_once.pop(name)
        path = args[-1]
        refusal = self.refuse[name](path) if name in self.refuse else None
        if refusal:
            return refusal
        if name == 'fallocate':
            with open(path, 'r+b') as handle:
                os.posix_fallocate(handle.fileno(), 0, int(args[2]))
        elif name == 'mkswap':
            make_swap_header(path)
        elif name == 'swapon':
            if self.active(path):
                return 255, '', 'swapon: %s: swapon failed: Device or resource busy' % path
            priority = int(args[2]) if args[1] == '-p' else -2
            self.activate(path, priority=priority)
        elif name == 'swapoff':
            assert args[1:] != ['-a'], 'swapoff -a must never run'
            if not self.active(path):
                return 255, '', 'swapoff: %s: swapoff failed: Invalid argument' % path
            self.set_areas([a for a in self.areas() if a['path'] != path])
        return 0, '', ''


def make_swap_header(path, size=None):
    """Write a SWAPSPACE2 header for this host's page size into `path`."""
    size = os.path.getsize(path) if size is None else size
    with open(path, 'r+b') as handle:
        handle.seek(1024)
        handle.write(struct.pack('=III', 1, size // PAGE - 1, 0))
        handle.seek(PAGE - 10)
        handle.write(b'SWAPSPACE2')


def make_swap_file(path, size, mode=0o600):
    """A real, fully allocated swap file."""
    with open(path, 'wb') as handle:
        handle.write(b'\0' * size)
    make_swap_header(path)
    os.chmod(path, mode)


@pytest.fixture(name='host')
def fixture_host(tmp_path, monkeypatch):
    fake = FakeHost(tmp_path)
    for name in ('proc_swaps', 'meminfo', 'mountinfo', 'fstab'):
        monkeypatch.setattr(_swap.Host, name, getattr(fake, name))

    real_rename, real_unlink = os.rename, os.unlink

    def refuse_active(*paths):
        for path in paths:
            if os.path.exists(path) and fake.active(path):
                raise PermissionError(errno.EPERM, 'Operation not permitted', path)

    def rename(src, dst):
        refuse_active(src, dst)
        real_rename(src, dst)

    def unlink(path):
        refuse_active(path)
        real_unlink(path)
    monkeypatch.setattr(_swap_file.os, 'rename', rename)
    monkeypatch.setattr(_swap_file.os, 'unlink', unlink)
    patch_module_exits(monkeypatch)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda _module, args, **kw: fake.run_command(args, **kw))
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda _module, name, required=False, opt_dirs=None: '/usr/sbin/' + name)
    return fake


def run(args, check=False, diff=False):
    """Run main() with `args`; return ('exit' | 'fail', result)."""
    result = run_main(swap_file.main, args, check, diff)
    return ('fail' if result.pop('failed') else 'exit'), result


def ok(args, **kwargs):
    kind, result = run(args, **kwargs)
    assert kind == 'exit', result
    return result


def refused(args, **kwargs):
    kind, result = run(args, **kwargs)
    assert kind == 'fail', result
    return result


def snapshot(host, path):
    """Everything a refusal must leave alone."""
    content = open(path, 'rb').read() if os.path.exists(path) else None
    return content, host.read(host.proc_swaps), host.read(host.fstab), sorted(os.listdir(os.path.dirname(path)))


# --- present ------------------------------------------------------------------------------

def test_create_then_unchanged(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    result = ok({'path': path, 'size': '2M'})
    assert result['changed'] is True
    assert result['actions'] == ['create', 'mkswap', 'swapon', 'fstab_add']
    assert result['method'] == 'fallocate'
    assert result['size_bytes'] == 2 * MiB and result['active'] is True and result['priority'] == -2 and result['used_bytes'] == 0
    assert result['fstab'] == '%s none swap sw 0 0' % path
    stat = os.stat(path)
    assert stat.st_mode & 0o7777 == 0o600 and (stat.st_uid, stat.st_gid) == (0, 0)
    assert _swap.read_signature(path, PAGE)['last_page'] == 2 * MiB // PAGE - 1
    assert host.read(host.fstab).endswith('%s none swap sw 0 0\n' % path)
    assert os.path.exists(result['backup_file'])
    assert [c[0] for c in host.commands] == ['fallocate', 'mkswap', 'swapon']
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.swaptmp')]

    host.commands.clear()
    again = ok({'path': path, 'size': 2 * MiB})
    assert again['changed'] is False and again['actions'] == [] and host.commands == []


def test_check_mode_predicts_the_priority_the_kernel_assigns(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    assert ok({'path': path, 'size': '2M'}, check=True)['priority'] == -2   # the first area without a priority
    assert ok({'path': path, 'size': '2M'})['priority'] == -2               # (the fake swapon assigns it as Linux does)
    other = str(tmp_path / 'other')
    assert ok({'path': other, 'size': '1M'}, check=True)['priority'] == -3  # one below the lowest other area


@pytest.mark.parametrize('active', [True, False])
def test_check_mode_without_permission_to_read_the_file(host, tmp_path, monkeypatch, active):
    """Check mode as a user who cannot read the root-owned swap file: fine when it is on, a clear failure otherwise."""
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    if active:
        host.activate(path)

    def unreadable(_path, _page_size=None):
        raise PermissionError(13, 'Permission denied', path)
    monkeypatch.setattr(_swap, 'read_signature', unreadable)
    kind, result = run({'path': path, 'size': '2M', 'fstab': False}, check=True)
    if active:
        assert kind == 'exit' and result['actions'] == ['create', 'mkswap', 'swapon', 'swapoff', 'replace'], result
        assert run({'path': path, 'state': 'absent'}, check=True)[1]['actions'] == ['swapoff', 'remove']
    else:
        assert kind == 'fail' and 'Cannot read %s' % path in result['msg'] and 'become' in result['msg']
    assert host.commands == []


def test_size_within_page_rounding_is_unchanged(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '2M'})
    assert ok({'path': path, 'size': 2 * MiB - 100})['changed'] is False


def test_check_mode_changes_nothing(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    before = snapshot(host, path)
    result = ok({'path': path, 'size': '2M', 'priority': 4}, check=True, diff=True)
    assert result['changed'] is True
    assert result['actions'] == ['create', 'mkswap', 'swapon', 'fstab_add']
    assert result['active'] is True and result['size_bytes'] == 2 * MiB and result['priority'] == 4
    assert snapshot(host, path) == before and host.commands == []
    file_diff, fstab_diff = result['diff']
    assert file_diff['before'] == {'size_bytes': None, 'priority': None, 'active': False}
    assert file_diff['after'] == {'size_bytes': 2 * MiB, 'priority': 4, 'active': True}
    assert fstab_diff['before_header'] == host.fstab
    assert fstab_diff['after'] == fstab_diff['before'] + '%s none swap sw,pri=4 0 0\n' % path


def test_diff_mode_real_run(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    result = ok({'path': path, 'size': '1M'}, diff=True)
    assert result['diff'][0]['after'] == {'size_bytes': MiB, 'priority': -2, 'active': True}
    assert '%s none swap sw 0 0' % path in result['diff'][1]['after']
    assert '%s none swap' % path not in result['diff'][1]['before']


def test_resize_active_file(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M'})
    host.commands.clear()
    result = ok({'path': path, 'size': '3M'})
    assert result['actions'] == ['create', 'mkswap', 'swapon', 'swapoff', 'replace']
    # the new file goes on beside the old one before the old one goes off; the rename needs it off for a moment
    temp = host.commands[0][-1]
    assert temp.endswith('.swaptmp') and os.path.dirname(temp) == str(tmp_path)
    assert host.commands == [['fallocate', '--length', str(3 * MiB), temp], ['mkswap', temp], ['swapon', temp],
                             ['swapoff', os.path.realpath(path)], ['swapoff', temp], ['swapon', os.path.realpath(path)]]
    assert sorted(os.listdir(tmp_path)) == sorted(['swapfile', 'proc_swaps', 'meminfo', 'mountinfo', 'etc', 'tmpfs', 'btrfs', 'ext3'])
    assert os.path.getsize(path) == 3 * MiB and result['size_bytes'] == 3 * MiB and result['active'] is True
    assert _swap.read_signature(path, PAGE)['last_page'] == 3 * MiB // PAGE - 1


def test_resize_refused_when_pages_do_not_fit(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    host.activate(path, used=6 * GiB)
    host.set_memory(available=4 * GiB, total=16 * GiB)
    before = snapshot(host, path)
    result = refused({'path': path, 'size': '2M'})
    assert 'Refusing to turn off swap file %s' % path in result['msg']
    assert '(%d bytes)' % (6 * GiB) in result['msg'] and '(%d bytes)' % (4 * GiB) in result['msg']
    assert result['changed'] is False
    assert snapshot(host, path) == before and host.commands == []


def test_resize_refused_in_check_mode_too(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    host.activate(path, used=6 * GiB)
    host.set_memory(available=4 * GiB, total=16 * GiB)
    assert 'MemAvailable' in refused({'path': path, 'size': '2M'}, check=True)['msg']


def test_priority_change_cycles_only_this_file(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M'})
    host.commands.clear()
    result = ok({'path': path, 'size': '1M', 'priority': 7})
    assert result['actions'] == ['swapoff', 'swapon', 'fstab_update']
    assert host.commands == [['swapoff', os.path.realpath(path)], ['swapon', '-p', '7', os.path.realpath(path)]]
    assert result['priority'] == 7 and result['fstab'].endswith('sw,pri=7 0 0')
    assert ok({'path': path, 'size': '1M', 'priority': 7})['changed'] is False
    assert ok({'path': path, 'size': '1M'})['changed'] is False


def test_kernel_priority_accepts_any_negative(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    host.activate(path, priority=-5)
    assert ok({'path': path, 'size': '1M', 'priority': -1, 'fstab': False})['changed'] is False


def test_inactive_swap_file_is_turned_on(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    result = ok({'path': path, 'size': '1M', 'fstab': False})
    assert result['actions'] == ['swapon'] and result['active'] is True


def test_mode_and_owner_fixed(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB, mode=0o644)
    os.chown(path, 1000, 1000)
    host.activate(path)
    result = ok({'path': path, 'size': '1M', 'fstab': False})
    assert result['actions'] == ['chmod', 'chown']
    stat = os.stat(path)
    assert stat.st_mode & 0o7777 == 0o600 and (stat.st_uid, stat.st_gid) == (0, 0)


def test_fstab_false_removes_line(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M'})
    result = ok({'path': path, 'size': '1M', 'fstab': False})
    assert result['actions'] == ['fstab_remove'] and result['fstab'] is None
    assert path not in host.read(host.fstab)


def test_sparse_inactive_file_is_recreated(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    with open(path, 'wb') as handle:
        handle.truncate(MiB)
    make_swap_header(path)
    os.chmod(path, 0o600)
    result = ok({'path': path, 'size': '1M', 'fstab': False})
    assert result['actions'] == ['create', 'mkswap', 'swapon', 'replace']
    assert not _swap.has_holes(os.stat(path))


def test_method_dd_writes_zeros(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    result = ok({'path': path, 'size': '1M', 'method': 'dd', 'fstab': False})
    assert result['method'] == 'dd'
    assert 'fallocate' not in [c[0] for c in host.commands]
    assert not _swap.has_holes(os.stat(path))


def test_auto_falls_back_to_dd(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    host.fail['fallocate'] = (1, '', 'fallocate failed: Operation not supported')
    assert ok({'path': path, 'size': '1M', 'fstab': False})['method'] == 'dd'


def test_btrfs_file_is_nocow(host, tmp_path):
    path = str(tmp_path / 'btrfs' / 'swapfile')
    result = ok({'path': path, 'size': '1M', 'fstab': False})
    assert result['method'] == 'fallocate'
    chattr, fallocate = host.commands[:2]
    assert chattr[:2] == ['chattr', '+C'] and chattr[2].endswith('.swaptmp') and fallocate[0] == 'fallocate'


def test_auto_uses_dd_on_ext3(host, tmp_path):
    result = ok({'path': str(tmp_path / 'ext3' / 'swapfile'), 'size': '1M', 'fstab': False})
    assert result['method'] == 'dd' and [c[0] for c in host.commands] == ['mkswap', 'swapon']


def test_explicit_fallocate_failure_cleans_up(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    host.fail['fallocate'] = (1, '', 'fallocate failed: Operation not supported')
    before = snapshot(host, path)
    result = refused({'path': path, 'size': '1M', 'method': 'fallocate'})
    assert 'Operation not supported' in result['msg'] and 'Creating swap file %s failed' % path in result['msg']
    assert snapshot(host, path) == before


@pytest.mark.parametrize('method, outcome', [('auto', 'dd'), ('fallocate', None)])
def test_fallocate_not_installed(host, tmp_path, monkeypatch, method, outcome):
    path = str(tmp_path / 'swapfile')
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                        lambda _module, name, required=False, opt_dirs=None: None if name == 'fallocate' else '/usr/sbin/' + name)
    kind, result = run({'path': path, 'size': '1M', 'method': method, 'fstab': False})
    if outcome:
        assert kind == 'exit' and result['method'] == outcome
    else:
        assert kind == 'fail' and 'fallocate is not installed' in result['msg']
        assert not os.path.exists(path)
        assert not [name for name in os.listdir(tmp_path) if name.endswith('.swaptmp')]


def test_mkswap_failure_leaves_old_swap_on(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M', 'fstab': False})
    host.fail['mkswap'] = (1, '', 'mkswap: error')
    result = refused({'path': path, 'size': '2M', 'fstab': False})
    assert 'still on, unchanged' in result['msg'] and result['changed'] is False  # everything was put back
    assert 'swapoff' not in [c[0] for c in host.commands]
    assert os.path.getsize(path) == MiB
    assert [a['path'] for a in host.areas()] == [os.path.realpath(path)]
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.swaptmp')]


def test_symlink_manages_target(host, tmp_path):
    target_dir = tmp_path / 'data'
    target_dir.mkdir()
    link = str(tmp_path / 'swaplink')
    os.symlink(str(target_dir / 'swapfile'), link)
    result = ok({'path': link, 'size': '1M'})
    assert os.path.islink(link) and os.path.getsize(str(target_dir / 'swapfile')) == MiB
    assert result['fstab'] == '%s none swap sw 0 0' % link
    assert ok({'path': link, 'size': '1M'})['changed'] is False


# --- refusals -----------------------------------------------------------------------------

def test_existing_data_file_refused_and_kept(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    payload = os.urandom(256 * 1024)
    with open(path, 'wb') as handle:
        handle.write(payload)
    before = snapshot(host, path)
    for check in (False, True):
        result = refused({'path': path, 'size': '1M'}, check=check)
        assert 'is not a swap file' in result['msg'] and path in result['msg'] and 'force' in result['msg']
    assert 'refusing to delete' in refused({'path': path, 'state': 'absent'})['msg']
    assert snapshot(host, path) == before and host.commands == []
    assert open(path, 'rb').read() == payload


def test_force_replaces_data_file(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    with open(path, 'wb') as handle:
        handle.write(b'data' * 1000)
    result = ok({'path': path, 'size': '1M', 'force': True, 'fstab': False})
    assert result['actions'] == ['create', 'mkswap', 'swapon', 'replace']
    assert _swap.read_signature(path, PAGE) is not None


def test_empty_file_is_replaced(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    open(path, 'wb').close()
    assert ok({'path': path, 'size': '1M', 'fstab': False})['actions'] == ['create', 'mkswap', 'swapon', 'replace']


@pytest.mark.parametrize('args, words', [
    pytest.param({'path': 'swapfile', 'size': '1M'}, ('relative', "'swapfile'"), id='relative'),
    pytest.param({'path': '/proc/swapfile', 'size': '1M'}, ('/proc',), id='proc'),
    pytest.param({'path': '/sys/swapfile', 'size': '1M'}, ('/sys',), id='sys'),
    pytest.param({'path': '/dev/shm/swapfile', 'size': '1M'}, ('/dev',), id='dev'),
    pytest.param({'path': '/dev/shm/swapfile', 'state': 'absent'}, ('/dev',), id='dev-absent'),
    pytest.param({'path': '{tmp}', 'size': '1M'}, ('is a directory',), id='directory'),
    pytest.param({'path': '{tmp}/missing/swapfile', 'size': '1M'}, ('does not exist',), id='missing-directory'),
    pytest.param({'path': '{tmp}/tmpfs/swapfile', 'size': '1M'}, ('tmpfs', 'memory'), id='tmpfs'),
    pytest.param({'path': '{tmp}/swapfile', 'size': 'lots'}, ("'lots'",), id='size-unparseable'),
    pytest.param({'path': '{tmp}/swapfile', 'size': '1.5'}, ("'1.5'", 'whole number'), id='size-fraction'),
    pytest.param({'path': '{tmp}/swapfile', 'size': '32K'}, ('32K', '40K'), id='size-too-small'),
    pytest.param({'path': '{tmp}/swapfile', 'size': '1P'}, ('does not fit', 'disk_reserve 10%'), id='size-too-big'),
    pytest.param({'path': '{tmp}/swapfile', 'size': '1M', 'disk_reserve': '200%'}, ('200%',), id='bad-reserve'),
    pytest.param({'path': '{tmp}/swapfile', 'size': '1M', 'priority': 40000}, ('40000',), id='priority-too-high'),
    pytest.param({'path': '{tmp}/swapfile', 'size': '1M', 'priority': -2}, ('-2',), id='priority-too-low'),
    pytest.param({'path': '{tmp}/swapfile'}, ('size',), id='size-missing'),
])
def test_refusals_change_nothing(host, tmp_path, args, words):
    args = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in args.items()}
    fstab = host.read(host.fstab)
    listing = sorted(os.listdir(tmp_path))
    result = refused(args)
    for word in words:
        assert word in result['msg']
    assert host.commands == [] and host.read(host.fstab) == fstab and sorted(os.listdir(tmp_path)) == listing


def test_disk_reserve_absolute(host, tmp_path):
    vfs = os.statvfs(str(tmp_path))
    free = vfs.f_bavail * vfs.f_frsize
    result = refused({'path': str(tmp_path / 'swapfile'), 'size': '1M', 'disk_reserve': str(free)})
    assert 'does not fit' in result['msg']


def test_auto_rebuilds_with_zeros_when_the_kernel_refuses_a_preallocated_file(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    host.fail_once['swapon'] = (255, '', 'swapon: %s: swapon failed: Invalid argument' % path)
    result = ok({'path': path, 'size': '2M'})
    assert result['actions'] == ['create', 'mkswap', 'swapon', 'rebuild_dd', 'fstab_add']
    assert [c[0] for c in host.commands] == ['fallocate', 'mkswap', 'swapon', 'mkswap', 'swapon']
    assert result['active'] is True and result['size_bytes'] == 2 * MiB
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.swaptmp')]


def test_a_new_file_the_kernel_refuses_is_removed(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    host.fail['swapon'] = (255, '', 'swapon: %s: swapon failed: Invalid argument' % path)
    result = refused({'path': path, 'size': '2M', 'method': 'fallocate'})
    assert 'The kernel refused %s as swap' % path in result['msg'] and 'the new file was removed' in result['msg']
    assert not os.path.exists(path) and path not in host.read(host.fstab)


def refuse_new_files(path):
    """swapon's refusal of any file but the one it already knew (the old swap file)."""
    if path.endswith('.swaptmp') or os.path.getsize(path) != MiB:
        return 255, '', 'swapon: %s: swapon failed: Invalid argument' % path
    return None


@pytest.mark.parametrize('method, actions', [
    ('auto', ['create', 'mkswap', 'swapon', 'rebuild_dd']),
    ('fallocate', ['create', 'mkswap', 'swapon']),
    ('dd', ['create', 'mkswap', 'swapon']),
])
def test_refused_resize_keeps_the_old_swap_on(host, tmp_path, method, actions):
    """The kernel refuses the new file: the old one was never turned off, fstab is as it was, nothing is left over."""
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M', 'priority': 4})
    before = snapshot(host, path)
    inode = os.stat(path).st_ino
    host.commands.clear()
    host.refuse['swapon'] = refuse_new_files
    result = refused({'path': path, 'size': '2M', 'priority': 4, 'method': method})
    assert 'The kernel refused %s as swap' % path in result['msg'] and 'is still on, unchanged' in result['msg'], result
    assert result['actions'] == actions and result['changed'] is False
    assert 'swapoff' not in [c[0] for c in host.commands]
    assert snapshot(host, path) == before and os.stat(path).st_ino == inode
    assert host.areas()[0]['priority'] == 4 and host.areas()[0]['size_bytes'] == MiB - PAGE


def test_failed_swapon_after_the_rename_puts_the_old_file_back_on(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M'})
    before = snapshot(host, path)
    calls = []

    def refuse_the_last(swap_path):
        calls.append(swap_path)
        # the new file is taken under its temporary name, then refused under its own name once (after the rename)
        if len(calls) == 2:
            return 255, '', 'swapon: %s: swapon failed: Cannot allocate memory' % swap_path
        return None
    host.refuse['swapon'] = refuse_the_last
    result = refused({'path': path, 'size': '2M'})
    assert 'Turning on the new swap file %s failed' % path in result['msg'] and 'the old file was put back' in result['msg']
    assert 'The old swap file %s is on again' % path in result['msg']
    assert result['actions'] == ['create', 'mkswap', 'swapon', 'swapoff', 'replace'] and result['changed'] is False
    assert snapshot(host, path) == before and os.path.getsize(path) == MiB


def test_failed_swapoff_of_the_old_file_removes_the_new_one(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M'})
    before = snapshot(host, path)
    host.refuse['swapoff'] = lambda swap_path: (255, '', 'swapoff: Cannot allocate memory') if swap_path == os.path.realpath(path) else None
    result = refused({'path': path, 'size': '2M'})
    assert 'Turning off the old swap file %s failed' % path in result['msg'] and 'The new file was removed' in result['msg']
    assert 'still on, unchanged' in result['msg']
    assert snapshot(host, path) == before


def test_bad_disk_reserve_is_refused_even_when_nothing_is_rebuilt(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M'})
    result = refused({'path': path, 'size': '1M', 'disk_reserve': 'banana'})
    assert 'banana' in result['msg']


def _reserve_leaving(tmp_path, room):
    """A disk_reserve (bytes, as a string) that leaves `room` bytes of the free space usable."""
    vfs = os.statvfs(str(tmp_path))
    return str(vfs.f_bavail * vfs.f_frsize - room)


def test_resize_that_needs_the_old_file_deleted_first_is_refused_without_force(host, tmp_path):
    # 16 MiB usable beside the old 16 MiB file: 24 MiB fits only once the old file is gone
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '16M'})
    host.commands.clear()
    before = snapshot(host, path)
    result = refused({'path': path, 'size': '24M', 'disk_reserve': _reserve_leaving(tmp_path, 16 * MiB)})
    assert 'needs the old file deleted first' in result['msg'] and 'force=true' in result['msg']
    assert snapshot(host, path) == before and host.commands == []


def test_forced_resize_that_fails_says_there_is_no_swap_file(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '16M'})
    host.fail['mkswap'] = (1, '', 'mkswap: error: device busy')
    result = refused({'path': path, 'size': '24M', 'force': True, 'disk_reserve': _reserve_leaving(tmp_path, 16 * MiB)})
    assert 'device busy' in result['msg'] and 'there is no swap file at %s now' % path in result['msg'] and result['changed'] is True
    assert result['actions'] == ['swapoff', 'remove', 'create', 'mkswap']
    assert not os.path.exists(path) and host.areas() == []
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.swaptmp')]
    del host.fail['mkswap']
    # the old file's blocks are free again: a plain run puts the swap file back
    result = ok({'path': path, 'size': '24M', 'disk_reserve': _reserve_leaving(tmp_path, 32 * MiB)})
    assert result['changed'] is True and result['active'] is True and result['size_bytes'] == 24 * MiB


# --- absent -------------------------------------------------------------------------------

def test_absent_removes_everything(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M', 'priority': 3})
    host.commands.clear()
    result = ok({'path': path, 'state': 'absent'}, diff=True)
    assert result['actions'] == ['swapoff', 'fstab_remove', 'remove']
    assert host.commands == [['swapoff', os.path.realpath(path)]]
    assert not os.path.exists(path) and host.areas() == [] and path not in host.read(host.fstab)
    assert result['active'] is False and result['size_bytes'] is None and result['fstab'] is None
    assert result['diff'][0]['before'] == {'size_bytes': MiB, 'priority': 3, 'active': True}
    assert ok({'path': path, 'state': 'absent'})['changed'] is False


def test_absent_check_mode(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M'})
    host.commands.clear()
    before = snapshot(host, path)
    result = ok({'path': path, 'state': 'absent'}, check=True)
    assert result['changed'] is True and result['actions'] == ['swapoff', 'fstab_remove', 'remove']
    assert snapshot(host, path) == before and host.commands == []


def test_absent_refused_when_pages_do_not_fit(host, tmp_path):
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    host.activate(path, used=3 * GiB)
    host.set_memory(available=3 * GiB, total=8 * GiB)
    before = snapshot(host, path)
    result = refused({'path': path, 'state': 'absent'})
    assert '(%d bytes)' % (3 * GiB) in result['msg'] and 'MemAvailable' in result['msg']
    assert snapshot(host, path) == before and host.commands == []


def test_absent_removes_stale_fstab_line(host, tmp_path):
    path = str(tmp_path / 'gone')
    host.write(host.fstab, host.read(host.fstab) + '%s none swap sw 0 0\n' % path)
    result = ok({'path': path, 'state': 'absent'})
    assert result['actions'] == ['fstab_remove']


@pytest.mark.parametrize('check', [False, True])
@pytest.mark.parametrize('state', ['present', 'absent'])
def test_active_under_another_name_refused(host, tmp_path, state, check):
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    alias = str(tmp_path / 'alias')
    os.link(path, alias)  # the same file under another name, as a bind mount shows it
    host.activate(alias)
    before = snapshot(host, path)
    result = refused({'path': path, 'size': '2M', 'state': state}, check=check)
    assert 'lists it under another name (%s' % alias in result['msg'] and path in result['msg']
    assert snapshot(host, path) == before and host.commands == []


def test_check_mode_says_what_it_cannot_tell_without_writing(host, tmp_path):
    """An area whose path leads to no file could be this file: check mode says so instead of probing the file."""
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    host.set_areas([{'path': '/no/such/dir/swapfile', 'size_bytes': MiB - PAGE, 'used_bytes': 0, 'priority': -2}])
    stat = os.stat(path)
    result = ok({'path': path, 'state': 'absent'}, check=True)
    assert result['actions'] == ['remove'] and len(result['unanswered']) == 1
    assert '/no/such/dir/swapfile' in result['unanswered'][0] and 'without writing' in result['unanswered'][0]
    assert result['warnings'] == result['unanswered']
    after = os.stat(path)
    assert (after.st_mtime_ns, after.st_ctime_ns) == (stat.st_mtime_ns, stat.st_ctime_ns) and host.commands == []
    assert ok({'path': path, 'size': '1M', 'fstab': False}, check=True)['unanswered'] == result['unanswered']


def test_real_run_stops_where_the_kernel_refuses_a_busy_file(host, tmp_path, monkeypatch):
    """The unknown area is this file (the rename of the old file is refused): the new file goes, the old stays."""
    path = str(tmp_path / 'swapfile')
    make_swap_file(path, MiB)
    host.set_areas([{'path': '/no/such/dir/swapfile', 'size_bytes': MiB - PAGE, 'used_bytes': 0, 'priority': -2}])
    real_rename = _swap_file.os.rename

    def rename(src, dst):
        if src == os.path.realpath(path):
            raise PermissionError(errno.EPERM, 'Operation not permitted', src)
        real_rename(src, dst)
    monkeypatch.setattr(_swap_file.os, 'rename', rename)
    result = refused({'path': path, 'size': '2M', 'fstab': False})
    assert 'Cannot move the old file %s aside' % path in result['msg'] and 'is as it was' in result['msg']
    assert os.path.getsize(path) == MiB and [a['path'] for a in host.areas()] == ['/no/such/dir/swapfile']
    assert not [name for name in os.listdir(tmp_path) if name.endswith(('.swaptmp', '.swapold'))]


def test_never_swapoff_all(host, tmp_path):
    """Every swapoff the module runs names exactly one file: this one or the new one it built beside it."""
    path = str(tmp_path / 'swapfile')
    ok({'path': path, 'size': '1M'})
    ok({'path': path, 'size': '2M', 'priority': 1})
    ok({'path': path, 'state': 'absent'})
    swapoffs = [c for c in host.commands if c[0] == 'swapoff']
    assert swapoffs and all(len(c) == 2 and (c[1] == os.path.realpath(path) or c[1].endswith('.swaptmp')) for c in swapoffs)
