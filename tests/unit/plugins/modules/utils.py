"""Running a module's main() in a unit test, as Ansible would see its result.

exit_json and fail_json raise instead of exiting, and warn() is recorded, so a test gets the result
dict: what the module returned, `warnings`, and `failed`.
"""

import json

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class AnsibleExitJson(Exception):
    """exit_json was called."""


class AnsibleFailJson(Exception):
    """fail_json was called."""


def patch_module_exits(monkeypatch):
    """Make exit_json/fail_json raise and warn() record, for the rest of the test."""
    def exit_json(module, **kwargs):
        kwargs.setdefault('changed', False)
        kwargs['warnings'] = list(getattr(module, '_test_warnings', []))
        raise AnsibleExitJson(kwargs)

    def fail_json(module, msg, **kwargs):
        kwargs['msg'] = msg
        kwargs['warnings'] = list(getattr(module, '_test_warnings', []))
        raise AnsibleFailJson(kwargs)

    def warn(module, warning):
        module.__dict__.setdefault('_test_warnings', []).append(warning)

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
    monkeypatch.setattr(basic.AnsibleModule, 'warn', warn)


def run_main(main, args, check=False, diff=False):
    """Run `main` with `args` (after patch_module_exits); its result with `failed` set. A successful result goes
    through JSON, as it would to the controller."""
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)):
        try:
            main()
        except AnsibleExitJson as exc:
            return dict(json.loads(json.dumps(exc.args[0])), failed=False)
        except AnsibleFailJson as exc:
            return dict(exc.args[0], failed=True)
    raise AssertionError('main() returned without exit_json or fail_json')
