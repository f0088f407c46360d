"""The cgroup v2 lane: a QEMU guest with its own Debian kernel (unified cgroup hierarchy, systemd as PID 1,
Docker with the systemd cgroup driver), driven over ssh by Ansible with the collection from this checkout.

The guest is built by testbed/vm/build.sh (cached) and booted by testbed/vm/vm.sh on a throw-away overlay.
`make vm` (testbed/vm/lane.sh) boots it once for the lane and passes its run directory in SUTAZAI_VM_RUN;
run directly, pytest boots its own guest here and stops it, removing the overlay, when the session ends.
"""

import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
VM_SH = os.path.join(ROOT, 'testbed', 'vm', 'vm.sh')
_VENV_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
ANSIBLE_PLAYBOOK = _VENV_PLAYBOOK if os.path.exists(_VENV_PLAYBOOK) else 'ansible-playbook'
# the image build.sh imported into the guest's Docker: the guest's own python3, nothing else
PYTHON_IMAGE = 'sutazai-vm/python:1'
# where the test payloads (the Ollama emulator, the memory holder) go in the guest
PAYLOAD_DIR = '/opt/sutazai-vm/payload'
HOST = 'sutazai-vm'


def _payload(name):
    """A test payload of the checkout by file name, wherever the images directory lives now."""
    found = sorted(glob.glob(os.path.join(ROOT, '*', 'images', '*', name)) + glob.glob(os.path.join(ROOT, 'images', '*', name)))
    if not found:
        found = [path for path in glob.glob(os.path.join(ROOT, '**', name), recursive=True)
                 if '/.venv/' not in path and '/.collections/' not in path and '/tests/output/' not in path]
    if not found:
        raise FileNotFoundError('no %s in the checkout' % name)
    return found[0]


