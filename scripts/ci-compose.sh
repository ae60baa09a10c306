#!/usr/bin/env bash
# The container files: `docker-compose config` validates docker-compose.yml (no container engine
# runs here), hadolint lints the Dockerfile (.hadolint.yaml), and every RENEWGATE_* variable the
# compose file or the Dockerfile sets must be one the binary reads (scripts/check-compose-env.py
# derives them from src/). A negative control proves the check catches a misspelt name.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
WITH_COMPOSE=1 ./scripts/setup-eco-env.sh

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
docker-compose -f docker-compose.yml config > "$tmp/compose.yml"
echo "docker-compose.yml: valid"

.venv-eco/bin/hadolint --config .hadolint.yaml Dockerfile
echo "Dockerfile: hadolint clean"

.venv-eco/bin/python scripts/check-compose-env.py --dockerfile Dockerfile "$tmp/compose.yml"

# Negative control: RENEWGATE_DATABASE__URL (nested form of a top-level key) is not read.
sed 's/RENEWGATE_DATABASE_URL:/RENEWGATE_DATABASE__URL:/' "$tmp/compose.yml" > "$tmp/bad.yml"
if .venv-eco/bin/python scripts/check-compose-env.py "$tmp/bad.yml" 2>/dev/null; then
  echo "FATAL: the compose variable check accepted RENEWGATE_DATABASE__URL" >&2; exit 1
fi
echo "compose checks passed in $(( $(date +%s) - start ))s"
