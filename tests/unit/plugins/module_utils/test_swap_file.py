"""Unit tests of plugins/module_utils/_swap_file.py on its own: no Ansible, the standard-library tools.

The module's behaviour (main() against a fake host) is tested in tests/unit/plugins/modules/test_swap_file.py.
"""

import json
import os

from ansible_collections.sutazai.ops.plugins.module_utils import _swap_file

MiB = 1024 ** 2

SCRIPT = r'''
from ansible_collections.sutazai.ops.plugins.module_utils._swap_file import SwapFile

result = SwapFile({'path': sys.argv[2], 'size': '1M', 'fstab': False}, check_mode=True).result()
print(json.dumps({'actions': result['actions'], 'size': result['size_bytes'], 'unanswered': result['unanswered'],
                  'ansible_loaded': any(m.split('.')[0] == 'ansible' for m in sys.modules)}))
'''


def test_swap_file_plans_without_ansible(tmp_path, without_ansible):
    proc = without_ansible(SCRIPT, tmp_path / 'swapfile')
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {'actions': ['create', 'mkswap', 'swapon'], 'size': MiB, 'unanswered': [], 'ansible_loaded': False}
    assert os.listdir(tmp_path) == []


def test_default_tools(tmp_path):
    tools = _swap_file.Tools()
    assert tools.run_command(['sh', '-c', 'echo out; echo err >&2; exit 3']) == (3, 'out\n', 'err\n')
    assert os.path.basename(tools.get_bin_path('sh')) == 'sh'
    assert tools.get_bin_path('sutazai-no-such-command') is None
    fstab = tmp_path / 'fstab'
    fstab.write_text('# fstab\n')
    backup = tools.backup(str(fstab))
    assert backup.startswith(str(fstab) + '.%d.' % os.getpid()) and backup.endswith('~')
    assert open(backup, encoding='utf-8').read() == '# fstab\n'
    new = tmp_path / 'new'
    new.write_text('/swapfile none swap sw 0 0\n')
    tools.atomic_move(str(new), str(fstab))
    assert fstab.read_text() == '/swapfile none swap sw 0 0\n' and not new.exists()
    tools.warn('nothing happens')
    tools.selinux_context(str(fstab))


def test_unknown_options_are_ignored_and_defaults_filled():
    swap = _swap_file.SwapFile({'path': '/var/tmp/swapfile', 'size': '1M', '_ansible_check_mode': True})
    assert swap.params == dict(_swap_file.DEFAULTS, path='/var/tmp/swapfile', size='1M')
