#!/usr/bin/env bash
# Build the `local` image set: the images the stack role deploys when
# stack_image_set is `local` (no registry needed).
#   redis     Debian's redis-server
#   postgres  Debian's PostgreSQL 15 (POSTGRES_USER/PASSWORD/DB as the official image;
#             arguments go to postgres, so `-c shared_buffers=...` takes effect)
#   http      stand-in for qdrant, backend, frontend and agents (/health, /healthz, /readyz)
#   ollama    the Ollama API emulator
# Each image is FROM the Debian base image (testbed/testbed.sh builds it with debootstrap)
# and tagged by a hash of its recipe plus the base's tag, so a changed recipe rebuilds it
# and an unchanged one costs nothing; `<prefix>/<name>:latest` points at the current build.
#
# Usage: images/build.sh [BASE_IMAGE]   (default sutazai-testbed/base:latest)
# Environment: SUTAZAI_IMAGE_PREFIX (default sutazai-testbed), SUTAZAI_BUILD_LOG_DIR (default /tmp)
set -euo pipefail

IMAGES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX="${SUTAZAI_IMAGE_PREFIX:-sutazai-testbed}"
LOG_DIR="${SUTAZAI_BUILD_LOG_DIR:-/tmp}"
BASE="${1:-$PREFIX/base:latest}"

die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

docker image inspect "$BASE" >/dev/null 2>&1 || die "base image $BASE is missing (testbed/testbed.sh builds it)"
# the base's recipe-hash tag (testbed.sh tags it so), so a rebuilt base rebuilds everything on top
base_tag=${BASE##*:}
if [ "$base_tag" = latest ]; then
    base_tag=$(docker image inspect "$BASE" --format '{{range .RepoTags}}{{println .}}{{end}}' |
        sed -n 's/^.*:\([0-9a-f]\{12\}\)$/\1/p' | head -1)
    [ -n "$base_tag" ] || base_tag=$(docker image inspect "$BASE" --format '{{.Id}}')
fi

recipe_hash() {
    local dir=$1; shift
    {
        (cd "$dir" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        printf '%s\n' "$@"
    } | sha256sum | cut -c1-12
}

mkdir -p "$LOG_DIR"
for dir in "$IMAGES_DIR"/*/; do
    name=$(basename "$dir")
    [ -f "$dir/Dockerfile" ] || continue
    tag=$(recipe_hash "$dir" "$base_tag")
    if ! docker image inspect "$PREFIX/$name:$tag" >/dev/null 2>&1; then
        printf '[images] building %s\n' "$PREFIX/$name:$tag"
        DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$BASE" \
            -t "$PREFIX/$name:$tag" "$dir" >"$LOG_DIR/sutazai-build-$name.log" 2>&1 ||
            { tail -30 "$LOG_DIR/sutazai-build-$name.log" >&2; die "building image $name failed"; }
    fi
    docker tag "$PREFIX/$name:$tag" "$PREFIX/$name:latest"
done
