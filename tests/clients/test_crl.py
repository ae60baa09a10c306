"""CRLs and CA certificates of the built-in CAs: `GET /crl/<CA>.crl` and `GET /ca/<CA>.crt` without
credentials (HTTPS, and plain HTTP on `crl.http_bind`), the CRL distribution point and AIA URLs in
issued certificates, and revocation seen by `openssl verify -crl_check -crl_download` — the openssl CLI
is the independent reader throughout."""
import base64
import os
import re
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from conftest import free_port
from rg_helpers import cert_pem, load_certs, openssl, request_csr, retrieved_certs, wait_retrieve

FOLDER = "\\VED\\Policy\\CRL Team"


def get(url, ca_bundle=None):
    """An unauthenticated GET (no Authorization header, no client certificate)."""
    return requests.get(url, verify=ca_bundle if ca_bundle else True, timeout=30)


def crl_text(der):
    """`openssl crl -inform DER -noout -text` of a CRL (fails the test when openssl cannot parse it)."""
    return openssl("crl", "-inform", "DER", "-noout", "-text", input=der).stdout.decode()


def crl_number(text):
    m = re.search(r"X509v3 CRL Number:\s*\n\s*(\d+)", text)
    assert m, f"no CRL number in:\n{text}"
    return int(m.group(1))


def revoked_serials(text):
    return {int(s, 16) for s in re.findall(r"Serial Number:\s*([0-9A-Fa-f]+)", text)}


def crl_signature_ok(der, ca_bundle):
    """openssl checks the CRL's signature against the CA bundle."""
    r = openssl("crl", "-inform", "DER", "-noout", "-CAfile", ca_bundle, input=der, check=False)
    out = (r.stdout + r.stderr).decode()
    return r.returncode == 0 and "verify OK" in out, out


def bundle_cas(gw):
    """{'root', 'issuing', 'issuing-rsa': cert} from the gateway's CA bundle."""
    certs = load_certs(Path(gw.ca_bundle).read_bytes())
    assert len(certs) == 3, "the CA bundle holds the root, the issuing CA and the RSA issuing CA"
    root = [c for c in certs if c.subject == c.issuer]
    assert len(root) == 1
    rsa_ca = [c for c in certs if c is not root[0] and isinstance(c.public_key(), rsa.RSAPublicKey)]
    ec_ca = [c for c in certs if c is not root[0] and not isinstance(c.public_key(), rsa.RSAPublicKey)]
    assert len(rsa_ca) == 1 and len(ec_ca) == 1
    return {"root": root[0], "issuing": ec_ca[0], "issuing-rsa": rsa_ca[0]}


def enroll(s, prefix="crl"):
    """A certificate enrolled with a local CSR; returns (DN, leaf)."""
    cn = f"{prefix}-{uuid.uuid4().hex[:6]}.example.com"
    _, _, dn = request_csr(s, FOLDER, cn, dns=[cn])
    return dn, retrieved_certs(wait_retrieve(s, dn))[0]


def revoke(s, dn, reason=1):
    r = s.post("/vedsdk/Certificates/Revoke", json={"CertificateDN": dn, "Reason": reason})
    assert r.status_code == 200 and r.json() == {"Requested": True, "Success": True}, r.text


def cdp_and_aia(leaf):
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_urls = [n.value for dp in cdp for n in (dp.full_name or [])]
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ca_urls = [d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS]
    return crl_urls, ca_urls


def assert_san_last(leaf):
    exts = [e.oid for e in leaf.extensions]
    assert exts[-1] == ExtensionOID.SUBJECT_ALTERNATIVE_NAME, exts
    assert exts.index(ExtensionOID.CRL_DISTRIBUTION_POINTS) < exts.index(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)


@pytest.fixture(scope="module")
def gw(gateway):
    gateway.cli("policy", "set", FOLDER)
    return gateway


@pytest.fixture(scope="module")
def s(gw):
    return gw.session()


# ---------------------------------------------------------------- over HTTPS, default settings

