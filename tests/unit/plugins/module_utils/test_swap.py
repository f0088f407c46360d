"""Unit tests of plugins/module_utils/_swap.py: signatures, /proc parsing, filesystems, fstab, the safety rule."""

import os
import shutil
import struct
import subprocess

import pytest

from ansible_collections.sutazai.ops.plugins.module_utils import _swap

MiB = 1024 ** 2
GiB = 1024 ** 3


def swap_header(page_size=4096, pages=16, magic=b'SWAPSPACE2', version=1, label=b''):
    """The first page of a swap area as mkswap writes it."""
    data = bytearray(page_size)
    struct.pack_into('=III', data, 1024, version, pages - 1, 0)
    data[1036:1052] = bytes(range(16))
    data[1052:1052 + len(label)] = label
    data[page_size - 10:page_size - 10 + len(magic)] = magic
    return bytes(data)


# --- signatures -------------------------------------------------------------------------------

@pytest.mark.parametrize('data, page_size, expected', [
    pytest.param(swap_header(4096, 16), 4096, {'magic': 'SWAPSPACE2', 'page_size': 4096, 'version': 1, 'last_page': 15}, id='v1-4k'),
    pytest.param(swap_header(65536, 4) + b'\0' * 10, 4096, {'magic': 'SWAPSPACE2', 'page_size': 65536, 'last_page': 3}, id='v1-64k-on-4k-host'),
    pytest.param(swap_header(16384, 8), 16384, {'page_size': 16384}, id='v1-16k'),
    pytest.param(swap_header(4096, magic=b'SWAP-SPACE'), 4096, {'magic': 'SWAP-SPACE', 'page_size': 4096}, id='v0'),
    pytest.param(swap_header(4096, magic=b'S1SUSPEND'), 4096, {'magic': 'S1SUSPEND'}, id='hibernation-image'),
    pytest.param(swap_header(4096, magic=b'LINHIB0001'), 4096, {'magic': 'LINHIB0001'}, id='hibernation-linhib'),
])
def test_signature_found(data, page_size, expected):
    signature = _swap.signature_from_bytes(data, page_size)
    assert signature is not None
    for key, value in expected.items():
        assert signature[key] == value


def test_signature_label_and_uuid():
    signature = _swap.signature_from_bytes(swap_header(label=b'swap0'), 4096)
    assert signature['label'] == 'swap0'
    assert signature['uuid'] == bytes(range(16)).hex()


@pytest.mark.parametrize('data', [
    pytest.param(b'', id='empty'),
    pytest.param(b'\0' * 65536, id='zeros'),
    pytest.param(b'SWAPSPACE2' + b'\0' * 8000, id='magic-at-start'),
    pytest.param(b'\0' * 4000 + b'SWAPSPACE2', id='magic-at-wrong-offset'),
    pytest.param(swap_header(4096)[:4095], id='truncated-page'),
    pytest.param(b'#!/bin/sh\necho important data\n' * 300, id='text'),
    pytest.param(bytes(range(256)) * 300, id='binary'),
])
def test_signature_absent(data):
    assert _swap.signature_from_bytes(data, 4096) is None


def test_read_signature_on_files(tmp_path):
    swap = tmp_path / 'swap'
    swap.write_bytes(swap_header(4096, 16) + b'\0' * 4096 * 15)
    data = tmp_path / 'data'
    data.write_bytes(b'x' * 10000)
    assert _swap.read_signature(str(swap), 4096)['last_page'] == 15
    assert _swap.read_signature(str(data), 4096) is None


