#!/usr/bin/env bash
# supervise's integration tests drive the server with the official Python MCP
# client (the `mcp` package, 2.x). Idempotent: does nothing when it is
# already importable at a 2.x version.
set -euo pipefail

have_mcp() {
  python3 - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
import mcp.client.streamable_http  # noqa: F401
sys.exit(0 if m.version("mcp").split(".")[0] == "2" else 1)
PY
}

if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip
fi

if have_mcp; then
  exit 0
fi

# Debian's system Python refuses user installs (PEP 668); CI machines are
# throwaway, so install into it anyway there.
python3 -m pip install --quiet --disable-pip-version-check 'mcp>=2,<3' \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'mcp>=2,<3'

have_mcp || { echo "supervise.sh: the Python mcp package is still not importable" >&2; exit 1; }
