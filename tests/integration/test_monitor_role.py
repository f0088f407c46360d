"""The monitor role on this host: its unit's hardening measured by systemd-analyze, and container mode for real.

- the daemon's files the role installs are exactly the import closure of module_utils/_monitor.py;
- the unit the role templates (rendered by Ansible from the role's own template and defaults) has an
  exposure of at most 3.0 by `systemd-analyze security --offline=true` (systemd 252 takes the threshold
  in tenths: --threshold=30), with and without the kernel log;
- container mode (monitor_mode auto chooses it: this host has no systemd as PID 1): the role builds the
  monitor image FROM the test bed's Debian base, runs the container (tier 0, unless-stopped, host network,
  read-only mounts of the Docker socket, /proc and /sys/fs/cgroup, state on a host directory), /health
  answers on 127.0.0.1 only,
  a second run changes nothing, and monitor_state=absent removes it. The monitor there manages only
  containers named sutazai-mr-role-* (none), so it never touches other containers on this host.
"""

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
ROLE = os.path.join(ROOT, 'roles', 'monitor')
MODULE_UTILS = os.path.join(ROOT, 'plugins', 'module_utils')
PREFIX = 'sutazai-mr-role-'
IMAGE = 'sutazai-mr/monitor'
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def import_closure(module):
    """The collection's module_utils a module_utils file imports, transitively (itself included)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        with open(os.path.join(MODULE_UTILS, name + '.py'), encoding='utf-8') as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('ansible_collections.sutazai.ops.plugins.module_utils'):
                if node.module.endswith('.module_utils'):
                    todo.extend(alias.name for alias in node.names)
                else:
                    todo.append(node.module.rsplit('.', 1)[1])
    return seen


def role_file(*parts):
    with open(os.path.join(ROLE, *parts), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def env():
    return dict(os.environ, PATH=os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''),
                PYTHONPATH=os.path.join(ROOT, '.collections'), ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
                ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, '.collections'), ANSIBLE_NOCOLOR='1',
                ANSIBLE_STDOUT_CALLBACK='default')


def playbook(tmp_path, name, text, extra=None):
    """Run a playbook on localhost; (rc, output, recap counts of the host)."""
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n'
                         % os.path.join(ROOT, '.venv', 'bin', 'python'), encoding='utf-8')
    args = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(inventory), str(path)]
    if extra:
        args += ['-e', json.dumps(extra)]
    result = subprocess.run(args, capture_output=True, text=True, env=env(), cwd=ROOT, check=False, timeout=900)
    output = result.stdout + result.stderr
    recap = re.search(r'localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', output)
    counts = dict(zip(('ok', 'changed', 'unreachable', 'failed'), map(int, recap.groups()))) if recap else {}
    return result.returncode, output, counts


def test_the_role_installs_the_import_closure_of_the_daemon():
    listed = set(role_file('vars', 'main.yml')['monitor_module_utils'])
    assert listed == import_closure('_monitor')


RENDER = """
- name: Render the monitor unit as the role does
  hosts: localhost
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - name: Template the unit
      ansible.builtin.template:
        src: {role}/templates/sutazai-monitor.service.j2
        dest: "{{{{ dest }}}}"
        mode: "0644"