@pytest.mark.skipif(shutil.which('mkswap') is None and not os.path.exists('/usr/sbin/mkswap'), reason='mkswap not installed')
def test_read_signature_of_real_mkswap(tmp_path):
    path = tmp_path / 'swap'
    with open(path, 'wb') as handle:
        handle.write(b'\0' * MiB)
    os.chmod(path, 0o600)
    mkswap = shutil.which('mkswap') or '/usr/sbin/mkswap'
    subprocess.run([mkswap, '-L', 'unit', str(path)], check=True, capture_output=True)
    page = os.sysconf('SC_PAGE_SIZE')
    signature = _swap.read_signature(str(path), page)
    assert signature['magic'] == 'SWAPSPACE2' and signature['label'] == 'unit'
    assert _swap.header_matches(signature, MiB, page)
    assert not _swap.header_matches(signature, 2 * MiB, page)


@pytest.mark.parametrize('signature, size, expected', [
    ({'magic': 'SWAPSPACE2', 'page_size': 4096, 'version': 1, 'last_page': 255}, MiB, True),
    ({'magic': 'SWAPSPACE2', 'page_size': 4096, 'version': 1, 'last_page': 255}, 2 * MiB, False),
    ({'magic': 'SWAPSPACE2', 'page_size': 65536, 'version': 1, 'last_page': 15}, MiB, False),
    ({'magic': 'SWAP-SPACE', 'page_size': 4096}, MiB, False),
    (None, MiB, False),
])
def test_header_matches(signature, size, expected):
    assert _swap.header_matches(signature, size, 4096) is expected


def test_has_holes(tmp_path):
    sparse = tmp_path / 'sparse'
    with open(sparse, 'wb') as handle:
        handle.truncate(MiB)
    full = tmp_path / 'full'
    full.write_bytes(b'\0' * MiB)
    assert _swap.has_holes(os.stat(sparse))
    assert not _swap.has_holes(os.stat(full))


# --- /proc ------------------------------------------------------------------------------------

PROC_SWAPS = (
    'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'
    '/dev/vda2                               partition\t2097148\t\t0\t\t-2\n'
    '/swapfile                               file\t\t8388604\t\t1024\t\t10\n'
    '/var/tmp/my\\040swap                     file\t\t65532\t\t0\t\t-3\n'
    '/old\\040(deleted)                       file\t\t65532\t\t4\t\t-4\n'
)


def test_parse_proc_swaps():
    areas = _swap.parse_proc_swaps(PROC_SWAPS)
    assert [area['path'] for area in areas] == ['/dev/vda2', '/swapfile', '/var/tmp/my swap', '/old']
    assert areas[1] == {'path': '/swapfile', 'type': 'file', 'size_bytes': 8388604 * 1024, 'used_bytes': 1024 * 1024,
                        'priority': 10, 'deleted': False}
    assert areas[3]['deleted'] is True
    assert _swap.parse_proc_swaps('Filename\tType\tSize\tUsed\tPriority\n') == []
    assert _swap.parse_proc_swaps('') == []


@pytest.mark.parametrize('path, expected', [
    ('/swapfile', 10),
    ('/var/tmp/my swap', -3),
    ('/old', None),
    ('/swap', None),
    ('/swapfile2', None),
])
def test_find_area(path, expected):
    area = _swap.find_area(_swap.parse_proc_swaps(PROC_SWAPS), path)
    assert (area['priority'] if area else None) == expected


# --- the safety rule ------------------------------------------------------------------------

@pytest.mark.parametrize('used, available, total, safe', [
    pytest.param(0, 20 * GiB, 24 * GiB, True, id='empty-swap'),
    pytest.param(1 * GiB, 20 * GiB, 24 * GiB, True, id='plenty-of-memory'),
    pytest.param(int(17.6 * GiB), 20 * GiB, 24 * GiB, True, id='just-fits-with-10pct-margin'),
    pytest.param(int(17.7 * GiB), 20 * GiB, 24 * GiB, False, id='eats-into-margin'),
    pytest.param(6 * GiB, 4 * GiB, 16 * GiB, False, id='more-than-available'),
    pytest.param(700 * MiB, 1 * GiB, 2 * GiB, True, id='small-host-256M-floor'),
    pytest.param(800 * MiB, 1 * GiB, 2 * GiB, False, id='small-host-under-floor'),
    pytest.param(0, 100 * MiB, 1 * GiB, False, id='host-already-starved'),
])
def test_swapoff_refusal(used, available, total, safe):
    message = _swap.swapoff_refusal('/swapfile', used, available, total)
    assert (message is None) is safe
    if not safe:
        assert '/swapfile' in message
        assert '(%d bytes)' % used in message
        assert '(%d bytes)' % available in message
        assert 'MemAvailable' in message


