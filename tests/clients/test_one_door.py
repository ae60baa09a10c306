"""Regression tests for the holes the "One door" issue lists, each on SQLite and PostgreSQL: a rule
one path applied and another forgot. Each test fails on the build before the fix."""
import uuid

import pytest
import requests

from rg_helpers import assert_venafi_error, db_scalar, make_csr, sql_str
from test_acme_accounts import Client, Key, problem

ROOT = "\\VED\\Policy"

# Names no certificate may carry (hole 3): a NUL that splits the name for C string readers, and
# characters that are no part of a DNS name.
BAD_DNS_NAMES = [
    "attacker.com\x00.example.com",
    "has space.example.com",
    "slash/x.example.com",
    "query?.example.com",
    "crlf\r\n.example.com",
    "a..b.example.com",
    "*.com",
]


@pytest.fixture(scope="module")
def s(gateway):
    return gateway.session()


def objects_named(gw, fragment):
    return int(db_scalar(gw, f"SELECT COUNT(*) FROM cert_objects WHERE dn LIKE {sql_str('%' + fragment + '%')}"))


@pytest.mark.parametrize("bad", BAD_DNS_NAMES, ids=lambda b: repr(b))
def test_venafi_request_refuses_a_malformed_san(gateway, s, bad):
    cn = f"names-{uuid.uuid4().hex[:8]}.example.com"
    jobs_before = db_scalar(gateway, "SELECT COUNT(*) FROM jobs")
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": ROOT, "Subject": cn, "ObjectName": cn, "KeyAlgorithm": "ECC", "EllipticCurve": "P256",
        "SubjectAltNames": [{"Type": 2, "Name": cn}, {"Type": 2, "Name": bad}]})
    body = assert_venafi_error(r, 400, startswith="invalid DNS name")
    # The value is named, escaped: no raw control character reaches the message.
    assert not any(ord(ch) < 0x20 for ch in body["Error"]), body
    assert db_scalar(gateway, "SELECT COUNT(*) FROM jobs") == jobs_before, "nothing is queued"
    assert objects_named(gateway, cn) == 0, "no object is created"


def test_venafi_csr_with_a_nul_in_a_san_is_refused(gateway, s):
    cn = f"csr-nul-{uuid.uuid4().hex[:8]}.example.com"
    _, csr = make_csr(cn, dns=[cn, "attacker.com\x00.example.com"])
    r = s.post("/vedsdk/certificates/request", json={"PolicyDN": ROOT, "PKCS10": csr, "ObjectName": cn})
    assert_venafi_error(r, 400, contains="attacker.com\\0.example.com")
    assert objects_named(gateway, cn) == 0


def test_venafi_subject_with_a_control_character_is_refused(gateway, s):
    cn = f"cn-{uuid.uuid4().hex[:8]}"
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": ROOT, "Subject": cn + "\nforged", "ObjectName": cn, "KeyAlgorithm": "ECC",
        "EllipticCurve": "P256"})
    assert_venafi_error(r, 400, startswith="invalid common name")
    assert objects_named(gateway, cn) == 0


def test_names_are_issued_normalized(gateway, s):
    """One trailing dot removed and an internationalized name issued as its A-label."""
    from rg_helpers import san_sets, wait_retrieve, retrieved_certs
    cn = f"idn-{uuid.uuid4().hex[:8]}.example.com"
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": ROOT, "Subject": cn, "ObjectName": cn, "KeyAlgorithm": "ECC", "EllipticCurve": "P256",
        "SubjectAltNames": [{"Type": 2, "Name": cn + "."}, {"Type": 2, "Name": "bücher.example.com"}]})
    assert r.status_code == 200, r.text
    cert = retrieved_certs(wait_retrieve(s, r.json()["CertificateDN"]))[0]
    assert san_sets(cert)["dns"] == {cn, "xn--bcher-kva.example.com"}


def test_folder_dn_with_a_newline_is_refused(gateway, s):
    """Hole 7: a folder DN holding a newline was accepted and logged raw."""
    forged = ROOT + "\\evil\nlevel=INFO msg=forged"
    r = gateway.cli("policy", "set", forged, "domains=example.com", check=False)
    assert r.returncode != 0
    assert "control character" in (r.stderr + r.stdout)
    assert int(db_scalar(gateway, "SELECT COUNT(*) FROM policy_folders WHERE dn LIKE '%evil%'")) == 0
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": forged, "Subject": "x.example.com", "ObjectName": "x.example.com", "KeyAlgorithm": "ECC",
        "EllipticCurve": "P256"})
    assert r.status_code == 400, r.text
    assert "\nlevel=INFO" not in gateway.logs()


