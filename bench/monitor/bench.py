"""Benchmark: the sutazai-monitor daemon beside 30 running containers, and one cycle against a `docker stats` cycle.

1. Starts N (30) containers named sutazai-mon-bench-NN (the HTTP stand-in, tier 2 or 3, 64 MiB limit,
   an HTTP health URL label each).
2. Runs the daemon as a real process (module_utils/_monitor.main) scoped to them (guard every 1 s,
   health every 2 s with 30 HTTP probes, engine events) for --duration seconds (30) and samples its
   RSS (VmRSS, and the peak VmHWM) and its CPU time from /proc: goals <= 40 MB RSS, <= 2 % of a core.
3. Times one cycle both ways, --cycles times each, in this process, and counts the CPU it costs
   here AND in dockerd (the engine does most of `docker stats`' work):
   - monitor: one guard pass (cgroupfs and /proc reads; the container list comes from the engine only
     after one of its events, shown as a row of its own), one health pass (30 HTTP probes), and both,
     i.e. the daemon's `Monitor.cycle()` with both duties due;
   - docker stats: the seed's way, `docker ps` + `docker stats --no-stream` for the same containers.
   Goal: the monitor's cycle >= 20x cheaper.
Also measures how long a container killed with kill -9 takes to be back (goal <= 5 s).

Run: .venv/bin/python bench/monitor/bench.py [--containers 30] [--duration 30] [--cycles 20] [--prefix NAME-]
     [--restart-policy no|unless-stopped]
(--prefix names the containers, so that two runs on one engine leave each other's alone; with
--restart-policy unless-stopped, as the stack role sets it, Docker restarts the killed container itself and
the daemon counts that restart.)
(root, the test bed's Docker engine and the image sutazai-testbed/http). Removes its containers at the end.
"""

import argparse
import io
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import docker

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(ROOT, '.collections'))

# pylint: disable=wrong-import-position
from ansible_collections.sutazai.ops.plugins.module_utils import _monitor as mon  # noqa: E402

PREFIX = 'sutazai-mon-bench-'
RESTART_POLICY = 'no'
IMAGE = 'sutazai-testbed/http'
TICKS = os.sysconf('SC_CLK_TCK')
DAEMON = 'import sys\nfrom ansible_collections.sutazai.ops.plugins.module_utils._monitor import main\nsys.exit(main(sys.argv[1:]))\n'


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open('/proc/%d/stat' % pid, encoding='ascii') as handle:
        fields = handle.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(TICKS)


def rss(pid):
    """(VmRSS, VmHWM) of a process in bytes."""
    values = {}
    with open('/proc/%d/status' % pid, encoding='ascii') as handle:
        for line in handle:
            key, _sep, rest = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                values[key] = int(rest.split()[0]) * 1024
    return values['VmRSS'], values['VmHWM']


def dockerd_pid():
    """The dockerd of this mount namespace (not one inside a docker-in-docker host)."""
    own = os.readlink('/proc/self/ns/mnt')
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/comm' % entry, encoding='ascii') as handle:
                if handle.read().strip() != 'dockerd':
                    continue
            if os.readlink('/proc/%s/ns/mnt' % entry) == own:
                return int(entry)
        except OSError:
            continue
    return None


def start_containers(client, count):
    made = []
    for number in range(count):
        made.append(client.containers.run(
            IMAGE, name='%s%02d' % (PREFIX, number), detach=True, mem_limit='64m', restart_policy={'Name': RESTART_POLICY},
            labels={'sutazai.tier': str(2 + number % 2), 'sutazai.service': 'bench', 'sutazai.health_url': 'http://{ip}:8080/health'}))
    return made


def wait_healthy(client, count, timeout=120):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    pending = {c.name for c in client.containers.list(filters={'name': PREFIX})}
    while pending and time.monotonic() < deadline:
        for container in client.containers.list(filters={'name': PREFIX}):
            if container.name not in pending:
                continue
            address = container.attrs['NetworkSettings']['IPAddress']
            try:
                with opener.open('http://%s:8080/health' % address, timeout=1) as response:
                    if response.status == 200:
                        pending.discard(container.name)
            except OSError:
                pass
        time.sleep(0.5)
    return count - len(pending)


