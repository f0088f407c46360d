# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pull, delete, load, unload and create tuned variants of Ollama models, checking that a model fits before loading it."""

DOCUMENTATION = r"""
module: ollama_model
short_description: Pull, delete, load, unload and create tuned variants of Ollama models
version_added: 0.1.0
description:
  - Manages one model of an Ollama server over its HTTP API (C(/api/tags), C(/api/ps), C(/api/pull), C(/api/create),
    C(/api/show), C(/api/generate), C(/api/delete)).
  - Names are compared as Ollama compares them, case-insensitively, after normalisation
    (V(tinyllama), V(library/tinyllama) and V(registry.ollama.ai/library/tinyllama:latest) are all V(tinyllama:latest)).
  - Builds tuned variants (a model made O(from) another with its own O(parameters), O(system) and O(template)) and
    re-creates one only when what it holds differs from what is asked.
  - Before loading a model it checks that the model fits in the memory available to Ollama, because Ollama does not
    check on CPU-only hosts and the host or its container is OOM-killed instead. See O(memory_check).
  - A busy server (HTTP 503, queue full) is retried 5 times with an exponential backoff (0.5 s up to 8 s) before the module fails.
author:
  - sutazai.ops maintainers (@sutazai)
extends_documentation_fragment:
  - sutazai.ops.attributes
  - sutazai.ops.attributes.idempotent
  - sutazai.ops.docker.prefixed
attributes:
  check_mode:
    support: partial
    details:
      - With O(state=latest) on a model that exists, check mode cannot know whether the registry has a newer version
        without pulling it, and reports no change (the real run may pull one).
      - Every other state is predicted exactly, the digest of a model that would be pulled excepted (V(null)).
  diff_mode:
    support: full
    details:
      - Shows whether the model is present, its digest, whether it is loaded and its parameters, before and after.
  idempotent:
    support: full
    details:
      - A second run with the same arguments changes nothing; with O(state=latest) it pulls again and reports a change only
        when the registry has a new digest.
options:
  name:
    description:
      - The model, in any form Ollama accepts (V(tinyllama), V(llama3.2:3b), V(user/model:tag), V(hf.co/user/repo:Q4_K_M)).
        A missing tag means V(latest).
      - With O(from), the name of the variant to create.
    type: str
    required: true
  state:
    description:
      - V(present) pulls the model when no model of that name exists (it never re-pulls). With O(from), creates the
        variant when it is missing or differs.
      - V(latest) pulls the model and reports a change only when its digest in C(/api/tags) changed.
      - V(loaded) makes the model present as V(present) does, then, unless it is loaded already (listed by C(/api/ps)),
        checks that it fits (O(memory_check)) and loads it for O(keep_alive).
      - V(unloaded) asks Ollama to unload the model and waits, up to O(timeout) seconds, until C(/api/ps) no longer lists it.
      - V(absent) unloads the model if it is loaded and deletes it. A model that does not exist is no change.
    type: str
    choices: [present, absent, loaded, unloaded, latest]
    default: present
  from:
    description:
      - Make O(name) a tuned variant of this model (C(/api/create) with C(from)). A missing base model is pulled first.
      - The variant is (re-)created when it is missing, when one of O(parameters) differs from the variant's
        (values compared as numbers, the order does not matter), when a parameter it has is neither asked for nor
        inherited from the base, or when O(system) or O(template) differ.
      - Only with O(state=present) or O(state=loaded); ignored with O(state=absent) and O(state=unloaded).
    type: str
  parameters:
    description:
      - Parameters of the variant, such as V(num_ctx), V(num_thread), V(temperature) or V(top_p). Needs O(from).
      - 'Runtime: V(num_keep), V(seed), V(num_predict), V(top_k), V(top_p), V(min_p), V(typical_p), V(repeat_last_n),
        V(temperature), V(repeat_penalty), V(presence_penalty), V(frequency_penalty), V(stop) (a string or a list).'
      - 'Load-time (changing one reloads the model): V(num_ctx), V(num_batch), V(num_gpu), V(main_gpu), V(use_mmap), V(num_thread).'
      - Any other name is refused with the list of valid ones, changing nothing. Parameters the variant inherits from its base and
        that are not given here keep the base's values.
    type: dict
  system:
    description:
      - The system prompt of the variant. Needs O(from). Omitted, the variant keeps the base's and it is not compared.
    type: str
  template:
    description:
      - The prompt template of the variant (Go template syntax). Needs O(from). Omitted, the variant keeps the base's and it is not compared.
    type: str
  keep_alive:
    description:
      - How long the model stays loaded after O(state=loaded), as the API takes it.
      - A number is seconds; a negative number (V(-1)) keeps the model loaded until it is unloaded.
      - A string is a duration with a unit (V(5m), V(24h), V(-1m) for ever).
      - A number in a string (V("-1"), V("5")) is refused, as the API refuses it, with a suggestion. V(0) is refused with
        O(state=loaded), as it would unload the model.
      - Omitted, the server's default (C(OLLAMA_KEEP_ALIVE), V(5m) unless set) applies.
    type: raw
  ollama_host:
    description:
      - The Ollama server, as a URL (V(http://127.0.0.1:11434)) or in any form of C(OLLAMA_HOST) (V(127.0.0.1:11434), V(myhost),
        V(0.0.0.0:11434), which is reached on loopback).
      - As in Ollama, a URL with a scheme and without a port means port 80 (http) or 443 (https); a bare host means port 11434.
      - Taken from the E(OLLAMA_HOST) environment variable when not given, else V(http://127.0.0.1:11434).
      - The same option, read the same way, as O(sutazai.ops.memory_guard#module:ollama_host).
    type: str
    aliases: [host]
  timeout:
    description:
      - Seconds to wait for an answer from the server, for each read. A pull streams progress lines, so a long pull only
        times out when the server sends nothing for this long.
      - Also the longest time O(state=unloaded) and O(state=absent) wait for a model to leave C(/api/ps).
    type: int
    default: 120
  validate_certs:
    description:
      - Check the TLS certificate of an V(https) O(ollama_host).
    type: bool
    default: true
  headers:
    description:
      - Extra HTTP headers for every request, such as C(Authorization) for a proxy in front of Ollama.
      - Their values are kept out of the logs.
    type: dict
  memory_check:
    description:
      - Before loading a model, check that it fits in the memory available to Ollama and fail, loading nothing, when it does not.
      - The model size is its size in C(/api/tags) (its size on disk, a lower bound of what loading it takes).
      - The memory available is the host's C(MemAvailable) and, when Ollama runs in a container the module can see
        (O(container), or found by the published port of O(ollama_host)), the headroom of that container's memory cgroup
        (its limit, or a parent cgroup's, minus its usage without inactive file cache); the smaller of the two counts.
      - The host figure is only meaningful when Ollama runs on the managed host. When O(ollama_host) is not an address of the
        managed host and no O(container) is given, the check is skipped with a warning.
      - V(false) skips the check.
    type: bool
    default: true
  container:
    description:
      - The name or id of the Docker container Ollama runs in, for the memory check. Needs the Docker SDK for Python
        and access to the Docker engine of the managed host (O(docker_host) and the other C(docker_) options).
      - Omitted, the module looks for it when O(ollama_host) is an address of this host, the Docker SDK for Python is installed
        and the engine's socket is usable, a running container that publishes the port of O(ollama_host), or the only
        running container with C(ollama) in its name or image that uses the host network. If none is found, only the host
        figure is used. The engine is the one of O(docker_host), reached with the other C(docker_) options.
    type: str
notes:
  - "A pull of a model that does not exist in the registry fails with Ollama's error (C(pull model manifest: file does not exist))."
  - The module talks to the API with a client of the collection (Python standard library only) that the memory guard shares;
    it does not need the C(ollama) command.
  - Ollama copies the parameters of the base model into a variant; a parameter given in O(parameters) overrides the base's.
requirements:
  - The Docker SDK for Python (C(docker)), only to find the Ollama container for the memory check.
seealso:
  - name: Ollama API
    description: The HTTP API of Ollama.
    link: https://github.com/ollama/ollama/blob/main/docs/api.md
"""

