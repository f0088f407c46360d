# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory guard's record of what it stopped and unloaded, kept on disk.

PRIVATE to the collection: no compatibility promise. Plain Python, no Ansible import.

The record survives restarts of the guard (module runs, daemon restarts) so that restore
can start again what the guard stopped. Every save is atomic (a temporary file in the
same directory, fsync, rename over the file, so the file is never missing) and keeps the
previous good version beside it as `<file>.bak`.

An acting pass holds `<file>.lock` (an exclusive flock) from its load to its last save, so
the module and the monitor daemon never interleave their load -> act -> save and never lose
or duplicate a record; a pass that cannot get the lock within `lock_timeout` seconds fails
with StateLockError naming the holder. Reading (check mode, report only) takes no lock:
saves are atomic renames, so a reader sees one whole version or the other.

Top-level keys the guard does not use are kept: a load -> save round trip writes them back as
loaded. The monitor daemon keeps its restart history there (`restarts`, written by
_monitor_restarts.GuardFileRestartStore under this lock), so a guard pass never drops it.

`load()` writes nothing. A file that cannot be read gives its records from the backup plus
every whole record that can still be read from the damaged file, so no stopped container is
forgotten; a missing file with a backup beside it loads the backup. Only an acting pass
(`load(keep_aside=True)`) copies a damaged file aside once as `<file>.corrupt-<mtime>`, and
`needs_repair` tells it to write the recovered state back.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time

_RECORD_RE = re.compile(r'\{[^{}]*\}')

VERSION = 1
DEFAULT_LOCK_TIMEOUT = 60.0


class StateLockError(Exception):
    """Another guard pass held the state file's lock for longer than the wait allowed, or the lock file cannot be opened."""


class StateWriteError(OSError):
    """The state file could not be written; the message names the file and the reason."""


def empty_state():
    """A state with no records."""
    return {'version': VERSION, 'stopped': [], 'unloaded': [], 'below_since': None, 'events': []}


def _valid(data):
    return (isinstance(data, dict) and isinstance(data.get('stopped', []), list)
            and isinstance(data.get('unloaded', []), list)
            and all(isinstance(r, dict) and 'id' in r and 'name' in r for r in data.get('stopped', [])))


def _read(path):
    with open(path, 'r', encoding='utf-8') as handle:
        data = json.load(handle)
    if not _valid(data):
        raise ValueError('%s does not hold a memory guard state' % path)
    state = empty_state()
    state.update(data)
    state['stopped'] = _unique(state['stopped'])
    return state


def _unique(records):
    """One record per container id, the last one kept, in the order of the file (restore takes the last first)."""
    last = {}
    for index, record in enumerate(records):
        last[record['id']] = index
    return [record for index, record in enumerate(records) if last[record['id']] == index]


def _salvage(path):
    """Whole stopped-container records still readable in a damaged file (hand-written: no JSON library recovers partial documents)."""
    try:
        with open(path, 'r', encoding='utf-8', errors='replace') as handle:
            text = handle.read()
    except OSError:
        return []
    records = []
    for match in _RECORD_RE.finditer(text):
        try:
            record = json.loads(match.group(0))
        except ValueError:
            continue
        if isinstance(record, dict) and 'id' in record and 'name' in record and 'stopped_at' in record:
            records.append(record)
    return records


def _merge_stopped(state, records):
    """`records` added to state['stopped'], one record per container id (the first seen wins), in stop order."""
    known = set(r['id'] for r in state['stopped'])
    for record in records:
        if record['id'] not in known:
            state['stopped'].append(record)
            known.add(record['id'])
    state['stopped'].sort(key=lambda r: r.get('stopped_at') or 0)
    return state


