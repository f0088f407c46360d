"""Record the cgroup v1 memory files of a real container under a limited parent cgroup on this host (cgroupfs driver).

    python tests/vm/capture_v1.py [TARGET]      (root; Docker and the test bed's images running)

TARGET defaults to tests/unit/plugins/module_utils/fixtures/cgroup_v1_real. The run makes a parent memory cgroup
(`/sutazai-he-capture`, 512 MiB, swap accounting on), a container of sutazai-testbed/http under it (--memory 256m,
--memory-swap 384m) holding 96 MB and writing 24 MiB of file cache, copies the files the collection reads from the
hierarchy's top, the parent and the container into TARGET/memory/ (the parent saved as `sutazai`), and removes the
container and the parent. The kernel writes the numbers; nothing is edited.
"""

import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TARGET = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'tests', 'unit', 'plugins', 'module_utils', 'fixtures', 'cgroup_v1_real')
HIERARCHY = '/sys/fs/cgroup/memory'
PARENT = 'sutazai-he-capture'
SAVED_AS = 'sutazai'
NAME = 'sutazai-he-capture-c'
FILES = ('memory.usage_in_bytes', 'memory.limit_in_bytes', 'memory.max_usage_in_bytes', 'memory.stat', 'memory.oom_control',
         'memory.failcnt', 'memory.use_hierarchy', 'memory.soft_limit_in_bytes', 'memory.swappiness',
         'memory.memsw.usage_in_bytes', 'memory.memsw.limit_in_bytes', 'memory.memsw.max_usage_in_bytes', 'memory.memsw.failcnt')


def copy(source, target):
    os.makedirs(target, exist_ok=True)
    for name in FILES:
        try:
            with open(os.path.join(source, name), encoding='ascii') as handle:
                text = handle.read()
        except OSError:
            continue
        with open(os.path.join(target, name), 'w', encoding='ascii') as handle:
            handle.write(text)


def main():
    parent_dir = os.path.join(HIERARCHY, PARENT)
    os.makedirs(parent_dir, exist_ok=True)
    with open(os.path.join(parent_dir, 'memory.limit_in_bytes'), 'w', encoding='ascii') as handle:
        handle.write(str(512 << 20))
    try:
        subprocess.run(['docker', 'rm', '-f', NAME], capture_output=True, check=False)
        cid = subprocess.run(['docker', 'run', '-d', '--name', NAME, '--cgroup-parent', '/' + PARENT, '--memory', '256m',
                              '--memory-swap', '384m', '--network', 'none', '-e', 'HOLD_MB=96', 'sutazai-testbed/http:latest'],
                             capture_output=True, text=True, check=True).stdout.strip()
        container_dir = os.path.join(parent_dir, cid)
        deadline = time.time() + 60
        while True:
            with open(os.path.join(container_dir, 'memory.usage_in_bytes'), encoding='ascii') as handle:
                if int(handle.read()) >= 96 * 1000 * 1000:
                    break
            if time.time() > deadline:
                raise SystemExit('the container did not reach 96 MB')
            time.sleep(0.5)
        subprocess.run(['docker', 'exec', NAME, 'python3', '-c', "open('/tmp/cache', 'wb').write(b'x' * (24 << 20))"], check=True)
        time.sleep(1)
        copy(HIERARCHY, os.path.join(TARGET, 'memory'))
        copy(parent_dir, os.path.join(TARGET, 'memory', SAVED_AS))
        copy(container_dir, os.path.join(TARGET, 'memory', SAVED_AS, cid))
        print(cid)
    finally:
        subprocess.run(['docker', 'rm', '-f', NAME], capture_output=True, check=False)
        for _attempt in range(20):
            try:
                os.rmdir(parent_dir)
                break
            except OSError:
                time.sleep(0.5)


if __name__ == '__main__':
    main()
