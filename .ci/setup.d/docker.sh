#!/usr/bin/env bash
# End-to-end tests (tests/) need a Docker engine and, because the engine may
# have no images and no registry (the tests never pull), debootstrap: the
# launcher makes its Debian base image from the host's configured apt mirror
# and imports it (one to two minutes, once; cached by content hash
# afterwards). Debian's docker-registry is set up by docker-registry.sh.
#
# Idempotent. Installs debootstrap when missing. Installs the Docker engine
# only when none is present; when the engine cannot be started here (no
# init system in a container, no privileges), the e2e tests print why they
# skip — or fail when CLAUDE_BOTTLE_REQUIRE_DOCKER=1.
set -euo pipefail

need=()
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v tar >/dev/null || need+=(tar)
if ! command -v docker >/dev/null && ! command -v dockerd >/dev/null; then
  need+=(docker.io)
fi
# compose/compose.yaml is exercised with Debian's docker-compose (v1).
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# Start the engine if it is installed but not answering (best effort).
if command -v docker >/dev/null && ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null && systemctl start docker >/dev/null 2>&1; then
    :
  elif command -v service >/dev/null && service docker start >/dev/null 2>&1; then
    :
  fi
  for _ in $(seq 1 30); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
if docker info >/dev/null 2>&1; then
  echo "docker.sh: Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
else
  echo "docker.sh: no Docker engine answers; e2e tests will skip (or fail with CLAUDE_BOTTLE_REQUIRE_DOCKER=1)"
fi
