#!/usr/bin/env bash
# Runs every test: unit tests, the OpenAPI staleness check, the integration suite over real
# HTTPS against the real binary on SQLite and on PostgreSQL (real clients: vcert, openssl,
# keytool, pyjks), the web console's browser test (headless chromium, axe-core), then the
# ecosystem checks (compose files, Postman collection with newman, generated Python SDK,
# schemathesis). Installs what it needs. Fails loudly if PostgreSQL cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

./scripts/install-build-deps.sh
./scripts/setup-test-env.sh
./scripts/setup-browser-env.sh

# PostgreSQL: the machine's server on 127.0.0.1:5432 (started here if it is installed but down).
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "FATAL: PostgreSQL on 127.0.0.1:5432 is required by the test suite" >&2; exit 1; }

# One debug build serves the unit tests and the integration suite.
cargo build --workspace --all-targets --locked
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked -q
# The core knows no HTTP and the binary no SQL (the one door): both greps must print nothing.
if cargo tree -p renewgate-core -e normal | grep -E 'actix|utoipa-swagger'; then
  echo "FATAL: renewgate-core depends on an HTTP framework" >&2; exit 1
fi
if grep -rnE 'diesel::|schema::' src/; then
  echo "FATAL: SQL outside the core crate (src/ must go through the engine)" >&2; exit 1
fi
# The ACME dialect only translates: its rules and SQL are the core's (crate::acme).
if [ "$(cat src/api/acme/*.rs | wc -l)" -ge 1500 ]; then
  echo "FATAL: src/api/acme/ has grown to 1,500 lines: rules belong in crates/renewgate-core/src/acme" >&2; exit 1
fi
if grep -rnE 'access\.(allows|is_restricted|roots)\(' src/; then
  echo "FATAL: a permission check in the binary: the rule belongs in the core (engine::access, engine::stores)" >&2; exit 1
fi

./target/debug/renewgate openapi > target/openapi.generated.json
if ! diff -q openapi/renewgate.json target/openapi.generated.json >/dev/null; then
  echo "FATAL: openapi/renewgate.json is stale: run 'cargo run -- openapi > openapi/renewgate.json'" >&2
  diff -u openapi/renewgate.json target/openapi.generated.json | head -40 >&2
  exit 1
fi

# The sample alert rules parse and use real series names; their unit tests fire on sample series.
promtool check rules docs/prometheus-alerts.yml
promtool test rules docs/prometheus-alerts.test.yml

for backend in sqlite postgres; do
  echo "== integration suite on $backend =="
  .venv/bin/python -m pytest tests/clients --backend "$backend" -q -p no:cacheprovider
done

# The web console in Debian's headless chromium (Selenium, axe-core) on a fresh gateway: every
# page as the admin and as a user limited to one folder, every form, screenshots under
# target/console-screenshots/.
# PostgreSQL without the screenshots and axe-core (they do not depend on the backend).
echo "== console browser test on sqlite =="
.venv-browser/bin/python -m pytest tests/browser --backend sqlite -q -p no:cacheprovider
echo "== console browser test on postgres =="
.venv-browser/bin/python -m pytest tests/browser --backend postgres --no-evidence -q -p no:cacheprovider

# The ecosystem around the API, each on a fresh gateway from ./target/debug/renewgate (no rebuild).
for check in compose postman sdk schemathesis; do
  echo "== ecosystem: $check =="
  ./scripts/ci-$check.sh
done

# The load benchmark's smoke run (seconds, a few hundred objects): keeps `renewgate bench` working.
echo "== benchmark smoke run =="
./scripts/bench-smoke.sh
echo "all tests passed in $(( $(date +%s) - start ))s"
