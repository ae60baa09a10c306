"""The web console over plain HTTP clients (the browser walk is tests/browser): sign-in and its
cookie, CSRF on every form, sessions that end when the user changes, folder isolation in every
count and page, actions audited like their API twins, key downloads that ask for the password
again, and `security:manage` granting no more than the granter holds. SQLite and PostgreSQL."""
import html
import json
import re
import subprocess

import pytest
import requests

import rg_helpers as rg

FA = "\\VED\\Policy\\ConsoleA"
FB = "\\VED\\Policy\\ConsoleB"
STRONG = "Console-Pass-2026!"


def csrf_of(page_text):
    m = re.search(r'name="csrf" value="([^"]*)"', page_text)
    assert m, page_text[:500]
    return html.unescape(m.group(1))


class Console(requests.Session):
    def __init__(self, gw):
        super().__init__()
        self.gw = gw
        self.verify = gw.ca_bundle
        self.csrf = None

    def request(self, method, url, *a, **kw):
        kw.setdefault("timeout", 60)
        kw.setdefault("verify", self.gw.ca_bundle)
        kw["allow_redirects"] = False  # Session.get would follow: the tests look at each answer
        if url.startswith("/"):
            url = self.gw.url + url
        return super().request(method, url, *a, **kw)

    def login(self, user, password):
        r = self.get("/console/login")
        assert r.status_code == 200, r.text
        r = self.post("/console/login", data={"username": user, "password": password, "csrf": csrf_of(r.text)})
        return r

    def page(self, path):
        r = self.get(path)
        if r.status_code == 200 and 'name="csrf"' in r.text:
            self.csrf = csrf_of(r.text)
        return r

    def form(self, path, data, with_csrf=True):
        if with_csrf and self.csrf is None:
            self.page("/console/")
        body = dict(data)
        if with_csrf:
            body["csrf"] = self.csrf
        return self.post(path, data=body)


def signed_in(gw, user="admin", password=None):
    c = Console(gw)
    r = c.login(user, password or gw.admin_password)
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == "/console/"
    return c


def guid_of(session, dn):
    r = session.post("/vedsdk/config/dntoguid", json={"ObjectDN": dn})
    assert r.status_code == 200, r.text
    return r.json()["GUID"].strip("{}")


@pytest.fixture(scope="module")
def world(gateway):
    """Two folders with certificates; a user limited to folder A."""
    api = gateway.session(scope="certificate:manage,revoke;configuration:manage")
    for f in (FA, FB):
        r = api.put("/api/v1/policies", params={"dn": f}, json={"settings": {}})
        assert r.status_code == 200, r.text
    dns = {"a": [], "b": []}
    for i in range(3):
        dns["a"].append(rg.request_service(api, FA, f"a{i}.console.example"))
    for i in range(2):
        dns["b"].append(rg.request_service(api, FB, f"b{i}.console.example"))
    for dn in dns["a"] + dns["b"]:
        rg.wait_retrieve(api, dn)
    gateway.cli("user", "add", "alice", "--password-stdin", "--scope",
                "certificate:manage,revoke;configuration:manage", "--folder", f"{FA}:read,write,key",
                input=STRONG + "\n")
    return {"api": api, "dns": dns}


