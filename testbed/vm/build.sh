#!/usr/bin/env bash
# Build the cgroup v2 test VM: a Debian 12 guest (its own kernel, systemd as PID 1, Docker 20.10
# with the systemd cgroup driver on the unified hierarchy) that the `vm` lane boots under QEMU.
#
#   bash testbed/vm/build.sh        prints the directory of the built VM on its last line
#
# The result lives in $SUTAZAI_TESTBED_CACHE/vm/<hash of this recipe>/ (default
# /var/cache/sutazai-testbed/vm/...): disk.img (raw ext4), vmlinuz, initrd.img, the ssh key
# (id_ed25519) the guest's root accepts, and a stamp written last. An unchanged recipe costs
# nothing; a changed one builds a new directory and removes the old ones.
#
# The guest's root file system is made with debootstrap on this machine (its own resolver: the
# guest never gets a DNS address), then booted once to import a small python3 image into the
# guest's Docker (`docker import` of the guest's own python3, no registry, no `docker load`).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT="${SUTAZAI_TESTBED_CACHE:-/var/cache/sutazai-testbed}/vm"
MIRROR="${SUTAZAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="systemd-sysv,udev,kmod,iproute2,dbus,procps,python3,python3-docker,python3-requests,docker.io,apparmor"
PACKAGES="$PACKAGES,openssh-server,linux-image-amd64,initramfs-tools,e2fsprogs"
DISK_SIZE=4G
PYTHON_IMAGE=sutazai-vm/python:1
START=$(date +%s)

