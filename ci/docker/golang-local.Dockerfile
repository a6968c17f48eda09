# A local stand-in for golang:1.26-bookworm on a machine without a
# registry: the local Debian base image, gcc and libc6-dev for cgo, the
# host's Go toolchain and the host's CA bundle (so that `go mod download`
# in the build trusts whatever CA this network's HTTPS goes through).
# ci/scripts/docker-setup.sh builds it from a tar context holding go/,
# ca-certificates.crt and this file, and passes it to ../../Dockerfile as
# GO_IMAGE.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eux; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates gcc libc6-dev >/dev/null; \
    rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY go /usr/local/go
ARG STAMP
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.agentsso.golang-local=${STAMP}
WORKDIR /go
