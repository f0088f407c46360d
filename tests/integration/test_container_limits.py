"""container_limits on the real engine: 30 containers of the local HTTP image, limits changed in place in one task.

The fleet: sutazai-hb-limits-00 .. sutazai-hb-limits-29, of which sutazai-hb-limits-07 holds 200 MB of real memory (HOLD_MB),
sutazai-hb-limits-10 .. 14 were started with -m 64m (so raising them needs MemorySwap in the same call) and
sutazai-hb-limits-29 was started with --cpu-quota 25000 (the engine refuses NanoCpus on it). Every limit the
module sets is read back with `docker inspect`; no container is recreated or restarted (same id, same
StartedAt, RestartCount 0). Everything carries the label sutazai.test=sutazai-hb-limits and is removed at the end,
even when a test fails.
"""

import concurrent.futures
import json
import os
import time
import urllib.request

import pytest

docker = pytest.importorskip('docker')

IMAGE = 'sutazai-testbed/http:latest'
LABEL = 'sutazai.test'
PREFIX = 'sutazai-hb-limits-'
TEST_LABEL = 'sutazai-hb-limits'
COUNT = 30
HOLDER = PREFIX + '07'
SMALL = [PREFIX + '%02d' % i for i in range(10, 15)]
QUOTA = PREFIX + '29'
MiB = 1024 * 1024
NAMES = [PREFIX + '%02d' % i for i in range(COUNT)]


def _remove_all(client):
    containers = client.containers.list(all=True, filters={'label': '%s=%s' % (LABEL, TEST_LABEL)})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: c.remove(force=True), containers))


def _start(client, name):
    kwargs = {'name': name, 'detach': True, 'labels': {LABEL: TEST_LABEL}}
    if name == HOLDER:
        kwargs['environment'] = {'HOLD_MB': '200'}
    if name in SMALL:
        kwargs['mem_limit'] = '64m'
    if name == QUOTA:
        kwargs['cpu_quota'] = 25000
    return client.containers.run(IMAGE, **kwargs)


def _held_mb(api, name):
    address = api.inspect_container(name)['NetworkSettings']['IPAddress']
    with urllib.request.urlopen('http://%s:8080/health' % address, timeout=5) as resp:
        return json.loads(resp.read())['held_mb']


@pytest.fixture(name='fleet', scope='module')
def fixture_fleet():
    """The 30 containers, started in parallel; the holder holding its 200 MB."""
    client = docker.from_env(timeout=120)
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip('%s is not built; run `make testbed`' % IMAGE)
    _remove_all(client)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda name: _start(client, name), NAMES))
        deadline = time.time() + 60
        while True:
            try:
                if _held_mb(client.api, HOLDER) >= 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError('%s did not come to hold 200 MB within 60 s' % HOLDER)
            time.sleep(0.5)
        yield client
    finally:
        _remove_all(client)
        client.close()


def inspect_all(client, names=NAMES):
    return dict((name, client.api.inspect_container(name)) for name in names)


def identity(inspected):
    """What a recreate or a restart would change."""
    return dict((name, (item['Id'], item['State']['StartedAt'], item['RestartCount'], item['State']['Running']))
                for name, item in inspected.items())


def test_limits_applied_to_30_containers_in_one_task(fleet, module_runner):
    before = inspect_all(fleet)
    containers = [{'name': name, 'memory': '256M', 'cpus': 0.5} for name in NAMES]
    result = module_runner('container_limits', {'containers': containers}, diff=True)
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert [c['name'] for c in result['containers']] == NAMES
    assert all(c['changed'] for c in result['containers'])
    assert len(result['diff']) == COUNT
    holder = next(c for c in result['containers'] if c['name'] == HOLDER)
    assert holder['usage'] >= 200 * MiB

    after = inspect_all(fleet)
    assert identity(after) == identity(before)  # nothing recreated, restarted or stopped
    for name, item in after.items():
        host_config = item['HostConfig']
        assert host_config['Memory'] == 256 * MiB, name
        assert host_config['MemorySwap'] == 512 * MiB, name  # the -m 64m ones kept their 2:1 swap ratio
        if name == QUOTA:
            assert (host_config['NanoCpus'], host_config['CpuQuota'], host_config['CpuPeriod']) == (0, 50000, 100000)
        else:
            assert host_config['NanoCpus'] == 500000000, name


def test_rerun_changes_nothing(fleet, module_runner):
    containers = [{'name': name, 'memory': '256M', 'cpus': 0.5} for name in NAMES]
    result = module_runner('container_limits', {'containers': containers})
    assert not result.get('failed'), result
    assert result['changed'] is False
    assert not any(c['changed'] for c in result['containers'])
    assert result['drift'] == {}


def test_refused_when_one_container_uses_more_than_its_new_limit(fleet, module_runner):
    before = inspect_all(fleet)
    containers = [{'name': name, 'memory': '100M', 'cpus': 1} for name in NAMES]
    result = module_runner('container_limits', {'containers': containers})
    assert result.get('failed') is True
    assert result['changed'] is False
    assert len(result['problems']) == 1
    assert result['problems'][0].startswith('%s: memory 100M is below the 2' % HOLDER), result['problems']
    assert HOLDER in result['msg'] and 'changed no container' in result['msg']
    after = inspect_all(fleet)
    for name in NAMES:  # no container changed, not even the 29 that would have been fine
        assert after[name]['HostConfig'] == before[name]['HostConfig'], name


