"""certbot (PyPI) against the real gateway over HTTPS with EAB: certonly with http-01 really
validated on a high port, renewals auto-detected and by explicit DigiCert-style actions, a deploy
hook, and every certificate checked with openssl and through the Venafi dialect."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from conftest import REPO, free_port, openssl
from rg_helpers import db_scalar
from test_acme_challenges import challtestsrv  # noqa: F401  (fixture)

CERTBOT = REPO / ".venv" / "bin" / "certbot"


@pytest.fixture(scope="module")
def setup(backend, tmp_path_factory, challtestsrv):
    from conftest import Database, Gateway
    http01 = free_port()
    root = tmp_path_factory.mktemp("certbot")
    db = Database(backend)
    # http-01 on a high port (names pinned to 127.0.0.1); dns-01 against pebble-challtestsrv.
    gw = Gateway(root, db, env={"RENEWGATE_ACME__VALIDATION__HTTP01_PORT": str(http01),
                                "RENEWGATE_ACME__VALIDATION__HOSTS": "*.example.test=127.0.0.1",
                                "RENEWGATE_ACME__VALIDATION__DNS_SERVER": f"127.0.0.1:{challtestsrv[0]['dns']}"}).start()
    gw.cli("policy", "set", "\\VED\\Policy\\Web", "domains=example.test", "validity=30d")
    env = dict(l.split("=", 1) for l in gw.cli("acme", "eab", "create", "--policy", "\\VED\\Policy\\Web").stdout.split())
    yield gw, http01, root, env
    gw.stop(kill=True)
    db.drop()


def certbot(setup, *args, server=None):
    gw, http01, root, env = setup
    e = dict(os.environ)
    e["REQUESTS_CA_BUNDLE"] = gw.ca_bundle
    cmd = [str(CERTBOT), "--config-dir", str(root / "cfg"), "--work-dir", str(root / "wk"), "--logs-dir", str(root / "logs"),
           "--non-interactive", *args]
    if server:
        cmd += ["--server", server]
    r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"certbot {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def standalone(setup):
    return ["--standalone", "--http-01-port", str(setup[1]), "--http-01-address", "127.0.0.1"]


def lineage(setup, name):
    p = setup[2] / "cfg" / "live" / name / "cert.pem"
    return x509.load_pem_x509_certificate(p.read_bytes())


def venafi_view(setup, cert):
    """The inventory object holding this certificate, through the Venafi dialect."""
    gw = setup[0]
    api = gw.session(scope="certificate:manage")
    tp = hashlib.sha1(cert.public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.DER)).hexdigest()
    found = api.get("/vedsdk/certificates/", params={"Thumbprint": tp}).json()["Certificates"]
    assert len(found) == 1
    d = api.get(f"/vedsdk/certificates/{found[0]['Guid']}").json()
    return d["ObjectId"], d["DN"], d["X509"]["Serial"]


def verify_chain(setup, name):
    out = openssl("verify", "-CAfile", setup[0].ca_bundle, str(setup[2] / "cfg" / "live" / name / "cert.pem")).stdout.decode()
    assert out.strip().endswith("OK")


def names(cert):
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))


def test_certbot_lifecycle(setup):
    gw, http01, root, env = setup
    directory = gw.url + "/acme/directory"
    eab = ["--eab-kid", env["EAB_KID"], "--eab-hmac-key", env["EAB_HMAC_KEY"]]
    certbot(setup, "certonly", *standalone(setup), "--agree-tos", "--register-unsafely-without-email", *eab,
            "-d", "www.example.test", "-d", "example.test", "--cert-name", "t1", server=directory)
    c1 = lineage(setup, "t1")
    verify_chain(setup, "t1")
    assert names(c1) == {"www.example.test", "example.test"}
    n, dn, _ = venafi_view(setup, c1)

    # renew --force-renewal: validity 30d is inside the 32-day window, so auto-detection renews N.
    deployed = root / "deployed"
    certbot(setup, "renew", "--cert-name", "t1", "--force-renewal", "--no-random-sleep-on-renew", *standalone(setup),
            "--deploy-hook", f"echo $RENEWED_DOMAINS >> {deployed}")
    c2 = lineage(setup, "t1")
    assert c2.serial_number != c1.serial_number and names(c2) == names(c1)
    assert venafi_view(setup, c2)[:2] == (n, dn)
    assert "www.example.test" in deployed.read_text()

    # ?action=renew&orderId=N: same object, new version.
    certbot(setup, "renew", "--cert-name", "t1", "--force-renewal", "--no-random-sleep-on-renew", *standalone(setup),
            server=f"{directory}?action=renew&orderId={n}")
    c3 = lineage(setup, "t1")
    assert c3.serial_number != c2.serial_number and venafi_view(setup, c3)[:2] == (n, dn)
    verify_chain(setup, "t1")

    # ?action=reissue&orderId=N with an added name: same object, new names.
    certbot(setup, "certonly", *standalone(setup), "--cert-name", "t1", "--expand", "-d", "www.example.test",
            "-d", "example.test", "-d", "api.example.test", server=f"{directory}?action=reissue&orderId={n}")
    c4 = lineage(setup, "t1")
    assert names(c4) == {"www.example.test", "example.test", "api.example.test"} and venafi_view(setup, c4)[:2] == (n, dn)

    # ?action=duplicate&orderId=N: refused on a folder without duplicates, then a new object.
    dup = subprocess.run([str(CERTBOT), "--config-dir", str(root / "cfg"), "--work-dir", str(root / "wk"), "--logs-dir",
                          str(root / "logs"), "--non-interactive", "certonly", *standalone(setup), "--duplicate",
                          "--cert-name", "dup1", "-d", "www.example.test", "-d", "example.test", "-d", "api.example.test",
                          "--server", f"{directory}?action=duplicate&orderId={n}"],
                         env={**os.environ, "REQUESTS_CA_BUNDLE": gw.ca_bundle}, capture_output=True, text=True, timeout=300)
    assert dup.returncode != 0 and "does not allow duplicates" in (dup.stdout + dup.stderr)
    gw.cli("policy", "set", "\\VED\\Policy\\Web", "acme_allow_duplicates=true")
    certbot(setup, "certonly", *standalone(setup), "--duplicate", "--cert-name", "dup1", "-d", "www.example.test",
            "-d", "example.test", "-d", "api.example.test", server=f"{directory}?action=duplicate&orderId={n}")
    d1 = lineage(setup, "dup1")
    dn_id = venafi_view(setup, d1)[0]
    assert dn_id != n
    assert venafi_view(setup, lineage(setup, "t1"))[2]  # N untouched, still retrievable

    # ?action=enroll: always a new object.
    certbot(setup, "certonly", *standalone(setup), "--cert-name", "e1", "-d", "www.example.test", "-d", "example.test",
            server=f"{directory}?action=enroll")
    e1 = lineage(setup, "e1")
    assert venafi_view(setup, e1)[0] not in (n, dn_id)
    verify_chain(setup, "e1")

    # revoke by the account that ordered it.
    certbot(setup, "revoke", "--cert-name", "e1", "--reason", "superseded", "--no-delete-after-revoke", server=directory)
    api = gw.session(scope="certificate:manage")
    tp = hashlib.sha1(e1.public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.DER)).hexdigest().upper()
    kf = api.get("/KeyfactorAPI/Certificates", params={"QueryString": f'Thumbprint -eq "{tp}"'}).json()
    assert kf[0]["CertState"] == 2


def eab_flags(setup):
    env = setup[3]
    return ["--agree-tos", "--register-unsafely-without-email", "--eab-kid", env["EAB_KID"], "--eab-hmac-key", env["EAB_HMAC_KEY"]]


def test_certbot_wildcard_through_dns01(setup, challtestsrv):
    """certbot's manual authenticator with hooks publishing the TXT record in pebble-challtestsrv:
    a wildcard order validated by dns-01, then renewed (auto-detected: the same object)."""
    gw, _, root, _ = setup
    mgmt = f"http://127.0.0.1:{challtestsrv[0]['mgmt']}"
    hook = root / "dns-hook.py"
    hook.write_text(
        "import json, os, sys, urllib.request\n"
        "host = '_acme-challenge.' + os.environ['CERTBOT_DOMAIN'] + '.'\n"
        "path, body = ('/set-txt', {'host': host, 'value': os.environ['CERTBOT_VALIDATION']}) if sys.argv[1] == 'auth' else ('/clear-txt', {'host': host})\n"
        f"urllib.request.urlopen(urllib.request.Request('{mgmt}' + path, data=json.dumps(body).encode(), method='POST'))\n")
    manual = ["--manual", "--preferred-challenges", "dns", "--manual-auth-hook", f"python3 {hook} auth",
              "--manual-cleanup-hook", f"python3 {hook} cleanup"]
    directory = gw.url + "/acme/directory"
    certbot(setup, "certonly", *manual, *eab_flags(setup), "-d", "*.wc.example.test", "--cert-name", "wc", server=directory)
    w1 = lineage(setup, "wc")
    assert names(w1) == {"*.wc.example.test"}
    verify_chain(setup, "wc")
    n, dn, _ = venafi_view(setup, w1)
    assert dn.endswith("\\wildcard.wc.example.test")
    certbot(setup, "renew", "--cert-name", "wc", "--force-renewal", "--no-random-sleep-on-renew", *manual)
    w2 = lineage(setup, "wc")
    assert w2.serial_number != w1.serial_number and venafi_view(setup, w2)[:2] == (n, dn)


def test_certbot_dry_run_changes_nothing(setup):
    """`renew --dry-run` against `?dryRun=1` (same account) and `certonly --dry-run` against the
    dry-run alias directory (a new account, EAB needed): both succeed, and neither creates an
    object version nor a job."""
    gw, _, root, _ = setup
    directory = gw.url + "/acme/directory"
    certbot(setup, "certonly", *standalone(setup), *eab_flags(setup), "-d", "dry.example.test", "--cert-name", "dr1",
            server=directory)
    c1 = lineage(setup, "dr1")
    n = venafi_view(setup, c1)[0]
    count = lambda sql: int(db_scalar(gw, sql))  # noqa: E731
    # Issuance jobs only: the dry-run orders' challenges are validated by jobs of their own kind.
    jobs = "SELECT COUNT(*) FROM jobs WHERE kind <> 'acme-validation'"
    before = (count(f"SELECT COUNT(*) FROM certificates WHERE object_id = {n}"), count(jobs),
              count("SELECT COUNT(*) FROM cert_objects"))
    r = certbot(setup, "renew", "--cert-name", "dr1", "--dry-run", "--no-random-sleep-on-renew", *standalone(setup),
                server=f"{directory}?dryRun=1")
    assert "simulat" in (r.stdout + r.stderr).lower()
    certbot(setup, "certonly", "--dry-run", *standalone(setup), *eab_flags(setup), "-d", "dry2.example.test",
            "--cert-name", "dr2", server=gw.url + "/acme/dry-run/directory")
    after = (count(f"SELECT COUNT(*) FROM certificates WHERE object_id = {n}"), count(jobs),
             count("SELECT COUNT(*) FROM cert_objects"))
    assert after == before
    assert lineage(setup, "dr1").serial_number == c1.serial_number
    assert not (root / "cfg" / "live" / "dr2").exists()
    assert count("SELECT COUNT(*) FROM acme_orders WHERE dry_run = true AND status = 'valid'") == 2


def public_key(cert):
    from cryptography.hazmat.primitives import serialization
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_certbot_reuse_key_renewals_succeed_by_default(setup):
    """`--reuse-key`: the renewal's CSR carries the current certificate's key. A new installation
    allows key reuse (folder Web sets no key_reuse), so `renew --force-renewal` and a second
    `certonly --force-renewal --reuse-key` both renew the same object with the same key."""
    gw = setup[0]
    directory = gw.url + "/acme/directory"
    certbot(setup, "certonly", *standalone(setup), *eab_flags(setup), "--reuse-key", "-d", "reuse.example.test",
            "--cert-name", "rk", server=directory)
    k1 = lineage(setup, "rk")
    n, dn, _ = venafi_view(setup, k1)
    # validity 30d is inside the renewal window: auto-detection renews N.
    certbot(setup, "renew", "--cert-name", "rk", "--force-renewal", "--no-random-sleep-on-renew", *standalone(setup))
    k2 = lineage(setup, "rk")
    assert k2.serial_number != k1.serial_number and public_key(k2) == public_key(k1)
    assert venafi_view(setup, k2)[:2] == (n, dn)
    certbot(setup, "certonly", *standalone(setup), "--force-renewal", "--reuse-key", "-d", "reuse.example.test",
            "--cert-name", "rk", server=directory)
    k3 = lineage(setup, "rk")
    assert k3.serial_number != k2.serial_number and public_key(k3) == public_key(k1)
    assert venafi_view(setup, k3)[:2] == (n, dn)
