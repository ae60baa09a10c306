"""ACME orders end to end with a client signed here: newOrder (actions and auto-detection),
http-01 really validated against a server this test runs, finalize through the queue, download,
and the inventory object seen through the Venafi dialect."""
import base64
import http.server
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import free_port, openssl
from test_acme_accounts import Client, Key, b64u, problem

TOKENS = {}
# token -> threading.Event: the server holds its answer until the event is set (a validation in flight).
HOLD = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        token = self.path.rsplit("/", 1)[-1]
        hold = HOLD.get(token)
        if hold is not None:
            hold.wait(60)
            return
        body = TOKENS.get(token)
        self.send_response(200 if body else 404)
        self.end_headers()
        if body:
            self.wfile.write(body.encode())

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def http01():
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield port
    srv.shutdown()


@pytest.fixture(scope="module")
def acme_gw(gateway_factory_module, http01):
    return gateway_factory_module(env={"RENEWGATE_ACME__VALIDATION__HTTP01_PORT": str(http01),
                                       "RENEWGATE_ACME__VALIDATION__HOSTS": "*.example.test=127.0.0.1"})


@pytest.fixture(scope="module")
def gateway_factory_module(backend, tmp_path_factory):
    from conftest import Database, Gateway
    made = []

    def make(env):
        db = Database(backend)
        gw = Gateway(tmp_path_factory.mktemp("acme"), db, env=env).start()
        made.append((gw, db))
        return gw
    yield make
    for gw, db in made:
        gw.stop(kill=True)
        db.drop()


def account(gw, prevalidated=False, folder="\\VED\\Policy\\Acme", settings=("domains=example.test",)):
    gw.cli("policy", "set", folder, *settings)
    args = ["acme", "eab", "create", "--policy", folder] + (["--prevalidated"] if prevalidated else [])
    env = dict(l.split("=", 1) for l in gw.cli(*args).stdout.split())
    c = Client(gw, Key("ES256"))
    assert c.register(env["EAB_KID"], env["EAB_HMAC_KEY"]).status_code == 201
    c.eab_kid = env["EAB_KID"]
    return c