def test_acme_new_order_refuses_a_malformed_identifier(gateway):
    gateway.cli("policy", "set", "\\VED\\Policy\\AcmeNames", "domains=example.test")
    env = dict(line.split("=", 1) for line in gateway.cli(
        "acme", "eab", "create", "--policy", "\\VED\\Policy\\AcmeNames").stdout.split())
    c = Client(gateway, Key("ES256"))
    assert c.register(env["EAB_KID"], env["EAB_HMAC_KEY"]).status_code == 201
    url = c.dir["newOrder"]
    for bad in ["a\x00b.example.test", "sp ace.example.test", "x/y.example.test"]:
        orders_before = db_scalar(gateway, "SELECT COUNT(*) FROM acme_orders")
        r = c.post(url, c.jws(url, {"identifiers": [{"type": "dns", "value": bad}]}))
        j = problem(r, 400, "rejectedIdentifier")
        assert "invalid DNS name" in j["detail"], j
        assert db_scalar(gateway, "SELECT COUNT(*) FROM acme_orders") == orders_before


# ---------------------------------------------------------------- hole 9: password guessing

def oauth(gw, user, password, headers=None):
    return requests.post(gw.url + "/vedauth/authorize/oauth", verify=gw.ca_bundle, timeout=30, headers=headers or {},
                         json={"username": user, "password": password, "client_id": "t", "scope": "certificate"})


def keyfactor_basic(gw, user, password):
    return requests.get(gw.url + "/KeyfactorAPI/Certificates", verify=gw.ca_bundle, timeout=30,
                        auth=(user, password), headers={"x-keyfactor-requested-with": "APIClient"})


def audit_count(gw, action):
    return int(db_scalar(gw, f"SELECT COUNT(*) FROM audit_log WHERE action = {sql_str(action)}"))


def test_failed_logins_close_the_user_and_source_pair(gateway_factory):
    gw = gateway_factory()
    for _ in range(10):
        r = oauth(gw, "admin", "wrong-password")
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    # Closed: even the right password is answered 429 at once, with Retry-After, in the OAuth shape.
    r = oauth(gw, "admin", gw.admin_password)
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.json()["error"] == "too_many_requests"
    assert audit_count(gw, "login_throttled") == 1, "one audit row per key and window"
    for _ in range(3):
        assert oauth(gw, "admin", "wrong-password").status_code == 429
    assert audit_count(gw, "login_throttled") == 1
    # The legacy login and Keyfactor Basic share the gate: same user, same source.
    r = requests.post(gw.url + "/vedsdk/authorize", verify=gw.ca_bundle, timeout=30,
                      json={"Username": "admin", "Password": gw.admin_password})
    assert r.status_code == 429 and r.headers.get("Retry-After"), r.text
    r = keyfactor_basic(gw, "admin", gw.admin_password)
    assert r.status_code == 429 and r.headers.get("Retry-After"), r.text
    assert set(r.json()) == {"ErrorCode", "Message"}
    # Refused callers write nothing, also on audited routes.
    rows = int(db_scalar(gw, "SELECT COUNT(*) FROM audit_log"))
    r = requests.post(gw.url + "/KeyfactorAPI/Enrollment/Renew", verify=gw.ca_bundle, timeout=30,
                      auth=("admin", "wrong"), json={"CertificateId": 1},
                      headers={"x-keyfactor-requested-with": "APIClient"})
    assert r.status_code == 429, r.text
    assert int(db_scalar(gw, "SELECT COUNT(*) FROM audit_log")) == rows
    # A user name alone never locks an account: another user from this source is open, and so
    # are valid bearer tokens of the closed user.
    gw.cli("user", "add", "other", "--password", "Other-Password-1234", "--scope", "certificate")
    assert oauth(gw, "other", "Other-Password-1234").status_code == 200


