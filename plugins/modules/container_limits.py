# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container_limits module: a thin wrapper of module_utils/_limits.py."""

DOCUMENTATION = r"""
module: container_limits
short_description: Change CPU, memory and pids limits of many containers in place, in one task
version_added: 0.1.0
description:
  - Sets the limits of existing containers through the Docker engine's update endpoint - no recreate, no restart - for
    any number of containers in one task over one engine connection.
  - Containers are named in O(containers), each with its own limits, or picked by labels with O(selector), all with the
    limits in O(limits).
  - Compares each container's current C(HostConfig) and updates only what differs, so a second run changes nothing.
  - Refuses the whole task, changing no container, and lists every offender when any container is unknown, any value
    is malformed, O(containers[].cpus) is not above 0 or above the host's CPU count, O(containers[].memory_reservation)
    is above the memory limit, O(containers[].memory_swap) is below it, or a new memory limit is below the memory the container uses
    now (its cgroup's usage less inactive file cache, as C(docker stats) shows it), unless O(force=true).
  - O(containers[].cpus) is sent as C(NanoCpus). The engine refuses C(NanoCpus) on a container created with C(--cpu-quota)
    or C(--cpu-period), so on those the same limit is set as C(CpuQuota) over the container's C(CpuPeriod).
  - The engine needs the memory+swap limit with every memory change. When O(containers[].memory_swap) is not given the
    container keeps its swap allowance - unlimited swap stays unlimited, a container with a memory limit keeps its ratio
    of memory+swap to memory, and a container without one gets Docker's default for new containers (memory+swap twice the memory).
  - Containers whose memory limit shrinks are updated first, then the others. After the updates every changed container is
    read back, and the task fails when a value the engine accepted is not the one in force.
author:
  - sutazai.ops maintainers (@sutazai)
extends_documentation_fragment:
  - sutazai.ops.attributes
  - sutazai.ops.attributes.idempotent
  - sutazai.ops.docker
attributes:
  check_mode:
    support: full
    details: In check mode nothing is sent to the engine; the result shows what would change, which is how drift is reported.
  diff_mode:
    support: full
    details: One diff per changed container, headed by its name, with the limits the task sets before and after.
  idempotent:
    support: full
    details: Only limits that differ from the container's HostConfig are sent, so a second run with the same limits changes nothing.
options:
  containers:
    description:
      - The containers and their limits. Options not given are left as they are.
      - Mutually exclusive with O(selector).
    type: list
    elements: dict
    suboptions:
      name:
        description: The container's name or id (a unique id prefix will do).
        type: str
        required: true
        aliases: [id]
      memory:
        description:
          - The memory limit, in bytes or with a unit (V(512M), V(1.5G)); at least V(6M).
          - Refused when below what the container uses now, unless O(force=true).
        type: raw
      memory_reservation:
        description: The memory reservation (soft limit), bytes or with a unit; at most the memory limit.
        type: raw
      memory_swap:
        description:
          - The limit of memory plus swap, bytes or with a unit, or V(-1) for unlimited swap. At least the memory limit.
          - When not given and the memory limit changes, the container keeps its swap allowance (see the description).
        type: raw
      cpus:
        description: The CPU limit in CPUs (V(1.5)), above 0 and at most the host's CPU count.
        type: float
      cpu_shares:
        description: The relative CPU weight (2 to 262144; Docker's default is 1024).
        type: int
      cpuset_cpus:
        description: The cores the container may run on, in Docker's syntax (V(0-3), V(2,4-5)).
        type: str
      pids_limit:
        description: The most processes (and threads) the container may have; V(0) or V(-1) for no limit.
        type: int
      blkio_weight:
        description: The block I/O weight (10 to 1000). Needs a kernel with block I/O weight support.
        type: int
      restart_policy:
        description: The restart policy.
        type: str
        choices: ['no', on-failure, always, unless-stopped]
      restart_retries:
        description: With O(containers[].restart_policy=on-failure), how many times to restart it.
        type: int
  selector:
    description:
      - Labels that pick the containers, running or stopped - a container must have every label with the value given
        (a value of V(null) matches the label with any value). Every match gets the limits in O(limits).
      - Mutually exclusive with O(containers); needs O(limits). An empty selector is refused.
    type: dict
  limits:
    description: The limits for every container O(selector) matches; the same options as O(containers) has, without a name.
    type: dict
    suboptions:
      memory:
        description: See O(containers[].memory).
        type: raw
      memory_reservation:
        description: See O(containers[].memory_reservation).
        type: raw
      memory_swap:
        description: See O(containers[].memory_swap).
        type: raw
      cpus:
        description: See O(containers[].cpus).
        type: float
      cpu_shares:
        description: See O(containers[].cpu_shares).
        type: int
      cpuset_cpus:
        description: See O(containers[].cpuset_cpus).
        type: str
      pids_limit:
        description: See O(containers[].pids_limit).
        type: int
      blkio_weight:
        description: See O(containers[].blkio_weight).
        type: int
      restart_policy:
        description: See O(containers[].restart_policy).
        type: str
        choices: ['no', on-failure, always, unless-stopped]
      restart_retries:
        description: See O(containers[].restart_retries).
        type: int
  force:
    description:
      - Set a memory limit even when it is below what the container uses now, and a C(memory_swap) below what it holds in
        memory and swap together (where the kernel accounts swap). The kernel then reclaims, swaps out or, when it cannot,
        OOM-kills processes of that container.
    type: bool
    default: false
notes:
  - Limits set at runtime are lost when Docker Compose recreates the container. Write the same limits into the compose file
    (the P(sutazai.ops.tier_limits#filter) filter gives both from one plan) and run this module in check mode to report drift.
  - A memory reservation, a block I/O weight or a CPU limit cannot be removed through the update endpoint, only changed.
  - C(oom_score_adj) cannot be changed on an existing container; set it when the container is created.
  - The memory a container uses is read from its cgroup files (cgroup v1 and v2) when the engine is local, else from
    the engine's one-shot stats.
seealso:
  - plugin: sutazai.ops.tier_limits
    plugin_type: filter
  - module: community.docker.docker_container
    description: Creates containers; recreates them when C(cpus) or C(pids_limit) change.
requirements:
  - "Docker API >= 1.25"
"""