def test_sign_in_page_cookie_and_headers(gateway):
    c = Console(gateway)
    r = c.get("/console/")
    assert r.status_code == 303 and r.headers["Location"] == "/console/login"
    r = c.get("/console/login")
    assert r.status_code == 200
    assert re.search(r'<input type="text"[^>]*name="username"', r.text)
    assert re.search(r'<input type="password"[^>]*name="password"', r.text)
    assert re.search(r'<input type="hidden" name="csrf"', r.text)
    for resp in (r, c.get("/console/static/console.css")):
        assert resp.headers["Cache-Control"] == "no-store"
        csp = resp.headers["Content-Security-Policy"]
        for d in ("frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"):
            assert d in csp
        assert "unsafe-inline" not in csp and "script-src" not in csp  # default-src 'none': no script
    r = c.post("/console/login", data={"username": "admin", "password": gateway.admin_password, "csrf": csrf_of(r.text)})
    assert r.status_code == 303 and r.headers["Location"] == "/console/"
    cookie = [h for h in r.raw.headers.getlist("Set-Cookie") if h.startswith("__Host-renewgate-session=")]
    assert len(cookie) == 1
    flags = [f.strip().lower() for f in cookie[0].split(";")]
    assert "httponly" in flags and "secure" in flags and "samesite=strict" in flags and "path=/" in flags
    assert not any(f.startswith("domain=") for f in flags)
    page = c.get("/console/")
    assert page.status_code == 200
    # The navigation comes before every other link, and its first link is the inventory.
    links = re.findall(r'<a [^>]*href="([^"]+)"', page.text)
    assert links[0] == "/console/inventory"
    assert page.text.index('<nav aria-label="Console">') < page.text.index("<a ")
    # The APIs ignore the cookie: tokens only.
    api = requests.get(gateway.url + "/vedsdk/certificates/", cookies=c.cookies, verify=gateway.ca_bundle, timeout=30)
    assert api.status_code == 401
    # Sign-out ends the session on the server, not only in the browser.
    secret = c.cookies.get("__Host-renewgate-session")
    r = c.form("/console/logout", {})
    assert r.status_code == 303 and r.headers["Location"] == "/console/login"
    replay = Console(gateway)
    replay.cookies.set("__Host-renewgate-session", secret)
    assert replay.get("/console/").status_code == 303


def test_wrong_password_and_stale_login_form_are_refused(gateway):
    c = Console(gateway)
    r = c.login("admin", "not-the-password")
    assert r.status_code == 200 and 'role="alert"' in r.text
    assert "__Host-renewgate-session" not in r.headers.get("Set-Cookie", "")
    fresh = Console(gateway)
    r = fresh.post("/console/login", data={"username": "admin", "password": gateway.admin_password, "csrf": "forged"})
    assert r.status_code == 403
    assert "__Host-renewgate-session" not in r.headers.get("Set-Cookie", "")


def test_forms_without_their_csrf_token_are_refused(gateway, world):
    c = signed_in(gateway)
    dn = world["dns"]["a"][0]
    guid = guid_of(world["api"], dn)
    before = rg.db_scalar(gateway, "SELECT COUNT(*) FROM jobs")
    for path, data in [(f"/console/certificates/{guid}/renew", {}),
                       (f"/console/certificates/{guid}/revoke", {"reason": "0"}),
                       ("/console/policies", {"dn": FA, "key": "organization", "value": "Evil"}),
                       ("/console/acme/eab", {"folder": FA}),
                       ("/console/tokens", {"user": "admin", "scope": "certificate"})]:
        r = c.form(path, data, with_csrf=False)
        assert r.status_code == 403, (path, r.status_code)
        r = c.post(path, data={**data, "csrf": "0" * 64})
        assert r.status_code == 403, (path, r.status_code)
    assert rg.db_scalar(gateway, "SELECT COUNT(*) FROM jobs") == before
    assert rg.db_scalar(gateway, "SELECT COUNT(*) FROM revocations") == "0"


