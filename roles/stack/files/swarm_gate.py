"""The stack role's Swarm checks, run on a swarm manager with the docker CLI.

fit STACK_JSON: do the reservations of the rendered stack (every replica, plus one extra task of the largest
  start-first service during a rolling update) fit the ready, active nodes? Prints a JSON report.
gate STACK SINCE TIMEOUT: wait until every service of STACK runs its replicas at its current spec and no update of
  it started at or after SINCE (engine time, seconds since the epoch) is rolling back, rolled back or paused.
  Prints a JSON report; exits 1 when the gate fails.
"""

import calendar
import json
import re
import subprocess
import sys
import time


def docker(*args):
    proc = subprocess.run(['docker'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError('docker %s: %s' % (' '.join(args[:3]), proc.stderr.strip()))
    return proc.stdout


def inspect(*ids):
    return json.loads(docker('inspect', *ids)) if ids else []


def cpus(text):
    return float(str(text)) if text not in (None, '') else 0.0


_UNITS = {'': 1, 'b': 1, 'k': 1024, 'kb': 1024, 'm': 1024 ** 2, 'mb': 1024 ** 2, 'g': 1024 ** 3, 'gb': 1024 ** 3,
          't': 1024 ** 4, 'tb': 1024 ** 4}


def size(text):
    if text in (None, ''):
        return 0
    match = re.match(r'^\s*([0-9.]+)\s*([a-zA-Z]*)\s*$', str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError('not a size: %r' % (text,))
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def fit(document):
    nodes = []
    for node in inspect(*docker('node', 'ls', '-q').split()):
        if node['Status']['State'] == 'ready' and node['Spec'].get('Availability') == 'active':
            res = node['Description']['Resources']
            nodes.append({'name': node['Description']['Hostname'], 'cpus': res['NanoCPUs'] / 1e9, 'memory': res['MemoryBytes']})
    wanted = []
    surge = {'cpus': 0.0, 'memory': 0}
    for name, service in sorted(document['services'].items()):
        deploy = service.get('deploy') or {}
        reservations = (deploy.get('resources') or {}).get('reservations') or {}
        replicas = int(deploy.get('replicas', 1))
        one = {'cpus': cpus(reservations.get('cpus')), 'memory': size(reservations.get('memory'))}
        wanted.append({'service': name, 'replicas': replicas, 'cpus': one['cpus'], 'memory': one['memory']})
        if (deploy.get('update_config') or {}).get('order') == 'start-first':
            surge['cpus'] = max(surge['cpus'], one['cpus'])
            surge['memory'] = max(surge['memory'], one['memory'])
    total_cpus = sum(w['cpus'] * w['replicas'] for w in wanted) + surge['cpus']
    total_memory = sum(w['memory'] * w['replicas'] for w in wanted) + surge['memory']
    have_cpus = sum(n['cpus'] for n in nodes)
    have_memory = sum(n['memory'] for n in nodes)
    problems = []
    cpu_parts = ', '.join('%s %g x %d' % (w['service'], w['cpus'], w['replicas']) for w in wanted if w['cpus'])
    memory_parts = ', '.join('%s %d x %d' % (w['service'], w['memory'], w['replicas']) for w in wanted if w['memory'])
    if total_cpus > have_cpus + 1e-9:
        problems.append('CPU reservations %g (%s, + %g for the extra task of a start-first update) exceed the %g CPUs '
                        'of the ready nodes' % (total_cpus, cpu_parts, surge['cpus'], have_cpus))
    if total_memory > have_memory:
        problems.append('memory reservations %d bytes (%s, + %d for the extra task of a start-first update) exceed the %d '
                        'bytes of the ready nodes' % (total_memory, memory_parts, surge['memory'], have_memory))
    biggest_cpus = max([n['cpus'] for n in nodes] or [0])
    biggest_memory = max([n['memory'] for n in nodes] or [0])
    for w in wanted:
        if w['cpus'] > biggest_cpus + 1e-9 or w['memory'] > biggest_memory:
            problems.append('%s reserves %g CPUs and %d bytes per task; the largest node has %g CPUs and %d bytes'
                            % (w['service'], w['cpus'], w['memory'], biggest_cpus, biggest_memory))
    return {'ok': not problems, 'problems': problems, 'nodes': nodes, 'wanted': wanted,
            'cpus': {'reserved': total_cpus, 'nodes': have_cpus}, 'memory': {'reserved': total_memory, 'nodes': have_memory}}


def engine_time(text):
    """RFC 3339 with nanoseconds -> seconds since the epoch."""
    match = re.match(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)', text or '')
    return calendar.timegm(time.strptime(match.group(1), '%Y-%m-%dT%H:%M:%S')) if match else 0


def _spec_key(spec):
    """What an update changes in a task's spec (the engine fills defaults into the service's copy only)."""
    container = spec.get('ContainerSpec') or {}
    return (json.dumps(dict((k, container.get(k)) for k in ('Image', 'Env', 'Args', 'Command', 'Labels', 'Mounts', 'User')),
                       sort_keys=True),
            json.dumps(spec.get('Resources') or {}, sort_keys=True))


def read_service(sid, since):
    service = inspect(sid)[0]
    name = service['Spec']['Name']
    mode = service['Spec'].get('Mode', {})
    desired = mode['Replicated'].get('Replicas', 1) if 'Replicated' in mode else None
    status = service.get('UpdateStatus') or {}
    state = status.get('State', '') if engine_time(status.get('StartedAt')) >= since else ''
    tasks = inspect(*docker('service', 'ps', '-q', '--no-trunc', '--filter', 'desired-state=running', sid).split())
    wanted = _spec_key(service['Spec']['TaskTemplate'])
    current = [t for t in tasks if _spec_key(t.get('Spec') or {}) == wanted]
    running = [t for t in current if t['Status']['State'] == 'running']
    errors = sorted({(t['Status'].get('Err') or t['Status'].get('Message') or t['Status']['State'])
                     for t in tasks if t['Status']['State'] != 'running'})
    return {'service': name, 'desired': desired, 'running': len(running), 'update': state,
            'message': status.get('Message', '') if state else '', 'errors': errors}


def gate(stack, since, timeout):
    deadline = time.time() + timeout
    while True:
        ids = docker('stack', 'services', '-q', stack).split()
        states = [read_service(sid, since) for sid in ids]
        bad = []
        for s in states:
            if s['update'] in ('rollback_completed', 'paused', 'rollback_paused'):
                bad.append(s)
            elif s['update'] in ('updating', 'rollback_started') or (s['desired'] is not None and s['running'] != s['desired']):
                bad.append(s)
        final = [s for s in bad if s['update'] in ('rollback_completed', 'paused', 'rollback_paused')]
        if not bad:
            return {'ok': True, 'services': states}
        if final or time.time() > deadline:
            return {'ok': False, 'failed': final or bad, 'services': states, 'timed_out': not final}
        time.sleep(2)


def main():
    if sys.argv[1] == 'fit':
        report = fit(json.loads(sys.argv[2]))
    else:
        report = gate(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    print(json.dumps(report))
    return 0 if report['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
