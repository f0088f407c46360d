"""The fleet rollout's failure budget, counted across batches, with the playbooks' own task files.

A play shaped like playbooks/stable.yml (serial from fleet_serial, the gate of playbooks/tasks/fleet_gate.yml first,
the host's work in a block whose rescue notes the result and ends the host, then the summary play of
playbooks/tasks/summary.yml) runs on hosts that are local connections; a host var makes a host's work fail the
way the stack role's rollback does (a task fails after the rollback), so the budget logic runs for real in
ansible-playbook, fast and without Docker. The real rollout on docker-in-docker hosts is molecule/fleet.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
_VENV_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
ANSIBLE_PLAYBOOK = _VENV_PLAYBOOK if os.path.exists(_VENV_PLAYBOOK) else 'ansible-playbook'
PLAYBOOKS = os.path.join(ROOT, 'playbooks')
ROW = re.compile(r'^\s*-?\s*(h\d+)\s+\S+\s+\S*\s+(updated|unchanged|rolled back|failed|refused too small|not reached)\b', re.M)


def play(tasks_dir):
    """The shape of stable.yml's two plays; the host's work is one task that fails where fleet_test_fail is set."""
    work = [
        {'name': 'Work on the host (fails where fleet_test_fail is set, after a rollback)',
         'ansible.builtin.set_fact': {'stack_rollback_up': {'changed': True}},
         'when': 'fleet_test_fail | default(false)'},
        {'name': 'Health gate', 'ansible.builtin.fail': {'msg': 'the release was not healthy; rolled back'},
         'when': 'fleet_test_fail | default(false)'},
        {'name': 'Touch',
         'ansible.builtin.set_fact': {'fleet_touched': True, 'fleet_result': 'updated', 'fleet_changes': ['containers'], 'fleet_phase': 'deploy'}},
    ]
    return [
        {'name': 'Rollout', 'hosts': 'sutazai_hosts', 'gather_facts': False,
         'serial': "{{ fleet_serial | default([1, '25%', '100%']) }}",
         'vars_files': [os.path.join(PLAYBOOKS, 'vars', 'fleet.yml')],
         'tasks': [
             {'name': 'Gate', 'ansible.builtin.import_tasks': os.path.join(tasks_dir, 'fleet_gate.yml')},
             {'name': 'Not reached', 'ansible.builtin.meta': 'end_host', 'when': 'fleet_budget_spent | bool'},
             {'name': 'Work', 'block': work,
              'rescue': [{'name': 'Note', 'ansible.builtin.set_fact': {
                  'fleet_result': "{{ 'rolled back' if stack_rollback_up is defined else 'failed' }}",
                  'fleet_reason': '{{ ansible_failed_result.msg }}'}},
                  {'name': 'End', 'ansible.builtin.meta': 'end_host'}]},
         ]},
        {'name': 'Summary', 'hosts': 'sutazai_hosts', 'gather_facts': False,
         'vars_files': [os.path.join(PLAYBOOKS, 'vars', 'fleet.yml')], 'vars': {'fleet_profile': 'stable'},
         'tasks': [{'name': 'Summary', 'ansible.builtin.import_tasks': os.path.join(tasks_dir, 'summary.yml')}]},
    ]


def run(tmp_path, count, failing, extra=None, group_vars=None):
    hosts = {}
    for i in range(1, count + 1):
        hosts['h%d' % i] = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable, 'fleet_test_fail': 'h%d' % i in failing}
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump(sort_keys=False, data={'all': {'children': {'sutazai_hosts': {'hosts': hosts, 'vars': group_vars or {}}}}}))
    playbook = tmp_path / 'rollout.yml'
    playbook.write_text(yaml.safe_dump(play(os.path.join(PLAYBOOKS, 'tasks'))))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    cmd = [ANSIBLE_PLAYBOOK, '-i', str(inventory), str(playbook)]
    if extra:
        cmd += ['-e', json.dumps(extra)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    table = dict(ROW.findall(out))
    batches = re.findall(r'^PLAY \[Rollout\]', out, re.M)
    return proc.returncode, out, table, len(batches)


def test_within_budget_every_batch_runs(tmp_path):
    """Budget 1: one failed host (the second batch) and the rollout goes on to the end."""
    rc, out, table, batches = run(tmp_path, 8, {'h2'}, group_vars={'fleet_max_failed_hosts': 1})
    assert batches == 3  # [1, 25% of 8 = 2, the rest]
    assert table == {'h1': 'updated', 'h2': 'rolled back', 'h3': 'updated', 'h4': 'updated', 'h5': 'updated', 'h6': 'updated',
                     'h7': 'updated', 'h8': 'updated'}, out
    assert rc == 2  # the rolled back host is failed after the table
    assert '7 updated, 0 unchanged, 1 rolled back' in out


def test_budget_counts_across_batches(tmp_path):
    """One host per batch, failures in batch 2 and batch 4: max_fail_percentage would see 100% of a batch each time;
    the fleet budget of 1 sees 2 failed hosts before batch 5 and stops there."""
    rc, out, table = run(tmp_path, 6, {'h2', 'h4'}, extra={'fleet_serial': 1}, group_vars={'fleet_max_failed_hosts': 1})[:3]
    assert table == {'h1': 'updated', 'h2': 'rolled back', 'h3': 'updated', 'h4': 'rolled back', 'h5': 'not reached',
                     'h6': 'not reached'}, out
    assert rc == 2
    assert 'the rollout stopped: 2 host(s) failed (h2, h4), the budget allows 1' in out
    # the hosts not reached never ran the work
    touched = set(re.findall(r'^ok: \[(h\d+)\]', '\n'.join(section.split('TASK [')[0] for section in out.split('TASK [Touch]')[1:]), re.M))
    assert touched == {'h1', 'h3'}


def test_default_budget_stops_after_a_failed_canary(tmp_path):
    rc, out, table = run(tmp_path, 4, {'h1'})[:3]
    assert table == {'h1': 'rolled back', 'h2': 'not reached', 'h3': 'not reached', 'h4': 'not reached'}, out
    assert rc == 2


def test_percentage_budget(tmp_path):
    """20% of 10 hosts: two failed hosts are within it, the third spends it."""
    budget = {'fleet_max_failed_hosts': 10, 'fleet_max_failed_percentage': 20}
    table = run(tmp_path, 10, {'h1', 'h2', 'h3'}, extra={'fleet_serial': 1}, group_vars=budget)[2]
    assert [table['h%d' % i] for i in range(1, 11)] == ['rolled back'] * 3 + ['not reached'] * 7, table


@pytest.mark.parametrize('serial, expected', [(None, 3), (2, 2), ([3, '100%'], 2), (1, 4)])
def test_serial_from_a_variable(tmp_path, serial, expected):
    rc, out, table, batches = run(tmp_path, 4, set(), extra={'fleet_serial': serial} if serial is not None else None)
    assert rc == 0, out
    assert batches == expected
    assert set(table.values()) == {'updated'}