def test_folder_limited_user_sees_only_its_folder(gateway, world):
    alice = signed_in(gateway, "alice", STRONG)
    admin = signed_in(gateway)
    a_count, b_count = len(world["dns"]["a"]), len(world["dns"]["b"])
    ov = alice.get("/console/").text
    total = int(re.search(r'id="total-objects">(\d+)<', ov).group(1))
    assert total == a_count
    chart = sum(int(n) for n in re.findall(r'data-count="(\d+)"', ov))
    assert chart == a_count  # every certificate here expires within 13 weeks? (default validity)
    assert "ConsoleB" not in ov
    admin_ov = admin.get("/console/").text
    assert int(re.search(r'id="total-objects">(\d+)<', admin_ov).group(1)) >= a_count + b_count
    inv = alice.get("/console/inventory").text
    guids = re.findall(r'<tr data-guid="([^"]+)"', inv)
    assert len(guids) == a_count and "ConsoleB" not in inv
    b_guid = guid_of(world["api"], world["dns"]["b"][0])
    assert alice.get(f"/console/certificates/{b_guid}").status_code == 404
    assert admin.get(f"/console/certificates/{b_guid}").status_code == 200
    # Searching for B's object by name or DN finds nothing either.
    assert "data-guid" not in alice.get("/console/inventory", params={"q": "b0.console"}).text
    assert "data-guid" not in alice.get("/console/inventory", params={"q": FB}).text
    assert "data-guid" in admin.get("/console/inventory", params={"q": "b0.console"}).text
    audit = alice.get("/console/audit").text
    assert "ConsoleB" not in audit
    export = alice.get("/console/audit/export").text
    assert "ConsoleB" not in export
    # Acting on B's object answers like a missing one and does nothing.
    alice.page("/console/")
    before = rg.db_scalar(gateway, "SELECT COUNT(*) FROM jobs")
    r = alice.form(f"/console/certificates/{b_guid}/renew", {})
    assert r.status_code == 404
    r = alice.form("/console/policies", {"dn": FB, "key": "organization", "value": "Mine"})
    assert r.status_code == 404
    assert rg.db_scalar(gateway, "SELECT COUNT(*) FROM jobs") == before
    # The users page needs security:manage.
    assert alice.get("/console/users").status_code == 403
    assert "/console/users" not in ov


def test_console_actions_work_and_are_audited(gateway, world):
    c = signed_in(gateway)
    api = world["api"]
    dn = world["dns"]["a"][1]
    old = rg.leaf_of(api, dn)
    guid = guid_of(api, dn)
    c.page(f"/console/certificates/{guid}")
    r = c.form(f"/console/certificates/{guid}/renew", {})
    assert r.status_code == 303 and "ok=renewed" in r.headers["Location"]
    new = rg.leaf_of(api, dn, not_serial=old.serial_number)
    assert new.serial_number != old.serial_number
    page = c.get(f"/console/certificates/{guid}").text
    assert len(re.findall(r'<tr data-serial="', page)) >= 2
    assert format(new.serial_number, "X") in page
    r = c.form(f"/console/certificates/{guid}/revoke", {"reason": "4", "comments": "console test"})
    assert r.status_code == 303 and "ok=revoked" in r.headers["Location"]
    r = c.form("/console/policies", {"dn": FA, "key": "organization", "value": "Console Org", "locked": "1"})
    assert r.status_code == 303
    pol = c.get("/console/policies", params={"dn": FA}).text
    row = re.search(r'<tr data-key="organization">(.*?)</tr>', pol, re.S).group(1)
    assert "Console Org" in row and "this folder" in row and "locked" in row
    r = c.form("/console/policies", {"dn": FA, "key": "organization", "value": ""})
    assert r.status_code == 303
    assert 'data-key="organization"' not in c.get("/console/policies", params={"dn": FA}).text
    r = c.form("/console/acme/eab", {"folder": FA})
    assert r.status_code == 200
    kid = re.search(r'id="eab-kid">([0-9a-f]+)<', r.text).group(1)
    assert re.search(r'id="eab-hmac">[A-Za-z0-9_-]{43}<', r.text)
    assert kid not in c.get("/console/acme").text or "eab-hmac" not in c.get("/console/acme").text
    trail = [l for l in gateway.cli("audit").stdout.splitlines() if '"source":"console"' in l.replace(" ", "")]
    joined = "\n".join(trail)
    for action in ("renew", "revoke", "policy_change", "eab_change", "sign_in"):
        assert f'"action":"{action}"' in joined.replace(" ", ""), action
    assert json.dumps(dn)[1:-1] in joined
    metrics = requests.get(gateway.url + "/metrics", verify=gateway.ca_bundle, timeout=30,
                           headers={"Authorization": "Bearer " + gateway.token("certificate")}).text
    assert re.search(r'renewgate_renewals_total\{[^}]*dialect="console"[^}]*outcome="success"', metrics) or \
        re.search(r'renewgate_renewals_total\{[^}]*outcome="success"[^}]*dialect="console"', metrics), metrics[:2000]


