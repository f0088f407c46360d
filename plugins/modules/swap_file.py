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
  - A new or resized file is built under a temporary name next to O(path), so a failure never leaves a half-written
    file at O(path).
  - While an old file exists at O(path), the new one is built beside it, made swap and turned on under its temporary
    name before the old one is turned off; it then replaces the old one (the kernel cannot rename a file in use as swap,
    so the new file is off for the rename and turned on again under O(path), while the old file waits under a backup
    name). If any step fails, for example because the kernel refuses the new file, the old file is left as it was,
    still on if it was on, and C(/etc/fstab) is not changed. Only O(force=true) on a disk too small for both files
    deletes the old file first.
author:
  - sutazai.ops maintainers (@sutazai)
extends_documentation_fragment:
  - sutazai.ops.attributes
  - sutazai.ops.attributes.idempotent
attributes:
  check_mode:
    support: full
    details:
      - Check mode writes nothing and runs no command; it leaves every file, its content and its timestamps as they were.
        It reads the swap file's first page (its swap signature) and C(/etc/fstab); run as root, it opens them so that
        not even their access times change.
      - It predicts the actions, the size, the priority the kernel will assign and the fstab line.
      - Whether an existing file with a swap signature is already in use under another name is answered by reading
        only; an area in C(/proc/swaps) of the file's size whose path leads to no file or to another file, here and in
        every other mount namespace with a process, could still be this file. Check mode then says so in RV(unanswered)
        and in a warning, and predicts as if the file were not in use.
  diff_mode:
    support: full
    details:
      - Shows the file (size, priority, active) and C(/etc/fstab) before and after.
  idempotent:
    support: full
    details:
      - A size within page rounding of the file's size counts as the same size. The kernel assigns a negative priority
        when O(priority) is omitted or V(-1); any negative priority then counts as the same.
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
  - Needs root to change anything (use C(become=true)). Check mode works without root, except on an existing file that
    is not in use as swap and that the user cannot read (a swap file is root's with mode V(0600)); there it fails saying so.
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
    - Values are V(swapoff), V(remove), V(create), V(mkswap), V(chmod), V(chown), V(swapon), V(rebuild_dd), V(replace),
      V(fstab_add), V(fstab_update) and V(fstab_remove).
    - When an old file is rebuilt, V(create), V(mkswap) and V(swapon) concern the new file under its temporary name,
      V(swapoff) then turns the old one off and V(replace) puts the new file in its place and turns it on under O(path).
    - On a failure, the actions up to the failed one.
  returned: always
  type: list
  elements: str
  sample: [create, mkswap, swapon, swapoff, replace, fstab_update]
method:
  description: How the file's blocks were allocated; V(null) when no file was created.
  returned: always
  type: str
  sample: fallocate
unanswered:
  description:
    - Questions about the host that could not be answered by reading only, each as a sentence; also given as warnings.
    - Today one kind, an area of C(/proc/swaps) that may be this file in use under a name no process can resolve.
      A real run does not depend on the answer, since the kernel refuses to rename, delete or truncate a swap file in use.
  returned: always
  type: list
  elements: str
  sample: []
backup_file:
  description: The backup of C(/etc/fstab) made before changing it.
  returned: when /etc/fstab was changed (not in check mode)
  type: str
  sample: /etc/fstab.2187.2025-01-01@12:00:00~
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sutazai.ops.plugins.module_utils._swap import SwapError
from ansible_collections.sutazai.ops.plugins.module_utils._swap_file import SwapFile, Tools


def main():
    """Module entry point: the work is done by module_utils/_swap_file.py."""
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
    tools = Tools(run_command=module.run_command, get_bin_path=module.get_bin_path, atomic_move=module.atomic_move,
                  backup=module.backup_local, selinux_context=lambda path: module.set_default_selinux_context(path, False),
                  warn=module.warn)
    swap = SwapFile(module.params, check_mode=module.check_mode, diff=module._diff, tools=tools)  # pylint: disable=protected-access
    try:
        result = swap.result()
    except SwapError as exc:
        module.fail_json(msg=str(exc), path=module.params['path'], changed=swap.changed_after_failure(), actions=swap.actions)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
