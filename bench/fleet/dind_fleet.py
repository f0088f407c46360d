"""Docker-in-docker fleet hosts for the fleet tests and the fleet benchmark.

Each host is a sutazai-testbed/dind container (systemd, its own dockerd, a host directory as its
/var/lib/docker, on a network of its own); its outer --memory is its size. The local images the stack
runs are loaded into every host's engine (`docker save | docker exec -i HOST docker load`), once per
image ID. An inventory file lists the hosts with the docker connection; nothing in it declares a size.
"""

import concurrent.futures
import json
import os
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DIND_IMAGE = 'sutazai-testbed/dind:latest'
STACK_IMAGES = ['sutazai-testbed/redis:latest', 'sutazai-testbed/postgres:latest', 'sutazai-testbed/http:latest',
                'sutazai-testbed/ollama:latest']
DIND_RUN_FLAGS = [
    '--cap-add', 'SYS_ADMIN', '--cap-add', 'NET_ADMIN', '--cap-add', 'SYS_PTRACE',
    '--cgroupns', 'host', '--security-opt', 'seccomp=unconfined',
    '--tmpfs', '/run', '--tmpfs', '/run/lock', '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw',
]
_VENV_BIN = os.path.join(ROOT, '.venv', 'bin')


def env():
    """The environment the Makefile gives ansible-playbook."""
    out = dict(os.environ)
    out['PATH'] = _VENV_BIN + os.pathsep + out.get('PATH', '')
    out['PYTHONPATH'] = os.path.join(ROOT, '.collections')
    out['ANSIBLE_CONFIG'] = os.path.join(ROOT, 'ansible.cfg')
    out['ANSIBLE_NOCOLOR'] = '1'
    out['ANSIBLE_FORCE_COLOR'] = '0'
    return out


