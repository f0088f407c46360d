# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory_guard module: a thin wrapper of the guard engine in module_utils/_guard.py."""

DOCUMENTATION = r"""
module: memory_guard
short_description: Read memory pressure and relieve it tier by tier, models first
version_added: 0.1.0
description:
  - Reads one snapshot of memory pressure the way the kernel sees it - host C(MemAvailable) against
    C(MemTotal) (never C(MemFree), since reclaimable page cache is not pressure), PSI where
    C(/proc/pressure/memory) exists, the stack cgroup against its own limit (cgroup v1 and v2),
    every container labelled C(sutazai.tier) (usage read from cgroupfs) and the models Ollama has loaded.
  - Pressure is the highest of the host's and the stack cgroup's. At or above O(soft) the guard unloads
    Ollama models, the one the server would unload first (earliest C(expires_at)) first, re-reading after
    each, and keeps the model in use when that is enough. A sustained memory stall - PSI C(full) avg10 at or
    above O(psi_full) - raises the level to at least soft even when C(MemAvailable) looks fine; then each
    pass unloads one model (avg10 cannot show the effect of an unload within the pass).
  - At or above O(hard) the guard unloads every model, then stops tier 3 containers, largest first,
    one at a time, then tier 2, until pressure is below O(soft). Tier 1 containers and containers without
    a tier label are never stopped.
  - Every container the guard stops is recorded in O(state_file) (atomic writes, previous version kept as
    a backup) BEFORE it is stopped (status V(stopping), then V(stopped)); when the record cannot be written
    the container is not stopped. Once pressure has stayed below O(restore_below) for O(restore_after)
    seconds, a later run starts the most recently stopped container again, one per run.
  - An acting run holds an exclusive lock (C(<state_file>.lock)) from reading the state file to its last
    write, so this module and the monitor daemon never interleave and never lose or duplicate a record.
    A run that cannot get the lock within O(lock_timeout) seconds fails and does nothing.
  - Any failure (state file not writable, lock held too long, a reading that fails, a Docker or Ollama
    error) fails the task with a message that lists what was done before it; RV(actions) and
    RV(stopped_by_guard) are returned with the failure.
  - With O(project) (and O(labels)), only the containers of that Compose project or Swarm stack are read, stopped
    and started again, so a guard pass on a Docker engine shared with other projects never touches theirs; the
    pressure is read as without it (host and stack cgroup). Records of other containers in O(state_file) are
    left as they are - never restored, never dropped.
  - The monitor daemon runs the same engine in a loop; this module is one pass of it.
author:
  - sutazai.ops maintainers (@sutazai)
extends_documentation_fragment:
  - sutazai.ops.attributes
  - sutazai.ops.docker.prefixed
attributes:
  check_mode:
    support: full
    details:
      - In check mode the guard plans on simulated snapshots (each step frees the memory it is expected to) and acts on nothing.
      - Check mode and O(act=false) write nothing - no state file, no lock file, no copy of a damaged state file
        (a damaged file is reported in RV(warnings_guard) and set aside by the next acting run).
  diff_mode:
    support: full
    details: The diff shows the running tiered containers and the loaded models before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: partial
    details:
      - A second run right after a run that relieved pressure changes nothing while the readings stay the same.
      - The module acts on memory readings and time (restore after O(restore_after) seconds), which change between runs.
options:
  mode:
    description:
      - Thresholds by name - V(conservative) 75/85, V(balanced) 80/90, V(aggressive) 85/95 (soft/hard percent).
      - O(soft) and O(hard) override the mode's values.
    type: str
    choices: [conservative, balanced, aggressive]
    default: balanced
  soft:
    description: Soft threshold in percent of memory (1-99); must be below O(hard).
    type: float
  hard:
    description: Hard threshold in percent of memory (1-99).
    type: float
  restore_below:
    description: Restore only while pressure is below this percent. Defaults to O(soft) minus 10.
    type: float
  restore_after:
    description: Seconds pressure must stay below O(restore_below) before a stopped container is started again.
    type: float
    default: 300
  level:
    description:
      - V(auto) acts on the measured level.
      - V(soft) and V(hard) act as that level whatever the readings, still stopping once pressure is below O(soft).
      - V(emergency) unloads every model and stops every tier 3 and tier 2 container whatever the readings (the emergency playbook).
    type: str
    choices: [auto, soft, hard, emergency]
    default: auto
  act:
    description: When false, only report the snapshot and the level; plan nothing and act on nothing.
    type: bool
    default: true
  fail_above:
    description:
      - A gate for preflight checks - fail when the pressure after this run is above this percent.
    type: float
  psi_full:
    description:
      - Percent of time (PSI C(full) avg10 of C(/proc/pressure/memory), the share of the last 10 seconds in which
        every task waited for memory) at or above which the level is at least soft, whatever C(MemAvailable) says.
      - V(0) turns the rule off. Hosts without PSI are never raised by it.
    type: float
    default: 10.0
  lock_timeout:
    description:
      - Seconds to wait for another guard run (another task or the monitor daemon) to release the state file's lock.
      - A run holds the lock while it stops containers, up to O(stop_timeout) seconds each.
    type: float
    default: 60
  stack_cgroup:
    description:
      - The cgroup that holds the whole stack (the C(cgroup_parent) of its containers), for example V(sutazai) on cgroup v1
        or V(sutazai.slice) on cgroup v2. Its usage (less inactive file cache) is measured against its own limit.
    type: str
  ollama_host:
    description:
      - The Ollama server, as a URL or in any form of C(OLLAMA_HOST), read as O(sutazai.ops.ollama_model#module:ollama_host) reads it.
      - Taken from the E(OLLAMA_HOST) environment variable when not given, else V(http://127.0.0.1:11434).
      - Set to an empty string to leave models out.
    type: str
  ollama_keep_alive:
    description:
      - The keep-alive in force on the server in seconds, when it is known (C(OLLAMA_KEEP_ALIVE), and no client asks for another).
      - C(/api/ps) reports only C(expires_at), the last use plus the keep-alive its last request chose, so without this
        option each model's C(idle_seconds) is V(null) (C(expires_in) is always given); models are unloaded in C(expires_at) order either way.
    type: float
  docker_host:
    description:
      - The Docker engine to read containers from and stop or start them on - V(unix:///var/run/docker.sock), V(tcp://192.0.2.5:2376)
        or V(ssh://user@host) (which needs the Python package C(paramiko)), reached with the other C(docker_) options.
      - Taken from E(DOCKER_HOST) when not given, else V(unix:///var/run/docker.sock).
      - Set to an empty string to leave containers out.
    type: str
    aliases: [docker_url]
  state_file:
    description: Where the guard records what it stopped and unloaded.
    type: path
    default: /var/lib/sutazai/memory_guard.json
  stop_timeout:
    description: Seconds a container gets to stop gracefully before it is killed.
    type: int
    default: 20
  project:
    description:
      - The Compose project or Swarm stack whose containers the guard may stop and start again - those labelled
        C(com.docker.compose.project=<project>) or C(com.docker.stack.namespace=<project>). The stack role's C(stack_project).
      - V(null) (the default) - every container with the C(sutazai.tier) label, whatever its project.
      - A record in O(state_file) of a container outside the scope is kept as it is (never restored, never dropped). A record
        whose container was removed is the scope's when it names the project (records written before this option do not).
      - The pressure reading is the same with or without it (the host and O(stack_cgroup)).
      - An empty string is an error.
    type: str
  labels:
    description:
      - Further labels a container must all carry (name to value) to be the guard's, with or without O(project).
    type: dict
requirements:
  - docker (the Python SDK), when O(docker_host) is set.
notes:
  - Page caches are never dropped - reclaimable cache is not pressure and dropping it slows every service.
  - Unloaded models are not loaded again by the guard; Ollama loads a model on its next request.
seealso:
  - module: sutazai.ops.ollama_model
"""

