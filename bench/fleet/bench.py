"""Fleet benchmark: playbooks/stable.yml on 1, 2, 4 (and 8 where memory allows) docker-in-docker hosts, the
wall time of the rollout and of its idempotent rerun side by side, and the emergency figure.

Each fleet size gets fresh hosts (sutazai-testbed/dind, outer --memory 4g each, the local images loaded before
the clock starts). The rollout runs with fleet_serial "100%" (every host at once: the figure is about forks,
pipelining and per-host serialisation, not about the canary batches an operator may ask for) and
ansible_pipelining. Goals: 8 hosts <= 2.5x one host; an idempotent rerun <= 30 s with changed=0 everywhere.
Besides wall times it prints CPU: the controller's (ansible-playbook, its forks, the docker CLI of the connection)
per host, and the hosts' own (their cgroups), because all hosts here share this machine's cores.

Emergency: on one host running the stable stack, a tier 3 container of the stack's project (the guard acts on
that project only) in the stack cgroup holds memory until the
stack cgroup is at >= 90 % pressure (usage less inactive file cache, against the cgroup's limit, read from
cgroupfs every 0.1 s; the monitor is stopped first, its guard would relieve it by itself); then emergency.yml
starts, and the figure is the time from its start until pressure is
below 80 % (goal <= 20 s), with tier 1 never stopped.

    .venv/bin/python bench/fleet/bench.py [--sizes 1,2,4,8] [--skip-emergency]
"""

import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dind_fleet  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = 'sutazai-fl-bench'
HOST_MEMORY = '4g'
GROUP_VARS = {'stack_image_set': 'local', 'stable_swap': False, 'ansible_pipelining': True}
TIER1 = ['postgres', 'redis', 'ollama', 'backend', 'frontend']


def mem_available():
    with open('/proc/meminfo') as handle:
        for line in handle:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    return 0


def rollout(count, log_dir):
    fleet = dind_fleet.Fleet('%s-%d' % (PREFIX, count), [HOST_MEMORY] * count)
    try:
        setup = fleet.start()
        inventory = fleet.inventory(os.path.join(log_dir, 'hosts-%d.json' % count), group_vars=GROUP_VARS)
        extra = {'fleet_serial': '100%'}
        figures = {'hosts': count, 'setup_s': round(setup, 1)}
        for run in ('rollout', 'rerun'):
            hosts_cpu = fleet.cpu_seconds()
            rc, out, took = dind_fleet.playbook('playbooks/stable.yml', inventory, extra, log=os.path.join(log_dir, '%s-%d.log' % (run, count)))
            figures.update({run + '_s': round(took, 1), run + '_rc': rc,
                            run + '_controller_cpu_s': round(dind_fleet.LAST_RUN['controller_cpu_s'], 1),
                            run + '_hosts_cpu_s': round(fleet.cpu_seconds() - hosts_cpu, 1)})
        recap = dind_fleet.recap(out)
        figures.update({'rerun_changed': sum(r.get('changed', 0) for r in recap.values()),
                        'rerun_failed': sum(r.get('failed', 0) for r in recap.values())})
        return figures
    finally:
        fleet.destroy()


def stack_cgroup_dir(host):
    """The stack cgroup of a dind host, as the outer machine sees it (cgroup v1 memory controller)."""
    own = dind_fleet.docker('exec', host, 'sh', '-c', "awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/1/cgroup")
    own = own[:-len('/init.scope')] if own.endswith('/init.scope') else own
    return '/sys/fs/cgroup/memory%s/sutazai' % own


def pressure(cgroup):
    with open(os.path.join(cgroup, 'memory.usage_in_bytes')) as handle:
        usage = int(handle.read())
    with open(os.path.join(cgroup, 'memory.limit_in_bytes')) as handle:
        limit = int(handle.read())
    inactive = 0
    with open(os.path.join(cgroup, 'memory.stat')) as handle:
        for line in handle:
            if line.startswith('total_inactive_file '):
                inactive = int(line.split()[1])
    return 100.0 * max(0, usage - inactive) / limit, usage, limit


