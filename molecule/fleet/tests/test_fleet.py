"""The fleet scenario's checks, after converge and the idempotent rerun.

Every host was sized from its own memory limit (4g or 6g); then two more releases are rolled out with
playbooks/stable.yml against this scenario's inventory:
- release 2 (a changed tier plan) with a backend image that exits on fleet-2: fleet-2 fails the stack role's
  gate, is rolled back to the release it ran and serves it; the rollout goes on (budget: one failed host)
  and updates fleet-3 and fleet-4; the fleet table says so;
- release 3 failing on fleet-1 (the canary) and fleet-2: the second failure spends the budget, the rollout
  stops, and fleet-3 and fleet-4 are not reached: their compose files and containers are as they were.
"""

import hashlib
import json
import os
import re
import subprocess
import tempfile

import pytest
import yaml

ROOT = os.environ.get('MOLECULE_PROJECT_DIRECTORY') or os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
HOSTS = ['sutazai-fl-fleet-%d' % i for i in range(1, 5)]
SIZES = {'sutazai-fl-fleet-1': 4, 'sutazai-fl-fleet-2': 4, 'sutazai-fl-fleet-3': 6, 'sutazai-fl-fleet-4': 6}
STACK_DIR = '/opt/sutazai/stack'
LOCAL_IMAGES = {'postgres': 'sutazai-testbed/postgres:latest', 'redis': 'sutazai-testbed/redis:latest',
                'qdrant': 'sutazai-testbed/http:latest', 'ollama': 'sutazai-testbed/ollama:latest',
                'backend': 'sutazai-testbed/http:latest', 'frontend': 'sutazai-testbed/http:latest',
                'agent': 'sutazai-testbed/http:latest'}
BROKEN = dict(LOCAL_IMAGES, backend='sutazai-fl/broken:1')
ANSI = re.compile(r'\x1b\[[0-9;]*m')
# a host the rollout did not reach has no size read ("?")
TABLE_ROW = re.compile(r'^\s*-?\s*(sutazai-fl-fleet-\d)\s+([0-9.]+ [KMGT]?B|\?)\s+(updated|unchanged|rolled back|failed|refused too small|not reached)\b',
                       re.M)


def sh(*args, check=True):
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=600, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('%s failed: %s' % (' '.join(args), proc.stderr))
    return proc.stdout.strip()


def on(host, *args, check=True):
    return sh('docker', 'exec', host, *args, check=check)


def rollout(broken_hosts, plan, tmp):
    """stable.yml with the scenario's inventory, `plan` as the release, a backend that exits on broken_hosts."""
    extra_inventory = os.path.join(tmp, 'broken.yml')
    hosts = dict((h, {'stack_images': {'local': BROKEN}}) for h in broken_hosts)
    with open(extra_inventory, 'w') as handle:
        yaml.safe_dump({'all': {'children': {'sutazai_hosts': {'hosts': hosts}}}}, handle)
    inventory = os.path.dirname(os.environ['MOLECULE_INVENTORY_FILE'])
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               PYTHONPATH=os.path.join(ROOT, '.collections'))
    env['PATH'] = os.path.join(ROOT, '.venv', 'bin') + os.pathsep + env.get('PATH', '')
    proc = subprocess.run(['ansible-playbook', '-i', inventory, '-i', extra_inventory, os.path.join(ROOT, 'playbooks', 'stable.yml'),
                           '-e', json.dumps({'stack_plan': plan})], capture_output=True, text=True, timeout=3000, env=env,
                          cwd=ROOT, check=False)
    out = ANSI.sub('', proc.stdout + proc.stderr)  # the verifier's environment forces colour
    with open(os.path.join(tempfile.gettempdir(), 'sutazai-fl-fleet-%s.log' % '-'.join(sorted(broken_hosts))), 'w') as handle:
        handle.write(out)
    table = dict((m.group(1), m.group(3)) for m in TABLE_ROW.finditer(out))
    return proc.returncode, out, table


def snapshot(host):
    """The compose file's digest and every container of the project: id, image, start time."""
    compose = hashlib.sha256(on(host, 'cat', STACK_DIR + '/compose.yml').encode()).hexdigest()
    ids = on(host, 'docker', 'ps', '-aq', '--filter', 'label=com.docker.compose.project=sutazai').split()
    containers = sorted(on(host, 'docker', 'inspect', '--format', '{{.Name}} {{.Id}} {{.Image}} {{.State.StartedAt}}', *ids).splitlines())
    return compose, containers


