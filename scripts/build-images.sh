#!/usr/bin/env bash
# Build the project's images from their Dockerfiles, unchanged.
#
#   scripts/build-images.sh            # docker when it runs here, else podman
#   TQ_IMAGE_BUILDER=podman scripts/build-images.sh
#
# Images (tags overridable): $IMAGE (broker + operator), $WORKER_IMAGE (worker base) and
# $EXAMPLE_WORKER_IMAGE (examples/worker: the worker base plus the example handlers).
#
# The podman path is for machines without a Docker engine and without a registry (CI here):
#   - `podman build --isolation chroot`: the default OCI runtime cannot start containers in an
#     unprivileged sandbox (crun: setrlimit RLIMIT_NOFILE), chroot isolation runs RUN steps.
#   - The base image cannot be pulled, so a stand-in for the Dockerfiles' `FROM python:3.11-slim`
#     is made from Debian's packages with mmdebstrap (~20 s) and tagged with that name, so the
#     Dockerfiles resolve their FROM line locally. What the stand-in papers over: the official
#     image's python lives in /usr/local/bin (ours in /usr/bin, PATH covers both), and Debian
#     marks its Python EXTERNALLY-MANAGED (the Dockerfiles only pip-install into a venv).
#     It is built once and kept (remove it with `podman rmi python:3.11-slim`).
#   - pip inside a build step needs this machine's certificate bundle and pip configuration:
#     they are mounted read-only at build time only (`-v SRC:DST:ro`), never copied into a layer.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-taskqueue:dev}"
WORKER_IMAGE="${WORKER_IMAGE:-taskqueue-worker:dev}"
EXAMPLE_WORKER_IMAGE="${EXAMPLE_WORKER_IMAGE:-taskqueue-example-worker:dev}"
BASE_IMAGE="docker.io/library/python:3.11-slim"
BASE_SUITE="${TQ_BASE_SUITE:-bookworm}"

builder="${TQ_IMAGE_BUILDER:-}"
if [[ -z "$builder" ]]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    builder=docker
  else
    builder=podman
  fi
fi

if [[ "$builder" == docker ]]; then
  docker build -t "$IMAGE" .
  docker build -f worker-image/Dockerfile -t "$WORKER_IMAGE" .
  docker build --build-arg "WORKER_IMAGE=$WORKER_IMAGE" -t "$EXAMPLE_WORKER_IMAGE" examples/worker
  exit 0
fi

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build-images: $tool is missing (apt-get install podman mmdebstrap)" >&2
    exit 2
  }
done

if ! podman image exists "$BASE_IMAGE"; then
  echo "build-images: making the stand-in base $BASE_IMAGE from Debian $BASE_SUITE" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
    --aptopt='APT::Install-Recommends "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$BASE_SUITE" "$work/base.tar"
  podman import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "CMD [\"python3\"]" \
    "$work/base.tar" "$BASE_IMAGE" >/dev/null
fi

# Build-time only: the machine's CA bundle and pip configuration, read-only.
mounts=()
cert="$(python3 -m pip config get global.cert 2>/dev/null || true)"
cert="${PIP_CERT:-$cert}"
[[ -n "$cert" && -f "$cert" ]] && mounts+=(-v "$cert:$cert:ro")
for conf in /etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf"; do
  [[ -f "$conf" ]] && mounts+=(-v "$conf:/etc/pip.conf:ro") && break
done

build() {
  podman build --isolation chroot --layers "${mounts[@]}" "$@"
}

build -t "$IMAGE" .
build -f worker-image/Dockerfile -t "$WORKER_IMAGE" .
build --build-arg "WORKER_IMAGE=$WORKER_IMAGE" -t "$EXAMPLE_WORKER_IMAGE" examples/worker

for image in "$IMAGE" "$WORKER_IMAGE" "$EXAMPLE_WORKER_IMAGE"; do
  podman image inspect --format "{{.Size}}" "$image" |
    awk -v name="$image" '{ printf "build-images: %s %.1f MB\n", name, $1 / 1e6 }'
done