EXAMPLES = r"""
- name: Make sure tinyllama is present (pulled if missing, never re-pulled)
  sutazai.ops.ollama_model:
    name: tinyllama

- name: Pull llama3.2:3b again when the registry has a newer version
  sutazai.ops.ollama_model:
    name: llama3.2:3b
    state: latest

- name: The llama3.2-prod variant of the stable profile (re-created only when a value differs)
  sutazai.ops.ollama_model:
    name: llama3.2-prod
    from: llama3.2:3b
    parameters:
      num_thread: 4
      num_ctx: 2048
      temperature: 0.7
      top_p: 0.9
    system: You are a concise assistant for the SutazAI platform.

- name: Load tinyllama for 10 minutes, refusing if it does not fit in the memory left to the Ollama container
  sutazai.ops.ollama_model:
    name: tinyllama
    state: loaded
    keep_alive: 10m
    container: ollama

- name: Keep the variant loaded until it is unloaded
  sutazai.ops.ollama_model:
    name: llama3.2-prod
    from: llama3.2:3b
    parameters:
      num_ctx: 2048
    state: loaded
    keep_alive: -1

- name: Unload codellama:7b to free its memory (waits until it is gone from /api/ps)
  sutazai.ops.ollama_model:
    name: codellama:7b
    state: unloaded

- name: Delete qwen2.5:3b
  sutazai.ops.ollama_model:
    name: qwen2.5:3b
    state: absent

- name: Through a TLS proxy in front of Ollama that wants a bearer token
  sutazai.ops.ollama_model:
    name: tinyllama
    ollama_host: https://ollama.internal.example:8443
    headers:
      Authorization: "Bearer {{ ollama_proxy_token }}"
"""

