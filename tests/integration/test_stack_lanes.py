"""The stack role on this host's Docker engine: the lanes around the stable deploy of test_stack.py.

Compose project, stack directory and cgroups carry the prefix sutazai-sc; each test takes down what it made in a
finally, even when it fails.
- check mode validates the rendered candidate with `docker compose config -q` beside the project and creates nothing;
- `stack_state: absent` removes a nested stack cgroup (parent/name) under every controller;
- a redis password, generated once, root-only, handed to redis and the services that need it, never in the compose
  file nor in the container's command; the verification reads redis's settings with it;
- models through the Ollama emulator once Ollama is healthy: pulled, loaded, a variant created; a second run changes
  nothing.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
_VENV_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
ANSIBLE_PLAYBOOK = _VENV_PLAYBOOK if os.path.exists(_VENV_PLAYBOOK) else 'ansible-playbook'
HOST = 'lab-docker-host'
PREFIX = 'sutazai-sc'
STACK_DIR = '/tmp/sutazai-sc-stack'
OFFSET = 23000
BASE_VARS = {
    'stack_project': PREFIX,
    'stack_dir': STACK_DIR,
    'stack_image_set': 'local',
    'stack_cgroup_name': PREFIX,
    'stack_port_offset': OFFSET,
    'stack_health_timeout': 120,
    'stack_agents': [],
}

pytestmark = pytest.mark.skipif(subprocess.run(['docker', 'info'], capture_output=True, check=False).returncode != 0,
                                reason='needs the Docker engine')


def run_role(extra=None, check=False, timeout=900):
    """Run the stack role once; return (stats, {task name: [results]}, [(task, msg) of failures])."""
    role_vars = dict(BASE_VARS)
    role_vars.update(extra or {})
    play = [{'name': 'stack', 'hosts': HOST, 'gather_facts': False,
             'roles': [{'role': 'sutazai.ops.stack', 'vars': role_vars}]}]
    env = dict(os.environ)
    env['PATH'] = os.path.dirname(ANSIBLE_PLAYBOOK) + os.pathsep + env.get('PATH', '')
    env.update({'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'), 'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
                'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1', 'ANSIBLE_NOCOLOR': '1'})
    with tempfile.TemporaryDirectory(prefix=PREFIX + '-play-') as work:
        playbook = os.path.join(work, 'stack.yml')
        with open(playbook, 'w', encoding='utf-8') as handle:
            yaml.safe_dump(play, handle)
        cmd = [ANSIBLE_PLAYBOOK, '-i', os.path.join(ROOT, 'inventories', 'lab', 'hosts.yml'), playbook]
        if check:
            cmd.append('--check')
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError('no json report (rc %s): %s\n%s' % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])) from exc
    stats = report['stats'][HOST]
    tasks = {}
    failures = []
    for play_report in report['plays']:
        for task in play_report['tasks']:
            result = task['hosts'].get(HOST, {})
            name = task['task']['name'].split(' : ', 1)[-1]
            tasks.setdefault(name, []).append(result)
            if result.get('failed') and not result.get('ignore_errors'):
                failures.append((name, result.get('msg')))
    return stats, tasks, failures


def docker(*args, check=True):
    proc = subprocess.run(['docker'] + list(args), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('docker %s: %s' % (' '.join(args), proc.stderr))
    return proc.stdout


def teardown():
    """Take the project down whatever state it is in."""
    try:
        run_role({'stack_state': 'absent', 'stack_remove_volumes': True}, timeout=600)
    finally:
        ids = docker('ps', '-aq', '--filter', 'label=com.docker.compose.project=%s' % PREFIX, check=False).split()
        if ids:
            docker('rm', '-f', *ids, check=False)
        docker('network', 'rm', '%s_default' % PREFIX, check=False)
        for volume in docker('volume', 'ls', '-q', '--filter', 'label=com.docker.compose.project=%s' % PREFIX,
                             check=False).split():
            docker('volume', 'rm', volume, check=False)
        for controller in os.listdir('/sys/fs/cgroup'):
            for name in ('%s/sutazai' % PREFIX, PREFIX):
                path = os.path.join('/sys/fs/cgroup', controller, name)
                if os.path.isdir(path):
                    subprocess.run(['rmdir', path], check=False)
        shutil.rmtree(STACK_DIR, ignore_errors=True)


def http_service(name, **extra):
    entry = {'name': name, 'tier': 1, 'image': 'backend', 'port': 8000, 'publish': None,
             'environment': {'PORT': '8000'}}
    entry.update(extra)
    return entry


def test_check_mode_validates_the_candidate_and_changes_nothing():
    """Check mode runs Compose's own validation on the rendered candidate: an env file the project does not have is
    refused (as a real deploy would be), a valid candidate passes; neither creates the stack directory."""
    teardown()
    try:
        stats, _tasks, failures = run_role({'stack_services': [http_service('backend', env_files=['operator-missing'])]},
                                           check=True)
        assert stats['failures'] > 0, 'check mode passed a candidate Compose refuses'
        assert any('operator-missing.env' in str(msg) for _name, msg in failures), failures
        assert not os.path.exists(STACK_DIR)
        stats, _tasks, failures = run_role({'stack_services': [http_service('backend')]}, check=True)
        assert not failures, failures
        assert not os.path.exists(STACK_DIR)
        parent = os.path.dirname(STACK_DIR)
        assert not [entry for entry in os.listdir(parent) if entry.startswith('.%s.check.' % os.path.basename(STACK_DIR))]
    finally:
        teardown()


def test_absent_removes_a_nested_stack_cgroup():
    """stack_cgroup_name parent/sutazai: absent removes the nested cgroup and the parent its name made, under every
    controller where they exist."""
    name = '%s/sutazai' % PREFIX
    made = []
    try:
        for controller in ('memory', 'cpu', 'pids'):
            path = os.path.join('/sys/fs/cgroup', controller, name)
            os.makedirs(path, exist_ok=True)
            made.append(path)
        stats, _tasks, failures = run_role({'stack_state': 'absent', 'stack_cgroup_name': name})
        assert not failures, failures
        left = [path for path in made if os.path.isdir(path) or os.path.isdir(os.path.dirname(path))]
        assert not left, 'left behind: %s' % left
        assert stats['changed'] > 0
    finally:
        for path in made:
            for directory in (path, os.path.dirname(path)):
                if os.path.isdir(directory):
                    subprocess.run(['rmdir', directory], check=False)


OLLAMA = {'name': 'ollama', 'tier': 1, 'port': 11434, 'publish': 11434, 'health_path': '/api/version',
          'volumes': ['ollama-data:/root/.ollama'], 'local': {'healthcheck': None}}
PROD = {'name': 'llama3.2-prod', 'from': 'llama3.2:3b',
        'parameters': {'num_thread': 4, 'num_ctx': 2048, 'temperature': 0.7, 'top_p': 0.9}}


def test_stable_profile_refuses_two_loaded_models():
    """Preflight refuses two `loaded` models in the stable profile, before anything changes."""
    stats, _tasks, failures = run_role({'stack_services': [OLLAMA], 'stack_models': [
        {'name': 'tinyllama', 'state': 'loaded'}, {'name': 'llama3.2:3b', 'state': 'loaded'}]})
    assert stats['failures'] > 0 and any('OLLAMA_MAX_LOADED_MODELS=1' in str(msg) for _name, msg in failures), failures
    assert not os.path.exists(STACK_DIR)


def test_models_pulled_loaded_and_variant_created():
    """With the Ollama emulator: llama3.2:3b pulled and loaded, the llama3.2-prod variant made from it with its
    parameters; a second run changes nothing."""
    teardown()
    try:
        # keep_alive: the stable profile's OLLAMA_KEEP_ALIVE (1m) would unload it between the two runs
        models = [{'name': 'llama3.2:3b', 'state': 'loaded', 'keep_alive': '30m'}, PROD]
        role_vars = {'stack_services': [OLLAMA], 'stack_models': models}
        _stats, tasks, failures = run_role(role_vars)
        assert not failures, failures
        results = tasks['Pull, load and create the models'][0]['results']
        assert [r['changed'] for r in results] == [True, True], results
        url = 'http://127.0.0.1:%d' % (11434 + OFFSET)
        loaded = json.loads(subprocess.run(['curl', '-fsS', url + '/api/ps'], capture_output=True, text=True,
                                           check=True).stdout)
        assert [m['name'] for m in loaded['models']] == ['llama3.2:3b'], loaded
        shown = json.loads(subprocess.run(['curl', '-fsS', url + '/api/show', '-d', '{"model": "llama3.2-prod"}'],
                                          capture_output=True, text=True, check=True).stdout)
        for line in ('num_thread', 'num_ctx', 'temperature', 'top_p'):
            assert line in shown['parameters'], shown['parameters']
        stats, tasks, failures = run_role(role_vars)
        assert not failures, failures
        assert [r['changed'] for r in tasks['Pull, load and create the models'][0]['results']] == [False, False]
        assert stats['changed'] == 0, sorted(name for name, rs in tasks.items() for r in rs if r.get('changed'))
    finally:
        teardown()


REDIS = {'name': 'redis', 'tier': 1, 'port': 6379, 'publish': None, 'password': True,
         'command': ['--bind', '0.0.0.0', '--protected-mode', 'no', '--dir', '/data'],
         'healthcheck': {'test': ['CMD', 'redis-cli', 'ping'], 'interval': '2s', 'timeout': '5s', 'retries': 10}}


def test_redis_password_generated_once_and_in_force():
    """A redis service with password true: the password is generated once (root-only redis.env, the same on the
    second run), redis refuses a client without it, the services listing env_files [redis] get it, and it is in
    neither the compose file nor the container's command; the verification reads CONFIG GET with it."""
    teardown()
    try:
        client = http_service('backend', env_files=['redis'])
        role_vars = {'stack_services': [REDIS, client]}
        stats, tasks, failures = run_role(role_vars)
        assert not failures, failures
        env_file = os.path.join(STACK_DIR, 'redis.env')
        assert oct(os.stat(env_file).st_mode & 0o777) == '0o600' and os.stat(env_file).st_uid == 0
        with open(env_file, encoding='utf-8') as handle:
            password = dict(line.split('=', 1) for line in handle.read().splitlines())['REDIS_PASSWORD']
        assert len(password) == 32
        with open(os.path.join(STACK_DIR, 'compose.yml'), encoding='utf-8') as handle:
            assert password not in handle.read()
        redis = json.loads(docker('inspect', '%s-redis' % PREFIX))[0]
        assert password not in json.dumps(redis['Config']['Cmd']) + json.dumps(redis['Config']['Entrypoint'])
        assert password not in docker('exec', '%s-redis' % PREFIX, 'cat', '/proc/1/cmdline')
        refused = subprocess.run(['docker', 'exec', '-e', 'REDISCLI_AUTH=', '%s-redis' % PREFIX, 'redis-cli', 'ping'],
                                 capture_output=True, text=True, check=False)
        assert 'NOAUTH' in refused.stdout + refused.stderr, refused
        assert docker('exec', '%s-redis' % PREFIX, 'redis-cli', '-a', password, '--no-auth-warning', 'ping').strip() == 'PONG'
        backend = json.loads(docker('inspect', '%s-backend' % PREFIX))[0]
        assert 'REDIS_PASSWORD=%s' % password in backend['Config']['Env']
        assert any(r.get('msg', '').startswith('%s (stable)' % PREFIX) for r in tasks['Say the stack is verified'])
        assert password not in json.dumps(tasks)
        stats, tasks, failures = run_role(role_vars)
        assert not failures, failures
        with open(env_file, encoding='utf-8') as handle:
            assert 'REDIS_PASSWORD=%s\n' % password in handle.read()
        assert stats['changed'] == 0, sorted(name for name, rs in tasks.items() for r in rs if r.get('changed'))
    finally:
        teardown()
