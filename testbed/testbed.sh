#!/usr/bin/env bash
# Bring up the offline test bed that `make test` runs on:
#   - Debian's docker.io and debootstrap (apt),
#   - the Docker Compose v2 plugin, taken from Debian trixie's docker-compose package
#     (Debian 12 ships only Compose v1) without adding trixie to the system's sources,
#   - a running dockerd (these machines have no systemd as PID 1),
#   - the Molecule host image (testbed/images/base) and the local image set
#     (images/build.sh) on top of it, each tagged by a hash of its recipe so that a
#     changed recipe rebuilds it and an unchanged one costs nothing.
# Idempotent: a warm run only checks that everything is present.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES_DIR="$ROOT/testbed/images"
CACHE_DIR="${SUTAZAI_TESTBED_CACHE:-/var/cache/sutazai-testbed}"
MIRROR="${SUTAZAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PREFIX="sutazai-testbed"
COMPOSE_PLUGIN=/usr/libexec/docker/cli-plugins/docker-compose
START=$(date +%s)

log() { printf '[testbed %3ss] %s\n' "$(($(date +%s) - START))" "$*"; }
die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "the test bed installs packages and runs dockerd: run it as root"
mkdir -p "$CACHE_DIR"

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Debian packages ---------------------------------------------------------
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
if [ "${#need[@]}" -gt 0 ]; then
    apt_install "${need[@]}"
fi

# --- Compose v2 plugin from Debian trixie --------------------------------------
if [ ! -x "$COMPOSE_PLUGIN" ]; then
    log "fetching the Compose v2 plugin from Debian trixie's docker-compose package"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/archives/partial"
    echo "deb $MIRROR trixie main" >"$work/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null)
    dpkg-deb -x "$work"/docker-compose_*.deb "$work/extract"
    install -D -m 0755 "$work/extract/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_PLUGIN"
    # the newer CLI in /usr/local/bin looks in its own plugin directory too
    mkdir -p /usr/local/lib/docker/cli-plugins
    ln -sf "$COMPOSE_PLUGIN" /usr/local/lib/docker/cli-plugins/docker-compose
    rm -rf "$work"
    trap - EXIT
fi

# --- promtool from Debian's prometheus package (the monitor role's alert rules tests) ---------
# Only the promtool binary is taken from the .deb: installing the package would start a Prometheus server.
if ! command -v promtool >/dev/null 2>&1; then
    log "fetching promtool from Debian's prometheus package"
    [ "$apt_updated" -eq 1 ] || { apt-get update -qq; apt_updated=1; }
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get -o APT::Sandbox::User=root download prometheus >/dev/null)
    dpkg-deb -x "$work"/prometheus_*.deb "$work/extract"
    install -D -m 0755 "$work/extract/usr/bin/promtool" /usr/local/bin/promtool
    rm -rf "$work"
    trap - EXIT
    promtool --version >/dev/null
fi

# --- dockerd -------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    mkdir -p /var/log
    setsid nohup dockerd >/var/log/sutazai-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || die "dockerd did not come up; see /var/log/sutazai-dockerd.log"
fi
docker compose version >/dev/null 2>&1 || die "docker compose v2 is not usable (plugin at $COMPOSE_PLUGIN)"

# --- images ----------------------------------------------------------------------
recipe_hash() {
    # hash of every file of a recipe directory plus extra strings (the parent's tag)
    local dir=$1; shift
    {
        (cd "$dir" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        printf '%s\n' "$@"
    } | sha256sum | cut -c1-12
}

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

# The base: a minimal Debian 12 root filesystem with systemd and python3, made with
# debootstrap (no registry is reachable) and imported as an image.
BASE_PACKAGES="python3,python3-apt,systemd,systemd-sysv,dbus,procps,iproute2,ca-certificates,sudo,curl,util-linux,e2fsprogs"
base_tag=$(recipe_hash "$IMAGES_DIR/base" "$BASE_PACKAGES" "$MIRROR")
if ! image_present "$PREFIX/base:$base_tag"; then
    rootfs="$CACHE_DIR/rootfs-$base_tag"
    if [ ! -f "$rootfs.done" ]; then
        log "debootstrap bookworm ($BASE_PACKAGES)"
        rm -rf "$rootfs"
        mkdir -p "$rootfs"
        debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$rootfs" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 ||
            die "debootstrap failed; see $CACHE_DIR/debootstrap.log"
        bash "$IMAGES_DIR/base/customize.sh" "$rootfs"
        touch "$rootfs.done"
    fi
    log "importing $PREFIX/base:$base_tag"
    tar -C "$rootfs" -c . | docker import \
        --change 'CMD ["/lib/systemd/systemd"]' \
        --change 'ENV container=docker' \
        - "$PREFIX/base:$base_tag" >/dev/null
    rm -rf "$rootfs" "$rootfs.done"
fi
docker tag "$PREFIX/base:$base_tag" "$PREFIX/base:latest"

# The local image set FROM the base (product: the stack role's `local` images): images/build.sh.
SUTAZAI_IMAGE_PREFIX="$PREFIX" SUTAZAI_BUILD_LOG_DIR="$CACHE_DIR" bash "$ROOT/images/build.sh" "$PREFIX/base:$base_tag"

# Test-infrastructure images FROM the base: one directory with a Dockerfile each under
# testbed/images/ (dind: a host with its own Docker engine, for Molecule and integration tests).
for dir in "$IMAGES_DIR"/*/; do
    name=$(basename "$dir")
    [ -f "$dir/Dockerfile" ] || continue
    tag=$(recipe_hash "$dir" "$base_tag")
    if ! image_present "$PREFIX/$name:$tag"; then
        log "building $PREFIX/$name:$tag"
        DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$PREFIX/base:$base_tag" \
            -t "$PREFIX/$name:$tag" "$dir" >"$CACHE_DIR/build-$name.log" 2>&1 ||
            { tail -30 "$CACHE_DIR/build-$name.log" >&2; die "building image $name failed"; }
    fi
    docker tag "$PREFIX/$name:$tag" "$PREFIX/$name:latest"
done

log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version --short | sed 's/^/compose /'), images: $(docker images "$PREFIX/*" --format '{{.Repository}}' | sort -u | tr '\n' ' ')"