def test_each_built_in_ca_publishes_a_crl_without_credentials(gw):
    cas = bundle_cas(gw)
    for name, spelled in (("root", "root"), ("issuing", "ISSUING"), ("issuing", "Issuing"),
                          ("issuing-rsa", "issuing-rsa")):
        r = get(f"{gw.url}/crl/{spelled}.crl", gw.ca_bundle)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/pkix-crl"
        text = crl_text(r.content)
        assert "Version 2 (0x1)" in text, text
        assert "X509v3 Authority Key Identifier" in text and "Next Update" in text, text
        crl = x509.load_der_x509_crl(r.content)
        assert crl.issuer == cas[name].subject
        assert crl.is_signature_valid(cas[name].public_key())
        ok, out = crl_signature_ok(r.content, gw.ca_bundle)
        assert ok, out
        assert crl_number(text) >= 1


def test_a_revocation_makes_a_new_crl_that_lists_the_serial(gw, s):
    dn, leaf = enroll(s)
    before = get(f"{gw.url}/crl/issuing.crl", gw.ca_bundle)
    n0 = crl_number(crl_text(before.content))
    assert leaf.serial_number not in revoked_serials(crl_text(before.content))
    # Nothing revoked: the same CRL again.
    again = get(f"{gw.url}/crl/issuing.crl", gw.ca_bundle)
    assert again.content == before.content
    root_before = crl_number(crl_text(get(f"{gw.url}/crl/root.crl", gw.ca_bundle).content))

    revoke(s, dn, reason=1)
    after = get(f"{gw.url}/crl/issuing.crl", gw.ca_bundle)
    text = crl_text(after.content)
    assert crl_number(text) > n0, text
    assert leaf.serial_number in revoked_serials(text), text
    assert "Key Compromise" in text, text
    ok, out = crl_signature_ok(after.content, gw.ca_bundle)
    assert ok, out
    # The root's CRL is the root's business: it lists no leaf and did not change.
    root_text = crl_text(get(f"{gw.url}/crl/root.crl", gw.ca_bundle).content)
    assert crl_number(root_text) == root_before
    assert leaf.serial_number not in revoked_serials(root_text)


def test_ca_certificate_endpoint_serves_the_bundle_certificates(gw):
    for name, cert in bundle_cas(gw).items():
        r = get(f"{gw.url}/ca/{name.upper()}.crt", gw.ca_bundle)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/pkix-cert"
        assert r.content == cert.public_bytes(serialization.Encoding.DER)
        out = openssl("x509", "-inform", "DER", "-noout", "-subject", input=r.content).stdout.decode()
        assert "CN = Renewgate" in out, out


def test_unknown_ca_and_bad_paths_are_404(gw):
    for path in ("/crl/nope.crl", "/ca/nope.crt", "/crl/issuing.crt", "/ca/issuing.crl", "/crl/issuing",
                 "/crl/.crl"):
        r = get(gw.url + path, gw.ca_bundle)
        assert r.status_code == 404, f"{path}: {r.status_code} {r.text[:200]}"


def test_default_urls_are_under_the_public_url(gw, s):
    _, leaf = enroll(s, "pub")
    crl_urls, ca_urls = cdp_and_aia(leaf)
    assert crl_urls == [f"{gw.url}/crl/issuing.crl"]
    assert ca_urls == [f"{gw.url}/ca/issuing.crt"]
    assert_san_last(leaf)


# ---------------------------------------------------------------- plain HTTP listener (crl.http_bind)

