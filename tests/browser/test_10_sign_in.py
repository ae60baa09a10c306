"""Signing in and out of the console, its session cookie, its security headers and its CSRF
defence; the API never takes the console's cookie."""
from http.cookies import SimpleCookie
from urllib.parse import urlparse

from conftest import assert_console_headers, csrf_of, http_sign_in, raw_session


def test_pages_without_a_session_send_to_the_sign_in_page(gateway):
    s = raw_session(gateway)
    for path in ("/console/", "/console/inventory", "/console/audit", "/console/users"):
        r = s.get(gateway.url + path, allow_redirects=False)
        assert r.status_code == 303, f"{path}: {r.status_code}"
        assert urlparse(r.headers["Location"]).path == "/console/login", f"{path}: Location {r.headers['Location']}"
        assert "no-store" in r.headers.get("Cache-Control", ""), f"{path}: {r.headers}"
    r = s.get(gateway.url + "/console/login")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html"), r.headers
    assert_console_headers(r, "/console/login")


def test_the_sign_in_page(console, gateway):
    console.forget()
    console.who = None
    console.visit("/console/", "login")
    assert urlparse(console.d.current_url).path == "/console/login", console.d.current_url
    f = console.find('form[action="/console/login"]')
    assert f.get_attribute("method").lower() == "post"
    assert console.find('input[name="username"]', f).get_attribute("type") == "text"
    assert console.find('input[name="password"]', f).get_attribute("type") == "password"
    assert console.find('input[name="csrf"]', f).get_attribute("type") == "hidden"
    assert console.find('input[name="csrf"]', f).get_attribute("value")
    assert console.finds('button:not([type]), button[type="submit"], input[type="submit"]', f)
    assert len(console.finds("h1")) == 1 and len(console.finds("main")) == 1
    console.assert_accessible(["login"])


def test_a_wrong_password_is_refused_with_an_alert(console, gateway):
    console.forget()
    console.who = None
    console.sign_in("admin", "not-the-password-at-all", expect_ok=False)
    assert urlparse(console.d.current_url).path == "/console/login", console.d.current_url
    alerts = console.finds('[role="alert"]')
    assert alerts and alerts[0].text.strip(), f"no role=alert message: {console.body_text()[:400]}"
    # The contract says 200; 401 (what the console answers) is as good for a person.
    assert console.nav_status() in (200, 401), console.nav_status()
    assert console.status_of("/console/") == 303, "a failed sign-in opened a session"
    console.check("login-failed")
    # Without a browser: 200 with the alert, no session cookie.
    s = raw_session(gateway)
    page = s.get(gateway.url + "/console/login")
    r = s.post(gateway.url + "/console/login", allow_redirects=False,
               data={"username": "admin", "password": "wrong-Passw0rd!", "csrf": csrf_of(page.text)})
    assert r.status_code in (200, 401) and 'role="alert"' in r.text, (r.status_code, r.text[:400])
    assert s.get(gateway.url + "/console/", allow_redirects=False).status_code == 303
    console.assert_accessible(["login-failed"])


def test_sign_in_and_sign_out_in_the_browser(console, gateway):
    console.forget()
    console.who = None
    console.sign_in("admin", gateway.admin_password)
    cookie = console.session_cookie()
    assert cookie, f"no new __Host- cookie after sign-in: {console.d.get_cookies()}"
    assert cookie["secure"] and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", cookie
    assert console.status_of("/console/") == 200
    stolen = dict(cookie)
    console.sign_out()
    console.who = None
    assert urlparse(console.d.current_url).path == "/console/login", console.d.current_url
    # The session is over on the server, not only forgotten by the browser.
    s = raw_session(gateway)
    s.cookies.set(stolen["name"], stolen["value"], domain="127.0.0.1", path="/")
    r = s.get(gateway.url + "/console/", allow_redirects=False)
    assert r.status_code == 303, f"the signed-out session still opens the console: {r.status_code}"


def test_the_session_cookie(gateway):
    s, r = http_sign_in(gateway)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    assert urlparse(r.headers["Location"]).path == "/console/", r.headers["Location"]
    raw = r.raw.headers.getlist("Set-Cookie") if hasattr(r.raw.headers, "getlist") else [r.headers["Set-Cookie"]]
    session = [h for h in raw if h.startswith("__Host-") and "max-age=0" not in h.lower()]
    assert session, f"no __Host- session cookie in {raw}"
    for h in session:
        attrs = [a.strip().lower() for a in h.split(";")[1:]]
        assert "httponly" in attrs, h
        assert "secure" in attrs, h
        assert "samesite=strict" in attrs, h
        assert "path=/" in attrs, h
        assert not any(a.startswith("domain=") for a in attrs), h
        SimpleCookie(h)  # parses
    page = s.get(gateway.url + "/console/")
    assert page.status_code == 200
    assert_console_headers(page, "/console/")


