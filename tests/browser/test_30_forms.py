"""Every console form submitted from the browser, as a person would (fields filled, the form's own
button clicked), each checked on the page (a role=status flash, the changed table) and outside the
console (the audit trail through the CLI, the Venafi API, openssl)."""
import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import assert_page_frame

FILE_PW = "File-Passw0rd!p12"


def audit(gateway, action, target=None):
    """The audit trail's entries of ACTION (through the CLI), of TARGET when given, from the console."""
    out = gateway.cli("audit", "--action", action).stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [e for e in entries if target is None or (e.get("target") == target and e.get("source") == "console"
                                                      and e.get("outcome") == "success")]


def assert_flash_ok(console, what):
    role, text = console.flash()
    assert role == "status" and text, f"{what}: flash {role!r} {text!r} on {console.path} " \
                                      f"({console.nav_status()}): {console.body_text()[:600]}"
    return text


def version_rows(console):
    return [r for r in console.finds("#versions tr") if r.find_elements("css selector", "td")]


def test_renew(as_admin, world, gateway):
    console = as_admin
    obj = world["c"]["renew"]
    page = f"/console/certificates/{obj['guid']}"
    console.get(page)
    before = len(version_rows(console))
    console.submit(console.form("renew"))
    assert_flash_ok(console, "renew")
    console.check("form-renew-done")
    deadline = time.time() + 90
    while len(version_rows(console)) <= before and time.time() < deadline:
        time.sleep(0.5)
        console.get(page)
    assert len(version_rows(console)) == before + 1, f"no new version after the console's renew: {console.body_text()[:800]}"
    assert audit(gateway, "renew", obj["dn"]), "the console's renewal is not in the audit trail"
    console.assert_accessible(["form-renew-done"])


def test_revoke(as_admin, world, gateway):
    console = as_admin
    obj = world["c"]["revoke"]
    console.get(f"/console/certificates/{obj['guid']}")
    f = console.form("revoke")
    opts = [o.get_attribute("value") for o in console.finds('select[name="reason"] option', f)]
    reason = next((o for o in opts if "superseded" in (o or "").lower()), opts[-1])
    console.fill(f, reason=reason)
    console.submit(f)
    assert_flash_ok(console, "revoke")
    console.check("form-revoke-done")
    assert audit(gateway, "revoke", obj["dn"]), "the console's revocation is not in the audit trail"
    assert "revoked" in console.body_text().lower(), "the certificate page does not say revoked"
    console.assert_accessible(["form-revoke-done"])


def test_disable_and_enable(as_admin, world):
    console = as_admin
    obj = world["c"]["misc"]
    page = f"/console/certificates/{obj['guid']}"
    console.get(page)
    console.submit(console.form("disable"))
    assert_flash_ok(console, "disable")
    console.get(page)
    assert console.has('form[data-action="enable"]') and not console.has('form[data-action="disable"]')
    console.check("form-disabled")
    # A disabled object is not renewed through the API either.
    r = world["api"].post("/vedsdk/certificates/renew", json={"CertificateDN": obj["dn"]})
    assert r.status_code != 200 or r.json().get("Success") is False, r.text
    console.submit(console.form("enable"))
    assert_flash_ok(console, "enable")
    console.get(page)
    assert console.has('form[data-action="disable"]')
    console.assert_accessible(["form-disabled"])


def test_policy_edit(as_admin, world, gateway):
    console = as_admin
    from urllib.parse import quote
    console.get("/console/policies?dn=" + quote(world["fc"]))
    f = console.form("policy-edit")
    console.fill(f, key="domains", value="example.com, example.org", locked=True)
    console.submit(f)
    assert_flash_ok(console, "policy-edit")
    console.check("form-policy-edited")
    row = console.find('#effective tr[data-key="domains"]')
    assert "example.org" in row.text, row.text
    shown = gateway.cli("policy", "show", world["fc"]).stdout
    line = next(x for x in shown.splitlines() if x.startswith("domains"))
    assert "example.com" in line and "example.org" in line, shown
    assert audit(gateway, "policy_change", world["fc"]), "the console's policy change is not in the audit trail"
    # The policy now refuses another domain in folder C.
    r = world["api"].post("/vedsdk/certificates/request", json={
        "PolicyDN": world["fc"], "Subject": "x.example.net", "ObjectName": "x.example.net", "KeyAlgorithm": "ECC"})
    assert r.status_code == 400, r.text
    console.assert_accessible(["form-policy-edited"])


def test_eab_key(as_admin, world):
    console = as_admin
    console.get("/console/acme")
    f = console.form("eab-create")
    console.fill(f, folder=world["fc"])
    console.submit(f)
    kid, hmac = console.text("#eab-kid"), console.text("#eab-hmac")
    assert kid and len(hmac) >= 32, (kid, hmac)
    console.check("form-eab-created")
    # Shown once: the ACME page reloaded does not show the key again.
    console.get("/console/acme")
    assert hmac not in console.d.page_source
    console.assert_accessible(["form-eab-created"])


