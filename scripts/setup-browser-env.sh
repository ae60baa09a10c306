#!/usr/bin/env bash
# Installs what the console's browser test (tests/browser) needs, when missing or changed:
#   Debian's chromium and chromium-driver (headless; Selenium is pointed at /usr/bin/chromium and
#   /usr/bin/chromedriver and never downloads a browser or a driver)
#   .venv-browser (tests/browser/requirements.txt: selenium, pytest, requests, cryptography)
#   node_modules with axe-core (package.json / package-lock.json, `npm ci` by setup-eco-env.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
command -v openssl >/dev/null || need_apt+=(openssl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

want=$(sha256sum tests/browser/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv-browser/bin/python ] || [ "$(cat .venv-browser/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  [ -x .venv-browser/bin/python ] || python3 -m venv .venv-browser
  .venv-browser/bin/pip install -q --upgrade pip >/dev/null
  .venv-browser/bin/pip install -q -r tests/browser/requirements.txt
  echo "$want" > .venv-browser/.requirements.sha256
fi

# axe-core comes with the other npm tools (newman): one lock file, one `npm ci`.
WITH_NODE=1 ./scripts/setup-eco-env.sh
[ -s node_modules/axe-core/axe.min.js ] || { echo "FATAL: node_modules/axe-core/axe.min.js is missing after npm ci" >&2; exit 1; }
