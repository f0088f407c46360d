# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Containers and their memory: the one adapter from a Docker container to its cgroup's figures.

PRIVATE to the collection: no compatibility promise. Plain Python with no Ansible import (the guard
daemon uses it). container_limits (usage and swap before a limit change), ollama_model (the headroom
of Ollama's container) and the memory guard (usage of the tiered containers) all read containers
through `ContainerMemory`, so they agree on what a container uses.

- The labels the platform puts on its containers: TIER_LABEL (1 core, 2 important, 3 agents) and
  SERVICE_LABEL (the service's name).
- ContainerMemory: container -> cgroup directory -> memory figures (working set, limit, swap, OOM kills),
  both cached for one run (one task, one guard pass): a container's cgroup is looked up once, and its
  figures read once unless the caller asks for fresh ones (the guard re-reads after each action).
- tiered_containers: the containers carrying the tier label, from the engine's list.
- Scope: which of them belong to one stack on an engine shared with other projects (its Compose project
  or Swarm stack namespace, and optional labels); the memory guard and the monitor daemon select with it.
"""

import os

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups

TIER_LABEL = 'sutazai.tier'
SERVICE_LABEL = 'sutazai.service'
COMPOSE_PROJECT_LABEL = 'com.docker.compose.project'
STACK_NAMESPACE_LABEL = 'com.docker.stack.namespace'
PROJECT_LABELS = (COMPOSE_PROJECT_LABEL, STACK_NAMESPACE_LABEL)


def _id_and_parent(container):
    """(full id, cgroup parent or None) of an inspect dict, or of a bare id."""
    if isinstance(container, str):
        return container, None
    return container['Id'], (container.get('HostConfig') or {}).get('CgroupParent') or None


def is_running(container):
    """True for an inspect dict whose State says running."""
    return bool((container.get('State') or {}).get('Running'))


def container_name(container):
    """The name of an inspect dict (no leading slash), else its short id."""
    return (container.get('Name') or '').lstrip('/') or container['Id'][:12]


class ContainerMemory:
    """Memory figures of containers from their cgroups (v1 or v2), with the lookups cached for one run.

    `container` arguments are an engine inspect dict (its CgroupParent is used to find the cgroup) or a full id.
    """

    def __init__(self, cgroup_root=_cgroups.DEFAULT_ROOT):
        self.root = cgroup_root
        self._paths = {}
        self._figures = {}

    def cgroup_path(self, container):
        """The container's memory cgroup directory, or None when it is not found (stopped, remote engine, unknown layout).

        Raises ValueError for an id that is not a full one (64 hexadecimal digits).
        """
        container_id, parent = _id_and_parent(container)
        path = self._paths.get(container_id)
        if path is not None and os.path.isdir(path):
            return path
        path = _cgroups.find_container_cgroup(container_id, root=self.root, cgroup_parent=parent)
        if path is None:
            self._paths.pop(container_id, None)
        else:
            self._paths[container_id] = path
        return path

    def figures(self, container, fresh=False):
        """The container's memory figures (_cgroups.read_memory: working_set, usage, limit, swap, oom_kills, ...), or None.

        None when its cgroup is not found or vanished while being read. Cached for the run unless `fresh`.
        """
        container_id, _parent = _id_and_parent(container)
        if not fresh and container_id in self._figures:
            return self._figures[container_id]
        try:
            path = self.cgroup_path(container)
            figures = _cgroups.read_memory(path) if path else None
        except (_cgroups.CgroupError, ValueError, OSError):
            self._paths.pop(container_id, None)
            figures = None
        self._figures[container_id] = figures
        return figures

    def working_set(self, container, fresh=False):
        """Bytes in use less inactive file cache (what `docker stats` shows), or None."""
        figures = self.figures(container, fresh)
        return None if figures is None else figures['working_set']

    def swap(self, container, fresh=False):
        """Bytes the container holds in swap, or None when unknown or not accounted by the kernel."""
        figures = self.figures(container, fresh)
        return None if figures is None else figures['swap']

    def summary(self, container, fresh=False):
        """{'usage' (working set), 'limit', 'swap', 'oom_kills'} of the container, or None."""
        figures = self.figures(container, fresh)
        if figures is None:
            return None
        return {'usage': figures['working_set'], 'limit': figures['limit'], 'swap': figures['swap'], 'oom_kills': figures['oom_kills']}

    def headroom(self, container):
        """The memory the container can still take before its own limit or a parent's stops it.

        Returns {'cgroup', 'limit', 'usage', 'available', 'limited_by'}: the container's own limit and working set, replaced
        by those of the level that binds when one is limited (available None and limited_by None when no level is).
        Raises _cgroups.CgroupError when the files cannot be read, LookupError when the cgroup is not found.
        """
        path = self.cgroup_path(container)
        if path is None:
            raise LookupError('no memory cgroup found under %s' % self.root)
        own = self.figures(container)
        if own is None:
            own = _cgroups.read_memory(path)  # raises the CgroupError that says why
        binding = _cgroups.available_memory(path, root=self.root)
        result = {'cgroup': path, 'limit': own['limit'], 'usage': own['working_set'], 'available': None, 'limited_by': None}
        if binding is not None:
            result.update(available=binding['available'], limited_by=binding['path'], limit=binding['limit'], usage=binding['working_set'])
        return result


def tier_of(labels):
    """The tier (int) of a label dict, or None when it has no tier label or it is not a number."""
    try:
        return int((labels or {}).get(TIER_LABEL))
    except (TypeError, ValueError):
        return None


def tiered_containers(api):
    """Every container (running or not) with the tier label, from the engine's list (`api`: the docker SDK's APIClient).

    Each is {'id', 'name', 'tier' (int or None when the label is not a number), 'service' (SERVICE_LABEL or None),
    'running', 'labels'}. Errors of the engine are the SDK's.
    """
    result = []
    for item in api.containers(all=True, filters={'label': TIER_LABEL}):
        labels = item.get('Labels') or {}
        result.append({'id': item['Id'], 'name': (item.get('Names') or ['/' + item['Id'][:12]])[0].lstrip('/'),
                       'tier': tier_of(labels), 'service': labels.get(SERVICE_LABEL), 'running': item.get('State') == 'running',
                       'labels': dict(labels)})
    return result


def project_of(labels):
    """The Compose project or Swarm stack namespace named by a label dict, or None."""
    labels = labels or {}
    for key in PROJECT_LABELS:
        if labels.get(key):
            return labels[key]
    return None


class ScopeError(ValueError):
    """A scope that cannot select anything as meant; the message names the value."""


class Scope:
    """The containers of one stack: those of Compose project or Swarm stack `project` carrying every label of `labels`.

    No project and no labels: every container (no scope). `matches(labels)` tells a container's label dict;
    `holds_record(record, inside, outside)` tells whether a guard state record is the scope's to act on.
    Raises ScopeError for an empty or non-text project, or labels that are not a mapping of names to text.
    """

    def __init__(self, project=None, labels=None):
        if project is not None and (not isinstance(project, str) or not project.strip() or project != project.strip()):
            raise ScopeError('project must name a Compose project or Swarm stack (label %s or %s), got %r'
                             % (COMPOSE_PROJECT_LABEL, STACK_NAMESPACE_LABEL, project))
        if labels is not None and not isinstance(labels, dict):
            raise ScopeError('labels must be a mapping of label names to values, got %r' % (labels,))
        wanted = {}
        for key, value in (labels or {}).items():
            if not isinstance(key, str) or not key:
                raise ScopeError('labels: a label name must be a non-empty text, got %r' % (key,))
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ScopeError('labels: the value of %s must be a text (quote it), got %r' % (key, value))
            wanted[key] = str(value)
        self.project = project
        self.labels = wanted

    @property
    def active(self):
        """True when the scope selects (a project or labels are set)."""
        return self.project is not None or bool(self.labels)

    def matches(self, labels):
        """True for a container (its label dict) inside the scope."""
        labels = labels or {}
        if self.project is not None and self.project not in (labels.get(COMPOSE_PROJECT_LABEL), labels.get(STACK_NAMESPACE_LABEL)):
            return False
        return all(labels.get(key) == value for key, value in self.labels.items())

    def holds_record(self, record, inside, outside):
        """True when a state record (of a container the guard stopped) is the scope's to restore or drop.

        `inside` / `outside`: ids of the listed containers inside / outside the scope. A container no longer
        listed (removed) is the scope's when there is no scope, or when the scope is a project alone and the
        record names that project; otherwise its record is left as it is.
        """
        if not self.active or record['id'] in inside:
            return True
        if record['id'] in outside:
            return False
        return not self.labels and record.get('project') == self.project

    def as_dict(self):
        """{'project', 'labels'} of an active scope, or None (every container)."""
        if not self.active:
            return None
        return {'project': self.project, 'labels': dict(self.labels)}

    def describe(self):
        """'project sutazai', 'project sutazai, labels a=b', or 'every container' (for messages)."""
        if not self.active:
            return 'every container'
        parts = []
        if self.project is not None:
            parts.append('project %s' % self.project)
        if self.labels:
            parts.append('labels %s' % ', '.join('%s=%s' % item for item in sorted(self.labels.items())))
        return ', '.join(parts)
