# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The monitor daemon's restart policy and its restart history on disk.

PRIVATE to the collection: no compatibility promise. Plain Python, stdlib only, no Ansible
import: the sutazai-monitor daemon runs it on hosts without Ansible. No I/O but the store;
the daemon feeds it Docker engine events and health results and carries out its decisions.

Which deaths are failures (restarted, or counted when Docker's restart policy restarts them) and which are not:
  - `die` with a `kill` or `stop` event of the same container before it (within `stop_grace`
    seconds): someone stopped it (`docker stop`, `docker kill`, the memory guard). Not restarted;
    the reason is `guard_stop` when the guard's state lists the container, else `operator_stop`.
  - a container the guard's state lists as stopped by the guard: never restarted here (the guard
    restores it when pressure has stayed low).
  - `die` with exit code 0: the process finished on its own (Docker's `on-failure` reading): not restarted.
  - any other `die` (a crash, a signal from outside Docker such as `kill -9` of its process, an OOM
    kill): restarted. An OOM kill is `oom_own_limit` when the container hit its own memory limit
    (the kernel log says so, or its working set was last seen at >= 90 % of its limit) and
    `oom_pressure` when the kill came from the stack's or the host's limit (kernel log, an `oom`
    event, a rise of the stack's OOM counter); both are restarted only once the guard has made room
    (its level is back to `ok`).
  - a running container unhealthy (Docker health status or its HTTP health URL) for `unhealthy_for`
    seconds without a break: restarted (`unhealthy`).

Who restarts: the stack's containers carry Docker's `unless-stopped` policy, so that they come back
after a reboot or an engine restart even before the monitor runs. After a failure, Docker restarts
such a container itself (within about a second); the engine's `start` event that follows the `die`
is then Docker's (the daemon's `engine_started` callable tells it from an operator's start: Docker's
restart policy raises the container's RestartCount, a `docker start` sets it to 0). That restart is
recorded like the monitor's own, with its reason and `by: docker`. Containers whose policy is `no`
(or `on-failure` with its retries used up) are started by the monitor itself, after
`backoff * 2**n` seconds (n = restarts of that container in the window, at most `backoff_max`).
One budget covers both: at most `limit` restarts per container in a rolling `window` (3 per hour).
The next failure gives up: the daemon stops the container (`docker stop`, which also ends Docker's
own restart loop; a container with policy `no` is already down), alerts (`given_up` in the metrics
and /health) and leaves it until someone else starts it (an operator, Compose): that start clears
the give-up and the window's restarts, so the container has its whole budget again. Our own
stop/start events are ignored.

The history (restarts per container name in the window, totals by reason, give-ups, guard actions,
the time of the last engine event handled) is the `restarts` key of the memory guard's state file
(GuardFileRestartStore over _guard_state.StateStore: the same lock, atomic write and `.bak` as the
guard's records; guard passes keep the key as they loaded it). Each save re-reads the file under the
lock and replaces only that key, so a `memory_guard` run and the daemon never undo each other's
records. It is written BEFORE each restart or give-up stop the monitor makes (a daemon killed with
SIGKILL keeps its counts) and as soon as a restart made by Docker is seen. A history kept in the
older separate file (RestartStore, `restart_state_file`) is moved into the state file once, on the
first load that finds no `restarts` key; the old file is renamed `<file>.migrated`.
"""

import contextlib
import copy
import json
import os
import shutil
import tempfile
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

VERSION = 1
STATE_KEY = 'restarts'
ENGINE_GRACE = 90.0  # seconds to wait for Docker's own restart (its backoff is capped at one minute)
RESTART_REASONS = ('crash', 'unhealthy', 'oom_own_limit', 'oom_pressure')
OWN_LIMIT_RATIO = 0.9


def empty_history():
    """A history with no records."""
    return {'version': VERSION, 'containers': {}, 'totals': {}, 'guard_actions': {}, 'oom_kills': {}, 'events_since': None}


def _valid(data):
    return (isinstance(data, dict) and isinstance(data.get('containers', {}), dict)
            and all(isinstance(r, dict) and isinstance(r.get('restarts', []), list) for r in data.get('containers', {}).values()))


class RestartStore:
    """Load and save the restart history; `warnings` says what went wrong on the last load."""

    def __init__(self, path):
        self.path = path
        self.backup = path + '.bak'
        self.lock_path = path + '.lock'
        self.warnings = []

    @contextlib.contextmanager
    def locked(self):
        """Hold the store's exclusive lock (a flock on <file>.lock; released by the kernel if the process dies)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o750, exist_ok=True)
        handle = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # closing releases the flock

    @staticmethod
    def _read(path):
        with open(path, 'r', encoding='utf-8') as handle:
            data = json.load(handle)
        if not _valid(data):
            raise ValueError('%s does not hold a restart history' % path)
        history = empty_history()
        history.update(data)
        return history

    def load(self):
        """The saved history; the backup's when the file is damaged; an empty one when there is none."""
        self.warnings = []
        if not os.path.exists(self.path) and not os.path.exists(self.backup):
            return empty_history()
        with self.locked():
            try:
                return self._read(self.path)
            except (OSError, ValueError) as exc:
                aside = self._keep_aside()
                self.warnings.append('restart history %s could not be read (%s); a copy is kept as %s' % (self.path, exc, aside))
            try:
                history = self._read(self.backup)
                self.warnings.append('restart history taken from the backup %s' % self.backup)
                return history
            except (OSError, ValueError) as exc:
                self.warnings.append('backup %s could not be read either (%s); restart counts start from zero' % (self.backup, exc))
                return empty_history()

    def _keep_aside(self):
        try:
            if not os.path.exists(self.path):
                return 'nowhere (the file is missing)'
            aside = '%s.corrupt-%d' % (self.path, int(os.stat(self.path).st_mtime))
            if not os.path.exists(aside):
                shutil.copy2(self.path, aside)
            return aside
        except OSError as exc:
            return 'nowhere (%s)' % exc

    def save(self, history):
        """Write `history` atomically under the lock, keeping the previous good version as <file>.bak."""
        directory = os.path.dirname(os.path.abspath(self.path))
        data = json.dumps(history, indent=1, sort_keys=True)
        with self.locked():
            handle, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(self.path), dir=directory)
            try:
                with os.fdopen(handle, 'w', encoding='utf-8') as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o640)
                if os.path.exists(self.path):
                    try:
                        self._read(self.path)
                    except (OSError, ValueError):
                        pass  # never let a damaged file replace a good backup
                    else:
                        shutil.copyfile(self.path, tmp + '.bak')
                        os.replace(tmp + '.bak', self.backup)
                os.replace(tmp, self.path)
            except BaseException:
                for leftover in (tmp, tmp + '.bak'):
                    if os.path.exists(leftover):
                        os.unlink(leftover)
                raise
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


class GuardFileRestartStore:
    """The restart history as the `restarts` key of the memory guard's state file (one lock, one file, one backup).

    state_store: the guard's _guard_state.StateStore of that file (given by the caller, so that this
    module stays stdlib only); its `path`, `locked()`, `load(keep_aside)`, `save(state)` and `warnings`
    are used. load() reads without the lock (saves are atomic renames); save() takes the state file's lock,
    re-reads the file and replaces only the `restarts` key, so the guard's records (and a concurrent
    `memory_guard` run's) are kept. `legacy`: the path of an older separate history file
    (RestartStore), moved in once when the state file has no `restarts` key yet.
    """

    def __init__(self, state_store, legacy=None):
        self.state = state_store
        self.path = state_store.path
        self.legacy = legacy
        self.warnings = []

    def load(self):
        """The saved history (from the state file, its backup, or a legacy file moved in once); empty when there is none."""
        self.warnings = []
        state = self.state.load()
        self.warnings.extend('restart history: %s' % w for w in self.state.warnings)
        history = state.get(STATE_KEY)
        if history is not None:
            if _valid(history):
                merged = empty_history()
                merged.update(history)
                return merged
            self.warnings.append('restart history in %s is not usable (key %r); restart counts start from zero' % (self.path, STATE_KEY))
            return empty_history()
        if self.legacy and os.path.exists(self.legacy):
            return self._migrate()
        return empty_history()

    def _migrate(self):
        old = RestartStore(self.legacy)
        history = old.load()
        self.warnings.extend(old.warnings)
        try:
            self.save(history)
            os.replace(self.legacy, self.legacy + '.migrated')
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self.warnings.append('restart history %s could not be moved into %s (%s); it is read again on the next start'
                                 % (self.legacy, self.path, exc))
        else:
            self.warnings.append('restart history moved from %s into the state file %s (the old file is kept as %s.migrated)'
                                 % (self.legacy, self.path, self.legacy))
        return history

    def save(self, history):
        """Write `history` as the state file's `restarts` key, under the state file's lock, atomically (keeps <file>.bak)."""
        with self.state.locked():
            state = self.state.load(keep_aside=True)
            state[STATE_KEY] = history
            self.state.save(state)


class RestartPolicy:
    """Decides which containers to restart, when, and when to give up.

    store: a RestartStore (or any object with load/save/warnings); guard_stopped: a callable
    returning the ids and names of the containers the memory guard stopped; oom_detector: an
    optional callable(container_id, name, exit_code, died_at) returning 'own_limit', 'pressure'
    or None, for OOM kills the engine does not report (a parent cgroup's limit on cgroup v1);
    engine_started: an optional callable(container_id) returning True when the container's latest
    start was made by Docker's restart policy, False when someone started it (operator, Compose),
    None when unknown (treated as someone else's start).
    """

    def __init__(self, store, limit=3, window=3600.0, unhealthy_for=60.0, backoff=1.0, backoff_max=60.0,
                 stop_grace=600.0, clock=time.time, guard_stopped=None, oom_detector=None, engine_started=None,
                 engine_grace=ENGINE_GRACE):
        self.store = store
        self.limit = int(limit)
        self.window = float(window)
        self.unhealthy_for = float(unhealthy_for)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.stop_grace = float(stop_grace)
        self.clock = clock
        self.guard_stopped = guard_stopped or set
        self.oom_detector = oom_detector
        self.engine_started = engine_started
        self.engine_grace = float(engine_grace)
        self.history = store.load()
        self.warnings = list(getattr(store, 'warnings', []))
        self.pending = {}          # name -> the death or unhealthiness waiting for its restart
        self.stop_seen = {}        # container id -> time of a kill/stop event we did not cause
        self.oom_seen = {}         # container id -> time of an `oom` event
        self.ours = {}             # container id -> (time, 'start'|'restart'|'stop') of our own action (its events are ours)
        self.unhealthy_since = {}  # name -> first time seen unhealthy without a break
        self.memory = {}           # container id -> (working set, limit) last seen
        self.last_action = {}      # container id -> its last kill/die/stop/start event
        self.stack_oom_kills = None
        self.stack_oom_rose_at = None

    # ---- history -------------------------------------------------------------------------
    def _record(self, name):
        return self.history['containers'].setdefault(name, {'restarts': [], 'given_up_at': None, 'given_up_reason': None})

    def recent(self, name, now=None):
        """Restarts of `name` in the rolling window, as [time, reason] pairs."""
        now = self.clock() if now is None else now
        record = self.history['containers'].get(name) or {}
        return [r for r in record.get('restarts', []) if now - r[0] < self.window]

    def remaining(self, name, now=None):
        """Restarts `name` may still get in the window."""
        return max(0, self.limit - len(self.recent(name, now)))

    def given_up(self, name):
        """True when the policy gave up on `name` (until someone else starts it)."""
        return bool((self.history['containers'].get(name) or {}).get('given_up_at'))

    def _save(self):
        self.store.save(self.history)

    def note_event_time(self, when):
        """Remember the last engine event handled (the daemon replays events from there after a restart)."""
        if when and (self.history.get('events_since') or 0) < when:
            self.history['events_since'] = when

    def count_guard_action(self, kind, save=True):
        """Count one memory guard action (unload, stop, start) in the persistent totals."""
        self.history['guard_actions'][kind] = self.history['guard_actions'].get(kind, 0) + 1
        if save:
            self._save()

    # ---- what the daemon observes --------------------------------------------------------
    def note_memory(self, container_id, working_set, limit):
        """The container's working set and limit from the latest reading (for OOM classification)."""
        self.memory[container_id] = (working_set, limit)

    def note_stack_oom_kills(self, count, now=None):
        """The stack cgroup's OOM kill counter; a rise marks OOM deaths around now as pressure kills."""
        if count is None:
            return
        if self.stack_oom_kills is not None and count > self.stack_oom_kills:
            self.stack_oom_rose_at = self.clock() if now is None else now
        self.stack_oom_kills = count

    def _is_guard_stopped(self, container_id, name):
        stopped = self.guard_stopped() or set()
        return container_id in stopped or name in stopped

    def on_event(self, event):
        """Handle one engine event (the docker SDK's decoded dict); return a decision dict to log, or None."""
        action = event.get('Action') or event.get('status') or ''
        actor = event.get('Actor') or {}
        attrs = actor.get('Attributes') or {}
        cid = actor.get('ID') or event.get('id') or ''
        name = attrs.get('name') or cid[:12]
        when = event.get('timeNano', 0) / 1e9 or float(event.get('time') or self.clock())
        self._expire_ours(when)
        previous = self.last_action.get(cid)
        if action in ('kill', 'die', 'stop', 'start'):
            self.last_action[cid] = action
        if action in ('kill', 'stop'):
            # Docker sends kill, die, stop for a `docker stop`: a stop after the death belongs to that death, and
            # kept, it would explain away the container's next crash as an operator's stop
            if cid not in self.ours and not (action == 'stop' and previous == 'die'):
                self.stop_seen[cid] = when
            return None
        if action == 'oom':
            self.oom_seen[cid] = when
            return None
        if action == 'start':
            self.stop_seen.pop(cid, None)  # a stop before this start explains no later death
            self.oom_seen.pop(cid, None)
            if (self.ours.get(cid) or (None, None))[1] in ('start', 'restart'):
                del self.ours[cid]
                return None
            return self._on_start(cid, name, when, previous)
        if action == 'destroy':
            self.last_action.pop(cid, None)
            self.stop_seen.pop(cid, None)
            self.oom_seen.pop(cid, None)
            record = self.history['containers'].get(name)
            if record and record.get('given_up_at'):
                # removed (or about to be recreated by a deploy): no longer given up, and a new container
                # under the name starts with the whole budget
                record['given_up_at'] = None
                record['given_up_reason'] = None
                record['restarts'] = []
                self._save()
            self.pending.pop(name, None)
            self.unhealthy_since.pop(name, None)
            self.memory.pop(cid, None)
            return None
        if action.startswith('health_status'):
            status = action.split(':', 1)[-1].strip()
            return self.on_health(name, cid, status != 'unhealthy', 'docker health status ' + status, when)
        if action == 'die':
            return self._on_die(cid, name, attrs, when)
        return None

    def _expire_ours(self, now):
        for cid, (since, _kind) in list(self.ours.items()):
            if now - since > self.stop_grace:
                del self.ours[cid]

    def _by_engine(self, cid):
        if self.engine_started is None:
            return None
        try:
            return self.engine_started(cid)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self.warnings.append('cannot tell who started %s: %s' % (cid[:12], exc))
            return None

    def _on_start(self, cid, name, when, previous=None):
        """A start we did not make: Docker's restart policy after a failure (counted), or someone's start.

        Docker never restarts a container after a `stop` event (docker stop, our give-up stop): a start
        right after one is someone's. Otherwise the engine is asked (engine_started).
        """
        item = self.pending.get(name)
        record = self.history['containers'].get(name)
        given_up = bool(record and record.get('given_up_at'))
        by_engine = None
        if previous != 'stop' and ((item is not None and item['kind'] == 'start') or given_up):
            by_engine = self._by_engine(cid)
        if by_engine and given_up:
            if (self.ours.get(cid) or (None, None))[1] == 'stop':
                return None  # Docker restarted it just before our give-up stop took effect: that stop ends it
            self.ours[cid] = (when, 'stop')
            return {'decision': 'engine_restart_after_give_up', 'container': name, 'id': cid, 'reason': record.get('given_up_reason'),
                    'stop_again': True, 'why': "Docker's restart policy started it after the monitor gave up; it is stopped again"}
        if by_engine and item is not None and item['kind'] == 'start':
            return self._engine_restarted(item, when)
        self.pending.pop(name, None)
        self.unhealthy_since.pop(name, None)
        if (self.ours.get(cid) or (None, None))[1] == 'stop':
            del self.ours[cid]  # our give-up stop is over: its next death is a failure again
        if given_up:
            record['given_up_at'] = None
            record['given_up_reason'] = None
            record['restarts'] = []
            self._save()
            return {'decision': 'resumed', 'container': name, 'id': cid,
                    'why': 'started by someone else after the monitor gave up; the restart budget starts again'}
        return None

    def _engine_restarted(self, item, when):
        """Count a restart Docker's restart policy made after a failure (written at once); over budget, the give-up follows."""
        name = item['name']
        recent = self.recent(name, when)
        over = len(recent) >= self.limit
        self._add_restart(name, item['reason'], when, 'docker')
        self.unhealthy_since.pop(name, None)
        if over:
            self.pending[name] = dict(item, engine=False)  # due() gives up: the daemon stops it
        else:
            self.pending.pop(name, None)
        self._save()
        return {'decision': 'restarted', 'container': name, 'id': item['id'], 'reason': item['reason'], 'by': 'docker',
                'why': item['detail'], 'exit_code': item.get('exit_code'), 'attempt': len(recent) + 1,
                'limit': self.limit, 'remaining': self.remaining(name, when),
                'seconds': round(max(0.0, when - item['since']), 3), 'over_budget': over}

    def _add_restart(self, name, reason, now, by):
        record = self._record(name)
        record['restarts'] = [r for r in record['restarts'] if now - r[0] < self.window] + [[now, reason, by]]
        totals = self.history['totals'].setdefault(name, {})
        totals[reason] = totals.get(reason, 0) + 1
        if reason.startswith('oom'):
            kinds = self.history['oom_kills'].setdefault(name, {})
            kinds[reason] = kinds.get(reason, 0) + 1

    def _on_die(self, cid, name, attrs, when):
        if cid in self.ours:
            return None
        try:
            exit_code = int(attrs.get('exitCode'))
        except (TypeError, ValueError):
            exit_code = None
        stopped_at = self.stop_seen.pop(cid, None)
        oom_at = self.oom_seen.pop(cid, None)
        base = {'container': name, 'id': cid, 'exit_code': exit_code}
        if self._is_guard_stopped(cid, name):
            self.pending.pop(name, None)
            return dict(base, decision='not_restarted', reason='guard_stop', why='the memory guard stopped it; the guard restores it')
        if stopped_at is not None and when - stopped_at <= self.stop_grace:
            self.pending.pop(name, None)
            self.unhealthy_since.pop(name, None)
            return dict(base, decision='not_restarted', reason='operator_stop',
                        why='a stop/kill request came through the engine before it died (docker stop, docker kill)')
        if exit_code == 0:
            return dict(base, decision='not_restarted', reason='exited_cleanly', why='its process exited with code 0')
        reason, detail = self._death_reason(cid, name, exit_code, oom_at, when)
        self.unhealthy_since.pop(name, None)
        self.pending[name] = {'id': cid, 'name': name, 'reason': reason, 'since': when, 'kind': 'start',
                              'needs_room': reason.startswith('oom'), 'exit_code': exit_code, 'detail': detail}
        return dict(base, decision='restart_scheduled', reason=reason, why=detail,
                    attempt=len(self.recent(name, when)) + 1, delay=self.delay(name, when))

    def _death_reason(self, cid, name, exit_code, oom_at, when):
        """crash, oom_own_limit or oom_pressure, with a sentence saying why.

        Only an exit with 137 (SIGKILL) can be an OOM kill. Which limit was hit: the kernel log when the
        detector can read it (the victim's cgroup is the one whose limit was hit: its own limit); else a
        working set last seen at >= 90 % of its own limit; else, with an `oom` event (cgroup v1 sends it to
        every container below the cgroup that ran out, so it does not say whose limit) or a rise of the
        stack's OOM counter, pressure of the stack or the host.
        """
        if exit_code != 137:
            return 'crash', 'died on its own with exit code %s and no stop request' % exit_code
        working_set, limit = self.memory.get(cid, (None, None))
        figures = ''
        if working_set is not None and limit:
            figures = ' (working set %d of its limit %d bytes last seen)' % (working_set, limit)
        kind = None
        if self.oom_detector is not None:
            try:
                kind = self.oom_detector(cid, name, exit_code, when)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                self.warnings.append('OOM detector failed for %s: %s' % (name, exc))
        if kind is None and working_set is not None and limit and working_set >= OWN_LIMIT_RATIO * limit:
            kind = 'own_limit'
        if kind is None and ((oom_at is not None and when - oom_at <= 60)
                             or (self.stack_oom_rose_at is not None and abs(when - self.stack_oom_rose_at) <= 30)):
            kind = 'pressure'
        if kind == 'own_limit':
            return 'oom_own_limit', 'OOM-killed at its own memory limit%s: its limit is too small for its load' % figures
        if kind == 'pressure':
            return 'oom_pressure', 'OOM-killed under stack or host memory pressure, not at its own limit%s' % figures
        return 'crash', 'killed (exit code 137) with no stop request and no sign of an OOM kill'

    def on_health(self, name, cid, healthy, detail, now=None):
        """A health result for a running container; schedules a restart once unhealthy for `unhealthy_for` seconds."""
        now = self.clock() if now is None else now
        if healthy:
            if self.unhealthy_since.pop(name, None) is not None and self.pending.get(name, {}).get('reason') == 'unhealthy':
                self.pending.pop(name, None)
            return None
        since = self.unhealthy_since.setdefault(name, now)
        if now - since < self.unhealthy_for or name in self.pending:
            return None
        self.pending[name] = {'id': cid, 'name': name, 'reason': 'unhealthy', 'since': now, 'kind': 'restart',
                              'needs_room': False, 'exit_code': None,
                              'detail': 'unhealthy for %.0f s (%s)' % (now - since, detail)}
        return {'decision': 'restart_scheduled', 'container': name, 'id': cid, 'reason': 'unhealthy',
                'why': self.pending[name]['detail'], 'attempt': len(self.recent(name, now)) + 1, 'delay': 0.0}

    # ---- decisions -------------------------------------------------------------------------
    def delay(self, name, now=None):
        """Seconds to wait after a death before the next restart of `name`."""
        return min(self.backoff * (2 ** len(self.recent(name, now))), self.backoff_max)

    def due(self, now=None, guard_level=None):
        """Decisions to carry out now: {'action': 'start'|'restart'|'give_up', ...} (and 'wait' once per OOM death)."""
        now = self.clock() if now is None else now
        decisions = []
        for name, item in sorted(self.pending.items()):
            if self.given_up(name):
                del self.pending[name]
                continue
            recent = self.recent(name, now)
            if len(recent) >= self.limit:
                decisions.append(dict(item, action='give_up', restarts_in_window=len(recent),
                                      why='%d restarts in the last %.0f s already (limit %d); %s'
                                      % (len(recent), self.window, self.limit, item['detail'])))
                continue
            if item.get('engine'):
                if now < item['engine_until']:
                    continue  # Docker's restart policy restarts it; its start event settles the record
                item = self.pending[name] = dict(item, engine=False)  # Docker did not: the monitor starts it
            wait_until = item['since'] if item['reason'] == 'unhealthy' else item['since'] + self.delay(name, now)
            if now < wait_until:
                continue
            if item['needs_room'] and guard_level not in (None, 'ok'):
                if not item.get('waiting'):
                    item['waiting'] = True
                    decisions.append(dict(item, action='wait', why='OOM-killed; waiting for the guard to make room (level %s)' % guard_level))
                continue
            decisions.append(dict(item, action=item['kind'], attempt=len(recent) + 1, restarts_in_window=len(recent)))
        return decisions

    def next_due(self, now=None):
        """Seconds until the earliest pending restart may be due (0 when one is due now), or None when nothing is pending."""
        now = self.clock() if now is None else now
        times = [item['engine_until'] if item.get('engine') and len(self.recent(name, now)) < self.limit
                 else item['since'] + (0.0 if item['reason'] == 'unhealthy' else self.delay(name, now))
                 for name, item in self.pending.items()]
        return max(0.0, min(times) - now) if times else None

    def begin(self, decision, now=None):
        """Record a restart (or a give-up) on disk BEFORE carrying it out; mark its engine events as ours.

        When the history cannot be written (the state file locked too long, a full disk) nothing is
        recorded, the decision stays pending (retried) and the error is raised: no action without its record.
        """
        now = self.clock() if now is None else now
        name = decision['name']
        before = copy.deepcopy(self.history)
        item = self.pending.get(name)
        try:
            self._begin(decision, name, now)
        except Exception:
            self.history = before
            self.ours.pop(decision['id'], None)
            if item is not None:
                self.pending[name] = item
            raise

    def _begin(self, decision, name, now):
        record = self._record(name)
        self.pending.pop(name, None)
        if decision['action'] == 'give_up':
            record['given_up_at'] = now
            record['given_up_reason'] = decision['reason']
            if decision.get('stop'):
                self.ours[decision['id']] = (now, 'stop')  # the give-up stop's kill/die/stop events are ours
        elif decision['action'] in ('start', 'restart'):
            self._add_restart(name, decision['reason'], now, 'monitor')
            self.ours[decision['id']] = (now, decision['action'])
            self.unhealthy_since.pop(name, None)
        self._save()

    def stopping(self, container_id, now=None):
        """The monitor stops `container_id` (a give-up): the engine events of that stop are ours."""
        self.ours[container_id] = (self.clock() if now is None else now, 'stop')

    def stop_failed(self, container_id):
        """A give-up stop failed: the next start by Docker's restart policy makes the monitor stop it again."""
        if (self.ours.get(container_id) or (None, None))[1] == 'stop':
            del self.ours[container_id]

    def engine_restarting(self, name, now=None):
        """The engine is restarting (or has restarted) `name` itself: wait for its start event rather than start it."""
        now = self.clock() if now is None else now
        item = self.pending.get(name)
        if item is not None:
            self.pending[name] = dict(item, engine=True, engine_until=now + self.engine_grace)

    def failed(self, decision, error, gone=False, now=None):
        """A start/restart that the engine refused: the attempt stays counted; retried after the backoff unless gone."""
        now = self.clock() if now is None else now
        self.ours.pop(decision['id'], None)
        if gone:
            return
        self.pending[decision['name']] = dict(decision, since=now, detail='%s; the last attempt failed: %s' % (decision['detail'], error))
        for key in ('action', 'attempt', 'restarts_in_window', 'why', 'waiting', 'stop'):
            self.pending[decision['name']].pop(key, None)

    def drop(self, name):
        """Forget what is pending for `name` (it runs again, or it is gone)."""
        self.pending.pop(name, None)

    def status(self, now=None):
        """Per container name: restarts in the window, budget left, given up, totals by reason."""
        now = self.clock() if now is None else now
        result = {}
        for name, record in self.history['containers'].items():
            recent = self.recent(name, now)
            result[name] = {'restarts_in_window': len(recent), 'remaining': max(0, self.limit - len(recent)),
                            'by_docker_in_window': sum(1 for r in recent if len(r) > 2 and r[2] == 'docker'),
                            'given_up': bool(record.get('given_up_at')), 'given_up_reason': record.get('given_up_reason'),
                            'totals': dict(self.history['totals'].get(name, {}))}
        return result
