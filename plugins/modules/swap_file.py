# Copyright: sutazai.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create, resize or remove one swap file, safely."""

DOCUMENTATION = r"""
module: swap_file
short_description: Create, resize or remove one swap file, safely
version_added: 0.1.0
description:
  - Creates a swap file with mode V(0600) owned by root, formats it with C(mkswap), turns it on with C(swapon)
    and keeps its line in C(/etc/fstab), so it survives a reboot.
  - Reports C(changed) only when something differs, that is the size (within page rounding), the priority, the fstab line,
    the owner and mode or whether the file is in use as swap.
  - Resizes or removes only this file. It never runs C(swapoff -a), and it turns this file off only when the pages it
    holds fit in C(MemAvailable) with a margin of 10% of RAM (at least 256 MiB); otherwise it fails naming both figures.
  - Refuses, changing nothing, a relative path, a path under C(/proc), C(/sys) or C(/dev), a directory, a filesystem
    that cannot hold swap (tmpfs, overlayfs, NFS and others), an existing file without a swap signature (unless
    O(force=true)), and a size that cannot be parsed, is below 40 KiB or does not fit on the disk.
  - A new or resized file is built under a temporary name next to O(path) and renamed into place, so a failure
    never leaves a half-written file at O(path).
author:
  - sutazai.ops maintainers (@sutazai)
extends_documentation_fragment:
  - sutazai.ops.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the file (size, priority, active) and C(/etc/fstab) before and after.
options:
  path:
    description:
      - Absolute path of the swap file. Its directory must exist.
      - A symbolic link is followed; the file it points to is managed, the fstab line names O(path).
    type: path
    default: /swapfile
  size:
    description:
      - Size of the swap file, as bytes (V(8589934592)) or a number with a binary unit (V(8G), V(512M), V(1.5GiB)).
      - Required when O(state=present). Rounded up to whole pages; at least 40 KiB.
      - A different size on an existing file recreates it (see O(state) for the safety rule).
    type: raw
  state:
    description:
      - V(present) creates the file if needed, recreates it when its size differs, and makes sure it is active.
      - V(absent) turns the file off, removes its fstab line and deletes it.
      - Turning an active file off (to resize it, change its priority or remove it) happens only when the
        pages it holds fit in C(MemAvailable) with the margin; otherwise the module fails and changes nothing.
    type: str
    choices: [present, absent]
    default: present
  priority:
    description:
      - Swap priority, from V(0) to V(32767); higher is used first. V(-1) lets the kernel assign one (negative).
      - Omitted, the priority of an active file is left as it is and a new fstab line has no C(pri=) option.
      - Changing the priority of an active file turns it off and on again, under the same safety rule.
    type: int
  fstab:
    description:
      - Keep a C(swap) line for the file in C(/etc/fstab) so it is turned on at boot.
      - V(false) removes such a line; the file then stays active until the next reboot.
      - C(/etc/fstab) is written atomically, after a backup next to it.
    type: bool
    default: true
  method:
    description:
      - How a new file gets its blocks.
      - V(fallocate) allocates them without writing (instant); V(dd) writes zeros, like C(dd if=/dev/zero).
      - V(auto) uses V(fallocate) on ext4, XFS and btrfs, where a preallocated file is valid swap, and V(dd) elsewhere;
        if C(fallocate) fails, or the kernel refuses the preallocated file at C(swapon), the file is rebuilt with V(dd)
        (action C(rebuild_dd)).
      - A new file the kernel still refuses as swap is removed, and the task fails saying so.
      - On btrfs the file is made NOCOW (C(chattr +C)) before its blocks are allocated; the filesystem must not
        be compressed or span several devices.
    type: str
    choices: [auto, fallocate, dd]
    default: auto
  force:
    description:
      - Allow replacing (O(state=present)) or deleting (O(state=absent)) an existing file at O(path) that has no swap signature.
      - Without it such a file is never touched. An empty file is always replaceable.
      - Also allows a resize that only fits once the old swap file is deleted. Without it the new file is always built beside
        the old one, so a failed resize leaves the old swap file in place.
    type: bool
    default: false
  disk_reserve:
    description:
      - Space that must stay free on the filesystem after the swap file is created.
      - A percentage of the filesystem size (V(10%)) or a size (V(2G), V(0)).
    type: str
    default: '10%'
notes:
  - Needs root to change anything (use C(become=true)); check mode works without.
  - Swap is global to the kernel. The module only ever turns off the file it manages.
  - Uses C(mkswap), C(swapon), C(swapoff), C(fallocate) and, on btrfs, C(chattr) from util-linux and e2fsprogs.
seealso:
  - module: ansible.posix.sysctl
    description: Tune C(vm.swappiness) and C(vm.vfs_cache_pressure); the P(sutazai.ops.swap#role) role does both.
"""

