#!/usr/bin/env bash
# Smoke run of `renewgate bench` (not a benchmark: a few seconds and a few hundred objects per
# workload, to keep the command working). Every workload on SQLite, csr-ec and keyfactor-resign on
# PostgreSQL, the console workload on SQLite; then checks that the summary's JSON lines parse and that each run renewed something
# without errors. No timing assertions.
#   RENEWGATE_BIN       binary to run (default ./target/debug/renewgate)
#   BENCH_PG_URL        PostgreSQL server for the bench's scratch database
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RENEWGATE_BIN:-./target/debug/renewgate}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}

# The acme-pebble workload compares the gateway with Pebble (Debian package).
if ! command -v pebble >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pebble >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pebble >/dev/null; }
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q pebble >/dev/null
  fi
fi
PEBBLE=$(command -v pebble)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() {
  local name=$1; shift
  echo "== bench smoke: $name =="
  if ! "$BIN" bench "$@" --pebble "$PEBBLE" >"$out/$name.out" 2>"$out/$name.err"; then
    cat "$out/$name.out"; tail -40 "$out/$name.err"
    echo "FATAL: renewgate bench $* failed" >&2
    exit 1
  fi
  cat "$out/$name.out"
  python3 - "$out/$name.out" "$@" <<'EOF'
import json, sys
path, args = sys.argv[1], sys.argv[2:]
lines = [l for l in open(path).read().splitlines() if l.startswith("{")]
assert lines, "no JSON summary lines"
keys = ["workload", "backend", "clients", "renewals", "errors", "renewals_per_s", "p50_ms", "p90_ms",
        "p99_ms", "raw_crypto_per_s", "ratio", "peak_rss_mb"]
rows = [json.loads(l) for l in lines]
for r in rows:
    missing = [k for k in keys if k not in r]
    assert not missing, f"missing keys {missing} in {r}"
    assert r["renewals"] > 0, f"no renewals: {r}"
    assert r["errors"] == 0, f"errors: {r}"
    assert r["ratio"] > 0 and r["raw_crypto_per_s"] > 0, r
if "--workload" in args:
    wanted = args[args.index("--workload") + 1].split(",")
    assert rows[-1]["workload"] == wanted[-1], f"last line is {rows[-1]['workload']}, not {wanted[-1]}"
print(f"ok: {len(rows)} summary line(s)")
EOF
}

run sqlite-all --duration 3s --objects 200 --clients 4 --backend sqlite
run postgres-csr --duration 3s --objects 200 --clients 4 --backend postgres --database-url "$PG_URL" \
  --workload keyfactor-resign,csr-ec

# The console workload (page latencies, not renewals): a few hundred objects, its own checks.
echo "== bench smoke: sqlite-console =="
if ! "$BIN" bench --workload console --objects 300 --clients 1,2 --backend sqlite >"$out/console.out" 2>"$out/console.err"; then
  cat "$out/console.out"; tail -40 "$out/console.err"
  echo "FATAL: renewgate bench --workload console failed" >&2
  exit 1
fi
cat "$out/console.out"
python3 - "$out/console.out" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]).read().splitlines() if l.startswith("{")]
rows = [r for r in rows if r.get("workload") == "console"]
assert rows, "no console JSON lines"
for r in rows:
    for k in ["measure", "backend", "clients", "requests", "errors", "p50_ms", "p99_ms", "objects", "peak_rss_mb"]:
        assert k in r, f"missing {k} in {r}"
    assert r["errors"] == 0 and r["requests"] > 0, r
names = {r["measure"].split(" ")[0] for r in rows}
want = {"overview-cold", "overview", "inventory-first", "inventory-folder-user1", "inventory-folder-user2",
        "search-serial", "search-thumbprint", "search-dn-prefix", "search-name-prefix", "search-substring",
        "baseline-health", "baseline-venafi-list50"}
assert want <= names, f"missing measures {want - names}"
assert any(n.startswith("inventory-keyset-") for n in names), names
print(f"ok: {len(rows)} console line(s)")
EOF
echo "bench smoke passed"
