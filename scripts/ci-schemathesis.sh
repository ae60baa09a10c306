#!/usr/bin/env bash
# schemathesis against the OpenAPI document a fresh gateway serves (/openapi.json), authenticated,
# from the committed configuration tests/ecosystem/schemathesis.toml: every operation except the
# ACME ones, 50 examples per operation, the five conformance checks, a 10-minute cap.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
./scripts/setup-eco-env.sh
. scripts/lib-gateway.sh
gateway_start

token() {
  curl -fsS --cacert "$GW_CA" -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$GW_PASSWORD\",\"client_id\":\"schemathesis\",\"scope\":\"$1\"}" \
    "$GW_URL/vedauth/authorize/oauth" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
export RENEWGATE_URL="$GW_URL" RENEWGATE_CA_BUNDLE="$GW_CA"
RENEWGATE_TOKEN=$(token "agent;certificate:manage,revoke;configuration:manage"); export RENEWGATE_TOKEN
RENEWGATE_REVOKE_TOKEN=$(token "certificate"); export RENEWGATE_REVOKE_TOKEN
# The store agents' endpoints need a token bound to a client machine (made by the CLI only).
RENEWGATE_AGENT_TOKEN=$(RENEWGATE_DATA_DIR="$GW_DIR/data" "$RENEWGATE_BIN" agent token create --client-machine fuzz)
export RENEWGATE_AGENT_TOKEN
# A folder and a certificate to find, so that not every generated call meets an empty inventory.
curl -fsS --cacert "$GW_CA" -H "Authorization: Bearer $RENEWGATE_TOKEN" -H 'Content-Type: application/json' -X PUT \
  -d '{"settings":{"domains":["example.com"]}}' "$GW_URL/api/v1/policies?dn=%5CVED%5CPolicy%5CFuzz" >/dev/null
curl -fsS --cacert "$GW_CA" -H "Authorization: Bearer $RENEWGATE_TOKEN" -H 'Content-Type: application/json' \
  -d '{"PolicyDN":"\\VED\\Policy\\Fuzz","Subject":"fuzz.example.com","WorkToDoTimeout":20}' \
  "$GW_URL/vedsdk/certificates/request" >/dev/null

report="$GW_DIR/schemathesis-report"
set +e
timeout 600 .venv-eco/bin/schemathesis --config-file tests/ecosystem/schemathesis.toml --no-color run "$GW_URL/openapi.json" \
  --report junit --report-dir "$report"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  gateway_log_on_failure
  echo "FATAL: schemathesis found problems (exit $rc)" >&2
  exit 1
fi
echo "schemathesis passed in $(( $(date +%s) - start ))s"
