"""testinfra checks of the swap scenario: the swap file on the shared host directory, fstab, sysctl skipped."""

testinfra_hosts = ['all']  # pylint: disable=invalid-name

SWAPFILE = '/swapdir/swapfile'


def swaps(host):
    """{path: (size_kib, used_kib, priority)} of the instance's /proc/swaps."""
    lines = host.file('/proc/swaps').content_string.splitlines()[1:]
    return {fields[0]: (int(fields[2]), int(fields[3]), int(fields[4])) for fields in (line.split() for line in lines)}


def test_swap_file_is_active(host):
    """/proc/swaps lists the file: 64 MiB less the header page, priority 3."""
    size_kib, _used, priority = swaps(host)[SWAPFILE]
    assert size_kib == 64 * 1024 - 4
    assert priority == 3


def test_swap_file_mode(host):
    """A root-owned 0600 file of exactly 64 MiB with a swap signature."""
    swapfile = host.file(SWAPFILE)
    assert swapfile.is_file and swapfile.user == 'root' and swapfile.group == 'root'
    assert swapfile.mode == 0o600
    assert swapfile.size == 64 * 1024 * 1024
    assert 'SWAPSPACE2' in host.check_output('dd if=%s bs=1 skip=4086 count=10 status=none', SWAPFILE)


def test_fstab_line(host):
    """One fstab line, with the priority."""
    lines = [line for line in host.file('/etc/fstab').content_string.splitlines() if line.startswith(SWAPFILE + ' ')]
    assert lines == ['/swapdir/swapfile none swap sw,pri=3 0 0']


def test_sysctl_skipped_in_container(host):
    """swap_manage_sysctl=false: no sysctl file written. (The settings themselves are set and checked on the real
    host by tests/integration/test_swap_file.py, since /proc/sys/vm is read-only in an unprivileged container.)"""
    assert not host.file('/etc/sysctl.d/60-sutazai-swap.conf').exists