class StateStore:
    """Load and save the guard's state file; `warnings` collects what went wrong on load.

    lock_timeout: seconds an acting pass waits for another pass's lock before it fails.
    """

    def __init__(self, path, lock_timeout=DEFAULT_LOCK_TIMEOUT, clock=time.monotonic, sleep=time.sleep):
        self.path = path
        self.backup = path + '.bak'
        self.lock_path = path + '.lock'
        self.lock_timeout = lock_timeout
        self.warnings = []
        self.needs_repair = False
        self._clock = clock
        self._sleep = sleep

    @contextlib.contextmanager
    def locked(self, timeout=None):
        """Hold the exclusive lock of the state file (`<file>.lock`, flock) for a load -> act -> save.

        Waits up to `timeout` seconds (default lock_timeout) for another holder, then raises
        StateLockError naming the file, the wait and the holder's pid. Creates the directory
        and the lock file when missing (only acting passes lock: they write anyway).
        """
        timeout = self.lock_timeout if timeout is None else timeout
        directory = os.path.dirname(os.path.abspath(self.lock_path))
        try:
            os.makedirs(directory, mode=0o750, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StateLockError('cannot open the lock file %s of the state file: %s' % (self.lock_path, exc.strerror or exc)) from None
        try:
            deadline = self._clock() + max(0.0, float(timeout))
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise StateLockError('cannot lock %s: %s' % (self.lock_path, exc.strerror or exc)) from None
                if self._clock() >= deadline:
                    raise StateLockError('the state file %s is locked by another guard pass (%s) and was not released within %s seconds'
                                         % (self.path, _holder(fd), _seconds(timeout)))
                self._sleep(min(0.05, max(0.0, deadline - self._clock())))
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, ('%d\n' % os.getpid()).encode('ascii'), 0)
            except OSError:
                pass  # the pid only makes the message of a waiting pass clearer
            yield self
        finally:
            os.close(fd)  # releases the lock

    def load(self, keep_aside=False):
        """The saved state; the backup's (plus what can be salvaged) when the file is damaged or missing; else empty.

        Writes nothing unless `keep_aside` (an acting pass): then a damaged file is first copied aside.
        """
        self.warnings = []
        self.needs_repair = False
        salvaged = []
        if not os.path.exists(self.path):
            if not os.path.exists(self.backup):
                return empty_state()
            self.warnings.append('state file %s is missing' % self.path)
        else:
            try:
                return _read(self.path)
            except (OSError, ValueError) as exc:
                salvaged = _salvage(self.path)
                if keep_aside:
                    self.warnings.append('state file %s could not be read (%s); a copy is kept as %s' % (self.path, exc, self._keep_aside()))
                else:
                    self.warnings.append('state file %s could not be read (%s); the next acting pass keeps a copy aside and '
                                         'writes the recovered records back' % (self.path, exc))
        self.needs_repair = True
        state = empty_state()
        if os.path.exists(self.backup):
            try:
                state = _read(self.backup)
                self.warnings.append('records taken from the backup %s' % self.backup)
            except (OSError, ValueError) as exc:
                self.warnings.append('backup %s could not be read either (%s)' % (self.backup, exc))
        if salvaged:
            self.warnings.append('%d stopped-container record(s) recovered from the damaged file' % len(salvaged))
        return _merge_stopped(state, salvaged)

    def _keep_aside(self):
        """Copy the damaged file aside, once per version of it (a daemon loads every second)."""
        try:
            aside = '%s.corrupt-%d' % (self.path, int(os.stat(self.path).st_mtime))
            if not os.path.exists(aside):
                shutil.copy2(self.path, aside)
            return aside
        except OSError as exc:
            return 'nowhere (%s)' % exc

    def save(self, state):
        """Write `state` atomically, keeping the previous good version as <file>.bak.

        Raises StateWriteError (an OSError) naming the file when it cannot be written; the file is then unchanged.
        """
        try:
            self._save(state)
        except StateWriteError:
            raise
        except OSError as exc:
            raise StateWriteError(exc.errno, 'cannot write the state file %s: %s' % (self.path, exc.strerror or exc)) from None

    def _save(self, state):
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o750, exist_ok=True)
        data = json.dumps(state, indent=2, sort_keys=True)
        tmp = self._write_temp(directory, data)
        try:
            if os.path.exists(self.path):
                try:
                    _read(self.path)
                except (OSError, ValueError):
                    pass  # never let a damaged file replace a good backup
                else:
                    backup_tmp = self._write_temp(directory, None)
                    shutil.copyfile(self.path, backup_tmp)
                    os.replace(backup_tmp, self.backup)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.needs_repair = False
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _write_temp(self, directory, data):
        """A new file beside the state file (mode 0640) holding `data`, flushed to disk; its path."""
        handle, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(self.path), dir=directory)
        try:
            with os.fdopen(handle, 'w', encoding='utf-8') as out:
                if data is not None:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
            os.chmod(tmp, 0o640)
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp


def _holder(fd):
    """'pid N' from the lock file, as its holder wrote it."""
    try:
        text = os.pread(fd, 32, 0).decode('ascii', 'replace').strip()
    except OSError:
        text = ''
    return 'pid %s' % text if text.isdigit() else 'holder unknown'


def _seconds(value):
    return ('%g' % float(value))


def record_stop(state, action, now, status='stopped'):
    """Add a container the guard stopped (latest last), one record per container.

    The guard records `status='stopping'` and saves BEFORE it stops the container, then marks it
    stopped (record_stopped): a pass that dies in between leaves a record, never a stopped container
    without one. A 'stopping' record whose container runs is dropped by the next pass.
    """
    state['stopped'] = [r for r in state['stopped'] if r['id'] != action['id']]
    record = {'id': action['id'], 'name': action['container'], 'tier': action.get('tier'),
              'usage': action.get('size', 0), 'stopped_at': now, 'status': status}
    if action.get('project'):
        record['project'] = action['project']  # its Compose project / Swarm stack: a scoped guard knows it once it is removed
    state['stopped'].append(record)


def record_stopped(state, action):
    """Mark the record of a container the guard has now stopped."""
    for record in state['stopped']:
        if record['id'] == action['id']:
            record['status'] = 'stopped'
            record.pop('last_error', None)


def record_stop_failure(state, action, error):
    """Keep the 'stopping' record of a container whose stop failed (it may have stopped all the same), with the error."""
    for record in state['stopped']:
        if record['id'] == action['id']:
            record['last_error'] = str(error)[:300]


def record_start(state, action):
    """Drop a container from the stopped records once it runs again."""
    state['stopped'] = [r for r in state['stopped'] if r['id'] != action['id']]


def record_start_failure(state, action, error, now):
    """Keep the record of a container that would not start, count the failure, and let the others go first."""
    for record in state['stopped']:
        if record['id'] == action['id']:
            record['start_failures'] = record.get('start_failures', 0) + 1
            record['last_error'] = str(error)[:300]
            record['last_attempt'] = now
            state['stopped'].remove(record)
            state['stopped'].insert(0, record)  # restore takes the latest first: this one goes last
            return


def record_unload(state, action, now, keep=50):
    """Remember a model the guard unloaded (Ollama loads it again on the next request)."""
    state['unloaded'].append({'model': action['model'], 'size': action.get('size', 0), 'unloaded_at': now})
    del state['unloaded'][:-keep]