def openssl_verify_crl(ca_bundle, leaf):
    """`openssl verify -crl_check -crl_download -CAfile <bundle> leaf.pem`: the CRL comes from the
    certificate's own CRL distribution point. Returns (ok, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(cert_pem(leaf))
        path = f.name
    try:
        r = subprocess.run(["openssl", "verify", "-crl_check", "-crl_download", "-CAfile", ca_bundle, path],
                           capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode(errors="replace")
        return r.returncode == 0 and f"{path}: OK" in out, out
    finally:
        os.unlink(path)


def test_plain_http_listener_and_openssl_crl_check(gateway_factory):
    port = free_port()
    g = gateway_factory(env={"RENEWGATE_CRL__HTTP_BIND": f"127.0.0.1:{port}"})
    g.cli("policy", "set", FOLDER)
    api = g.session()
    base = f"http://127.0.0.1:{port}"
    good_dn, good = enroll(api, "good")
    bad_dn, bad = enroll(api, "bad")
    for leaf in (good, bad):
        crl_urls, ca_urls = cdp_and_aia(leaf)
        assert crl_urls == [f"{base}/crl/issuing.crl"], crl_urls
        assert ca_urls == [f"{base}/ca/issuing.crt"], ca_urls
        assert_san_last(leaf)
    # The AIA URL answers over plain HTTP with the issuing CA's certificate.
    r = get(cdp_and_aia(good)[1][0])
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/pkix-cert"
    assert r.content == bundle_cas(g)["issuing"].public_bytes(serialization.Encoding.DER)

    ok, out = openssl_verify_crl(g.ca_bundle, good)
    assert ok, out
    ok, out = openssl_verify_crl(g.ca_bundle, bad)
    assert ok, f"before its revocation: {out}"
    revoke(api, bad_dn, reason=4)
    ok, out = openssl_verify_crl(g.ca_bundle, bad)
    assert not ok and "certificate revoked" in out, out
    ok, out = openssl_verify_crl(g.ca_bundle, good)
    assert ok, out

    # The plain listener serves those two paths and nothing else.
    assert get(f"{base}/crl/ROOT.crl").status_code == 200
    assert get(f"{base}/crl/nope.crl").status_code == 404
    for path in ("/health", "/vedsdk/Certificates/Request", "/vedsdk/systemstatus/version", "/vedauth/authorize/oauth",
                 "/api/v1/audit", "/metrics", "/openapi.json", "/acme/directory", "/"):
        r = requests.get(base + path, timeout=30)
        assert r.status_code == 404, f"{path} over plain HTTP: {r.status_code} {r.text[:200]}"
    r = requests.post(f"{base}/vedsdk/Certificates/Request", json={"PolicyDN": FOLDER}, timeout=30)
    assert r.status_code == 404, r.text
    # The HTTPS port still serves the same CRL.
    https = get(f"{g.url}/crl/issuing.crl", g.ca_bundle).content
    assert https == get(f"{base}/crl/issuing.crl").content


def test_explicit_base_url_is_used_verbatim(gateway_factory):
    base = "http://pki.example.test:8080/renewgate"
    g = gateway_factory(env={"RENEWGATE_CRL__BASE_URL": base, "RENEWGATE_CRL__HTTP_BIND": f"127.0.0.1:{free_port()}"})
    g.cli("policy", "set", FOLDER)
    _, leaf = enroll(g.session(), "base")
    crl_urls, ca_urls = cdp_and_aia(leaf)
    assert crl_urls == [f"{base}/crl/issuing.crl"]
    assert ca_urls == [f"{base}/ca/issuing.crt"]
    text = openssl("x509", "-noout", "-text", input=cert_pem(leaf).encode()).stdout.decode()
    assert f"URI:{base}/crl/issuing.crl" in text and f"CA Issuers - URI:{base}/ca/issuing.crt" in text, text


# ---------------------------------------------------------------- two instances, one database

def test_two_instances_serve_one_crl_whose_number_only_grows(gateway_factory, backend):
    """Two gateways on one database (PostgreSQL; or one SQLite file) with one master key serve the
    same CRL; after a revocation on one, concurrent fetches on both get one new CRL number."""
    key = base64.b64encode(os.urandom(32)).decode()
    a = gateway_factory(env={"RENEWGATE_MASTER_KEY": key})
    b_env = {"RENEWGATE_MASTER_KEY": key}
    if backend == "sqlite":
        b_env["RENEWGATE_DATABASE_URL"] = str(Path(a.data_dir) / "renewgate.db")
    b = gateway_factory(database=a.database, env=b_env)
    a.cli("policy", "set", FOLDER)
    api_b = b.session(token=b.token(password=a.admin_password))

    first_a = get(f"{a.url}/crl/issuing.crl", a.ca_bundle).content
    first_b = get(f"{b.url}/crl/issuing.crl", b.ca_bundle).content
    assert first_a == first_b
    n0 = crl_number(crl_text(first_a))

    dn, leaf = enroll(api_b, "two")
    revoke(api_b, dn)
    results, errors = [], []

    def fetch(g):
        try:
            r = get(f"{g.url}/crl/issuing.crl", g.ca_bundle)
            assert r.status_code == 200, r.text
            results.append(r.content)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=fetch, args=(g,)) for g in (a, b) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 8
    numbers = {crl_number(crl_text(d)) for d in results}
    assert numbers == {n0 + 1}, numbers
    assert len(set(results)) == 1, "every instance serves the one stored CRL"
    assert leaf.serial_number in revoked_serials(crl_text(results[0]))
