#!/usr/bin/env bash
# Side by side under one external load generator: `cfssl serve` (stateless HTTPS signing of a
# CSR with a P-256 CA: no database, no queue) and Renewgate's Venafi renew (a CSR, WorkToDoTimeout
# 60: the durable path, answered with the new certificate). One `wrk` run each, same threads,
# connections and duration; only 2xx answers count. Prints both rates and their ratio.
# Neither side's settings are changed: Renewgate runs on its embedded default (SQLite, its own CA).
#   RENEWGATE_BIN   the gateway binary (default: target/release/renewgate, built when missing)
#   PEER_DURATION   wrk duration (default 20s)     PEER_CONNECTIONS  (default 64)
#   PEER_THREADS    wrk threads (default 2)        PEER_OBJECTS      objects renewed in turn (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${PEER_DURATION:-20s}
CONNS=${PEER_CONNECTIONS:-64}
THREADS=${PEER_THREADS:-2}
OBJECTS=${PEER_OBJECTS:-2000}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v cfssl >/dev/null || need+=(golang-cfssl)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
BIN=${RENEWGATE_BIN:-target/release/renewgate}
if [ ! -x "$BIN" ]; then
  echo "building $BIN" >&2
  cargo build --release --locked -p renewgate >&2
fi
BIN=$(realpath "$BIN")

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_https() { # URL CAFILE
  for _ in $(seq 1 300); do
    curl -sf --cacert "$2" "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "FATAL: $1 did not answer" >&2; exit 1
}

# One P-256 key and CSR, the same for both servers.
openssl ecparam -name prime256v1 -genkey -noout -out "$work/leaf.key" 2>/dev/null
openssl req -new -key "$work/leaf.key" -subj "/CN=peer.bench.example" \
  -addext "subjectAltName=DNS:peer.bench.example" -out "$work/leaf.csr" 2>/dev/null

# wrk's answer: the rate of 2xx answers.
rate_2xx() { # wrk output file
  python3 - "$1" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
req = int(re.search(r"(\d+) requests in", t).group(1))
secs = re.search(r"requests in ([\d.]+)(m?s|m)", t)
val, unit = float(secs.group(1)), secs.group(2)
secs = val / 1000 if unit == "ms" else val * 60 if unit == "m" else val
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
bad = int(bad.group(1)) if bad else 0
errs = re.search(r"Socket errors: (.*)", t)
print(f"{(req - bad) / secs:.1f} {req} {bad} {errs.group(1) if errs else 'none'}")
EOF
}

# --- cfssl: HTTPS signing with a P-256 CA -----------------------------------------------------
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -subj "/CN=Peer cfssl CA" -days 30 -out "$work/ca.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/tls.key" \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" -days 30 -out "$work/tls.pem" 2>/dev/null
cat > "$work/cfssl-config.json" <<'EOF'
{"signing": {"default": {"expiry": "2160h", "usages": ["digital signature", "server auth", "client auth"]}}}
EOF
cport=$(free_port)
cfssl serve -address 127.0.0.1 -port "$cport" -ca "$work/ca.pem" -ca-key "$work/ca.key" \
  -config "$work/cfssl-config.json" -tls-cert "$work/tls.pem" -tls-key "$work/tls.key" \
  >"$work/cfssl.log" 2>&1 &
pids+=($!)
python3 - "$work/leaf.csr" "$work/cfssl.lua" <<'EOF'
import json, sys
csr = open(sys.argv[1]).read()
body = json.dumps({"certificate_request": csr})
open(sys.argv[2], "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    f"wrk.body = {json.dumps(body)}\n")
EOF
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/tls.pem" -X POST \
    -d "{\"certificate_request\": $(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$work/leaf.csr")}" \
    "https://127.0.0.1:$cport/api/v1/cfssl/sign" || true)
  [ "$code" = 200 ] && break
  sleep 0.2
done
[ "$code" = 200 ] || { cat "$work/cfssl.log"; echo "FATAL: cfssl does not sign" >&2; exit 1; }
echo "== cfssl serve: wrk -t$THREADS -c$CONNS -d$DURATION POST /api/v1/cfssl/sign =="
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$work/cfssl.lua" "https://127.0.0.1:$cport/api/v1/cfssl/sign" \
  | tee "$work/wrk-cfssl.txt"