def limits_of(host):
    """Every stack container's memory limit on HOST, by container name."""
    ids = on(host, 'docker', 'ps', '-q', '--filter', 'label=com.docker.compose.project=sutazai').split()
    lines = on(host, 'docker', 'inspect', '--format', '{{.Name}} {{.HostConfig.Memory}}', *ids).splitlines()
    return dict((name.lstrip('/'), int(memory)) for name, memory in (line.split() for line in lines))


def test_every_host_is_planned_for_its_own_size():
    limits = {}
    for host in HOSTS:
        limits[host] = limits_of(host)
        # the host's size is its outer --memory (the dind host sees the outer cgroup tree: --cgroupns=host)
        size = int(sh('docker', 'inspect', '--format', '{{.HostConfig.Memory}}', host))
        assert size == SIZES[host] * 1024 ** 3, host
        assert all(limits[host].values()), limits[host]
        # the plan fits the host: the limits together stay below its size
        assert sum(limits[host].values()) < size, (host, limits[host])
    # hosts of one size got one plan, the larger hosts a larger one
    assert limits['sutazai-fl-fleet-1'] == limits['sutazai-fl-fleet-2']
    assert limits['sutazai-fl-fleet-3'] == limits['sutazai-fl-fleet-4']
    assert sum(limits['sutazai-fl-fleet-3'].values()) > sum(limits['sutazai-fl-fleet-1'].values()), limits


@pytest.fixture(scope='module')
def work():
    with tempfile.TemporaryDirectory(prefix='sutazai-fl-fleet-') as tmp:
        yield tmp


def test_a_failing_host_is_rolled_back_and_the_rollout_goes_on(work):
    before = dict((h, snapshot(h)) for h in HOSTS)
    backend_limit = on('sutazai-fl-fleet-2', 'docker', 'inspect', '--format', '{{.HostConfig.Memory}}', 'sutazai-backend')
    good_backend = json.loads(on('sutazai-fl-fleet-2', 'cat', STACK_DIR + '/good/images.json'))['backend']
    rc, out, table = rollout(['sutazai-fl-fleet-2'], {'reserve': '1792M'}, work)
    assert rc != 0, out[-3000:]
    assert table == {'sutazai-fl-fleet-1': 'updated', 'sutazai-fl-fleet-2': 'rolled back',
                     'sutazai-fl-fleet-3': 'updated', 'sutazai-fl-fleet-4': 'updated'}, out[-5000:]
    assert '1 rolled back' in out
    # fleet-2 serves its previous release: the backend runs the image it ran before, healthy, and the compose file
    # in force is the last good release
    host = 'sutazai-fl-fleet-2'
    assert on(host, 'docker', 'inspect', '--format', '{{.Image}} {{.State.Status}}', 'sutazai-backend') == good_backend + ' running'
    assert on(host, 'curl', '-fsS', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:8000/health') == '200'
    assert on(host, 'docker', 'inspect', '--format', '{{.HostConfig.Memory}}', 'sutazai-backend') == backend_limit
    # the others took release 2 (their compose file changed)
    for other in ('sutazai-fl-fleet-1', 'sutazai-fl-fleet-3', 'sutazai-fl-fleet-4'):
        assert snapshot(other)[0] != before[other][0], other


def test_a_second_failure_stops_the_rollout_and_leaves_later_hosts_as_they_were(work):
    later = ('sutazai-fl-fleet-3', 'sutazai-fl-fleet-4')
    before = dict((h, snapshot(h)) for h in later)
    rc, out, table = rollout(['sutazai-fl-fleet-1', 'sutazai-fl-fleet-2'], {'reserve': '1536M'}, work)
    assert rc != 0
    assert table == {'sutazai-fl-fleet-1': 'rolled back', 'sutazai-fl-fleet-2': 'rolled back',
                     'sutazai-fl-fleet-3': 'not reached', 'sutazai-fl-fleet-4': 'not reached'}, out[-5000:]
    assert 'the rollout stopped: 2 host(s) failed' in out
    for host in later:
        assert snapshot(host) == before[host], host
    # the canary serves its previous release too
    assert on('sutazai-fl-fleet-1', 'curl', '-fsS', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:8000/health') == '200'
