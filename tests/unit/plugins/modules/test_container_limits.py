"""Unit tests of the container_limits module: main() with the docker SDK's real client, its HTTP requests answered by a fake engine.

`api_version` is given so the client does not ask the engine for its version when it starts; FakeEngineHTTP is a
requests transport adapter mounted on the SDK's APIClient, answering the paths the module uses like Docker 20.10
does, so the module, _docker.create_client and the SDK run as they would against a real engine. The containers have
no cgroup on this machine, so usage comes from the engine's one-shot stats - the module's fallback for remote engines.
"""

import copy
import json
import urllib.parse

import pytest
import requests
import requests.adapters

from ansible_collections.sutazai.ops.plugins.module_utils import _docker
from ansible_collections.sutazai.ops.plugins.modules import container_limits
from ansible_collections.sutazai.ops.tests.unit.plugins.modules.utils import patch_module_exits, run_main

MiB = 1024 ** 2
GiB = 1024 ** 3

HOST_CONFIG = {'Memory': 0, 'MemorySwap': 0, 'MemoryReservation': 0, 'NanoCpus': 0, 'CpuQuota': 0, 'CpuPeriod': 0, 'CpuShares': 0,
               'CpusetCpus': '', 'PidsLimit': None, 'BlkioWeight': 0, 'RestartPolicy': {'Name': 'no', 'MaximumRetryCount': 0},
               'AutoRemove': False, 'CgroupParent': ''}


class FakeEngineHTTP(requests.adapters.BaseAdapter):
    """The engine behind the SDK's client: the HTTP requests container_limits sends, answered as Docker 20.10 does."""

    def __init__(self):
        super().__init__()
        self.containers = {}
        self.updates = []
        self.calls = []
        self.down = False
        self.refuse = {}       # container name -> (status, message) its update is refused with

    def add(self, name, usage=20 * MiB, labels=None, **host_config):
        cid = (name.encode().hex() * 64)[:64]
        self.containers[cid] = {'Id': cid, 'Name': '/' + name, 'State': {'Running': True}, 'Config': {'Labels': labels or {}},
                                'HostConfig': dict(copy.deepcopy(HOST_CONFIG), **host_config), '_usage': usage}
        return cid

    def find(self, ref):
        for cid, item in self.containers.items():
            if ref in (cid, item['Name'].lstrip('/')):
                return cid
        return None

    @staticmethod
    def _answer(request, status, body):
        response = requests.Response()
        response.status_code = status
        response.url = request.url
        response.request = request
        response.reason = {200: 'OK', 404: 'Not Found', 409: 'Conflict'}.get(status, 'Error')
        response._content = json.dumps(body).encode()  # pylint: disable=protected-access
        response.headers['Content-Type'] = 'application/json'
        return response

    def send(self, request, **kwargs):  # pylint: disable=arguments-differ
        url = urllib.parse.urlsplit(request.url)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        assert path.startswith('/v1.41/'), path
        path = path[len('/v1.41'):]
        self.calls.append((request.method, path, query))
        if self.down:
            return self._answer(request, 500, {'message': 'the engine is down'})
        if request.method == 'GET' and path == '/info':
            return self._answer(request, 200, {'NCPU': 2})
        if request.method == 'GET' and path == '/containers/json':
            labels = json.loads(query['filters'])['label']
            return self._answer(request, 200, [{'Id': cid} for cid, item in self.containers.items()
                                               if all(item['Config']['Labels'].get(k) == v
                                                      for k, _s, v in (label.partition('=') for label in labels))])
        parts = path.split('/')  # ['', 'containers', ref, action]
        cid = self.find(urllib.parse.unquote(parts[2]))
        if cid is None:
            return self._answer(request, 404, {'message': 'No such container: %s' % urllib.parse.unquote(parts[2])})
        if request.method == 'GET' and parts[3] == 'json':
            return self._answer(request, 200, dict((k, copy.deepcopy(v)) for k, v in self.containers[cid].items() if not k.startswith('_')))
        if request.method == 'GET' and parts[3] == 'stats':
            assert query == {'stream': 'False', 'one-shot': 'True'}
            return self._answer(request, 200, {'memory_stats': {'usage': self.containers[cid]['_usage'] + 4 * MiB,
                                                                'stats': {'total_inactive_file': 4 * MiB}}})
        if request.method == 'POST' and parts[3] == 'update':
            assert request.headers['Content-Type'] == 'application/json'
            body = json.loads(request.body)
            name = self.containers[cid]['Name'].lstrip('/')
            if name in self.refuse:
                status, message = self.refuse[name]
                return self._answer(request, status, {'message': message})
            self.updates.append((name, body))
            host_config = self.containers[cid]['HostConfig']
            if 'Memory' in body and 'MemorySwap' not in body:
                return self._answer(request, 409, {'message': 'update the memoryswap at the same time'})
            host_config.update(dict((k, v) for k, v in body.items() if v != 0 or k == 'PidsLimit'))
            return self._answer(request, 200, {'Warnings': None})
        raise AssertionError('unexpected %s %s' % (request.method, path))

    def close(self):
        pass