kill "${pids[0]}" 2>/dev/null || true

# --- Renewgate: Venafi renew on the embedded default ------------------------------------------
export RENEWGATE_DATA_DIR="$work/renewgate"
unset RENEWGATE_CONFIG RENEWGATE_DATABASE_URL
gport=$(free_port)
RENEWGATE_BIND="127.0.0.1:$gport" RENEWGATE_LOG__LEVEL=warn "$BIN" serve >"$work/renewgate.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -f "$RENEWGATE_DATA_DIR/ca-bundle.pem" ] && break; sleep 0.2; done
wait_https "https://127.0.0.1:$gport/health" "$RENEWGATE_DATA_DIR/ca-bundle.pem"
FOLDER='\VED\Policy\Peer'
RENEWGATE_LOG__LEVEL=warn "$BIN" policy set "$FOLDER" key_reuse=true >/dev/null
TOKEN=$(RENEWGATE_LOG__LEVEL=warn "$BIN" token create --user admin --scope certificate:manage | tr -d '[:space:]')
echo "== renewgate: creating $OBJECTS certificate objects =="
python3 - "https://127.0.0.1:$gport" "$TOKEN" "$FOLDER" "$work/leaf.csr" "$OBJECTS" "$THREADS" \
  "$RENEWGATE_DATA_DIR/ca-bundle.pem" "$work/renew.lua" <<'EOF'
import json, ssl, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, token, folder, csr_file, n, threads, bundle, lua = sys.argv[1:9]
n, threads = int(n), int(threads)
csr = open(csr_file).read()
ctx = ssl.create_default_context(cafile=bundle)
def request(i):
    body = {"PolicyDN": folder, "ObjectName": f"peer-{i:06d}.bench.example", "PKCS10": csr,
            "WorkToDoTimeout": 60}
    req = urllib.request.Request(base + "/vedsdk/Certificates/Request", data=json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx) as r:
        answer = json.load(r)
    assert answer.get("CertificateData"), answer
    return answer["CertificateDN"]
with ThreadPoolExecutor(8) as ex:
    dns = list(ex.map(request, range(n)))
# Each wrk thread renews its own share of the objects in turn, so that no object is renewed by
# two connections at once (one renewal per object in flight would refuse the second).
bodies = [json.dumps({"CertificateDN": d, "PKCS10": csr, "WorkToDoTimeout": 60, "Format": "Base64"}) for d in dns]
with open(lua, "w") as f:
    f.write('local bodies = {\n' + ",\n".join(json.dumps(b) for b in bodies) + '\n}\n')
    f.write(f'local threads_n = {threads}\nlocal counter = 0\n')
    f.write('''
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  share = math.floor(#bodies / threads_n)
  first = id * share
  next_i = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer ''' + token + '''"
end
function request()
  local b = bodies[first + (next_i % share) + 1]
  next_i = next_i + 1
  return wrk.format(nil, nil, nil, b)
end
''')
print(f"{len(dns)} objects")
EOF
echo "== renewgate: wrk -t$THREADS -c$CONNS -d$DURATION POST /vedsdk/Certificates/Renew =="
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$work/renew.lua" "https://127.0.0.1:$gport/vedsdk/Certificates/Renew" \
  | tee "$work/wrk-renewgate.txt"

read -r c_rate c_req c_bad c_err < <(rate_2xx "$work/wrk-cfssl.txt")
read -r g_rate g_req g_bad g_err < <(rate_2xx "$work/wrk-renewgate.txt")
echo "cfssl serve:            $c_rate signed/s (2xx; $c_req requests, $c_bad non-2xx, socket errors: $c_err)"
echo "renewgate Venafi renew: $g_rate renewed/s (2xx; $g_req requests, $g_bad non-2xx, socket errors: $g_err)"
python3 -c "import sys; c,g=float(sys.argv[1]),float(sys.argv[2]); print(f'ratio renewgate/cfssl: {g/c:.3f}' if c else 'ratio: cfssl answered nothing')" "$c_rate" "$g_rate"
if [ "$g_bad" != 0 ]; then
  echo "renewgate answered $g_bad requests with a non-2xx status" >&2
  exit 1
fi