def test_key_download_asks_for_the_password_again(gateway, world, tmp_path):
    c = signed_in(gateway)
    dn = world["dns"]["a"][2]
    guid = guid_of(world["api"], dn)
    c.page(f"/console/certificates/{guid}")
    # GET downloads nothing.
    assert c.get(f"/console/certificates/{guid}/download").status_code in (404, 405)
    base = {"format": "PKCS #12", "include_private_key": "1", "password": "File-Pass-2026!x"}
    r = c.form(f"/console/certificates/{guid}/download", {**base, "account_password": "wrong"})
    assert r.status_code == 403 and "application/x-pkcs12" not in r.headers.get("Content-Type", "")
    r = c.form(f"/console/certificates/{guid}/download", {**base, "account_password": gateway.admin_password})
    assert r.status_code == 200, r.text[:500]
    p12 = tmp_path / "c.p12"
    p12.write_bytes(r.content)
    out = rg.openssl("pkcs12", "-in", str(p12), "-passin", "pass:File-Pass-2026!x", "-nodes").stdout.decode()
    assert "PRIVATE KEY" in out and "CERTIFICATE" in out
    # Without the key: a plain certificate download needs no password.
    r = c.form(f"/console/certificates/{guid}/download", {"format": "DER"})
    assert r.status_code == 200 and r.content[:1] == b"\x30"
    # A user without `key` on the folder gets no key.
    gateway.cli("user", "add", "bob", "--password-stdin", "--scope", "certificate:manage", "--folder", f"{FA}:read,write",
                input=STRONG + "\n")
    b = signed_in(gateway, "bob", STRONG)
    b.page(f"/console/certificates/{guid}")
    r = b.form(f"/console/certificates/{guid}/download", {**base, "account_password": STRONG})
    assert r.status_code == 403
    trail = gateway.cli("audit").stdout
    assert '"key_download"' in trail


def test_sessions_end_when_the_user_changes_or_idles(gateway, world):
    gateway.cli("user", "add", "carol", "--password-stdin", "--scope", "certificate", "--folder", f"{FA}:read",
                input=STRONG + "\n")
    c = signed_in(gateway, "carol", STRONG)
    assert c.get("/console/inventory").status_code == 200
    gateway.cli("user", "passwd", "carol", "--password-stdin", input=STRONG + "x\n")
    assert c.get("/console/inventory").status_code == 303
    c = signed_in(gateway, "carol", STRONG + "x")
    gateway.cli("user", "disable", "carol")
    assert c.get("/console/inventory").status_code == 303
    gateway.cli("user", "enable", "carol")
    c = signed_in(gateway, "carol", STRONG + "x")
    assert c.get("/console/inventory").status_code == 200
    # 15 minutes idle: the stored last-seen time moved back ends the session.
    uid = rg.db_scalar(gateway, "SELECT id FROM users WHERE name_lower = 'carol'")
    rg.db_exec(gateway, f"UPDATE console_sessions SET last_seen = created_at - INTERVAL '16 minutes' WHERE user_id = {uid}"
               if gateway.database.backend == "postgres" else
               f"UPDATE console_sessions SET last_seen = datetime(created_at, '-16 minutes') WHERE user_id = {uid}")
    assert c.get("/console/inventory").status_code == 303
    # Sessions are stored hashed: the cookie's value is nowhere in the table.
    c = signed_in(gateway, "carol", STRONG + "x")
    secret = c.cookies.get("__Host-renewgate-session")
    rows = rg.db_rows(gateway, "SELECT token_hash FROM console_sessions")
    assert rows and all(secret not in r[0] for r in rows)


