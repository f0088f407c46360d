"""Unit tests import the collection as ansible_collections.sutazai.ops (PYTHONPATH=.collections, set by make)."""

import ast
import os
import sys

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
COLLECTIONS = os.path.join(ROOT, '.collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)


def _top_level_imports(path):
    """The top-level package names a Python source file imports, anywhere in it."""
    with open(path, encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or '').split('.')[0])
    return imported


@pytest.fixture(name='top_level_imports')
def fixture_top_level_imports():
    """What a module_utils file imports: the engine's files must run without Ansible, some without anything but the stdlib."""
    return _top_level_imports


class ModuleExit(Exception):
    """exit_json was called."""


class ModuleFail(Exception):
    """fail_json was called."""


@pytest.fixture(name='run_main')
def fixture_run_main(monkeypatch):
    """run(main, args, check=False, diff=False): a module's main() with `args`; its result with `failed` set."""
    def exit_json(_module, **kwargs):
        kwargs.setdefault('changed', False)
        raise ModuleExit(kwargs)

    def fail_json(_module, **kwargs):
        raise ModuleFail(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)

    def run(main, args, check=False, diff=False):
        with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)):
            try:
                main()
            except ModuleExit as exc:
                return dict(exc.args[0], failed=False)
            except ModuleFail as exc:
                return dict(exc.args[0], failed=True)
        raise AssertionError('the module neither exited nor failed')
    return run
