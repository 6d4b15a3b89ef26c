#!/usr/bin/env bash
# The session e2e test packs a stand-in Claude Code package
# (tests/fixtures/claude-code-standin) with `npm pack`, and installs it into
# the agent image with --claude-code; it needs npm (Debian's nodejs + npm).
# Idempotent: does nothing when npm is already there.
set -euo pipefail
if command -v npm >/dev/null; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
npm --version >/dev/null