log() { printf '[vm-build %3ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { printf '[vm-build] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "building the VM needs root (debootstrap, chroot, apt-get)"

# the recipe: this script, the image tree script and the boot helper (the first boot uses it)
HASH=$( (cat "$HERE/build.sh" "$HERE/vm.sh" "$HERE/python_image.py"; echo "$PACKAGES $DISK_SIZE $PYTHON_IMAGE") | sha256sum | cut -c1-16)
OUT="$CACHE_ROOT/$HASH"
if [ -f "$OUT/stamp" ]; then
    log "cached: $OUT"
    echo "$OUT"
    exit 0
fi

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
if [ "${#need[@]}" -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$CACHE_ROOT"
WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
ROOTFS="$WORK/rootfs"
cleanup() {
    local rc=$?
    for mnt in proc sys dev/pts dev; do
        mountpoint -q "$ROOTFS/$mnt" 2>/dev/null && umount -l "$ROOTFS/$mnt"
    done
    if [ -f "$WORK/run/qemu.pid" ]; then
        bash "$HERE/vm.sh" stop "$WORK/run" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

# the debootstrap stage is cached on its own (keyed by the package list and mirror): the steps below copy it
STAGE="$CACHE_ROOT/debootstrap-$(echo "bookworm $MIRROR $PACKAGES" | sha256sum | cut -c1-16)"
if [ ! -f "$STAGE/.complete" ]; then
    log "debootstrap bookworm ($PACKAGES)"
    rm -rf "$STAGE"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$STAGE" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
        tail -30 "$WORK/debootstrap.log" >&2
        cp "$WORK/debootstrap.log" "$CACHE_ROOT/debootstrap.log"
        rm -rf "$STAGE"
        die "debootstrap failed; see $CACHE_ROOT/debootstrap.log"
    }
    touch "$STAGE/.complete"
fi
log "copying the debootstrap stage"
cp -a "$STAGE" "$ROOTFS"
rm -f "$ROOTFS/.complete"

# --- the guest's configuration --------------------------------------------------
log "configuring the guest"
echo sutazai-vm >"$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 sutazai-vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$ROOTFS/etc/fstab"
# QEMU's user network: a fixed address, a gateway, and no name server (the guest needs no DNS)
mkdir -p "$ROOTFS/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    >"$ROOTFS/etc/systemd/network/20-wired.network"
: >"$ROOTFS/etc/resolv.conf"
chroot "$ROOTFS" systemctl enable systemd-networkd.service ssh.service docker.service >/dev/null 2>&1
# units with nothing to do in a throw-away test guest (time spent at boot under emulation)
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer dpkg-db-backup.timer \
    systemd-networkd-wait-online.service getty@tty1.service; do
    ln -sf /dev/null "$ROOTFS/etc/systemd/system/$unit"
done
# root logs in with the key made here, and only with it
ssh-keygen -q -t ed25519 -N '' -C sutazai-vm -f "$WORK/id_ed25519"
install -d -m 0700 "$ROOTFS/root/.ssh"
install -m 0600 "$WORK/id_ed25519.pub" "$ROOTFS/root/.ssh/authorized_keys"
printf 'PasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n' >"$ROOTFS/etc/ssh/sshd_config.d/sutazai-vm.conf"
: >"$ROOTFS/etc/machine-id"

# the initramfs (debootstrap may configure the kernel before initramfs-tools)
if ! ls "$ROOTFS"/boot/initrd.img-* >/dev/null 2>&1; then
    log "update-initramfs"
    mount -t proc proc "$ROOTFS/proc"
    chroot "$ROOTFS" update-initramfs -c -k all >/dev/null
    umount "$ROOTFS/proc"
fi

# --- a small python3 image for the guest's Docker: python3, its libraries, sh -----
log "python3 image tree"
chroot "$ROOTFS" python3 - /opt/sutazai-vm-python.tar <"$HERE/python_image.py"

rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*
install -m 0644 "$ROOTFS"/boot/vmlinuz-* "$WORK/vmlinuz"
install -m 0644 "$ROOTFS"/boot/initrd.img-* "$WORK/initrd.img"

log "mkfs.ext4 -d (disk $DISK_SIZE)"
mkfs.ext4 -q -F -L sutazai-vm -d "$ROOTFS" "$WORK/disk.img" "$DISK_SIZE"
rm -rf "$ROOTFS"

# --- first boot: the python3 image into the guest's Docker, then a clean shutdown ------
log "first boot (software emulation, ~1 min)"
SUTAZAI_VM_WRITE_BASE=1 bash "$HERE/vm.sh" start "$WORK/run" "$WORK" >&2
SSH=(ssh -F "$WORK/run/ssh_config" sutazai-vm)
"${SSH[@]}" "docker import /opt/sutazai-vm-python.tar $PYTHON_IMAGE >/dev/null && rm -f /opt/sutazai-vm-python.tar \
    && docker run --rm --network none $PYTHON_IMAGE python3 -c 'import json, http.server, ssl, ctypes; print(\"python3 ok\")' \
    && test \"\$(stat -fc %T /sys/fs/cgroup)\" = cgroup2fs && docker info --format '{{.CgroupDriver}} {{.CgroupVersion}}'" >&2 ||
    die "first boot: the guest's Docker could not import or run the python3 image (console: $WORK/run/console.log)"
"${SSH[@]}" "sync; systemctl poweroff" >/dev/null 2>&1 || true
for _ in $(seq 1 120); do
    pid=$(cat "$WORK/run/qemu.pid" 2>/dev/null) || break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done
bash "$HERE/vm.sh" stop "$WORK/run" >/dev/null 2>&1 || true
e2fsck -fy "$WORK/disk.img" >/dev/null 2>&1 || true

# --- publish ---------------------------------------------------------------------
mkdir -p "$OUT"
mv "$WORK/disk.img" "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/id_ed25519" "$WORK/id_ed25519.pub" "$OUT/"
echo "$PYTHON_IMAGE" >"$OUT/python_image"
date -u +%FT%TZ >"$OUT/stamp"
for old in "$CACHE_ROOT"/*/; do
    old=${old%/}
    if [ -f "$old/stamp" ] && [ "$old" != "$OUT" ]; then
        rm -rf "$old"
    elif [ -f "$old/.complete" ] && [ "$old" != "$STAGE" ]; then
        rm -rf "$old"
    fi
done
log "built $OUT"
echo "$OUT"
