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
"""

import os

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups

TIER_LABEL = 'sutazai.tier'
SERVICE_LABEL = 'sutazai.service'


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
