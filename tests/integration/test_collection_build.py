"""The collection builds into a tarball that ansible-galaxy installs (offline, no Galaxy)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
GALAXY = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')


def test_build_and_install(tmp_path):
    """build → install --offline → the installed copy has our manifest, plugins and roles, and no test files."""
    build = subprocess.run([GALAXY, 'collection', 'build', '--force', '--output-path', str(tmp_path), ROOT],
                           capture_output=True, text=True, check=False, cwd=ROOT)
    assert build.returncode == 0, build.stderr
    tarball = tmp_path / 'sutazai-ops-0.1.0.tar.gz'
    assert tarball.exists()
    target = tmp_path / 'installed'
    # ansible-galaxy skips a collection it finds in any collections path it knows (the checkout on PYTHONPATH
    # under `make`, a link in ~/.ansible/collections), so the install sees the target directory only.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(target), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', HOME=str(tmp_path))
    for name in ('ANSIBLE_CONFIG', 'PYTHONPATH'):
        env.pop(name, None)
    install = subprocess.run([GALAXY, 'collection', 'install', '--offline', '--no-deps', '-p', str(target), str(tarball)],
                             capture_output=True, text=True, check=False, cwd=str(tmp_path), env=env)
    assert install.returncode == 0, install.stderr
    assert 'was installed successfully' in install.stdout, install.stdout
    installed = target / 'ansible_collections' / 'sutazai' / 'ops'
    manifest = json.loads((installed / 'MANIFEST.json').read_text())
    assert manifest['collection_info']['namespace'] == 'sutazai'
    assert manifest['collection_info']['name'] == 'ops'
    assert manifest['collection_info']['license'] == ['GPL-3.0-or-later']
    assert set(manifest['collection_info']['dependencies']) == {'community.docker', 'ansible.posix'}
    assert (installed / 'roles' / 'common' / 'meta' / 'argument_specs.yml').exists()
    assert (installed / 'plugins' / 'doc_fragments' / 'attributes.py').exists()
    for excluded in ('tests', 'molecule', 'bench', 'testbed', '.ci'):
        assert not (installed / excluded).exists(), excluded


def _plugins():
    found = []
    for kind, folder in (('module', 'modules'), ('filter', 'filter')):
        for name in sorted(os.listdir(os.path.join(ROOT, 'plugins', folder))):
            if name.endswith('.py') and not name.startswith('_'):
                found.append((kind, name[:-3]))
    found.extend(('role', name) for name in sorted(os.listdir(os.path.join(ROOT, 'roles'))))
    return found


@pytest.mark.parametrize('kind, name', _plugins())
def test_ansible_doc_renders(kind, name):
    """Every module, filter and role has documentation that ansible-doc renders from the checkout."""
    doc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-doc'), '-t', kind, '--json', 'sutazai.ops.' + name],
                         capture_output=True, text=True, check=False, cwd=ROOT,
                         env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg')))
    assert doc.returncode == 0, doc.stderr
    rendered = json.loads(doc.stdout)['sutazai.ops.' + name]
    if kind == 'role':
        assert rendered['entry_points']['main']['short_description']
    else:
        assert rendered['doc']['short_description'] and rendered['doc']['description']
        assert rendered['examples'].strip()
        assert rendered['return']
