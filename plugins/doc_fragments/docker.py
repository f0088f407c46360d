# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation fragment: how sutazai.ops modules reach the Docker engine (module_utils/_docker.py)."""


class ModuleDocFragment:
    """The Docker connection options every sutazai.ops module that talks to Docker has."""

    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker engine - V(unix:///var/run/docker.sock), V(tcp://192.0.2.5:2376) or V(ssh://user@host)
        (which needs the Python package C(paramiko)).
      - Taken from E(DOCKER_HOST) when not given, else V(unix:///var/run/docker.sock).
    type: str
    aliases: [docker_url]
  tls:
    description:
      - Talk TLS to the engine without checking its certificate. O(validate_certs=true) turns TLS on as well.
      - Taken from E(DOCKER_TLS) when not given; as the docker CLI reads it, any non-empty value turns it on.
    type: bool
  validate_certs:
    description:
      - Talk TLS to the engine and check its certificate against O(ca_path) (or the system's CAs when there is none).
      - Taken from E(DOCKER_TLS_VERIFY) when not given; as the docker CLI reads it, any non-empty value (even V(0)) turns it on.
    type: bool
    aliases: [tls_verify]
  ca_path:
    description:
      - The CA certificate the engine's certificate is checked against.
      - With TLS on and not given, C(ca.pem) of E(DOCKER_CERT_PATH) (else of C(~/.docker)) when that file exists, as the docker CLI does.
    type: path
    aliases: [ca_cert, tls_ca_cert]
  client_cert:
    description:
      - The client certificate for TLS. Needs O(client_key).
      - With TLS on and not given, C(cert.pem) of E(DOCKER_CERT_PATH) (else of C(~/.docker)) when that file exists.
    type: path
    aliases: [tls_client_cert, cert_path]
  client_key:
    description:
      - The key of O(client_cert).
      - With TLS on and not given, C(key.pem) of E(DOCKER_CERT_PATH) (else of C(~/.docker)) when that file exists.
    type: path
    aliases: [tls_client_key, key_path]
  timeout:
    description:
      - Seconds to wait for an answer of the engine, per call.
      - Taken from E(DOCKER_TIMEOUT) when not given, else V(60).
    type: int
  api_version:
    description:
      - The engine API version to speak, such as V(1.41), or V(auto) to use the engine's own.
      - Taken from E(DOCKER_API_VERSION) when not given, else V(auto).
    type: str
    aliases: [docker_api_version]
requirements:
  - The Docker SDK for Python (C(docker)) 7 or later on the managed host.
notes:
  - The same options, read the same way, are used by every module of the collection that talks to Docker and by the
    monitor daemon, so a host that works for one works for all.
"""

    # The same options for a module that also talks to another service (memory_guard, ollama_model): every name but
    # docker_host gets the docker_ prefix, so that timeout and validate_certs stay the other service's.
    PREFIXED = r"""
options:
  docker_host:
    description:
      - The Docker engine - V(unix:///var/run/docker.sock), V(tcp://192.0.2.5:2376) or V(ssh://user@host)
        (which needs the Python package C(paramiko)).
      - Taken from E(DOCKER_HOST) when not given, else V(unix:///var/run/docker.sock).
    type: str
    aliases: [docker_url]
  docker_tls:
    description:
      - Talk TLS to the engine without checking its certificate. O(docker_validate_certs=true) turns TLS on as well.
      - Taken from E(DOCKER_TLS) when not given; as the docker CLI reads it, any non-empty value turns it on.
    type: bool
  docker_validate_certs:
    description:
      - Talk TLS to the engine and check its certificate against O(docker_ca_path) (or the system's CAs when there is none).
      - Taken from E(DOCKER_TLS_VERIFY) when not given; as the docker CLI reads it, any non-empty value (even V(0)) turns it on.
    type: bool
  docker_ca_path:
    description:
      - The CA certificate the engine's certificate is checked against.
      - With TLS on and not given, C(ca.pem) of E(DOCKER_CERT_PATH) (else of C(~/.docker)) when that file exists, as the docker CLI does.
    type: path
  docker_client_cert:
    description:
      - The client certificate for TLS. Needs O(docker_client_key).
      - With TLS on and not given, C(cert.pem) of E(DOCKER_CERT_PATH) (else of C(~/.docker)) when that file exists.
    type: path
  docker_client_key:
    description:
      - The key of O(docker_client_cert).
      - With TLS on and not given, C(key.pem) of E(DOCKER_CERT_PATH) (else of C(~/.docker)) when that file exists.
    type: path
  docker_timeout:
    description:
      - Seconds to wait for an answer of the engine, per call.
      - Taken from E(DOCKER_TIMEOUT) when not given, else V(60).
    type: int
  docker_api_version:
    description:
      - The engine API version to speak, such as V(1.41), or V(auto) to use the engine's own.
      - Taken from E(DOCKER_API_VERSION) when not given, else V(auto).
    type: str
requirements:
  - The Docker SDK for Python (C(docker)) 7 or later on the managed host.
notes:
  - The same options, read the same way, are used by every module of the collection that talks to Docker and by the
    monitor daemon, so a host that works for one works for all.
"""