EXAMPLES = r"""
- name: The stable profile's limits, in one task, without restarting anything
  sutazai.ops.container_limits:
    containers:
      - {name: sutazai-postgres, memory: 1G, cpus: 2}
      - {name: sutazai-redis, memory: 512M, cpus: 0.5}
      - {name: sutazai-qdrant, memory: 1G, cpus: 1}
      - {name: sutazai-ollama, memory: 3G, memory_reservation: 768M, cpus: 6}
      - {name: sutazai-backend, memory: 1.5G, cpus: 2}
      - {name: sutazai-frontend, memory: 768M, cpus: 1}

- name: Every tier 3 agent gets 256M, half a CPU and at most 256 processes
  sutazai.ops.container_limits:
    selector:
      sutazai.tier: "3"
    limits:
      memory: 256M
      cpus: 0.5
      pids_limit: 256

- name: Limits from the tier plan for this host
  sutazai.ops.container_limits:
    containers: "{{ (services | sutazai.ops.tier_limits(ansible_facts.memtotal_mb * 1048576, ansible_facts.processor_vcpus)).containers }}"

- name: Report drift from the compose file's limits without changing anything
  sutazai.ops.container_limits:
    containers: "{{ stack_limits.containers }}"
  check_mode: true
  register: drift

- name: Show what drifted
  ansible.builtin.debug:
    var: drift.drift
  when: drift is changed
"""

