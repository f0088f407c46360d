"""What users read speaks of the collection's own names: profiles, tiers, the reference split.

The platform was specified in request documents numbered 000-004 ("seed 000"); those numbers mean
nothing to an operator reading ansible-doc or the README, so they must not appear there.
"""

import ast
import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
SEED_RE = re.compile(r'\bseeds? ?0\d\d\b', re.IGNORECASE)


def _plugin_docs():
    for folder in ('modules', 'filter'):
        base = os.path.join(ROOT, 'plugins', folder)
        for name in sorted(os.listdir(base)):
            if name.endswith('.py') and name != '__init__.py':
                tree = ast.parse(open(os.path.join(base, name), encoding='utf-8').read())
                for node in tree.body:
                    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                        target = node.targets[0]
                        if isinstance(target, ast.Name) and target.id in ('DOCUMENTATION', 'EXAMPLES', 'RETURN'):
                            yield '%s/%s %s' % (folder, name, target.id), node.value.value


def _files():
    yield 'README.md', open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    for role in sorted(os.listdir(os.path.join(ROOT, 'roles'))):
        for rel in ('meta/argument_specs.yml', 'defaults/main.yml'):
            path = os.path.join(ROOT, 'roles', role, rel)
            if os.path.exists(path):
                yield 'roles/%s/%s' % (role, rel), open(path, encoding='utf-8').read()
    yield from _plugin_docs()


@pytest.mark.parametrize('where, text', list(_files()), ids=lambda value: value if isinstance(value, str) and len(value) < 80 else '')
def test_user_docs_do_not_cite_request_document_numbers(where, text):
    found = sorted(set(match.group(0) for match in SEED_RE.finditer(text)))
    assert not found, '%s cites %s: say what it is (the stable profile, the reference split) instead' % (where, ', '.join(found))
