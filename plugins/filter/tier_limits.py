# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tier_limits filter: a tier plan plus a host's RAM and CPUs -> per-service limits (math in module_utils/_tiers.py)."""

DOCUMENTATION = r"""
name: tier_limits
short_description: Turn a tier plan and a host's memory and CPUs into per-service limits
version_added: 0.1.0
author:
  - sutazai.ops maintainers (@sutazai)
description:
  - Splits a host's memory between a system reserve and three service tiers, then each tier's budget between its
    services, and gives every service a memory limit, a memory reservation, a CPU limit, an optional cpuset and an
    C(oom_score_adj) by tier.
  - The memory left after O(plan.reserve) is shared between the tiers in proportion to their C(share); each tier budget
    is rounded down to C(budget_granularity) and what rounding leaves is kept as headroom. A tier budget is cut into
    C(slots) equal slots, each snapped to the nearest C(granularity) (never so far up that the slots the services ask for
    exceed the budget), and a service takes C(weight) slots (times its C(replicas)), rounded down to C(granularity) and
    held between its C(memory_min) and C(memory_max). When a tier's services ask for more slots than it has, the budget
    is cut into as many slots as they ask for, so a tier never hands out more than its budget. A fixed C(memory) comes
    out of the budget first.
  - Tier 1 minimums are a floor. A tier 1 service whose share is below its minimum gets the minimum, and what tier 1 takes
    above its budget comes out of tier 3's budget, then tier 2's. A host smaller than the system reserve plus every tier 1
    minimum fails with a message naming the host size, what is needed and each service's minimum.
  - CPU limits (C(cpus)) are capped by the CPUs a service may use. On hosts with C(cpusets.min_cores) (8) cores or more
    the first C(cpusets.os_cores) (2) cores are left to the operating system and the rest are split between core groups in
    proportion to their weights (on 12 cores C(app) 2-3, C(data) 4-5, C(llm) 6-9, C(agents) 10-11); a service gets its
    group's cores as C(cpuset_cpus).
  - 'The default plan reproduces the stable profile''s limits on an 18 GiB host, for any MemTotal from 16 to 19.5 GiB (postgres 1G,
    redis 512M, qdrant 1G, ollama 3G, backend 1.5G, frontend 768M: one slot is 256 MiB in every tier there) and the reference split on a 29 GB (29.38 GiB) host
    (system reserve 2G, tier 1 14G, tier 2 8G, tier 3 5G, 0.38G headroom). Larger hosts give every service proportionally more.'
positional: _input, host_memory, host_cpus, plan
options:
  _input:
    description:
      - The services, each with a tier - a list of dictionaries (C(name), C(tier), and optionally C(container), the container's
        name when it differs from the service's, C(replicas), and any per-service key of O(plan.services)),
        or a dictionary of service name to tier (or to such a dictionary).
      - Tiers are V(1) (critical - postgres, redis, ollama, backend, frontend), V(2) (vector databases, monitoring, active agents)
        and V(3) (on-demand frameworks, dev tools, specialised agents).
    type: raw
    required: true
  host_memory:
    description:
      - The host's memory, in bytes or with a unit (V(18G), V(30085M)); for example
        C(ansible_facts.memtotal_mb * 1048576).
    type: raw
    required: true
  host_cpus:
    description: The host's CPU count, for example C(ansible_facts.processor_vcpus).
    type: int
    required: true
  plan:
    description:
      - "Changes to the default plan, merged into it key by key, so that V(reserve: 4G) changes only the reserve."
      - Sizes are bytes or numbers with a unit (V(512M), V(1.5G)); numbers may have decimals.
    type: dict
    default: {}
    suboptions:
      reserve:
        description: Memory kept for the operating system, page cache and buffers; no tier gets it.
        type: raw
        default: 2G
      budget_granularity:
        description: Tier budgets are rounded down to a multiple of this.
        type: raw
        default: 256M
      granularity:
        description: Service memory limits from weights are rounded down to a multiple of this.
        type: raw
        default: 64M
      tiers:
        description:
          - Per tier (keys V(1), V(2), V(3)) - C(share) of the memory after the reserve (relative; default 14, 8, 5),
            C(slots) (default 33, 18, 11), C(oom_score_adj) (default -500, 0, 500), and the defaults of every per-service
            key of O(plan.services) for services of the tier.
        type: dict
      services:
        description:
          - Per service name - C(weight) (slots), C(memory) (fixed, instead of a weight), C(memory_min), C(memory_max),
            C(reservation) (fraction of the limit, default 0.25) or C(memory_reservation) (fixed), C(cpus), C(cpus_reservation),
            C(cpu_group) (a key of O(plan.cpusets.groups)) and C(oom_score_adj).
          - The default plan names postgres, redis, ollama, backend, frontend, qdrant, chromadb, prometheus and grafana.
        type: dict
      cpusets:
        description:
          - "The core layout (operating system, app, data, llm and agents core groups) - C(enabled) (default V(true)),
            C(min_cores) (default 8), C(os_cores) (default 2) and C(groups),
            core group name to weight (default V({app: 2, data: 2, llm: 4, agents: 2})). Set to V(null) or C(enabled) to V(false)
            to give no cpusets."
        type: dict
notes:
  - Memory figures are bytes. Docker, Compose and M(sutazai.ops.container_limits) take them as they are.
  - Docker cannot change C(oom_score_adj) of a running container; write RV(_value.services.oom_score_adj) into the compose file.
seealso:
  - module: sutazai.ops.container_limits
"""

