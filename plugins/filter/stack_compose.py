# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack_compose filter: the stack catalogue, a profile and a host -> the compose document (module_utils/_stack.py)."""

DOCUMENTATION = r"""
name: stack_compose
short_description: Render the tiered stack's compose document for one host and profile
version_added: 0.1.0
author:
  - sutazai.ops maintainers (@sutazai)
description:
  - Turns the service catalogue (platform services and agents, each with a tier), a profile and the host's memory and
    CPUs into a Docker Compose document (or, with O(_input.engine=swarm), a Swarm stack document), with every service's
    limits and reservations from the tier plan (see P(sutazai.ops.tier_limits#filter)).
  - Every service gets the labels C(sutazai.tier) and C(sutazai.service), C(oom_score_adj) by tier (tier 3 is killed
    first, postgres last), C(cgroup_parent) (the stack cgroup), json-file log rotation, a restart policy, and ports bound
    to 127.0.0.1 unless O(_input.expose) says otherwise.
  - Settings that take effect are rendered as server flags - postgres C(-c shared_buffers=) (25% of its limit),
    C(effective_cache_size) (75%) and C(max_connections); redis C(--maxmemory) (a fraction of its limit) and
    C(--maxmemory-policy allkeys-lru); Ollama only its real C(OLLAMA_*) variables, from a preset.
  - Refuses unknown C(OLLAMA_*) names (listing the real ones), and the variables the images ignore
    (C(POSTGRES_SHARED_BUFFERS), C(REDIS_MAXMEMORY), ...), naming the setting to use instead.
  - The plan is made for the whole catalogue, so a smaller profile (V(emergency)) keeps the limits of the services it runs.
positional: _input
options:
  _input:
    description:
      - A dictionary with C(services) and C(agents) (the catalogue, see the stack role's C(stack_services)), C(host_memory)
        (bytes or a size), C(host_cpus), and the options C(project), C(profile) (V(stable), V(dev), V(emergency)),
        C(engine) (V(compose), V(swarm)), C(image_set) (V(upstream), V(local)), C(images) (set name to image name to
        reference), C(cgroup_parent), C(expose) (V(false), V(true) or a bind address), C(port_offset), C(restart),
        C(log_max_size), C(log_max_file), C(plan) (changes to the tier plan), C(postgres_settings), C(redis_settings),
        C(redis_maxmemory_fraction), C(ollama_preset) (V(stable), V(high_concurrency)), C(ollama_environment),
        C(swarm_update_monitor), C(swarm_endpoint_mode) (V(vip), V(dnsrr)) and C(swarm_port_mode) (V(ingress), V(host)).
      - C(oom_score_min), the lowest C(oom_score_adj) the engine may set (V(-1000); V(0) where it lacks CAP_SYS_RESOURCE) -
        when a tier's score is below it every tier is shifted up together, so tier 3 still dies first and tier 1 last.
      - C(applied), the compose document the running containers were created from, if any, sets RV(_value.limits_only).
    type: dict
    required: true
notes:
  - Swarm does not honour C(cgroup_parent), C(oom_score_adj), C(container_name), C(restart), C(depends_on), C(cpuset) or
    C(.env); the swarm document leaves them out and RV(_value.warnings) says what replaces each.
seealso:
  - plugin: sutazai.ops.tier_limits
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Render the stable profile for this host
  ansible.builtin.set_fact:
    stack_render: >-
      {{ {'services': stack_services, 'agents': stack_agents, 'profile': 'stable', 'image_set': 'local',
          'images': stack_images, 'cgroup_parent': 'sutazai',
          'host_memory': ansible_facts.memtotal_mb * 1048576, 'host_cpus': ansible_facts.processor_vcpus}
         | sutazai.ops.stack_compose }}

- name: Write the compose file
  ansible.builtin.copy:
    content: "{{ stack_render.compose | to_nice_yaml(indent=2) }}"
    dest: /opt/sutazai/compose.yml
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The compose document and what the role verifies after deploying it.
  type: dict
  contains:
    compose:
      description: The compose (or swarm stack) document.
      type: dict
    services:
      description: The services of the profile, in catalogue order.
      type: list
      elements: str
    left_out:
      description: The catalogue's services the profile does not run (stopped when the profile shrinks).
      type: list
      elements: str
    tiers:
      description: Service name to tier.
      type: dict
    containers:
      description: Entries for M(sutazai.ops.container_limits) (single-replica services).
      type: list
      elements: dict
    limits:
      description: Per service, the tier plan's limits (see P(sutazai.ops.tier_limits#filter)).
      type: dict
    settings:
      description: Per postgres, redis and ollama service, its kind and the settings to verify in force.
      type: dict
      sample: {postgres: {kind: postgres, settings: {shared_buffers: 256MB, effective_cache_size: 768MB, max_connections: '100'}}}
    health:
      description: The HTTP health URLs of published services, as C({service, url}).
      type: list
      elements: dict
    stack_budget:
      description: The stack cgroup's cap in bytes - host memory less the system reserve.
      type: int
    stack_budget_text:
      description: RV(_value.stack_budget) in short form (V(21.5G)).
      type: str
    budget:
      description: The tier plan's split (see P(sutazai.ops.tier_limits#filter)).
      type: dict
    oom_score_shift:
      description: How much every tier's C(oom_score_adj) was raised to respect C(oom_score_min) (0 normally).
      type: int
    limits_only:
      description: V(true) when the document differs from C(applied) in limits at most (deploy.resources, cpuset) - the role
        then puts the limits in force in place and recreates nothing.
      type: bool
    warnings:
      description: What the swarm engine does not honour, and what replaces it.
      type: list
      elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.sutazai.ops.plugins.module_utils._stack import StackError, render


def stack_compose(options):
    """The stack's compose document; see DOCUMENTATION."""
    if not isinstance(options, dict):
        raise AnsibleFilterError('sutazai.ops.stack_compose: the input must be a dictionary, got %r' % (options,))
    try:
        return render(options)
    except StackError as exc:
        raise AnsibleFilterError('sutazai.ops.stack_compose: %s' % exc) from None


class FilterModule:
    """sutazai.ops stack filters."""

    def filters(self):
        """Filter name -> function."""
        return {'stack_compose': stack_compose}
