#!/usr/bin/env bash
# release.sh OUT [VERSION]: the release binaries, cross-built with go build.
#
#   agentsso-linux-amd64, agentsso-linux-arm64, agentsso-darwin-arm64
#       CGO_ENABLED=0, static: signing keys in memory or a TPM 2.0 (a device,
#       an swtpm on PATH that agentsso starts, or keys.tpm.device HOST:PORT).
#       PKCS#11 (SoftHSM2, HSMs) loads its module through cgo, so these
#       builds refuse keys.backend pkcs11 with a message saying so.
#   agentsso-linux-amd64-pkcs11 (or -arm64-pkcs11, the build host's arch)
#       CGO_ENABLED=1, built when the host has a C compiler: memory, PKCS#11
#       and TPM. Dynamically linked against the build host's glibc (Debian 12
#       here: glibc 2.36 or later needed), like the container image.
#
# Also SHA256SUMS and BACKENDS (which key backends each binary has).
# VERSION defaults to `git describe`.
set -euo pipefail

out=${1:?usage: release.sh OUT [VERSION]}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=${2:-$(GIT_OPTIONAL_LOCKS=0 git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
ldflags="-s -w -X main.version=$version"

failed=()
build() { # build NAME GOOS GOARCH CGO BACKENDS
  local name=$1 goos=$2 goarch=$3 cgo=$4 backends=$5 t0=$SECONDS
  rm -f "$out/$name"
  if ! (cd "$repo" && CGO_ENABLED=$cgo GOOS=$goos GOARCH=$goarch \
    go build -trimpath -ldflags "$ldflags" -o "$out/$name" ./cmd/agentsso); then
    echo "release: $name ($goos/$goarch) FAILED to build" >&2
    failed+=("$goos/$goarch")
    return
  fi
  printf '%-30s %-13s cgo=%s  keys: %s\n' "$name" "$goos/$goarch" "$cgo" "$backends" >>"$out/BACKENDS"
  echo "release: $name ($goos/$goarch, cgo=$cgo, keys: $backends) in $((SECONDS - t0)) s"
}

: >"$out/BACKENDS"
for target in linux/amd64 linux/arm64 darwin/arm64; do
  build "agentsso-${target%/*}-${target#*/}" "${target%/*}" "${target#*/}" 0 "memory, tpm"
done
hostos=$(go env GOHOSTOS)
hostarch=$(go env GOHOSTARCH)
if [ "$hostos" = linux ] && command -v "$(go env CC)" >/dev/null 2>&1; then
  build "agentsso-linux-$hostarch-pkcs11" linux "$hostarch" 1 "memory, pkcs11, tpm"
else
  echo "release: no C compiler ($(go env CC)): no PKCS#11 build (apt-get install gcc)"
fi

# The binaries for this host run.
for f in "$out"/agentsso-"$hostos"-"$hostarch" "$out"/agentsso-"$hostos"-"$hostarch"-pkcs11; do
  if [ -x "$f" ]; then "$f" --version >/dev/null; fi
done
(cd "$out" && sha256sum agentsso-* >SHA256SUMS)
echo "release: $version in $out"
cat "$out/BACKENDS"
if [ ${#failed[@]} -gt 0 ]; then
  echo "release: ${failed[*]} did not build (see above)" >&2
  exit 1
fi