def test_failed_logins_close_the_source(gateway_factory):
    gw = gateway_factory(env={"RENEWGATE_AUTH__THROTTLE__PER_SOURCE": "5"})
    token = gw.token()
    for i in range(5):
        assert oauth(gw, f"nobody-{i}", "x").status_code == 400
    r = oauth(gw, "admin", gw.admin_password)
    assert r.status_code == 429, r.text
    # Tokens already issued are never throttled.
    r = requests.get(gw.url + "/vedsdk/systemstatus/version", verify=gw.ca_bundle, timeout=30,
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def test_throttle_behind_a_trusted_proxy_counts_the_forwarded_client(gateway_factory):
    gw = gateway_factory(env={"RENEWGATE_HTTP__TRUSTED_PROXIES": "127.0.0.1",
                              "RENEWGATE_AUTH__THROTTLE__PER_USER_SOURCE": "3"})
    a = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(3):
        assert oauth(gw, "admin", "wrong", headers=a).status_code == 400
    assert oauth(gw, "admin", gw.admin_password, headers=a).status_code == 429
    # Another client behind the same proxy is another source.
    assert oauth(gw, "admin", gw.admin_password, headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 200
    # A spoofed hop in front of the client does not move the source.
    spoof = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    assert oauth(gw, "admin", gw.admin_password, headers=spoof).status_code == 429


def test_throttle_disabled_with_zero(gateway_factory):
    gw = gateway_factory(env={"RENEWGATE_AUTH__THROTTLE__PER_USER_SOURCE": "0",
                              "RENEWGATE_AUTH__THROTTLE__PER_SOURCE": "0"})
    for _ in range(12):
        assert oauth(gw, "admin", "wrong").status_code == 400
    assert oauth(gw, "admin", gw.admin_password).status_code == 200


# ---------------------------------------------------------------- holes 6 and 9: what anonymous callers write

def test_unauthenticated_calls_write_nothing(gateway):
    before = int(db_scalar(gateway, "SELECT COUNT(*) FROM audit_log"))
    for path in ["/vedsdk/certificates/renew", "/vedsdk/certificates/revoke", "/KeyfactorAPI/Certificates/Recover",
                 "/CMSApi/CertEnroll/3/Renew"]:
        r = requests.post(gateway.url + path, verify=gateway.ca_bundle, timeout=30, json={"CertificateDN": "x"},
                          headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401, (path, r.status_code, r.text)
    assert int(db_scalar(gateway, "SELECT COUNT(*) FROM audit_log")) == before


def test_data_directory_is_private(gateway):
    import os
    import stat
    root = gateway.data_dir
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


# ---------------------------------------------------------------- hole 9: credentials

def test_user_add_refuses_a_weak_password(gateway):
    r = gateway.cli("user", "add", "weak-" + uuid.uuid4().hex[:6], "--password", "a", check=False)
    assert r.returncode != 0 and "not strong enough" in r.stderr, r.stderr
    r = gateway.cli("user", "add", "weak-" + uuid.uuid4().hex[:6], "--password", "abcdefgh1234", check=False)
    assert r.returncode != 0


def verify(gw, token):
    return requests.get(gw.url + "/vedauth/authorize/verify", verify=gw.ca_bundle, timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


def test_disable_enable_and_passwd_revoke_tokens(gateway):
    name = "cred-" + uuid.uuid4().hex[:6]
    pw = "Cred-Passw0rd!1"
    gateway.cli("user", "add", name, "--password", pw, "--scope", "certificate:manage")
    token = gateway.token(user=name, password=pw, scope="certificate")
    assert verify(gateway, token).status_code == 200
    gateway.cli("user", "disable", name)
    assert verify(gateway, token).status_code == 401, "a disabled user's tokens stop working at once"
    assert oauth(gateway, name, pw).status_code == 400, "a disabled user cannot sign in"
    gateway.cli("user", "enable", name)
    assert verify(gateway, token).status_code == 401, "tokens revoked at disable stay revoked"
    token = gateway.token(user=name, password=pw, scope="certificate")
    r = gateway.cli("user", "passwd", name, "--password-stdin", input="short\n", check=False)
    assert r.returncode != 0 and "not strong enough" in r.stderr
    gateway.cli("user", "passwd", name, "--password-stdin", input="New-Cred-Passw0rd!2\n")
    assert verify(gateway, token).status_code == 401, "a password change revokes the user's tokens"
    assert oauth(gateway, name, pw).status_code == 400
    assert oauth(gateway, name, "New-Cred-Passw0rd!2").status_code == 200
    details = db_scalar(gateway, f"SELECT COUNT(*) FROM audit_log WHERE action = 'user_change' AND target = {sql_str(name)}")
    assert int(details) == 4, "add, disable, enable, passwd are audited"
    r = gateway.cli("user", "disable", "no-such-user-" + uuid.uuid4().hex[:6], check=False)
    assert r.returncode != 0


def test_agent_tokens_expire(gateway):
    machine = "lifetime-" + uuid.uuid4().hex[:6]
    gateway.cli("agent", "token", "create", "--client-machine", machine, "--lifetime", "2h")
    days = db_scalar(gateway, f"SELECT COUNT(*) FROM tokens t JOIN users u ON u.id = t.user_id WHERE "
                              f"u.name = {sql_str('agent-' + machine)}")
    assert int(days) == 1
    gateway.cli("agent", "token", "create", "--client-machine", machine + "b")
    # The default is 90 days, not ten years.
    rows = db_scalar(gateway, "SELECT MAX(expires_at) FROM tokens WHERE kind = 'agent'")
    import datetime
    latest = datetime.datetime.fromisoformat(str(rows).replace(" ", "T")[:19])
    assert latest < datetime.datetime.utcnow() + datetime.timedelta(days=91), rows


# ---------------------------------------------------------------- hole 8: existence does not leak

def test_keyfactor_hidden_and_missing_certificates_answer_alike(gateway, s):
    from rg_helpers import request_service, wait_retrieve
    tag = uuid.uuid4().hex[:6]
    a, b = f"{ROOT}\\LeakA{tag}", f"{ROOT}\\LeakB{tag}"
    for f in (a, b):
        gateway.cli("policy", "set", f, "domains=example.com")
    dn = request_service(s, b, f"leak-{tag}.example.com")
    wait_retrieve(s, dn)
    hidden = int(db_scalar(gateway, f"SELECT c.id FROM certificates c JOIN cert_objects o ON o.id = c.object_id "
                                    f"WHERE o.dn = {sql_str(dn)}"))
    missing = hidden + 1_000_000
    user, pw = f"leak-{tag}", "Leak-Passw0rd!1"
    gateway.cli("user", "add", user, "--password", pw, "--scope", "certificate:manage,revoke",
                "--folder", f"{a}:read,write,key")

    def call(method, path, **kw):
        return requests.request(method, gateway.url + path, verify=gateway.ca_bundle, timeout=30, auth=(user, pw),
                                headers={"x-keyfactor-requested-with": "APIClient"}, **kw)

    for method, path, body in [
        ("GET", "/KeyfactorAPI/Certificates/{}", None),
        ("POST", "/KeyfactorAPI/Certificates/Recover", {"CertID": "{}", "Password": "Recover-Passw0rd!1"}),
        ("POST", "/KeyfactorAPI/Certificates/Download", {"CertID": "{}"}),
    ]:
        answers = []
        for cid in (hidden, missing):
            kw = {}
            if body:
                kw["json"] = {k: (int(v.format(cid)) if v == "{}" else v) for k, v in body.items()}
            r = call(method, path.format(cid), **kw)
            body_ = r.json()
            body_["Message"] = body_.get("Message", "").replace(str(cid), "<id>")
            answers.append((r.status_code, body_))
        assert answers[0] == answers[1], (path, answers)
        assert answers[0][0] in (400, 404), answers


# ---------------------------------------------------------------- hole 4: the native API honours folder limits

def test_policies_and_audit_honour_folder_limits(gateway):
    tag = uuid.uuid4().hex[:6]
    fa, fb = f"{ROOT}\\PolA{tag}", f"{ROOT}\\PolB{tag}"
    gateway.cli("policy", "set", fa, "domains=a.example.com")
    gateway.cli("policy", "set", fb, "domains=b.example.com")
    user, pw = f"pol-{tag}", "Pol-Passw0rd!12"
    gateway.cli("user", "add", user, "--password", pw, "--scope", "configuration:manage", "--folder", f"{fa}:read,write")
    tok = gateway.token(user=user, password=pw, scope="configuration:manage")
    api = requests.Session()
    api.trust_env = False
    api.verify = gateway.ca_bundle
    api.headers["Authorization"] = f"Bearer {tok}"
    url = gateway.url + "/api/v1/policies"
    # B, and a folder that does not exist, answer alike.
    for method, kw in [("GET", {}), ("PUT", {"json": {"settings": {"domains": ["evil.example"]}}}), ("DELETE", {})]:
        got = []
        for dn in (fb, f"{ROOT}\\Nope{tag}"):
            r = api.request(method, url, params={"dn": dn}, timeout=30, **kw)
            got.append((r.status_code, r.json().get("message", r.text).replace(dn, "<dn>")))
        if method != "PUT":
            assert got[0] == got[1], (method, got)
        assert got[0][0] == 404, (method, got)
    # B is untouched, and no folder was created outside the grant.
    assert "b.example.com" in gateway.cli("policy", "show", fb).stdout
    assert int(db_scalar(gateway, f"SELECT COUNT(*) FROM policy_folders WHERE dn = {sql_str(ROOT + chr(92) + 'Nope' + tag)}")) == 0
    # A works.
    r = api.put(url, params={"dn": fa}, json={"settings": {"domains": ["a2.example.com"]}}, timeout=30)
    assert r.status_code == 200, r.text
    # The audit trail: A's policy change is visible, B's is not.
    gateway.cli("policy", "set", fb, "domains=b2.example.com")
    recs = api.get(gateway.url + "/api/v1/audit", params={"action": "policy_change", "limit": 10000}, timeout=30)
    assert recs.status_code == 200, recs.text
    targets = {x["target"] for x in recs.json()["records"]}
    assert fa in targets and fb not in targets, targets


# ---------------------------------------------------------------- hole 5: what is audited

def test_key_handed_out_by_request_and_administration_changes_are_audited(gateway, s):
    cn = f"keyreq-{uuid.uuid4().hex[:6]}.example.com"
    before = audit_count(gateway, "key_download")
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": ROOT, "Subject": cn, "ObjectName": cn, "KeyAlgorithm": "ECC", "EllipticCurve": "P256",
        "Format": "PKCS #12", "Password": "Key-Passw0rd!123", "IncludePrivateKey": True, "WorkToDoTimeout": 30})
    assert r.status_code == 200 and r.json().get("CertificateData"), r.text
    assert audit_count(gateway, "key_download") == before + 1, "a key handed out by Request is audited"
    signins = audit_count(gateway, "sign_in")
    gateway.token()
    assert audit_count(gateway, "sign_in") == signins + 1
    eab = audit_count(gateway, "eab_change")
    gateway.cli("acme", "eab", "create", "--policy", ROOT)
    assert audit_count(gateway, "eab_change") == eab + 1
    ca = audit_count(gateway, "ca_change")
    name = "audited-" + uuid.uuid4().hex[:6]
    gateway.cli("ca", "add", name)
    gateway.cli("ca", "disable", name)
    assert audit_count(gateway, "ca_change") == ca + 2
    # Secrets never reach the trail.
    assert int(db_scalar(gateway, "SELECT COUNT(*) FROM audit_log WHERE detail LIKE '%Passw0rd%'")) == 0


def test_a_folder_limited_search_gets_full_pages(gateway, s):
    """Listings filter folders in SQL: a restricted caller's page is full, and the total is its own."""
    from rg_helpers import request_service
    tag = uuid.uuid4().hex[:6]
    fa, fb = f"{ROOT}\\PageA{tag}", f"{ROOT}\\PageB{tag}"
    for f in (fa, fb):
        gateway.cli("policy", "set", f)
    mine = [request_service(s, fa, f"page{i}-{tag}.example.com") for i in range(3)]
    for i in range(4):
        request_service(s, fb, f"other{i}-{tag}.example.com")
    user, pw = f"page-{tag}", "Page-Passw0rd!12"
    gateway.cli("user", "add", user, "--password", pw, "--scope", "certificate", "--folder", f"{fa}:read")
    u = gateway.session(token=gateway.token(user=user, password=pw, scope="certificate"))
    first = u.get("/vedsdk/certificates/", params={"Limit": 2, "Offset": 0}).json()
    second = u.get("/vedsdk/certificates/", params={"Limit": 2, "Offset": 2}).json()
    assert first["TotalCount"] == 3, first
    assert len(first["Certificates"]) == 2 and len(second["Certificates"]) == 1
    assert {c["DN"] for c in first["Certificates"] + second["Certificates"]} == set(mine)