def test_the_api_ignores_the_console_cookie(gateway, world):
    s, r = http_sign_in(gateway)
    assert r.status_code == 303
    assert s.get(gateway.url + "/console/").status_code == 200
    for method, path, body in (("get", "/vedauth/authorize/verify", None),
                               ("get", "/vedsdk/certificates", None),
                               ("post", "/vedsdk/certificates/retrieve", {"CertificateDN": world["c"]["misc"]["dn"]}),
                               ("post", "/vedsdk/certificates/renew", {"CertificateDN": world["c"]["misc"]["dn"]})):
        resp = s.request(method, gateway.url + path, json=body, allow_redirects=False)
        assert resp.status_code == 401, f"{method.upper()} {path} with only the console cookie: {resp.status_code} {resp.text[:200]}"


def test_a_post_without_its_csrf_token_is_refused(gateway, world):
    s, r = http_sign_in(gateway)
    assert r.status_code == 303
    guid = world["c"]["misc"]["guid"]
    page = s.get(gateway.url + f"/console/certificates/{guid}")
    assert page.status_code == 200, page.status_code
    token = csrf_of(page.text)
    for data in ({}, {"csrf": ""}, {"csrf": token[:-2] + ("AA" if not token.endswith("AA") else "BB")}):
        resp = s.post(gateway.url + "/console/logout", data=data, allow_redirects=False)
        assert resp.status_code == 403, f"sign-out with {data}: {resp.status_code}"
    # The session survived the refused sign-outs.
    assert s.get(gateway.url + "/console/", allow_redirects=False).status_code == 200
    # A refused sign-in form as well: no session.
    anon = raw_session(gateway)
    anon.get(gateway.url + "/console/login")
    resp = anon.post(gateway.url + "/console/login", allow_redirects=False,
                     data={"username": "admin", "password": gateway.admin_password})
    assert resp.status_code == 403, f"sign-in without csrf: {resp.status_code}"
    assert anon.get(gateway.url + "/console/", allow_redirects=False).status_code == 303


def test_a_form_whose_csrf_input_was_removed_is_refused_in_the_browser(as_admin, world):
    console = as_admin
    guid = world["c"]["misc"]["guid"]
    console.get(f"/console/certificates/{guid}")
    versions = len(console.finds("#versions tbody tr"))
    form = console.form("renew")
    action = console.url(form.get_attribute("action") or console.path)
    fields = dict(console.d.execute_script("return Array.from(new FormData(arguments[0]))", form))
    assert fields.pop("csrf", None), "the renew form has no csrf value"
    console.d.execute_script("arguments[0].querySelectorAll('input[name=\"csrf\"]').forEach(e => e.remove())", form)
    console.submit(form)
    assert console.nav_status() == 403, f"renew without csrf answered {console.nav_status()}"
    console.check("csrf-refused")
    # Nothing happened: the object has the same versions.
    console.get(f"/console/certificates/{guid}")
    assert len(console.finds("#versions tbody tr")) == versions
    # The same form's fields without the token, from outside the page: 403 too.
    r = console.requests().post(action, data=fields, allow_redirects=False)
    assert r.status_code == 403, f"POST {action} without csrf: {r.status_code}"
    # The sign-out form without its token leaves the session alone.
    out = console.find('form[action="/console/logout"]')
    console.d.execute_script("arguments[0].querySelectorAll('input[name=\"csrf\"]').forEach(e => e.remove())", out)
    console.submit(out)
    assert console.nav_status() == 403, f"sign-out without csrf answered {console.nav_status()}"
    assert console.status_of("/console/") == 200


def test_sign_in_with_the_keyboard_alone(console, gateway):
    """To the user name (autofocus or Tab), type, Tab to the password, type, Enter: signed in; then Tab from the
    top of a page reaches the navigation's first link, Inventory."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    console.forget()
    console.who = None
    console.get("/console/login")
    active = lambda: console.d.switch_to.active_element
    if active().get_attribute("name") != "username":  # the field has autofocus; else Tab reaches it first
        ActionChains(console.d).send_keys(Keys.TAB).perform()
    assert active().get_attribute("name") == "username", active().get_attribute("outerHTML")
    ActionChains(console.d).send_keys("admin", Keys.TAB).perform()
    assert active().get_attribute("name") == "password", active().get_attribute("outerHTML")
    old = console.find("html")
    ActionChains(console.d).send_keys(gateway.admin_password, Keys.ENTER).perform()
    for _ in range(200):
        try:
            old.tag_name
        except Exception:
            break
        __import__("time").sleep(0.05)
    console.wait_loaded()
    assert urlparse(console.d.current_url).path == "/console/", console.d.current_url
    console.who = "admin"
    ActionChains(console.d).send_keys(Keys.TAB).perform()
    assert urlparse(active().get_attribute("href") or "").path == "/console/inventory", active().get_attribute("outerHTML")