def test_token_create_and_revoke(as_admin, world, gateway):
    console = as_admin
    console.get("/console/users")
    f = console.form("token-create")
    console.fill(f, user=world["user"], scope="certificate:manage")
    console.submit(f)
    token = console.text("#token-value")
    assert len(token) >= 20, token
    console.check("form-token-created")
    verify = lambda: requests.get(gateway.url + "/vedauth/authorize/verify", verify=gateway.ca_bundle, timeout=30,
                                  headers={"Authorization": "Bearer " + token})
    assert verify().status_code == 200, verify().text
    r = requests.get(gateway.url + "/vedsdk/certificates", verify=gateway.ca_bundle, timeout=30,
                     headers={"Authorization": "Bearer " + token})
    assert r.status_code == 200, r.text
    console.get("/console/users")
    assert token not in console.d.page_source, "the token is shown again"
    rows = [r for r in console.finds("#tokens tr") if world["user"] in r.text
            and r.find_elements("css selector", 'form[data-action="token-revoke"]')]
    assert len(rows) == 1, [r.text for r in console.finds("#tokens tr")]
    console.submit(console.form("token-revoke", rows[0]))
    assert_flash_ok(console, "token-revoke")
    assert verify().status_code == 401, "the revoked token still works"
    console.assert_accessible(["form-token-created"])


def test_user_add_disable_enable_password(as_admin, world, gateway):
    console = as_admin
    name = "added-" + world["tag"]
    console.get("/console/users")
    f = console.form("user-add")
    console.fill(f, username=name, password="Added-Passw0rd!1", scope="certificate:manage",
                 folders=world["fc"] + ":read")
    console.submit(f)
    assert_flash_ok(console, "user-add")
    assert console.has(f'#users tr[data-user="{name}"]')
    assert gateway.token(user=name, password="Added-Passw0rd!1", scope="certificate:manage")
    row = console.find(f'#users tr[data-user="{name}"]')
    console.submit(console.form("user-disable", row))
    assert_flash_ok(console, "user-disable")
    r = requests.post(gateway.url + "/vedauth/authorize/oauth", verify=gateway.ca_bundle, timeout=30, json={
        "username": name, "password": "Added-Passw0rd!1", "client_id": "t", "scope": "certificate:manage"})
    assert r.status_code != 200, "a disabled user still gets tokens"
    row = console.find(f'#users tr[data-user="{name}"]')
    console.submit(console.form("user-enable", row))
    assert_flash_ok(console, "user-enable")
    row = console.find(f'#users tr[data-user="{name}"]')
    f = console.form("user-password", row) if console.finds('form[data-action="user-password"]', row) \
        else console.form("user-password")
    if console.finds('[name="user"]', f) and console.find('[name="user"]', f).get_attribute("type") != "hidden":
        console.fill(f, user=name)
    console.fill(f, password="Changed-Passw0rd!2")
    console.submit(f)
    assert_flash_ok(console, "user-password")
    assert gateway.token(user=name, password="Changed-Passw0rd!2", scope="certificate:manage")
    console.check("form-users-after")
    console.assert_accessible(["form-users-after"])


def wait_download(download_dir: Path, before, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = [p for p in download_dir.iterdir() if p.name not in before
               and not p.name.endswith((".crdownload", ".tmp")) and p.stat().st_size > 0]
        if new:
            time.sleep(0.3)
            return new[0]
        time.sleep(0.2)
    raise AssertionError(f"no download in {download_dir} after {timeout}s: {sorted(p.name for p in download_dir.iterdir())}")


def download_pkcs12(console, obj, account_password, download_dir, shot):
    console.get(f"/console/certificates/{obj['guid']}")
    f = console.form("download")
    before = {p.name for p in download_dir.iterdir()}
    console.fill(f, format="PKCS #12", password=FILE_PW, account_password=account_password, include_private_key=True)
    if console.evidence:
        console.screenshot(shot)
    click_submit(console, f)
    path = wait_download(download_dir, before)
    r = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-passin", "pass:" + FILE_PW, "-nodes"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl pkcs12 could not open {path.name}: {r.stderr}"
    assert "PRIVATE KEY-----" in r.stdout and "BEGIN CERTIFICATE" in r.stdout, r.stdout[:400]
    assert obj["cn"] in r.stdout or obj["cn"] in subprocess.run(
        ["openssl", "x509", "-noout", "-subject"], input=r.stdout, capture_output=True, text=True).stdout
    return path


def click_submit(console, form):
    """Clicks the form's button without waiting for a new page (a download keeps the page)."""
    b = console.finds('button:not([type]), button[type="submit"], input[type="submit"]', form)
    assert b, "the download form has no submit button"
    console.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", b[0])
    b[0].click()


def test_download_pkcs12_as_admin(as_admin, world, gateway, download_dir):
    path = download_pkcs12(as_admin, world["c"]["download"], gateway.admin_password, download_dir,
                           "form-download-pkcs12")
    assert path.suffix.lower() in (".p12", ".pfx"), path.name
    assert audit(gateway, "key_download", world["c"]["download"]["dn"]), "the key download is not in the audit trail"


def test_download_with_a_wrong_account_password_is_refused(as_admin, world, download_dir):
    console = as_admin
    console.get(f"/console/certificates/{world['c']['download']['guid']}")
    f = console.form("download")
    before = {p.name for p in download_dir.iterdir()}
    console.fill(f, format="PKCS #12", password=FILE_PW, account_password="not-my-Passw0rd!",
                 include_private_key=True)
    console.submit(f)
    role, text = console.flash()
    assert role == "alert" and text, f"no role=alert after a wrong account password ({console.nav_status()})"
    assert console.nav_status() in (200, 303, 400, 401, 403, 422)
    time.sleep(1)
    assert {p.name for p in download_dir.iterdir()} - before == set(), "a file came with a wrong password"
    assert_page_frame(console, admin=True)
    console.check("form-download-refused")
    console.assert_accessible(["form-download-refused"])