@pytest.mark.parametrize('total, margin', [(24 * GiB, int(2.4 * GiB)), (1 * GiB, 256 * MiB), (0, 256 * MiB)])
def test_swapoff_margin(total, margin):
    assert abs(_swap.swapoff_margin(total) - margin) <= 1


# --- filesystems ----------------------------------------------------------------------------

MOUNTINFO = (
    '22 27 0:21 / /proc rw,relatime - proc proc rw\n'
    '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n'
    '30 27 0:27 / /tmp rw,relatime - tmpfs tmpfs rw,size=1g\n'
    '31 27 254:1 / /var rw,relatime shared:1 - xfs /dev/vdb rw\n'
    '32 31 0:40 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=a\n'
    '33 27 254:2 / /srv/my\\040data rw master:3 - btrfs /dev/vdc rw,subvol=/\n'
    '34 27 0:50 / /mnt/nfs rw - nfs4 server:/export rw\n'
    '35 27 0:51 / /mnt/sshfs rw - fuse.sshfs user@host: rw\n'
    '36 27 254:3 / /var2 rw - ext4 /dev/vdd rw\n'
    '37 30 254:4 / /tmp rw - ext4 /dev/vde rw\n'
    'garbage line\n'
)


@pytest.mark.parametrize('path, mount_point, fstype', [
    ('/swapfile', '/', 'ext4'),
    ('/var/swapfile', '/var', 'xfs'),
    ('/var2/swapfile', '/var2', 'ext4'),
    ('/var', '/var', 'xfs'),
    ('/var/lib/docker/overlay2/x/merged/swap', '/var/lib/docker/overlay2/x/merged', 'overlay'),
    ('/srv/my data/swap', '/srv/my data', 'btrfs'),
    ('/srv/my', '/', 'ext4'),
    ('/mnt/nfs/swap', '/mnt/nfs', 'nfs4'),
    ('/tmp/swap', '/tmp', 'ext4'),
])
def test_mount_of(path, mount_point, fstype):
    mount = _swap.mount_of(path, _swap.parse_mountinfo(MOUNTINFO))
    assert (mount['mount_point'], mount['fstype']) == (mount_point, fstype)


def test_parse_mountinfo_fields():
    mounts = _swap.parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 10
    assert mounts[5]['source'] == '/dev/vdc'
    assert 'subvol=/' in mounts[5]['options']


def test_mount_of_real_root():
    with open('/proc/self/mountinfo', encoding='utf-8') as handle:
        mount = _swap.mount_of('/', _swap.parse_mountinfo(handle.read()))
    assert mount['mount_point'] == '/'


@pytest.mark.parametrize('fstype, refused, words', [
    ('ext4', False, ()),
    ('ext3', False, ()),
    ('xfs', False, ()),
    ('btrfs', False, ()),
    ('f2fs', False, ()),
    ('tmpfs', True, ('tmpfs', 'memory', '/tmp')),
    ('ramfs', True, ('memory',)),
    ('overlay', True, ('overlay', 'union')),
    ('nfs', True, ('network',)),
    ('nfs4', True, ('network',)),
    ('cifs', True, ('network',)),
    ('fuse.sshfs', True, ('FUSE',)),
    ('zfs', True, ('zfs',)),
    ('squashfs', True, ('read-only',)),
    ('exotic', True, ('exotic', 'ext4')),
])
def test_filesystem_refusal(fstype, refused, words):
    message = _swap.filesystem_refusal('/tmp/swap', {'mount_point': '/tmp', 'fstype': fstype, 'source': 'x', 'options': ''})
    assert (message is not None) is refused
    for word in words:
        assert word in message


