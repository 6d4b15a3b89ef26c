#!/usr/bin/env bash
# The e2e test of the base image's pull path
# (tests/tests/e2e/images_base_pull.rs) runs Debian's `docker-registry` on a
# free 127.0.0.1 port with its own storage, and stops it. The package's own
# service (a registry on port 5000 for every interface) is not wanted:
# disabled where an init system would start it.
#
# Idempotent.
set -euo pipefail

if ! command -v docker-registry >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  elif command -v service >/dev/null; then
    service docker-registry stop >/dev/null 2>&1 || true
  fi
fi
echo "docker-registry.sh: $(docker-registry --version 2>/dev/null || echo 'docker-registry installed')"
