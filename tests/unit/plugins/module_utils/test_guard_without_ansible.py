"""The guard engine must run on a host without Ansible (the monitor daemon does): import and run it with `ansible` blocked."""

import json

SCRIPT = r'''
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


def test_guard_runs_without_ansible(tmp_path, without_ansible):
    proc = without_ansible(SCRIPT, tmp_path / 'guard.json')
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result['ansible_loaded'] is False
    assert result['level'] in ('ok', 'soft', 'hard')
    assert 0 < result['pressure'] < 100
    # Ollama is not there: a warning naming it, not a failure
    assert any('Ollama not readable' in w for w in result['warnings'])
