"""playbooks/stable.yml, emergency.yml and dev.yml: syntax with every inventory, and real runs on a
docker-in-docker host (testbed/images/dind: systemd, its own Docker engine; --memory is its size).

- every playbook passes --syntax-check with inventories/local, lab and example-fleet; ansible-inventory --graph
  accepts example-fleet;
- a host smaller than the tier plan's floor is refused before anything changes, the message naming its size (its
  container memory limit, found on the host) and what it needs;
- dev.yml deploys the dev profile (every service port published on loopback) with no host-level change: no swap
  file, no sysctl file, no systemd unit, no monitor;
- emergency.yml on the host running the stable profile stops tier 2 and keeps every tier 1 container running (same
  container, never restarted), leaves another project's tier 3 container on the same engine running, and reports
  before and after.
"""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'bench', 'fleet'))
import dind_fleet  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = ['stable', 'emergency', 'dev']
INVENTORIES = ['local', 'lab', 'example-fleet']
TIER1 = ['postgres', 'redis', 'ollama', 'backend', 'frontend']


def ansible(*args):
    proc = subprocess.run(list(args), cwd=ROOT, env=dind_fleet.env(), capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize('inventory', INVENTORIES)
@pytest.mark.parametrize('playbook', PLAYBOOKS)
def test_syntax(playbook, inventory):
    rc, out = ansible(os.path.join(dind_fleet._VENV_BIN, 'ansible-playbook'), '-i', os.path.join('inventories', inventory),
                      '--syntax-check', os.path.join('playbooks', playbook + '.yml'))
    assert rc == 0, out


def test_example_fleet_graph():
    rc, out = ansible(os.path.join(dind_fleet._VENV_BIN, 'ansible-inventory'), '-i', 'inventories/example-fleet', '--graph')
    assert rc == 0, out
    for group in ('@sutazai_hosts', '@dc1_large', '@dc1_medium', '@edge'):
        assert group in out
    rc, out = ansible(os.path.join(dind_fleet._VENV_BIN, 'ansible-inventory'), '-i', 'inventories/example-fleet', '--host', 'llm-edge-03')
    host = json.loads(out)
    assert host['stack_image_set'] == 'upstream'
    assert 'ProxyJump' in host['ansible_ssh_common_args']
    assert not any(key in host for key in ('stack_host_memory', 'fleet_size'))  # sizes are read on the hosts


@pytest.fixture(scope='module')
def small_host(tmp_path_factory):
    fleet = dind_fleet.Fleet('sutazai-fl-pb-small', ['3g'])
    try:
        fleet.start(images=[])
        yield fleet, fleet.inventory(str(tmp_path_factory.mktemp('small') / 'hosts.json'),
                                     group_vars={'stack_image_set': 'local', 'stable_swap': False, 'ansible_pipelining': True})
    finally:
        fleet.destroy()


def test_too_small_host_is_refused_before_anything_changes(small_host):
    fleet, inventory = small_host
    rc, out = dind_fleet.playbook('playbooks/stable.yml', inventory)[:2]
    assert rc == 2, out[-3000:]
    assert 'host memory 3G is too small for the tier 1 minimums: it needs' in out
    assert 'refused too small' in out
    host = fleet.hosts[0]
    assert dind_fleet.docker('exec', host, 'sh', '-c', 'ls /opt/sutazai 2>/dev/null | wc -l') == '0'
    assert dind_fleet.inner(host, 'ps', '-aq') == ''


@pytest.fixture(scope='module')
def dev_host(tmp_path_factory):
    fleet = dind_fleet.Fleet('sutazai-fl-pb-dev', ['4g'])
    try:
        fleet.start()
        yield fleet, fleet.inventory(str(tmp_path_factory.mktemp('dev') / 'hosts.json'),
                                     group_vars={'stack_image_set': 'local', 'ansible_pipelining': True})
    finally:
        fleet.destroy()


def tier1_containers(host):
    out = dind_fleet.inner(host, 'inspect', '--format', '{{.Name}} {{.Id}} {{.State.StartedAt}} {{.State.Status}}',
                           *['sutazai-' + s for s in TIER1])
    return sorted(out.splitlines())


def test_dev_has_no_host_level_change(dev_host):
    fleet, inventory = dev_host
    host = fleet.hosts[0]
    rc, out = dind_fleet.playbook('playbooks/dev.yml', inventory)[:2]
    assert rc == 0, out[-4000:]
    assert 'dev profile' in out
    listing = dind_fleet.docker('exec', host, 'sh', '-c',
                                'ls /etc/sysctl.d /etc/systemd/system; cat /proc/swaps; test -e /swapfile && echo SWAPFILE; true')
    assert '60-sutazai-swap.conf' not in listing
    assert 'sutazai-cgroup' not in listing and 'sutazai.slice' not in listing and 'sutazai-monitor' not in listing
    assert 'SWAPFILE' not in listing
    ports = dind_fleet.inner(host, 'ps', '--format', '{{.Names}} {{.Ports}}', '--filter', 'label=com.docker.compose.project=sutazai')
    published = [line for line in ports.splitlines() if '127.0.0.1:' in line]
    assert len(published) == 6, ports  # dev: every service, qdrant, postgres and redis too, on loopback


def test_emergency_keeps_tier1_and_stops_the_rest(dev_host):
    fleet, inventory = dev_host
    host = fleet.hosts[0]
    rc, out = dind_fleet.playbook('playbooks/stable.yml', inventory)[:2]  # the host in production, then going down
    assert rc == 0, out[-4000:]
    before = tier1_containers(host)
    # another project's tier 3 container on the same engine: emergency.yml's guard acts on the stack's project only
    dind_fleet.inner(host, 'run', '-d', '--name', 'other-agent', '--label', 'com.docker.compose.project=other',
                     '--label', 'sutazai.tier=3', 'sutazai-testbed/http:latest')
    # a tier 3 container of the stack's project that is no service of its compose file (started by hand): the guard
    # stops it, and the stack role's health gate does not judge it (before, its exit failed the emergency profile
    # and rolled the host back to the stable release)
    dind_fleet.inner(host, 'run', '-d', '--name', 'sutazai-extra-agent', '--label', 'com.docker.compose.project=sutazai',
                     '--label', 'sutazai.tier=3', 'sutazai-testbed/http:latest')
    rc, out, took = dind_fleet.playbook('playbooks/emergency.yml', inventory)
    assert rc == 0, out[-4000:]
    assert tier1_containers(host) == before
    running = dind_fleet.inner(host, 'ps', '--format', '{{.Names}}', '--filter', 'label=com.docker.compose.project=sutazai').split()
    assert sorted(running) == sorted('sutazai-' + s for s in TIER1)
    stopped = re.search(r'containers stopped: ([^\n\'"]*)', out)
    assert stopped and {'sutazai-qdrant', 'sutazai-extra-agent'} <= set(re.split(r'[,\s]+', stopped.group(1))), out[-4000:]
    assert 'swap: none (not added: the host is a container)' in out
    assert 'pressure' in out and 'after the guard' in out

    def other_runs():
        return dind_fleet.inner(host, 'inspect', '--format', '{{.State.Running}}', 'other-agent') == 'true'
    assert other_runs(), 'emergency.yml stopped another project\'s container'
    # the check sees a stop: emergency.yml aimed at that project stops it (the stack's own profile is unchanged)
    rc, out = dind_fleet.playbook('playbooks/emergency.yml', inventory, extra={'fleet_project': 'other', 'emergency_stack': False})[:2]
    assert rc == 0, out[-4000:]
    assert 'containers stopped: other-agent' in out and not other_runs()