RETURN = r"""
containers:
  description: Every container of the task, in the order given (for O(selector), the order the engine lists them).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The container's name.
      type: str
      sample: sutazai-postgres
    id:
      description: The container's full id.
      type: str
      sample: 5f3c2b9d8e7a6f1c0b4d3e2a9f8c7b6a5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a
    running:
      description: Whether the container was running.
      type: bool
      sample: true
    usage:
      description:
        - The memory the container used before the run, in bytes (cgroup usage less inactive file cache).
        - V(null) when it is not running, or when it was not needed and could only be had from the engine's stats.
      type: int
      sample: 209715200
    before:
      description: The limits the task sets, as they were (sizes in bytes, V(null) for no limit).
      type: dict
      sample: {memory: null, cpus: null}
    after:
      description: The same limits after the run, as read back from the engine (in check mode, as they would be).
      type: dict
      sample: {memory: 1073741824, memory_swap: 2147483648, cpus: 2.0}
    changed:
      description: Whether the container was changed (in check mode, would be).
      type: bool
      sample: true
    error:
      description: What the engine said when it refused this container's update.
      type: str
      returned: when the engine refused the update
      sample: "Cannot update container 5f3c2b9d8e7a: ..."
  sample:
    - {name: sutazai-postgres, id: 5f3c2b9d8e7a..., running: true, usage: 209715200, changed: true,
       before: {memory: null, cpus: null}, after: {memory: 1073741824, memory_swap: 2147483648, cpus: 2.0}}
drift:
  description:
    - Per changed container, each limit that differed, with the value before and after.
    - In check mode this is the drift between the containers and the task.
  returned: always
  type: dict
  sample: {sutazai-postgres: {memory: {before: null, after: 1073741824}}}
engine_warnings:
  description: Warnings the engine gave with its answers, each prefixed with the container's name.
  returned: always
  type: list
  elements: str
  sample: ["agent-1: the engine warned: Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."]
problems:
  description: Why the task was refused - every unknown container and bad value, each naming the container.
  returned: failure
  type: list
  elements: str
  sample: ["it-limits-07: memory 100M is below the 200.5M it uses now; ...", "ghost: no such container"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.sutazai.ops.plugins.module_utils import _docker
from ansible_collections.sutazai.ops.plugins.module_utils import _limits


def _limit_options():
    return dict(
        memory=dict(type='raw'),
        memory_reservation=dict(type='raw'),
        memory_swap=dict(type='raw'),
        cpus=dict(type='float'),
        cpu_shares=dict(type='int'),
        cpuset_cpus=dict(type='str'),
        pids_limit=dict(type='int'),
        blkio_weight=dict(type='int'),
        restart_policy=dict(type='str', choices=list(_limits.RESTART_POLICIES)),
        restart_retries=dict(type='int'),
    )


def main():
    """Change the limits of the task's containers."""
    container_options = _limit_options()
    container_options['name'] = dict(type='str', required=True, aliases=['id'])
    argument_spec = dict(
        containers=dict(type='list', elements='dict', options=container_options),
        selector=dict(type='dict'),
        limits=dict(type='dict', options=_limit_options()),
        force=dict(type='bool', default=False),
    )
    argument_spec.update(_docker.argument_spec())
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[('containers', 'selector'), ('containers', 'limits')],
        required_one_of=[('containers', 'selector')],
        required_by={'selector': 'limits'},
    )
    params = module.params
    if params['selector'] is not None and not params['selector']:
        module.fail_json(msg='selector is empty, so it would match every container; name at least one label such as sutazai.tier')
    if not _docker.HAS_DOCKER:
        module.fail_json(msg=missing_required_lib('docker'), exception=_docker.DOCKER_IMPORT_ERROR)
    options = _docker.options_from(params)
    try:
        client = _docker.create_client(options)
    except _docker.DockerSetupError as exc:
        module.fail_json(msg='container_limits: %s' % exc)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        module.fail_json(msg='container_limits could not reach the Docker engine at %s: %s' % (_docker.describe(options), _limits.engine_message(exc)))
    try:
        result = _limits.run_task(_limits.Engine(client.api), entries=params['containers'], selector=params['selector'],
                                  limits=params['limits'], force=params['force'], check_mode=module.check_mode)
    except _limits.LimitsError as exc:
        failed = dict(exc.result)
        failed.pop('diff', None)
        module.fail_json(msg=str(exc), problems=exc.problems, **failed)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        module.fail_json(msg='container_limits could not talk to the Docker engine at %s: %s' % (_docker.describe(options), _limits.engine_message(exc)))
    finally:
        client.close()
    diff = result.pop('diff')
    for warning in result['engine_warnings']:
        module.warn(warning)
    if params['selector'] is not None and not result['containers']:
        module.warn('selector %s matches no container, so no limit was set; check the labels' % (
            ', '.join('%s=%s' % (k, v) for k, v in sorted(params['selector'].items())),))
    if module._diff:
        result['diff'] = diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
