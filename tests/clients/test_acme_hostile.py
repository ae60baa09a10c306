"""ACME against hostile or careless clients (issue "ACME as a domain of its own"): each test pins
one rule of /work/acme-contract.md that the gateway broke before.

1. Names never validated reach no certificate: UPN, e-mail and URI SANs in a finalize CSR are
   badCSR naming the value; the CSR's O/OU/L/ST/C are ignored (subject = CN + folder values);
   EKU serverAuth unless the folder's `acme_ekus` says more; CN = the order's first identifier
   (none beyond 64 characters).
2. Objects belong to the EAB key that first issued them: another key's reissue/renew by order id
   answers like an unknown order, auto-detection does not pick another key's object; accounts of
   one key share objects, `--folder-orders` keys and `renewgate acme assign` grant more. Accounts
   without EAB land in acme.default_policy (\\VED\\Policy\\ACME) and are rate limited per address.
3. Validation has a deadline and limits: a drip-fed http-01 answer fails within the timeout;
   more than 100 identifiers are rejected; 300 pending authorizations per account are the most.
4. Validation does not reach loopback (IP identifiers, IPv4-mapped, names resolving to it) unless
   acme.validation.allow_loopback; 5. a name with AAAA and A records falls back to IPv4.
6. Key reuse is allowed by default on a new installation; a key revoked for keyCompromise is
   refused in ACME (badPublicKey) and in the Venafi dialect.
7. Nonces are stateless (new-nonce writes no row), 22 characters, single use on every instance.
Plus: validations pending at a kill -9 all end valid or invalid after the restart.

The http-01 server here answers per token: `ok` (the key authorization), `hang` (accepts, never
answers) or `drip` (one byte a second). Names under example.test are pinned to 127.0.0.1 on the
gateways that need no DNS (pinned addresses are not filtered); the loopback tests resolve through
pebble-challtestsrv instead."""
import concurrent.futures
import email.utils
import hashlib
import ipaddress
import json
import re
import socketserver
import threading
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from conftest import free_port
from rg_helpers import assert_venafi_error, db_rows, db_scalar
from test_acme_accounts import Client, Key, b64u, problem
from test_acme_challenges import challtestsrv  # noqa: F401  (fixture)
from test_acme_orders import gateway_factory_module  # noqa: F401  (fixture)

UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
COMPROMISED = "This CSR's public key belongs to a certificate revoked for key compromise."

# ---------------------------------------------------------------- the http-01 server

ANSWERS = {}  # token -> (mode, key authorization); mode: ok | hang | drip
STOP = threading.Event()