@pytest.fixture(name='engine')
def fixture_engine(monkeypatch):
    for variable in ('DOCKER_HOST', 'DOCKER_TLS', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_TIMEOUT', 'DOCKER_API_VERSION'):
        monkeypatch.delenv(variable, raising=False)
    fake = FakeEngineHTTP()
    real_create_client = _docker.create_client
    made = []

    def create_client(options=None, environ=None):
        client = real_create_client(options, environ)
        client.api.mount('http+docker://', fake)
        made.append(options)
        return client

    monkeypatch.setattr(_docker, 'create_client', create_client)
    patch_module_exits(monkeypatch)
    fake.made = made
    return fake


def run(args, check=False, diff=False):
    """Run main() with `args`; return ('exit' | 'fail', result)."""
    result = run_main(container_limits.main, dict(args, api_version='1.41'), check, diff)
    return ('fail' if result.pop('failed') else 'exit'), result


def test_limits_applied_in_one_task_then_unchanged(engine):
    for index in range(3):
        engine.add('agent-%d' % index)
    containers = [{'name': 'agent-%d' % i, 'memory': '256M', 'cpus': 0.5, 'pids_limit': 128} for i in range(3)]
    kind, result = run({'containers': containers}, diff=True)
    assert kind == 'exit', result
    assert result['changed'] is True
    assert engine.updates == [('agent-%d' % i, {'Memory': 256 * MiB, 'MemorySwap': 512 * MiB, 'NanoCpus': 500000000, 'PidsLimit': 128})
                              for i in range(3)]
    assert [c['usage'] for c in result['containers']] == [20 * MiB] * 3
    assert result['containers'][0]['after'] == {'memory': 256 * MiB, 'memory_swap': 512 * MiB, 'cpus': 0.5, 'pids_limit': 128}
    assert result['diff'][0] == {'before_header': 'agent-0', 'after_header': 'agent-0',
                                 'before': {'memory': None, 'memory_swap': None, 'cpus': None, 'pids_limit': None},
                                 'after': {'memory': '256M', 'memory_swap': '512M', 'cpus': 0.5, 'pids_limit': 128}}
    assert [call[1] for call in engine.calls].count('/info') == 1
    kind, again = run({'containers': containers}, diff=True)
    assert kind == 'exit' and again['changed'] is False and again['diff'] == [] and len(engine.updates) == 3


def test_no_diff_without_diff_mode(engine):
    engine.add('agent-0')
    kind, result = run({'containers': [{'name': 'agent-0', 'cpus': 1}]})
    assert kind == 'exit' and result['changed'] is True and 'diff' not in result


def test_check_mode_changes_nothing_and_reports_drift(engine):
    engine.add('sutazai-postgres', Memory=2 * GiB, MemorySwap=4 * GiB)
    kind, result = run({'containers': [{'name': 'sutazai-postgres', 'memory': '1G'}]}, check=True)
    assert kind == 'exit' and result['changed'] is True
    assert engine.updates == []
    assert result['drift'] == {'sutazai-postgres': {'memory': {'before': 2 * GiB, 'after': GiB},
                                                    'memory_swap': {'before': 4 * GiB, 'after': 2 * GiB}}}


def test_refusal_lists_every_offender_and_changes_nothing(engine):
    engine.add('agent-0')
    engine.add('agent-1', usage=200 * MiB)
    containers = [{'name': 'agent-0', 'memory': '100M', 'cpus': 4}, {'name': 'agent-1', 'memory': '100M'}, {'name': 'ghost', 'memory': '1G'}]
    kind, result = run({'containers': containers})
    assert kind == 'fail'
    assert engine.updates == []
    assert result['problems'] == [
        'agent-0: cpus: 4.0 is above the 2 CPUs of the host',
        'agent-1: memory 100M is below the 200M it uses now; the kernel would have to swap it out or OOM-kill it (force=true to set it anyway)',
        'ghost: no such container',
    ]
    assert result['msg'].startswith('container_limits changed no container: 3 problems: ')
    assert result['changed'] is False and 'diff' not in result


def test_force_sets_the_limit_below_usage(engine):
    engine.add('agent-1', usage=200 * MiB)
    kind, result = run({'containers': [{'name': 'agent-1', 'memory': '100M'}], 'force': True})
    assert kind == 'exit' and result['changed'] is True
    assert engine.updates == [('agent-1', {'Memory': 100 * MiB, 'MemorySwap': 200 * MiB})]


def test_selector_with_limits(engine):
    engine.add('agent-0', labels={'sutazai.tier': '3'})
    engine.add('postgres', labels={'sutazai.tier': '1'})
    engine.add('agent-1', labels={'sutazai.tier': '3'})
    kind, result = run({'selector': {'sutazai.tier': 3}, 'limits': {'memory': '256M', 'cpus': 0.5}})
    assert kind == 'exit', result
    assert [c['name'] for c in result['containers']] == ['agent-0', 'agent-1']
    assert [name for name, _body in engine.updates] == ['agent-0', 'agent-1']


@pytest.mark.parametrize('args, message', [
    ({'selector': {}, 'limits': {'cpus': 1}}, 'selector is empty, so it would match every container'),
    ({'selector': {'sutazai.tier': 3}}, 'missing parameter(s) required by \'selector\': limits'),
    ({'selector': {'sutazai.tier': 3}, 'limits': {'cpus': 1}, 'containers': [{'name': 'x'}]}, 'parameters are mutually exclusive: containers|selector'),
    ({}, 'one of the following is required: containers, selector'),
    ({'containers': [{'name': 'x', 'memmory': '1G'}]}, 'memmory'),
    ({'selector': {'a': 'b'}, 'limits': {'name': 'x'}}, 'name'),
])
def test_argument_errors(engine, args, message):
    kind, result = run(args)
    assert kind == 'fail'
    assert message in result['msg']
    assert engine.updates == []


def test_id_alias_and_docker_options(engine):
    cid = engine.add('agent-0')
    kind, result = run({'containers': [{'id': cid, 'cpus': 1}], 'docker_host': 'unix:///var/run/docker.sock', 'timeout': 30})
    assert kind == 'exit' and result['containers'][0]['name'] == 'agent-0' and result['containers'][0]['id'] == cid
    assert engine.made[-1]['docker_host'] == 'unix:///var/run/docker.sock' and engine.made[-1]['timeout'] == 30


def test_engine_down_is_a_clear_failure(engine):
    engine.down = True
    kind, result = run({'containers': [{'name': 'agent-0', 'cpus': 1}]})
    assert kind == 'fail'
    assert result['msg'] == 'container_limits could not talk to the Docker engine at unix:///var/run/docker.sock: the engine is down'


def test_engine_refusal_mid_task_is_reported(engine):
    engine.add('agent-0')
    engine.add('agent-1')
    engine.refuse['agent-1'] = (409, 'Cannot update container: conflict')
    kind, result = run({'containers': [{'name': 'agent-0', 'cpus': 1}, {'name': 'agent-1', 'cpus': 1}]})
    assert kind == 'fail'
    assert result['msg'] == 'the engine refused the update of agent-1: Cannot update container: conflict. Already changed: agent-0.'
    assert [c['changed'] for c in result['containers']] == [True, False]
    assert result['containers'][1]['error'] == 'Cannot update container: conflict'


def test_documentation_parses_and_matches_the_options():
    import yaml  # pylint: disable=import-outside-toplevel
    doc = yaml.safe_load(container_limits.DOCUMENTATION)
    yaml.safe_load(container_limits.EXAMPLES)
    returned = yaml.safe_load(container_limits.RETURN)
    assert set(doc['options']) == {'containers', 'selector', 'limits', 'force'}
    assert doc['extends_documentation_fragment'] == ['sutazai.ops.attributes', 'sutazai.ops.attributes.idempotent', 'sutazai.ops.docker']
    assert doc['attributes']['idempotent']['support'] == 'full'
    options = set(doc['options']['containers']['suboptions'])
    assert options == {'name'} | set(container_limits._limit_options())  # pylint: disable=protected-access
    assert set(doc['options']['limits']['suboptions']) == set(container_limits._limit_options())  # pylint: disable=protected-access
    assert {'containers', 'drift', 'engine_warnings', 'problems'} <= set(returned)