def csr_for(names):
    k = ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return b64u(b.sign(k, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def order_and_issue(c, names, new_order_url=None, expect_validation=True, extra=None):
    url = new_order_url or c.dir["newOrder"]
    r = c.post(url, c.jws(url, {"identifiers": [{"type": "dns", "value": n} for n in names], **(extra or {})}))
    assert r.status_code == 201, r.text
    order_url = r.headers["Location"]
    o = r.json()
    for az in o["authorizations"]:
        a = c.post(az, c.jws(az, None)).json()
        if a["status"] == "valid":
            assert not expect_validation
            continue
        ch = [x for x in a["challenges"] if x["type"] == "http-01"][0]
        TOKENS[ch["token"]] = f"{ch['token']}.{c.key.thumbprint()}"
        r = c.post(ch["url"], c.jws(ch["url"], {}))
        assert r.status_code == 200 and az in r.headers["Link"]
        for _ in range(100):
            a = c.post(az, c.jws(az, None)).json()
            if a["status"] != "pending":
                break
            time.sleep(0.1)
        assert a["status"] == "valid", a
    o = c.post(order_url, c.jws(order_url, None)).json()
    assert o["status"] == "ready", o
    r = c.post(o["finalize"], c.jws(o["finalize"], {"csr": csr_for(names)}))
    assert r.status_code == 200, r.text
    o = r.json()
    for _ in range(50):
        if o["status"] == "valid":
            break
        time.sleep(0.2)
        o = c.post(order_url, c.jws(order_url, None)).json()
    assert o["status"] == "valid", o
    r = c.post(o["certificate"], c.jws(o["certificate"], None))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/pem-certificate-chain")
    return o, x509.load_pem_x509_certificates(r.content)


def test_http01_order_then_renew_and_enroll_actions(acme_gw):
    c = account(acme_gw)
    o, chain = order_and_issue(c, ["www.example.test", "example.test"])
    leaf = chain[0]
    assert set(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)) == {"www.example.test", "example.test"}
    n = o["x-renewgate"]["orderId"]
    assert o["x-renewgate"]["action"] == "enroll" and isinstance(n, int)
    # The object is an ordinary inventory object (Venafi dialect).
    api = acme_gw.session(scope="certificate:manage")
    dn = "\\VED\\Policy\\Acme\\www.example.test"
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": "Base64"})
    assert r.status_code == 200 and x509.load_pem_x509_certificate(base64.b64decode(r.json()["CertificateData"])).serial_number == leaf.serial_number
    # Explicit renew of order N: same object, new version.
    d = c.s.get(acme_gw.url + f"/acme/directory?action=renew&orderId={n}").json()
    o2, chain2 = order_and_issue(c, ["www.example.test", "example.test"], d["newOrder"])
    assert o2["x-renewgate"] == {"action": "renew", "orderId": n} and chain2[0].serial_number != leaf.serial_number
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": "Base64"})
    assert x509.load_pem_x509_certificate(base64.b64decode(r.json()["CertificateData"])).serial_number == chain2[0].serial_number
    # Auto-detection outside the renewal window: a new enrollment (a new object).
    o3, _ = order_and_issue(c, ["www.example.test", "example.test"])
    assert o3["x-renewgate"]["action"] == "enroll" and o3["x-renewgate"]["orderId"] != n
    # A renew whose names differ from the order is refused; an unknown order id too.
    url = d["newOrder"]
    problem(c.post(url, c.jws(url, {"identifiers": [{"type": "dns", "value": "other.example.test"}]})), 400, "rejectedIdentifier")
    d = c.s.get(acme_gw.url + "/acme/directory?action=renew&orderId=999999").json()
    problem(c.post(d["newOrder"], c.jws(d["newOrder"], {"identifiers": [{"type": "dns", "value": "www.example.test"}]})), 403, "unauthorized")
    # Duplicates need the folder's permission.
    d = c.s.get(acme_gw.url + f"/acme/directory?action=duplicate&orderId={n}").json()
    problem(c.post(d["newOrder"], c.jws(d["newOrder"], {"identifiers": [{"type": "dns", "value": "www.example.test"}, {"type": "dns", "value": "example.test"}]})), 403, "unauthorized")
    acme_gw.cli("policy", "set", "\\VED\\Policy\\Acme", "acme_allow_duplicates=true")
    o4, _ = order_and_issue(c, ["www.example.test", "example.test"], d["newOrder"])
    assert o4["x-renewgate"]["action"] == "duplicate" and o4["x-renewgate"]["orderId"] not in (n, None)


def test_renewal_window_makes_auto_detection_renew(acme_gw):
    c = account(acme_gw, folder="\\VED\\Policy\\AcmeShort", settings=("domains=example.test", "validity=30d"))
    o, chain = order_and_issue(c, ["short.example.test"])
    n = o["x-renewgate"]["orderId"]
    o2, chain2 = order_and_issue(c, ["short.example.test"])
    assert o2["x-renewgate"] == {"action": "renew", "orderId": n}
    assert chain2[0].serial_number != chain[0].serial_number


def test_failed_validation_and_bad_csr(acme_gw):
    c = account(acme_gw)
    url = c.dir["newOrder"]
    r = c.post(url, c.jws(url, {"identifiers": [{"type": "dns", "value": "nobody.example.test"}]}))
    o = r.json()
    a = c.post(o["authorizations"][0], c.jws(o["authorizations"][0], None)).json()
    ch = a["challenges"][0]
    c.post(ch["url"], c.jws(ch["url"], {}))  # nothing served: the validation must fail
    for _ in range(100):
        a = c.post(o["authorizations"][0], c.jws(o["authorizations"][0], None)).json()
        if a["status"] != "pending":
            break
        time.sleep(0.1)
    assert a["status"] == "invalid" and a["challenges"][0]["status"] == "invalid" and a["challenges"][0]["error"]["detail"]
    oo = c.post(r.headers["Location"], c.jws(r.headers["Location"], None)).json()
    assert oo["status"] == "invalid"
    problem(c.post(oo["finalize"], c.jws(oo["finalize"], {"csr": csr_for(["nobody.example.test"])})), 403, "orderNotReady")
    # Outside the folder's domains.
    problem(c.post(url, c.jws(url, {"identifiers": [{"type": "dns", "value": "www.other.org"}]})), 400, "rejectedIdentifier")


def test_prevalidated_key_skips_challenges(acme_gw):
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmePre")
    o, chain = order_and_issue(c, ["pre.example.test"], expect_validation=False)
    assert chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pre.example.test"
    # And a CSR whose names differ from the order is refused.
    url = c.dir["newOrder"]
    r = c.post(url, c.jws(url, {"identifiers": [{"type": "dns", "value": "a.example.test"}]}))
    fin = r.json()["finalize"]
    problem(c.post(fin, c.jws(fin, {"csr": csr_for(["b.example.test"])})), 400, "badCSR")


def test_orders_list_and_revocation(acme_gw):
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeRev")
    o, chain = order_and_issue(c, ["rev.example.test"], expect_validation=False)
    lst = c.post(c.kid + "/orders", c.jws(c.kid + "/orders", None)).json()["orders"]
    assert len(lst) == 1 and lst[0].endswith("/order/" + o["finalize"].split("/order/")[1].split("/")[0])
    der = chain[0].public_bytes(serialization.Encoding.DER)
    url = c.dir["revokeCert"]
    problem(c.post(url, c.jws(url, {"certificate": b64u(der), "reason": 7})), 400, "badRevocationReason")
    other = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeRev")
    problem(other.post(url, other.jws(url, {"certificate": b64u(der)})), 403, "unauthorized")
    r = c.post(url, c.jws(url, {"certificate": b64u(der), "reason": 4}))
    assert r.status_code == 200, r.text
    problem(c.post(url, c.jws(url, {"certificate": b64u(der)})), 400, "alreadyRevoked")
    # The revocation is visible through the Keyfactor dialect.
    s = acme_gw.session(scope="certificate:manage")
    import hashlib
    tp = hashlib.sha1(der).hexdigest().upper()
    kf = s.get("/KeyfactorAPI/Certificates", params={"QueryString": f'Thumbprint -eq "{tp}"'}).json()
    assert kf[0]["CertState"] == 2 and kf[0]["RevocationReason"] == 4


def cert_id(cert):
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    n = cert.serial_number
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return f"{b64u(aki)}.{b64u(raw)}"


def test_ari_renewal_info(acme_gw):
    import datetime
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeAri", settings=("domains=example.test", "validity=30d"))
    o, chain = order_and_issue(c, ["ari.example.test"], expect_validation=False)
    leaf = chain[0]
    ri = c.dir["renewalInfo"]
    r = c.s.get(f"{ri}/{cert_id(leaf)}")
    assert r.status_code == 200 and r.headers["Retry-After"] == "21600", r.text
    w = r.json()["suggestedWindow"]
    start = datetime.datetime.fromisoformat(w["start"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(w["end"].replace("Z", "+00:00"))
    na = leaf.not_valid_after_utc
    # Inside the 32-day renewal window (a 30-day certificate: a third of its life), start before end.
    assert na - datetime.timedelta(days=32) <= start < end <= na
    assert (na - start) <= datetime.timedelta(days=10, hours=1)
    # Revoked: the window has already begun.
    url = c.dir["revokeCert"]
    assert c.post(url, c.jws(url, {"certificate": b64u(leaf.public_bytes(serialization.Encoding.DER))})).status_code == 200
    w = c.s.get(f"{ri}/{cert_id(leaf)}").json()["suggestedWindow"]
    assert datetime.datetime.fromisoformat(w["start"].replace("Z", "+00:00")) < datetime.datetime.now(datetime.timezone.utc)
    # Unknown and malformed certIDs.
    unknown = b64u(b"x" * 20) + "." + b64u(bytes([1, 2]))
    r = c.s.get(f"{ri}/{unknown}")
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/problem+json")
    r = c.s.get(f"{ri}/not-a-cert-id")
    assert r.status_code == 400 and r.json()["type"] == "urn:ietf:params:acme:error:malformed"


def test_ari_window_opens_at_once_when_the_issuing_ca_is_retired(acme_gw):
    """A CA rotation: once the certificate's issuing CA is disabled, renewalInfo says renew now."""
    import datetime
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeRot", settings=("domains=example.test", "validity=30d"))
    _, chain = order_and_issue(c, ["rot.example.test"], expect_validation=False)
    ri = f"{c.dir['renewalInfo']}/{cert_id(chain[0])}"
    now = datetime.datetime.now(datetime.timezone.utc)
    start = lambda: datetime.datetime.fromisoformat(c.s.get(ri).json()["suggestedWindow"]["start"].replace("Z", "+00:00"))  # noqa: E731
    assert start() > now
    acme_gw.cli("ca", "add", "issuing-2")
    acme_gw.cli("ca", "disable", "issuing")
    try:
        assert start() < now
    finally:
        acme_gw.cli("ca", "enable", "issuing")