class _Http01(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 8192:
                chunk = sock.recv(1024)
                if not chunk:
                    return
                data += chunk
        except OSError:
            return
        parts = data.split(b"\r\n", 1)[0].decode(errors="replace").split()
        token = (parts[1] if len(parts) > 1 else "/").rsplit("/", 1)[-1]
        mode, body = ANSWERS.get(token, ("missing", ""))
        try:
            if mode == "hang":
                STOP.wait(120)
            elif mode == "drip":
                resp = f"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}".encode()
                for i in range(len(resp)):
                    sock.sendall(resp[i:i + 1])
                    if STOP.wait(1):
                        return
            elif mode == "ok":
                b = body.encode()
                sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
            else:
                sock.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@pytest.fixture(scope="module")
def http01():
    """An http-01 server on 127.0.0.1 only (never ::1)."""
    STOP.clear()
    port = free_port()
    srv = _Server(("127.0.0.1", port), _Http01)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield port
    STOP.set()
    srv.shutdown()
    srv.server_close()


# ---------------------------------------------------------------- gateways

PINNED = "*.example.test=127.0.0.1"


@pytest.fixture(scope="module")
def pin_gw(gateway_factory_module, http01):  # noqa: F811
    """example.test pinned to 127.0.0.1 (pinned addresses are used as given), 3 s validation deadline."""
    return gateway_factory_module(env={"RENEWGATE_ACME__VALIDATION__HTTP01_PORT": str(http01),
                                       "RENEWGATE_ACME__VALIDATION__HOSTS": PINNED,
                                       "RENEWGATE_ACME__VALIDATION__TIMEOUT_S": "3"})


def _dns_env(http01, challtestsrv, **extra):  # noqa: F811
    return {"RENEWGATE_ACME__VALIDATION__HTTP01_PORT": str(http01),
            "RENEWGATE_ACME__VALIDATION__DNS_SERVER": f"127.0.0.1:{challtestsrv[0]['dns']}",
            "RENEWGATE_ACME__VALIDATION__TIMEOUT_S": "3", **extra}


@pytest.fixture(scope="module")
def strict_gw(gateway_factory_module, http01, challtestsrv):  # noqa: F811
    """Names resolved by pebble-challtestsrv (every A record: 127.0.0.1), nothing pinned, loopback not allowed."""
    return gateway_factory_module(env=_dns_env(http01, challtestsrv))


@pytest.fixture(scope="module")
def loop_gw(gateway_factory_module, http01, challtestsrv):  # noqa: F811
    """As strict_gw, with acme.validation.allow_loopback."""
    return gateway_factory_module(env=_dns_env(http01, challtestsrv, RENEWGATE_ACME__VALIDATION__ALLOW_LOOPBACK="true"))


@pytest.fixture(scope="module")
def open_gw(gateway_factory_module, http01):  # noqa: F811
    """Accounts without EAB allowed."""
    return gateway_factory_module(env={"RENEWGATE_ACME__VALIDATION__HTTP01_PORT": str(http01),
                                       "RENEWGATE_ACME__VALIDATION__HOSTS": PINNED,
                                       "RENEWGATE_ACME__EAB_REQUIRED": "false"})


# ---------------------------------------------------------------- ACME helpers

def eab(gw, folder, *flags, settings=("domains=example.test",)):
    """`renewgate acme eab create --policy FOLDER FLAGS`; sets the folder's settings first."""
    if settings is not None:
        gw.cli("policy", "set", folder, *settings)
    out = gw.cli("acme", "eab", "create", "--policy", folder, *flags).stdout
    env = dict(re.findall(r"^(EAB_KID|EAB_HMAC_KEY)=(\S+)$", out, re.M))
    return env["EAB_KID"], env["EAB_HMAC_KEY"]


def register(gw, key_pair):
    c = Client(gw, Key("ES256"))
    r = c.register(*key_pair)
    assert r.status_code == 201, r.text
    c.eab_kid = key_pair[0]
    return c


def register_without_eab(gw):
    c = Client(gw, Key("ES256"))
    url = c.dir["newAccount"]
    r = c.post(url, c.jws(url, {"termsOfServiceAgreed": True}))
    if r.status_code == 201:
        c.kid = r.headers["Location"]
    return c, r


def action_url(c, action, n):
    r = c.s.get(c.gw.url + f"/acme/directory?action={action}&orderId={n}")
    assert r.status_code == 200, r.text
    return r.json()["newOrder"]


def is_ip(n):
    try:
        ipaddress.ip_address(n)
        return True
    except ValueError:
        return False


def new_order(c, names, url=None, extra=None):
    url = url or c.dir["newOrder"]
    ids = [{"type": "ip" if is_ip(n) else "dns", "value": n} for n in names]
    return c.post(url, c.jws(url, {"identifiers": ids, **(extra or {})}))


def get(c, url):
    r = c.post(url, c.jws(url, None))
    assert r.status_code == 200, r.text
    return r.json()


def answer(c, authz_url, mode="ok"):
    """Serves the http-01 key authorization of this authorization (as `mode`) and answers the challenge."""
    a = get(c, authz_url)
    ch = [x for x in a["challenges"] if x["type"] == "http-01"][0]
    ANSWERS[ch["token"]] = (mode, f"{ch['token']}.{c.key.thumbprint()}")
    r = c.post(ch["url"], c.jws(ch["url"], {}))
    assert r.status_code == 200, r.text
    return ch


def wait_authz(c, authz_url, timeout=20):
    deadline = time.time() + timeout
    while True:
        a = get(c, authz_url)
        if a["status"] != "pending" or time.time() > deadline:
            return a
        time.sleep(0.1)


def http01_challenge(a):
    return [x for x in a["challenges"] if x["type"] == "http-01"][0]


def validate(c, order):
    for az in order["authorizations"]:
        if get(c, az)["status"] == "valid":
            continue
        answer(c, az)
        a = wait_authz(c, az)
        assert a["status"] == "valid", a


def csr_der(names, key=None, cn=None, subject=(), extra_sans=()):
    """A DER CSR for `names` (SANs), optional CN and other subject attributes, extra GeneralNames."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = list(subject) + ([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if is_ip(n) else x509.DNSName(n) for n in names] + list(extra_sans)
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def finalize(c, order, der):
    return c.post(order["finalize"], c.jws(order["finalize"], {"csr": b64u(der)}))


def wait_order(c, order_url, timeout=30):
    deadline = time.time() + timeout
    while True:
        o = get(c, order_url)
        if o["status"] not in ("processing", "ready", "pending") or time.time() > deadline:
            return o
        time.sleep(0.2)


def issue(c, names, url=None, key=None, cn=None, subject=(), extra_sans=()):
    """newOrder, http-01 for what is pending, finalize, download. Returns (order, leaf, key)."""
    r = new_order(c, names, url)
    assert r.status_code == 201, r.text
    order_url, o = r.headers["Location"], r.json()
    validate(c, o)
    key, der = csr_der(names, key=key, cn=cn, subject=subject, extra_sans=extra_sans)
    r = finalize(c, o, der)
    assert r.status_code == 200, r.text
    o = wait_order(c, order_url)
    assert o["status"] == "valid", o
    r = c.post(o["certificate"], c.jws(o["certificate"], None))
    assert r.status_code == 200, r.text
    return o, x509.load_pem_x509_certificates(r.content)[0], key


def object_of(gw, cert):
    """(ObjectId, DN) of the inventory object holding this certificate (Venafi dialect)."""
    api = gw.session(scope="certificate:manage")
    tp = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    found = api.get("/vedsdk/certificates/", params={"Thumbprint": tp}).json()["Certificates"]
    assert len(found) == 1, found
    d = api.get(f"/vedsdk/certificates/{found[0]['Guid']}").json()
    return d["ObjectId"], d["DN"]


def pub(obj):
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def eku(cert):
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def subject_pairs(cert):
    return [(a.oid, a.value) for a in cert.subject]


def assert_retry_after(r):
    v = r.headers.get("Retry-After")
    assert v, f"no Retry-After on {r.status_code}: {dict(r.headers)}"
    assert (v.isdigit() and int(v) > 0) or email.utils.parsedate_to_datetime(v), v


def utf8_der(s):
    b = s.encode()
    assert len(b) < 128
    return bytes([0x0C, len(b)]) + b


# ---------------------------------------------------------------- 1. names never validated

def test_finalize_refuses_upn_email_and_uri_sans_naming_the_value(pin_gw):
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileNames", "--prevalidated"))
    upn, mail, uri = "administrator@example.test", "admin@example.test", "spiffe://example.test/ns/prod/sa/admin"
    for extra, value in ((x509.OtherName(UPN_OID, utf8_der(upn)), upn), (x509.RFC822Name(mail), mail),
                         (x509.UniformResourceIdentifier(uri), uri)):
        r = new_order(c, ["a.example.test"])
        assert r.status_code == 201, r.text
        order_url, o = r.headers["Location"], r.json()
        _, der = csr_der(["a.example.test"], cn="a.example.test", extra_sans=[extra])
        j = problem(finalize(c, o, der), 400, "badCSR")
        assert value in j["detail"], j
        assert get(c, order_url)["status"] != "valid"


def test_csr_subject_fields_are_ignored_and_eku_is_server_auth_only(pin_gw):
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileSubject", "--prevalidated"))
    hostile = [x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"), x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Nowhere"),
               x509.NameAttribute(NameOID.LOCALITY_NAME, "Spooftown"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
               x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Domain Admins")]
    _, leaf, _ = issue(c, ["subj.example.test"], cn="subj.example.test", subject=hostile)
    assert subject_pairs(leaf) == [(NameOID.COMMON_NAME, "subj.example.test")], leaf.subject.rfc4514_string()
    assert eku(leaf) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_folder_subject_values_and_acme_ekus_replace_the_csrs(pin_gw):
    folder = "\\VED\\Policy\\HostileSubjectFolder"
    c = register(pin_gw, eab(pin_gw, folder, "--prevalidated", settings=(
        "domains=example.test", "organization=Renewgate Tests", "org_units=Ops", "city=Boston", "state=MA",
        "country=US", "acme_ekus=serverAuth,clientAuth")))
    hostile = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"), x509.NameAttribute(NameOID.LOCALITY_NAME, "Spooftown"),
               x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Domain Admins")]
    _, leaf, _ = issue(c, ["subjf.example.test"], cn="subjf.example.test", subject=hostile)
    got = {}
    for oid, v in subject_pairs(leaf):
        got.setdefault(oid, []).append(v)
    assert got == {NameOID.COMMON_NAME: ["subjf.example.test"], NameOID.ORGANIZATION_NAME: ["Renewgate Tests"],
                   NameOID.ORGANIZATIONAL_UNIT_NAME: ["Ops"], NameOID.LOCALITY_NAME: ["Boston"],
                   NameOID.STATE_OR_PROVINCE_NAME: ["MA"], NameOID.COUNTRY_NAME: ["US"]}, leaf.subject.rfc4514_string()
    assert set(eku(leaf)) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_cn_is_the_first_identifier_and_absent_beyond_64_characters(pin_gw):
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileCn", "--prevalidated"))
    # The CSR's CN is one of the order's names, but not the first: the certificate's CN is the first.
    _, leaf, _ = issue(c, ["cn1.example.test", "cn2.example.test"], cn="cn2.example.test")
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["cn1.example.test"]
    # A CSR CN that is not an order name is refused.
    r = new_order(c, ["cn3.example.test"])
    _, der = csr_der(["cn3.example.test"], cn="evil.example.test")
    problem(finalize(c, r.json(), der), 400, "badCSR")
    # A first identifier longer than 64 characters: no CN at all.
    long_name = "l" * 60 + ".example.test"
    assert len(long_name) > 64
    _, leaf, _ = issue(c, [long_name, "short.example.test"])
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == [], leaf.subject.rfc4514_string()
    sans = set(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    assert sans == {long_name, "short.example.test"}


# ---------------------------------------------------------------- 2. another key's objects

def test_another_keys_object_answers_like_an_unknown_order(pin_gw):
    folder = "\\VED\\Policy\\HostileOwn"
    ka = eab(pin_gw, folder, "--prevalidated", settings=("domains=example.test", "validity=30d"))
    kb = eab(pin_gw, folder, "--prevalidated", settings=None)
    a, b = register(pin_gw, ka), register(pin_gw, kb)
    o, leaf, _ = issue(a, ["own.example.test"])
    n = o["x-renewgate"]["orderId"]
    unknown = problem(new_order(b, ["own.example.test"], action_url(b, "renew", 999999)), 403, "unauthorized")
    assert unknown["detail"] == "Order 999999 not found for this account", unknown
    for action, names in (("reissue", ["stolen.example.test"]), ("renew", ["own.example.test"])):
        j = problem(new_order(b, names, action_url(b, action, n)), 403, "unauthorized")
        assert j["detail"] == f"Order {n} not found for this account", (action, j)
    # A's object is untouched.
    api = pin_gw.session(scope="certificate:manage")
    assert object_of(pin_gw, leaf)[0] == n
    assert api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": folder + "\\own.example.test",
                                                           "Format": "Base64"}).status_code == 200
    # A second account registered with A's EAB key shares A's objects: explicit renew and auto-detection.
    a2 = register(pin_gw, ka)
    o2, leaf2, _ = issue(a2, ["own.example.test"], url=action_url(a2, "renew", n))
    assert o2["x-renewgate"] == {"action": "renew", "orderId": n} and leaf2.serial_number != leaf.serial_number
    o3, _, _ = issue(a2, ["own.example.test"])
    assert o3["x-renewgate"] == {"action": "renew", "orderId": n}


def test_auto_detection_never_picks_another_keys_object(pin_gw):
    folder = "\\VED\\Policy\\HostileAuto"
    ka = eab(pin_gw, folder, "--prevalidated", settings=("domains=example.test", "validity=30d"))
    kb = eab(pin_gw, folder, "--prevalidated", settings=None)
    a, b = register(pin_gw, ka), register(pin_gw, kb)
    o, _, _ = issue(a, ["auto.example.test"])
    n = o["x-renewgate"]["orderId"]
    # Inside the renewal window (30-day certificates), but the object is A's key's: B enrolls anew.
    r = new_order(b, ["auto.example.test"])
    assert r.status_code == 201, r.text
    xr = r.json()["x-renewgate"]
    assert xr["action"] == "enroll" and xr["orderId"] != n, xr
    ob, _, _ = issue(b, ["auto.example.test"])
    assert ob["x-renewgate"]["action"] == "enroll" and ob["x-renewgate"]["orderId"] != n, ob["x-renewgate"]
    # And A's auto-detection still renews A's object, not B's newer one.
    oa, _, _ = issue(a, ["auto.example.test"])
    assert oa["x-renewgate"] == {"action": "renew", "orderId": n}


def test_folder_orders_key_may_reissue_another_keys_object_of_its_folder(pin_gw):
    folder, team = "\\VED\\Policy\\HostileFO", "\\VED\\Policy\\HostileFO\\Team"
    pin_gw.cli("policy", "set", folder, "domains=example.test")
    a = register(pin_gw, eab(pin_gw, team, "--prevalidated"))
    b = register(pin_gw, eab(pin_gw, folder, settings=None))
    o, leaf, _ = issue(a, ["team.example.test"])
    n = o["x-renewgate"]["orderId"]
    # A plain key of the parent folder may not ...
    problem(new_order(b, ["team.example.test", "team2.example.test"], action_url(b, "reissue", n)), 403, "unauthorized")
    # ... a --folder-orders key of it may.
    c = register(pin_gw, eab(pin_gw, folder, "--folder-orders", settings=None))
    oc, leafc, _ = issue(c, ["team.example.test", "team2.example.test"], url=action_url(c, "reissue", n))
    assert oc["x-renewgate"] == {"action": "reissue", "orderId": n}
    assert set(leafc.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)) \
        == {"team.example.test", "team2.example.test"}
    assert object_of(pin_gw, leafc) == (n, team + "\\team.example.test")


def test_assigned_object_may_be_renewed_by_the_assigned_key(pin_gw):
    folder = "\\VED\\Policy\\HostileAssign"
    ka = eab(pin_gw, folder, "--prevalidated", settings=("domains=example.test", "validity=30d"))
    kb = eab(pin_gw, folder, "--prevalidated", settings=None)
    a, b = register(pin_gw, ka), register(pin_gw, kb)
    o, leaf, _ = issue(a, ["assigned.example.test"])
    n = o["x-renewgate"]["orderId"]
    problem(new_order(b, ["assigned.example.test"], action_url(b, "renew", n)), 403, "unauthorized")
    pin_gw.cli("acme", "assign", "--eab-kid", kb[0], "--object", str(n))
    ob, leafb, _ = issue(b, ["assigned.example.test"], url=action_url(b, "renew", n))
    assert ob["x-renewgate"] == {"action": "renew", "orderId": n} and leafb.serial_number != leaf.serial_number
    # Auto-detection matches an assigned object too.
    ob2, _, _ = issue(b, ["assigned.example.test"])
    assert ob2["x-renewgate"] == {"action": "renew", "orderId": n}


def test_accounts_without_eab_issue_under_the_default_acme_folder(open_gw):
    c, r = register_without_eab(open_gw)
    assert r.status_code == 201, r.text
    _, leaf, _ = issue(c, ["open.example.test"])
    _, dn = object_of(open_gw, leaf)
    assert dn == "\\VED\\Policy\\ACME\\open.example.test", dn


def test_eleventh_account_without_eab_within_an_hour_is_rate_limited(gateway_factory_module):  # noqa: F811
    gw = gateway_factory_module(env={"RENEWGATE_ACME__EAB_REQUIRED": "false"})
    for i in range(10):
        _, r = register_without_eab(gw)
        assert r.status_code == 201, (i, r.status_code, r.text)
    _, r = register_without_eab(gw)
    problem(r, 429, "rateLimited")
    assert_retry_after(r)
    # Accounts with EAB are not counted.
    register(gw, eab(gw, "\\VED\\Policy\\HostileRate"))


# ---------------------------------------------------------------- 3. deadlines and limits

def test_a_drip_fed_http01_answer_fails_within_the_validation_deadline(pin_gw):
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileSlow"))
    r = new_order(c, ["drip.example.test"])
    assert r.status_code == 201, r.text
    az = r.json()["authorizations"][0]
    answer(c, az, mode="drip")
    t0 = time.time()
    a = wait_authz(c, az, timeout=12)
    took = time.time() - t0
    ch = http01_challenge(a)
    assert a["status"] == "invalid" and ch["status"] == "invalid", f"after {took:.1f}s: {a}"
    assert took <= 10, f"the validation took {took:.1f}s with a 3 s deadline"
    assert ch["error"]["detail"]


def test_more_than_100_identifiers_are_rejected(pin_gw):
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileMany"))
    problem(new_order(c, [f"n{i}.many.example.test" for i in range(101)]), 400, "rejectedIdentifier")
    r = new_order(c, [f"n{i}.many.example.test" for i in range(100)])
    assert r.status_code == 201, r.text


def test_300_pending_authorizations_per_account_are_the_most(pin_gw):
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostilePending"))
    for k in range(3):
        r = new_order(c, [f"p{k}-{i}.pending.example.test" for i in range(100)])
        assert r.status_code == 201, (k, r.text)
    r = new_order(c, ["one-more.pending.example.test"])
    problem(r, 429, "rateLimited")
    assert_retry_after(r)


# ---------------------------------------------------------------- 4./5. what validation reaches

def refused(a, address):
    ch = http01_challenge(a)
    assert a["status"] == "invalid" and ch["status"] == "invalid", a
    err = ch["error"]
    assert err["type"] == "urn:ietf:params:acme:error:connection", err
    assert "refused" in err["detail"] and address in err["detail"], err


def validate_one(c, name):
    r = new_order(c, [name])
    assert r.status_code == 201, r.text
    az = r.json()["authorizations"][0]
    answer(c, az)
    return wait_authz(c, az)


def test_loopback_ip_identifiers_are_refused_unless_allowed(strict_gw, loop_gw):
    # No domains on the folder: an IP identifier is the order's first name (its CN).
    c = register(strict_gw, eab(strict_gw, "\\VED\\Policy\\HostileIp", settings=()))
    refused(validate_one(c, "127.0.0.1"), "127.0.0.1")
    # Control: the same with allow_loopback is validated.
    c2 = register(loop_gw, eab(loop_gw, "\\VED\\Policy\\HostileIp", settings=()))
    a = validate_one(c2, "127.0.0.1")
    assert a["status"] == "valid", a


def test_ipv4_mapped_loopback_identifier_is_refused(strict_gw):
    c = register(strict_gw, eab(strict_gw, "\\VED\\Policy\\HostileIpMapped", settings=()))
    # Refused at the order (rejectedIdentifier) or at validation (connection, "refused").
    r = new_order(c, ["::ffff:127.0.0.1"])
    if r.status_code == 400:
        problem(r, 400, "rejectedIdentifier")
    else:
        assert r.status_code == 201, r.text
        az = r.json()["authorizations"][0]
        answer(c, az)
        a = wait_authz(c, az)
        ch = http01_challenge(a)
        assert a["status"] == "invalid" and ch["error"]["type"] == "urn:ietf:params:acme:error:connection", a
        assert "refused" in ch["error"]["detail"], a


def test_names_resolving_to_loopback_are_refused_unless_allowed(strict_gw, loop_gw):
    # pebble-challtestsrv answers every A query with 127.0.0.1.
    c = register(strict_gw, eab(strict_gw, "\\VED\\Policy\\HostileLoopName"))
    refused(validate_one(c, "loopname.example.test"), "127.0.0.1")
    c2 = register(loop_gw, eab(loop_gw, "\\VED\\Policy\\HostileLoopName"))
    a = validate_one(c2, "loopname.example.test")
    assert a["status"] == "valid", a


def test_a_name_with_aaaa_and_a_records_falls_back_to_ipv4(loop_gw, challtestsrv):  # noqa: F811
    _, call = challtestsrv
    call("/add-a", host="dual.example.test", addresses=["127.0.0.1"])
    call("/add-aaaa", host="dual.example.test", addresses=["::1"])
    c = register(loop_gw, eab(loop_gw, "\\VED\\Policy\\HostileDual"))
    # The http-01 server listens on 127.0.0.1 only: [::1] is refused, IPv4 must be tried next.
    a = validate_one(c, "dual.example.test")
    assert a["status"] == "valid", a


# ---------------------------------------------------------------- 6. key reuse and key compromise

def test_renewing_with_the_current_key_is_allowed_by_default(pin_gw):
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileReuse", "--prevalidated",
                             settings=("domains=example.test", "validity=30d")))
    o, leaf, key = issue(c, ["reuse.example.test"])
    n = o["x-renewgate"]["orderId"]
    o2, leaf2, _ = issue(c, ["reuse.example.test"], url=action_url(c, "renew", n), key=key)
    assert o2["x-renewgate"] == {"action": "renew", "orderId": n}
    assert pub(leaf2) == pub(leaf) and leaf2.serial_number != leaf.serial_number
    o3, leaf3, _ = issue(c, ["reuse.example.test"], key=key)  # auto-detected renew
    assert o3["x-renewgate"] == {"action": "renew", "orderId": n} and pub(leaf3) == pub(leaf)


def test_finalize_counts_and_audits_what_it_did(pin_gw):
    """An enrolling finalize counts an ACME enrollment; a renewing one counts a renewal and
    audits `renew` of its object, as the account ("acme"); a refused one counts a failure."""
    from test_metrics import scrape, value
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileCounted", "--prevalidated"))
    before = scrape(pin_gw)
    o, leaf, key = issue(c, ["counted.example.test"])
    n = o["x-renewgate"]["orderId"]
    _, dn = object_of(pin_gw, leaf)
    issue(c, ["counted.example.test"], url=action_url(c, "renew", n), key=key)
    # A renew order finalized with a CSR for other names: refused, counted as a failed renewal.
    r = new_order(c, ["counted.example.test"], url=action_url(c, "renew", n))
    assert r.status_code == 201, r.text
    problem(finalize(c, r.json(), csr_der(["other.example.test"])[1]), 400, "badCSR")
    after = scrape(pin_gw)
    for name, outcome, more in [("renewgate_enrollments_total", "success", 1),
                                ("renewgate_renewals_total", "success", 1),
                                ("renewgate_renewals_total", "failure", 1)]:
        assert value(after, name, dialect="acme", outcome=outcome) \
            == value(before, name, dialect="acme", outcome=outcome) + more, (name, outcome)
    rows = db_rows(pin_gw, "SELECT actor, outcome, source FROM audit_log WHERE action = 'renew' AND target = '"
                   + dn.replace("'", "''") + "'")
    assert [tuple(r) for r in rows] == [("acme", "success", "acme")], rows


def test_finalizes_of_one_order_racing_issue_one_certificate(pin_gw):
    """Finalizes of one ready order sent at once: one is accepted, the others are refused
    (orderNotReady, or rateLimited while its object is being created), and the order holds one
    object and one certificate. The order becomes `processing` in the transaction that enqueues
    its job, and only if it is still `ready`."""
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileRace", "--prevalidated"))
    for round_ in range(3):
        name = f"race{round_}.example.test"
        r = new_order(c, [name])
        assert r.status_code == 201, r.text
        order_url, o = r.headers["Location"], r.json()
        assert o["status"] == "ready", o
        # Signed beforehand (each with its own nonce), sent together.
        bodies = [c.jws(o["finalize"], {"csr": b64u(csr_der([name])[1])}) for _ in range(6)]
        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: requests_post(c, o["finalize"], b), bodies))
        codes = sorted(a.status_code for a in answers)
        assert codes.count(200) == 1, [(a.status_code, a.text[:200]) for a in answers]
        for a in answers:
            if a.status_code != 200:
                kind = a.json()["type"].rsplit(":", 1)[-1]
                assert (a.status_code, kind) in {(403, "orderNotReady"), (429, "rateLimited")}, a.text
        assert wait_order(c, order_url)["status"] == "valid"
        objects = db_scalar(pin_gw, "SELECT COUNT(*) FROM cert_objects WHERE name LIKE '" + name + "%'")
        certs = db_scalar(pin_gw, "SELECT COUNT(*) FROM certificates c JOIN cert_objects o ON o.id = c.object_id "
                          "WHERE o.name LIKE '" + name + "%'")
        assert (int(objects), int(certs)) == (1, 1), (objects, certs)


def requests_post(c, url, body):
    """One POST on a session of its own (a requests.Session is not shared between threads)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = c.gw.ca_bundle
    return s.post(url, data=json.dumps(body), headers={"Content-Type": "application/jose+json"},
                  timeout=60)


def test_a_key_revoked_for_key_compromise_is_refused_everywhere(pin_gw):
    folder = "\\VED\\Policy\\HostileCompromise"
    c = register(pin_gw, eab(pin_gw, folder, "--prevalidated"))
    _, leaf, key = issue(c, ["kc1.example.test"])
    url = c.dir["revokeCert"]
    r = c.post(url, c.jws(url, {"certificate": b64u(leaf.public_bytes(serialization.Encoding.DER)), "reason": 1}))
    assert r.status_code == 200, r.text
    # ACME: a new order (a new object), finalized with the compromised key.
    r = new_order(c, ["kc2.example.test"])
    assert r.status_code == 201, r.text
    _, der = csr_der(["kc2.example.test"], key=key)
    problem(finalize(c, r.json(), der), 400, "badPublicKey")
    # Venafi: a request with a PKCS#10 of that key.
    pem = x509.load_der_x509_csr(csr_der(["kc3.example.test"], key=key, cn="kc3.example.test")[1]) \
        .public_bytes(serialization.Encoding.PEM).decode()
    api = pin_gw.session(scope="certificate:manage")
    r = api.post("/vedsdk/Certificates/Request", json={"PolicyDN": folder, "PKCS10": pem, "ObjectName": "kc3.example.test"})
    assert_venafi_error(r, 400, exact=COMPROMISED)


# ---------------------------------------------------------------- 7. nonces

def test_new_nonce_writes_nothing_and_a_nonce_is_used_once(pin_gw):
    c = register(pin_gw, eab(pin_gw, "\\VED\\Policy\\HostileNonce"))
    before = int(db_scalar(pin_gw, "SELECT COUNT(*) FROM acme_nonces"))
    nonces = [c.nonce() for _ in range(200)]
    after = int(db_scalar(pin_gw, "SELECT COUNT(*) FROM acme_nonces"))
    assert after == before, f"200 HEAD new-nonce added {after - before} rows"
    assert len(set(nonces)) == 200 and all(re.fullmatch(r"[A-Za-z0-9_-]{22}", n) for n in nonces), nonces[:3]
    n = nonces[-1]
    r = c.post(c.kid, c.jws(c.kid, None, nonce=n))
    assert r.status_code == 200, r.text
    problem(c.post(c.kid, c.jws(c.kid, None, nonce=n)), 400, "badNonce")


def test_a_nonce_used_at_one_instance_is_refused_at_the_other(backend, gateway_factory):
    if backend != "postgres":
        pytest.skip("PostgreSQL only: two instances share one PostgreSQL database (SQLite is one process's file)")
    import base64
    import os
    shared = gateway_factory.new_database()
    key = base64.b64encode(os.urandom(32)).decode()
    ga = gateway_factory(database=shared, env={"RENEWGATE_MASTER_KEY": key})
    gb = gateway_factory(database=shared, env={"RENEWGATE_MASTER_KEY": key})
    a = register(ga, eab(ga, "\\VED\\Policy\\HostileTwo"))
    b = Client(gb, a.key)  # the same account key, speaking to B (jwk: newAccount onlyReturnExisting)
    before = int(db_scalar(ga, "SELECT COUNT(*) FROM acme_nonces"))
    for _ in range(20):
        a.nonce()
        b.nonce()
    assert int(db_scalar(ga, "SELECT COUNT(*) FROM acme_nonces")) == before, "new-nonce wrote rows"
    url_b = b.dir["newAccount"]
    n = a.nonce()
    assert a.post(a.kid, a.jws(a.kid, None, nonce=n)).status_code == 200
    problem(b.post(url_b, b.jws(url_b, {"onlyReturnExisting": True}, nonce=n)), 400, "badNonce")
    # A nonce B handed out is good at A, once.
    n2 = b.nonce()
    assert a.post(a.kid, a.jws(a.kid, None, nonce=n2)).status_code == 200
    problem(b.post(url_b, b.jws(url_b, {"onlyReturnExisting": True}, nonce=n2)), 400, "badNonce")


# ---------------------------------------------------------------- kill -9 during validations

def test_validations_pending_at_kill_9_all_end_valid_or_invalid(gateway_factory_module, http01):  # noqa: F811
    gw = gateway_factory_module(env={"RENEWGATE_ACME__VALIDATION__HTTP01_PORT": str(http01),
                                     "RENEWGATE_ACME__VALIDATION__HOSTS": PINNED,
                                     "RENEWGATE_ACME__VALIDATION__TIMEOUT_S": "5"})
    c = register(gw, eab(gw, "\\VED\\Policy\\HostileKill"))
    names = [f"k{i}.kill.example.test" for i in range(4)]
    r = new_order(c, names)
    assert r.status_code == 201, r.text
    authz = r.json()["authorizations"]
    challenges = [answer(c, az, mode="hang") for az in authz]
    states = [http01_challenge(get(c, az))["status"] for az in authz]
    assert states == ["processing"] * 4, states
    gw.stop(kill=True)
    # After the restart: two answer correctly, two keep dripping (never finishing in time).
    for i, ch in enumerate(challenges):
        ANSWERS[ch["token"]] = ("ok" if i < 2 else "drip", ANSWERS[ch["token"]][1])
    gw.start()
    deadline = time.time() + 60
    while True:
        found = [http01_challenge(get(c, az))["status"] for az in authz]
        if "processing" not in found or time.time() > deadline:
            break
        time.sleep(0.5)
    assert found == ["valid", "valid", "invalid", "invalid"], found
