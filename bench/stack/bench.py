"""Benchmark: the stack role against the seed's way, side by side, on this host's engine (local image set).

    .venv/bin/python bench/stack/bench.py

Steps, each timed (wall clock of the whole command, ansible-playbook start-up included) and each followed by
a count of the containers it recreated (container id changed) or restarted (StartedAt changed):

  1. cold deploy of the stable profile (images present, no container)
     role: ansible-playbook with sutazai.ops.stack          seed: docker compose up -d --wait of a hand-written file
  2. idempotent rerun
     role: the same playbook again (changed must be 0)      seed: docker compose up -d --force-recreate --wait
                                                                  (seed 002's scale-up script)
  3. a limits-only change (qdrant weight 4 -> 3, backend cpus -> 0.5)
     role: in place through container_limits                seed: the file edited, docker compose up -d --wait
  4. profile switch stable -> emergency (tier 1 only)
     role: stack_profile emergency                          seed: docker compose -f emergency.yml up -d --remove-orphans --wait

The seed's file is the role's own stable compose file without the role's additions (cgroup_parent,
oom_score_adj, labels, log options), so both run the same images, commands, health checks and limits.
Projects sutazai-st-bench (role) and sutazai-st-seed (seed) with ports shifted by 21000 and 22000; both are
removed at the end, whatever happens.
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BIN = os.path.dirname(sys.executable)
ROLE_PROJECT = 'sutazai-st-bench'
SEED_PROJECT = 'sutazai-st-seed'
ROLE_DIR = '/tmp/sutazai-st-bench-stack'
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), PYTHONPATH=os.path.join(ROOT, '.collections'),
           ANSIBLE_STDOUT_CALLBACK='ansible.posix.json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_NOCOLOR='1',
           PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
ROLE_VARS = {'stack_project': ROLE_PROJECT, 'stack_dir': ROLE_DIR, 'stack_image_set': 'local',
             'stack_cgroup_name': ROLE_PROJECT, 'stack_port_offset': 21000}
LIMITS_PLAN = {'services': {'qdrant': {'weight': 3}, 'backend': {'cpus': 0.5}}}


def identity(project):
    ids = subprocess.run(['docker', 'ps', '-q', '--filter', 'label=com.docker.compose.project=%s' % project],
                         capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return {}
    found = json.loads(subprocess.run(['docker', 'inspect'] + ids, capture_output=True, text=True, check=True).stdout)
    return dict((c['Config']['Labels']['com.docker.compose.service'], (c['Id'], c['State']['StartedAt'])) for c in found)


def touched(before, after):
    """(recreated, restarted) service counts between two identities."""
    recreated = sum(1 for s in after if s in before and after[s][0] != before[s][0])
    restarted = sum(1 for s in after if s in before and after[s][0] == before[s][0] and after[s][1] != before[s][1])
    return recreated, restarted


def role(work, extra=None):
    role_vars = dict(ROLE_VARS)
    role_vars.update(extra or {})
    play = [{'hosts': 'lab-docker-host', 'gather_facts': False, 'roles': [{'role': 'sutazai.ops.stack', 'vars': role_vars}]}]
    path = os.path.join(work, 'play.yml')
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(play, handle)
    start = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventories', 'lab', 'hosts.yml'), path],
                          cwd=work, env=ENV, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    stats = json.loads(proc.stdout)['stats']['lab-docker-host']
    if stats['failures']:
        raise SystemExit('the role failed:\n' + proc.stdout[-4000:])
    return elapsed, stats['changed']


def seed_file(work, name, document):
    path = os.path.join(work, name)
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(document, handle)
    return path


def compose(work, path, *args):
    start = time.monotonic()
    subprocess.run(['docker', 'compose', '-p', SEED_PROJECT, '--project-directory', work, '-f', path] + list(args),
                   capture_output=True, text=True, check=True)
    return time.monotonic() - start


def seed_document(role_doc, offset_from=21000, offset_to=22000):
    doc = copy.deepcopy(role_doc)
    doc['name'] = SEED_PROJECT
    for name, service in doc['services'].items():
        for key in ('cgroup_parent', 'oom_score_adj', 'labels', 'logging'):
            service.pop(key, None)
        service['container_name'] = '%s-%s' % (SEED_PROJECT, name)
        service['ports'] = [p.replace(':%d:' % int(p.split(':')[1]), ':%d:' % (int(p.split(':')[1]) - offset_from + offset_to))
                            for p in service.get('ports', [])]
        if not service['ports']:
            service.pop('ports')
        service.pop('env_file', None)
        if name == 'postgres':
            service.setdefault('environment', {})['POSTGRES_PASSWORD'] = 'seed-bench'
    return doc


def cleanup(work):
    subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(ROOT, 'inventories', 'lab', 'hosts.yml'),
                    seed_file(work, 'absent.yml', [{'hosts': 'lab-docker-host', 'gather_facts': False, 'roles': [
                        {'role': 'sutazai.ops.stack', 'vars': dict(ROLE_VARS, stack_state='absent', stack_remove_volumes=True)}]}])],
                   cwd=work, env=ENV, capture_output=True, check=False)
    for project in (ROLE_PROJECT, SEED_PROJECT):
        ids = subprocess.run(['docker', 'ps', '-aq', '--filter', 'label=com.docker.compose.project=%s' % project],
                             capture_output=True, text=True, check=False).stdout.split()
        if ids:
            subprocess.run(['docker', 'rm', '-f'] + ids, capture_output=True, check=False)
        subprocess.run(['docker', 'network', 'rm', '%s_default' % project], capture_output=True, check=False)
        vols = subprocess.run(['docker', 'volume', 'ls', '-q', '--filter', 'label=com.docker.compose.project=%s' % project],
                              capture_output=True, text=True, check=False).stdout.split()
        if vols:
            subprocess.run(['docker', 'volume', 'rm'] + vols, capture_output=True, check=False)
    subprocess.run(['rm', '-rf', ROLE_DIR], check=False)


def main():
    rows = []
    with tempfile.TemporaryDirectory(prefix='sutazai-st-bench-') as work:
        cleanup(work)
        try:
            # 1. cold deploy
            role_time, role_changed = role(work)
            with open(os.path.join(ROLE_DIR, 'compose.yml'), encoding='utf-8') as handle:
                role_doc = yaml.safe_load(handle)
            seed_path = seed_file(work, 'docker-compose-stable.yml', seed_document(role_doc))
            seed_time = compose(work, seed_path, 'up', '-d', '--wait')
            rows.append(('cold deploy (stable)', role_time, '%d changed' % role_changed, seed_time, '-'))
            # 2. idempotent rerun
            before_role, before_seed = identity(ROLE_PROJECT), identity(SEED_PROJECT)
            role_time, role_changed = role(work)
            seed_time = compose(work, seed_path, 'up', '-d', '--force-recreate', '--wait')
            role_result = '%d changed, %d/%d recreated/restarted' % ((role_changed,) + touched(before_role, identity(ROLE_PROJECT)))
            rows.append(('idempotent rerun', role_time, role_result,
                         seed_time, '%d/%d recreated/restarted' % touched(before_seed, identity(SEED_PROJECT))))
            # 3. limits-only change
            before_role, before_seed = identity(ROLE_PROJECT), identity(SEED_PROJECT)
            role_time, role_changed = role(work, {'stack_plan': LIMITS_PLAN})
            with open(os.path.join(ROLE_DIR, 'compose.yml'), encoding='utf-8') as handle:
                limited = seed_document(yaml.safe_load(handle))
            seed_path = seed_file(work, 'docker-compose-stable.yml', limited)
            seed_time = compose(work, seed_path, 'up', '-d', '--wait')
            role_result = '%d changed, %d/%d recreated/restarted' % ((role_changed,) + touched(before_role, identity(ROLE_PROJECT)))
            rows.append(('limits-only change', role_time, role_result,
                         seed_time, '%d/%d recreated/restarted' % touched(before_seed, identity(SEED_PROJECT))))
            # 4. profile switch stable -> emergency
            role_time, role_changed = role(work, {'stack_plan': LIMITS_PLAN, 'stack_profile': 'emergency'})
            emergency = copy.deepcopy(limited)
            emergency['services'].pop('qdrant')
            seed_time = compose(work, seed_file(work, 'docker-compose-emergency.yml', emergency),
                                'up', '-d', '--remove-orphans', '--wait')
            rows.append(('profile stable -> emergency', role_time, '%d changed, running: %d' % (role_changed, len(identity(ROLE_PROJECT))),
                         seed_time, 'running: %d' % len(identity(SEED_PROJECT))))
        finally:
            cleanup(work)
    print('%-30s %10s  %-40s %10s  %-28s %s' % ('step', 'role s', 'role result', 'seed s', 'seed result', 'role/seed'))
    for name, role_time, role_result, seed_time, seed_result in rows:
        print('%-30s %10.1f  %-40s %10.1f  %-28s %.2f' % (name, role_time, role_result, seed_time, seed_result, role_time / seed_time))


if __name__ == '__main__':
    main()
