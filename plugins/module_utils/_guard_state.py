# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory guard's record of what it stopped and unloaded, kept on disk.

PRIVATE to the collection: no compatibility promise. Plain Python, no Ansible import.

The record survives restarts of the guard (module runs, daemon restarts) so that restore
can start again what the guard stopped. Every save is atomic (a temporary file in the
same directory, fsync, rename over the file, so the file is never missing) and keeps the
previous good version beside it as `<file>.bak`. Loading never changes anything on disk
except one thing: a file that cannot be read is copied aside once as
`<file>.corrupt-<mtime>`. Its records are then taken from the backup plus every whole
record that can still be read from the damaged file, so no stopped container is forgotten;
a missing file with a backup beside it loads the backup. `needs_repair` tells the guard
to write the recovered state back on its next acting pass.
"""

import json
import os
import re
import shutil
import tempfile

_RECORD_RE = re.compile(r'\{[^{}]*\}')

VERSION = 1


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
    return state


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
    known = set(r['id'] for r in state['stopped'])
    for record in records:
        if record['id'] not in known:
            state['stopped'].append(record)
            known.add(record['id'])
    state['stopped'].sort(key=lambda r: r.get('stopped_at') or 0)
    return state


class StateStore:
    """Load and save the guard's state file; `warnings` collects what went wrong on load."""

    def __init__(self, path):
        self.path = path
        self.backup = path + '.bak'
        self.warnings = []
        self.needs_repair = False

    def load(self):
        """The saved state; the backup's (plus what can be salvaged) when the file is damaged or missing; else empty."""
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
                aside = self._keep_aside()
                self.warnings.append('state file %s could not be read (%s); a copy is kept as %s' % (self.path, exc, aside))
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
        """Write `state` atomically, keeping the previous good version as <file>.bak."""
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


def record_stop(state, action, now):
    """Add a container the guard stopped (latest last)."""
    state['stopped'] = [r for r in state['stopped'] if r['id'] != action['id']]
    state['stopped'].append({'id': action['id'], 'name': action['container'], 'tier': action.get('tier'),
                             'usage': action.get('size', 0), 'stopped_at': now})


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
