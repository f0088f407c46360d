"""Shared fixtures of the integration tests: run sutazai.ops modules and roles for real.

`run_module` runs one module through ansible-playbook on the lab inventory's Docker host (this machine) (the real kernel,
the real Docker engine) and returns its registered result, so a test sees exactly what
a playbook would see: changed, diff, failed, msg and the module's return values.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
# the ansible-playbook of the Python running the tests (the project's .venv), else PATH's
_VENV_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
ANSIBLE_PLAYBOOK = _VENV_PLAYBOOK if os.path.exists(_VENV_PLAYBOOK) else 'ansible-playbook'


def run_play(tasks, extra_env=None, timeout=600):
    """Run `tasks` in one play on the lab inventory's Docker host (this machine); return the json callback's report."""
    play = [{'name': 'integration', 'hosts': 'lab-docker-host', 'gather_facts': False, 'tasks': tasks}]
    env = dict(os.environ)
    env['PATH'] = os.path.dirname(ANSIBLE_PLAYBOOK) + os.pathsep + env.get('PATH', '') if os.path.isabs(ANSIBLE_PLAYBOOK) else env.get('PATH', '')
    env.update({
        'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
        'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
        'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
        'ANSIBLE_NOCOLOR': '1',
    })
    env.update(extra_env or {})
    with tempfile.NamedTemporaryFile('w', suffix='.yml', prefix='sutazai-it-', delete=False) as handle:
        yaml.safe_dump(play, handle)
        playbook = handle.name
    try:
        proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', os.path.join(ROOT, 'inventories', 'lab', 'hosts.yml'), playbook],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
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


def run_module(module, args, check=False, diff=False, extra_env=None, timeout=600):
    """Run `module` (a short name means sutazai.ops.<name>) with `args`; return its result dict."""
    fqcn = module if '.' in module else 'sutazai.ops.' + module
    task = {'name': 'module under test', fqcn: args, 'check_mode': check, 'diff': diff, 'register': 'result', 'ignore_errors': True}
    return run_play([task], extra_env, timeout)['plays'][0]['tasks'][0]['hosts']['lab-docker-host']


def run_role(role, role_vars, timeout=600):
    """Run role `role` (a short name means sutazai.ops.<name>) with `role_vars`; return the host's play stats
    (ok, changed, failures, ...) and the failed tasks' messages as `failed_tasks`."""
    fqcn = role if '.' in role else 'sutazai.ops.' + role
    task = {'name': 'role under test', 'ansible.builtin.include_role': {'name': fqcn}, 'vars': role_vars}
    report = run_play([task], timeout=timeout)
    stats = dict(report['stats']['lab-docker-host'])
    stats['failed_tasks'] = [(t['task']['name'], t['hosts']['lab-docker-host'].get('msg'))
                             for play in report['plays'] for t in play['tasks']
                             if t['hosts'].get('lab-docker-host', {}).get('failed')]
    return stats


@pytest.fixture(name='module_runner')
def fixture_module_runner():
    """The run_module function, as a fixture."""
    return run_module


@pytest.fixture(name='role_runner')
def fixture_role_runner():
    """The run_role function, as a fixture."""
    return run_role
