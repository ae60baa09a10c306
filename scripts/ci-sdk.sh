#!/usr/bin/env bash
# A generated SDK works: openapi-python-client generates a Python client from the committed
# openapi/renewgate.json (generation warnings fail the check), and tests/ecosystem/sdk_flow.py runs
# a short flow with it against a fresh gateway. A failure means the OpenAPI document is wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
./scripts/setup-eco-env.sh
export PATH="$PWD/.venv-eco/bin:$PATH"   # the generator runs ruff from PATH

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if ! openapi-python-client generate --config tests/ecosystem/openapi-python-client.yaml --path openapi/renewgate.json --output-path "$work/sdk/renewgate_client" \
    --meta none > "$work/generate.log" 2>&1; then
  cat "$work/generate.log" >&2; echo "FATAL: openapi-python-client cannot generate a client" >&2; exit 1
fi
if grep -qiE 'warning|error' "$work/generate.log"; then
  cat "$work/generate.log" >&2; echo "FATAL: openapi-python-client reported problems in the document" >&2; exit 1
fi
echo "generated $(find "$work/sdk" -name '*.py' | wc -l) modules"

. scripts/lib-gateway.sh
gateway_start
trap 'gateway_stop; rm -rf "$work"' EXIT
if ! .venv-eco/bin/python tests/ecosystem/sdk_flow.py "$work/sdk" "$GW_URL" "$GW_CA" "$GW_PASSWORD"; then
  gateway_log_on_failure
  echo "FATAL: the generated client's flow failed" >&2
  exit 1
fi
echo "generated SDK checks passed in $(( $(date +%s) - start ))s"
