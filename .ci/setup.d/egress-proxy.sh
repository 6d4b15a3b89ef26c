#!/usr/bin/env bash
# egress-proxy integration tests drive the proxy with curl, git (clone via
# git http-backend, which ships with git) and Python `requests` as a third
# HTTP stack. curl and git come from 00-base.sh; this adds python3-requests.
set -euo pipefail
if python3 -c 'import requests' >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-requests
fi
# A python3 that is not the system one (pyenv, venv) may still lack it.
if ! python3 -c 'import requests' >/dev/null 2>&1; then
  python3 -m pip install --quiet requests || python3 -m pip install --quiet --break-system-packages requests
fi
python3 -c 'import requests'
