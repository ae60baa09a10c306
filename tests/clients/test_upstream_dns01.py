"""The dns-01 solver of upstream issuers, against BIND 9 (Debian `bind9`, `named -g` on a loopback
port, authoritative for a test zone that a TSIG key may update) and Pebble (real validation,
`-dnsserver` pointed at that BIND). The gateway publishes `_acme-challenge` TXT values by RFC 2136
update, waits until the zone's NS servers answer them, answers the challenges and removes exactly
the values it added; `dig` (Debian `dnsutils`) is the independent reader."""
import base64
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest
import requests
from cryptography import x509
from vcert import SCOPE_CM, Authentication, CertificateRequest, VenafiPlatform, venafi_connection

from conftest import Database, Gateway, free_port
from rg_helpers import db_scalar, load_certs, retrieve, sha1_thumbprint, wait_retrieve
from test_upstream_acme import Pebble

ZONE = "rgzone.example"
FOLDER = "\\VED\\Policy\\Dns01"
KEEP = "keep-me-not-ours"


class Bind:
    """named -g on 127.0.0.1:<port>, primary for ZONE, updates allowed with one TSIG key."""

    def __init__(self, tmp):
        self.tmp = tmp
        named = shutil.which("named") or "/usr/sbin/named"
        assert os.path.exists(named), "named is required (Debian package bind9; scripts/setup-test-env.sh installs it)"
        keygen = shutil.which("tsig-keygen") or "/usr/sbin/tsig-keygen"
        self.port = free_port()
        self.key_file = tmp / "rg-tsig.key"
        self.key_file.write_text(subprocess.run([keygen, "-a", "hmac-sha256", "rg-update"], check=True,
                                                capture_output=True, text=True).stdout)
        # A key BIND knows that may not update the zone.
        self.other_key_file = tmp / "rg-other.key"
        self.other_key_file.write_text(subprocess.run([keygen, "-a", "hmac-sha256", "rg-other"], check=True,
                                                      capture_output=True, text=True).stdout)
        (tmp / "zone.db").write_text(f"""$TTL 60
@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. ( 1 60 60 600 60 )
@ IN NS ns1.{ZONE}.
ns1 IN A 127.0.0.1
@ IN A 127.0.0.1
* IN A 127.0.0.1
_acme-challenge.wild IN TXT "{KEEP}"
""")
        (tmp / "named.conf").write_text(f"""include "{self.key_file}";
include "{self.other_key_file}";
options {{ directory "{tmp}"; listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
  pid-file "{tmp}/named.pid"; recursion no; dnssec-validation no; notify no; }};
zone "{ZONE}" {{ type primary; file "{tmp}/zone.db"; allow-update {{ key "rg-update"; }}; }};
""")
        self.log = open(tmp / "named.log", "ab")
        self.proc = subprocess.Popen([named, "-g", "-c", str(tmp / "named.conf")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(100):
            assert self.proc.poll() is None, (tmp / "named.log").read_text()[-3000:]
            if self.txt(f"ns1.{ZONE}", "A") == ["127.0.0.1"]:
                return
            time.sleep(0.1)
        raise AssertionError("named did not start: " + (tmp / "named.log").read_text()[-3000:])

    def txt(self, name, rtype="TXT"):
        r = subprocess.run(["dig", "@127.0.0.1", "-p", str(self.port), "+short", "+time=2", "+tries=1", name, rtype],
                           capture_output=True, text=True, timeout=20)
        return [line.strip().strip('"') for line in r.stdout.splitlines() if line.strip()]

    def challenge_values(self, name):
        return [v for v in self.txt(f"_acme-challenge.{name}") if v != KEEP]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def bind(tmp_path_factory):
    b = Bind(tmp_path_factory.mktemp("bind"))
    yield b
    b.stop()


def add_issuer(gw, pebble, bind, name, key_file=None, extra=()):
    return gw.cli("ca", "add", name, "--acme-directory", pebble.directory, "--ca-bundle", str(pebble.tls_ca),
                  "--solver", "dns-01", "--dns-server", f"127.0.0.1:{bind.port}",
                  "--tsig-key-file", str(key_file or bind.key_file), *extra)


def start(backend, tmp, bind, sleep=False, env=None):
    pebble = Pebble(tmp, dns_port=bind.port, sleep=sleep).start()
    db = Database(backend)
    gw = Gateway(tmp, db, env=env).start()
    add_issuer(gw, pebble, bind, "pebble-dns")
    gw.cli("policy", "set", FOLDER, "ca=pebble-dns")
    return pebble, gw, db


@pytest.fixture(scope="module")
def env(backend, tmp_path_factory, bind):
    pebble, gw, db = start(backend, tmp_path_factory.mktemp("dns01"), bind)
    yield pebble, gw
    gw.stop(kill=True)
    db.drop()
    pebble.stop()


def vcert_conn(gw):
    c = venafi_connection(url=gw.url + "/", user="admin", password=gw.admin_password, platform=VenafiPlatform.TPP,
                          http_request_kwargs={"verify": gw.ca_bundle, "timeout": 180})
    c.get_access_token(Authentication(user="admin", password=gw.admin_password, client_id="vcert-sdk",
                                      scope=SCOPE_CM))
    return c


def dns_names(leaf):
    return set(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.DNSName))


def test_wildcard_and_base_name_request_renew_and_keyfactor_renew(env, bind):
    """vcert requests `*.wild.<zone>` with `wild.<zone>` (two TXT values on one name), renews;
    a Keyfactor classic Renew follows; no `_acme-challenge` value of ours is left, and the record
    that was there before is."""
    pebble, gw = env
    sub = f"w{uuid.uuid4().hex[:6]}.wild.{ZONE}"
    conn = vcert_conn(gw)
    req = CertificateRequest(common_name=sub, san_dns=[sub, f"*.{sub}"], timeout=180)
    conn.request_cert(req, "Dns01")
    first = conn.retrieve_cert(req)
    leaf1 = x509.load_pem_x509_certificate(first.cert.encode())
    assert leaf1.issuer == pebble.intermediate().subject
    assert dns_names(leaf1) == {sub, f"*.{sub}"}
    assert bind.challenge_values(sub) == []
    assert bind.txt(f"_acme-challenge.wild.{ZONE}") == [KEEP], "another record's value is never touched"

    ren = CertificateRequest(cert_id=req.id, timeout=180)
    conn.renew_cert(ren)
    second = conn.retrieve_cert(ren)
    leaf2 = x509.load_pem_x509_certificate(second.cert.encode())
    assert leaf2.serial_number != leaf1.serial_number and dns_names(leaf2) == {sub, f"*.{sub}"}
    assert bind.challenge_values(sub) == []

    s = gw.session(token=False)
    s.headers["Authorization"] = "Basic " + base64.b64encode(f"KEYFACTOR\\admin:{gw.admin_password}".encode()).decode()
    # Renewing a CSR-enrolled certificate re-signs its key: an ACME CA needs a CSR, so Keyfactor's
    # renewal goes through a service-generated object here.
    svc = f"k{uuid.uuid4().hex[:6]}.{ZONE}"
    v = gw.session()
    r = v.post("/vedsdk/Certificates/Request", json={"PolicyDN": FOLDER, "Subject": svc, "KeyAlgorithm": "RSA",
                                                       "KeyBitSize": 2048, "WorkToDoTimeout": 120})
    assert r.status_code == 200 and "CertificateData" in r.json(), r.text
    old = load_certs(base64.b64decode(r.json()["CertificateData"]))[0]
    r = s.post("/CMSApi/CertEnroll/3/Renew", json={"Lookup": {"Type": "Thumbprint", "Thumbprint": sha1_thumbprint(old)}},
               headers={"x-keyfactor-requested-with": "APIClient"})
    assert r.status_code == 200 and r.json()["RequestDisposition"] == "Issued", r.text
    assert bind.challenge_values(svc) == []
    assert bind.txt(f"_acme-challenge.wild.{ZONE}") == [KEEP]


def failure_status(gw, dn):
    s = gw.session()
    deadline = time.time() + 120
    while time.time() < deadline:
        r = retrieve(s, dn)
        if r.status_code != 202:
            return r.json().get("Status", "") + r.json().get("Error", "")
        time.sleep(1)
    raise AssertionError(f"{dn} still pending")


def test_wrong_tsig_secret_and_unserved_zone_name_their_cause(env, bind, tmp_path):
    pebble, gw = env
    wrong = tmp_path / "wrong.key"
    secret = base64.b64encode(os.urandom(32)).decode()
    wrong.write_text(f'key "rg-update" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n')
    add_issuer(gw, pebble, bind, "pebble-badsig", key_file=wrong)
    r = gw.cli("ca", "list")
    assert secret not in r.stdout + r.stderr and secret not in open(gw.log_path).read()
    unknown = tmp_path / "unknown.key"
    unknown.write_text(f'key "rg-nobody" {{ algorithm hmac-sha256; secret "{secret}"; }};\n')
    add_issuer(gw, pebble, bind, "pebble-badkey", key_file=unknown)
    add_issuer(gw, pebble, bind, "pebble-refused", key_file=bind.other_key_file)
    for issuer in ("badsig", "badkey", "refused"):
        gw.cli("policy", "set", f"\\VED\\Policy\\Dns-{issuer}", f"ca=pebble-{issuer}")
    s = gw.session()
    cases = [("\\VED\\Policy\\Dns-badsig", f"b{uuid.uuid4().hex[:6]}.{ZONE}", "dns-01: TSIG refused (BADSIG): "),
             ("\\VED\\Policy\\Dns-badkey", f"k{uuid.uuid4().hex[:6]}.{ZONE}", "dns-01: TSIG refused (BADKEY): "),
             ("\\VED\\Policy\\Dns-refused", f"r{uuid.uuid4().hex[:6]}.{ZONE}", "dns-01: update refused (REFUSED): "),
             (FOLDER, f"n{uuid.uuid4().hex[:6]}.unserved.example", "dns-01: zone not found: ")]
    for folder, cn, cause in cases:
        r = s.post("/vedsdk/Certificates/Request", json={"PolicyDN": folder, "Subject": cn, "KeyAlgorithm": "RSA",
                                                           "KeyBitSize": 2048})
        assert r.status_code == 200, r.text
        status = failure_status(gw, r.json()["CertificateDN"])
        assert f"Post CSR failed with error: {cause}" in status, status
    metrics = requests.get(gw.url + "/metrics", verify=gw.ca_bundle, timeout=30).text
    assert 'renewgate_issuer_failures_total{issuer="pebble-badsig",problem="TSIG refused (BADSIG)"}' in metrics, metrics
    assert 'renewgate_issuer_failures_total{issuer="pebble-dns",problem="zone not found"}' in metrics, metrics


def test_kill9_after_publishing_leaves_no_record(backend, bind, tmp_path):
    """Killed (-9) once its TXT value is in the zone; restarted, the job finishes the order and
    removes the value it remembered."""
    pebble, gw, db = start(backend, tmp_path, bind, sleep=True, env={"RENEWGATE_QUEUE__LEASE_SECS": "3"})
    try:
        s = gw.session()
        cn = f"kill{uuid.uuid4().hex[:6]}.{ZONE}"
        r = s.post("/vedsdk/Certificates/Request", json={"PolicyDN": FOLDER, "Subject": cn, "KeyAlgorithm": "RSA",
                                                           "KeyBitSize": 2048})
        assert r.status_code == 200, r.text
        dn = r.json()["CertificateDN"]
        deadline = time.time() + 60
        while time.time() < deadline and not bind.challenge_values(cn):
            time.sleep(0.1)
        published = bind.challenge_values(cn)
        assert published, "the gateway published its value"
        gw.stop(kill=True)
        assert bind.challenge_values(cn) == published, "the value outlives the killed gateway"
        gw.start()
        r = wait_retrieve(s, dn, timeout=180)
        assert load_certs(base64.b64decode(r.json()["CertificateData"]))[0].issuer == pebble.intermediate().subject
        assert bind.challenge_values(cn) == [], "the resumed job removed what the killed one published"
        assert bind.txt(f"_acme-challenge.wild.{ZONE}") == [KEEP]
    finally:
        gw.stop(kill=True)
        db.drop()
        pebble.stop()


def test_dns01_options_are_checked_and_the_secret_never_shown(env, bind, tmp_path):
    pebble, gw = env
    secret = bind.key_file.read_text().split('secret "')[1].split('"')[0]
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("secret nothing;\n")
    base = ["ca", "add", "x-dns", "--acme-directory", pebble.directory, "--solver", "dns-01"]
    for extra, msg in [([], "--dns-server"),
                       (["--dns-server", f"127.0.0.1:{bind.port}"], "--tsig-key-file"),
                       (["--dns-server", "127.0.0.1", "--tsig-key-file", str(bind.key_file)], "host:port"),
                       (["--dns-server", f"127.0.0.1:{bind.port}", "--tsig-key-file", str(bad_key)], "tsig-keygen"),
                       (["--dns-server", f"127.0.0.1:{bind.port}", "--tsig-key-file", str(bind.key_file),
                         "--propagation-check", "all"], "propagation check")]:
        r = gw.cli(*base, *extra, check=False)
        assert r.returncode != 0 and msg in r.stderr, (extra, r.stderr)
    r = gw.cli(*base, "--dns-server", f"127.0.0.1:{bind.port}", "--tsig-key-file", str(bind.key_file),
               "--zone", ZONE, "--propagation-check", "server")
    cfg = json.loads(db_scalar(gw, "SELECT config FROM issuers WHERE name = 'x-dns'"))
    assert cfg["solver"] == "dns-01" and cfg["dns01"] == {
        "server": f"127.0.0.1:{bind.port}", "tsig_name": "rg-update", "tsig_algorithm": "hmac-sha256",
        "zone": ZONE, "propagation": "server"}, cfg
    assert secret not in r.stdout + r.stderr + json.dumps(cfg) + open(gw.log_path).read()
    assert db_scalar(gw, "SELECT COUNT(*) FROM issuers WHERE name = 'x-dns' AND tsig_secret_enc IS NOT NULL") == "1"
    gw.cli("ca", "update", "x-dns", "--propagation-check", "ns")
    cfg = json.loads(db_scalar(gw, "SELECT config FROM issuers WHERE name = 'x-dns'"))
    assert cfg["dns01"]["propagation"] == "ns" and cfg["dns01"]["zone"] == ZONE
    gw.cli("ca", "remove", "x-dns")