EXAMPLES = r"""
- name: Relieve memory pressure now if there is any (balanced thresholds, 80/90)
  sutazai.ops.memory_guard:
    stack_cgroup: sutazai

- name: Preflight gate - refuse to deploy on a host already above 85 percent
  sutazai.ops.memory_guard:
    act: false
    fail_above: 85

- name: Emergency - unload every model and keep only tier 1 of project sutazai running (other projects untouched)
  sutazai.ops.memory_guard:
    level: emergency
    project: sutazai
  register: emergency

- name: Report what the guard would do with aggressive thresholds
  sutazai.ops.memory_guard:
    mode: aggressive
  check_mode: true
"""

RETURN = r"""
level:
  description: The level the readings gave (V(ok), V(soft) or V(hard)); a PSI stall (RV(psi_stalled)) makes V(ok) V(soft).
  returned: always
  type: str
  sample: hard
psi_stalled:
  description: Whether PSI C(full) avg10 was at or above O(psi_full) before the run.
  returned: success
  type: bool
  sample: false
escalation:
  description: The level the guard acted on (O(level) when forced, else RV(level)).
  returned: always
  type: str
  sample: hard
pressure_before:
  description: Pressure in percent before the run.
  returned: always
  type: float
  sample: 93.4
pressure_after:
  description: Pressure in percent after the run (simulated in check mode).
  returned: always
  type: float
  sample: 71.2
memory_before:
  description: Host available/total, stack usage/limit, models loaded and containers running before the run.
  returned: always
  type: dict
  sample: {pressure: 93.4, host_available: 1073741824, host_total: 17179869184, models_loaded: 2, containers_running: 9}
memory_after:
  description: The same figures after the run.
  returned: always
  type: dict
  sample: {pressure: 71.2, host_available: 4294967296, host_total: 17179869184, models_loaded: 0, containers_running: 7}
thresholds:
  description: The thresholds in force.
  returned: always
  type: dict
  sample: {soft: 80.0, hard: 90.0, restore_below: 70.0, restore_after: 300.0}
snapshot:
  description: The readings before the run - host (with PSI), stack, containers, models.
  returned: always
  type: dict
  sample: {pressure: 93.4, host: {mem_total: 17179869184, mem_available: 1073741824, psi_some_avg10: 3.1, psi_full_avg10: 0.4},
           stack: null, containers: [],
           models: [{name: "tinyllama:latest", size: 668000000, expires_at: "2026-11-30T05:00:00.5Z", expires_in: 240.5,
                     idle_seconds: null, pinned: false}]}
actions:
  description:
    - The steps taken (planned in check mode), in order, each with the pressure before and after it.
    - On failure, the steps taken before it.
  returned: always
  type: list
  elements: dict
  sample: [{action: unload, model: "tinyllama:latest", size: 668000000, pressure_before: 93.4, pressure_after: 89.5},
           {action: stop, container: agent-7, id: 3f2a..., tier: 3, size: 402653184, pressure_before: 89.5, pressure_after: 71.2}]
stopped_by_guard:
  description:
    - Containers the guard stopped and has not started again, oldest first (the state file's records).
    - C(status) is V(stopped), or V(stopping) when the stop was recorded but not confirmed (the next run drops the record
      if the container runs).
  returned: always
  type: list
  elements: dict
  sample: [{id: 3f2a..., name: agent-7, tier: 3, usage: 402653184, stopped_at: 1795339800.1, status: stopped}]
scope:
  description:
    - The containers the guard acted on - O(project) and O(labels); V(null) when every tiered container was.
  returned: when the pass ran (also with a failure during it; not when the options themselves were refused)
  type: dict
  sample: {project: sutazai, labels: {}}
containers_outside_scope:
  description: How many tiered containers on the engine were outside RV(scope) (read, never stopped or started).
  returned: success
  type: int
  sample: 3
kept_outside_scope:
  description: Names of the containers in RV(stopped_by_guard) outside RV(scope), whose records were left as they are.
  returned: success
  type: list
  elements: str
  sample: []
warnings_guard:
  description: What could not be read or done (Ollama unreachable, a damaged state file recovered from its backup).
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.sutazai.ops.plugins.module_utils import _containers
from ansible_collections.sutazai.ops.plugins.module_utils import _docker
from ansible_collections.sutazai.ops.plugins.module_utils import _guard as guard
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_policy as policy
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate
from ansible_collections.sutazai.ops.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.sutazai.ops.plugins.module_utils._docker import docker  # the docker SDK, None when it is not installed
from ansible_collections.sutazai.ops.plugins.module_utils._ollama import OllamaClient, resolve_host


def _diff_view(snapshot):
    return {
        'running': sorted(c['name'] for c in snapshot['containers'] if c['running']),
        'models': sorted(m['name'] for m in snapshot['models']),
        'pressure': snapshot['pressure'],
    }


def main():
    """Run one guard pass."""
    argument_spec = _docker.argument_spec('docker_')
    module = AnsibleModule(
        argument_spec=dict(
            argument_spec,
            mode=dict(type='str', choices=sorted(policy.MODES), default=policy.DEFAULT_MODE),
            soft=dict(type='float'),
            hard=dict(type='float'),
            restore_below=dict(type='float'),
            restore_after=dict(type='float', default=policy.DEFAULT_RESTORE_AFTER),
            level=dict(type='str', choices=['auto', 'soft', 'hard', 'emergency'], default='auto'),
            act=dict(type='bool', default=True),
            fail_above=dict(type='float'),
            psi_full=dict(type='float', default=policy.DEFAULT_PSI_FULL),
            lock_timeout=dict(type='float', default=gstate.DEFAULT_LOCK_TIMEOUT),
            stack_cgroup=dict(type='str'),
            ollama_host=dict(type='str'),
            ollama_keep_alive=dict(type='float'),
            state_file=dict(type='path', default='/var/lib/sutazai/memory_guard.json'),
            stop_timeout=dict(type='int', default=20),
            project=dict(type='str'),
            labels=dict(type='dict'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        thresholds = policy.resolve_thresholds(params['mode'], params['soft'], params['hard'], params['restore_below'], params['restore_after'],
                                               params['psi_full'])
    except policy.GuardConfigError as exc:
        module.fail_json(msg='memory_guard: %s' % exc)
    try:
        scope = _containers.Scope(params['project'], params['labels'])
    except _containers.ScopeError as exc:
        module.fail_json(msg='memory_guard: %s. Nothing was done' % exc, actions=[])
    if params['fail_above'] is not None and not 0 < params['fail_above'] <= 100:
        module.fail_json(msg='memory_guard: fail_above must be a percent between 0 and 100, got %s' % params['fail_above'])
    if params['lock_timeout'] < 0:
        module.fail_json(msg='memory_guard: lock_timeout must not be negative, got %s' % params['lock_timeout'], actions=[])
    ollama_url = None
    if params['ollama_host'] != '':  # '' leaves models out; None means OLLAMA_HOST, else the default
        try:
            ollama_url = resolve_host(params['ollama_host'])
        except ValueError as exc:
            module.fail_json(msg='memory_guard: ollama_host: %s. Nothing was done' % exc, actions=[])

    docker_client = None
    if params['docker_host'] != '':  # '' leaves containers out; None means DOCKER_HOST, else the default socket
        if docker is None:
            module.fail_json(msg=missing_required_lib('docker'), exception=_docker.DOCKER_IMPORT_ERROR)
        docker_options = _docker.options_from(params, 'docker_')
        try:
            docker_client = _docker.create_client(docker_options)
        except _docker.DockerSetupError as exc:
            module.fail_json(msg='memory_guard: %s. Nothing was done' % exc, actions=[])
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # the guard still reads the host and Ollama, and unloads models; it cannot see or stop containers
            module.warn('Docker engine at %s not reachable (%s): containers are neither read nor stopped' % (
                _docker.describe(docker_options), _docker.error_message(exc)))
    ollama_client = OllamaClient(ollama_url, timeout=30) if ollama_url else None

    readings = guard.Readings(guard.CgroupReader(), stack_cgroup=params['stack_cgroup'], docker_client=docker_client,
                              ollama_client=ollama_client, ollama_keep_alive=params['ollama_keep_alive'], scope=scope)
    actions = guard.Actions(docker_client, ollama_client, stop_timeout=params['stop_timeout'])
    engine = guard.Guard(thresholds, readings, actions, gstate.StateStore(params['state_file'], lock_timeout=params['lock_timeout']))
    acting = params['act'] and not module.check_mode
    planning = params['act']
    if planning:
        result = engine.run(act=acting, level=params['level'])
    else:
        result = engine.report()
    result['warnings_guard'] = result.pop('warnings')
    for warning in result['warnings_guard']:
        module.warn(warning)
    after = result.pop('_after_snapshot', None)
    if module._diff and after is not None:
        tracker = DifferenceTracker()
        tracker.merge(_diff_view(result['snapshot']), _diff_view(after))
        result['diff'] = tracker.diff()
    if result.pop('failed', False):
        # the pass stopped or a step failed: the message lists what was done; actions and records come with it
        module.fail_json(msg='memory_guard: %s' % result.pop('msg'), **result)
    if params['fail_above'] is not None and result['pressure_after'] > params['fail_above']:
        module.fail_json(msg='memory pressure is %.1f%%, above fail_above %.1f%% (%s)' % (
            result['pressure_after'], params['fail_above'], result['snapshot'].get('pressure_source', 'host')), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