def daemon_figures(state_dir, duration):
    """Run the daemon for `duration` s; its RSS (mean, peak), CPU % of one core, and kill -9 recovery time."""
    args = [sys.executable, '-c', DAEMON]
    settings = {'name_prefix': PREFIX, 'listen_port': 0, 'ollama_host': '', 'guard_soft': 97, 'guard_hard': 98,
                'guard_state_file': os.path.join(state_dir, 'guard.json'), 'restart_state_file': os.path.join(state_dir, 'restarts.json')}
    for key, value in settings.items():
        args += ['--set', '%s=%s' % (key, value)]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.collections'))
    log_path = os.path.join(state_dir, 'daemon.log')
    with open(log_path, 'w', encoding='utf-8') as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)  # pylint: disable=consider-using-with
    try:
        time.sleep(3)  # imports, first cycles
        samples = []
        cpu_start, wall_start = cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - wall_start < duration:
            samples.append(rss(proc.pid)[0])
            time.sleep(1)
        cpu = cpu_seconds(proc.pid) - cpu_start
        wall = time.monotonic() - wall_start
        peak = rss(proc.pid)[1]
        client = docker.from_env()
        victim = client.containers.get(PREFIX + '00')
        started_at = victim.attrs['State']['StartedAt']
        os.kill(victim.attrs['State']['Pid'], signal.SIGKILL)
        killed = time.monotonic()
        back = None
        while time.monotonic() - killed < 30:
            victim.reload()
            if victim.status == 'running' and victim.attrs['State']['StartedAt'] != started_at:
                back = time.monotonic() - killed
                break
            time.sleep(0.05)
        time.sleep(2)  # the daemon records the restart (its own, or Docker's that it counts)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    with open(log_path, encoding='utf-8') as log:
        text = log.read()
    restarts = [json.loads(line) for line in text.splitlines() if line.startswith('{') and '"restarted"' in line]
    counted = ['%s (%s)' % (line.get('by'), line.get('reason')) for line in restarts if line.get('container') == PREFIX + '00']
    return {'rss_mean': statistics.mean(samples), 'rss_max': max(samples), 'rss_peak_hwm': peak, 'cpu_percent': 100.0 * cpu / wall,
            'wall': wall, 'back_after_kill': back, 'tracebacks': text.count('Traceback'), 'exit_code': proc.returncode,
            'counted': counted}


def measure(function, dockerd, repeat):
    """Median wall seconds of `function` and its CPU seconds per run (this process + its children + dockerd),
    totalled over `repeat` runs back to back (the kernel counts dockerd's CPU in 10 ms ticks)."""
    walls = []
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    engine = cpu_seconds(dockerd) if dockerd else 0.0
    for _run in range(repeat):
        start = time.monotonic()
        function()
        walls.append(time.monotonic() - start)
    own2 = resource.getrusage(resource.RUSAGE_SELF)
    children2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (own2.ru_utime + own2.ru_stime - own.ru_utime - own.ru_stime
             + children2.ru_utime + children2.ru_stime - children.ru_utime - children.ru_stime)
    if dockerd:
        spent += cpu_seconds(dockerd) - engine
    return statistics.median(walls), spent / repeat


def cycle_figures(state_dir, repeat):
    config = mon.build_config({'name_prefix': PREFIX, 'listen_port': 0, 'ollama_host': '', 'guard_soft': 97, 'guard_hard': 98,
                               'guard_state_file': os.path.join(state_dir, 'cycle-guard.json'),
                               'restart_state_file': os.path.join(state_dir, 'cycle-restarts.json')})
    monitor = mon.Monitor(config, out=io.StringIO())
    monitor.cycle()  # connect, first list
    monitor.pump = mon.EventPump(monitor, monitor.events, int(time.time() * 1e9), monitor.stop_event)
    monitor.pump.start()  # as in the daemon: the container list is asked again only after an engine event
    time.sleep(1)
    monitor.cycle()

    def guard_pass():
        monitor._next_guard, monitor._next_health = 0.0, float('inf')  # pylint: disable=protected-access
        monitor.cycle()

    def guard_pass_listing():
        monitor._list_dirty = True  # pylint: disable=protected-access
        guard_pass()

    def health_pass():
        monitor._next_guard, monitor._next_health = float('inf'), 0.0  # pylint: disable=protected-access
        monitor.cycle()

    def full_cycle():
        monitor._next_guard = monitor._next_health = 0.0  # pylint: disable=protected-access
        monitor.cycle()

    def stats_cycle():
        names = subprocess.run(['docker', 'ps', '--filter', 'name=' + PREFIX, '--format', '{{.Names}}'],
                               capture_output=True, text=True, check=True).stdout.split()
        subprocess.run(['docker', 'stats', '--no-stream', '--format', '{{.Name}} {{.MemUsage}} {{.MemPerc}} {{.CPUPerc}}'] + names,
                       capture_output=True, text=True, check=True)

    dockerd = dockerd_pid()
    figures = {'guard': measure(guard_pass, dockerd, repeat), 'guard_list': measure(guard_pass_listing, dockerd, repeat),
               'health': measure(health_pass, dockerd, repeat), 'full': measure(full_cycle, dockerd, repeat),
               'stats': measure(stats_cycle, dockerd, repeat)}
    monitor.shutdown()
    return figures, dockerd is not None


