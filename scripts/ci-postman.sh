#!/usr/bin/env bash
# The Postman collection as an end-to-end test: newman (package.json, `npm ci`) runs
# postman/renewgate.postman_collection.json with the committed environment, given only baseUrl,
# username and password, against a fresh gateway over HTTPS (its CA bundle through
# --ssl-extra-ca-certs), twice in a row against the same gateway: users re-run collections, so the
# second run must pass too (the collection makes fresh names per run). Any failed assertion fails
# the script, and so does a documented endpoint without a request in the collection
# (postman/check_coverage.py).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
WITH_NODE=1 ./scripts/setup-eco-env.sh
python3 postman/check_coverage.py
. scripts/lib-gateway.sh
gateway_start

for run in 1 2; do
  run_start=$(date +%s)
  if ! node_modules/.bin/newman run postman/renewgate.postman_collection.json \
      --environment postman/renewgate.postman_environment.json \
      --env-var "baseUrl=$GW_URL" --env-var "username=admin" --env-var "password=$GW_PASSWORD" \
      --ssl-extra-ca-certs "$GW_CA" --color off --reporters cli --timeout-request 120000; then
    gateway_log_on_failure
    echo "FATAL: run $run of 2 of the Postman collection failed against the same gateway" >&2
    exit 1
  fi
  echo "Postman collection run $run of 2 passed in $(( $(date +%s) - run_start ))s"
done
echo "Postman collection passed twice against the same gateway in $(( $(date +%s) - start ))s"
