"""dns-01 and tls-alpn-01 validated for real against pebble-challtestsrv (Debian package `pebble`):
the gateway asks its DNS server for TXT and A records and connects to its TLS-ALPN port, as the
reference (§3.2) describes. Also a wildcard order through dns-01, the challenge sets offered per
identifier type, and failed validations with their problem types."""
import json
import shutil
import subprocess
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import free_port
from test_acme_accounts import b64u, problem
from test_acme_orders import account, gateway_factory_module  # noqa: F401  (fixture)

FOLDER = "\\VED\\Policy\\Chall"


@pytest.fixture(scope="module")
def challtestsrv():
    exe = shutil.which("pebble-challtestsrv")
    assert exe, "pebble-challtestsrv is required (Debian package pebble; scripts/setup-test-env.sh installs it)"
    ports = {k: free_port() for k in ("dns", "tls", "mgmt")}
    p = subprocess.Popen([exe, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                          "-dns01", f"127.0.0.1:{ports['dns']}", "-tlsalpn01", f"127.0.0.1:{ports['tls']}",
                          "-http01", "", "-https01", "", "-management", f"127.0.0.1:{ports['mgmt']}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mgmt = f"http://127.0.0.1:{ports['mgmt']}"
    for _ in range(100):
        try:
            requests.post(mgmt + "/clear-txt", json={"host": "_probe.test."}, timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    else:
        p.kill()
        pytest.fail("pebble-challtestsrv did not start")

    def call(path, **body):
        r = requests.post(mgmt + path, data=json.dumps(body), timeout=5)
        assert r.status_code == 200, (path, r.status_code, r.text)
    yield ports, call
    p.kill()
    p.wait()


@pytest.fixture(scope="module")
def chall_gw(gateway_factory_module, challtestsrv):  # noqa: F811
    ports, _ = challtestsrv
    return gateway_factory_module(env={
        "RENEWGATE_ACME__VALIDATION__DNS_SERVER": f"127.0.0.1:{ports['dns']}",
        "RENEWGATE_ACME__VALIDATION__TLSALPN01_PORT": str(ports["tls"]),
        # Nothing listens here: a name must never be validated over http-01 by accident.
        "RENEWGATE_ACME__VALIDATION__HTTP01_PORT": str(free_port()),
        "RENEWGATE_ACME__VALIDATION__TIMEOUT_S": "3",
        # pebble-challtestsrv resolves every name to 127.0.0.1 (its tls-alpn-01 server): loopback
        # targets reached through DNS are refused unless allowed.
        "RENEWGATE_ACME__VALIDATION__ALLOW_LOOPBACK": "true",
    })


def new_order(c, names):
    url = c.dir["newOrder"]
    r = c.post(url, c.jws(url, {"identifiers": [{"type": "ip" if n[0].isdigit() else "dns", "value": n} for n in names]}))
    assert r.status_code == 201, r.text
    return r.headers["Location"], r.json()


def get(c, url):
    return c.post(url, c.jws(url, None)).json()


def answer_and_wait(c, authz_url, kind):
    a = get(c, authz_url)
    ch = [x for x in a["challenges"] if x["type"] == kind][0]
    r = c.post(ch["url"], c.jws(ch["url"], {}))
    assert r.status_code == 200 and authz_url in r.headers["Link"], r.text
    for _ in range(200):
        a = get(c, authz_url)
        if a["status"] != "pending":
            break
        time.sleep(0.05)
    return a, [x for x in a["challenges"] if x["type"] == kind][0]


def key_authorization(c, a, kind):
    ch = [x for x in a["challenges"] if x["type"] == kind][0]
    return f"{ch['token']}.{c.key.thumbprint()}"


def txt_value(ka):
    d = hashes.Hash(hashes.SHA256())
    d.update(ka.encode())
    return b64u(d.finalize())


def finalize(c, order_url, names):
    o = get(c, order_url)
    assert o["status"] == "ready", o
    k = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(k, hashes.SHA256()))
    r = c.post(o["finalize"], c.jws(o["finalize"], {"csr": b64u(csr.public_bytes(serialization.Encoding.DER))}))
    assert r.status_code == 200, r.text
    for _ in range(100):
        o = get(c, order_url)
        if o["status"] == "valid":
            break
        time.sleep(0.1)
    assert o["status"] == "valid", o
    pem = c.post(o["certificate"], c.jws(o["certificate"], None)).content
    leaf = x509.load_pem_x509_certificates(pem)[0]
    assert set(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)) == set(names)
    return o, leaf


def test_challenges_offered_per_identifier_type(chall_gw):
    c = account(chall_gw, folder=FOLDER, settings=("domains=chall.test",))
    _, o = new_order(c, ["offer.chall.test"])
    a = get(c, o["authorizations"][0])
    assert sorted(x["type"] for x in a["challenges"]) == ["dns-01", "http-01", "tls-alpn-01"]
    assert len({x["token"] for x in a["challenges"]}) == 1 and "wildcard" not in a
    _, o = new_order(c, ["*.offer.chall.test"])
    a = get(c, o["authorizations"][0])
    assert [x["type"] for x in a["challenges"]] == ["dns-01"]
    assert a["identifier"] == {"type": "dns", "value": "offer.chall.test"} and a["wildcard"] is True


def test_dns01_validated_and_issued(chall_gw, challtestsrv):
    _, call = challtestsrv
    c = account(chall_gw, folder=FOLDER, settings=("domains=chall.test",))
    order_url, o = new_order(c, ["dns.chall.test"])
    a = get(c, o["authorizations"][0])
    call("/set-txt", host="_acme-challenge.dns.chall.test.", value=txt_value(key_authorization(c, a, "dns-01")))
    a, ch = answer_and_wait(c, o["authorizations"][0], "dns-01")
    assert a["status"] == "valid" and ch["status"] == "valid" and ch["validated"], a
    o, leaf = finalize(c, order_url, ["dns.chall.test"])
    # An ordinary inventory object, seen through the Venafi dialect.
    api = chall_gw.session(scope="certificate:manage")
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": FOLDER + "\\dns.chall.test", "Format": "Base64"})
    assert r.status_code == 200, r.text
    call("/clear-txt", host="_acme-challenge.dns.chall.test.")


def test_wildcard_order_through_dns01(chall_gw, challtestsrv):
    _, call = challtestsrv
    c = account(chall_gw, folder=FOLDER, settings=("domains=chall.test",))
    order_url, o = new_order(c, ["*.wild.chall.test"])
    assert o["identifiers"] == [{"type": "dns", "value": "*.wild.chall.test"}]
    a = get(c, o["authorizations"][0])
    # The TXT record of a wildcard lives at the base name.
    call("/set-txt", host="_acme-challenge.wild.chall.test.", value=txt_value(key_authorization(c, a, "dns-01")))
    a, _ = answer_and_wait(c, o["authorizations"][0], "dns-01")
    assert a["status"] == "valid", a
    o, leaf = finalize(c, order_url, ["*.wild.chall.test"])
    assert o["x-renewgate"]["action"] == "enroll"
    call("/clear-txt", host="_acme-challenge.wild.chall.test.")


def test_tls_alpn01_validated_and_issued(chall_gw, challtestsrv):
    _, call = challtestsrv
    c = account(chall_gw, folder=FOLDER, settings=("domains=chall.test",))
    order_url, o = new_order(c, ["alpn.chall.test"])
    a = get(c, o["authorizations"][0])
    call("/add-tlsalpn01", host="alpn.chall.test", content=key_authorization(c, a, "tls-alpn-01"))
    a, ch = answer_and_wait(c, o["authorizations"][0], "tls-alpn-01")
    assert a["status"] == "valid" and ch["status"] == "valid", a
    finalize(c, order_url, ["alpn.chall.test"])
    call("/del-tlsalpn01", host="alpn.chall.test")


@pytest.mark.parametrize("case", ["dns-wrong-value", "dns-missing", "alpn-wrong-key", "alpn-unknown-host"])
def test_failed_validation_is_an_invalid_authorization(chall_gw, challtestsrv, case):
    _, call = challtestsrv
    c = account(chall_gw, folder=FOLDER, settings=("domains=chall.test",))
    name = f"{case}.chall.test"
    order_url, o = new_order(c, [name])
    a = get(c, o["authorizations"][0])
    kind = "dns-01" if case.startswith("dns") else "tls-alpn-01"
    if case == "dns-wrong-value":
        call("/set-txt", host=f"_acme-challenge.{name}.", value=txt_value("not-the-key-authorization"))
    elif case == "alpn-wrong-key":
        call("/add-tlsalpn01", host=name, content="not-the-key-authorization")
    a, ch = answer_and_wait(c, o["authorizations"][0], kind)
    assert a["status"] == "invalid" and ch["status"] == "invalid", a
    err = ch["error"]
    expected = {"dns-wrong-value": "incorrectResponse", "dns-missing": "dns",
                "alpn-wrong-key": "incorrectResponse", "alpn-unknown-host": ("tls", "incorrectResponse")}[case]
    assert err["type"].rsplit(":", 1)[1] in (expected if isinstance(expected, tuple) else (expected,)), err
    assert err["detail"]
    o = get(c, order_url)
    assert o["status"] == "invalid"
    # A second answer to a challenge that is no longer pending returns it unchanged.
    r = c.post(ch["url"], c.jws(ch["url"], {}))
    assert r.status_code == 200 and r.json()["status"] == "invalid"
    k = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])).sign(k, hashes.SHA256())
    problem(c.post(o["finalize"], c.jws(o["finalize"], {"csr": b64u(csr.public_bytes(serialization.Encoding.DER))})), 403, "orderNotReady")
