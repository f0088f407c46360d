"""Benchmark: relief of a memory ramp in the stack cgroup, guard at 1 s vs the seed's 30 s check vs no guard.

Each scenario builds the same stack in a cgroup with a 1 GiB limit (cgroup_parent):
a tier-1 "backend" (HTTP stand-in holding 300 MiB), a tier-1 redis, a tier-3 agent holding
150 MiB and a tier-3 agent that leaks 25 MiB/s. A sampler reads the stack cgroup every 50 ms.
Printed per scenario: seconds from crossing hard (90 %) to relief (back below soft, 80 %),
OOM kills, and which containers were lost (OOM-killed). The guard is the collection's
engine (plugins/module_utils/_guard.py) looping in this process, as the monitor daemon does.

OOM kills are counted by the collection's OOM-kill detector (plugins/module_utils/_oom.py) over
the stack cgroup: the kernel log, the victims' own cgroup counters and exits with 137 that no
stop or kill explains. Docker's OOMKilled and the stack's own oom_kill counter miss a kill caused
by the stack's limit on cgroup v1; the table shows what Docker's OOMKilled said beside it.

Run: .venv/bin/python bench/guard/bench.py [--quick]   (root, the test bed's Docker engine, cgroup v1)
"""

import argparse
import os
import sys
import threading
import time

import docker

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(ROOT, '.collections'))

# pylint: disable=wrong-import-position
from ansible_collections.sutazai.ops.plugins.module_utils import _guard as guard  # noqa: E402
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_policy as policy  # noqa: E402
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate  # noqa: E402
from ansible_collections.sutazai.ops.plugins.module_utils import _oom  # noqa: E402

STACK = 'sutazai-bench-guard'
V1_DIR = '/sys/fs/cgroup/memory/' + STACK
MIB = 1024 * 1024
LIMIT = 1024 * MIB
LABEL = 'sutazai.bench'
THRESHOLDS = policy.resolve_thresholds('balanced')


def stack_pressure():
    """Stack usage less inactive file cache, in percent of its limit."""
    figures = guard.CgroupReader().read_group(STACK)
    return 100.0 * figures['usage'] / LIMIT if figures else 0.0


def start_stack(client):
    """The four containers of the stack, in the limited cgroup."""
    os.makedirs(V1_DIR, exist_ok=True)
    with open(V1_DIR + '/memory.limit_in_bytes', 'w', encoding='ascii') as handle:
        handle.write(str(LIMIT))
    if os.path.exists(V1_DIR + '/memory.memsw.limit_in_bytes'):
        # memory + swap capped too: swap turned on elsewhere must not change the ramp's outcome
        with open(V1_DIR + '/memory.memsw.limit_in_bytes', 'w', encoding='ascii') as handle:
            handle.write(str(LIMIT))
    common = {'detach': True, 'cgroup_parent': '/' + STACK}
    specs = [('bench-backend', 'sutazai-testbed/http:latest', '1', {'HOLD_MB': '300'}),
             ('bench-redis', 'sutazai-testbed/redis:latest', '1', {}),
             ('bench-agent-steady', 'sutazai-testbed/http:latest', '3', {'HOLD_MB': '150'}),
             ('bench-agent-leak', 'sutazai-testbed/http:latest', '3', {'HOLD_MB': '50'})]
    for name, image, tier, env in specs:
        client.containers.run(image, name=name, environment=env, labels={LABEL: '1', 'sutazai.tier': tier}, **common)
    time.sleep(2)


def remove_stack(client):
    """Remove the containers and the cgroup."""
    for container in client.containers.list(all=True, filters={'label': LABEL}):
        container.remove(force=True)
    for _attempt in range(20):
        try:
            os.rmdir(V1_DIR)
            break
        except FileNotFoundError:
            break
        except OSError:
            time.sleep(0.2)