EXAMPLES = r"""
- name: Size the stack for this host
  ansible.builtin.set_fact:
    stack_limits: >-
      {{ services | sutazai.ops.tier_limits(ansible_facts.memtotal_mb * 1048576, ansible_facts.processor_vcpus) }}
  vars:
    services:
      - {name: postgres, tier: 1, container: sutazai-postgres}
      - {name: redis, tier: 1, container: sutazai-redis}
      - {name: ollama, tier: 1, container: sutazai-ollama}
      - {name: backend, tier: 1, container: sutazai-backend}
      - {name: frontend, tier: 1, container: sutazai-frontend}
      - {name: qdrant, tier: 2, container: sutazai-qdrant}
      - {name: autogpt, tier: 3, weight: 2}

- name: Apply the limits in place, in one task
  sutazai.ops.container_limits:
    containers: "{{ stack_limits.containers }}"

- name: A bigger system reserve and a fixed 4G for ollama
  ansible.builtin.debug:
    msg: "{{ {'ollama': 1, 'backend': 1} | sutazai.ops.tier_limits('32G', 8, {'reserve': '4G', 'services': {'ollama': {'memory': '4G'}}}) }}"
"""

RETURN = r"""
_value:
  description: The limits per service, the same as a list for M(sutazai.ops.container_limits), and how the memory was split.
  type: dict
  contains:
    services:
      description: Service name to its limits.
      type: dict
      contains:
        tier:
          description: The service's tier.
          type: int
        container:
          description: The container's name (the service name unless the input gave C(container)).
          type: str
        replicas:
          description: How many replicas the figures are for (each replica gets RV(_value.services.memory)).
          type: int
        memory:
          description: The memory limit in bytes, per replica.
          type: int
        memory_source:
          description: Where the limit came from - V(weight), V(min), V(max) or V(fixed).
          type: str
        memory_reservation:
          description: The memory reservation (soft limit) in bytes.
          type: int
        cpus:
          description: The CPU limit.
          type: float
        cpus_reservation:
          description: The CPU reservation (for the compose file's C(deploy.resources.reservations)).
          type: float
        cpuset_cpus:
          description: The cores the service runs on (V(2-3)), or V(null) on hosts with fewer cores than C(cpusets.min_cores).
          type: str
        oom_score_adj:
          description: The kernel OOM killer's adjustment by tier (-500, 0, 500 by default).
          type: int
      sample:
        postgres: {tier: 1, container: sutazai-postgres, replicas: 1, memory: 1073741824, memory_source: weight,
                   memory_reservation: 268435456, cpus: 2.0, cpus_reservation: 0.5, cpuset_cpus: null, oom_score_adj: -500}
    containers:
      description: One entry per service for O(sutazai.ops.container_limits#module:containers) - name (the container), memory,
        memory_reservation (when above 0), cpus and cpuset_cpus (when there is one).
      type: list
      elements: dict
      sample: [{name: sutazai-postgres, memory: 1073741824, memory_reservation: 268435456, cpus: 2.0}]
    budget:
      description:
        - The split - host_memory, host_cpus, reserve, usable (host memory minus the reserve), headroom (what rounding the tier
          budgets left), os_cpuset and cpu_groups (V(null) without cpusets), and per tier (keys 1, 2, 3) - share, budget,
          budget_after_tier1 (after tier 1 took what its minimums need), slots, slot_size, allocated, overcommitted
          (minimums of tier 2 or 3 above their budget), oom_score_adj, services and, when tier 1 borrowed, borrowed.
      type: dict
      sample:
        host_memory: 31546408960
        host_cpus: 12
        reserve: 2147483648
        usable: 29398925312
        headroom: 407896064
        os_cpuset: 0-1
        cpu_groups: {app: 2-3, data: 4-5, llm: 6-9, agents: 10-11}
        tiers:
          1: {share: 14, budget: 15032385536, budget_after_tier1: 15032385536, slots: 33, slot_size: 469762048, allocated: 12683575296,
              overcommitted: false, oom_score_adj: -500, services: [postgres, redis, ollama, backend, frontend]}
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.sutazai.ops.plugins.module_utils._tiers import TierPlanError, plan_limits


def tier_limits(services, host_memory, host_cpus, plan=None):
    """Per-service limits for a host; see DOCUMENTATION."""
    try:
        return plan_limits(services, host_memory, host_cpus, plan)
    except TierPlanError as exc:
        raise AnsibleFilterError('sutazai.ops.tier_limits: %s' % exc) from None


class FilterModule:
    """The sutazai.ops tier budget filter."""

    def filters(self):
        """Filter name -> function."""
        return {'tier_limits': tier_limits}
