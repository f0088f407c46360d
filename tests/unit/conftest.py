"""Unit tests import the collection as ansible_collections.sutazai.ops (PYTHONPATH=.collections, set by make)."""

import ast
import os
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
