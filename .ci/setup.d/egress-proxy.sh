#!/usr/bin/env bash
# egress-proxy integration tests drive the proxy with real clients: curl and
# git (00-base.sh), Python `requests` and `websocket-client`, Node (Debian's
# nodejs) for uploads, and iproute2 (`ip netns`) for the SSRF test, which
# runs the proxy in a network namespace with private addresses on its
# loopback.
set -euo pipefail
apt_need=()
command -v node >/dev/null || apt_need+=(nodejs)
command -v ip >/dev/null || apt_need+=(iproute2)
py_ok() { python3 -c 'import requests, websocket' >/dev/null 2>&1; }
if ! py_ok; then
  apt_need+=(python3 python3-requests python3-websocket)
fi
if [ ${#apt_need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_need[@]}"
fi
# A python3 that is not the system one (pyenv, venv) may still lack them.
if ! py_ok; then
  python3 -m pip install --quiet requests websocket-client \
    || python3 -m pip install --quiet --break-system-packages requests websocket-client
fi
py_ok
node --version >/dev/null
ip netns list >/dev/null
