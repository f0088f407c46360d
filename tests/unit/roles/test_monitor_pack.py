"""The monitor role's packer (roles/monitor/files/pack_daemon.py): one runnable zip, the same bytes for the same
sources, and nothing taken from a directory someone else can write to."""

import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
PACKER = os.path.join(ROOT, 'roles', 'monitor', 'files', 'pack_daemon.py')
MODULE_UTILS = os.path.join(ROOT, 'plugins', 'module_utils')
NAMES = ['_cgroups', '_containers', '_docker', '_guard', '_guard_policy', '_guard_state', '_monitor', '_monitor_metrics',
         '_monitor_restarts', '_ollama', '_oom']


def pack(out_dir):
    proc = subprocess.run([sys.executable, PACKER, MODULE_UTILS, str(out_dir)] + NAMES, capture_output=True, text=True,
                          check=False)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def test_the_same_sources_give_the_same_bytes(tmp_path):
    rc1, first, _err1 = pack(tmp_path / 'one')
    rc2, second, _err2 = pack(tmp_path / 'two')
    assert rc1 == rc2 == 0
    with open(first, 'rb') as a, open(second, 'rb') as b:
        assert a.read() == b.read()
    assert os.path.basename(first) == os.path.basename(second)
    names = zipfile.ZipFile(first).namelist()
    assert '__main__.py' in names
    assert 'ansible_collections/sutazai/ops/plugins/module_utils/_monitor.py' in names
    assert 'ansible_collections/sutazai/ops/plugins/__init__.py' in names


def test_the_zip_runs_the_daemon(tmp_path):
    _rc, path, _err = pack(tmp_path / 'out')
    proc = subprocess.run([sys.executable, path, '--help'], capture_output=True, text=True, check=False, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert 'sutazai-monitor' in proc.stdout


@pytest.mark.parametrize('mode', [0o777, 0o770, 0o1777])
def test_a_directory_others_can_write_to_is_refused(tmp_path, mode):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, mode)
    rc, out, err = pack(shared)
    assert rc != 0 and out == ''
    assert str(shared) in err and 'writable by it alone' in err
    assert os.listdir(shared) == []


def test_a_symlinked_directory_is_refused(tmp_path):
    real = tmp_path / 'real'
    real.mkdir(mode=0o700)
    link = tmp_path / 'link'
    link.symlink_to(real)
    rc, _out, err = pack(link)
    assert rc != 0 and 'not a plain directory' in err
    assert os.listdir(real) == []


def test_a_file_planted_under_the_expected_name_is_replaced(tmp_path):
    _rc, path, _err = pack(tmp_path / 'out')
    with open(path, 'rb') as handle:
        good = handle.read()
    with open(path, 'wb') as handle:
        handle.write(b'planted')
    rc, again, _err = pack(tmp_path / 'out')
    assert rc == 0 and again == path
    with open(path, 'rb') as handle:
        assert handle.read() == good
