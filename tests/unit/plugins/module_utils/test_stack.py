"""Unit tests of the stack's compose rendering (module_utils/_stack.py) over the role's own catalogue."""

import copy
import os
import re

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.sutazai.ops.plugins.filter import stack_compose as stack_filter
from ansible_collections.sutazai.ops.plugins.module_utils import _stack

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
GiB = 1024 ** 3
MiB = 1024 ** 2

with open(os.path.join(ROOT, 'roles', 'stack', 'defaults', 'main.yml'), encoding='utf-8') as _handle:
    DEFAULTS = yaml.safe_load(_handle)

AGENTS = [{'name': 'autogpt', 'tier': 3, 'image': 'agent', 'port': 8080, 'health_path': '/health'},
          {'name': 'crewai', 'tier': 2, 'image': 'agent', 'port': 8080}]


def options(**overrides):
    opts = {'services': copy.deepcopy(DEFAULTS['stack_services']), 'agents': copy.deepcopy(AGENTS),
            'images': DEFAULTS['stack_images'], 'image_set': 'local', 'host_memory': 18 * GiB, 'host_cpus': 4,
            'cgroup_parent': '/sutazai', 'project': 'sutazai'}
    opts.update(overrides)
    return opts


def render(**overrides):
    return _stack.render(options(**overrides))


# ---------------------------------------------------------------- the stable profile on seed 000's host

@pytest.mark.parametrize('service, memory, tier, oom', [
    ('postgres', 1 * GiB, 1, -500),
    ('redis', 512 * MiB, 1, -500),
    ('ollama', 3 * GiB, 1, -500),
    ('backend', 1536 * MiB, 1, -500),
    ('frontend', 768 * MiB, 1, -500),
    ('qdrant', 1 * GiB, 2, 0),
    ('autogpt', None, 3, 500),
])
def test_stable_limits_labels_and_oom_score(service, memory, tier, oom):
    out = render(agents=[AGENTS[0]])
    doc = out['compose']['services'][service]
    if memory is not None:
        assert doc['deploy']['resources']['limits']['memory'] == str(memory)
    assert doc['labels'] == {'sutazai.tier': str(tier), 'sutazai.service': service}
    assert doc['oom_score_adj'] == oom
    assert doc['cgroup_parent'] == '/sutazai'
    assert doc['container_name'] == 'sutazai-%s' % service
    assert doc['logging'] == {'driver': 'json-file', 'options': {'max-size': '10m', 'max-file': '3'}}
    assert doc['restart'] == 'unless-stopped'
    assert int(doc['deploy']['resources']['reservations']['memory']) <= int(doc['deploy']['resources']['limits']['memory'])