RETURN = r"""
model:
  description: The name of the model, normalised to its shortest form.
  returned: always
  type: str
  sample: tinyllama:latest
digest:
  description: The digest of the model in C(/api/tags); V(null) when it does not exist (or, in check mode, is not pulled yet).
  returned: always
  type: str
  sample: 2644915ede352ea7bdfaff0bfac0be74c719d5d5202acb63a6fb095b52f394a4
size:
  description: The size of the model in bytes, from C(/api/tags); V(null) when it does not exist.
  returned: always
  type: int
  sample: 637700138
loaded:
  description: Whether C(/api/ps) lists the model.
  returned: always
  type: bool
  sample: true
expires_at:
  description: When Ollama will unload the model (RFC 3339); V(null) when it is not loaded. About 300 years ahead for a model kept for ever.
  returned: always
  type: str
  sample: '2025-06-01T12:05:00.123456789Z'
parameters:
  description: The parameters of the model (C(/api/show)), with numbers as numbers and C(stop) as a list; empty when it has none or does not exist.
  returned: always
  type: dict
  sample: {num_ctx: 2048, num_thread: 4, temperature: 0.7, top_p: 0.9, stop: ['<|eot_id|>']}
actions:
  description: What the module did (in check mode, what it would do), in order.
  returned: always
  type: list
  elements: str
  sample: ['pulled base model llama3.2:3b', 'created llama3.2-prod:latest from llama3.2:3b']
memory:
  description:
    - The figures of the memory check, in bytes.
  returned: when O(state=loaded), O(memory_check=true) and the model was not loaded yet; also on a failed check
  type: dict
  contains:
    checked:
      description: V(false) when the check was skipped (O(ollama_host) not on this host and no O(container), or the size unknown in check mode).
      type: bool
      sample: true
    reason:
      description: Why the check was skipped.
      type: str
      returned: when C(checked) is V(false)
      sample: http://192.0.2.10:11434 is not an address of this host; set container or run the task on the Ollama host
    model_size:
      description: The size of the model compared, from C(/api/tags).
      type: int
      sample: 637700138
    available:
      description: The memory it is compared with, the smaller of C(host_available) and C(container.available).
      type: int
      sample: 51458048
    source:
      description: Where C(available) comes from.
      type: str
      sample: "container ollama: cgroup /sys/fs/cgroup/memory/docker/d75a... limit 64M minus usage 14.93M"
    host_available:
      description: C(MemAvailable) of the host; V(null) when Ollama is not on this host.
      type: int
      sample: 23853502464
    container:
      description:
        - The Ollama container and its memory cgroup; V(null) when there is none or it was not found.
        - C(id), C(name), C(cgroup) (its directory), C(limit) and C(usage) (without inactive file cache) of the level that binds,
          C(limited_by) (that level's directory, the container's own or a parent's), C(available) (limit minus usage;
          V(null) when no level has a limit).
      type: dict
      sample: {id: d75a..., name: ollama, cgroup: /sys/fs/cgroup/memory/docker/d75a..., limit: 67108864, usage: 15650816,
               available: 51458048, limited_by: /sys/fs/cgroup/memory/docker/d75a...}
    container_note:
      description: Why no container was found, when O(container) was not given.
      type: str
      returned: when the detection found none
      sample: no running container publishes port 11434
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.sutazai.ops.plugins.module_utils import _docker
from ansible_collections.sutazai.ops.plugins.module_utils import _ollama as ollama
from ansible_collections.sutazai.ops.plugins.module_utils._ollama_model import STATES, OllamaModel, OllamaModelError


def argument_spec():
    """The module's options: the model's, the server's (ollama_host, alias host) and the Docker engine's (docker_ prefixed)."""
    spec = {
        'name': {'type': 'str', 'required': True},
        'state': {'type': 'str', 'default': 'present', 'choices': list(STATES)},
        'from': {'type': 'str'},
        'parameters': {'type': 'dict'},
        'system': {'type': 'str'},
        'template': {'type': 'str'},
        'keep_alive': {'type': 'raw'},
        'ollama_host': {'type': 'str', 'aliases': ['host']},
        'timeout': {'type': 'int', 'default': 120},
        'validate_certs': {'type': 'bool', 'default': True},
        'headers': {'type': 'dict', 'no_log': True},
        'memory_check': {'type': 'bool', 'default': True},
        'container': {'type': 'str'},
    }
    spec.update(_docker.argument_spec('docker_'))
    return spec


def main():
    """Entry point."""
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_by={'parameters': 'from', 'system': 'from', 'template': 'from'},
        supports_check_mode=True,
    )
    if module.params['timeout'] <= 0:
        module.fail_json(msg='timeout: %r must be a positive number of seconds' % module.params['timeout'])
    try:
        base_url = ollama.resolve_host(module.params['ollama_host'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    headers = {str(key): str(value) for key, value in (module.params['headers'] or {}).items()}
    client = ollama.OllamaClient(base_url, timeout=module.params['timeout'], validate_certs=module.params['validate_certs'], headers=headers)
    try:
        result = OllamaModel(module.params, client, check_mode=module.check_mode, diff=module._diff,  # pylint: disable=protected-access
                             warn=module.warn).run()
    except OllamaModelError as exc:
        failure = dict(exc.result)
        library = failure.pop('missing_library', None)
        if library:
            module.fail_json(msg=missing_required_lib(library, reason='to find the Ollama container given in container'),
                             exception=_docker.DOCKER_IMPORT_ERROR)
        module.fail_json(msg=exc.msg, **failure)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