def test_check_mode_changes_nothing(fleet, module_runner):
    before = inspect_all(fleet)
    containers = [{'name': name, 'memory': '384M', 'cpus': 1} for name in NAMES]
    result = module_runner('container_limits', {'containers': containers}, check=True, diff=True)
    assert not result.get('failed'), result
    assert result['changed'] is True
    assert sorted(result['drift']) == NAMES
    assert result['drift'][PREFIX + '00']['memory'] == {'before': 256 * MiB, 'after': 384 * MiB}
    assert result['drift'][QUOTA]['cpus'] == {'before': 0.5, 'after': 1.0}
    after = inspect_all(fleet)
    for name in NAMES:
        assert after[name]['HostConfig'] == before[name]['HostConfig'], name


def test_selector_gives_every_match_the_same_limits(fleet, module_runner):
    result = module_runner('container_limits', {'selector': {LABEL: TEST_LABEL}, 'limits': {'cpus': 0.75, 'pids_limit': 200}})
    assert not result.get('failed'), result
    assert sorted(c['name'] for c in result['containers']) == NAMES
    after = inspect_all(fleet)
    for name, item in after.items():
        assert item['HostConfig']['PidsLimit'] == 200, name
        if name == QUOTA:
            assert item['HostConfig']['CpuQuota'] == 75000
        else:
            assert item['HostConfig']['NanoCpus'] == 750000000, name
    again = module_runner('container_limits', {'selector': {LABEL: TEST_LABEL}, 'limits': {'cpus': 0.75, 'pids_limit': 200}})
    assert again['changed'] is False


def test_cpus_on_a_container_created_with_cpu_quota_and_period(fleet, module_runner):
    name = PREFIX + 'quota-period'
    container = fleet.containers.run(IMAGE, name=name, detach=True, labels={LABEL: TEST_LABEL}, cpu_quota=50000, cpu_period=50000)
    try:
        before = identity({name: fleet.api.inspect_container(name)})
        result = module_runner('container_limits', {'containers': [{'name': name, 'cpus': 1.5}]})
        assert not result.get('failed'), result
        assert result['containers'][0]['before'] == {'cpus': 1.0}
        assert result['containers'][0]['after'] == {'cpus': 1.5}
        item = fleet.api.inspect_container(name)
        assert (item['HostConfig']['NanoCpus'], item['HostConfig']['CpuQuota'], item['HostConfig']['CpuPeriod']) == (0, 75000, 50000)
        assert identity({name: item}) == before
        quota_file = '/sys/fs/cgroup/cpu/docker/%s/cpu.cfs_quota_us' % container.id  # cgroup v1, cgroupfs driver (the test bed)
        if os.path.exists(quota_file):
            with open(quota_file, encoding='ascii') as handle:
                assert int(handle.read()) == 75000  # in force in the kernel, not only in the engine's record
        again = module_runner('container_limits', {'containers': [{'name': name, 'cpus': 1.5}]})
        assert again['changed'] is False
    finally:
        container.remove(force=True)


def test_unknown_container_and_bad_values_are_listed_together(fleet, module_runner):
    containers = [{'name': PREFIX + '00', 'memory': 'lots'}, {'name': PREFIX + 'ghost', 'cpus': 1}, {'name': PREFIX + '01', 'cpus': 64}]
    result = module_runner('container_limits', {'containers': containers})
    assert result.get('failed') is True
    assert result['problems'] == [
        "%s00: memory: 'lots' is not a size; use bytes or a number with a unit such as 512M, 1.5GiB or 8G" % PREFIX,
        '%sghost: no such container' % PREFIX,
        '%s01: cpus: 64.0 is above the %d CPUs of the host' % (PREFIX, fleet.info()['NCPU']),
    ]


# ---------------------------------------------------------------- the engine over TLS, as the docker CLI reaches it

def _certificates(directory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `directory`:
    ca.pem, cert.pem, key.pem (the client's, the names DOCKER_CERT_PATH holds) and server-cert.pem, server-key.pem."""
    import datetime  # pylint: disable=import-outside-toplevel
    import ipaddress  # pylint: disable=import-outside-toplevel
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # pylint: disable=import-outside-toplevel

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def build(subject, key, issuer, issuer_key, ca, extra):
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer)).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                          encipher_only=False, decipher_only=False), critical=True)
        for extension in extra:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(file_name, data):
        path = os.path.join(directory, file_name)
        with open(path, 'wb') as handle:
            handle.write(data)
        return path

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _index in range(3))
    ca = build('sutazai-hb test CA', ca_key, 'sutazai-hb test CA', ca_key, True, [])
    server = build('127.0.0.1', server_key, 'sutazai-hb test CA', ca_key, False,
                   [x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])])
    client = build('sutazai-hb client', client_key, 'sutazai-hb test CA', ca_key, False,
                   [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])])
    write('ca.pem', ca.public_bytes(serialization.Encoding.PEM))
    write('cert.pem', client.public_bytes(serialization.Encoding.PEM))
    write('key.pem', pem_key(client_key))
    write('server-cert.pem', server.public_bytes(serialization.Encoding.PEM))
    write('server-key.pem', pem_key(server_key))