def test_postgres_and_redis_settings_are_server_flags():
    out = render()
    pg = out['compose']['services']['postgres']['command']
    assert '-c' in pg and 'shared_buffers=256MB' in pg and 'effective_cache_size=768MB' in pg and 'max_connections=100' in pg
    redis = out['compose']['services']['redis']['command']
    assert redis[:2] == ['--bind', '0.0.0.0']
    assert redis[redis.index('--maxmemory') + 1] == str(512 * MiB * 3 // 4)
    assert redis[redis.index('--maxmemory-policy') + 1] == 'allkeys-lru'
    assert out['settings']['postgres']['settings']['shared_buffers'] == '256MB'
    assert out['settings']['redis']['settings'] == {'maxmemory': str(402653184), 'maxmemory-policy': 'allkeys-lru'}


def test_postgres_overrides():
    out = render(postgres_settings={'work_mem': '16MB', 'max_connections': 50})
    pg = out['compose']['services']['postgres']['command']
    assert 'work_mem=16MB' in pg and 'max_connections=50' in pg and 'shared_buffers=256MB' in pg


@pytest.mark.parametrize('preset, expected', [
    ('stable', {'OLLAMA_MAX_LOADED_MODELS': '1', 'OLLAMA_KEEP_ALIVE': '1m'}),
    ('high_concurrency', {'OLLAMA_NUM_PARALLEL': '50', 'OLLAMA_MAX_QUEUE': '500', 'OLLAMA_KEEP_ALIVE': '10m'}),
])
def test_ollama_presets(preset, expected):
    env = render(ollama_preset=preset)['compose']['services']['ollama']['environment']
    for key, value in expected.items():
        assert env[key] == value
    assert env['OLLAMA_HOST'] == '0.0.0.0:11434'
    assert all(key in _stack.OLLAMA_VARIABLES for key in env if key.startswith('OLLAMA_'))


@pytest.mark.parametrize('where, key, words', [
    ('ollama_environment', 'OLLAMA_MAX_MEMORY', ['not an Ollama variable', 'OLLAMA_MAX_LOADED_MODELS', 'memory limit']),
    ('ollama_environment', 'OLLAMA_QUEUE_SIZE', ['use OLLAMA_MAX_QUEUE']),
    ('ollama_environment', 'OLLAMA_CPU_THREADS', ['num_thread']),
    ('ollama_environment', 'OLLAMA_NUM_THREADS', ['num_thread']),
    ('ollama_environment', 'OLLAMA_FOO', ['OLLAMA_FOO is not an Ollama variable', 'OLLAMA_KEEP_ALIVE']),
    ('postgres', 'POSTGRES_SHARED_BUFFERS', ['ignored by the image', 'stack_postgres_settings.shared_buffers']),
    ('postgres', 'POSTGRES_WORK_MEM', ['stack_postgres_settings.work_mem']),
    ('redis', 'REDIS_MAXMEMORY', ['ignored by the image', 'stack_redis_maxmemory_fraction']),
    ('backend', 'OLLAMA_MAX_MEMORY', ['stack_services.backend', 'OLLAMA_MAX_MEMORY']),
])
def test_fake_and_ignored_variables_are_refused(where, key, words):
    opts = options()
    if where == 'ollama_environment':
        opts['ollama_environment'] = {key: '1'}
    else:
        service = [s for s in opts['services'] if s['name'] == where][0]
        service.setdefault('environment', {})[key] = '1'
    with pytest.raises(_stack.StackError) as err:
        _stack.render(opts)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize('profile, present, absent', [
    ('stable', ['postgres', 'redis', 'ollama', 'backend', 'frontend', 'qdrant', 'autogpt', 'crewai'], []),
    ('dev', ['postgres', 'qdrant', 'autogpt'], []),
    ('emergency', ['postgres', 'redis', 'ollama', 'backend', 'frontend'], ['qdrant', 'autogpt', 'crewai']),
])
def test_profiles(profile, present, absent):
    out = render(profile=profile)
    for name in present:
        assert name in out['compose']['services']
    for name in absent:
        assert name not in out['compose']['services']
    assert out['left_out'] == absent


def test_emergency_keeps_tier1_limits_and_documents():
    stable = render()['compose']['services']
    emergency = render(profile='emergency')['compose']['services']
    for name in emergency:
        assert emergency[name] == stable[name]


def test_service_profiles_key_overrides_tiers():
    agents = [dict(AGENTS[0], profiles=['dev'])]
    assert 'autogpt' not in render(agents=agents)['compose']['services']
    assert 'autogpt' in render(agents=agents, profile='dev')['compose']['services']


@pytest.mark.parametrize('profile, expose, offset, expected', [
    ('stable', False, 0, {'ollama': ['127.0.0.1:11434:11434'], 'backend': ['127.0.0.1:8000:8000'],
                          'frontend': ['127.0.0.1:8501:8501'], 'postgres': None, 'redis': None, 'qdrant': None}),
    ('dev', False, 0, {'postgres': ['127.0.0.1:5432:5432'], 'redis': ['127.0.0.1:6379:6379'], 'qdrant': ['127.0.0.1:6333:6333']}),
    ('stable', True, 0, {'frontend': ['0.0.0.0:8501:8501']}),
    ('stable', '10.0.0.5', 20000, {'frontend': ['10.0.0.5:28501:8501']}),
])
def test_ports(profile, expose, offset, expected):
    services = render(profile=profile, expose=expose, port_offset=offset)['compose']['services']
    for name, ports in expected.items():
        assert services[name].get('ports') == ports


def test_health_urls_are_loopback_published_ports():
    out = render(port_offset=20000)
    assert {'service': 'frontend', 'url': 'http://127.0.0.1:28501/health'} in out['health']
    assert {'service': 'ollama', 'url': 'http://127.0.0.1:31434/api/version'} in out['health']
    assert not [h for h in out['health'] if h['service'] == 'qdrant']


def test_local_and_upstream_image_sets():
    local = render()['compose']['services']
    assert local['qdrant']['image'] == 'sutazai-testbed/http:latest'
    assert local['qdrant']['environment']['PORT'] == '6333'
    assert local['qdrant']['healthcheck']['test'][-1] == 'http://127.0.0.1:6333/healthz'
    images = copy.deepcopy(DEFAULTS['stack_images'])
    images['upstream'].update(backend='example/backend:1.0', frontend='example/frontend:1.0')
    upstream = render(image_set='upstream', images=images, agents=[])['compose']['services']
    assert upstream['postgres']['image'] == 'postgres:16.4-bookworm'
    assert upstream['qdrant']['healthcheck']['test'][0] == 'CMD-SHELL'
    assert 'PORT' not in upstream['qdrant'].get('environment', {})


def test_upstream_without_operator_images_is_refused():
    with pytest.raises(_stack.StackError, match="backend is the operator's own image - set stack_images.upstream.backend"):
        render(image_set='upstream', agents=[])


def test_cpusets_on_a_big_host():
    services = render(host_memory=30085 * MiB, host_cpus=12)['compose']['services']
    assert services['ollama']['cpuset'] == '6-9'
    assert services['postgres']['cpuset'] == '4-5'


def test_too_small_host_is_refused():
    with pytest.raises(_stack.StackError, match='too small'):
        render(host_memory=3 * GiB)


def test_swarm_document():
    out = render(engine='swarm', swarm_port_mode='host', agents=[dict(AGENTS[0], replicas=3)])
    services = out['compose']['services']
    for doc in services.values():
        for key in ('cgroup_parent', 'oom_score_adj', 'container_name', 'restart', 'depends_on', 'cpuset'):
            assert key not in doc
        assert doc['deploy']['update_config']['parallelism'] == 1
        assert doc['deploy']['update_config']['failure_action'] == 'rollback'
        assert 'rollback_config' in doc['deploy']
    assert services['autogpt']['deploy']['replicas'] == 3
    assert services['autogpt']['deploy']['update_config']['order'] == 'start-first'  # not published
    assert services['frontend']['deploy']['update_config']['order'] == 'stop-first'  # host-mode port
    assert services['frontend']['ports'] == [{'target': 8501, 'published': 8501, 'protocol': 'tcp', 'mode': 'host'}]
    assert 'cgroup_parent' in out['warnings'][0] and 'oom_score_adj' in out['warnings'][0]
    assert render(engine='swarm', swarm_endpoint_mode='dnsrr')['compose']['services']['redis']['deploy']['endpoint_mode'] == 'dnsrr'


@pytest.mark.parametrize('change, limits_only', [
    (lambda d: d['services']['qdrant']['deploy']['resources']['limits'].update(memory='1'), True),
    (lambda d: d['services']['qdrant'].update(cpuset='0'), True),
    (lambda d: d['services']['qdrant']['environment'].update(X='1'), False),
    (lambda d: d['services']['qdrant'].update(image='other'), False),
    # unchanged: in place too (container_limits then changes nothing, or puts back drifted limits)
    (lambda d: None, True),
])
def test_limits_only_change(change, limits_only):
    old = render()['compose']
    new = copy.deepcopy(old)
    change(new)
    assert _stack.limits_only_change(old, new) is limits_only
    assert render(applied=new)['limits_only'] is limits_only
    assert _stack.limits_only_change(None, new) is False


def test_plan_edit_is_limits_only_for_services_without_derived_settings():
    old = render()['compose']
    out = render(applied=old, plan={'services': {'qdrant': {'weight': 3}, 'backend': {'cpus': 1}}})
    assert out['limits_only'] is True
    assert out['compose']['services']['qdrant']['deploy']['resources']['limits']['memory'] == str(768 * MiB)


@pytest.mark.parametrize('bad, message', [
    ({'profile': 'big'}, 'stack_profile'),
    ({'engine': 'k8s'}, 'stack_engine'),
    ({'restart': 'sometimes'}, 'stack_restart_policy'),
    ({'agents': [{'name': 'x', 'tier': 1, 'image': 'agent'}]}, 'agents are tier 2 or 3'),
    ({'agents': [{'name': 'x', 'tier': 3, 'image': 'agent', 'colour': 'red'}]}, 'unknown key colour'),
    ({'agents': [{'name': 'Bad Name', 'tier': 3}]}, 'lower case'),
    ({'agents': [{'name': 'postgres', 'tier': 3}]}, 'listed twice'),
    ({'redis_maxmemory_fraction': 1}, 'between 0.1 and 0.9'),
    ({'ollama_preset': 'turbo'}, 'stack_ollama_preset'),
    ({'unknown_option': 1}, 'unknown option'),
])
def test_bad_input_names_the_value(bad, message):
    with pytest.raises(_stack.StackError, match=message):
        render(**bad)


def test_parse_pg_size():
    assert _stack.parse_pg_size('256MB') == 256 * MiB
    assert _stack.parse_pg_size('1GB') == GiB
    assert _stack.parse_pg_size('16384') == 128 * MiB


def test_filter_wraps_errors():
    assert stack_filter.FilterModule().filters()['stack_compose'](options())['compose']['name'] == 'sutazai'
    with pytest.raises(AnsibleFilterError, match='sutazai.ops.stack_compose: stack_profile'):
        stack_filter.stack_compose(options(profile='big'))


@pytest.mark.parametrize('oom_min, expected', [
    (-1000, {'postgres': -500, 'qdrant': 0, 'autogpt': 500}),
    # no CAP_SYS_RESOURCE: every tier raised together, the order kept
    (0, {'postgres': 0, 'qdrant': 500, 'autogpt': 1000}),
])
def test_oom_score_shift_keeps_the_tier_order(oom_min, expected):
    out = render(agents=[AGENTS[0]], oom_score_min=oom_min)
    for name, score in expected.items():
        assert out['compose']['services'][name]['oom_score_adj'] == score
    assert out['oom_score_shift'] == max(0, oom_min + 500)
    # the emergency profile (tier 1 only) is shifted the same way, so a profile switch recreates nothing
    emergency = render(agents=[AGENTS[0]], oom_score_min=oom_min, profile='emergency')
    assert emergency['compose']['services']['postgres']['oom_score_adj'] == expected['postgres']


# ---------------------------------------------------------------- a redis password where the catalogue asks for one

def test_redis_password_on_standard_input_not_in_the_file():
    services = copy.deepcopy(DEFAULTS['stack_services'])
    for entry in services:
        if entry['name'] == 'redis':
            entry['password'] = True
    result = render(services=services)
    redis = result['compose']['services']['redis']
    assert result['password_files'] == ['redis']
    assert redis['env_file'] == ['redis.env']
    assert redis['entrypoint'][:2] == ['sh', '-c'] and 'requirepass $${REDIS_PASSWORD' in redis['entrypoint'][2]
    assert '--maxmemory' in redis['command'] and not any('requirepass' in str(arg) for arg in redis['command'])
    assert render()['password_files'] == []


def test_password_only_for_redis():
    services = copy.deepcopy(DEFAULTS['stack_services'])
    services[0]['password'] = True
    with pytest.raises(_stack.StackError, match='only a redis service'):
        render(services=services)


def test_role_docs_do_not_cite_request_documents():
    for path in ('meta/argument_specs.yml', 'defaults/main.yml'):
        with open(os.path.join(ROOT, 'roles', 'stack', path), encoding='utf-8') as handle:
            assert not re.search(r'seed ?0\d\d', handle.read(), re.IGNORECASE), path