def test_filesystem_refusal_without_mount():
    assert 'mount table' in _swap.filesystem_refusal('/x', None)


@pytest.mark.parametrize('method, fstype, expected', [
    ('auto', 'ext4', 'fallocate'),
    ('auto', 'xfs', 'fallocate'),
    ('auto', 'btrfs', 'fallocate'),
    ('auto', 'ext3', 'dd'),
    ('auto', 'f2fs', 'dd'),
    ('dd', 'ext4', 'dd'),
    ('fallocate', 'ext3', 'fallocate'),
])
def test_creation_method(method, fstype, expected):
    assert _swap.creation_method(method, fstype) == expected


# --- paths and sizes --------------------------------------------------------------------------

@pytest.mark.parametrize('path, real, refused_for', [
    ('/swapfile', '/swapfile', None),
    ('/var/tmp/swapfile', '/var/tmp/swapfile', None),
    ('/devices/swapfile', '/devices/swapfile', None),
    ('/system/swap', '/system/swap', None),
    ('/processes.swap', '/processes.swap', None),
    ('swapfile', '/root/swapfile', 'relative'),
    ('./swapfile', '/root/swapfile', 'relative'),
    ('/proc/swapfile', '/proc/swapfile', '/proc'),
    ('/sys/kernel/swap', '/sys/kernel/swap', '/sys'),
    ('/dev/sda2', '/dev/sda2', '/dev'),
    ('/dev', '/dev', '/dev'),
    ('/dev/shm/swap', '/dev/shm/swap', '/dev'),
    ('/var/../dev/swap', '/dev/swap', '/dev'),
    ('/swaplink', '/dev/shm/swap', '/dev'),
])
def test_path_refusal(path, real, refused_for):
    message = _swap.path_refusal(path, real)
    if refused_for is None:
        assert message is None
    else:
        assert refused_for in message and path in message


@pytest.mark.parametrize('size, page, expected', [(1, 4096, 4096), (4096, 4096, 4096), (4097, 4096, 8192), (0, 4096, 0), (8 * GiB, 65536, 8 * GiB)])
def test_round_to_page(size, page, expected):
    assert _swap.round_to_page(size, page) == expected


@pytest.mark.parametrize('file_size, wanted, expected', [
    (64 * MiB, 64 * MiB, True),
    (64 * MiB, 64 * MiB - 100, True),
    (64 * MiB + 4096, 64 * MiB + 1, True),
    (64 * MiB, 64 * MiB + 1, False),
    (64 * MiB, 128 * MiB, False),
    (128 * MiB, 64 * MiB, False),
])
def test_size_matches(file_size, wanted, expected):
    assert _swap.size_matches(file_size, wanted, 4096) is expected


@pytest.mark.parametrize('value, total, expected', [
    ('10%', 100 * GiB, 10 * GiB),
    ('0%', 100 * GiB, 0),
    ('2.5%', 100 * GiB, int(2.5 * GiB)),
    ('2G', 100 * GiB, 2 * GiB),
    ('0', 100 * GiB, 0),
    (' 5% ', 100 * GiB, 5 * GiB),
])
def test_parse_reserve(value, total, expected):
    assert _swap.parse_reserve(value, total) == expected


@pytest.mark.parametrize('value', ['150%', '-1%', 'ten%', '%', 'lots', '-2G'])
def test_parse_reserve_refused(value):
    with pytest.raises(ValueError, match=value.strip('%') if value != '%' else '%'):
        _swap.parse_reserve(value, 100 * GiB)


def test_disk_refusal():
    assert _swap.disk_refusal('/swapfile', 8 * GiB, 79 * GiB, 25 * GiB, '10%') is None
    message = _swap.disk_refusal('/swapfile', 8 * GiB, 10 * GiB, 5 * GiB, '5G')
    assert '/swapfile' in message and '(8589934592 bytes)' in message and 'disk_reserve 5G' in message and '5G' in message


