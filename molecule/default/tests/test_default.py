"""testinfra checks of the default scenario: the common role's directories and host marker."""

import yaml

testinfra_hosts = ['all']  # pylint: disable=invalid-name


def test_systemd_is_running(host):
    """The instance booted systemd as PID 1 (the base every scenario relies on)."""
    state = host.run('systemctl is-system-running').stdout.strip()
    assert state in ('running', 'degraded'), state
    assert host.process.get(pid=1).comm == 'systemd'


def test_directories(host):
    """Config, state and log directories exist with their modes."""
    for path, mode in (('/etc/sutazai', 0o755), ('/var/lib/sutazai', 0o750), ('/var/log/sutazai', 0o750)):
        directory = host.file(path)
        assert directory.is_directory, path
        assert directory.user == 'root'
        assert directory.mode == mode, '%s has mode %o' % (path, directory.mode)


def test_host_marker(host):
    """The host marker carries the host's real memory and CPU figures."""
    marker = host.file('/etc/sutazai/host.yml')
    assert marker.mode == 0o644
    data = yaml.safe_load(marker.content_string)
    meminfo = host.file('/proc/meminfo').content_string
    memtotal_kb = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith('MemTotal:')))
    assert abs(data['memory_mb'] - memtotal_kb // 1024) <= 1
    assert data['cpus'] == int(host.run('nproc').stdout.strip())
    assert data['state_dir'] == '/var/lib/sutazai'
