#!/usr/bin/env bash
# The Postman collection as an end-to-end test: newman (package.json, `npm ci`) runs
# postman/renewgate.postman_collection.json with the committed environment, given only baseUrl,
# username and password, against a fresh gateway over HTTPS (its CA bundle through
# --ssl-extra-ca-certs). Any failed assertion fails the script, and so does a documented endpoint
# without a request in the collection (postman/check_coverage.py).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
WITH_NODE=1 ./scripts/setup-eco-env.sh
python3 postman/check_coverage.py
. scripts/lib-gateway.sh
gateway_start

if ! node_modules/.bin/newman run postman/renewgate.postman_collection.json \
    --environment postman/renewgate.postman_environment.json \
    --env-var "baseUrl=$GW_URL" --env-var "username=admin" --env-var "password=$GW_PASSWORD" \
    --ssl-extra-ca-certs "$GW_CA" --color off --reporters cli --timeout-request 120000; then
  gateway_log_on_failure
  echo "FATAL: the Postman collection failed against a fresh gateway" >&2
  exit 1
fi
echo "Postman collection passed in $(( $(date +%s) - start ))s"