# --- fstab ----------------------------------------------------------------------------------

BASE = '# /etc/fstab\nUUID=abc / ext4 errors=remount-ro 0 1\n'


@pytest.mark.parametrize('text, present, priority, expected_text, change', [
    pytest.param(BASE, True, None, BASE + '/swapfile none swap sw 0 0\n', 'add', id='add'),
    pytest.param(BASE, True, 10, BASE + '/swapfile none swap sw,pri=10 0 0\n', 'add', id='add-priority'),
    pytest.param(BASE, True, -1, BASE + '/swapfile none swap sw 0 0\n', 'add', id='add-kernel-priority'),
    pytest.param('', True, None, '/swapfile none swap sw 0 0\n', 'add', id='add-to-empty'),
    pytest.param('# no newline', True, None, '# no newline\n/swapfile none swap sw 0 0\n', 'add', id='add-after-missing-newline'),
    pytest.param(BASE + '/swapfile none swap sw 0 0\n', True, None, BASE + '/swapfile none swap sw 0 0\n', None, id='unchanged'),
    pytest.param(BASE + '/swapfile\tswap\tswap\tdefaults\t0\t0\n', True, None, BASE + '/swapfile\tswap\tswap\tdefaults\t0\t0\n', None,
                 id='unchanged-other-style'),
    pytest.param(BASE + '/swapfile none swap sw,pri=5 0 0\n', True, None, BASE + '/swapfile none swap sw,pri=5 0 0\n', None,
                 id='priority-not-managed'),
    pytest.param(BASE + '/swapfile none swap sw,pri=5 0 0\n', True, 10, BASE + '/swapfile none swap sw,pri=10 0 0\n', 'update',
                 id='priority-changed'),
    pytest.param(BASE + '/swapfile\tnone\tswap\tsw,pri=5,nofail\t0 0 # keep\n', True, -1, BASE + '/swapfile\tnone\tswap\tsw,nofail\t0 0 # keep\n',
                 'update', id='priority-removed-other-options-kept'),
    pytest.param(BASE + '/swapfile none swap\n', True, 3, BASE + '/swapfile none swap sw,pri=3 0 0\n', 'update', id='three-fields'),
    pytest.param(BASE + '/swapfile none swap sw 0 0\n/swapfile none swap sw 0 0\n', True, None, BASE + '/swapfile none swap sw 0 0\n', 'update',
                 id='duplicate-dropped'),
    pytest.param(BASE + '/swapfile none swap sw 0 0\n', False, None, BASE, 'remove', id='remove'),
    pytest.param(BASE + '/swapfile none swap sw 0 0\n# after\n/swapfile none swap sw 0 0\n', False, None, BASE + '# after\n', 'remove',
                 id='remove-all'),
    pytest.param(BASE, False, None, BASE, None, id='remove-nothing'),
    pytest.param(BASE + '#/swapfile none swap sw 0 0\n', False, None, BASE + '#/swapfile none swap sw 0 0\n', None, id='comment-kept'),
    pytest.param(BASE + '/swapfile /mnt/loop ext4 loop 0 0\n', False, None, BASE + '/swapfile /mnt/loop ext4 loop 0 0\n', None,
                 id='non-swap-line-kept'),
    pytest.param(BASE + '/swapfile2 none swap sw 0 0\n', True, None, BASE + '/swapfile2 none swap sw 0 0\n/swapfile none swap sw 0 0\n', 'add',
                 id='other-swap-file-kept'),
])
def test_fstab_update(text, present, priority, expected_text, change):
    assert _swap.fstab_update(text, '/swapfile', present, priority) == (expected_text, change)


