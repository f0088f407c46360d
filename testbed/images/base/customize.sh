#!/usr/bin/env bash
# Finish the debootstrap root filesystem of the base image: a systemd + python3 Debian 12
# that boots as PID 1 in a container (Molecule instances) and is the parent of the service images.
set -euo pipefail
root=$1
rm -f "$root"/var/cache/apt/archives/*.deb
rm -rf "$root"/var/lib/apt/lists/*
printf 'APT::Install-Recommends "0";\nAPT::Install-Suggests "0";\n' >"$root/etc/apt/apt.conf.d/90sutazai-testbed"
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' >"$root/etc/dpkg/dpkg.cfg.d/90sutazai-testbed"
# units that have nothing to do in a container and would leave the system "degraded"
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
    systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount \
    systemd-modules-load.service systemd-firstboot.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
: >"$root/etc/machine-id"
echo testbed >"$root/etc/hostname"
