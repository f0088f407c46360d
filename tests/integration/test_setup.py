"""`make setup` on a stock Debian 12: the system python3 there cannot create a virtual environment
until Debian's python3-venv is installed. The test bed's base image is such a system (debootstrap
minbase with python3 only), so the set-up script is run in a container of it for real."""

import os
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
IMAGE = 'sutazai-testbed/base:latest'


def run_in_base(script):
    proc = subprocess.run(['docker', 'run', '--rm', '-v', os.path.join(ROOT, 'scripts') + ':/scripts:ro', IMAGE, 'sh', '-c', script],
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr


def test_stock_python_cannot_make_a_venv():
    """The premise: without python3-venv, `python3 -m venv` fails on that image (so the next test means something)."""
    code, out = run_in_base('python3 -m venv /tmp/venv')
    assert code != 0, out
    assert 'ensurepip' in out


def test_setup_script_installs_python3_venv_and_creates_the_environment():
    """scripts/python-env.sh (what `make setup` runs) installs python3-venv, creates a working venv, and a rerun is a no-op."""
    code, out = run_in_base('bash /scripts/python-env.sh python3 /tmp/venv && /tmp/venv/bin/python -m pip --version'
                            ' && dpkg -s python3-venv >/dev/null && echo installed'
                            ' && bash /scripts/python-env.sh python3 /tmp/venv && echo rerun-quiet')
    assert code == 0, out
    assert 'installing Debian\'s python3-venv' in out
    assert 'pip ' in out and 'installed' in out
    assert out.rstrip().endswith('rerun-quiet')
    # the rerun printed nothing between "installed" and "rerun-quiet": it found the environment and left it alone
    assert out.split('installed', 1)[1].strip() == 'rerun-quiet'