def main():
    global PREFIX, RESTART_POLICY  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--containers', type=int, default=30)
    parser.add_argument('--duration', type=float, default=30.0)
    parser.add_argument('--cycles', type=int, default=20)
    parser.add_argument('--prefix', default=PREFIX, help='name prefix of the benchmark containers')
    parser.add_argument('--restart-policy', default=RESTART_POLICY, choices=('no', 'unless-stopped'),
                        help="the containers' Docker restart policy")
    args = parser.parse_args()
    PREFIX, RESTART_POLICY = args.prefix, args.restart_policy
    client = docker.from_env(timeout=120)
    state_dir = tempfile.mkdtemp(prefix='sutazai-mon-bench-')
    try:
        start_containers(client, args.containers)
        ready = wait_healthy(client, args.containers)
        print('containers running and healthy: %d of %d' % (ready, args.containers))
        daemon = daemon_figures(state_dir, args.duration)
        cycles, with_engine = cycle_figures(state_dir, args.cycles)
    finally:
        for container in client.containers.list(all=True, filters={'name': PREFIX}):
            container.remove(force=True)
        shutil.rmtree(state_dir, ignore_errors=True)
    mib = 1024.0 * 1024.0
    print('\nDaemon over %.0f s beside %d containers (restart policy %s; guard every 1 s, health every 2 s):'
          % (daemon['wall'], args.containers, RESTART_POLICY))
    print('  RSS mean %.1f MiB, max %.1f MiB, peak (VmHWM) %.1f MiB   goal <= 40 MB (38.1 MiB): %s'
          % (daemon['rss_mean'] / mib, daemon['rss_max'] / mib, daemon['rss_peak_hwm'] / mib,
             'met' if daemon['rss_peak_hwm'] <= 40e6 else 'NOT met'))
    print('  CPU %.2f %% of one core                                goal <= 2 %%: %s'
          % (daemon['cpu_percent'], 'met' if daemon['cpu_percent'] <= 2 else 'NOT met'))
    back = daemon['back_after_kill']
    print('  container killed with kill -9 running again after %s    goal <= 5 s: %s'
          % ('%.2f s' % back if back is not None else 'never', 'met' if back is not None and back <= 5 else 'NOT met'))
    print('  restarts of it the daemon recorded: %s' % (', '.join(daemon['counted']) or 'none'))
    print('  tracebacks in its log: %d, exit code on SIGTERM: %s' % (daemon['tracebacks'], daemon['exit_code']))
    where = 'this process + children + dockerd' if with_engine else 'this process + children (dockerd not found)'
    stats = cycles['stats']
    print('\nOne cycle, %d runs each (wall: median; CPU per run: %s):' % (args.cycles, where))
    print('  %-52s %9s %9s %14s' % ('', 'wall s', 'CPU s', 'docker stats/x'))
    rows = (('guard pass (memory of %d containers, host, PSI)' % args.containers, 'guard'),
            ('guard pass + a container list (after an event)', 'guard_list'),
            ('health pass (%d HTTP probes)' % args.containers, 'health'),
            ('full monitor cycle (guard + health)', 'full'),
            ('seed: docker ps + docker stats --no-stream', 'stats'))
    for title, key in rows:
        wall, cpu = cycles[key]
        print('  %-52s %9.4f %9.4f %6.1fx %6.1fx' % (title, wall, cpu, stats[0] / wall, stats[1] / max(cpu, 1e-6)))
    guard = cycles['guard']
    print('  goal >= 20x cheaper (the guard pass, which replaces docker stats; wall and CPU): %s'
          % ('met' if min(stats[0] / guard[0], stats[1] / max(guard[1], 1e-6)) >= 20 else 'NOT met'))


if __name__ == '__main__':
    main()
