# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of the ollama_model module: one model of an Ollama server made as asked. PRIVATE to the collection.

Plain Python with no Ansible import. The module sutazai.ops.ollama_model builds the client and an OllamaModel from
its params and turns OllamaModelError into fail_json; the monitor daemon (or a test) can drive the same class.

- OllamaModel: reads the model's state (/api/tags, /api/ps, /api/show), decides, acts unless in check mode, and
  returns the result (with a diff built by _diff.DifferenceTracker when asked).
- ContainerFinder: the Docker container Ollama runs in (named, or found by the published port) and the headroom
  of its memory cgroup (through _containers.ContainerMemory), for the fit check before a load.
"""

import os

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups
from ansible_collections.sutazai.ops.plugins.module_utils import _containers
from ansible_collections.sutazai.ops.plugins.module_utils import _docker
from ansible_collections.sutazai.ops.plugins.module_utils import _ollama
from ansible_collections.sutazai.ops.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.sutazai.ops.plugins.module_utils._units import format_size

CGROUP_ROOT = _cgroups.DEFAULT_ROOT
MEMINFO = '/proc/meminfo'
STATES = ('present', 'absent', 'loaded', 'unloaded', 'latest')


class OllamaModelError(Exception):
    """The task failed; `result` holds what goes into the module's failure (actions done so far, figures, status)."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


def _size(value):
    return '%s (%d bytes)' % (format_size(value), value)


class ContainerFinder:
    """Finds the Docker container Ollama runs in and the memory headroom of its cgroup (Docker SDK, optional).

    `docker_options`: the _docker options (module params or the daemon's dict); `memory`: the run's
    _containers.ContainerMemory. `explicit` raises OllamaModelError; `detect` never raises (its `note` says why none).
    """

    def __init__(self, base_url, docker_options=None, memory=None):
        self.base_url = base_url
        self.docker_options = docker_options or {}
        self.memory = memory or _containers.ContainerMemory(CGROUP_ROOT)
        self.note = None

    def _inspect(self, name=None):
        """Inspect one container, or every running one; the client is closed afterwards."""
        client = _docker.create_client(self.docker_options)
        try:
            if name is not None:
                return client.api.inspect_container(name)
            return [client.api.inspect_container(item['Id']) for item in client.api.containers(filters={'status': 'running'})]
        finally:
            client.close()

    def explicit(self, name):
        """The container named `name`; raises OllamaModelError when it cannot be read."""
        if not _docker.HAS_DOCKER:
            raise OllamaModelError('the Docker SDK for Python (docker) is needed to find the Ollama container given in container: %s'
                                   % _docker.DOCKER_IMPORT_ERROR, missing_library='docker')
        try:
            attrs = self._inspect(name)
        except _docker.DockerSetupError as exc:
            raise OllamaModelError('cannot reach the Docker engine to find the Ollama container %r: %s' % (name, exc)) from None
        except Exception as exc:  # pylint: disable=broad-exception-caught
            raise OllamaModelError('cannot inspect the Ollama container %r with the Docker engine at %s: %s'
                                   % (name, _docker.describe(self.docker_options), _docker.error_message(exc))) from None
        return self._figures(attrs, required=True)

    def detect(self):
        """The container that serves base_url, best effort; None (with self.note saying why) when none is found."""
        if not _docker.HAS_DOCKER:
            self.note = 'the Docker SDK for Python is not installed'
            return None
        try:
            resolved = _docker.settings(self.docker_options)
        except _docker.DockerSetupError as exc:
            self.note = str(exc)
            return None
        host = resolved['docker_host']
        if host.startswith('unix://') and not os.access(host[len('unix://'):], os.R_OK | os.W_OK):
            self.note = '%s is not usable' % host[len('unix://'):]
            return None
        port = _ollama.url_port(self.base_url)
        try:
            running = self._inspect()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self.note = 'the Docker engine could not be asked: %s' % _docker.error_message(exc)
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
        name = _containers.container_name(attrs)
        if not _containers.is_running(attrs):
            if required:
                raise OllamaModelError('the Ollama container %s is not running' % name)
            self.note = 'container %s is not running' % name
            return None
        try:
            headroom = self.memory.headroom(attrs)
        except (LookupError, ValueError):
            message = ('cannot find the memory cgroup of container %s (id %s) under %s; set memory_check=false to skip the check'
                       % (name, attrs.get('Id', ''), self.memory.root))
            if required:
                raise OllamaModelError(message) from None
            self.note = message
            return None
        except _cgroups.CgroupError as exc:
            if required:
                raise OllamaModelError('reading the memory cgroup of container %s failed: %s' % (name, exc)) from None
            self.note = str(exc)
            return None
        return dict({'id': attrs['Id'], 'name': name}, **headroom)


