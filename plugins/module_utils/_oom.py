# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OOM kills in a stack cgroup or in a set of containers, from every signal that can see them.

PRIVATE to the collection: no compatibility promise. Plain Python with no Ansible import (the
monitor daemon, the guard, the tests and the benchmarks use it); the docker SDK is optional.

Why several signals: on cgroup v1 a kill caused by a PARENT cgroup's limit (the stack cgroup of
`cgroup_parent`) is counted only in the victim's own cgroup (memory.oom_control `oom_kill`),
which vanishes with the container; the parent's counter stays 0. Docker's `oom` event goes to
every container below the parent that ran out (victims and bystanders alike), and
`State.OOMKilled` follows it: a bystander later stopped with `docker stop` shows OOMKilled true,
while a killed worker process (not PID 1) leaves the container running with OOMKilled false.
Neither is evidence of a kill. What is:

- kernel_log: the kernel's "Killed process PID (COMM)" line, with the preceding
  `oom-kill:...oom_memcg=...,task_memcg=...` line (or "Task in X killed as a result of limit of Y"
  on kernels before 4.19); read from /dev/kmsg without blocking, from a saved sequence number,
  or from `dmesg` output. Where neither is readable the detector says so in `sources`.
- cgroup_counter: the oom_kill counter of each cgroup below the stack (v1 memory.oom_control,
  v2 memory.events.local or a leaf's memory.events), and of watched containers' cgroups, read
  while they exist.
- exit_137: a container that died with exit code 137 although the engine's /events show no
  `kill` or `stop` since it last started (`docker stop`/`docker kill`/`docker rm -f` all send `kill`).
- memory_events: on cgroup v2 the stack's own memory.events `oom_kill`, which counts kills in
  all its descendants.

Each signal gives pieces of evidence keyed by container (its id) or cgroup path; a piece joins
the first kill of the same key that lacks that kind of evidence, else it is a new kill. So a kill
seen by all four signals counts once, whatever order they arrive in.

Use: `det = OomDetector(stack_cgroup='sutazai', docker_client=client); det.baseline()`, then
`det.poll()` as often as wanted (each call reads only what is new and returns the new kills);
`det.count()`, `det.kills`, `det.report()`.
"""

import errno
import os
import re
import subprocess
import time

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups
from ansible_collections.sutazai.ops.plugins.module_utils import _containers

EVIDENCE_KINDS = ('kernel_log', 'cgroup_counter', 'exit_137', 'memory_events')
_ID_RE = re.compile(r'([0-9a-f]{64})(?:\.scope)?$')
_KILLED_RE = re.compile(r'(?:(Memory cgroup out of memory|Out of memory(?: \(oom_kill_allocating_task\))?): )?'
                        r'Killed process (\d+) \(([^)]*)\)')
_OOM_KILL_RE = re.compile(r'^oom-kill:(.*)$')
_KILL_PROCESS_RE = re.compile(r'^(Memory cgroup out of memory|Out of memory): Kill process (\d+) ')  # kernels before 4.19
_TASK_IN_RE = re.compile(r'^Task in (\S+) killed as a result of limit of (\S+)')
_DMESG_RE = re.compile(r'^\[\s*(\d+)\.(\d+)\]\s?(.*)$')
# kinds of engine events that mean the operator (or the guard) ended the container
_OPERATOR_ACTIONS = ('kill', 'stop', 'restart')


def container_id_of(cgroup_path):
    """The container id a cgroup path names (`/sutazai/<id>`, `/system.slice/docker-<id>.scope`), or None."""
    match = _ID_RE.search((cgroup_path or '').rstrip('/'))
    return match.group(1) if match else None


def cgroup_key(path):
    """A cgroup path as the kernel prints it: `/` plus the path below the hierarchy, no trailing slash."""
    return '/' + (path or '').strip('/')


def stack_key(name):
    """The kernel's path of a stack cgroup named as in cgroup_parent (`sutazai`, `/sutazai`, `sutazai.slice`)."""
    return cgroup_key(_cgroups.expand_slice(name))


def is_below(path, top):
    """True when cgroup path `path` is `top` or below it."""
    path, top = cgroup_key(path), cgroup_key(top)
    return top == '/' or path == top or path.startswith(top + '/')


class KillLineParser:
    """Turns kernel log messages into kills: feed(usec, message) returns a kill dict on a "Killed process" line."""

    def __init__(self):
        self._pending = {}

    def feed(self, usec, message):
        """One kernel message (without its timestamp); returns a kill dict or None."""
        message = message.strip()
        match = _OOM_KILL_RE.match(message)
        if match:
            fields = {}
            for item in match.group(1).split(','):
                key, sep, value = item.partition('=')
                if sep:
                    fields[key.strip()] = value.strip()
            self._pending = {'constraint': fields.get('constraint'), 'oom_memcg': fields.get('oom_memcg'),
                             'task_memcg': fields.get('task_memcg'), 'pid': fields.get('pid'), 'comm': fields.get('task')}
            return None
        match = _TASK_IN_RE.match(message)
        if match:
            self._pending = {'task_memcg': match.group(1), 'oom_memcg': match.group(2), 'constraint': 'CONSTRAINT_MEMCG'}
            return None
        match = _KILL_PROCESS_RE.match(message)
        if match:  # the victim chosen; "Killed process" follows
            if match.group(1) == 'Out of memory':
                self._pending = {'constraint': 'CONSTRAINT_NONE'}
            self._pending['pid'] = match.group(2)
            return None
        match = _KILLED_RE.search(message)
        if not match or 'Killed process' not in message[:match.end()] or message.startswith('oom_reaper'):
            return None
        pid, comm = int(match.group(2)), match.group(3)
        pending, self._pending = self._pending, {}
        if pending.get('pid') not in (None, str(pid)):
            pending = {}
        kill = {'pid': pid, 'comm': comm, 'usec': usec, 'oom_memcg': pending.get('oom_memcg'),
                'task_memcg': pending.get('task_memcg'), 'constraint': pending.get('constraint'), 'line': message}
        if kill['constraint'] is None and match.group(1):
            kill['constraint'] = 'CONSTRAINT_MEMCG' if match.group(1).startswith('Memory cgroup') else 'CONSTRAINT_NONE'
        kill['container_id'] = container_id_of(kill['task_memcg'])
        return kill


def parse_kmsg_record(record):
    """One /dev/kmsg record (`PRI,SEQ,USEC,FLAGS;message` plus ` KEY=value` lines) -> (seq, usec, message), or None."""
    if isinstance(record, bytes):
        record = record.decode('utf-8', 'replace')
    header, sep, rest = record.partition(';')
    if not sep:
        return None
    fields = header.split(',')
    try:
        seq, usec = int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None
    message = rest.split('\n', 1)[0]
    return seq, usec, message.replace('\\x0a', ' ')


def parse_dmesg_line(line):
    """One line of `dmesg` output (`[  322.860197] message`) -> (usec, message), or None (continuation, no timestamp)."""
    match = _DMESG_RE.match(line.rstrip('\n'))
    if not match:
        return None
    seconds, fraction, message = match.groups()
    return int(seconds) * 1000000 + int((fraction + '000000')[:6]), message


class KernelLog:
    """OOM kills from the kernel log, read incrementally.

    source: 'auto' (/dev/kmsg, else `dmesg`), 'kmsg', 'dmesg' or None (not read). `readable` and
    `reason` say whether it can be read and why not. `position` can be saved and given back as
    `start` to resume (a kmsg sequence number or a dmesg timestamp in microseconds).
    """

    def __init__(self, source='auto', kmsg_path='/dev/kmsg', dmesg_command=('dmesg',), runner=None):
        self.kmsg_path = kmsg_path
        self.dmesg_command = list(dmesg_command)
        self.runner = runner or _run_dmesg
        self.parser = KillLineParser()
        self.fd = None
        self.source = None
        self.reason = None
        self.position = None  # kmsg: last sequence number read; dmesg: last timestamp (usec) read
        self.warnings = []
        self._seen_at_position = set()
        if source is None:
            self.reason = 'kernel log not read (disabled)'
            return
        errors = []
        if source in ('auto', 'kmsg'):
            try:
                self.fd = os.open(kmsg_path, os.O_RDONLY | os.O_NONBLOCK)
                self.source = 'kmsg'
            except OSError as exc:
                errors.append('%s: %s' % (kmsg_path, exc.strerror or exc))
        if self.source is None and source in ('auto', 'dmesg'):
            try:
                self.runner(self.dmesg_command)
                self.source = 'dmesg'
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append('%s: %s' % (' '.join(self.dmesg_command), exc))
        if self.source is None:
            self.reason = 'kernel log not readable (%s)' % '; '.join(errors or ['unknown source %r' % source])

    @property
    def readable(self):
        """True when the kernel log can be read."""
        return self.source is not None

    def close(self):
        """Release /dev/kmsg."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _kmsg_records(self):
        while True:
            try:
                data = os.read(self.fd, 16384)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten before we read them
                    self._warn('kernel log records were overwritten before they were read; some kills may be missed')
                    continue
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not data:
                return
            parsed = parse_kmsg_record(data)
            if parsed:
                yield parsed

    def _dmesg_records(self):
        text = self.runner(self.dmesg_command)
        for line in text.splitlines():
            parsed = parse_dmesg_line(line)
            if parsed:
                yield None, parsed[0], parsed[1]

    def _warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    def seek_end(self):
        """Skip everything the kernel log holds now: later reads see only new messages."""
        if self.source == 'kmsg':
            # read through once (a few thousand records at most) to learn the last sequence number: a position to save
            os.lseek(self.fd, 0, os.SEEK_SET)
            for seq, _usec, _message in self._kmsg_records():
                self.position = seq
            self.parser = KillLineParser()
        elif self.source == 'dmesg':
            for _seq, usec, message in self._dmesg_records():
                self._advance_dmesg(usec, message)

    def seek(self, position):
        """Resume after a saved `position` (None: from the oldest message the kernel still holds)."""
        self.position = position
        self._seen_at_position = set()
        if self.source == 'kmsg':
            os.lseek(self.fd, 0, os.SEEK_SET)

    def _advance_dmesg(self, usec, message):
        """True when this dmesg line is new (after the position); moves the position."""
        if self.position is not None and (usec < self.position or (usec == self.position and message in self._seen_at_position)):
            return False
        if usec != self.position:
            self.position = usec
            self._seen_at_position = set()
        self._seen_at_position.add(message)
        return True

    def read(self):
        """The kills logged since the last read (list of kill dicts)."""
        kills = []
        if self.source == 'kmsg':
            for seq, usec, message in self._kmsg_records():
                if self.position is not None and seq <= self.position:
                    continue
                if self.position is not None and seq > self.position + 1:
                    self._warn('kernel log records %d to %d were gone before they were read' % (self.position + 1, seq - 1))
                self.position = seq
                kill = self.parser.feed(usec, message)
                if kill:
                    kills.append(kill)
        elif self.source == 'dmesg':
            for _seq, usec, message in self._dmesg_records():
                if self._advance_dmesg(usec, message):
                    kill = self.parser.feed(usec, message)
                    if kill:
                        kills.append(kill)
        return kills


def _run_dmesg(command):
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30,
                          env=dict(os.environ, LC_ALL='C')).stdout


class OomDetector:  # pylint: disable=too-many-instance-attributes
    """Counts OOM kills since a baseline in a stack cgroup and/or a set of containers.

    stack_cgroup: the stack's cgroup as in cgroup_parent (`sutazai`, `sutazai.slice`), or None.
    containers: container ids (full) to watch besides the stack (more with `watch`).
    With neither, every kill on the host counts. docker_client: a docker SDK client (for
    exit_137), or None. kernel_log: a KernelLog, or its `source` ('auto', 'kmsg', 'dmesg', None).
    """

    def __init__(self, stack_cgroup=None, containers=(), cgroup_root=_cgroups.DEFAULT_ROOT, docker_client=None,
                 kernel_log='auto', clock=time.time):
        self.stack = stack_key(stack_cgroup) if stack_cgroup else None
        self.watched = set(containers or ())
        self.root = cgroup_root
        self.docker = docker_client
        self.clock = clock
        self.kernel = kernel_log if isinstance(kernel_log, KernelLog) else KernelLog(kernel_log)
        self.kills = []
        self.warnings = []
        self.hierarchy = _cgroups.memory_hierarchy(cgroup_root)
        self.version = _cgroups.cgroup_version(cgroup_root)
        self._counters = {}        # (cgroup key, inode) -> last oom_kill value seen
        self._paths = {}           # watched container id -> cgroup directory
        self._lookup = _containers.ContainerMemory(cgroup_root)  # the one container -> cgroup lookup
        self._stack_events = None  # v2: the stack's memory.events oom_kill at the last reading
        self._events_since = None
        self._seen_events = {}
        self._operator_ended = {}  # container id -> True after kill/stop since its last start
        self._membership = {}      # container id -> in scope (from the engine's HostConfig.CgroupParent)
        self._boot = time.time() - time.monotonic()
        self._baseline_time = None

    # ----------------------------------------------------------------- public
    def watch(self, container_ids):
        """Watch more containers (full ids); their counters count from the value they have now."""
        for cid in container_ids:
            if cid not in self.watched:
                self.watched.add(cid)
                if self._baseline_time is not None:
                    self._read_container_counter(cid, record_only=True)

    def baseline(self, kernel_position='end'):
        """Forget earlier kills; count from now. kernel_position: 'end' (now), None (all the kernel log holds) or a saved position."""
        self.kills = []
        self._baseline_time = self.clock()
        if self.kernel.readable:
            if kernel_position == 'end':
                self.kernel.seek_end()
            else:
                self.kernel.seek(kernel_position)
        self._counters = {}
        for key, inode, value in self._counter_readings():
            self._counters[(key, inode)] = value
        self._stack_events = self._read_stack_events()
        # engine events from a minute before: a `docker stop` begun before the baseline still explains its exit
        self._events_since = self._baseline_time - 60
        self._seen_events = {}
        self._operator_ended = {}
        self._read_engine_events(count=False)
        return self

    def poll(self):
        """Read what is new in every source; returns the kills found in this call (also added to `kills`)."""
        if self._baseline_time is None:
            self.baseline()
            return []
        before = len(self.kills)
        self._read_kernel()
        self._read_counters()
        self._read_engine_events(count=True)
        self._read_stack_memory_events()
        return self.kills[before:]

    def count(self):
        """How many kills since the baseline (as of the last poll)."""
        return len(self.kills)

    def sources(self):
        """What each source could read: a dict of short strings."""
        kernel = self.kernel.source or self.kernel.reason
        counters = {1: 'cgroup v1 oom_kill counters of the cgroups below the stack and of watched containers',
                    2: 'cgroup v2 memory.events'}.get(self.version, 'no memory cgroup hierarchy')
        engine = 'docker /events' if self.docker is not None else 'no docker client: exits with 137 not checked'
        return {'kernel_log': kernel, 'cgroup_counters': counters, 'engine_events': engine}

    def report(self):
        """count, kills, sources and warnings, as plain data."""
        return {'oom_kills': self.count(), 'kills': [dict(k) for k in self.kills], 'sources': self.sources(),
                'warnings': list(self.warnings) + list(self.kernel.warnings)}

    def close(self):
        """Release the kernel log."""
        self.kernel.close()

    # ---------------------------------------------------------------- scoping
    def _in_scope(self, key):
        """Is a kill in cgroup / container `key` one we count?"""
        if self.stack is None and not self.watched:
            return True
        cid = key if key and _ID_RE.match(key) and '/' not in key else container_id_of(key)
        if cid and cid in self.watched:
            return True
        if self.stack is None:
            return False
        if key and key.startswith('/'):
            return is_below(key, self.stack)
        return cid is not None and self._container_in_stack(cid)

    def _container_in_stack(self, cid):
        if cid in self._membership:
            return self._membership[cid]
        member = False
        if self.docker is not None:
            try:
                parent = self.docker.api.inspect_container(cid).get('HostConfig', {}).get('CgroupParent') or ''
                member = bool(parent) and is_below(stack_key(parent), self.stack)
            except Exception:  # pylint: disable=broad-exception-caught
                member = False
        self._membership[cid] = member
        return member

    # ------------------------------------------------------------- evidence
    def _add(self, key, kind, detail):
        """One piece of evidence of a kill in `key` (a container id or a cgroup path)."""
        cid = container_id_of(key) if key and key.startswith('/') else key
        ident = cid or key
        for kill in self.kills:
            if kill['key'] == ident and kind not in kill['evidence']:
                return self._attach(kill, kind, detail)
        for kill in self.kills:  # a kill first seen only stack-wide (v2 memory.events) gets its container now
            if kill['key'] is None and kind not in kill['evidence']:
                kill['key'] = ident
                kill['container_id'] = cid
                return self._attach(kill, kind, detail)
        kill = {'key': ident, 'container_id': cid, 'cgroup': key if key and key.startswith('/') else None,
                'time': self.clock(), 'evidence': {}}
        self.kills.append(kill)
        return self._attach(kill, kind, detail)

    def _add_stack_wide(self, detail):
        for kill in self.kills:
            if 'memory_events' not in kill['evidence'] and (kill['cgroup'] is None or is_below(kill['cgroup'], self.stack)):
                return self._attach(kill, 'memory_events', detail)
        kill = {'key': None, 'container_id': None, 'cgroup': self.stack, 'time': self.clock(), 'evidence': {}}
        self.kills.append(kill)
        return self._attach(kill, 'memory_events', detail)

    @staticmethod
    def _attach(kill, kind, detail):
        kill['evidence'][kind] = detail
        if kind == 'kernel_log':
            kill.update({'pid': detail['pid'], 'comm': detail['comm'], 'oom_memcg': detail['oom_memcg']})
            if detail.get('task_memcg'):
                kill['cgroup'] = detail['task_memcg']
        if kind == 'exit_137' and detail.get('name'):
            kill['container'] = detail['name']
        return kill

    # ---------------------------------------------------------------- kernel
    def _read_kernel(self):
        if not self.kernel.readable:
            return
        try:
            found = self.kernel.read()
        except OSError as exc:
            self._warn('kernel log read failed: %s' % exc)
            return
        for kill in found:
            key = kill['task_memcg'] or kill['oom_memcg']
            if key is None:
                if self.stack is not None or self.watched:
                    self._warn('kernel log kill of pid %d (%s) names no cgroup; not counted' % (kill['pid'], kill['comm']))
                    continue
                key = '/'
            if self._in_scope(key):
                detail = dict(kill)
                detail['time'] = round(self._boot + kill['usec'] / 1e6, 3)
                self._add(cgroup_key(key), 'kernel_log', detail)

    # --------------------------------------------------------------- counters
    def _counter_dirs(self):
        """(cgroup key, directory) of the cgroups whose own oom_kill counters are read."""
        if self.hierarchy is None:
            return
        seen = set()
        if self.stack is not None:
            top = os.path.join(self.hierarchy, self.stack.lstrip('/'))
            base = top.rstrip(os.sep).count(os.sep)
            for current, dirs, _files in os.walk(top):
                if current.count(os.sep) - base >= 3:
                    dirs[:] = []
                if current == top and self.version == 2:
                    continue  # the stack itself: read as memory_events
                seen.add(current)
                yield cgroup_key(os.path.relpath(current, self.hierarchy)), current
        for cid in sorted(self.watched):
            path = self._container_dir(cid)
            if path and path not in seen:
                yield cgroup_key(os.path.relpath(path, self.hierarchy)), path

    def _container_dir(self, cid):
        path = self._paths.get(cid)
        if path is None or not os.path.isdir(path):
            try:
                path = self._lookup.cgroup_path(cid)
            except ValueError:
                path = None
            if path is None:
                self._paths.pop(cid, None)
                return None
            self._paths[cid] = path
        return path

    def _counter_readings(self):
        for key, path in self._counter_dirs():
            value = _own_oom_kills(path)
            if value is None:
                continue
            try:
                inode = os.stat(path).st_ino
            except OSError:
                continue
            yield key, inode, value

    def _read_container_counter(self, cid, record_only=False):
        """Take a watched container's counter as it is now (it counts from there)."""
        path = self._container_dir(cid)
        if path is None or self.hierarchy is None:
            return
        value = _own_oom_kills(path)
        try:
            inode = os.stat(path).st_ino
        except OSError:
            return
        if value is not None and record_only:
            self._counters[(cgroup_key(os.path.relpath(path, self.hierarchy)), inode)] = value

    def _read_counters(self):
        for key, inode, value in self._counter_readings():
            cid = container_id_of(key)
            if cid and self.stack is not None and is_below(key, self.stack):
                self._membership[cid] = True  # seen below the stack: its exit needs no engine look-up
            last = self._counters.get((key, inode), 0)
            if value > last:
                self._counters[(key, inode)] = value
                if self._in_scope(key) or (self.stack is not None and is_below(key, self.stack)):
                    for index in range(last, value):
                        self._add(key, 'cgroup_counter', {'cgroup': key, 'oom_kill': index + 1})

    # ---------------------------------------------------------- v2 memory.events
    def _read_stack_events(self):
        if self.stack is None or self.hierarchy is None or self.version != 2:
            return None
        text = _read_optional(os.path.join(self.hierarchy, self.stack.lstrip('/'), 'memory.events'))
        return None if text is None else _cgroups.parse_flat_keyed(text).get('oom_kill', 0)

    def _read_stack_memory_events(self):
        value = self._read_stack_events()
        if value is None:
            return
        last = self._stack_events or 0
        if value > last:
            for index in range(last, value):
                self._add_stack_wide({'cgroup': self.stack, 'oom_kill': index + 1})
        self._stack_events = value

    # ------------------------------------------------------------ engine events
    def _read_engine_events(self, count):
        if self.docker is None:
            return
        now = self.clock()
        since = self._events_since
        try:
            stream = self.docker.api.events(since='%.9f' % since, until='%.9f' % now, decode=True,
                                            filters={'type': 'container'})
            events = list(stream)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn('Docker engine events not readable: %s' % exc)
            return
        self._events_since = now - 2  # overlap: events of the last instants may still arrive; duplicates are skipped
        events.sort(key=lambda e: e.get('timeNano') or 0)
        for event in events:
            ident = (event.get('id'), event.get('Action') or event.get('status'), event.get('timeNano'))
            if ident in self._seen_events:
                continue
            self._seen_events[ident] = (event.get('timeNano') or 0) / 1e9
            self._on_event(event, count)
        horizon = self._events_since - 5
        self._seen_events = dict((k, t) for k, t in self._seen_events.items() if t >= horizon)

    def _on_event(self, event, count):
        action = (event.get('Action') or event.get('status') or '').split(':')[0]
        cid = event.get('id') or (event.get('Actor') or {}).get('ID')
        attributes = (event.get('Actor') or {}).get('Attributes') or {}
        when = (event.get('timeNano') or 0) / 1e9
        if action == 'start':
            self._operator_ended[cid] = False
        elif action in _OPERATOR_ACTIONS:
            self._operator_ended[cid] = True
        elif action == 'die':
            explained = self._operator_ended.get(cid, False)
            if count and attributes.get('exitCode') == '137' and not explained and when >= self._baseline_time:
                if self._in_scope(cid):
                    self._add(cid, 'exit_137', {'container_id': cid, 'name': attributes.get('name'), 'time': round(when, 3)})

    def _warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)


def _read_optional(path):
    try:
        with open(path, encoding='ascii', errors='replace') as handle:
            return handle.read()
    except OSError:
        return None


def _own_oom_kills(path):
    """The kills counted in this cgroup itself: v1 memory.oom_control; v2 memory.events.local, else a leaf's memory.events."""
    text = _read_optional(os.path.join(path, 'memory.oom_control'))
    if text is not None:
        return _cgroups.parse_flat_keyed(text).get('oom_kill')
    text = _read_optional(os.path.join(path, 'memory.events.local'))
    if text is None:
        try:
            if any(entry.is_dir() for entry in os.scandir(path)):
                return None  # memory.events of an inner node counts its children: they are read themselves
        except OSError:
            return None
        text = _read_optional(os.path.join(path, 'memory.events'))
    if text is None:
        return None
    return _cgroups.parse_flat_keyed(text).get('oom_kill')
