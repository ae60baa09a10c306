"""Certificates from an upstream ACME CA: Pebble (Debian package `pebble`) with real http-01
validation. Pebble resolves every name through pebble-challtestsrv (every A query answers
127.0.0.1) and fetches `http://<name>:<httpPort>/.well-known/acme-challenge/<token>`; httpPort is
the gateway's `--http-listen` port, so the gateway's own solver answers. The folder
`\\VED\\Policy\\Upstream` has `ca=pebble`; the vendors' clients (vcert, Keyfactor scripts) do not
know an upstream CA signs."""
import base64
import datetime
import ipaddress
import json
import shutil
import subprocess
import time
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from vcert import CSR_ORIGIN_SERVICE, SCOPE_CM, Authentication, CertificateRequest, KeyType, VenafiPlatform, \
    venafi_connection

from conftest import Database, Gateway, free_port
from rg_helpers import (assert_venafi_error, db_rows, db_scalar, load_certs, make_ca, openssl, public_key_der,
                        retrieve, sha1_thumbprint, wait_retrieve)

FOLDER = "\\VED\\Policy\\Upstream"
ZONE = "Upstream"


def tls_identity(tmp):
    """Pebble's HTTPS certificate (127.0.0.1 and localhost) and the CA the gateway trusts for it."""
    ca_key, ca = make_ca("Pebble TLS Test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path, ca_path = tmp / "pebble-cert.pem", tmp / "pebble-key.pem", tmp / "pebble-tls-ca.pem"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, ca_path


class Pebble:
    """One Pebble on fixed ports (so a restart keeps its URLs; it forgets every account)."""

    def __init__(self, tmp, dns_port, sleep=False):
        self.tmp = tmp
        self.exe = shutil.which("pebble")
        assert self.exe, "pebble is required (Debian package pebble; scripts/setup-test-env.sh installs it)"
        self.cert, self.key, self.tls_ca = tls_identity(tmp)
        self.port, self.mgmt_port, self.http_port = free_port(), free_port(), free_port()
        self.dns_port = dns_port
        self.sleep = sleep
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        self.mgmt = f"https://127.0.0.1:{self.mgmt_port}"
        self.proc = None
        cfg = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(self.cert), "privateKey": str(self.key), "httpPort": self.http_port,
            "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        self.config = tmp / "pebble-config.json"
        self.config.write_text(json.dumps(cfg))

    def start(self):
        env = {"PATH": "/usr/bin:/bin"}
        if not self.sleep:
            env["PEBBLE_VA_NOSLEEP"] = "1"
        self.log = open(self.tmp / "pebble.log", "ab")
        self.proc = subprocess.Popen([self.exe, "-config", str(self.config), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            assert self.proc.poll() is None, (self.tmp / "pebble.log").read_text()[-3000:]
            try:
                if requests.get(self.directory, verify=str(self.tls_ca), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("pebble did not start: " + (self.tmp / "pebble.log").read_text()[-3000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def get(self, path):
        r = requests.get(self.mgmt + path, verify=str(self.tls_ca), timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r

    def root(self):
        return x509.load_pem_x509_certificate(self.get("/roots/0").content)

    def intermediate(self):
        return x509.load_pem_x509_certificate(self.get("/intermediates/0").content)

    def status_of(self, serial):
        r = requests.get(f"{self.mgmt}/cert-status-by-serial/{serial:x}", verify=str(self.tls_ca), timeout=10)
        return r.json().get("Status") if r.status_code == 200 else f"HTTP {r.status_code}"


@pytest.fixture(scope="module")
def dns_port():
    exe = shutil.which("pebble-challtestsrv")
    assert exe, "pebble-challtestsrv is required (Debian package pebble)"
    port = free_port()
    p = subprocess.Popen([exe, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", f"127.0.0.1:{port}",
                          "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    assert p.poll() is None, "pebble-challtestsrv exited"
    yield port
    p.kill()
    p.wait()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory, dns_port):
    p = Pebble(tmp_path_factory.mktemp("pebble"), dns_port).start()
    yield p
    p.stop()


def add_pebble(gw, pebble, name="pebble", extra=()):
    return gw.cli("ca", "add", name, "--acme-directory", pebble.directory, "--ca-bundle", str(pebble.tls_ca),
                  "--solver", "http-01", "--http-listen", f"127.0.0.1:{pebble.http_port}",
                  "--contact", "mailto:pki@example.com", *extra)


def upstream_gateway(backend, tmp, pebble, env=None):
    db = Database(backend)
    gw = Gateway(tmp, db, env=env).start()
    add_pebble(gw, pebble)
    gw.cli("policy", "set", FOLDER, "ca=pebble", "domains=example.com")
    return gw, db


@pytest.fixture(scope="module")
def up_gw(backend, tmp_path_factory, pebble):
    gw, db = upstream_gateway(backend, tmp_path_factory.mktemp("upgw"), pebble)
    yield gw
    gw.stop(kill=True)
    db.drop()


@pytest.fixture(scope="module")
def conn(up_gw):
    c = venafi_connection(url=up_gw.url + "/", user="admin", password=up_gw.admin_password,
                          platform=VenafiPlatform.TPP, http_request_kwargs={"verify": up_gw.ca_bundle, "timeout": 120})
    c.get_access_token(Authentication(user="admin", password=up_gw.admin_password, client_id="vcert-sdk",
                                      scope=SCOPE_CM))
    return c


def verify_to_pebble(tmp, pebble, leaf_pem, chain_pems):
    """openssl verify of the leaf against Pebble's root, with the chain the gateway returned."""
    root = tmp / f"root-{uuid.uuid4().hex[:6]}.pem"
    root.write_bytes(pebble.root().public_bytes(serialization.Encoding.PEM))
    untrusted = tmp / f"chain-{uuid.uuid4().hex[:6]}.pem"
    untrusted.write_text("".join(chain_pems))
    leaf = tmp / f"leaf-{uuid.uuid4().hex[:6]}.pem"
    leaf.write_text(leaf_pem)
    out = openssl("verify", "-CAfile", str(root), "-untrusted", str(untrusted), str(leaf))
    assert b": OK" in out.stdout, out.stdout + out.stderr


def cn_of(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}.example.com"


def test_ca_cli_add_list_update_remove(up_gw, pebble):
    """`ca list` prints `<name>\\t<kind>\\t<status>\\t<directory or ->`; bad options are refused with a
    reason; the EAB key is never printed; `ca remove` is refused while certificates use the issuer."""
    lines = [l.split("\t") for l in up_gw.cli("ca", "list").stdout.splitlines()]
    assert ["issuing", "builtin", "enabled", "-"] in lines
    assert ["issuing-rsa", "builtin", "enabled", "-"] in lines
    up = [l for l in lines if l[0] == "pebble"]
    assert len(up) == 1 and up[0][1] == "acme" and up[0][3] == pebble.directory, lines
    assert all(len(l) == 4 for l in lines), lines

    secret = base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
    r = up_gw.cli("ca", "add", "with-eab", "--acme-directory", "https://acme.example.net/directory",
                  "--eab-kid", "kid-1", "--eab-hmac-key-stdin", "--solver", "none", input=secret + "\n")
    assert secret not in r.stdout + r.stderr
    assert "public" in r.stderr and "Certificate Transparency" in r.stderr, r.stderr
    listed = up_gw.cli("ca", "list").stdout
    assert "with-eab\tacme\tnot-registered\thttps://acme.example.net/directory" in listed, listed
    assert secret not in listed and secret not in open(up_gw.log_path).read()
    sealed = db_scalar(up_gw, "SELECT COUNT(*) FROM issuers WHERE name = 'with-eab' AND eab_hmac_enc IS NOT NULL")
    assert sealed == "1"

    bad = [
        (["ca", "add", "x1", "--acme-directory", "http://acme.example.net/dir", "--solver", "none"], "https://"),
        (["ca", "add", "x2", "--acme-directory", "https://acme.example.net/dir", "--solver", "http-01"],
         "--http-listen"),
        (["ca", "add", "x3", "--acme-directory", "https://acme.example.net/dir", "--solver", "dns-99"], "solver"),
        (["ca", "add", "issuing", "--acme-directory", "https://acme.example.net/dir", "--solver", "none"],
         "already exists"),
        (["ca", "add", "PEBBLE"], "already exists"),  # a built-in CA would shadow the upstream one
        (["ca", "update", "issuing", "--solver", "none"], "built-in"),
        (["ca", "remove", "issuing"], "built-in"),
    ]
    for args, msg in bad:
        r = up_gw.cli(*args, check=False)
        assert r.returncode != 0 and msg in r.stderr, (args, r.returncode, r.stderr)

    r = up_gw.cli("ca", "update", "with-eab", "--contact", "mailto:ops@example.com")
    assert r.returncode == 0
    cfg = json.loads(db_scalar(up_gw, "SELECT config FROM issuers WHERE name = 'with-eab'"))
    assert cfg["contact"] == ["mailto:ops@example.com"] and cfg["eab_kid"] == "kid-1" and cfg["public"] is True
    up_gw.cli("ca", "remove", "with-eab")
    assert "with-eab" not in up_gw.cli("ca", "list").stdout


def test_vcert_request_renew_and_revoke_through_pebble(up_gw, pebble, conn, tmp_path):
    """vcert requests and renews in a folder with ca=pebble; the certificates chain to Pebble's
    root; a revocation here is carried to Pebble by a durable job."""
    cn = cn_of("up")
    req = CertificateRequest(common_name=cn, san_dns=[cn, "www." + cn], timeout=120)
    conn.request_cert(req, ZONE)
    first = conn.retrieve_cert(req)
    leaf1 = x509.load_pem_x509_certificate(first.cert.encode())
    assert leaf1.issuer == pebble.intermediate().subject
    assert public_key_der(leaf1) == public_key_der(req.private_key)
    sans = leaf1.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert set(sans) == {cn, "www." + cn}
    verify_to_pebble(tmp_path, pebble, first.cert, first.chain)

    ren = CertificateRequest(cert_id=req.id, timeout=120)
    conn.renew_cert(ren)
    second = conn.retrieve_cert(ren)
    leaf2 = x509.load_pem_x509_certificate(second.cert.encode())
    assert leaf2.serial_number != leaf1.serial_number
    assert leaf2.issuer == pebble.intermediate().subject
    verify_to_pebble(tmp_path, pebble, second.cert, second.chain)
    assert pebble.status_of(leaf2.serial_number) == "Valid"

    s = up_gw.session()
    r = s.post("/vedsdk/Certificates/Revoke", json={"CertificateDN": req.id, "Reason": 4, "Comments": "rotated"})
    assert r.status_code == 200 and r.json()["Success"] is True, r.text
    deadline = time.time() + 60
    while time.time() < deadline and pebble.status_of(leaf2.serial_number) != "Revoked":
        time.sleep(0.5)
    assert pebble.status_of(leaf2.serial_number) == "Revoked", up_gw.logs()[-3000:]
    assert pebble.status_of(leaf1.serial_number) == "Valid"
    rows = db_rows(up_gw, "SELECT state FROM jobs WHERE kind = 'upstream-revoke'")
    assert rows == [("done",)], rows


def test_keyfactor_classic_renew_through_pebble(up_gw, pebble, conn):
    """A service-generated certificate of the Pebble folder renewed by a classic Keyfactor script
    (CertEnroll/3/Renew by thumbprint): the new certificate comes from Pebble, for the same key
    type, and Keyfactor shows the issuer's name."""
    cn = cn_of("kf")
    req = CertificateRequest(common_name=cn, san_dns=[cn], csr_origin=CSR_ORIGIN_SERVICE,
                             key_type=KeyType(KeyType.RSA, 2048), include_private_key=True,
                             key_password="Kf-Passw0rd!2026", timeout=120)
    conn.request_cert(req, ZONE)
    got = conn.retrieve_cert(req)
    leaf = x509.load_pem_x509_certificate(got.cert.encode())
    assert leaf.issuer == pebble.intermediate().subject
    s = up_gw.session(token=False)
    s.headers["Authorization"] = "Basic " + base64.b64encode(f"KEYFACTOR\\admin:{up_gw.admin_password}".encode()).decode()
    r = s.post("/CMSApi/CertEnroll/3/Renew", json={"Lookup": {"Type": "Thumbprint", "Thumbprint": sha1_thumbprint(leaf)}},
               headers={"x-keyfactor-requested-with": "APIClient"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["RequestDisposition"] == "Issued", body
    info = s.get("/KeyfactorAPI/Certificates", params={"pq.queryString": f'Thumbprint -eq "{body["Thumbprint"]}"'},
                 headers={"x-keyfactor-api-version": "1"}).json()
    assert len(info) == 1 and info[0]["CertificateAuthorityName"] == "pebble", info
    new = x509.load_der_x509_certificate(base64.b64decode(
        s.get(f"/KeyfactorAPI/Certificates/{info[0]['Id']}", headers={"x-keyfactor-api-version": "1"})
        .json()["ContentBytes"]))
    assert new.issuer == pebble.intermediate().subject
    assert new.serial_number != leaf.serial_number
    assert public_key_der(new) != public_key_der(leaf), "a service-generated renewal gets a new key"


def test_public_issuer_needs_a_domains_policy_and_refuses_underscores(up_gw, pebble):
    """An issuer marked public is refused for a folder without a domains policy, and names a public
    CA refuses never reach it."""
    add_pebble(up_gw, pebble, name="pebble-public", extra=("--public",))
    up_gw.cli("policy", "set", "\\VED\\Policy\\Public", "ca=pebble-public")
    s = up_gw.session()
    body = {"PolicyDN": "\\VED\\Policy\\Public", "Subject": cn_of("pub"), "KeyAlgorithm": "RSA", "KeyBitSize": 2048}
    r = s.post("/vedsdk/Certificates/Request", json=body)
    assert_venafi_error(r, 400, contains="must restrict its domains")
    up_gw.cli("policy", "set", "\\VED\\Policy\\Public", "domains=example.com")
    bad = f"bad_name.{uuid.uuid4().hex[:6]}.example.com"
    r = s.post("/vedsdk/Certificates/Request", json={**body, "Subject": bad,
                                                      "SubjectAltNames": [{"Type": 2, "Name": bad}]})
    assert_venafi_error(r, 400, contains="underscore")


def test_pebble_down_then_back(backend, tmp_path, dns_port):
    """With Pebble down a Request waits its WorkToDoTimeout, answers 202, and Retrieve reports
    `Post CSR failed with error: …`. Pebble restarted forgets every account: Reset and a new
    Request succeed (the gateway registers again on accountDoesNotExist)."""
    pebble = Pebble(tmp_path, dns_port).start()
    gw, db = upstream_gateway(backend, tmp_path, pebble)
    try:
        s = gw.session()
        cn = cn_of("down")
        first = s.post("/vedsdk/Certificates/Request",
                       json={"PolicyDN": FOLDER, "Subject": cn, "KeyAlgorithm": "RSA", "KeyBitSize": 2048,
                             "WorkToDoTimeout": 60})
        assert first.status_code == 200 and "CertificateData" in first.json(), first.text
        account_before = db_scalar(gw, "SELECT account_url FROM issuers WHERE name = 'pebble'")
        assert account_before.startswith("https://127.0.0.1:")

        pebble.stop()
        # Certificates/Request answers 200 with the DN whatever happens within WorkToDoTimeout
        # (TPP's contract: CertificateData only when issued in time)…
        cn2 = cn_of("down2")
        r = s.post("/vedsdk/Certificates/Request",
                   json={"PolicyDN": FOLDER, "Subject": cn2, "KeyAlgorithm": "RSA", "KeyBitSize": 2048,
                         "WorkToDoTimeout": 10})
        assert r.status_code == 200 and "CertificateData" not in r.json(), r.text
        dn = f"{FOLDER}\\{cn2}"
        # …and Certificates/Renew answers 202 when the certificate is not issued within it.
        r = s.post("/vedsdk/Certificates/Renew",
                   json={"CertificateDN": f"{FOLDER}\\{cn}", "WorkToDoTimeout": 1})
        assert r.status_code == 202, r.text
        for target in (dn, f"{FOLDER}\\{cn}"):
            deadline = time.time() + 90
            while time.time() < deadline:
                r = retrieve(s, target)
                if r.status_code != 202:
                    break
                time.sleep(1)
            status = r.json().get("Status", "") + r.json().get("Error", "")
            assert "Post CSR failed with error: " in status and "upstream CA cannot be reached" in status, r.text
        assert "failing" in gw.cli("ca", "list").stdout
        metrics = requests.get(gw.url + "/metrics", verify=gw.ca_bundle, timeout=30).text
        assert 'renewgate_issuer_duration_seconds_count{issuer="pebble"} 1' in metrics, metrics
        failures = [l for l in metrics.splitlines()
                    if l.startswith('renewgate_issuer_failures_total{issuer="pebble",problem="unreachable"}')]
        assert failures and int(failures[0].split()[-1]) >= 3, metrics

        pebble.start()
        r = s.post("/vedsdk/Certificates/Reset", json={"CertificateDN": dn, "Restart": True})
        assert r.status_code == 200, r.text
        deadline = time.time() + 90
        while time.time() < deadline:
            r = retrieve(s, dn)
            if r.status_code == 200:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        leaf = load_certs(base64.b64decode(r.json()["CertificateData"]))[0]
        assert leaf.issuer == pebble.intermediate().subject
        account_after = db_scalar(gw, "SELECT account_url FROM issuers WHERE name = 'pebble'")
        assert account_after != account_before, "registered again with the restarted CA"
        cn3 = cn_of("back")
        r = s.post("/vedsdk/Certificates/Request",
                   json={"PolicyDN": FOLDER, "Subject": cn3, "KeyAlgorithm": "RSA", "KeyBitSize": 2048,
                         "WorkToDoTimeout": 60})
        assert r.status_code == 200 and "CertificateData" in r.json(), r.text
        assert "registered" in gw.cli("ca", "list").stdout
    finally:
        gw.stop(kill=True)
        db.drop()
        pebble.stop()


def test_kill9_during_an_upstream_order_completes_that_order(backend, tmp_path, dns_port):
    """The gateway is killed (-9) while Pebble validates (Pebble sleeps before validating here);
    after restart the job continues the order it placed: one order URL, one certificate."""
    pebble = Pebble(tmp_path, dns_port, sleep=True).start()
    gw, db = upstream_gateway(backend, tmp_path, pebble, env={"RENEWGATE_QUEUE__LEASE_SECS": "3"})
    try:
        s = gw.session()
        for attempt in range(4):
            cn = cn_of(f"kill{attempt}")
            r = s.post("/vedsdk/Certificates/Request",
                       json={"PolicyDN": FOLDER, "Subject": cn, "KeyAlgorithm": "RSA", "KeyBitSize": 2048,
                             "WorkToDoTimeout": 0})
            assert r.status_code in (200, 202), r.text
            dn = f"{FOLDER}\\{cn}"
            oid = db_scalar(gw, f"SELECT id FROM cert_objects WHERE name = '{cn}'")
            order_url = None
            deadline = time.time() + 30
            while time.time() < deadline and not order_url:
                state = db_scalar(gw, f"SELECT COALESCE(issuer_state, '-') FROM jobs WHERE object_id = {oid}")
                order_url = None if state == "-" else json.loads(state)["order"]
                time.sleep(0.05)
            assert order_url and "/my-order/" in order_url, order_url
            done = db_scalar(gw, f"SELECT state FROM jobs WHERE object_id = {oid}")
            gw.stop(kill=True)
            if done == "done":
                gw.start()
                continue  # Pebble was quick this time: try again
            gw.start()
            wait_retrieve(s, dn, timeout=120)
            assert db_scalar(gw, f"SELECT COUNT(*) FROM certificates WHERE object_id = {oid}") == "1"
            invalid = [line for line in open(gw.log_path).read().splitlines()
                       if "order is invalid; placing another" in line and order_url in line]
            if invalid:
                # Pebble validated while the gateway (and its http-01 listener) was down: that
                # order failed for real and a new one was placed. Try again.
                continue
            assert json.loads(db_scalar(gw, f"SELECT issuer_state FROM jobs WHERE object_id = {oid}"))["order"] == order_url
            assert db_scalar(gw, f"SELECT COUNT(*) FROM certificates WHERE object_id = {oid}") == "1"
            assert any("continuing the upstream order of a resumed job" in line and order_url in line
                       for line in open(gw.log_path).read().splitlines())
            return
        pytest.fail("no attempt killed the gateway during an order that could continue")
    finally:
        gw.stop(kill=True)
        db.drop()
        pebble.stop()
