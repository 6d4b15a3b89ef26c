#!/usr/bin/env bash
# Tools every test run needs: git and curl (real clients in integration tests),
# `script` (a pseudo-terminal for the launcher's attached sessions),
# cargo-nextest (the test runner).
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
command -v curl >/dev/null || need+=(curl)
command -v script >/dev/null || need+=(bsdutils)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
