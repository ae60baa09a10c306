# Sourced by the ecosystem CI scripts: starts ./target/debug/renewgate (built by CI before; not
# rebuilt here) on a fresh temp data directory and a free loopback port, SQLite, and stops it on
# exit. Sets GW_URL, GW_DIR, GW_CA, GW_PASSWORD, GW_PID, GW_LOG.
RENEWGATE_BIN=${RENEWGATE_BIN:-./target/debug/renewgate}

gateway_start() {
  [ -x "$RENEWGATE_BIN" ] || { echo "FATAL: $RENEWGATE_BIN is missing: run 'cargo build --all-targets --locked' first" >&2; exit 1; }
  GW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/renewgate-ci.XXXXXX")
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  GW_URL="https://127.0.0.1:$port"
  GW_CA="$GW_DIR/data/ca-bundle.pem"
  GW_LOG="$GW_DIR/gateway.log"
  RENEWGATE_DATA_DIR="$GW_DIR/data" RENEWGATE_BIND="127.0.0.1:$port" RENEWGATE_LOG__LEVEL=${GW_LOG_LEVEL:-warn} \
    "$RENEWGATE_BIN" serve >"$GW_LOG" 2>&1 &
  GW_PID=$!
  trap gateway_stop EXIT
  trap 'exit 143' TERM INT    # the EXIT trap then stops the gateway
  for _ in $(seq 1 600); do
    if ! kill -0 "$GW_PID" 2>/dev/null; then
      echo "FATAL: the gateway exited:" >&2; tail -50 "$GW_LOG" >&2; exit 1
    fi
    if [ -s "$GW_CA" ] && curl -fsS --cacert "$GW_CA" "$GW_URL/health" >/dev/null 2>&1; then
      GW_PASSWORD=$(cat "$GW_DIR/data/initial-admin-password")
      return 0
    fi
    sleep 0.1
  done
  echo "FATAL: the gateway did not answer /health within 60 s" >&2; tail -50 "$GW_LOG" >&2; exit 1
}

gateway_stop() {
  if [ -n "${GW_PID:-}" ] && kill -0 "$GW_PID" 2>/dev/null; then
    kill "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
  fi
  if [ "${KEEP_GATEWAY_DIR:-0}" != 1 ] && [ -n "${GW_DIR:-}" ]; then rm -rf "$GW_DIR"; fi
}

gateway_log_on_failure() {
  echo "---- last lines of the gateway log ($GW_LOG) ----" >&2
  tail -40 "$GW_LOG" >&2 || true
}