"""


@pytest.mark.parametrize('kernel_log', [True, False], ids=['kernel-log', 'no-kernel-log'])
def test_the_unit_exposure_is_at_most_3(tmp_path, kernel_log):
    if shutil.which('systemd-analyze') is None:
        pytest.fail('systemd-analyze is missing (Debian: systemd)')
    unit = tmp_path / 'sutazai-monitor.service'
    rc, output, _counts = playbook(tmp_path, 'render.yml', RENDER.format(role=ROLE),
                                   {'dest': str(unit), 'monitor_kernel_log': kernel_log})
    assert rc == 0, output
    text = unit.read_text(encoding='utf-8')
    assert re.search(r'(?m)^WatchdogSec=[1-9][0-9]*$', text)
    for line in ('Type=notify', 'Restart=on-failure', 'MemoryMax=128M', 'CPUQuota=25%',
                 'OOMScoreAdjust=-1000', 'ProtectSystem=strict', 'StateDirectory=sutazai', 'NoNewPrivileges=yes'):
        assert line in text.splitlines(), line
    result = subprocess.run(['systemd-analyze', 'security', '--offline=true', '--threshold=30', str(unit)],
                            capture_output=True, text=True, check=False)
    level = re.search(r'Overall exposure level for \S+: (\d+\.\d+)', result.stdout + result.stderr)
    assert level, result.stdout + result.stderr
    assert result.returncode == 0 and float(level.group(1)) <= 3.0, result.stdout
    if not kernel_log:
        assert float(level.group(1)) <= 2.0, result.stdout


def test_systemd_analyze_threshold_catches_a_weak_unit(tmp_path):
    """The check above can fail: a unit without the hardening is rated far above 3.0 and the threshold says so."""
    unit = tmp_path / 'weak.service'
    unit.write_text('[Service]\nType=notify\nExecStart=/usr/bin/python3 -c pass\n', encoding='utf-8')
    result = subprocess.run(['systemd-analyze', 'security', '--offline=true', '--threshold=30', str(unit)],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert float(re.search(r'Overall exposure level for \S+: (\d+\.\d+)', result.stdout).group(1)) > 3.0


CONVERGE = """
- name: The monitor role on this host
  hosts: localhost
  gather_facts: true
  roles:
    - role: sutazai.ops.monitor
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def http_status(url):
    try:
        with OPENER.open(url, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def outside_address():
    """An address of this host that is not loopback (the default route's source), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(('10.255.255.255', 1))
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith('127.') else address


@pytest.fixture(name='client')
def fixture_client():
    docker = pytest.importorskip('docker')
    return docker.from_env()


def test_container_mode_runs_the_daemon_on_loopback(tmp_path, client):  # pylint: disable=too-many-locals
    name = PREFIX + 'monitor'
    port = free_port()
    with open('/proc/1/comm', encoding='ascii') as handle:
        assert handle.read().strip() != 'systemd', 'this test is for a host without systemd as PID 1'
    # auto: no systemd as PID 1 here, so the role must choose container mode
    settings = {'monitor_mode': 'auto', 'monitor_port': port, 'monitor_container_name': name,
                'monitor_image': IMAGE, 'monitor_image_base': 'sutazai-testbed/base:latest',
                'monitor_install_dir': str(tmp_path / 'opt'), 'monitor_state_dir': str(tmp_path / 'state'),
                'monitor_config_file': str(tmp_path / 'etc' / 'monitor.yml'), 'monitor_name_prefix': PREFIX + 'svc-',
                'monitor_stack_cgroup': '', 'monitor_ollama_host': '', 'monitor_guard_soft': 97, 'monitor_guard_hard': 98}
    images_before = {image.id for image in client.images.list(name=IMAGE)}
    try:
        rc, output, counts = playbook(tmp_path, 'converge.yml', CONVERGE, settings)
        assert rc == 0 and counts['failed'] == 0, output
        container = client.containers.get(name)
        attrs = container.attrs
        assert container.status == 'running'
        assert container.labels['sutazai.tier'] == '0'
        assert attrs['HostConfig']['RestartPolicy']['Name'] == 'unless-stopped'
        assert attrs['HostConfig']['NetworkMode'] == 'host'
        assert attrs['HostConfig']['ReadonlyRootfs'] is True
        mounts = {m['Destination']: m for m in attrs['Mounts']}
        for target in ('/var/run/docker.sock', '/host/proc', '/sys/fs/cgroup', '/opt/sutazai-monitor', '/etc/sutazai/monitor.yml'):
            assert mounts[target]['RW'] is False, target
        assert mounts[str(tmp_path / 'state')]['RW'] is True
        assert http_status('http://127.0.0.1:%d/health' % port) == 200
        address = outside_address()
        if address:
            assert http_status('http://%s:%d/health' % (address, port)) == 0, 'the monitor answers on %s' % address
        # the daemon's state directory is the host's and writable from the container
        probe = client.containers.get(name).exec_run(['python3', '-c', 'open(%r, "w").write("x")' % str(tmp_path / 'state' / 'probe')])
        assert probe.exit_code == 0 and (tmp_path / 'state' / 'probe').read_text(encoding='utf-8') == 'x', probe.output

        rc, output, counts = playbook(tmp_path, 'converge.yml', CONVERGE, settings)
        assert rc == 0 and counts['changed'] == 0, 'second run changed something:\n' + output

        rc, output, counts = playbook(tmp_path, 'converge.yml', CONVERGE, dict(settings, monitor_state='absent'))
        assert rc == 0, output
        assert not client.containers.list(all=True, filters={'name': name})
        assert not (tmp_path / 'opt').exists()
    finally:
        subprocess.run(['docker', 'rm', '-f', name], capture_output=True, check=False)
        for image in client.images.list(name=IMAGE):
            if image.id not in images_before:
                client.images.remove(image.id, force=True)