class TlsEngine:
    """The engine's socket behind a TLS listener on 127.0.0.1 that wants a client certificate of the test CA (as dockerd
    --tlsverify does); records the handshakes it refused. Runs until stop()."""

    def __init__(self, certs, upstream='/var/run/docker.sock'):
        import ssl  # pylint: disable=import-outside-toplevel
        import socket  # pylint: disable=import-outside-toplevel
        import threading  # pylint: disable=import-outside-toplevel
        self._ssl, self._socket, self._threading = ssl, socket, threading
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(os.path.join(certs, 'server-cert.pem'), os.path.join(certs, 'server-key.pem'))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(os.path.join(certs, 'ca.pem'))
        self.upstream = upstream
        self.refused = []
        self.served = 0
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _address = self.listener.accept()
            except OSError:
                continue
            self._threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        import select  # pylint: disable=import-outside-toplevel
        conn.settimeout(30)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (self._ssl.SSLError, OSError) as exc:
            self.refused.append(str(exc))
            conn.close()
            return
        self.served += 1
        upstream = self._socket.socket(self._socket.AF_UNIX)
        upstream.connect(self.upstream)
        try:
            ends = {tls: upstream, upstream: tls}
            while not self.stopping.is_set():
                if tls.pending():
                    readable = [tls]
                else:
                    readable, _w, _x = select.select(list(ends), [], [], 0.5)
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    ends[end].sendall(data)
        except OSError:
            return
        finally:
            upstream.close()
            tls.close()

    def stop(self):
        self.stopping.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture(name='tls_engine')
def fixture_tls_engine(tmp_path):
    certs = tmp_path / 'certs'
    certs.mkdir()
    _certificates(str(certs))
    engine = TlsEngine(str(certs))
    engine.certs = str(certs)
    try:
        yield engine
    finally:
        engine.stop()


def test_engine_over_tls_from_the_docker_cli_environment(fleet, module_runner, tls_engine):
    """DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem), read as the docker CLI reads them."""
    environment = {'DOCKER_HOST': 'tcp://127.0.0.1:%d' % tls_engine.port, 'DOCKER_TLS_VERIFY': '1', 'DOCKER_CERT_PATH': tls_engine.certs}
    result = module_runner('container_limits', {'containers': [{'name': NAMES[0], 'pids_limit': 321}]}, extra_env=environment)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True and tls_engine.served >= 1 and tls_engine.refused == []
    assert fleet.api.inspect_container(NAMES[0])['HostConfig']['PidsLimit'] == 321


def test_engine_over_tls_from_options_and_a_wrong_ca_is_refused(fleet, module_runner, tls_engine, tmp_path):
    args = {'containers': [{'name': NAMES[1], 'pids_limit': 333}], 'docker_host': 'tcp://127.0.0.1:%d' % tls_engine.port,
            'validate_certs': True, 'ca_path': os.path.join(tls_engine.certs, 'ca.pem'),
            'client_cert': os.path.join(tls_engine.certs, 'cert.pem'), 'client_key': os.path.join(tls_engine.certs, 'key.pem')}
    result = module_runner('container_limits', args)
    assert not result.get('failed'), result.get('msg')
    assert fleet.api.inspect_container(NAMES[1])['HostConfig']['PidsLimit'] == 333
    # another CA: the engine's certificate is not trusted, and nothing is changed
    other = tmp_path / 'other'
    other.mkdir()
    _certificates(str(other))
    wrong = module_runner('container_limits', dict(args, ca_path=str(other / 'ca.pem'), containers=[{'name': NAMES[1], 'pids_limit': 444}]))
    assert wrong['failed'] is True and 'tcp://127.0.0.1:%d (TLS, certificate checked)' % tls_engine.port in wrong['msg']
    assert 'CERTIFICATE_VERIFY_FAILED' in wrong['msg'] or 'certificate verify failed' in wrong['msg']
    assert fleet.api.inspect_container(NAMES[1])['HostConfig']['PidsLimit'] == 333
    # without a client certificate the engine refuses the handshake
    anonymous = module_runner('container_limits', dict(args, client_cert=None, client_key=None, containers=[{'name': NAMES[1], 'pids_limit': 444}]))
    assert anonymous['failed'] is True and tls_engine.refused


def test_unreachable_engine_is_a_clear_failure_naming_it(module_runner):
    result = module_runner('container_limits', {'containers': [{'name': 'x', 'cpus': 1}], 'docker_host': 'unix:///nonexistent/docker.sock'})
    assert result['failed'] is True
    assert 'unix:///nonexistent/docker.sock' in result['msg'] and 'Traceback' not in result.get('module_stderr', '')
