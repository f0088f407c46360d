"""The guard engine must run on a host without Ansible (the monitor daemon does): import and run it with `ansible` blocked."""

import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))

SCRIPT = r'''
import importlib.abc, json, sys, threading

class NoAnsible(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'ansible' or name.startswith('ansible.'):
            raise ImportError('ansible is not installed on this host')
        return None

sys.meta_path.insert(0, NoAnsible())
sys.path.insert(0, sys.argv[1])
from ansible_collections.sutazai.ops.plugins.module_utils import _guard, _guard_policy, _guard_state
from ansible_collections.sutazai.ops.plugins.module_utils._ollama import OllamaClient

readings = _guard.Readings(_guard.CgroupReader(), ollama_client=OllamaClient('http://127.0.0.1:9', timeout=1))
engine = _guard.Guard(_guard_policy.resolve_thresholds('balanced'), readings, _guard.Actions(),
                      _guard_state.StateStore(sys.argv[2]))
results = []
stop = threading.Event()
def keep(result):
    results.append(result)
    stop.set()
_guard.watch(engine, 0.1, stop, on_result=keep)
print(json.dumps({'level': results[0]['level'], 'pressure': results[0]['pressure_before'],
                  'warnings': results[0]['warnings'], 'ansible_loaded': any(m.split('.')[0] == 'ansible' for m in sys.modules)}))
'''


def test_guard_runs_without_ansible(tmp_path):
    proc = subprocess.run([sys.executable, '-c', SCRIPT, os.path.join(ROOT, '.collections'), str(tmp_path / 'guard.json')],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result['ansible_loaded'] is False
    assert result['level'] in ('ok', 'soft', 'hard')
    assert 0 < result['pressure'] < 100
    # Ollama is not there: a warning naming it, not a failure
    assert any('Ollama not readable' in w for w in result['warnings'])
