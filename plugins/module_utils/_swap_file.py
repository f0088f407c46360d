# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One swap file: read its state, plan the difference, act on it. PRIVATE to the collection: no compatibility promise.

Plain Python with no Ansible import: the swap_file module passes its run_command, atomic_move, backup and
warn through `Tools`; the benchmark (and anything else) can use the standard-library defaults.

Safety order of a rebuild (new size, bad header, data file replaced with force=true): while an old file
exists, the new one is built, made swap and turned on under a temporary name beside it, and only then is
the old one turned off and replaced. The kernel refuses to rename or delete a swap file in use, so the new
file is turned off for the rename and on again under its own name; the old file is kept under a backup
name until that last swapon succeeds. A failure at any step leaves the old file as it was (on, if it was).
"""

import datetime
import os
import shutil
import subprocess
import tempfile

from ansible_collections.sutazai.ops.plugins.module_utils import _cgroups
from ansible_collections.sutazai.ops.plugins.module_utils import _swap
from ansible_collections.sutazai.ops.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.sutazai.ops.plugins.module_utils._swap import SwapError
from ansible_collections.sutazai.ops.plugins.module_utils._units import SizeError, format_size, parse_size

_ZEROS = b'\0' * (1024 * 1024)
_SBIN = ('/sbin', '/usr/sbin', '/usr/local/sbin')

UNREAD = {'magic': None, 'page_size': None}
"""The signature of a file in use as swap that this user may not read (check mode without root)."""

DEFAULTS = {'path': '/swapfile', 'size': None, 'state': 'present', 'priority': None, 'fstab': True, 'method': 'auto',
            'force': False, 'disk_reserve': '10%'}
"""The module's options and their defaults."""


def _run_command(args):
    """subprocess, shaped as AnsibleModule.run_command: (rc, stdout, stderr)."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def _get_bin_path(name):
    """The command as found on PATH, then in the sbin directories; None when missing."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))


def _backup(path):
    """Copy `path` next to itself as AnsibleModule.backup_local names it; return the copy's path."""
    stamp = datetime.datetime.now().strftime('%Y-%m-%d@%H:%M:%S')
    backup = '%s.%d.%s~' % (path, os.getpid(), stamp)
    shutil.copy2(path, backup)
    return backup


class Tools:
    """What SwapFile needs from its caller. Omitted ones use the standard library.

    run_command(args) -> (rc, out, err); get_bin_path(name) -> path or None; atomic_move(src, dest);
    backup(path) -> backup path; selinux_context(path) sets the default context; warn(text).
    """

    def __init__(self, run_command=None, get_bin_path=None, atomic_move=None, backup=None, selinux_context=None, warn=None):
        self.run_command = run_command or _run_command
        self.get_bin_path = get_bin_path or _get_bin_path
        self.atomic_move = atomic_move or os.replace
        self.backup = backup or _backup
        self.selinux_context = selinux_context or (lambda path: None)
        self.warn = warn or (lambda text: None)