def docker(*args, check=True, stdin=None, timeout=600):
    """The outer docker CLI; its stdout."""
    proc = subprocess.run(['docker', *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError('docker %s failed (rc %s): %s' % (' '.join(args), proc.returncode, proc.stderr.strip()))
    return proc.stdout.strip()


def inner(host, *args, check=True, timeout=300):
    """docker inside a fleet host (its own engine)."""
    return docker('exec', host, 'docker', *args, check=check, timeout=timeout)


class Fleet:
    """Hosts named <prefix>-<n>, each with its size (outer --memory), their network and data directories."""

    def __init__(self, prefix, sizes):
        self.prefix = prefix
        self.sizes = list(sizes)
        self.hosts = ['%s-%d' % (prefix, i + 1) for i in range(len(self.sizes))]
        self.network = prefix + '-net'
        self.dirs = ['/var/tmp/' + h for h in self.hosts]

    def start(self, images=None):
        """Start every host, wait for its engine, load the images; return seconds taken."""
        start = time.monotonic()
        self.destroy()
        docker('network', 'create', '--label', 'sutazai.test=' + self.prefix, self.network)
        for host, size, path in zip(self.hosts, self.sizes, self.dirs):
            os.makedirs(path, exist_ok=True)
            docker('run', '-d', '--name', host, '--hostname', host, '--network', self.network, *DIND_RUN_FLAGS,
                   '-v', '%s:/var/lib/docker' % path, '--memory', size, '--memory-swap', size,
                   '--label', 'sutazai.test=' + self.prefix, DIND_IMAGE, '/lib/systemd/systemd')
        for host in self.hosts:
            self._wait_engine(host)
        wanted = images if images is not None else STACK_IMAGES
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(self._load, [(h, i) for h in self.hosts for i in wanted]))
        return time.monotonic() - start

    @staticmethod
    def _wait_engine(host):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            probe = subprocess.run(['docker', 'exec', host, 'docker', 'version', '--format', '{{.Server.Version}}'],
                                   capture_output=True, text=True, timeout=60, check=False)
            if probe.returncode == 0 and probe.stdout.strip():
                return
            time.sleep(0.3)
        raise RuntimeError('the engine of %s did not come up' % host)

    @staticmethod
    def _load(pair):
        host, image = pair
        outer_id = docker('image', 'inspect', '--format', '{{.Id}}', image)
        if inner(host, 'image', 'inspect', '--format', '{{.Id}}', image, check=False) == outer_id:
            return
        save = subprocess.Popen(['docker', 'save', image], stdout=subprocess.PIPE)
        load = subprocess.run(['docker', 'exec', '-i', host, 'docker', 'load'], stdin=save.stdout, capture_output=True,
                              timeout=600, check=False)
        save.stdout.close()
        save.wait()
        if load.returncode != 0:
            raise RuntimeError('loading %s into %s failed: %s' % (image, host, load.stderr.decode(errors='replace')))

    def cpu_seconds(self):
        """CPU time used so far by the hosts (each host's cgroup: its systemd, engine and every container in it)."""
        total = 0.0
        for host in self.hosts:
            cid = docker('inspect', '--format', '{{.Id}}', host, check=False)
            for path, scale in (('/sys/fs/cgroup/cpu,cpuacct/docker/%s/cpuacct.usage' % cid, 1e-9),
                                ('/sys/fs/cgroup/cpuacct/docker/%s/cpuacct.usage' % cid, 1e-9),
                                ('/sys/fs/cgroup/system.slice/docker-%s.scope/cpu.stat' % cid, 1e-6),
                                ('/sys/fs/cgroup/docker/%s/cpu.stat' % cid, 1e-6)):
                if os.path.exists(path):
                    with open(path) as handle:
                        text = handle.read()
                    # v1: nanoseconds; v2: the usage_usec line of cpu.stat
                    value = text.split('usage_usec')[1].split()[0] if 'usage_usec' in text else text.strip()
                    total += int(value) * scale
                    break
            else:
                raise RuntimeError('no CPU accounting found for %s (%s)' % (host, cid))
        return total

    def destroy(self):
        """Remove the hosts (their inner engines and containers die with them), their directories and network."""
        for host in self.hosts:
            subprocess.run(['docker', 'rm', '-f', '-v', host], capture_output=True, check=False, timeout=300)
        for path in self.dirs:
            if os.path.isdir(path):
                subprocess.run(['rm', '-rf', '--one-file-system', path], capture_output=True, check=False, timeout=300)
                shutil.rmtree(path, ignore_errors=True)
        subprocess.run(['docker', 'network', 'rm', self.network], capture_output=True, check=False, timeout=60)

    def inventory(self, path, host_vars=None, group_vars=None):
        """Write an inventory of the hosts (docker connection, group sutazai_hosts); return its path."""
        hosts = {}
        for host in self.hosts:
            entry = {'ansible_connection': 'community.docker.docker', 'ansible_python_interpreter': '/usr/bin/python3'}
            entry.update((host_vars or {}).get(host, {}))
            hosts[host] = entry
        data = {'all': {'children': {'sutazai_hosts': {'hosts': hosts, 'vars': dict(group_vars or {})}}}}
        with open(path, 'w') as handle:
            json.dump(data, handle, indent=1)
        return path


# figures of the last playbook() run
LAST_RUN = {}


def playbook(playbook_path, inventory, extra=None, timeout=1800, log=None):
    """Run ansible-playbook; return (rc, output, seconds)."""
    cmd = [os.path.join(_VENV_BIN, 'ansible-playbook'), '-i', inventory, playbook_path]
    if extra:
        cmd += ['-e', json.dumps(extra)]
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT, check=False)
    took = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the controller's share: ansible-playbook, its forks and the docker CLI processes of the connection
    LAST_RUN['controller_cpu_s'] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = proc.stdout + proc.stderr
    if log:
        with open(log, 'w') as handle:
            handle.write(out)
    return proc.returncode, out, took


def recap(output):
    """{host: {ok, changed, unreachable, failed, skipped, rescued, ignored}} from the PLAY RECAP."""
    stats = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith('PLAY RECAP'):
            in_recap = True
            continue
        if in_recap and ':' in line and '=' in line:
            host, rest = line.split(':', 1)
            stats[host.strip()] = dict((k, int(v)) for k, v in (p.split('=') for p in rest.split()))
    return stats


if __name__ == '__main__':
    sys.exit('a library of bench/fleet/bench.py and tests/integration/test_fleet*.py')