def _publishes(attrs, port):
    ports = (attrs.get('NetworkSettings') or {}).get('Ports') or {}
    for bindings in ports.values():
        for binding in bindings or ():
            if str(binding.get('HostPort')) == str(port):
                return True
    return False


class OllamaModel:
    """Reads the model's state, decides, acts unless in check mode, and reports."""

    def __init__(self, params, client, check_mode=False, diff=False, warn=None, finder=None):
        self.client = client
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.warn = warn or (lambda message: None)
        self.finder = finder or ContainerFinder(client.base_url, _docker.options_from(params, 'docker_'))
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

    def _fail(self, msg, **result):
        raise OllamaModelError(msg, **result)

    def _parse(self, value, option):
        try:
            return _ollama.parse_name(value)
        except _ollama.ModelNameError as exc:
            self._fail(msg='%s: %s' % (option, exc))
        return None

    def validate(self):
        """Check every input before anything is done; fail naming the bad value."""
        state = self.params['state']
        if self.base is not None:
            if state == 'latest':
                self._fail(msg='from builds the variant %s locally, which state=latest cannot pull; use state=present with from, '
                           'and state=latest on the base model %s' % (self.name, self.base))
            if self.base == self.name:
                self._fail(msg='from: a variant cannot be made from itself (%s)' % self.name)
            try:
                self.desired_parameters = _ollama.coerce_parameters(self.params['parameters'] or {})
            except _ollama.ParameterError as exc:
                self._fail(msg='parameters: %s' % exc)
        if self.params['keep_alive'] is not None:
            try:
                self.keep_alive, seconds = _ollama.validate_keep_alive(self.params['keep_alive'])
            except _ollama.KeepAliveError as exc:
                self._fail(msg=str(exc))
            if state == 'loaded' and seconds == 0:
                self._fail(msg='keep_alive: %r unloads the model at once; use state=unloaded to unload it, '
                           'or a duration such as "5m" or -1 (forever) to keep it loaded' % (self.params['keep_alive'],))
        if state == 'loaded' and self.params['memory_check'] and self.params['container']:
            # a mistyped or stopped container must fail before a pull changes anything, not after
            self.finder.explicit(self.params['container'])

    # --- reading --------------------------------------------------------------------

    def _call(self, what, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except _ollama.OllamaError as exc:
            self._fail(msg='%s failed: %s' % (what, exc), status=exc.status, url=exc.url, actions=self.actions, changed=self.changed)
        return None

    def snapshot(self):
        """The model as the server has it now: tags entry, ps entry, parsed show answer."""
        tags = self._call('listing the local models (/api/tags)', self.client.tags)
        loaded = self._call('listing the loaded models (/api/ps)', self.client.ps)
        entry = _ollama.find_model(tags, self.name)
        show = self._show(self.name) if entry else None
        return {'tags': tags, 'entry': entry, 'ps': _ollama.find_model(loaded, self.name), 'ps_all': loaded, 'show': show}

    def _show(self, name):
        try:
            return self.client.show(name.display)
        except _ollama.OllamaError as exc:
            if exc.status == 404:
                return None
            self._fail(msg='reading %s (/api/show) failed: %s' % (name, exc), status=exc.status, url=exc.url)
        return None

    @staticmethod
    def view(snap):
        """The comparable state of the model for diff output."""
        show = snap.get('show') or {}
        result = {
            'present': snap.get('entry') is not None,
            'digest': (snap.get('entry') or {}).get('digest'),
            'loaded': snap.get('ps') is not None,
            'parameters': _ollama.parse_show_parameters(show.get('parameters')) if snap.get('entry') else {},
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
            self._fail(msg='the pull of %s ended without an error, but /api/tags does not list it' % self.name, actions=self.actions)
        return new

    def ensure_variant(self, snap):
        """Create the variant when it is missing or differs from the desired one; return the (new) snapshot."""
        differences = []
        base_entry = _ollama.find_model(snap['tags'], self.base)
        base_show = self._show(self.base) if base_entry else None
        inherited = _ollama.parse_show_parameters(base_show.get('parameters')) if base_show else None
        if snap['entry'] is not None and snap['show'] is not None:
            show = snap['show']
            current = _ollama.parse_show_parameters(show.get('parameters'))
            differences = ['parameter %s' % key for key in _ollama.parameter_differences(current, self.desired_parameters, inherited)]
            for field in ('system', 'template'):
                if self.params[field] is not None and (show.get(field) or '') != self.params[field]:
                    differences.append(field)
            parent = (show.get('details') or {}).get('parent_model') or ''
            if parent and _parses(parent) and not _ollama.same_model(parent, self.base):
                differences.append('base model (%s)' % _ollama.normalize_name(parent))
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
        local = _ollama.is_local_url(self.client.base_url)
        container = None
        finder = self.finder
        if self.params['container']:
            container = finder.explicit(self.params['container'])
        elif local:
            container = finder.detect()
        if finder.note:
            figures['container_note'] = finder.note
        figures['container'] = container
        if not local and container is None:
            figures.update(checked=False, reason='%s is not an address of this host; set container or run the task on the Ollama host' % self.client.base_url)
            self.warn('memory_check skipped: Ollama at %s does not run on this host, so its free memory cannot be read here. '
                      'Run the task on the Ollama host (delegate_to) or set memory_check=false.' % self.client.base_url)
            return
        candidates = []
        if local:
            try:
                host_available = _cgroups.read_meminfo(MEMINFO)['MemAvailable']
            except (_cgroups.CgroupError, KeyError) as exc:
                self._fail(msg='memory_check: cannot read MemAvailable from %s: %s' % (MEMINFO, exc))
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
            self._fail(
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
                self._fail(msg='%s is still listed by /api/ps %s seconds after it was asked to unload' % (self.name, timeout),
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
            except _ollama.OllamaError as exc:
                if exc.status != 404:
                    self._fail(msg='deleting %s failed: %s' % (self.name, exc), status=exc.status, url=exc.url,
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
            self._fail(msg='the pull of %s ended without an error, but /api/tags does not list it' % self.name)
        if new['entry'].get('digest') != before:
            self.changed = True
            self.actions.append('pulled %s (digest %s -> %s)' % (self.name, (before or 'none')[:12], (new['entry'].get('digest') or '')[:12]))
        return new

    # --- run ------------------------------------------------------------------------

    def run(self):
        """Validate, read, act; return the module result (raises OllamaModelError on failure)."""
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
        if self.diff:
            tracker = DifferenceTracker()
            tracker.merge(dict(before_view, model=self.name.display), dict(after_view, model=self.name.display))
            before_diff, after_diff = tracker.get_before_after()
            result['diff'] = {'before': before_diff, 'after': after_diff}
        return result


def _parses(name):
    try:
        _ollama.parse_name(name)
    except _ollama.ModelNameError:
        return False
    return True