def emergency(log_dir):
    fleet = dind_fleet.Fleet(PREFIX + '-em', [HOST_MEMORY])
    host = fleet.hosts[0]
    try:
        fleet.start()
        inventory = fleet.inventory(os.path.join(log_dir, 'hosts-em.json'), group_vars=GROUP_VARS)
        rc = dind_fleet.playbook('playbooks/stable.yml', inventory, log=os.path.join(log_dir, 'em-stable.log'))[0]
        if rc != 0:
            return {'error': 'stable.yml failed before the emergency: see %s/em-stable.log' % log_dir}
        # the monitor's own guard would relieve the pressure by itself within a second: the figure is emergency.yml's
        dind_fleet.docker('exec', host, 'systemctl', 'stop', 'sutazai-monitor.service')
        cgroup = stack_cgroup_dir(host)
        parent = '/' + cgroup[len('/sys/fs/cgroup/memory/'):]
        now, usage, limit = pressure(cgroup)
        hold_mb = int((0.93 * limit - (usage - 0)) / 1048576)
        dind_fleet.inner(host, 'run', '-d', '--name', 'sutazai-fl-hog', '--cgroup-parent', parent, '--label', 'sutazai.tier=3',
                         '--label', 'com.docker.compose.project=sutazai',
                         '-e', 'HOLD_MB=%d' % max(hold_mb, 16), 'sutazai-testbed/http:latest')
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and pressure(cgroup)[0] < 90.0:
            time.sleep(0.2)
        start_pressure = pressure(cgroup)[0]
        tier1_before = dind_fleet.inner(host, 'inspect', '--format', '{{.Id}} {{.State.StartedAt}}', *['sutazai-' + s for s in TIER1])
        samples = []
        stop = threading.Event()

        def sample():
            t0 = time.monotonic()
            while not stop.is_set():
                try:
                    samples.append((time.monotonic() - t0, pressure(cgroup)[0]))
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc, out, took = dind_fleet.playbook('playbooks/emergency.yml', inventory, log=os.path.join(log_dir, 'emergency.log'))
        stop.set()
        sampler.join()
        below = next((t for t, p in samples if p < 80.0), None)
        tier1_after = dind_fleet.inner(host, 'inspect', '--format', '{{.Id}} {{.State.StartedAt}}', *['sutazai-' + s for s in TIER1])
        return {'pressure_at_start': round(start_pressure, 1), 'below_80_after_s': round(below, 1) if below is not None else None,
                'pressure_at_end': round(samples[-1][1], 1) if samples else None, 'playbook_s': round(took, 1), 'playbook_rc': rc,
                'tier1_untouched': tier1_before == tier1_after, 'stack_limit': limit}
    finally:
        fleet.destroy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default=None, help='fleet sizes, default 1,2,4 and 8 where MemAvailable allows; 0: none')
    parser.add_argument('--skip-emergency', action='store_true')
    parser.add_argument('--logs', default='/tmp/sutazai-fl-bench')
    args = parser.parse_args(argv)
    os.makedirs(args.logs, exist_ok=True)
    if args.sizes == '0':
        sizes = []
    elif args.sizes:
        sizes = [int(s) for s in args.sizes.split(',')]
    else:
        sizes = [1, 2, 4] + ([8] if mem_available() > 8 * 1.5 * 1024 ** 3 else [])
    results = []
    for count in sizes:
        row = rollout(count, args.logs)
        results.append(row)
        print(json.dumps(row), flush=True)
    one = next((r for r in results if r['hosts'] == 1), None)
    cores = os.cpu_count() or 1
    # Every fleet host here is a container on this machine, so the hosts' own work (modules, engines, the stacks
    # starting) shares its cores with the controller: "floor" is all CPU used (controller + hosts) over the cores,
    # the shortest wall time this machine allows. A real fleet pays only the controller's share per host.
    columns = ('hosts', 'rollout s', 'x 1', 'rerun s', 'x 1', 'rerun changed', 'ctrl CPU/host', 'hosts CPU', 'floor (rollout)')
    print('\n%6s %10s %8s %9s %8s %16s %14s %12s %16s' % columns)
    for row in results:
        ratio = row['rollout_s'] / one['rollout_s'] if one else float('nan')
        rerun_ratio = row['rerun_s'] / one['rerun_s'] if one else float('nan')
        floor = (row['rollout_controller_cpu_s'] + row['rollout_hosts_cpu_s']) / cores
        note = '' if row['rollout_rc'] == 0 and row['rerun_rc'] == 0 else '  (a run FAILED: see %s)' % args.logs
        print('%6d %10.1f %8.2f %9.1f %8.2f %16d %13.1fs %11.1fs %15.1fs%s' % (
            row['hosts'], row['rollout_s'], ratio, row['rerun_s'], rerun_ratio, row['rerun_changed'],
            row['rollout_controller_cpu_s'] / row['hosts'], row['rollout_hosts_cpu_s'], floor, note))
    if not args.skip_emergency:
        figure = emergency(args.logs)
        print('\nemergency: %s' % json.dumps(figure))
    return 0


if __name__ == '__main__':
    sys.exit(main())
