#!/usr/bin/env bash
# Boot and stop the cgroup v2 test VM (built by testbed/vm/build.sh).
#
#   vm.sh start RUN_DIR [VM_DIR]   boot a guest on a fresh qcow2 overlay of VM_DIR's disk (default: the
#                                  cached build, built if missing); wait until root answers on ssh; write
#                                  RUN_DIR/inventory.yml (Ansible), RUN_DIR/ssh_config (`ssh -F ... sutazai-vm`),
#                                  RUN_DIR/port, RUN_DIR/qemu.pid and the serial console to RUN_DIR/console.log
#   vm.sh stop RUN_DIR             end that guest's QEMU (by its pid file) and remove RUN_DIR with its overlay
#
# QEMU runs with software emulation (-accel tcg: KVM does not boot a stock kernel on these machines),
# SUTAZAI_VM_MEMORY MiB of RAM (default 2048) and SUTAZAI_VM_CPUS processors (default 1), and a user-mode
# network that only forwards 127.0.0.1:<free port> to the guest's ssh (restrict=on: the guest reaches nothing).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MEMORY="${SUTAZAI_VM_MEMORY:-2048}"
CPUS="${SUTAZAI_VM_CPUS:-1}"
BOOT_TIMEOUT="${SUTAZAI_VM_BOOT_TIMEOUT:-300}"

die() { printf '[vm] ERROR: %s\n' "$*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local run=$1 vm=${2:-}
    [ -n "$vm" ] || vm=$(bash "$HERE/build.sh" | tail -1)
    [ -f "$vm/disk.img" ] || die "no disk.img in $vm"
    [ ! -e "$run/qemu.pid" ] || die "$run already has a VM (stop it first)"
    mkdir -p "$run"
    run=$(cd "$run" && pwd)
    local disk=(-drive "file=$vm/disk.img,if=virtio,format=raw")
    if [ -z "${SUTAZAI_VM_WRITE_BASE:-}" ]; then
        qemu-img create -q -f qcow2 -b "$vm/disk.img" -F raw "$run/overlay.qcow2"
        disk=(-drive "file=$run/overlay.qcow2,if=virtio,format=qcow2")
    fi
    install -m 0600 "$vm/id_ed25519" "$run/id_ed25519"
    local port
    port=$(free_port)
    echo "$port" >"$run/port"
    qemu-system-x86_64 -accel tcg -m "$MEMORY" -smp "$CPUS" -nodefaults -display none \
        -kernel "$vm/vmlinuz" -initrd "$vm/initrd.img" -append "root=/dev/vda rw console=ttyS0 quiet" \
        "${disk[@]}" \
        -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0 \
        -serial "file:$run/console.log" -pidfile "$run/qemu.pid" -daemonize
    cat >"$run/ssh_config" <<EOF
Host sutazai-vm
    HostName 127.0.0.1
    Port $port
    User root
    IdentityFile $run/id_ed25519
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    ConnectTimeout 10
    ServerAliveInterval 15
EOF
    cat >"$run/inventory.yml" <<EOF
# the cgroup v2 test VM booted by testbed/vm/vm.sh (removed with it)
all:
  hosts:
    sutazai-vm:
      ansible_host: 127.0.0.1
      ansible_port: $port
      ansible_user: root
      ansible_ssh_private_key_file: $run/id_ed25519
      ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes
      ansible_python_interpreter: /usr/bin/python3
EOF
    local deadline=$(($(date +%s) + BOOT_TIMEOUT))
    until ssh -F "$run/ssh_config" -o ConnectTimeout=5 sutazai-vm true 2>/dev/null; do
        if ! kill -0 "$(cat "$run/qemu.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
            tail -20 "$run/console.log" >&2 || true
            die "QEMU exited before the guest answered on ssh"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -20 "$run/console.log" >&2 || true
            die "the guest did not answer on ssh within ${BOOT_TIMEOUT}s (console: $run/console.log)"
        fi
        sleep 2
    done
    # docker.service may still be starting when sshd answers
    ssh -F "$run/ssh_config" sutazai-vm 'for i in $(seq 1 120); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1' ||
        die "the guest's Docker did not come up"
    echo "$run"
}

stop() {
    local run=$1 pid
    [ -d "$run" ] || return 0
    run=$(cd "$run" && pwd)
    if [ -f "$run/qemu.pid" ]; then
        pid=$(cat "$run/qemu.pid")
        # only the QEMU this run directory started (its command line names the run's pid file)
        if [ -n "$pid" ] && grep -qa -- "$run/qemu.pid" "/proc/$pid/cmdline" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 30); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$run"
}

case "${1:-}" in
    start) [ $# -ge 2 ] || die "usage: vm.sh start RUN_DIR [VM_DIR]"; start "$2" "${3:-}" ;;
    stop) [ $# -eq 2 ] || die "usage: vm.sh stop RUN_DIR"; stop "$2" ;;
    *) die "usage: vm.sh start RUN_DIR [VM_DIR] | vm.sh stop RUN_DIR" ;;
esac
