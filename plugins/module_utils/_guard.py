# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory guard engine: read memory pressure as the kernel sees it, relieve it tier by tier.

PRIVATE to the collection: no compatibility promise. Plain Python with no Ansible import:
the memory_guard module wraps it, and the monitor daemon runs the same code in a loop on
hosts where Ansible is not installed (only psutil-free stdlib, the docker SDK and the
collection's own stdlib Ollama client and cgroup reader are needed).

One run (`Guard.run`):
  1. read a snapshot: host MemAvailable/MemTotal and PSI, the stack cgroup against its own
     limit, the tiered containers (usage from cgroupfs, not `docker stats`), Ollama's models;
  2. pick a level from the pressure (or take the one forced by the caller);
  3. relieve one step at a time (unload a model, stop a container), re-reading after each,
     until the policy has nothing more to do; or, when pressure has stayed low long enough,
     start again the last container the guard stopped;
  4. record every stop in the state file, so restore works across restarts.
In check mode (act=False) the same loop runs on simulated snapshots and acts on nothing.
Scope (`Readings.scope`, a _containers.Scope): on an engine shared with other projects only the stack's
containers (its Compose project / Swarm stack, optional labels) are candidates to stop and restore; the
others' ids are in the snapshot's `outside_scope` and their records in the state file are left as they are.
The pressure reading does not depend on it.
"""

import datetime
import json
import os
import re
import select
import time

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_policy as policy
from ansible_collections.sutazai.ops.plugins.module_utils import _guard_state as gstate
from ansible_collections.sutazai.ops.plugins.module_utils import _oom

from ansible_collections.sutazai.ops.plugins.module_utils import _containers
TIER_LABEL = _containers.TIER_LABEL  # the one constant is in _containers.py
FOREVER_AFTER = 100 * 365 * 24 * 3600  # an expires_at this far ahead means "kept forever"


_RFC3339_RE = re.compile(r'^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$')


def parse_rfc3339(text):
    """Epoch seconds of an RFC3339 time with up to nanoseconds (Ollama's expires_at), or None."""
    match = _RFC3339_RE.match(text or '')
    if not match:
        return None
    base, fraction, zone = match.groups()
    when = datetime.datetime.strptime(base, '%Y-%m-%dT%H:%M:%S')
    offset = datetime.timedelta(0)
    if zone != 'Z':
        sign = 1 if zone[0] == '+' else -1
        offset = sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    epoch = (when - datetime.datetime(1970, 1, 1)).total_seconds() - offset.total_seconds()
    return epoch + (float(fraction) if fraction else 0.0)


def read_meminfo(proc_root='/proc'):
    """MemTotal, MemAvailable, SwapTotal, SwapFree in bytes."""
    values = _cgroups.read_meminfo(proc_root + '/meminfo')
    return {
        'mem_total': values.get('MemTotal', 0),
        'mem_available': values.get('MemAvailable', values.get('MemFree', 0)),
        'swap_total': values.get('SwapTotal', 0),
        'swap_free': values.get('SwapFree', 0),
    }


def read_psi(proc_root='/proc'):
    """Memory PSI avg10 of `some` and `full` in percent, or None where the kernel has no PSI."""
    try:
        with open(proc_root + '/pressure/memory', 'r', encoding='ascii') as handle:
            text = handle.read()
    except OSError:
        return None
    result = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        for field in fields[1:]:
            key, _sep, value = field.partition('=')
            if key == 'avg10':
                result[fields[0]] = float(value)
    return {'some_avg10': result.get('some'), 'full_avg10': result.get('full')}


def host_reading(proc_root='/proc'):
    """The host part of a snapshot: memory figures, PSI and pressure = 1 - MemAvailable/MemTotal."""
    host = read_meminfo(proc_root)
    psi = read_psi(proc_root) or {}
    host['psi_some_avg10'] = psi.get('some_avg10')
    host['psi_full_avg10'] = psi.get('full_avg10')
    total = host['mem_total'] or 1
    host['pressure'] = round(100.0 * (1 - host['mem_available'] / float(total)), 2)
    return host


class CgroupReader:
    """Memory of the stack cgroup and of containers, read from cgroupfs (v1 or v2)."""

    def __init__(self, root=_cgroups.DEFAULT_ROOT):
        self.root = root
        self.container_memory = _containers.ContainerMemory(root)

    def group_path(self, name):
        """The directory of a cgroup named as in cgroup_parent (`sutazai`, `/sutazai`, `sutazai.slice`)."""
        hierarchy = _cgroups.memory_hierarchy(self.root)
        if hierarchy is None:
            return None
        return os.path.join(hierarchy, _cgroups.expand_slice(name))

    def read_group(self, name):
        """usage (less inactive file cache), limit (None when unlimited) and OOM kills of a cgroup; None if absent."""
        path = self.group_path(name)
        if path is None or _cgroups.directory_version(path) is None:
            return None
        figures = _cgroups.read_memory(path)
        return {'usage': figures['working_set'], 'limit': figures['limit'], 'oom_kills': figures['oom_kills']}

    def read_container(self, container_id):
        """The same figures for a container (and `swap`), by its full id, read now; None when its cgroup is not found or vanished."""
        return self.container_memory.summary(container_id, fresh=True)


class Readings:
    """Takes snapshots. Each source is optional: a missing Docker or Ollama gives a warning, not a failure."""

    def __init__(self, cgroups, proc_root='/proc', stack_cgroup=None, docker_client=None, ollama_client=None,
                 ollama_keep_alive=None, clock=time.time, scope=None):
        self.cgroups = cgroups
        # which containers are the guard's (_containers.Scope); the pressure reading is the same either way
        self.scope = scope if scope is not None else _containers.Scope()
        self.outside = []  # ids of the tiered containers the last reading left outside the scope
        self.proc_root = proc_root
        self.stack_cgroup = stack_cgroup
        self.docker = docker_client
        self.ollama = ollama_client
        self.keep_alive = ollama_keep_alive
        self.clock = clock
        self.warnings = []

    def _warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    def stack(self):
        """The stack cgroup measured against its own limit (None when not configured or unlimited)."""
        if not self.stack_cgroup:
            return None
        stats = self.cgroups.read_group(self.stack_cgroup)
        if stats is None:
            self._warn('stack cgroup %s not found' % self.stack_cgroup)
            return None
        stack = {'path': self.stack_cgroup, 'usage': stats['usage'], 'limit': stats['limit'], 'oom_kills': stats.get('oom_kills')}
        stack['pressure'] = round(100.0 * stats['usage'] / float(stats['limit']), 2) if stats['limit'] else None
        detector = self._oom_detector()
        if detector is not None:
            # kills in the stack since these readings began (the cgroup's own counter misses a parent-limit kill on v1)
            detector.poll()
            stack['oom_kills'] = detector.count()
            stack['oom_kills_seen'] = [{'container_id': k.get('container_id'), 'container': k.get('container'), 'pid': k.get('pid'),
                                        'comm': k.get('comm'), 'evidence': sorted(k['evidence'])} for k in detector.kills]
            for message in detector.warnings + detector.kernel.warnings:
                self._warn('OOM detector: %s' % message)
        return stack

    oom_detector = None  # an _oom.OomDetector for the stack; set one to keep its baseline across Readings objects

    def _oom_detector(self):
        """The stack's OOM-kill detector, made (with its baseline now) on the first reading of a real cgroup tree."""
        if self.oom_detector is None and isinstance(self.cgroups, CgroupReader):
            self.oom_detector = _oom.OomDetector(stack_cgroup=self.stack_cgroup, cgroup_root=self.cgroups.root,
                                                 docker_client=self.docker).baseline()
            if not self.oom_detector.kernel.readable:
                self._warn('OOM detector: %s' % self.oom_detector.kernel.reason)
        return self.oom_detector

    def containers(self):
        """Containers carrying the tier label inside the scope, with usage from cgroupfs and OOM / restart facts from the engine.

        The ids of those outside the scope are kept in `outside` (the snapshot's `outside_scope`).
        """
        self.outside = []
        if self.docker is None:
            return []
        try:
            listed = _containers.tiered_containers(self.docker.api)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn('Docker engine not readable: %s' % exc)
            return []
        result = []
        for item in listed:
            if not self.scope.matches(item['labels']):
                self.outside.append(item['id'])
                continue
            entry = {'id': item['id'], 'name': item['name'], 'tier': item['tier'], 'project': _containers.project_of(item['labels']),
                     'running': item['running'], 'usage': 0, 'limit': None, 'oom_killed': False, 'restart_count': 0}
            if item['running']:
                stats = self.cgroups.read_container(item['id'])
                if stats:
                    entry['usage'], entry['limit'] = stats['usage'], stats['limit']
            try:
                details = self.docker.api.inspect_container(item['id'])
                entry['oom_killed'] = bool(details.get('State', {}).get('OOMKilled'))
                entry['restart_count'] = details.get('RestartCount', 0)
            except Exception:  # pylint: disable=broad-exception-caught
                pass  # removed between list and inspect
            result.append(entry)
        return result

    def models(self):
        """Ollama's loaded models as the server reports them: expires_in (seconds until expires_at) and pinned.

        /api/ps gives only expires_at (last use + the keep_alive of the last request, which each client
        chooses), so idle_seconds is given only when the keep_alive in force is known (ollama_keep_alive
        set): keep_alive - expires_in. Otherwise it is None, and the policy orders by expires_in.
        """
        if self.ollama is None:
            return []
        try:
            loaded = self.ollama.ps()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn('Ollama not readable: %s' % exc)
            return []
        now = self.clock()
        result = []
        for model in loaded:
            expires = parse_rfc3339(model.get('expires_at'))
            pinned = expires is not None and expires - now > FOREVER_AFTER
            expires_in = idle = None
            if expires is not None and not pinned:
                expires_in = round(expires - now, 3)
                if self.keep_alive is not None:
                    idle = round(max(0.0, self.keep_alive - expires_in), 3)
            result.append({'name': model['name'], 'size': model.get('size', 0), 'expires_at': model.get('expires_at'),
                           'expires_in': expires_in, 'idle_seconds': idle, 'pinned': pinned})
        return result

    def snapshot(self):
        """One reading of everything, with the overall pressure."""
        host = host_reading(self.proc_root)
        stack = self.stack()
        snap = {'time': self.clock(), 'host': host, 'stack': stack, 'containers': self.containers(), 'models': self.models()}
        snap['outside_scope'] = list(self.outside)
        snap['pressure'] = policy.overall_pressure(host, stack)
        snap['pressure_source'] = 'stack' if stack and stack.get('pressure') is not None and stack['pressure'] > host['pressure'] else 'host'
        return snap


class Actions:
    """What the guard does to relieve and restore: unload models, stop and start containers."""

    def __init__(self, docker_client=None, ollama_client=None, stop_timeout=20, unload_wait=10.0):
        self.docker = docker_client
        self.ollama = ollama_client
        self.stop_timeout = stop_timeout
        self.unload_wait = unload_wait

    def unload(self, name):
        """Unload a model and wait (bounded) until Ollama no longer lists it."""
        self.ollama.unload(name)
        return self.ollama.wait_unloaded(name, timeout=self.unload_wait, interval=0.1)

    def stop(self, container_id):
        """Stop a container gracefully (SIGTERM, then SIGKILL after stop_timeout)."""
        self.docker.api.stop(container_id, timeout=self.stop_timeout)

    def start(self, container_id):
        """Start a container the guard stopped."""
        self.docker.api.start(container_id)


class GuardError(Exception):
    """A step of a guard pass that failed; the pass stops there and reports what it had done."""


class Guard:
    """One guard: thresholds, readings, actions and the state store.

    `run` never raises: a pass that cannot finish (state file not writable or locked, a reading
    that fails, a Docker or Ollama error) returns a result with `failed` and `msg` that lists the
    steps already taken, and the state file keeps a record of every container stopped.
    """

    def __init__(self, thresholds, readings, actions, store, clock=time.time, max_steps=100):
        self.thresholds = thresholds
        self.readings = readings
        self.actions = actions
        self.store = store
        self.clock = clock
        self.max_steps = max_steps

    def _perform(self, action):
        if action['action'] == 'unload':
            gone = self.actions.unload(action['model'])
            if not gone:
                action['warning'] = 'model still listed by Ollama after the unload request'
        elif action['action'] == 'stop':
            self.actions.stop(action['id'])
        elif action['action'] == 'start':
            self.actions.start(action['id'])

    def run(self, act=True, level='auto'):
        """One guard pass; returns a result dict (snapshot before and after, level, actions, changed).

        An acting pass holds the state file's lock from load to last save. On failure the result has
        `failed: True` and `msg`; `actions` lists what was done before the failure.
        """
        progress = {'done': [], 'failures': [], 'warnings': [], 'state': None}
        try:
            if act:
                with self.store.locked():
                    return self._pass(progress, True, level)
            return self._pass(progress, False, level)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            return self._failed(progress, exc)

    def _pass(self, progress, act, level):
        state = progress['state'] = self.store.load(keep_aside=act)
        loaded = json.dumps(state, sort_keys=True)
        warnings = progress['warnings']
        warnings.extend(self.store.warnings)
        before = self.readings.snapshot()
        stalled = policy.psi_stalled(before['host'], self.thresholds)
        measured = policy.level_for(before['pressure'], self.thresholds, before['host'].get('psi_full_avg10'))
        progress['level'] = measured
        escalation = measured if level in (None, 'auto') else level
        self._forget_restarted(state, before)
        snapshot = before
        done = progress['done']
        if escalation in ('soft', 'hard', 'emergency'):
            snapshot = self._relieve(state, snapshot, escalation, act, progress)
            state['below_since'] = None
        else:
            snapshot = self._restore(state, snapshot, act, progress)
        if act and (self.store.needs_repair or json.dumps(state, sort_keys=True) not in (loaded, progress.get('saved'))):
            self._save(state, 'the end of the pass', progress)
        warnings.extend(w for w in self.readings.warnings if w not in warnings)
        result = {
            'level': measured,
            'escalation': escalation,
            'psi_stalled': stalled,
            'thresholds': self.thresholds.as_dict(),
            'pressure_before': before['pressure'],
            'pressure_after': snapshot['pressure'],
            'memory_before': _memory_summary(before),
            'memory_after': _memory_summary(snapshot),
            'snapshot': before,
            'actions': done,
            'changed': bool(done),
            'stopped_by_guard': [dict(r) for r in state['stopped']],
            'warnings': warnings,
            '_after_snapshot': snapshot,
        }
        result.update(self._scope_facts(state, before))
        if progress['failures']:
            result['failed'] = True
            result['msg'] = '%s. %s' % ('; '.join(progress['failures']), _done_text(done))
        return result

    def _failed(self, progress, exc):
        """The result of a pass stopped by `exc`: what failed, what had been done, what the state file holds."""
        if isinstance(exc, (GuardError, gstate.StateLockError, gstate.StateWriteError)):
            reason = str(exc)
        else:
            reason = 'guard pass failed: %s: %s' % (type(exc).__name__, exc)
        failures = progress['failures'] + [reason]
        done = progress['done']
        state = progress['state']
        warnings = progress['warnings']
        warnings.extend(w for w in getattr(self.readings, 'warnings', []) if w not in warnings)
        return {
            'failed': True,
            'msg': '%s. %s' % ('; '.join(failures), _done_text(done)),
            'level': progress.get('level'),
            'thresholds': self.thresholds.as_dict(),
            'actions': done,
            'changed': bool(done),
            'stopped_by_guard': [dict(r) for r in state['stopped']] if state else [],
            'warnings': warnings,
            'scope': self._scope().as_dict(),
        }

    def _save(self, state, when, progress):
        """Save the state; a failure stops the pass (GuardError naming the file and the moment)."""
        try:
            self.store.save(state)
        except OSError as exc:
            raise GuardError('%s (at %s)' % (exc.strerror if isinstance(exc, gstate.StateWriteError) else exc, when)) from None
        progress['saved'] = json.dumps(state, sort_keys=True)

    def report(self):
        """Read and classify only: no plan, no action, no write, no lock."""
        progress = {'done': [], 'failures': [], 'warnings': [], 'state': None}
        try:
            state = progress['state'] = self.store.load()
            snapshot = self.readings.snapshot()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            return self._failed(progress, exc)
        level = policy.level_for(snapshot['pressure'], self.thresholds, snapshot['host'].get('psi_full_avg10'))
        return {
            'level': level, 'escalation': 'none', 'thresholds': self.thresholds.as_dict(),
            'psi_stalled': policy.psi_stalled(snapshot['host'], self.thresholds),
            'pressure_before': snapshot['pressure'], 'pressure_after': snapshot['pressure'],
            'memory_before': _memory_summary(snapshot), 'memory_after': _memory_summary(snapshot),
            'snapshot': snapshot, 'actions': [], 'changed': False,
            'stopped_by_guard': [dict(r) for r in state['stopped']],
            'warnings': list(self.store.warnings) + list(self.readings.warnings),
            **self._scope_facts(state, snapshot),
        }

    @staticmethod
    def _forget_restarted(state, snapshot):
        """Containers the guard stopped that someone else started again are no longer its to restore.

        Only containers inside the scope are seen (snapshot['containers']): records of others are left as they are.
        """
        running = set(c['id'] for c in snapshot['containers'] if c['running'])
        state['stopped'] = [r for r in state['stopped'] if r['id'] not in running]

    def _scope(self):
        return getattr(self.readings, 'scope', None) or _containers.Scope()

    def _records_in_scope(self, state, snapshot):
        """The state records this guard may restore (or drop): all of them without a scope."""
        scope = self._scope()
        inside = set(c['id'] for c in snapshot['containers'])
        outside = set(snapshot.get('outside_scope') or ())
        return [r for r in state['stopped'] if scope.holds_record(r, inside, outside)]

    def _scope_facts(self, state, snapshot):
        """`scope` (None: every tiered container) and `kept_outside_scope` (records of other containers, left as they are)."""
        ours = set(r['id'] for r in self._records_in_scope(state, snapshot))
        return {'scope': self._scope().as_dict(),
                'containers_outside_scope': len(snapshot.get('outside_scope') or ()),
                'kept_outside_scope': [r['name'] for r in state['stopped'] if r['id'] not in ours]}

    def _relieve(self, state, snapshot, escalation, act, progress):
        done = progress['done']
        tried = set()
        stall_relief = True  # a PSI stall unloads one model per pass: avg10 cannot show the effect within the pass
        for _step in range(self.max_steps):
            visible = dict(snapshot)
            visible['models'] = [m for m in snapshot['models'] if ('unload', m['name']) not in tried]
            visible['containers'] = [c for c in snapshot['containers'] if ('stop', c['id']) not in tried]
            action = policy.next_relief(visible, self.thresholds, escalation, stall_relief=stall_relief)
            if action is None:
                break
            if action.get('reason') == 'psi':
                stall_relief = False
            key = ('unload', action['model']) if action['action'] == 'unload' else ('stop', action['id'])
            tried.add(key)
            action['pressure_before'] = snapshot['pressure']
            if act:
                if action['action'] == 'stop':
                    if not self._stop(state, action, progress):
                        continue
                else:
                    try:
                        self._perform(action)
                    except Exception as exc:  # pylint: disable=broad-exception-caught
                        progress['failures'].append('unload %s failed: %s' % (action['model'], exc))
                        continue
                    gstate.record_unload(state, action, self.clock())
                    done.append(action)
                snapshot = self.readings.snapshot()
            else:
                snapshot = policy.simulate(snapshot, action)
                done.append(action)
            action['pressure_after'] = snapshot['pressure']
        return snapshot

    def _stop(self, state, action, progress):
        """Record, save, stop, mark stopped, save. False when the stop failed (the pass goes on with the next step).

        The record is on disk before the container stops; when it cannot be written the container is not stopped.
        """
        gstate.record_stop(state, action, self.clock(), status='stopping')
        try:
            self._save(state, 'recording the stop of %s' % action['container'], progress)
        except GuardError as exc:
            gstate.record_start(state, action)  # not written, not stopped: no record
            raise GuardError('%s; %s was not stopped' % (exc, action['container'])) from None
        try:
            self._perform(action)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # it may have stopped all the same: the 'stopping' record stays, and the next pass drops it if the container runs
            gstate.record_stop_failure(state, action, exc)
            progress['failures'].append('stop %s failed: %s' % (action['container'], exc))
            return False
        progress['done'].append(action)
        gstate.record_stopped(state, action)
        self._save(state, "marking %s stopped; its record is kept as 'stopping'" % action['container'], progress)
        return True

    def _settle(self, now):
        """`below_since` that makes the next restore wait for the last start to settle (30 s at most)."""
        return now - self.thresholds.restore_after + min(self.thresholds.restore_after, 30.0)

    def _restore(self, state, snapshot, act, progress):
        now = self.clock()
        ours = self._records_in_scope(state, snapshot)
        action, state['below_since'] = policy.next_restore(snapshot, self.thresholds, ours, state['below_since'], now)
        if action is None:
            return snapshot
        action['pressure_before'] = snapshot['pressure']
        if act:
            try:
                self._perform(action)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                if type(exc).__name__ == 'NotFound':  # docker.errors.NotFound: the container was removed
                    progress['warnings'].append('start %s failed: the container no longer exists; its record is dropped' % action['container'])
                    gstate.record_start(state, action)
                else:
                    progress['failures'].append('start %s failed: %s; its record is kept and the start retried later' % (action['container'], exc))
                    gstate.record_start_failure(state, action, exc, now)
                state['below_since'] = self._settle(now)
                return snapshot
            gstate.record_start(state, action)
            state['below_since'] = self._settle(now)
            progress['done'].append(action)
            snapshot = self.readings.snapshot()
        else:
            progress['done'].append(action)
        action['pressure_after'] = snapshot['pressure']
        return snapshot


def _done_text(done):
    """'Done in this pass: unloaded model m, stopped container c (tier 3)', or 'Nothing was done in this pass'."""
    if not done:
        return 'Nothing was done in this pass'
    steps = []
    for action in done:
        if action['action'] == 'unload':
            steps.append('unloaded model %s' % action['model'])
        elif action['action'] == 'stop':
            steps.append('stopped container %s (tier %s)' % (action['container'], action.get('tier')))
        else:
            steps.append('started container %s' % action['container'])
    return 'Done in this pass: ' + ', '.join(steps)


class PsiTrigger:
    """Wakes the guard loop when the kernel reports memory stalls (a PSI trigger), between its regular passes.

    The kernel interface (write "some <stall us> <window us>" to /proc/pressure/memory, then
    poll for POLLPRI) has no wrapper in psutil or the standard library, hence this class.
    """

    def __init__(self, stall_ms=100, window_ms=1000, path='/proc/pressure/memory'):
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        try:
            os.write(self.fd, ('some %d %d\0' % (stall_ms * 1000, window_ms * 1000)).encode())
        except OSError:
            os.close(self.fd)
            raise
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLPRI)

    def wait(self, timeout):
        """Block up to `timeout` seconds; True when the trigger fired."""
        return any(event & select.POLLPRI for _fd, event in self.poller.poll(max(0, timeout) * 1000))

    def close(self):
        """Remove the trigger."""
        os.close(self.fd)


def watch(engine, interval, stop, psi=None, on_result=None):
    """Run `engine` every `interval` seconds until the `stop` event is set (the daemon's loop).

    With a PsiTrigger, a memory stall runs the guard at once instead of at the next tick.
    """
    while not stop.is_set():
        result = engine.run()
        if on_result is not None:
            on_result(result)
        if psi is not None:
            deadline = time.monotonic() + interval
            while not stop.is_set() and time.monotonic() < deadline:
                if psi.wait(min(0.25, deadline - time.monotonic())):
                    break
        else:
            stop.wait(interval)


def _memory_summary(snapshot):
    host = snapshot['host']
    summary = {'pressure': snapshot['pressure'], 'host_available': host.get('mem_available'), 'host_total': host.get('mem_total'),
               'models_loaded': len(snapshot['models']),
               'containers_running': sum(1 for c in snapshot['containers'] if c['running'])}
    if snapshot.get('stack'):
        summary['stack_usage'] = snapshot['stack']['usage']
        summary['stack_limit'] = snapshot['stack']['limit']
    return summary
