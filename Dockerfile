# agentsso: the emulator, the conformance harness and its key custody
# backends (SoftHSM2, swtpm) in one image.
#
#   docker build -t agentsso .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 \
#       -e AGENTSSO_ADMIN_TOKEN=$(openssl rand -hex 16) agentsso
#   docker run --rm --network host -v "$PWD:/work" -w /work agentsso run --target gateway.yaml --out report
#
# Build arguments:
#   GO_IMAGE, RUNTIME_IMAGE  the base images; the defaults are the public
#                            ones. Without a registry, make them locally
#                            (ci/scripts/docker-setup.sh: debootstrap, and
#                            the host's Go toolchain).
#   PREBUILT                 a linux binary in the build context to use
#                            instead of compiling one (it must be built with
#                            cgo for glibc <= bookworm's, as
#                            ci/scripts/docker-setup.sh does); the build
#                            stage then needs no Go: GO_IMAGE may be the
#                            runtime image.
#   VERSION                  what `agentsso --version` and reports say.
# See docs/CI.md.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build: the binary, with cgo (PKCS#11 modules are loaded through cgo) ---
FROM ${GO_IMAGE} AS build
ARG GOPROXY=https://proxy.golang.org,direct
ARG PREBUILT=
WORKDIR /src
COPY go.mod go.sum ./
RUN [ -n "$PREBUILT" ] || go mod download
ARG VERSION=dev
COPY . .
RUN set -eu; \
    if [ -n "$PREBUILT" ]; then \
      install -D -m 0755 "$PREBUILT" /out/agentsso; \
    else \
      CGO_ENABLED=1 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/agentsso ./cmd/agentsso; \
    fi; \
    /out/agentsso --version

# --- runtime: Debian slim with SoftHSM2 and swtpm, a non-root user ---
FROM ${RUNTIME_IMAGE}
# A debootstrapped base has only "bookworm main": add the updates and
# security suites the public image has, then the key custody parts.
RUN set -eux; \
    grep -rqs bookworm-updates /etc/apt/sources.list /etc/apt/sources.list.d \
      || echo 'deb http://deb.debian.org/debian bookworm-updates main' >>/etc/apt/sources.list; \
    grep -rqs bookworm-security /etc/apt/sources.list /etc/apt/sources.list.d \
      || echo 'deb http://deb.debian.org/debian-security bookworm-security main' >>/etc/apt/sources.list; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates softhsm2 swtpm >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    groupadd --system --gid 10001 agentsso; \
    useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/agentsso --no-create-home \
      --shell /usr/sbin/nologin agentsso; \
    install -d -o 10001 -g 10001 -m 0700 /var/lib/agentsso
# Listen on every interface of the container. The admin API off loopback
# requires a token: pass AGENTSSO_ADMIN_TOKEN (or AGENTSSO_ADMIN_TOKEN_FILE)
# to `docker run`; without one, serve stops with a message saying so.
# Keys live in a SoftHSM2 token agentsso creates under the state directory.
ENV AGENTSSO_ADDR=0.0.0.0:8080 \
    AGENTSSO_ADMIN_ADDR=0.0.0.0:8081 \
    AGENTSSO_STATE_DIR=/var/lib/agentsso \
    AGENTSSO_KEYS_BACKEND=pkcs11
USER 10001:10001
WORKDIR /var/lib/agentsso
VOLUME ["/var/lib/agentsso"]
EXPOSE 8080 8081
# Docker 20.10 has no --start-interval: a 1 s interval makes a fresh
# container healthy about a second after start. The probe is agentsso
# itself (GET /healthz), so the image needs no curl.
HEALTHCHECK --interval=1s --timeout=3s --start-period=30s --retries=3 CMD ["agentsso", "healthcheck"]
ENTRYPOINT ["agentsso"]
CMD ["serve"]
# The CI wrapper (docs/CI.md): `agentsso-ci --target FILE` in a job that
# runs in this image.
COPY ci/scripts/agentsso-ci.sh /usr/local/bin/agentsso-ci
# Last, so that a new binary rebuilds only this layer.
COPY --from=build /out/agentsso /usr/local/bin/agentsso