class SwapFile:
    """Read the swap file's state, plan the difference, act on it unless in check mode."""

    def __init__(self, params, check_mode=False, diff=False, tools=None, host=None):
        self.params = dict(DEFAULTS, **{key: value for key, value in params.items() if key in DEFAULTS})
        self.check_mode = check_mode
        self.want_diff = diff
        self.tools = tools or Tools()
        self.host = host or _swap.Host()
        self.path = self.params['path']
        self.real = os.path.realpath(self.path)
        self.page_size = os.sysconf('SC_PAGE_SIZE')
        self.actions = []
        self.acted = False
        self.method = None
        self.backup_file = None
        self.unanswered = []
        self.diff = DifferenceTracker()
        self.diff_fstab = None
        self.before = None

    # -- reading ----------------------------------------------------------------------------
    def read_state(self):
        """The file, its signature, its /proc/swaps entry and fstab, as a dict. Reads only."""
        try:
            stat = os.stat(self.real)
        except FileNotFoundError:
            stat = None
        areas = _swap.parse_proc_swaps(self.host.read(self.host.proc_swaps, missing=''))
        area, unknown = _swap.find_area(areas, self.real), []
        signature = None
        if stat is not None and os.path.isfile(self.real) and stat.st_size:
            try:
                signature = _swap.read_signature(self.real, self.page_size)
            except PermissionError as exc:
                if area is None:
                    raise SwapError('Cannot read %s to look for a swap signature: %s. Run the task as root (become: true).'
                                    % (self.path, exc)) from exc
                signature = UNREAD  # in use as swap under its own name: a swap file, whatever its header says
            except OSError as exc:
                raise SwapError('Cannot read %s to look for a swap signature: %s.' % (self.path, exc)) from exc
        if area is None and signature is not None:
            # a file in use as swap always has a signature: look for it under other names, without writing
            area, named, unknown = _swap.identify_area(
                areas, self.real, stat, _swap.expected_area_size(stat.st_size, signature, self.page_size))
            if not named:
                raise SwapError('Swap file %s is in use as swap, but /proc/swaps lists it under another name (%s: it was turned on '
                                'through a bind mount or in another mount namespace, such as a container); turn it off there first.'
                                % (self.path, area['listed_as']))
        self.unanswered = ['Whether %s is the swap area /proc/swaps lists as %s (of the same size) cannot be told without writing: '
                           'that path leads to another file or to none, here and in every other mount namespace with a process. '
                           'A real run does not depend on it: the kernel refuses to rename, delete or truncate a swap file in use, '
                           'so such a run fails there and leaves the file as it is.'
                           % (self.path, unknown_area['path']) for unknown_area in unknown]
        return {'stat': stat, 'signature': signature, 'area': area, 'fstab': self.host.read(self.host.fstab, missing='')}

    def check_path(self, state):
        """Refuse paths that can never be a swap file, before looking any further."""
        problem = _swap.path_refusal(self.path, self.real)
        if problem:
            raise SwapError(problem)
        if os.path.isdir(self.real):
            raise SwapError('Swap file path %s is a directory; give the path of a file inside it.' % self.path)
        if os.path.lexists(self.real) and not os.path.isfile(self.real):
            raise SwapError('Swap file path %s exists and is not a regular file; refusing to touch it.' % self.path)
        directory = os.path.dirname(self.real)
        if state == 'present' and not os.path.isdir(directory):
            raise SwapError('The directory %s of swap file %s does not exist; create it first.' % (directory, self.path))

    def mount(self):
        """The mount holding the file's directory."""
        mounts = _swap.parse_mountinfo(self.host.read(self.host.mountinfo))
        return _swap.mount_of(os.path.dirname(self.real), mounts)

    def check_swapoff(self, area):
        """Raise the safety refusal when the pages of active `area` do not fit in memory."""
        try:
            mem = _cgroups.read_meminfo(self.host.meminfo)
        except _cgroups.CgroupError as exc:
            raise SwapError('Cannot tell whether the pages of swap file %s fit in memory: %s.' % (self.path, exc)) from exc
        problem = _swap.swapoff_refusal(self.path, area['used_bytes'], mem.get('MemAvailable', mem.get('MemFree', 0)), mem.get('MemTotal', 0))
        if problem:
            raise SwapError(problem)

    # -- planning ---------------------------------------------------------------------------
    def wanted_size(self):
        """The requested size in bytes, rounded up to pages, or a refusal."""
        if self.params['size'] is None:
            raise SwapError('size is required with state=present.')
        try:
            size = parse_size(self.params['size'], 'size')
        except SizeError as exc:
            raise SwapError('%s.' % exc) from exc
        if size < _swap.MIN_SWAP_BYTES:
            raise SwapError('Swap file size %s (%d bytes) is below the minimum of 40K (%d bytes).'
                            % (self.params['size'], size, _swap.MIN_SWAP_BYTES))
        return _swap.round_to_page(size, self.page_size)

    def recreate_reason(self, cur, target):
        """Why the file must be (re)built, or None when the existing one is right."""
        stat, signature = cur['stat'], cur['signature']
        if stat is None:
            return 'missing'
        if signature is None and cur['area'] is None:
            if stat.st_size and not self.params['force']:
                raise SwapError('%s exists and is not a swap file (no swap signature at byte %d); refusing to overwrite it. '
                                'Move it away or set force=true to replace it.' % (self.path, self.page_size - 10))
            return 'not swap'
        if not _swap.size_matches(stat.st_size, target, self.page_size):
            return 'size'
        if cur['area'] is None and (not _swap.header_matches(signature, stat.st_size, self.page_size) or _swap.has_holes(stat)):
            return 'header'
        return None

    def priority_matches(self, area):
        """True when an active area already has the requested priority."""
        wanted = self.params['priority']
        if wanted is None or area is None:
            return True
        return area['priority'] < 0 if wanted < 0 else area['priority'] == wanted

    def disk_space(self):
        """(free bytes, reserve bytes) of the file's filesystem; a bad disk_reserve is refused here, on every run."""
        vfs = os.statvfs(os.path.dirname(self.real))
        try:
            return vfs.f_bavail * vfs.f_frsize, _swap.parse_reserve(self.params['disk_reserve'], vfs.f_blocks * vfs.f_frsize)
        except ValueError as exc:
            raise SwapError(str(exc)) from exc

    def check_disk(self, cur, target, mount, free, reserve):
        """Refuse a size that does not fit; return True when the old file must go first to make room."""
        old = cur['stat'].st_blocks * 512 if cur['stat'] is not None else 0
        problem = _swap.disk_refusal(self.path, target, free + old, reserve, self.params['disk_reserve'])
        if problem:
            raise SwapError('%s (filesystem %s at %s)' % (problem, mount['fstype'], mount['mount_point']))
        make_room = target > free - reserve
        if make_room and old and cur['signature'] is not None and not self.params['force']:
            raise SwapError(
                'Resizing %s to %s needs the old file deleted first: %s has %s free and keeps %s in reserve. The new file is '
                'normally built beside the old one so that a failure leaves the old swap in place; free disk space, choose a '
                'smaller size, or set force=true to delete the old file first (a failure then leaves no swap file at %s).'
                % (self.path, format_size(target), mount['mount_point'], format_size(free), format_size(reserve), self.path))
        return make_room

    # -- commands ---------------------------------------------------------------------------
    def act(self, name, function=None, *args):
        """Record action `name` and run it unless in check mode."""
        self.actions.append(name)
        if function is not None and not self.check_mode:
            self.acted = True
            function(*args)

    def run(self, args):
        """Run a command (argument list); raise SwapError naming it on failure."""
        command = self.tools.get_bin_path(args[0])
        if command is None:
            raise SwapError('The command %s is not installed (it comes with util-linux or e2fsprogs).' % args[0])
        args = [command] + list(args[1:])
        rc, out, err = self.tools.run_command(args)
        if rc != 0:
            raise SwapError('%s failed (rc %d): %s' % (' '.join(args), rc, (err or out).strip()))
        return out

    def swapon(self, path=None):
        """Turn `path` (default this file) on, with the requested priority."""
        priority = self.params['priority']
        self.run(['swapon'] + (['-p', str(priority)] if priority is not None and priority >= 0 else []) + [path or self.real])

    def swapoff(self, path=None):
        """Turn exactly `path` (default this file) off (never -a)."""
        self.run(['swapoff', path or self.real])

    # -- building ---------------------------------------------------------------------------
    def allocate(self, temp, handle, size, method):
        """Give `temp` its blocks with `method`; auto falls back from fallocate to writing zeros."""
        if method == 'fallocate':
            try:
                self.run(['fallocate', '--length', str(size), temp])
                return method
            except SwapError:
                if self.params['method'] != 'auto':
                    raise
        remaining = size
        while remaining:
            remaining -= os.write(handle, _ZEROS[:min(remaining, len(_ZEROS))])
        os.fsync(handle)
        return 'dd'

    def build(self, size, mount, into_place, fate, method=None):
        """Build a swap file (blocks, mode 0600 root, mkswap) under a temporary name beside the target. With
        `into_place` rename it to the target and return the target, else return the temporary path. A failure
        removes the temporary file and raises, the message ending with `fate` (what became of the old file)."""
        handle, temp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(self.real), suffix='.swaptmp', dir=os.path.dirname(self.real))
        try:
            os.fchmod(handle, 0o600)
            if os.geteuid() == 0:
                os.fchown(handle, 0, 0)
            if mount['fstype'] == 'btrfs':
                self.run(['chattr', '+C', temp])
            self.method = self.allocate(temp, handle, size, method or _swap.creation_method(self.params['method'], mount['fstype']))
            os.close(handle)
            handle = None
            self.run(['mkswap', temp])
            if into_place:
                os.rename(temp, self.real)
        except (OSError, SwapError) as exc:
            if handle is not None:
                os.close(handle)
            if os.path.exists(temp):
                os.unlink(temp)
            raise SwapError('Creating swap file %s failed: %s%s' % (self.path, exc, fate)) from exc
        if into_place:
            self.tools.selinux_context(self.real)
            return self.real
        return temp

    def swapon_new(self, path, size, mount, into_place, fate):
        """Turn a file this run built on; return its path. With method auto, a preallocated file the kernel refuses
        (an older kernel, a compressed or multi-device btrfs) is rebuilt with zeros and tried once more; a file that
        still fails is removed and the error names `fate`."""
        try:
            self.swapon(path)
            return path
        except SwapError as exc:
            if not (self.method == 'fallocate' and self.params['method'] == 'auto'):
                self._remove_refused(path, exc, fate)
            first = exc
        self.actions.append('rebuild_dd')
        if not into_place:
            os.unlink(path)
        path = self.build(size, mount, into_place, fate, method='dd')
        try:
            self.swapon(path)
        except SwapError as exc:
            self._remove_refused(path, exc, fate, 'after fallocate was refused too (%s)' % first)
        return path

    def _remove_refused(self, path, exc, fate, detail=''):
        """Delete a new file the kernel would not take as swap, and fail saying so."""
        try:
            os.unlink(path)
            removed = 'the new file was removed'
        except OSError as again:
            removed = 'removing the new file %s failed too: %s' % (path, again)
        raise SwapError('The kernel refused %s as swap: %s%s; %s.%s' % (self.path, exc, (' ' + detail) if detail else '', removed, fate)) from exc

    def old_fate(self, cur, make_room):
        """What a failed rebuild leaves of the old file, as a sentence starting with a space ('' without one)."""
        if make_room:
            return ' The old file had been deleted to make room (force=true): there is no swap file at %s now.' % self.path
        if cur['area'] is not None:
            return ' The old swap file %s is still on, unchanged.' % self.path
        if cur['stat'] is not None:
            return ' The old file %s is unchanged.' % self.path
        return ' There is no swap file at %s.' % self.path

    def replace(self, temp, old_active, fate):
        """Put the new file `temp` (on as swap) in the place of the old file, which is off by now.

        An active swap file cannot be renamed, so the new one goes off for the rename and on again under its own
        name; the old one waits under a backup name until then, and comes back (on, if it was) on any failure."""
        try:
            self.swapoff(temp)
        except SwapError as exc:
            message = 'Turning off the new swap file %s to rename it to %s failed: %s; it stays on under that name.' % (temp, self.path, exc)
            raise SwapError(message + self._restore_old(old_active)) from exc
        backup = None
        try:
            handle, backup = tempfile.mkstemp(prefix='.%s.' % os.path.basename(self.real), suffix='.swapold', dir=os.path.dirname(self.real))
            os.close(handle)
            os.rename(self.real, backup)
        except OSError as exc:
            self._discard(temp, backup)
            raise SwapError('Cannot move the old file %s aside (%s): the kernel refuses to rename a file in use as swap, so it may be on '
                            'under another name; the new file was removed.%s' % (self.path, exc, self._restore_old(old_active))) from exc
        try:
            os.rename(temp, self.real)
            self.tools.selinux_context(self.real)
            self.swapon()
        except (OSError, SwapError) as exc:
            try:
                if os.path.exists(self.real) and not os.path.exists(temp):
                    os.rename(self.real, temp)
                os.rename(backup, self.real)
            except OSError as again:
                raise SwapError('Turning on the new swap file %s failed: %s; putting the old file back from %s failed too: %s.'
                                % (self.path, exc, backup, again)) from exc
            self._discard(temp)
            raise SwapError('Turning on the new swap file %s failed: %s; the old file was put back.%s'
                            % (self.path, exc, self._restore_old(old_active))) from exc
        os.unlink(backup)

    def _discard(self, *paths):
        """Delete the temporary files of a failed rebuild, as far as possible."""
        for path in paths:
            if path and os.path.exists(path):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def _restore_old(self, old_active):
        """Turn the old file back on after a failed rebuild if it was on; a sentence saying how it went."""
        if not old_active:
            return ' The old file %s is as it was.' % self.path
        try:
            self.swapon()
        except SwapError as exc:
            return ' Turning the old swap file back on failed too: %s' % exc
        return ' The old swap file %s is on again.' % self.path

    def rebuild(self, cur, target, mount, make_room):
        """Build the file anew at `target` bytes, in the safe order (see the module docstring)."""
        area = cur['area']
        if make_room:
            if area is not None:
                self.act('swapoff', self.swapoff)
            self.act('remove', self.remove)
        keep_old = cur['stat'] is not None and not make_room
        fate = self.old_fate(cur, make_room)
        if self.check_mode:
            self.actions.extend(['create', 'mkswap', 'swapon'])
            if keep_old:
                self.actions.extend(['swapoff', 'replace'] if area is not None else ['replace'])
            self.method = _swap.creation_method(self.params['method'], mount['fstype'])
            return
        self.acted = True
        self.actions.extend(['create', 'mkswap'])
        path = self.build(target, mount, not keep_old, fate)
        self.actions.append('swapon')
        path = self.swapon_new(path, target, mount, not keep_old, fate)
        if not keep_old:
            return
        if area is not None:
            self.actions.append('swapoff')
            try:
                self.swapoff()
            except SwapError as exc:
                try:
                    self.swapoff(path)
                    self._discard(path)
                    fate = ' The new file was removed.%s' % fate
                except SwapError as again:
                    fate = ' Turning the new file %s off failed too (%s): it stays on.%s' % (path, again, fate)
                raise SwapError('Turning off the old swap file %s failed: %s.%s' % (self.path, exc, fate)) from exc
        self.actions.append('replace')
        self.replace(path, area is not None, fate)

    def remove(self):
        """Delete the file; the kernel refuses (EPERM) when it is in use as swap under a name this run could not see."""
        try:
            os.unlink(self.real)
        except OSError as exc:
            raise SwapError('Deleting %s failed: %s. The kernel refuses to delete a file in use as swap: if it is on under another '
                            'name, turn it off there first.' % (self.path, exc)) from exc

    def write_fstab(self, text):
        """Back up /etc/fstab, then replace it atomically."""
        fstab = self.host.fstab
        if os.path.exists(fstab):
            self.backup_file = self.tools.backup(fstab)
        handle, temp = tempfile.mkstemp(prefix='.fstab.', dir=os.path.dirname(fstab))
        with os.fdopen(handle, 'w', encoding='utf-8', errors='surrogateescape') as stream:
            stream.write(text)
        if os.path.exists(fstab):
            stat = os.stat(fstab)
            os.chmod(temp, stat.st_mode & 0o7777)
        else:
            os.chmod(temp, 0o644)
        self.tools.atomic_move(temp, fstab)

    def fstab_plan(self, cur, present):
        """New fstab text and the action for it (None when it stays)."""
        text, change = _swap.fstab_update(cur['fstab'], self.path, present, self.params['priority'], paths={self.path, self.real})
        self.diff_fstab = (cur['fstab'], text)
        return text, change

    # -- states -----------------------------------------------------------------------------
    def present(self, cur):
        """Make the file exist with the right size, mode and priority, active and in fstab as asked."""
        priority = self.params['priority']
        if priority is not None and not -1 <= priority <= 32767:
            raise SwapError('Swap priority %d is out of range; use -1 (kernel-assigned) up to 32767.' % priority)
        target = self.wanted_size()
        mount = self.mount()
        problem = _swap.filesystem_refusal(self.path, mount)
        if problem:
            raise SwapError(problem)
        free, reserve = self.disk_space()
        area, stat = cur['area'], cur['stat']
        reason = self.recreate_reason(cur, target)
        cycle = area is not None and reason is None and not self.priority_matches(area)
        if area is not None and (reason is not None or cycle):
            self.check_swapoff(area)
        make_room = self.check_disk(cur, target, mount, free, reserve) if reason else False
        fstab_text, fstab_change = self.fstab_plan(cur, self.params['fstab'])
        if reason:
            self.rebuild(cur, target, mount, make_room)
        else:
            if cycle:
                self.act('swapoff', self.swapoff)
            if stat.st_mode & 0o7777 != 0o600:
                self.act('chmod', os.chmod, self.real, 0o600)
            if (stat.st_uid, stat.st_gid) != (0, 0):
                self.act('chown', os.chown, self.real, 0, 0)
            if area is None or cycle:
                self.act('swapon', self.swapon)
        if fstab_change:
            self.act('fstab_' + fstab_change, self.write_fstab, fstab_text)
        if self.check_mode:
            keeps_area = area is not None and reason is None and not cycle
            return self.predicted(target if reason else stat.st_size, True, area if keeps_area else None, fstab_text)
        return None

    def absent(self, cur):
        """Turn the file off (safely), drop its fstab line and delete it."""
        area, stat = cur['area'], cur['stat']
        if stat is not None and cur['signature'] is None and area is None and stat.st_size and not self.params['force']:
            raise SwapError('%s exists and is not a swap file (no swap signature at byte %d); refusing to delete it. '
                            'Set force=true to delete it anyway.' % (self.path, self.page_size - 10))
        if area is not None:
            self.check_swapoff(area)
        fstab_text, fstab_change = self.fstab_plan(cur, False)
        if area is not None:
            self.act('swapoff', self.swapoff)
        if fstab_change:
            self.act('fstab_' + fstab_change, self.write_fstab, fstab_text)
        if stat is not None:
            self.act('remove', self.remove)
        if self.check_mode:
            return self.predicted(None, False, None, fstab_text)
        return None

    def predicted(self, size, active, area, fstab_text):
        """The state check mode expects after the run, shaped like describe()."""
        priority = self.params['priority']
        if area is not None:
            priority = area['priority']
        elif not active:
            priority = None
        elif priority is None or priority < 0:
            # the kernel gives the next negative priority: one below the lowest of the other areas, -2 for the first
            others = [a['priority'] for a in _swap.parse_proc_swaps(self.host.read(self.host.proc_swaps, missing=''))
                      if a['path'] != self.real and a['priority'] < 0]
            priority = min(others + [-1]) - 1
        return {'size_bytes': size, 'active': active, 'priority': priority,
                'used_bytes': area['used_bytes'] if area else 0,
                'fstab': _swap.fstab_line(fstab_text, {self.path, self.real})}

    def describe(self, cur):
        """The returned/diffed view of a state read by read_state()."""
        area = cur['area']
        return {'size_bytes': cur['stat'].st_size if cur['stat'] is not None else None,
                'active': area is not None,
                'priority': area['priority'] if area else None,
                'used_bytes': area['used_bytes'] if area else 0,
                'fstab': _swap.fstab_line(cur['fstab'], {self.path, self.real})}

    @staticmethod
    def _fingerprint(state):
        """What a failed run must leave as it was: the file (identity, size, times, owner, mode), its area and fstab."""
        stat, area = state['stat'], state['area']
        return ((stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_mode, stat.st_uid, stat.st_gid) if stat else None,
                (area['size_bytes'], area['priority']) if area else None, state['fstab'])

    def changed_after_failure(self):
        """After a failed step: True when the host differs from what this run found (a rebuild that failed and put
        everything back changed nothing)."""
        if not self.acted:
            return False
        try:
            return self.before is None or self._fingerprint(self.read_state()) != self._fingerprint(self.before)
        except (OSError, SwapError):
            return True

    def result(self):
        """Do the work and return the result dict; raise SwapError on a refusal or a failed step (self.actions,
        self.acted and changed_after_failure() then say what was done)."""
        state = self.params['state']
        if state not in ('present', 'absent'):
            raise SwapError('state must be present or absent, not %r.' % state)
        self.check_path(state)
        before = self.before = self.read_state()
        unanswered = list(self.unanswered)
        if not self.check_mode and os.geteuid() != 0 and (state == 'present' or before['stat'] or before['area']):
            raise SwapError('Managing swap file %s needs root; run the task with become: true.' % self.path)
        predicted = self.present(before) if state == 'present' else self.absent(before)
        after = predicted if predicted is not None else self.describe(self.read_state())
        for text in unanswered:
            self.tools.warn(text)
        old = self.describe(before)
        for key in ('size_bytes', 'priority', 'active'):
            self.diff.add(key, old[key], after[key])
        result = dict(after, path=self.path, actions=self.actions, method=self.method, changed=bool(self.actions), unanswered=unanswered)
        if self.backup_file:
            result['backup_file'] = self.backup_file
        if self.want_diff:
            before_view, after_view = self.diff.get_before_after()
            result['diff'] = [{'before_header': self.path, 'after_header': self.path, 'before': before_view, 'after': after_view}]
            if self.diff_fstab is not None:
                result['diff'].append({'before_header': self.host.fstab, 'after_header': self.host.fstab,
                                       'before': self.diff_fstab[0], 'after': self.diff_fstab[1]})
        summary = '%s (%s)' % (self.path, format_size(after['size_bytes'])) if after['size_bytes'] else self.path
        result['msg'] = '%s: %s.' % (summary, ', '.join(self.actions) if self.actions else 'nothing to change')
        return result
