#!/usr/bin/env bash
# docker-setup.sh: a Docker daemon, a local base image and the agentsso
# image, on a machine where no registry can be reached. Source it (.ci/run
# does) or run it. It is idempotent: a second run with the same sources
# takes a few seconds.
#
#   1. starts dockerd (vfs storage driver) unless `docker info` works;
#   2. creates debian:bookworm-slim with debootstrap unless it exists;
#   3. builds the repository's Dockerfile as $AGENTSSO_IMAGE (agentsso:ci).
#      AGENTSSO_DOCKER_BUILD=prebuilt (the default) compiles on the host and
#      passes the binary as PREBUILT; AGENTSSO_DOCKER_BUILD=source compiles
#      in the build stage, on $AGENTSSO_GO_IMAGE, a local stand-in for
#      golang:1.26-bookworm made from that Debian, gcc and the host's Go;
#   4. exports TESTCONTAINERS_RYUK_DISABLED=true,
#      TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1, AGENTSSO_IMAGE and
#      AGENTSSO_BUILD_ARGS for the tests (ci/testcontainers) and
#      ci/scripts/agentsso-ci.sh.
#
# Elsewhere (a registry in reach) none of this is needed:
# `docker build -t agentsso .` pulls golang:1.26-bookworm and
# debian:bookworm-slim. See docs/CI.md.
#
# A daemon this script started is stopped when the shell that sourced it
# exits, unless AGENTSSO_KEEP_DOCKERD=1.

_agentsso_docker_setup() {
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  local log=${AGENTSSO_DOCKERD_LOG:-/tmp/agentsso-dockerd.log}
  local go_image=${AGENTSSO_GO_IMAGE:-agentsso-golang:local}
  local image=${AGENTSSO_IMAGE:-agentsso:ci}
  local base=debian:bookworm-slim

  if ! command -v docker >/dev/null; then
    echo "docker-setup: no docker command: apt-get install -y docker.io" >&2
    return 1
  fi

  # 1. The daemon.
  if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null; then
      echo "docker-setup: no dockerd: apt-get install -y docker.io" >&2
      return 1
    fi
    echo "docker-setup: starting dockerd (log $log)"
    dockerd --storage-driver=vfs >"$log" 2>&1 &
    AGENTSSO_DOCKERD_PID=$!
    local i
    for i in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      if ! kill -0 "$AGENTSSO_DOCKERD_PID" 2>/dev/null; then
        echo "docker-setup: dockerd exited; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        return 1
      fi
      sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
      echo "docker-setup: dockerd did not answer within 60 s; see $log" >&2
      return 1
    fi
    if [ "${AGENTSSO_KEEP_DOCKERD:-}" != 1 ]; then
      # Chain onto an EXIT trap the caller may have.
      local prev
      prev=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
      # shellcheck disable=SC2064
      trap "${prev:+$prev; }_agentsso_stop_dockerd" EXIT
    fi
  fi

  # 2. The Debian base image, made offline-capable with debootstrap.
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    if ! command -v debootstrap >/dev/null; then
      echo "docker-setup: no debootstrap: apt-get install -y debootstrap" >&2
      return 1
    fi
    local root
    root=$(mktemp -d /tmp/agentsso-rootfs.XXXXXX)
    echo "docker-setup: debootstrap bookworm into $root (about 20 s)"
    if ! debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1; then
      echo "docker-setup: debootstrap failed; see $root.log" >&2
      return 1
    fi
    # Like the public image: updates and security sources, no caches.
    cat >"$root/etc/apt/sources.list" <<'SOURCES'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
      "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/log/apt/*
    chmod 0755 "$root" # mktemp made it 0700: it becomes the image's /
    tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["bash"]' - "$base" >/dev/null
    rm -rf "$root" "$root.log"
    echo "docker-setup: created $base ($(docker image inspect -f '{{.Size}}' "$base" | awk '{printf "%.0f MB", $1/1e6}'))"
  fi

  # 3. The agentsso image from the repository's Dockerfile.
  local version t0 old args
  version=$(GIT_OPTIONAL_LOCKS=0 git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)
  old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  t0=$SECONDS
  case "${AGENTSSO_DOCKER_BUILD:-prebuilt}" in
  prebuilt)
    # The host (Debian bookworm, like the image) compiles with its warm
    # build cache; the Dockerfile copies the binary (PREBUILT) and checks it
    # runs on the base image. A few seconds when little changed.
    echo "docker-setup: go build (cgo) and docker build -t $image --build-arg PREBUILT=dist/docker/agentsso"
    (cd "$repo" && CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=$version" \
      -o dist/docker/agentsso ./cmd/agentsso) || return 1
    args="GO_IMAGE=$base RUNTIME_IMAGE=$base PREBUILT=dist/docker/agentsso VERSION=$version"
    ;;
  source)
    # What a machine with a registry does: compile in the build stage,
    # here on the local stand-in for golang:1.26-bookworm. Minutes on vfs.
    _agentsso_go_image "$repo" "$base" "$go_image" || return 1
    echo "docker-setup: docker build -t $image (GO_IMAGE=$go_image, compiled in the build stage)"
    args="GO_IMAGE=$go_image RUNTIME_IMAGE=$base VERSION=$version"
    ;;
  *)
    echo "docker-setup: AGENTSSO_DOCKER_BUILD must be prebuilt or source" >&2
    return 1
    ;;
  esac
  local kv build_args=()
  for kv in $args; do build_args+=(--build-arg "$kv"); done
  docker build -q --force-rm "${build_args[@]}" -t "$image" "$repo" >/dev/null || return 1
  # The image this build replaced, and build stages older than a day
  # (vfs keeps a full copy per layer).
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  docker image prune -f --filter until=24h >/dev/null 2>&1 || true
  echo "docker-setup: $image ready in $((SECONDS - t0)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"

  # 4. For testcontainers-go, the tests and agentsso-ci.sh.
  export TESTCONTAINERS_RYUK_DISABLED=true
  export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
  export AGENTSSO_IMAGE="$image"
  # How it was built, for the test that builds through testcontainers.
  export AGENTSSO_BUILD_ARGS="$args"
}