EXAMPLES = r"""
- name: Add an 8 GiB swap file
  sutazai.ops.swap_file:
    path: /swapfile
    size: 8G
  become: true

- name: Resize it to 12 GiB with priority 10 (only if its pages fit in memory)
  sutazai.ops.swap_file:
    path: /swapfile
    size: 12G
    priority: 10
  become: true

- name: Swap file on a large data disk, keeping 5 GiB of it free
  sutazai.ops.swap_file:
    path: /srv/data/swapfile
    size: 16G
    disk_reserve: 5G
  become: true

- name: Remove the swap file and its fstab line
  sutazai.ops.swap_file:
    path: /swapfile
    state: absent
  become: true
"""

RETURN = r"""
path:
  description: The path of the swap file, as given.
  returned: always
  type: str
  sample: /swapfile
size_bytes:
  description: Size of the file in bytes; V(null) when it does not exist.
  returned: always
  type: int
  sample: 8589934592
active:
  description: Whether the file is in use as swap (listed in C(/proc/swaps)).
  returned: always
  type: bool
  sample: true
priority:
  description: Swap priority of the file; V(null) when it is not active. Negative values were assigned by the kernel.
  returned: always
  type: int
  sample: -2
used_bytes:
  description: Bytes of swapped-out pages the file holds.
  returned: always
  type: int
  sample: 0
fstab:
  description: The C(/etc/fstab) line for the file; V(null) when there is none.
  returned: always
  type: str
  sample: /swapfile none swap sw 0 0
actions:
  description:
    - What was done (or would be done in check mode), in order.
    - Values are V(swapoff), V(remove), V(create), V(mkswap), V(chmod), V(chown), V(swapon), V(rebuild_dd), V(fstab_add),
      V(fstab_update) and V(fstab_remove).
  returned: always
  type: list
  elements: str
  sample: [create, mkswap, swapon, fstab_add]
method:
  description: How the file's blocks were allocated; V(null) when no file was created.
  returned: always
  type: str
  sample: fallocate
backup_file:
  description: The backup of C(/etc/fstab) made before changing it.
  returned: when /etc/fstab was changed (not in check mode)
  type: str
  sample: /etc/fstab.2187.2025-01-01@12:00:00~
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.sutazai.ops.plugins.module_utils import _swap
from ansible_collections.sutazai.ops.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.sutazai.ops.plugins.module_utils._units import SizeError, format_size, parse_size

_ZEROS = b'\0' * (1024 * 1024)


class SwapFile:
    """Read the swap file's state, plan the difference, act on it unless in check mode."""

    def __init__(self, module, host=None):
        self.module = module
        self.host = host or _swap.Host()
        self.params = module.params
        self.path = self.params['path']
        self.real = os.path.realpath(self.path)
        self.page_size = os.sysconf('SC_PAGE_SIZE')
        self.actions = []
        self.acted = False
        self.method = None
        self.backup_file = None
        self.diff = DifferenceTracker()
        self.diff_fstab = None

    # -- reading ----------------------------------------------------------------------------
    def read_state(self):
        """The file, its signature, its /proc/swaps entry and fstab, as a dict."""
        try:
            stat = os.stat(self.real)
        except FileNotFoundError:
            stat = None
        signature = None
        if stat is not None and os.path.isfile(self.real) and stat.st_size:
            try:
                signature = _swap.read_signature(self.real, self.page_size)
            except OSError as exc:
                raise _swap.SwapError('Cannot read %s to look for a swap signature: %s.' % (self.path, to_native(exc))) from exc
        area = _swap.find_area(_swap.parse_proc_swaps(self.host.read(self.host.proc_swaps, missing='')), self.real)
        if area is None and signature is not None and _swap.swapfile_busy(self.real):
            raise _swap.SwapError('Swap file %s is in use as swap, but /proc/swaps lists it under another name (it was turned on through '
                                  'a bind mount or in another mount namespace, such as a container); turn it off there first.' % self.path)
        return {'stat': stat, 'signature': signature, 'area': area, 'fstab': self.host.read(self.host.fstab, missing='')}

    def check_path(self, state):
        """Refuse paths that can never be a swap file, before looking any further."""
        problem = _swap.path_refusal(self.path, self.real)
        if problem:
            raise _swap.SwapError(problem)
        if os.path.isdir(self.real):
            raise _swap.SwapError('Swap file path %s is a directory; give the path of a file inside it.' % self.path)
        if os.path.lexists(self.real) and not os.path.isfile(self.real):
            raise _swap.SwapError('Swap file path %s exists and is not a regular file; refusing to touch it.' % self.path)
        directory = os.path.dirname(self.real)
        if state == 'present' and not os.path.isdir(directory):
            raise _swap.SwapError('The directory %s of swap file %s does not exist; create it first.' % (directory, self.path))

    def mount(self):
        """The mount holding the file's directory."""
        mounts = _swap.parse_mountinfo(self.host.read(self.host.mountinfo))
        return _swap.mount_of(os.path.dirname(self.real), mounts)

    def check_swapoff(self, area):
        """Raise the safety refusal when the pages of active `area` do not fit in memory."""
        mem = _swap.parse_meminfo(self.host.read(self.host.meminfo))
        problem = _swap.swapoff_refusal(self.path, area['used_bytes'], mem.get('MemAvailable', mem.get('MemFree', 0)), mem.get('MemTotal', 0))
        if problem:
            raise _swap.SwapError(problem)

    # -- planning ---------------------------------------------------------------------------
    def wanted_size(self):
        """The requested size in bytes, rounded up to pages, or a refusal."""
        try:
            size = parse_size(self.params['size'], 'size')
        except SizeError as exc:
            raise _swap.SwapError('%s.' % exc) from exc
        if size < _swap.MIN_SWAP_BYTES:
            raise _swap.SwapError('Swap file size %s (%d bytes) is below the minimum of 40K (%d bytes).'
                                  % (self.params['size'], size, _swap.MIN_SWAP_BYTES))
        return _swap.round_to_page(size, self.page_size)

    def recreate_reason(self, cur, target):
        """Why the file must be (re)built, or None when the existing one is right."""
        stat, signature = cur['stat'], cur['signature']
        if stat is None:
            return 'missing'
        if signature is None and cur['area'] is None:
            if stat.st_size and not self.params['force']:
                raise _swap.SwapError('%s exists and is not a swap file (no swap signature at byte %d); refusing to overwrite it. '
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
            raise _swap.SwapError(str(exc)) from exc

    def check_disk(self, cur, target, mount, free, reserve):
        """Refuse a size that does not fit; return True when the old file must go first to make room."""
        old = cur['stat'].st_blocks * 512 if cur['stat'] is not None else 0
        problem = _swap.disk_refusal(self.path, target, free + old, reserve, self.params['disk_reserve'])
        if problem:
            raise _swap.SwapError('%s (filesystem %s at %s)' % (problem, mount['fstype'], mount['mount_point']))
        make_room = target > free - reserve
        if make_room and old and cur['signature'] is not None and not self.params['force']:
            raise _swap.SwapError(
                'Resizing %s to %s needs the old file deleted first: %s has %s free and keeps %s in reserve. The new file is '
                'normally built beside the old one so that a failure leaves the old swap in place; free disk space, choose a '
                'smaller size, or set force=true to delete the old file first (a failure then leaves no swap file at %s).'
                % (self.path, format_size(target), mount['mount_point'], format_size(free), format_size(reserve), self.path))
        return make_room

    # -- acting -----------------------------------------------------------------------------
    def act(self, name, function=None, *args):
        """Record action `name` and run it unless in check mode."""
        self.actions.append(name)
        if function is not None and not self.module.check_mode:
            self.acted = True
            function(*args)

    def run(self, args):
        """Run a command (argument list); raise SwapError naming it on failure."""
        command = self.module.get_bin_path(args[0])
        if command is None:
            raise _swap.SwapError('The command %s is not installed (it comes with util-linux or e2fsprogs).' % args[0])
        args = [command] + list(args[1:])
        rc, out, err = self.module.run_command(args)
        if rc != 0:
            raise _swap.SwapError('%s failed (rc %d): %s' % (' '.join(args), rc, (err or out).strip()))
        return out

    def swapon(self):
        """Turn this file on, with the requested priority."""
        priority = self.params['priority']
        self.run(['swapon'] + (['-p', str(priority)] if priority is not None and priority >= 0 else []) + [self.real])

    def swapon_new(self, size, mount):
        """Turn a file this run built on. With method auto, a preallocated file the kernel refuses (an older kernel, a
        compressed or multi-device btrfs) is rebuilt with zeros and tried once more; a file that still fails is removed."""
        try:
            self.swapon()
            return
        except _swap.SwapError as exc:
            if not (self.method == 'fallocate' and self.params['method'] == 'auto'):
                self._remove_refused(exc)
            first = exc
        self.actions.append('rebuild_dd')
        self.create(size, mount, True, False, method='dd')
        try:
            self.swapon()
        except _swap.SwapError as exc:
            self._remove_refused(exc, 'after fallocate was refused too (%s)' % first)

    def _remove_refused(self, exc, detail=''):
        """Delete a new file the kernel would not take as swap, and fail saying so."""
        try:
            os.unlink(self.real)
            fate = 'the new file was removed, so there is no swap file at %s now' % self.path
        except OSError as again:
            fate = 'removing the new file failed too: %s' % again
        raise _swap.SwapError('The kernel refused %s as swap: %s%s; %s.' % (self.path, exc, (' ' + detail) if detail else '', fate)) from exc

    def swapoff(self):
        """Turn exactly this file off (never -a)."""
        self.run(['swapoff', self.real])

    def allocate(self, temp, handle, size, method):
        """Give `temp` its blocks with `method`; auto falls back from fallocate to writing zeros."""
        if method == 'fallocate':
            try:
                self.run(['fallocate', '--length', str(size), temp])
                return method
            except _swap.SwapError:
                if self.params['method'] != 'auto':
                    raise
        remaining = size
        while remaining:
            remaining -= os.write(handle, _ZEROS[:min(remaining, len(_ZEROS))])
        os.fsync(handle)
        return 'dd'

    def create(self, size, mount, make_room, old_active, method=None):
        """Build the file under a temporary name, mkswap it and rename it into place."""
        if make_room and os.path.exists(self.real):
            os.unlink(self.real)
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
            os.rename(temp, self.real)
        except (OSError, _swap.SwapError) as exc:
            if handle is not None:
                os.close(handle)
            if os.path.exists(temp):
                os.unlink(temp)
            message = 'Creating swap file %s failed: %s' % (self.path, to_native(exc))
            if make_room:
                message += ' The old file had been deleted to make room (force=true): there is no swap file at %s now.' % self.path
            if old_active and os.path.exists(self.real):
                try:
                    self.swapon()
                    message += ' The old swap file was turned back on.'
                except _swap.SwapError as again:
                    message += ' Turning the old swap file back on failed too: %s' % again
            raise _swap.SwapError(message) from exc
        self.module.set_default_selinux_context(self.real, False)

    def write_fstab(self, text):
        """Back up /etc/fstab, then replace it atomically."""
        fstab = self.host.fstab
        if os.path.exists(fstab):
            self.backup_file = self.module.backup_local(fstab)
        handle, temp = tempfile.mkstemp(prefix='.fstab.', dir=os.path.dirname(fstab))
        with os.fdopen(handle, 'w', encoding='utf-8', errors='surrogateescape') as stream:
            stream.write(text)
        if os.path.exists(fstab):
            stat = os.stat(fstab)
            os.chmod(temp, stat.st_mode & 0o7777)
        else:
            os.chmod(temp, 0o644)
        self.module.atomic_move(temp, fstab)

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
            raise _swap.SwapError('Swap priority %d is out of range; use -1 (kernel-assigned) up to 32767.' % priority)
        target = self.wanted_size()
        mount = self.mount()
        problem = _swap.filesystem_refusal(self.path, mount)
        if problem:
            raise _swap.SwapError(problem)
        free, reserve = self.disk_space()
        area, stat = cur['area'], cur['stat']
        reason = self.recreate_reason(cur, target)
        need_swapoff = area is not None and (reason is not None or not self.priority_matches(area))
        if need_swapoff:
            self.check_swapoff(area)
        make_room = self.check_disk(cur, target, mount, free, reserve) if reason else False
        fstab_text, fstab_change = self.fstab_plan(cur, self.params['fstab'])
        if need_swapoff:
            self.act('swapoff', self.swapoff)
        if reason:
            self.act('create', self.create, target, mount, make_room, need_swapoff)
            self.act('mkswap')
            if self.module.check_mode:
                self.method = _swap.creation_method(self.params['method'], mount['fstype'])
        else:
            if stat.st_mode & 0o7777 != 0o600:
                self.act('chmod', os.chmod, self.real, 0o600)
            if (stat.st_uid, stat.st_gid) != (0, 0):
                self.act('chown', os.chown, self.real, 0, 0)
        if reason:
            self.act('swapon', self.swapon_new, target, mount)
        elif area is None or need_swapoff:
            self.act('swapon', self.swapon)
        if fstab_change:
            self.act('fstab_' + fstab_change, self.write_fstab, fstab_text)
        if self.module.check_mode:
            return self.predicted(cur, target if reason else stat.st_size, True, None if need_swapoff else area, fstab_text)
        return None

    def absent(self, cur):
        """Turn the file off (safely), drop its fstab line and delete it."""
        area, stat = cur['area'], cur['stat']
        if stat is not None and cur['signature'] is None and area is None and stat.st_size and not self.params['force']:
            raise _swap.SwapError('%s exists and is not a swap file (no swap signature at byte %d); refusing to delete it. '
                                  'Set force=true to delete it anyway.' % (self.path, self.page_size - 10))
        if area is not None:
            self.check_swapoff(area)
        fstab_text, fstab_change = self.fstab_plan(cur, False)
        if area is not None:
            self.act('swapoff', self.swapoff)
        if fstab_change:
            self.act('fstab_' + fstab_change, self.write_fstab, fstab_text)
        if stat is not None:
            self.act('remove', os.unlink, self.real)
        if self.module.check_mode:
            return self.predicted(cur, None, False, None, fstab_text)
        return None

    def predicted(self, cur, size, active, area, fstab_text):
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

    def process(self):
        """Read, plan, act, report: exit_json with the result or fail_json with a refusal."""
        try:
            result = self.result()
        except _swap.SwapError as exc:
            self.module.fail_json(msg=str(exc), path=self.path, changed=self.acted, actions=self.actions)
        self.module.exit_json(**result)

    def result(self):
        """Do the work and return the result dict; raise SwapError on a refusal or a failed step."""
        state = self.params['state']
        self.check_path(state)
        before = self.read_state()
        if not self.module.check_mode and os.geteuid() != 0 and (state == 'present' or before['stat'] or before['area']):
            raise _swap.SwapError('Managing swap file %s needs root; run the task with become: true.' % self.path)
        predicted = self.present(before) if state == 'present' else self.absent(before)
        after = predicted if predicted is not None else self.describe(self.read_state())
        old = self.describe(before)
        for key in ('size_bytes', 'priority', 'active'):
            self.diff.add(key, old[key], after[key])
        result = dict(after, path=self.path, actions=self.actions, method=self.method, changed=bool(self.actions))
        if self.backup_file:
            result['backup_file'] = self.backup_file
        if self.module._diff:  # pylint: disable=protected-access
            before_view, after_view = self.diff.get_before_after()
            result['diff'] = [{'before_header': self.path, 'after_header': self.path, 'before': before_view, 'after': after_view}]
            if self.diff_fstab is not None:
                result['diff'].append({'before_header': self.host.fstab, 'after_header': self.host.fstab,
                                       'before': self.diff_fstab[0], 'after': self.diff_fstab[1]})
        summary = '%s (%s)' % (self.path, format_size(after['size_bytes'])) if after['size_bytes'] else self.path
        result['msg'] = '%s: %s.' % (summary, ', '.join(self.actions) if self.actions else 'nothing to change')
        return result


def main():
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            'path': {'type': 'path', 'default': '/swapfile'},
            'size': {'type': 'raw'},
            'state': {'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
            'priority': {'type': 'int'},
            'fstab': {'type': 'bool', 'default': True},
            'method': {'type': 'str', 'choices': ['auto', 'fallocate', 'dd'], 'default': 'auto'},
            'force': {'type': 'bool', 'default': False},
            'disk_reserve': {'type': 'str', 'default': '10%'},
        },
        required_if=[('state', 'present', ['size'])],
        supports_check_mode=True,
    )
    SwapFile(module).process()


if __name__ == '__main__':
    main()
