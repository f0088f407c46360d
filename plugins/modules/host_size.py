# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host_size module: the memory a host's tier plan is made for (module_utils/_host.py)."""

DOCUMENTATION = r"""
module: host_size
short_description: Read the memory a host really has - MemTotal, or the memory limit of the container it is
version_added: 0.1.0
description:
  - Reads the host's size, the memory its tier plan is made for, without asking the inventory.
  - On a machine the size is C(MemTotal). Where the host is itself a container with a memory limit (an LXC/LXD host, a
    docker-in-docker host), C(MemTotal) is the outer machine's and the size is that limit - the smallest memory limit
    of the host's own memory cgroup (PID 1's) and its ancestors that can be read, cgroup v1 or v2.
  - Reads only; never changes anything.
author:
  - sutazai.ops maintainers (@sutazai)
extends_documentation_fragment:
  - sutazai.ops.attributes
  - sutazai.ops.attributes.idempotent
attributes:
  check_mode:
    support: full
    details:
      - Reads the same files in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Never reports a change.
options: {}
notes:
  - A limit at or above C(MemTotal) (cgroup v1's "no limit" figure, v2's C(max)) does not count.
"""

EXAMPLES = r"""
- name: Read the host's size
  sutazai.ops.host_size:
  register: host

- name: Plan the stack for it
  ansible.builtin.include_role:
    name: sutazai.ops.stack
  vars:
    stack_host_memory: "{{ host.size }}"
"""

RETURN = r"""
size:
  description: The host's size in bytes - RV(cgroup_limit) when there is one, else RV(mem_total).
  returned: success
  type: int
  sample: 4294967296
mem_total:
  description: C(MemTotal) in bytes.
  returned: success
  type: int
  sample: 25276510208
cgroup_limit:
  description: The memory limit (bytes) that bounds the host's own cgroup, below C(MemTotal); null when there is none.
  returned: success
  type: int
  sample: 4294967296
source:
  description: Where the size comes from, V(meminfo) or V(cgroup).
  returned: success
  type: str
  sample: cgroup
limit_file:
  description: The file the limit was read from; null when there is none.
  returned: success
  type: str
  sample: /sys/fs/cgroup/memory/docker/3f2a/memory.limit_in_bytes
cgroup_version:
  description: V(1) or V(2), the cgroup version of the memory controller; null when none is mounted.
  returned: success
  type: str
  sample: "1"
memory_cgroup:
  description: The host's own memory cgroup (PID 1's, without a trailing C(/init.scope)); V(/) on a machine or in a private cgroup namespace.
  returned: success
  type: str
  sample: /docker/3f2a
container:
  description: Whether the host runs in a container (its cgroup is not the root of the tree it sees, or a limit bounds it).
  returned: success
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sutazai.ops.plugins.module_utils import _host


def main():
    """Read the host's size."""
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    try:
        result = _host.host_size()
    except ValueError as exc:
        module.fail_json(msg='host_size: %s' % exc)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
