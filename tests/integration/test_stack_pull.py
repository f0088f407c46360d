"""stack_pull never: the stack role on this host's Docker engine pulls nothing, and an image of the profile that is not
on the host fails the host naming it, before the live compose file is replaced or any container created.

The emergency profile (tier 1) with the images given one by one (stack_image_set upstream) - the local test-bed
images, and for redis an image no host has. There is no registry here: the same run with stack_pull missing tries
to pull it and fails with the engine's pull error instead, which is how the test tells a pull was attempted.
Project, cgroup and directory carry the sutazai-gs- prefix and are taken down in the fixture's finally.
"""

import os
import subprocess

import pytest

PROJECT = 'sutazai-gs-pull'
STACK_DIR = '/tmp/sutazai-gs-pull-stack'
MISSING = 'sutazai-gs-missing/redis:never-built'
IMAGES = {'postgres': 'sutazai-testbed/postgres:latest', 'redis': MISSING, 'qdrant': 'sutazai-testbed/http:latest',
          'ollama': 'sutazai-testbed/ollama:latest', 'backend': 'sutazai-testbed/http:latest',
          'frontend': 'sutazai-testbed/http:latest', 'agent': 'sutazai-testbed/http:latest'}
VARS = {'stack_project': PROJECT, 'stack_dir': STACK_DIR, 'stack_image_set': 'upstream', 'stack_images': {'upstream': IMAGES},
        'stack_cgroup_name': PROJECT, 'stack_port_offset': 21000, 'stack_profile': 'emergency', 'stack_models': [],
        'stack_verify': False, 'stack_health_timeout': 60}

pytestmark = pytest.mark.skipif(subprocess.run(['docker', 'info'], capture_output=True, check=False).returncode != 0,
                                reason='needs the Docker engine')


def _containers():
    out = subprocess.run(['docker', 'ps', '-aq', '--filter', 'label=com.docker.compose.project=' + PROJECT],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture(name='clean')
def fixture_clean(role_runner):
    subprocess.run(['docker', 'image', 'rm', MISSING], capture_output=True, check=False)
    try:
        yield
    finally:
        role_runner('stack', dict(VARS, stack_state='absent', stack_remove_volumes=True))
        for cid in _containers():
            subprocess.run(['docker', 'rm', '-f', cid], capture_output=True, check=False)
        subprocess.run(['rm', '-rf', STACK_DIR], check=False)
        for hierarchy in ('memory', 'cpu,cpuacct', 'cpu', 'pids'):
            path = os.path.join('/sys/fs/cgroup', hierarchy, PROJECT)
            if os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    pass


def _failure(stats):
    assert stats['failures'] >= 1, stats
    return ' '.join('%s: %s' % item for item in stats['failed_tasks'])


def test_pull_never_fails_naming_the_missing_image_and_pulls_nothing(role_runner, clean):
    stats = role_runner('stack', dict(VARS, stack_pull='never'))
    message = _failure(stats)
    assert 'stack_pull is never and the emergency profile needs %s, not on this host' % MISSING in message, message
    # the role's check failed, and nothing after it ran: Compose (which pulls) never started
    assert [name for name, _msg in stats['failed_tasks']] == ['sutazai.ops.stack : Check every image is on the host (stack_pull never - nothing is pulled)']
    assert 'pull access denied' not in message and 'Bring the stack up' not in message
    assert _containers() == [], 'a container was created'
    assert not os.path.exists(os.path.join(STACK_DIR, 'compose.yml')), 'the live compose file was replaced'


def test_pull_missing_tries_to_pull_it(role_runner, clean):
    """The same run as the default does: a pull is attempted and fails with the engine's error, not the role's message."""
    stats = role_runner('stack', dict(VARS, stack_pull='missing'))
    message = _failure(stats)
    assert 'stack_pull is never' not in message
    # Compose ran and went to the registry for the image (there is none here: the lookup fails)
    assert 'Bring the stack up: Error when processing redis' in message and 'registry' in message, message
