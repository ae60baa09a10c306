#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: system packages (when missing)
# and a Python venv with the real client libraries (vcert, pyjks, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v keytool >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v psql >/dev/null || need_apt+=(postgresql-client)
# pebble-challtestsrv answers dns-01 and tls-alpn-01 for the ACME validation tests.
command -v pebble-challtestsrv >/dev/null || need_apt+=(pebble)
# BIND answers and takes RFC 2136 updates for the upstream dns-01 tests; dig reads the zone.
[ -x /usr/sbin/named ] || need_apt+=(bind9)
command -v dig >/dev/null || need_apt+=(dnsutils)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# promtool checks and unit-tests docs/prometheus-alerts.yml. The package also ships a Prometheus
# service: where policy-rc.d allows it (a systemd machine) the install starts it on :9090 (and a
# node exporter on :9100); no test uses those ports, so it is harmless (`systemctl disable --now
# prometheus prometheus-node-exporter` if unwanted). In containers policy-rc.d denies the start.
command -v promtool >/dev/null || need_apt+=(prometheus)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s libpq-dev >/dev/null 2>&1 || need_apt+=(libpq-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# (Re)install when the venv is missing or the requirements changed since the last install.
want=$(sha256sum tests/clients/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -r tests/clients/requirements.txt
  echo "$want" > .venv/.requirements.sha256
fi