# _agentsso_go_image REPO BASE IMAGE creates IMAGE, a local stand-in for
# golang:1.26-bookworm: BASE, gcc for cgo (PKCS#11), the host's Go
# toolchain and CA bundle (HTTPS here may go through a local CA), unless it
# exists for this Go version and bundle.
_agentsso_go_image() {
  local repo=$1 base=$2 go_image=$3
  local goroot gover ca stamp
  goroot=$(go env GOROOT)
  gover=$(go env GOVERSION)
  ca=${AGENTSSO_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  if [ ! -r "$ca" ]; then
    echo "docker-setup: no CA bundle at $ca: apt-get install -y ca-certificates, or set AGENTSSO_CA_BUNDLE" >&2
    return 1
  fi
  stamp="$gover-$(sha256sum "$ca" | cut -c1-12)"
  if [ "$(docker image inspect -f '{{index .Config.Labels "org.agentsso.golang-local"}}' "$go_image" 2>/dev/null)" != "$stamp" ]; then
    echo "docker-setup: creating $go_image ($base + gcc + $gover from $goroot + $ca)"
    local tmp
    tmp=$(mktemp -d /tmp/agentsso-golang-ctx.XXXXXX)
    cp -L "$ca" "$tmp/ca-certificates.crt"
    cp "$repo/ci/docker/golang-local.Dockerfile" "$tmp/"
    tar -c -C "$tmp" ca-certificates.crt golang-local.Dockerfile \
        -C "$(dirname "$goroot")" --transform "s,^$(basename "$goroot")\(/\|\$\),go\1," "$(basename "$goroot")" |
      docker build -q -f golang-local.Dockerfile --build-arg BASE_IMAGE="$base" \
        --build-arg STAMP="$stamp" -t "$go_image" - >/dev/null || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
  fi
}

_agentsso_stop_dockerd() {
  if [ -n "${AGENTSSO_DOCKERD_PID:-}" ] && kill -0 "$AGENTSSO_DOCKERD_PID" 2>/dev/null; then
    echo "docker-setup: stopping dockerd (pid $AGENTSSO_DOCKERD_PID)"
    kill "$AGENTSSO_DOCKERD_PID"
    local i
    for i in $(seq 1 20); do
      kill -0 "$AGENTSSO_DOCKERD_PID" 2>/dev/null || break
      sleep 0.5
    done
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run, not sourced: keep the daemon for the caller, print the exports.
  set -euo pipefail
  AGENTSSO_KEEP_DOCKERD=1 _agentsso_docker_setup
  echo "export TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 AGENTSSO_IMAGE='$AGENTSSO_IMAGE' AGENTSSO_BUILD_ARGS='$AGENTSSO_BUILD_ARGS'"
else
  _agentsso_docker_setup
fi