def test_fstab_update_escapes_and_aliases():
    text, change = _swap.fstab_update(BASE, '/var/tmp/my swap', True)
    assert change == 'add' and text.endswith('/var/tmp/my\\040swap none swap sw 0 0\n')
    assert _swap.fstab_update(text, '/var/tmp/my swap', True) == (text, None)
    assert _swap.fstab_line(text, {'/var/tmp/my swap'}) == '/var/tmp/my\\040swap none swap sw 0 0'
    linked = BASE + '/data/swapfile none swap sw 0 0\n'
    assert _swap.fstab_update(linked, '/swapfile', False, paths={'/data/swapfile'}) == (BASE, 'remove')


def test_fstab_line():
    assert _swap.fstab_line(BASE, {'/swapfile'}) is None
    assert _swap.fstab_line(BASE + '  /swapfile none swap sw 0 0  \n', {'/swapfile'}) == '/swapfile none swap sw 0 0'


@pytest.mark.parametrize('raw, decoded', [('/a\\040b', '/a b'), ('/a\\011b\\134c', '/a\tb\\c'), ('/plain', '/plain')])
def test_escape_roundtrip(raw, decoded):
    assert _swap.unescape(raw) == decoded
    assert _swap.escape(decoded) == raw


def test_read_signature_leaves_the_access_time(tmp_path):
    path = tmp_path / 'swapfile'
    path.write_bytes(swap_header(4096, 16) + b'\0' * 4096 * 15)
    os.utime(path, ns=(1, 2))  # an access time older than the mtime: an ordinary read (relatime) would update it
    assert _swap.read_signature(str(path), 4096)['last_page'] == 15
    assert os.stat(path).st_atime_ns == 1


def test_host_read_leaves_the_access_time(tmp_path):
    path = tmp_path / 'fstab'
    path.write_text('/swapfile none swap sw 0 0\n')
    os.utime(path, ns=(1, 2))
    assert _swap.Host.read(str(path)) == '/swapfile none swap sw 0 0\n'
    assert os.stat(path).st_atime_ns == 1
    assert _swap.Host.read(str(tmp_path / 'missing'), missing='') == ''
    with pytest.raises(FileNotFoundError):
        _swap.Host.read(str(tmp_path / 'missing'))


class FakeStat:
    """The fields of os.stat identify_area looks at."""

    def __init__(self, dev, ino, size=64 * MiB, mode=0o100600):
        self.st_dev, self.st_ino, self.st_size, self.st_mode = dev, ino, size, mode


def area(path, size=64 * MiB - 4096, kind='file', deleted=False):
    return {'path': path, 'type': kind, 'size_bytes': size, 'used_bytes': 0, 'priority': -2, 'deleted': deleted}


def fake_stat(tree):
    """os.stat over a dict path -> FakeStat; anything else is missing."""
    def stat(path):
        if path not in tree:
            raise FileNotFoundError(2, 'No such file or directory', path)
        return tree[path]
    return stat


MINE = FakeStat(8, 100)


def test_identify_area_by_name():
    listed = area('/var/swapfile')
    assert _swap.identify_area([area('/other'), listed], '/var/swapfile', MINE, roots=lambda: 1 / 0) == (listed, True, [])


def test_expected_area_size_of_real_mkswap(tmp_path):
    """The header this host's mkswap writes gives the size /proc/swaps shows for the file (65532 KiB for 64 MiB)."""
    path = str(tmp_path / 'swapfile')
    with open(path, 'wb') as handle:
        handle.truncate(MiB)
    if subprocess.run(['mkswap', path], capture_output=True, check=False).returncode:
        pytest.skip('mkswap is not installed')
    page = os.sysconf('SC_PAGE_SIZE')
    assert _swap.expected_area_size(MiB, _swap.read_signature(path, page), page) == MiB - page


def test_identify_area_through_a_bind_mount():
    # turned on as /alias/swapfile, the same file (st_dev, st_ino) as /var/swapfile
    found, named, unknown = _swap.identify_area([area('/alias/swapfile')], '/var/swapfile', MINE, 64 * MiB - 4096, roots=list,
                                                stat=fake_stat({'/alias/swapfile': FakeStat(8, 100)}))
    assert found['listed_as'] == '/alias/swapfile' and named is False and unknown == []


