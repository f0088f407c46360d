"""Unit tests import the collection as ansible_collections.sutazai.ops (PYTHONPATH=.collections, set by make)."""

import ast
import os
import subprocess
import sys

import pytest

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


# The first lines of a script run as a host without Ansible would run it (the monitor daemon's hosts): importing
# `ansible` fails, and the collection is importable from sys.argv[1].
NO_ANSIBLE_PRELUDE = r'''
import importlib.abc, json, sys, threading

class NoAnsible(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'ansible' or name.startswith('ansible.'):
            raise ImportError('ansible is not installed on this host')
        return None

sys.meta_path.insert(0, NoAnsible())
sys.path.insert(0, sys.argv[1])
'''


def _run_without_ansible(body, *args, timeout=60):
    """Run the Python source `body` in a new interpreter where `import ansible` fails; its sys.argv[2:] are `args`."""
    return subprocess.run([sys.executable, '-c', NO_ANSIBLE_PRELUDE + body, COLLECTIONS] + [str(arg) for arg in args],
                          capture_output=True, text=True, check=False, timeout=timeout)


@pytest.fixture(name='without_ansible')
def fixture_without_ansible():
    """_run_without_ansible, as a fixture: what runs on a host where Ansible is not installed."""
    return _run_without_ansible
