#!/bin/sh
# ExecStartPre of docker.service in a docker-in-docker host. With --cgroupns=host (which systemd
# as PID 1 needs here) the inner engine would put its containers in the outer machine's /docker
# group, BESIDE this host's container, so this host's --memory would not bound them. Point the
# inner engine's default cgroup parent inside this host's own memory cgroup instead:
#   /etc/docker/daemon.json {"cgroup-parent": "<this container's memory cgroup>/dind"}
set -eu
# "4:memory:/docker/<id>" (cgroup v1); systemd may already have moved PID 1 to init.scope
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/1/cgroup)
own=${own%/init.scope}
if [ -z "$own" ] || [ "$own" = / ]; then
    echo "dind-cgroup-parent: PID 1 is in the root memory cgroup: not a container, daemon.json left alone" >&2
    exit 0
fi
mkdir -p /etc/docker
printf '{"cgroup-parent": "%s/dind"}\n' "$own" >/etc/docker/daemon.json.new
mv /etc/docker/daemon.json.new /etc/docker/daemon.json
echo "dind-cgroup-parent: inner containers go under $own/dind"