def test_identify_area_in_another_mount_namespace():
    # a container turned on /swap/file, which is this file; its path resolves only under the container's root
    tree = {'/swap/file': FakeStat(8, 555), '/proc/42/root/swap/file': FakeStat(8, 100)}
    found, named, _unknown = _swap.identify_area([area('/swap/file')], '/var/swapfile', MINE, 64 * MiB - 4096,
                                                 roots=lambda: ['/proc/7/root', '/proc/42/root'], stat=fake_stat(tree))
    assert found['listed_as'] == '/proc/42/root/swap/file' and named is False


def test_identify_area_rules_out_partitions_and_areas_of_another_size():
    areas = [area('/dev/vda2', kind='partition'), area('/bigger', size=65 * MiB), area('/smaller', size=32 * MiB)]
    # without a header to go by, only an area larger than the file is ruled out
    assert _swap.identify_area(areas, '/var/swapfile', MINE, 64 * MiB - 4096, roots=list, stat=fake_stat({})) == (None, True, [])
    assert _swap.identify_area(areas, '/var/swapfile', MINE, None, roots=list, stat=fake_stat({}))[2] == [areas[2]]


def test_identify_area_says_what_it_cannot_tell():
    # a path that leads to no file anywhere, one that leads to another file of the same size, and a deleted name:
    # any of them could be this file, turned on through a mount no process can show any more
    areas = [area('/gone/swapfile'), area('/swapfile'), area('/old', deleted=True)]
    tree = {'/swapfile': FakeStat(8, 7), '/old': FakeStat(8, 9)}
    found, named, unknown = _swap.identify_area(areas, '/var/swapfile', MINE, 64 * MiB - 4096, roots=lambda: ['/proc/42/root'],
                                                stat=fake_stat(tree))
    assert found is None and named is True and unknown == areas


@pytest.mark.parametrize('size, last_page, bad, page, expected', [
    (64 * MiB, 16383, 0, 4096, 64 * MiB - 4096),         # mkswap on the whole file: 65532 KiB in /proc/swaps
    (64 * MiB, 8191, 0, 4096, 32 * MiB - 4096),          # mkswap FILE 32768: the header covers half the file
    (64 * MiB, 16383, 3, 4096, 64 * MiB - 4 * 4096),     # bad pages are not used
    (64 * MiB, 1023, 0, 65536, None),                    # another page size: not this host's header
])
def test_expected_area_size(size, last_page, bad, page, expected):
    signature = {'magic': 'SWAPSPACE2', 'page_size': page, 'version': 1, 'last_page': last_page, 'nr_badpages': bad}
    assert _swap.expected_area_size(size, signature, 4096) == expected
    assert _swap.expected_area_size(size, None, 4096) is None


def test_identify_area_on_this_host_reads_only(tmp_path):
    path = tmp_path / 'swapfile'
    path.write_bytes(b'\0' * 65536)
    before = os.stat(path)
    areas = [area('/no/such/swapfile', size=4096)]
    found, named, unknown = _swap.identify_area(areas, str(path), before)
    assert (found, named, unknown) == (None, True, areas)
    after = os.stat(path)
    assert (after.st_mtime_ns, after.st_ctime_ns, after.st_size) == (before.st_mtime_ns, before.st_ctime_ns, before.st_size)


def test_mount_namespace_roots_one_per_other_namespace(tmp_path):
    proc = tmp_path / 'proc'
    for pid, namespace in (('self', 'mnt:[1]'), ('1', 'mnt:[1]'), ('12', 'mnt:[2]'), ('3', 'mnt:[2]'), ('40', 'mnt:[3]')):
        (proc / pid / 'ns').mkdir(parents=True)
        os.symlink(namespace, str(proc / pid / 'ns' / 'mnt'))
    (proc / '5').mkdir()  # a process whose namespace cannot be read
    assert _swap.mount_namespace_roots(str(proc)) == [str(proc / '3' / 'root'), str(proc / '40' / 'root')]