def test_security_manage_grants_no_more_than_the_granter_holds(gateway, world):
    gateway.cli("user", "add", "sec", "--password-stdin", "--scope", "certificate:manage;security:manage",
                "--folder", f"{FA}:read,write", input=STRONG + "\n")
    c = signed_in(gateway, "sec", STRONG)
    assert c.page("/console/users").status_code == 200
    def add(name, scope, folders):
        return c.form("/console/users", {"username": name, "password": STRONG, "scope": scope, "folders": folders})
    assert add("x1", "certificate:manage;configuration:manage", f"{FA}:read").status_code == 400
    assert add("x2", "certificate:manage", f"{FB}:read").status_code == 400
    assert add("x3", "certificate:manage", f"{FA}:read,key").status_code == 400
    assert add("x4", "certificate:manage", "").status_code == 400  # every folder
    r = add("x5", "certificate", f"{FA}:read")
    assert r.status_code == 303, r.text[:800]
    assert rg.db_scalar(gateway, "SELECT COUNT(*) FROM users WHERE name_lower IN ('x1','x2','x3','x4')") == "0"
    # Nor may it change a user who holds more (the admin), or mint tokens beyond its own scope.
    assert c.form("/console/users/admin/disable", {}).status_code == 400
    assert c.form("/console/users/admin/password", {"password": STRONG}).status_code == 400
    assert c.form("/console/tokens", {"user": "x5", "scope": "configuration:manage"}).status_code == 400
    r = c.form("/console/tokens", {"user": "x5", "scope": "certificate"})
    assert r.status_code == 200
    token = re.search(r'id="token-value">([^<]+)<', r.text).group(1)
    assert requests.get(gateway.url + "/vedsdk/certificates/", headers={"Authorization": "Bearer " + token},
                        verify=gateway.ca_bundle, timeout=30).status_code == 200
    # The admin revokes it from the console.
    admin = signed_in(gateway)
    page = admin.page("/console/users").text
    ids = re.findall(r'data-token-id="(\d+)"><td>x5<', page)
    assert ids
    assert admin.form(f"/console/tokens/{ids[0]}/revoke", {}).status_code == 303
    assert requests.get(gateway.url + "/vedsdk/certificates/", headers={"Authorization": "Bearer " + token},
                        verify=gateway.ca_bundle, timeout=30).status_code == 401


def test_a_failed_store_push_is_shown_and_retried_within_the_folder(gateway, world):
    api = world["api"]
    dn = world["dns"]["a"][0]
    cert_id = int(rg.db_scalar(gateway, f"SELECT current_cert_id FROM cert_objects WHERE dn = {rg.sql_str(dn)}"))
    machine = "console-store.example.net"
    store = gateway.cli("store", "add", "--client-machine", machine, "--store-path", "/etc/ssl/console",
                        "--type", "pem-dir", "--alias", "web", "--folder", FA).stdout.strip()
    r = api.post("/KeyfactorAPI/CertificateStores/Certificates/Add", headers={"x-keyfactor-api-version": "1"},
                 json={"CertificateId": cert_id,
                       "CertificateStores": [{"CertificateStoreId": store, "Alias": "web", "Overwrite": True}]})
    assert r.status_code == 200, r.text
    sid = rg.db_scalar(gateway, f"SELECT id FROM stores WHERE client_machine_lower = '{machine}'")
    # The agent gave up on it (what `agent run` reports after its last attempt).
    rg.db_exec(gateway, "UPDATE store_jobs SET state = 'failed', attempts = 5, message = 'disk full' "
                        f"WHERE store_id = {sid}")
    admin = signed_in(gateway)
    page = admin.page("/console/stores").text
    assert machine in page and "disk full" in page and "never" in page  # no agent has called yet
    job = re.search(r'<tr data-job-guid="([^"]+)"', page).group(1)
    assert "disk full" in admin.get("/console/").text  # failing pushes on the overview
    # A user of another folder neither sees the store nor may retry its job.
    gateway.cli("user", "add", "dave", "--password-stdin", "--scope", "certificate:manage", "--folder", f"{FB}:read,write",
                input=STRONG + "\n")
    dave = signed_in(gateway, "dave", STRONG)
    assert machine not in dave.page("/console/stores").text
    assert "disk full" not in dave.get("/console/").text
    assert dave.form(f"/console/stores/jobs/{job}/retry", {}).status_code == 404
    assert rg.db_scalar(gateway, f"SELECT state FROM store_jobs WHERE store_id = {sid}") == "failed"
    r = admin.form(f"/console/stores/jobs/{job}/retry", {})
    assert r.status_code == 303 and "ok=retried" in r.headers["Location"]
    assert rg.db_rows(gateway, f"SELECT state, attempts FROM store_jobs WHERE store_id = {sid}") == [("waiting", "0")]
    trail = gateway.cli("audit").stdout
    assert f"store job {job} retried" in trail
