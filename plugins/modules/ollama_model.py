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
attributes:
  check_mode:
    support: full
    details:
      - With O(state=latest) on a model that exists, check mode cannot know whether the registry has a newer version
        without pulling it, and reports no change.
  diff_mode:
    support: full
    details:
      - Shows whether the model is present, its digest, whether it is loaded and its parameters, before and after.
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
  host:
    description:
      - The Ollama server, as a URL (V(http://127.0.0.1:11434)) or in any form of C(OLLAMA_HOST) (V(127.0.0.1:11434), V(myhost),
        V(0.0.0.0:11434), which is reached on loopback).
      - As in Ollama, a URL with a scheme and without a port means port 80 (http) or 443 (https); a bare host means port 11434.
      - Taken from the E(OLLAMA_HOST) environment variable when not given.
    type: str
    default: http://127.0.0.1:11434
  timeout:
    description:
      - Seconds to wait for an answer from the server, for each read. A pull streams progress lines, so a long pull only
        times out when the server sends nothing for this long.
      - Also the longest time O(state=unloaded) and O(state=absent) wait for a model to leave C(/api/ps).
    type: int
    default: 120
  validate_certs:
    description:
      - Check the TLS certificate of an V(https) O(host).
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
        (O(container), or found by the published port of O(host)), the headroom of that container's memory cgroup
        (its limit, or a parent cgroup's, minus its usage without inactive file cache); the smaller of the two counts.
      - The host figure is only meaningful when Ollama runs on the managed host. When O(host) is not an address of the
        managed host and no O(container) is given, the check is skipped with a warning.
      - V(false) skips the check.
    type: bool
    default: true
  container:
    description:
      - The name or id of the Docker container Ollama runs in, for the memory check. Needs the Docker SDK for Python
        and access to the Docker engine of the managed host.
      - Omitted, the module looks for it when O(host) is an address of this host, the Docker SDK for Python is installed
        and C(/var/run/docker.sock) is usable, a running container that publishes the port of O(host), or the only
        running container with C(ollama) in its name or image that uses the host network. If none is found, only the host
        figure is used.
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

- name: The llama3.2-prod variant of seed 002 (re-created only when a value differs)
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
    host: https://ollama.internal.example:8443
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
      description: V(false) when the check was skipped (O(host) not on this host and no O(container), or the size unknown in check mode).
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

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups as cgroups
from ansible_collections.sutazai.ops.plugins.module_utils import _ollama as ollama
from ansible_collections.sutazai.ops.plugins.module_utils._units import format_size

try:
    import docker
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()

DOCKER_SOCKET = '/var/run/docker.sock'
CGROUP_ROOT = '/sys/fs/cgroup'
MEMINFO = '/proc/meminfo'


def _size(value):
    return '%s (%d bytes)' % (format_size(value), value)


class ContainerFinder:
    """Finds the Docker container Ollama runs in and the memory headroom of its cgroup (Docker SDK, optional)."""

    def __init__(self, module, base_url):
        self.module = module
        self.base_url = base_url
        self.note = None

    @staticmethod
    def _inspect(name=None):
        """Inspect one container, or every running one; the client is closed afterwards."""
        client = docker.DockerClient(base_url=os.environ.get('DOCKER_HOST') or 'unix://' + DOCKER_SOCKET, timeout=10)
        try:
            if name is not None:
                return client.api.inspect_container(name)
            return [client.api.inspect_container(item['Id']) for item in client.api.containers(filters={'status': 'running'})]
        finally:
            client.close()

    def explicit(self, name):
        """The container named `name`; fails the module when it cannot be read."""
        if not HAS_DOCKER:
            self.module.fail_json(msg=missing_required_lib('docker', reason='to find the Ollama container given in container'),
                                  exception=DOCKER_IMPORT_ERROR)
        attrs = None
        try:
            attrs = self._inspect(name)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self.module.fail_json(msg='cannot inspect the Ollama container %r with the Docker engine: %s' % (name, exc))
        return self._figures(attrs, required=True)

    def detect(self):
        """The container that serves base_url, best effort; None (with self.note saying why) when none is found."""
        if not HAS_DOCKER:
            self.note = 'the Docker SDK for Python is not installed'
            return None
        if not os.environ.get('DOCKER_HOST') and not os.access(DOCKER_SOCKET, os.R_OK | os.W_OK):
            self.note = '%s is not usable' % DOCKER_SOCKET
            return None
        port = ollama.url_port(self.base_url)
        try:
            running = self._inspect()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self.note = 'the Docker engine could not be asked: %s' % exc
            return None
        found = [attrs for attrs in running if _publishes(attrs, port)]
        if not found:
            found = [attrs for attrs in running if (attrs.get('HostConfig') or {}).get('NetworkMode') == 'host'
                     and ('ollama' in attrs.get('Name', '').lower() or 'ollama' in (attrs.get('Config') or {}).get('Image', '').lower())]
        if len(found) != 1:
            self.note = ('no running container publishes port %s' % port if not found
                         else 'several containers may serve port %s (%s)' % (port, ', '.join(attrs.get('Name', '').lstrip('/') for attrs in found)))
            return None
        return self._figures(found[0], required=False)

    def _figures(self, attrs, required):
        full_id = attrs.get('Id', '')
        name = (attrs.get('Name') or '').lstrip('/') or full_id[:12]
        parent = (attrs.get('HostConfig') or {}).get('CgroupParent') or None
        if not (attrs.get('State') or {}).get('Running'):
            if required:
                self.module.fail_json(msg='the Ollama container %s is not running' % name)
            self.note = 'container %s is not running' % name
            return None
        path = None
        try:
            path = cgroups.find_container_cgroup(full_id, root=CGROUP_ROOT, cgroup_parent=parent)
        except ValueError:
            path = None
        if path is None:
            message = ('cannot find the memory cgroup of container %s (id %s) under %s; set memory_check=false to skip the check'
                       % (name, full_id, CGROUP_ROOT))
            if required:
                self.module.fail_json(msg=message)
            self.note = message
            return None
        try:
            own = cgroups.read_memory(path)
            headroom = cgroups.available_memory(path, root=CGROUP_ROOT)
        except cgroups.CgroupError as exc:
            if required:
                self.module.fail_json(msg='reading the memory cgroup of container %s failed: %s' % (name, exc))
            self.note = str(exc)
            return None
        result = {'id': full_id, 'name': name, 'cgroup': path, 'limit': own['limit'], 'usage': own['working_set'],
                  'available': None, 'limited_by': None}
        if headroom is not None:
            result.update(available=headroom['available'], limited_by=headroom['path'], limit=headroom['limit'], usage=headroom['working_set'])
        return result


def _publishes(attrs, port):
    ports = (attrs.get('NetworkSettings') or {}).get('Ports') or {}
    for bindings in ports.values():
        for binding in bindings or ():
            if str(binding.get('HostPort')) == str(port):
                return True
    return False


class OllamaModel:
    """Reads the model's state, decides, acts unless in check mode, and reports."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.check_mode = module.check_mode
        self.changed = False
        self.created = False
        self.actions = []
        self.memory = None
        self.name = self._parse(self.params['name'], 'name')
        self.base = self._parse(self.params['from'], 'from') if self.params['from'] else None
        self.desired_parameters = None
        self.keep_alive = None
        self.predicted = {}

    # --- inputs ---------------------------------------------------------------------

    def _parse(self, value, option):
        try:
            return ollama.parse_name(value)
        except ollama.ModelNameError as exc:
            self.module.fail_json(msg='%s: %s' % (option, exc))
        return None

    def validate(self):
        """Check every input before anything is done; fail naming the bad value."""
        state = self.params['state']
        if self.base is not None:
            if state == 'latest':
                self.module.fail_json(msg='from builds the variant %s locally, which state=latest cannot pull; use state=present with from, '
                                          'and state=latest on the base model %s' % (self.name, self.base))
            if self.base == self.name:
                self.module.fail_json(msg='from: a variant cannot be made from itself (%s)' % self.name)
            try:
                self.desired_parameters = ollama.coerce_parameters(self.params['parameters'] or {})
            except ollama.ParameterError as exc:
                self.module.fail_json(msg='parameters: %s' % exc)
        if self.params['keep_alive'] is not None:
            try:
                self.keep_alive, seconds = ollama.validate_keep_alive(self.params['keep_alive'])
            except ollama.KeepAliveError as exc:
                self.module.fail_json(msg=str(exc))
            if state == 'loaded' and seconds == 0:
                self.module.fail_json(msg='keep_alive: %r unloads the model at once; use state=unloaded to unload it, '
                                          'or a duration such as "5m" or -1 (forever) to keep it loaded' % (self.params['keep_alive'],))
        if state == 'loaded' and self.params['memory_check'] and self.params['container']:
            # a mistyped or stopped container must fail before a pull changes anything, not after
            ContainerFinder(self.module, self.client.base_url).explicit(self.params['container'])

    # --- reading --------------------------------------------------------------------

    def _call(self, what, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ollama.OllamaError as exc:
            self.module.fail_json(msg='%s failed: %s' % (what, exc), status=exc.status, url=exc.url, actions=self.actions, changed=self.changed)
        return None

    def snapshot(self):
        """The model as the server has it now: tags entry, ps entry, parsed show answer."""
        tags = self._call('listing the local models (/api/tags)', self.client.tags)
        loaded = self._call('listing the loaded models (/api/ps)', self.client.ps)
        entry = ollama.find_model(tags, self.name)
        show = self._show(self.name) if entry else None
        return {'tags': tags, 'entry': entry, 'ps': ollama.find_model(loaded, self.name), 'ps_all': loaded, 'show': show}

    def _show(self, name):
        try:
            return self.client.show(name.display)
        except ollama.OllamaError as exc:
            if exc.status == 404:
                return None
            self.module.fail_json(msg='reading %s (/api/show) failed: %s' % (name, exc), status=exc.status, url=exc.url)
        return None

    @staticmethod
    def view(snap):
        """The comparable state of the model for diff output."""
        show = snap.get('show') or {}
        result = {
            'present': snap.get('entry') is not None,
            'digest': (snap.get('entry') or {}).get('digest'),
            'loaded': snap.get('ps') is not None,
            'parameters': ollama.parse_show_parameters(show.get('parameters')) if snap.get('entry') else {},
        }
        return result

    # --- steps ----------------------------------------------------------------------

    def _pull(self, name, what):
        if not self.check_mode:
            self._call('pulling %s' % name, self.client.pull_all, name.display)
        self.changed = True
        self.actions.append('pulled %s%s' % (what, name))

    def ensure_pulled(self, snap):
        """Pull the model when no model of that name exists; return the (new) snapshot."""
        if snap['entry'] is not None:
            return snap
        self._pull(self.name, '')
        if self.check_mode:
            self.predicted.update(present=True)
            return snap
        new = self.snapshot()
        if new['entry'] is None:
            self.module.fail_json(msg='the pull of %s ended without an error, but /api/tags does not list it' % self.name, actions=self.actions)
        return new

    def ensure_variant(self, snap):
        """Create the variant when it is missing or differs from the desired one; return the (new) snapshot."""
        differences = []
        base_entry = ollama.find_model(snap['tags'], self.base)
        base_show = self._show(self.base) if base_entry else None
        inherited = ollama.parse_show_parameters(base_show.get('parameters')) if base_show else None
        if snap['entry'] is not None and snap['show'] is not None:
            show = snap['show']
            current = ollama.parse_show_parameters(show.get('parameters'))
            differences = ['parameter %s' % key for key in ollama.parameter_differences(current, self.desired_parameters, inherited)]
            for field in ('system', 'template'):
                if self.params[field] is not None and (show.get(field) or '') != self.params[field]:
                    differences.append(field)
            parent = (show.get('details') or {}).get('parent_model') or ''
            if parent and _parses(parent) and not ollama.same_model(parent, self.base):
                differences.append('base model (%s)' % ollama.normalize_name(parent))
            if not differences:
                return snap
        if base_entry is None:
            self._pull(self.base, 'base model ')
        if not self.check_mode:
            self._call('creating %s from %s' % (self.name, self.base), self.client.create, self.name.display, self.base.display,
                       parameters=self.desired_parameters, system=self.params['system'], template=self.params['template'])
        self.changed = self.created = True
        if snap['entry'] is None:
            self.actions.append('created %s from %s' % (self.name, self.base))
        else:
            self.actions.append('re-created %s from %s (different: %s)' % (self.name, self.base, ', '.join(differences)))
        if self.check_mode:
            predicted = dict(inherited or {})
            predicted.update(self.desired_parameters)
            self.predicted.update(present=True, parameters=predicted)
            return snap
        return self.snapshot()

    def ensure_present(self, snap):
        """present: pull, or build the variant."""
        if self.base is not None:
            return self.ensure_variant(snap)
        return self.ensure_pulled(snap)

    def check_fit(self, snap):
        """Fail, loading nothing, when the model's size exceeds the memory available to Ollama."""
        size = snap['entry'].get('size') if snap['entry'] else None
        if size is None:
            self.memory = {'checked': False, 'reason': 'the size of %s is not known before it is pulled (check mode)' % self.name}
            return
        figures = {'model_size': size, 'available': None, 'source': None, 'host_available': None, 'container': None, 'checked': True}
        self.memory = figures
        local = ollama.is_local_url(self.client.base_url)
        container = None
        finder = ContainerFinder(self.module, self.client.base_url)
        if self.params['container']:
            container = finder.explicit(self.params['container'])
        elif local:
            container = finder.detect()
        if finder.note:
            figures['container_note'] = finder.note
        figures['container'] = container
        if not local and container is None:
            figures.update(checked=False, reason='%s is not an address of this host; set container or run the task on the Ollama host' % self.client.base_url)
            self.module.warn('memory_check skipped: Ollama at %s does not run on this host, so its free memory cannot be read here. '
                             'Run the task on the Ollama host (delegate_to) or set memory_check=false.' % self.client.base_url)
            return
        candidates = []
        if local:
            try:
                host_available = cgroups.read_meminfo(MEMINFO)['MemAvailable']
            except (cgroups.CgroupError, KeyError) as exc:
                self.module.fail_json(msg='memory_check: cannot read MemAvailable from %s: %s' % (MEMINFO, exc))
            figures['host_available'] = host_available
            candidates.append((host_available, 'host MemAvailable %s' % format_size(host_available)))
        if container is not None and container['available'] is not None:
            candidates.append((container['available'], 'container %s: cgroup %s limit %s minus usage %s'
                               % (container['name'], container['limited_by'], format_size(container['limit']), format_size(container['usage']))))
        if not candidates:
            figures.update(checked=False, reason='no memory figure could be read')
            return
        available, source = min(candidates, key=lambda item: item[0])
        figures.update(available=available, source=source)
        if size > available:
            others = ', '.join('%s (%s)' % (item.get('name'), format_size(item.get('size') or 0)) for item in snap['ps_all']) or 'none'
            where = '; '.join(text for _value, text in candidates)
            self.module.fail_json(
                msg='%s does not fit: its size in /api/tags is %s but only %s is available to Ollama (%s). Nothing was loaded. '
                    'Models loaded now: %s. Free memory, raise the limit, or set memory_check=false to skip this check.'
                    % (self.name, _size(size), _size(available), where, others),
                memory=figures, model=self.name.display, actions=self.actions, changed=self.changed)

    def ensure_loaded(self, snap):
        """loaded: present, then fit check and load unless /api/ps lists it."""
        snap = self.ensure_present(snap)
        if snap['ps'] is not None and not self.created:
            return snap
        if snap['ps'] is not None:
            verb = 'reloaded %s (its variant changed)' % self.name
        else:
            verb = 'loaded %s' % self.name
            if self.params['memory_check']:
                self.check_fit(snap)
        if not self.check_mode:
            self._call('loading %s' % self.name, self.client.load, self.name.display, self.keep_alive)
        self.changed = True
        self.actions.append(verb + ('' if self.keep_alive is None else ' (keep_alive %s)' % self.keep_alive))
        if self.check_mode:
            self.predicted.update(loaded=True)
            return snap
        return self.snapshot()

    def _unload(self, snap):
        if not self.check_mode:
            self._call('unloading %s' % self.name, self.client.unload, self.name.display)
            timeout = max(1, self.params['timeout'])
            gone = self._call('waiting for %s to unload' % self.name, self.client.wait_unloaded, self.name, timeout=timeout)
            if not gone:
                self.module.fail_json(msg='%s is still listed by /api/ps %s seconds after it was asked to unload' % (self.name, timeout),
                                      actions=self.actions + ['asked to unload %s' % self.name], changed=True)
        self.changed = True
        self.actions.append('unloaded %s' % self.name)
        self.predicted.update(loaded=False)
        return snap

    def ensure_unloaded(self, snap):
        """unloaded: keep_alive 0, then wait until /api/ps no longer lists it."""
        if snap['ps'] is None:
            return snap
        self._unload(snap)
        return snap if self.check_mode else self.snapshot()

    def ensure_absent(self, snap):
        """absent: unload if loaded, then DELETE; not found is no change."""
        if snap['entry'] is None:
            return snap
        if snap['ps'] is not None:
            self._unload(snap)
        if not self.check_mode:
            try:
                self.client.delete(self.name.display)
            except ollama.OllamaError as exc:
                if exc.status != 404:
                    self.module.fail_json(msg='deleting %s failed: %s' % (self.name, exc), status=exc.status, url=exc.url,
                                          actions=self.actions, changed=self.changed)
                return self.snapshot()
        self.changed = True
        self.actions.append('deleted %s' % self.name)
        if self.check_mode:
            self.predicted.update(present=False, digest=None, loaded=False, parameters={})
            return snap
        return self.snapshot()

    def ensure_latest(self, snap):
        """latest: pull; changed only when the digest in /api/tags changed."""
        if self.check_mode:
            if snap['entry'] is None:
                self.changed = True
                self.actions.append('pulled %s' % self.name)
                self.predicted.update(present=True)
            return snap
        before = (snap['entry'] or {}).get('digest')
        self._call('pulling %s' % self.name, self.client.pull_all, self.name.display)
        new = self.snapshot()
        if new['entry'] is None:
            self.module.fail_json(msg='the pull of %s ended without an error, but /api/tags does not list it' % self.name)
        if new['entry'].get('digest') != before:
            self.changed = True
            self.actions.append('pulled %s (digest %s -> %s)' % (self.name, (before or 'none')[:12], (new['entry'].get('digest') or '')[:12]))
        return new

    # --- run ------------------------------------------------------------------------

    def run(self):
        """Validate, read, act, report."""
        self.validate()
        state = self.params['state']
        before = self.snapshot()
        handler = {'present': self.ensure_present, 'latest': self.ensure_latest, 'loaded': self.ensure_loaded,
                   'unloaded': self.ensure_unloaded, 'absent': self.ensure_absent}[state]
        after = handler(before)
        before_view = self.view(before)
        after_view = self.view(after)
        if self.check_mode:
            after_view.update(self.predicted)
            if self.predicted.get('present') and not before_view['present']:
                after_view['digest'] = None
        entry = after['entry'] if not self.check_mode else before['entry']
        ps_entry = after['ps'] if not self.check_mode else before['ps']
        result = {
            'changed': self.changed,
            'model': self.name.display,
            'digest': after_view['digest'],
            'size': (entry or {}).get('size') if after_view['present'] else None,
            'loaded': after_view['loaded'],
            'expires_at': (ps_entry or {}).get('expires_at') if after_view['loaded'] else None,
            'parameters': after_view['parameters'],
            'actions': self.actions,
        }
        if self.memory is not None:
            result['memory'] = self.memory
        if self.module._diff:  # pylint: disable=protected-access
            result['diff'] = {'before': dict(before_view, model=self.name.display), 'after': dict(after_view, model=self.name.display)}
        self.module.exit_json(**result)


def _parses(name):
    try:
        ollama.parse_name(name)
    except ollama.ModelNameError:
        return False
    return True


def main():
    """Entry point."""
    module = AnsibleModule(
        argument_spec={
            'name': {'type': 'str', 'required': True},
            'state': {'type': 'str', 'default': 'present', 'choices': ['present', 'absent', 'loaded', 'unloaded', 'latest']},
            'from': {'type': 'str'},
            'parameters': {'type': 'dict'},
            'system': {'type': 'str'},
            'template': {'type': 'str'},
            'keep_alive': {'type': 'raw'},
            'host': {'type': 'str', 'default': ollama.DEFAULT_HOST, 'fallback': (env_fallback, ['OLLAMA_HOST'])},
            'timeout': {'type': 'int', 'default': 120},
            'validate_certs': {'type': 'bool', 'default': True},
            'headers': {'type': 'dict', 'no_log': True},
            'memory_check': {'type': 'bool', 'default': True},
            'container': {'type': 'str'},
        },
        required_by={'parameters': 'from', 'system': 'from', 'template': 'from'},
        supports_check_mode=True,
    )
    if module.params['timeout'] <= 0:
        module.fail_json(msg='timeout: %r must be a positive number of seconds' % module.params['timeout'])
    try:
        base_url = ollama.parse_host(module.params['host'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    headers = {str(key): str(value) for key, value in (module.params['headers'] or {}).items()}
    client = ollama.OllamaClient(base_url, timeout=module.params['timeout'], validate_certs=module.params['validate_certs'], headers=headers)
    OllamaModel(module, client).run()


if __name__ == '__main__':
    main()
