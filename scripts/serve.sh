#!/usr/bin/env bash
# Builds and runs the gateway on its embedded default: SQLite in ./data, CAs created on first
# start, the admin's password in ./data/initial-admin-password (0600). Extra arguments go to
# `renewgate serve` (for example --config renewgate.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-build-deps.sh
exec cargo run --release -- serve "$@"