class Guest:
    """One running guest: ssh commands, file reads, and Ansible runs of sutazai.ops modules on it."""

    payload_dir = PAYLOAD_DIR
    python_image = PYTHON_IMAGE

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.ssh_config = os.path.join(run_dir, 'ssh_config')
        self.inventory = os.path.join(run_dir, 'inventory.yml')

    def sh(self, command, check=True, timeout=300):
        """Run a shell command in the guest as root; its stdout (stripped)."""
        proc = subprocess.run(['ssh', '-F', self.ssh_config, HOST, command], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError('in the guest, %r failed (rc %s): %s %s' % (command, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
        return proc.stdout.strip()

    def read(self, path):
        """A file of the guest as text (cgroup files are read by the guest's kernel at that moment)."""
        return self.sh('cat ' + shlex.quote(path))

    def read_int(self, path):
        return int(self.read(path))

    def read_keyed(self, path):
        """A flat-keyed file (memory.stat, memory.events) as {key: int}."""
        return {key: int(value) for key, value in (line.split() for line in self.read(path).splitlines() if line.strip())}

    def put(self, local, remote):
        self.sh('mkdir -p ' + shlex.quote(os.path.dirname(remote)))
        subprocess.run(['scp', '-q', '-F', self.ssh_config, local, '%s:%s' % (HOST, remote)], check=True, timeout=120)

    def get_tree(self, remote_dir, local_dir, names):
        """Copy the named files of a guest directory (those that exist) into local_dir."""
        os.makedirs(local_dir, exist_ok=True)
        script = ('import json, os, sys\nd, names = sys.argv[1], sys.argv[2:]\nout = {}\n'
                  'for n in names:\n    p = os.path.join(d, n)\n'
                  '    if os.path.isfile(p):\n        out[n] = open(p).read()\nprint(json.dumps(out))')
        text = self.sh('python3 -c %s %s %s' % (shlex.quote(script), shlex.quote(remote_dir), ' '.join(shlex.quote(n) for n in names)))
        files = json.loads(text)
        for name, content in files.items():
            with open(os.path.join(local_dir, name), 'w', encoding='ascii') as handle:
                handle.write(content)
        return files

    def run_play(self, tasks, timeout=600):
        """Run `tasks` in one play on the guest; the json callback's report."""
        play = [{'name': 'vm lane', 'hosts': HOST, 'gather_facts': False, 'tasks': tasks}]
        env = dict(os.environ)
        if os.path.isabs(ANSIBLE_PLAYBOOK):
            env['PATH'] = os.path.dirname(ANSIBLE_PLAYBOOK) + os.pathsep + env.get('PATH', '')
        env.update({
            'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
            'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
            'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_HOST_KEY_CHECKING': 'false',
        })
        with tempfile.NamedTemporaryFile('w', suffix='.yml', prefix='sutazai-vm-', delete=False) as handle:
            yaml.safe_dump(play, handle)
            playbook = handle.name
        try:
            proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', self.inventory, playbook], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        finally:
            os.unlink(playbook)
        try:
            report = json.loads(proc.stdout)
            if not report['plays'][0]['tasks']:
                raise KeyError('no task ran')
            return report
        except (ValueError, KeyError, IndexError) as exc:
            raise AssertionError('ansible-playbook gave no result (rc %s): %s\nstdout: %s\nstderr: %s'
                                 % (proc.returncode, exc, proc.stdout[-3000:], proc.stderr[-3000:])) from exc

    def play(self, tasks, timeout=900):
        """Run several tasks in one play (one ssh session, one start of ansible-playbook); each task's result, in order.

        A task is (module, args) for sutazai.ops.<module> (errors ignored, so a refusal is a result) or a task dict.
        """
        built = []
        for task in tasks:
            if isinstance(task, tuple):
                module, args = task
                fqcn = module if '.' in module else 'sutazai.ops.' + module
                task = {fqcn: args, 'ignore_errors': True}
            built.append(dict(task, name='task %d' % len(built)))
        report = self.run_play(built, timeout)
        results = [item['hosts'][HOST] for item in report['plays'][0]['tasks']]
        if len(results) != len(built):
            raise AssertionError('%d of %d tasks ran: %s' % (len(results), len(built), results[-1:]))
        return results

    def module(self, module, args, check=False, diff=False, timeout=600):
        """Run sutazai.ops.<module> with `args` on the guest; its result dict."""
        fqcn = module if '.' in module else 'sutazai.ops.' + module
        task = {'name': 'module under test', fqcn: args, 'check_mode': check, 'diff': diff, 'register': 'result', 'ignore_errors': True}
        return self.run_play([task], timeout)['plays'][0]['tasks'][0]['hosts'][HOST]

    def container_id(self, name):
        return self.sh('docker inspect -f {{.Id}} ' + shlex.quote(name))

    def wait_for(self, command, timeout=120, what=None):
        """Run `command` in the guest until it succeeds."""
        deadline = time.time() + timeout
        while True:
            proc = subprocess.run(['ssh', '-F', self.ssh_config, HOST, command], capture_output=True, text=True, timeout=60, check=False)
            if proc.returncode == 0:
                return proc.stdout.strip()
            if time.time() > deadline:
                raise AssertionError('in the guest, %s did not happen within %ss: %s' % (what or command, timeout, proc.stderr[-500:]))
            time.sleep(1)


@pytest.fixture(name='guest', scope='session')
def fixture_guest():
    """The running guest, with the test payloads copied in; stopped (overlay removed) at the end if booted here."""
    run_dir = os.environ.get('SUTAZAI_VM_RUN')
    own = not run_dir
    if own:
        if os.geteuid() != 0:
            pytest.skip('the cgroup v2 lane builds and boots a VM: run it as root (make vm)')
        run_dir = tempfile.mkdtemp(prefix='sutazai-vm-run.', dir='/var/tmp')
        os.rmdir(run_dir)
    try:
        if own:
            subprocess.run(['bash', VM_SH, 'start', run_dir], check=True, timeout=1800)
        guest = Guest(run_dir)
        for name in ('ollama_emulator.py', 'memhog_http.py'):
            guest.put(_payload(name), PAYLOAD_DIR + '/' + name)
        assert guest.sh('stat -fc %T /sys/fs/cgroup') == 'cgroup2fs'
        assert guest.sh("docker info --format '{{.CgroupDriver}} {{.CgroupVersion}}'") == 'systemd 2'
        yield guest
    finally:
        if own:
            subprocess.run(['bash', VM_SH, 'stop', run_dir], check=False, timeout=120)
