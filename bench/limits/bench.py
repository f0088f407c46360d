"""Benchmark: the same memory + cpus limits on N running containers, sutazai.ops.container_limits vs. the common way today.

    .venv/bin/python bench/limits/bench.py [--count 30] [--memory 256M] [--cpus 0.5] [--prefix bench-limits-]

Both ways start from the same state - N freshly started containers of the local HTTP image
(sutazai-testbed/http) without limits - and end with every container limited to --memory and --cpus:

  (a) one ansible-playbook task running sutazai.ops.container_limits with all N containers
  (b) one ansible-playbook task running community.docker.docker_container in a loop over the N containers
      (state started, the same name, image and labels, plus memory and cpus)

Times are wall clock of the whole ansible-playbook run (controller start-up included in both). The
limits are read back with docker inspect afterwards, and a container counts as recreated when its id
changed. Every container this script made (label sutazai.bench=limits, names bench-limits-*) is removed
at the end, whatever happens.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

import docker
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(ROOT, '.collections'))

# pylint: disable=wrong-import-position
from ansible_collections.sutazai.ops.plugins.module_utils._units import parse_size  # noqa: E402

IMAGE = 'sutazai-testbed/http:latest'
LABEL = 'sutazai.bench'
PREFIX = 'bench-limits-'   # --prefix changes it (and the label's value), so that two runs on one engine do not meet
LABEL_VALUE = 'limits'
BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), PYTHONPATH=os.path.join(ROOT, '.collections'),
           ANSIBLE_STDOUT_CALLBACK='ansible.posix.json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_NOCOLOR='1')


def names(count):
    return [PREFIX + '%02d' % index for index in range(count)]


def remove_all(client):
    """Every container of the benchmark, by label and by name (a recreated one could have lost its label)."""
    found = {c.id: c for c in client.containers.list(all=True, filters={'label': '%s=%s' % (LABEL, LABEL_VALUE)})}
    found.update({c.id: c for c in client.containers.list(all=True, filters={'name': PREFIX})})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: c.remove(force=True), found.values()))


def fresh_fleet(client, count):
    """N running containers without limits; returns {name: id}."""
    remove_all(client)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        started = list(pool.map(lambda name: client.containers.run(IMAGE, name=name, detach=True, labels={LABEL: LABEL_VALUE}), names(count)))
    return dict((c.name, c.id) for c in started)


def playbook(tasks, label):
    """Run one play on localhost; return (seconds, result of its first task)."""
    play = [{'name': label, 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]
    # outside the checkout, so no lint or sanity run that lists the checkout's files picks it up
    with tempfile.NamedTemporaryFile('w', suffix='.yml', prefix='sutazai-bench-limits-', delete=False) as handle:
        yaml.safe_dump(play, handle)
        path = handle.name
    try:
        start = time.monotonic()
        proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), path], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - start
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise SystemExit('%s failed (rc %d):\n%s\n%s' % (label, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    report = json.loads(proc.stdout)
    return elapsed, report['plays'][0]['tasks'][0]['hosts']['localhost']


def way_a(count, memory, cpus):
    containers = [{'name': name, 'memory': memory, 'cpus': cpus} for name in names(count)]
    return playbook([{'name': 'limits in place', 'sutazai.ops.container_limits': {'containers': containers}}], 'container_limits')


def way_b(count, memory, cpus):
    task = {
        'name': 'limits with docker_container',
        'community.docker.docker_container': {'name': '{{ item }}', 'image': IMAGE, 'state': 'started', 'labels': {LABEL: LABEL_VALUE},
                                              'memory': memory, 'cpus': cpus},
        'loop': names(count),
    }
    return playbook([task], 'docker_container loop')


def outcome(client, before, memory, cpus):
    """(recreated, limits in force, running) over the fleet."""
    recreated = in_force = running = 0
    for name, old_id in before.items():
        item = client.api.inspect_container(name)
        host_config = item['HostConfig']
        recreated += item['Id'] != old_id
        running += bool(item['State']['Running'])
        in_force += host_config['Memory'] == parse_size(memory) and host_config['NanoCpus'] == int(round(cpus * 10 ** 9))
    return recreated, in_force, running


def main():
    global PREFIX, LABEL_VALUE  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--count', type=int, default=30)
    parser.add_argument('--memory', default='256M')
    parser.add_argument('--cpus', type=float, default=0.5)
    parser.add_argument('--prefix', default=PREFIX, help='name prefix of the containers (default %(default)s)')
    args = parser.parse_args()
    if args.prefix != PREFIX:
        PREFIX, LABEL_VALUE = args.prefix, args.prefix.rstrip('-')
    client = docker.from_env(timeout=120)
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        raise SystemExit('%s is not built; run `make testbed` first' % IMAGE) from None
    rows = []
    try:
        before = fresh_fleet(client, args.count)
        seconds_a, result_a = way_a(args.count, args.memory, args.cpus)
        assert result_a.get('changed') is True, result_a
        rows.append(('(a) sutazai.ops.container_limits, 1 task', seconds_a) + outcome(client, before, args.memory, args.cpus))
        seconds_again, result_again = way_a(args.count, args.memory, args.cpus)
        assert result_again.get('changed') is False, result_again
        rows.append(('(a) again, nothing to change', seconds_again) + outcome(client, before, args.memory, args.cpus))

        before = fresh_fleet(client, args.count)
        seconds_b, _result_b = way_b(args.count, args.memory, args.cpus)
        rows.append(('(b) community.docker.docker_container loop', seconds_b) + outcome(client, before, args.memory, args.cpus))
    finally:
        remove_all(client)
        client.close()

    count = args.count
    print('memory %s + cpus %s on %d running containers of %s' % (args.memory, args.cpus, count, IMAGE))
    print('%-44s %9s %14s %11s %17s %9s' % ('way', 'seconds', 's/container', 'recreated', 'limits in force', 'running'))
    for label, seconds, recreated, in_force, running in rows:
        print('%-44s %9.2f %14.3f %8d/%-2d %14d/%-2d %6d/%-2d' % (label, seconds, seconds / count, recreated, count, in_force, count, running, count))
    ratio = seconds_b / seconds_a
    recreated_a, recreated_b = rows[0][2], rows[2][2]
    print('ratio (b)/(a): %.1fx; (b) recreated %d of %d containers, (a) %d' % (ratio, recreated_b, count, recreated_a))
    goal = ratio >= 10 and recreated_a == 0
    print('goal (at least 10x faster, none recreated): %s' % ('met' if goal else 'NOT met'))
    return 0 if goal else 1


if __name__ == '__main__':
    sys.exit(main())