def run_scenario(client, name, interval, state_dir, horizon, psi=False):  # pylint: disable=too-many-locals
    """One run of the ramp; returns the figures of the scenario."""
    remove_stack(client)
    start_stack(client)
    detector = _oom.OomDetector(stack_cgroup=STACK, docker_client=client).baseline()
    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append((time.monotonic(), stack_pressure()))
            stop.wait(0.05)

    guard_actions = []

    def guard_loop():
        readings = guard.Readings(guard.CgroupReader(), stack_cgroup=STACK, docker_client=client)
        engine = guard.Guard(THRESHOLDS, readings, guard.Actions(client, None, stop_timeout=2),
                             gstate.StateStore(os.path.join(state_dir, name.replace(' ', '-') + '.json')))
        trigger = guard.PsiTrigger() if psi else None
        try:
            guard.watch(engine, interval, stop, psi=trigger,
                        on_result=lambda result: guard_actions.extend((time.monotonic(), a) for a in result['actions']))
        finally:
            if trigger:
                trigger.close()

    threads = [threading.Thread(target=sampler, daemon=True)]
    if interval:
        threads.append(threading.Thread(target=guard_loop, daemon=True))
    for thread in threads:
        thread.start()
    time.sleep(1)
    leak = client.containers.get('bench-agent-leak')
    leak.exec_run(['curl', '-sf', '-XPOST', 'http://127.0.0.1:8080/ramp?step_mb=5&interval=0.2&max_mb=2000'])
    started = time.monotonic()
    while time.monotonic() - started < horizon:
        time.sleep(0.2)
        if detector.poll():
            time.sleep(1)
            break
        if guard_actions and samples and samples[-1][1] < THRESHOLDS.soft:
            break
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    crossed = next((t for t, p in samples if p >= THRESHOLDS.hard), None)
    relief = None
    if crossed is not None:
        relief = next((t for t, p in samples if t > crossed and p < THRESHOLDS.soft), None)
    for _settle in range(5):  # exits and kernel lines of a kill at the very end
        detector.poll()
        time.sleep(0.2)
    containers = client.containers.list(all=True, filters={'label': LABEL})
    names = dict((c.id, c.name) for c in containers)
    killed_in = [names.get(k.get('container_id'), k.get('container_id') or 'unknown') for k in detector.kills]
    lost = sorted(set(killed_in))
    stopped = [a['container'] for _when, a in guard_actions if a['action'] == 'stop']
    tier1_lost = [c.name for c in containers if c.name in lost and c.labels.get('sutazai.tier') == '1']
    result = {
        'scenario': name,
        'crossed_hard': crossed is not None,
        'relief_s': None if relief is None or crossed is None else relief - crossed,
        'oom_kills': detector.count(),
        'kills': [{'container': names.get(k.get('container_id'), k.get('container_id')), 'pid': k.get('pid'), 'comm': k.get('comm'),
                   'evidence': sorted(k['evidence'])} for k in detector.kills],
        'docker_oomkilled': sorted(c.name for c in containers if c.attrs['State']['OOMKilled']),
        'kernel_log': detector.sources()['kernel_log'],
        'lost': lost,
        'tier1_lost': tier1_lost,
        'stopped_by_guard': stopped,
        'peak': max(p for _when, p in samples) if samples else 0.0,
    }
    detector.close()
    remove_stack(client)
    return result


def main():
    """Run the three scenarios and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--state-dir', default='/var/tmp/sutazai-bench-guard')
    parser.add_argument('--horizon', type=float, default=60.0, help='seconds to follow each ramp')
    parser.add_argument('--only', help='run one scenario by name')
    args = parser.parse_args()
    if not os.path.isdir('/sys/fs/cgroup/memory'):
        sys.exit('bench/guard needs a cgroup v1 memory hierarchy (the test bed has one)')
    os.makedirs(args.state_dir, exist_ok=True)
    client = docker.from_env()
    scenarios = [('guard 1s', 1.0, False), ('guard 1s + PSI', 1.0, True), ('seed 30s check', 30.0, False), ('no guard', None, False)]
    try:
        guard.PsiTrigger().close()
    except OSError as exc:
        print('PSI triggers unavailable here (%s): the PSI-triggered run is left out' % exc)
        scenarios = [s for s in scenarios if not s[2]]
    if args.only:
        scenarios = [s for s in scenarios if s[0] == args.only]
    results = []
    try:
        for name, interval, psi in scenarios:
            print('running: %s ...' % name, flush=True)
            results.append(run_scenario(client, name, interval, args.state_dir, args.horizon, psi=psi))
    finally:
        remove_stack(client)
    print()
    print('%-16s %12s %8s %9s %-28s %-22s %s' % ('scenario', 'relief (s)', 'peak %', 'OOM kills', 'lost (OOM-killed)',
                                                 'Docker OOMKilled', 'stopped by guard'))
    for res in results:
        relief = '%.2f' % res['relief_s'] if res['relief_s'] is not None else ('never' if res['crossed_hard'] else 'n/a')
        lost = ', '.join(res['lost']) or '-'
        stopped = ', '.join(res['stopped_by_guard']) or '-'
        print('%-16s %12s %8.1f %9s %-28s %-22s %s' % (res['scenario'], relief, res['peak'], res['oom_kills'], lost,
                                                       ', '.join(res['docker_oomkilled']) or '-', stopped))
    print()
    for res in results:
        for kill in res['kills']:
            print('%s: killed %s pid %s (%s), seen by %s'
                  % (res['scenario'], kill['container'], kill['pid'], kill['comm'], ', '.join(kill['evidence'])))
    if results:
        print('OOM kills counted from: kernel log %s; victim cgroup counters; exits with 137 no stop/kill explains'
              % results[0]['kernel_log'])
    print()
    for res in results:
        if res['scenario'] == 'guard 1s':
            ok = (res['relief_s'] is not None and res['relief_s'] <= 2.0 and not res['lost'] and not res['oom_kills']
                  and not res['tier1_lost'])
            print('goal (relief within 2 s, 0 OOM kills, 0 tier-1 losses) with the 1 s guard: %s' % ('met' if ok else 'NOT met'))
            if not ok:
                return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
