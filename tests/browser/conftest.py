"""The web console's browser test: Selenium drives Debian's headless chromium (through Debian's
chromium-driver, never a downloaded one) against a fresh `renewgate serve` over HTTPS on loopback,
on SQLite or PostgreSQL (`--backend`). The gateway and database classes are the integration
suite's (tests/clients/conftest.py, loaded under another module name); certificates are created
through the Venafi API with tests/clients/rg_helpers.

Every page visited through `console.visit(...)` is saved as a PNG under target/console-screenshots/
and checked with axe-core (node_modules/axe-core/axe.min.js, injected with WebDriver's
execute_script, which the console's Content-Security-Policy does not govern)."""
import base64
import hashlib
import importlib.util
import json
import os
import re
import ssl
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLIENTS = REPO / "tests" / "clients"
sys.path.insert(0, str(CLIENTS))
import rg_helpers  # noqa: E402

_spec = importlib.util.spec_from_file_location("rg_clients_harness", CLIENTS / "conftest.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
Gateway, Database = harness.Gateway, harness.Database

CHROMIUM = os.environ.get("RENEWGATE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RENEWGATE_CHROMEDRIVER", "/usr/bin/chromedriver")
AXE_JS = REPO / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = REPO / "target" / "console-screenshots"
# Selenium Manager must never try to fetch a browser or a driver.
os.environ["SE_OFFLINE"] = "true"

PW_LIMITED = "Limited-Passw0rd!42"
BLOCKING = ("serious", "critical")


def pytest_addoption(parser):
    parser.addoption("--backend", default="sqlite", choices=["sqlite", "postgres"],
                     help="storage backend of the gateway the browser test starts")
    parser.addoption("--no-evidence", action="store_true",
                     help="skip the screenshots and axe-core (backend-independent: test.sh takes them on SQLite)")


@pytest.fixture(scope="session")
def backend(request):
    return request.config.getoption("--backend")


# ---------------------------------------------------------------- the gateway and its data

@pytest.fixture(scope="session")
def gateway(backend, tmp_path_factory):
    """One fresh gateway for the whole browser test."""
    root = tmp_path_factory.mktemp("browser-gw")
    db = Database(backend)
    gw = Gateway(root, db).start()
    yield gw
    gw.stop(kill=True)
    db.drop()


@pytest.fixture(scope="session")
def world(gateway):
    """Certificates in three folders, made through the Venafi API:
    A (2 objects, 20-day validity) is the limited user's folder; B (3 objects, default validity)
    must stay invisible to that user; C holds the objects the admin's forms act on.
    A store in A and one in B; the limited user (certificate:manage,revoke on A: read,write,key)."""
    tag = uuid.uuid4().hex[:6]
    fa, fb, fc = (f"\\VED\\Policy\\Browser{x}{tag}" for x in "ABC")
    gateway.cli("policy", "set", fa, "validity=20d")
    gateway.cli("policy", "set", fb)
    gateway.cli("policy", "set", fc)
    api = gateway.session()

    def make(folder, cn):
        r = api.post("/vedsdk/certificates/request", json={
            "PolicyDN": folder, "Subject": cn, "ObjectName": cn, "KeyAlgorithm": "ECC", "EllipticCurve": "P256",
            "SubjectAltNames": [{"Type": 2, "Name": cn}], "WorkToDoTimeout": 60})
        assert r.status_code == 200 and "CertificateData" in r.json(), r.text
        return {"dn": r.json()["CertificateDN"], "guid": r.json()["Guid"].strip("{}").lower(), "cn": cn,
                "folder": folder}

    a = [make(fa, f"a{i}-{tag}.example.com") for i in (1, 2)]
    b = [make(fb, f"b{i}-{tag}.example.com") for i in (1, 2, 3)]
    c = {k: make(fc, f"c-{k}-{tag}.example.com") for k in ("renew", "revoke", "download", "misc")}
    # An audited renewal in B (through the API), so that B has audit entries to hide.
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": b[0]["dn"]})
    assert r.status_code == 200 and r.json().get("Success") is True, r.text
    rg_helpers.wait_retrieve(api, b[0]["dn"])
    stores = {}
    for name, folder in (("a", fa), ("b", fb)):
        stores[name] = gateway.cli("store", "add", "--client-machine", f"browser-{name}-{tag}", "--store-path",
                                   f"/srv/{name}", "--type", "pem-dir", "--alias", name, "--folder",
                                   folder).stdout.strip()
    user = f"limited-{tag}"
    gateway.cli("user", "add", user, "--password-stdin", "--scope", "certificate:manage,revoke",
                "--folder", f"{fa}:read,write,key", input=PW_LIMITED + "\n")
    return {"tag": tag, "fa": fa, "fb": fb, "fc": fc, "a": a, "b": b, "c": c, "stores": stores,
            "user": user, "password": PW_LIMITED, "api": api}


# ---------------------------------------------------------------- the browser

def spki_sha256(gw):
    """Base64 SHA-256 of the gateway's TLS certificate's public key (chromium's
    --ignore-certificate-errors-spki-list trusts exactly that key, nothing else)."""
    host, port = "127.0.0.1", gw.port
    pem = ssl.get_server_certificate((host, port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="session")
def download_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def driver(gateway, download_dir, tmp_path_factory):
    for p in (CHROMIUM, CHROMEDRIVER):
        assert os.access(p, os.X_OK), f"{p} is missing: run scripts/setup-browser-env.sh"
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1366,1000", "--no-first-run", "--disable-extensions", "--lang=en-US",
              f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
              # Only the gateway's own certificate is accepted without a chain to a trusted root.
              f"--ignore-certificate-errors-spki-list={spki_sha256(gateway)}"):
        o.add_argument(a)
    o.add_experimental_option("prefs", {
        "download.default_directory": str(download_dir),
        "download.prompt_for_download": False,
        "download.directory_upgrade": True,
        "safebrowsing.enabled": False,
    })
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=o)
    d.set_page_load_timeout(60)
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir),
                                                       "eventsEnabled": False})
    yield d
    d.quit()


# ---------------------------------------------------------------- page helpers

class Console:
    """The browser on the console of one gateway: sign in/out, visit pages (screenshot + axe),
    read the page's flash messages, submit forms."""

    def __init__(self, driver, gw):
        self.d = driver
        self.gw = gw
        self.base = gw.url
        self.axe_src = AXE_JS.read_text() if AXE_JS.exists() else None
        self.pre_sign_in = set()
        self.evidence = True
        self.who = None
        self.violations = {}     # page name -> blocking violations
        self.report = {}         # page name -> every violation (target/console-screenshots/axe.json)
        SHOTS.mkdir(parents=True, exist_ok=True)

    # -- navigation
    def url(self, path):
        return urljoin(self.base + "/", path.lstrip("/")) if not path.startswith("http") else path

    def get(self, path):
        self.d.get(self.url(path))
        self.wait_loaded()

    def wait_loaded(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.d.execute_script("return document.readyState") == "complete":
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.d.current_url} did not finish loading")

    @property
    def path(self):
        u = urlparse(self.d.current_url)
        return u.path + (("?" + u.query) if u.query else "")

    def visit(self, path, name, check=True):
        """Opens PATH, saves a screenshot NAME.png and records axe's violations for NAME."""
        self.get(path)
        if check:
            self.check(name)

    def check(self, name):
        if self.evidence:
            self.screenshot(name)
            self.axe(name)

    # -- evidence
    def screenshot(self, name):
        """A full-page-ish PNG: the window is made as tall as the document (at most 6000 px)."""
        size = self.d.get_window_size()
        try:
            h = self.d.execute_script("return Math.max(document.body ? document.body.scrollHeight : 0,"
                                      " document.documentElement.scrollHeight)") or 1000
            self.d.set_window_size(max(size["width"], 1366), min(max(int(h) + 140, 1000), 6000))
            path = SHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
            assert self.d.save_screenshot(str(path)), f"screenshot {path} failed"
        finally:
            self.d.set_window_size(size["width"], size["height"])
        return path

    def axe(self, name):
        assert self.axe_src, f"{AXE_JS} is missing: run scripts/setup-browser-env.sh"
        if not self.d.execute_script("return typeof window.axe !== 'undefined'"):
            self.d.execute_script(self.axe_src)
        self.d.set_script_timeout(60)
        res = self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(JSON.stringify(r.violations)))"
            ".catch(e => done(JSON.stringify({error: String(e)})));")
        res = json.loads(res)
        assert not (isinstance(res, dict) and res.get("error")), f"axe.run failed on {name}: {res}"
        slim = [{"id": v["id"], "impact": v["impact"], "help": v["help"], "helpUrl": v.get("helpUrl"),
                 "nodes": [{"target": n["target"], "html": n["html"][:300],
                            "summary": (n.get("failureSummary") or "")[:500]} for n in v["nodes"]]}
                for v in res]
        self.report[f"{name} ({self.path})"] = slim
        blocking = [v for v in slim if v["impact"] in BLOCKING]
        if blocking:
            self.violations[f"{name} ({self.path})"] = blocking
        if self.evidence:
            (SHOTS / "axe.json").write_text(json.dumps(self.report, indent=1))
        return slim

    def assert_accessible(self, names=None):
        bad = {k: v for k, v in self.violations.items() if names is None or k.split(" (")[0] in names}
        assert not bad, "axe-core found serious/critical violations:\n" + format_violations(bad)

    # -- elements
    def find(self, css, within=None):
        return (within or self.d).find_element(By.CSS_SELECTOR, css)

    def finds(self, css, within=None):
        return (within or self.d).find_elements(By.CSS_SELECTOR, css)

    def has(self, css):
        return bool(self.finds(css))

    def text(self, css):
        return self.find(css).text.strip()

    def flash(self):
        """(role, text) of the page's #flash message, or (None, None)."""
        try:
            e = self.find("#flash")
        except NoSuchElementException:
            return None, None
        return e.get_attribute("role"), e.text.strip()

    def form(self, action, within=None):
        forms = self.finds(f'form[data-action="{action}"]', within)
        assert forms, f'no form[data-action="{action}"] on {self.path}'
        return forms[0]

    def fill(self, form, **fields):
        """Sets inputs, selects, textareas and checkboxes of FORM by name."""
        from selenium.webdriver.support.ui import Select
        for name, value in fields.items():
            el = self.find(f'[name="{name}"]', form)
            tag = el.tag_name.lower()
            typ = (el.get_attribute("type") or "").lower()
            if tag == "select":
                s = Select(el)
                try:
                    s.select_by_value(value)
                except NoSuchElementException:
                    s.select_by_visible_text(value)
            elif typ in ("checkbox", "radio"):
                if bool(value) != el.is_selected():
                    self.d.execute_script("arguments[0].click()", el)
            else:
                el.clear()
                if value:
                    el.send_keys(value)
        return form

    def submit(self, form):
        """Submits FORM with its own submit button (as a person would) and waits for the next page."""
        old = self.find("html")
        buttons = self.finds('button:not([type]), button[type="submit"], input[type="submit"]', form)
        if buttons:
            self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", buttons[0])
            buttons[0].click()
        else:
            form.submit()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                old.tag_name
            except Exception:
                break
            time.sleep(0.05)
        self.wait_loaded()

    # -- sessions
    def sign_in(self, user, password, expect_ok=True):
        self.get("/console/login")
        self.pre_sign_in = {(c["name"], c["value"]) for c in self.d.get_cookies()}
        f = self.find('form[action="/console/login"]')
        self.fill(f, username=user, password=password)
        self.submit(f)
        if expect_ok:
            assert urlparse(self.d.current_url).path == "/console/", \
                f"sign-in as {user} ended on {self.d.current_url}: {self.body_text()[:500]}"

    def sign_out(self):
        f = self.find('form[action="/console/logout"]')
        self.submit(f)

    def forget(self):
        """Drops the browser's cookies (a new person at the same browser)."""
        self.d.get(self.base + "/health")
        self.d.delete_all_cookies()

    def body_text(self):
        return self.d.find_element(By.TAG_NAME, "body").text

    def status_of(self, path):
        """The HTTP status of GET PATH with the browser's session cookie (requests; chromium hides it)."""
        return self.requests().get(self.url(path), allow_redirects=False).status_code

    def session_cookie(self):
        """The __Host- cookie the last sign-in set (a sign-in page may carry a cookie of its own)."""
        for c in self.d.get_cookies():
            if c["name"].startswith("__Host-") and (c["name"], c["value"]) not in self.pre_sign_in:
                return c
        return None

    def nav_status(self):
        """The HTTP status of the page now shown (Navigation Timing's responseStatus)."""
        return self.d.execute_script(
            "const e = performance.getEntriesByType('navigation')[0]; return e ? e.responseStatus : null")

    def requests(self):
        """A requests session carrying the browser's cookies (to read statuses and headers)."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.gw.ca_bundle
        for c in self.d.get_cookies():
            s.cookies.set(c["name"], c["value"], domain="127.0.0.1", path=c.get("path", "/"))
        return s


def format_violations(bad):
    out = []
    for page, vs in bad.items():
        out.append(f"== {page}")
        for v in vs:
            out.append(f"  [{v['impact']}] {v['id']}: {v['help']} ({v.get('helpUrl')})")
            for n in v["nodes"]:
                out.append(f"      {n['target']}: {n['html']}")
                if n["summary"]:
                    out.append("        " + n["summary"].replace("\n", "\n        "))
    return "\n".join(out)


@pytest.fixture(scope="session")
def console(driver, gateway, request):
    c = Console(driver, gateway)
    c.evidence = not request.config.getoption("--no-evidence")
    return c


def raw_session(gw):
    s = requests.Session()
    s.trust_env = False
    s.verify = gw.ca_bundle
    return s


def csrf_of(html):
    m = re.search(r'name="csrf"[^>]*value="([^"]+)"', html) or re.search(r'value="([^"]+)"[^>]*name="csrf"', html)
    assert m, "no hidden csrf input in the page"
    return m.group(1)


def http_sign_in(gw, user="admin", password=None):
    """Signs in with requests (no browser): returns (session, login response)."""
    s = raw_session(gw)
    page = s.get(gw.url + "/console/login")
    assert page.status_code == 200, page.status_code
    r = s.post(gw.url + "/console/login", data={"username": user, "password": password or gw.admin_password,
                                                 "csrf": csrf_of(page.text)}, allow_redirects=False)
    return s, r


# ---------------------------------------------------------------- what every console page must show

def assert_console_headers(resp, what=""):
    """Cache-Control: no-store and a Content-Security-Policy that forbids framing, plugins,
    <base> and inline scripts."""
    where = f"{what or resp.url} ({resp.status_code})"
    cc = resp.headers.get("Cache-Control", "")
    assert "no-store" in [p.strip().lower() for p in cc.split(",")], f"{where}: Cache-Control {cc!r}"
    csp = resp.headers.get("Content-Security-Policy")
    assert csp, f"{where}: no Content-Security-Policy"
    directives = {}
    for part in csp.split(";"):
        words = part.strip().split()
        if words:
            directives[words[0].lower()] = [w.lower() for w in words[1:]]
    for name in ("frame-ancestors", "object-src", "base-uri"):
        assert directives.get(name) == ["'none'"], f"{where}: {name} is {directives.get(name)!r} in {csp!r}"
    scripts = directives.get("script-src", directives.get("default-src"))
    assert scripts is not None, f"{where}: neither script-src nor default-src in {csp!r}"
    assert "'unsafe-inline'" not in scripts and "*" not in scripts, f"{where}: script sources {scripts} in {csp!r}"
    for name in ("script-src-elem", "script-src-attr"):
        assert "'unsafe-inline'" not in directives.get(name, []), f"{where}: {name} allows inline: {csp!r}"
    return directives


NAV = ["/console/inventory", "/console/", "/console/policies", "/console/stores", "/console/acme", "/console/audit"]


def assert_page_frame(console, admin):
    """The navigation (first link /console/inventory, the contract's order, Users only for
    security:manage), a sign-out form with its csrf, one <main> and one <h1>."""
    links = console.d.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => "
        "[a.getAttribute('href'), !!a.closest('nav[aria-label=\"Console\"]')])")
    where = console.path
    assert console.has('nav[aria-label="Console"]'), f"{where}: no <nav aria-label=\"Console\">"
    assert links, f"{where}: no links"
    first = urlparse(links[0][0])
    assert links[0][1] and first.path == "/console/inventory", \
        f"{where}: the first link is {links[0][0]!r} (in the nav: {links[0][1]}), expected /console/inventory in the nav"
    hrefs = [urlparse(h).path for h, in_nav in links if in_nav]
    want = NAV + (["/console/users"] if admin else [])
    assert hrefs == want, f"{where}: nav links {hrefs}, expected {want}"
    out = console.finds('form[action="/console/logout"]')
    assert len(out) == 1 and (out[0].get_attribute("method") or "").lower() == "post", \
        f"{where}: sign-out form missing or not POST"
    assert console.finds('input[type="hidden"][name="csrf"]', out[0]), f"{where}: sign-out form without csrf"
    assert console.finds("button", out[0]), f"{where}: sign-out form without a button"
    assert len(console.finds("main")) == 1, f"{where}: {len(console.finds('main'))} <main> elements"
    assert len(console.finds("h1")) == 1, f"{where}: {len(console.finds('h1'))} <h1> elements"
    for f in console.finds('form'):
        if (f.get_attribute("method") or "get").lower() == "post":
            assert console.finds('input[type="hidden"][name="csrf"]', f), \
                f"{where}: POST form {f.get_attribute('action')} ({f.get_attribute('data-action')}) without csrf"


def assert_no_text(console, needles, where):
    """None of NEEDLES (folder DNs, names) appears in the page's HTML."""
    # The filter forms (GET) echo what was typed: their text inputs and the export link (the same
    # query) are left out.
    html = console.d.execute_script(
        "const c = document.documentElement.cloneNode(true);"
        "c.querySelectorAll('form[method=get] input:not([type=hidden])').forEach(i => i.removeAttribute('value'));"
        "c.querySelectorAll('a#audit-export').forEach(a => a.removeAttribute('href'));"
        "return c.outerHTML;").lower()
    found = [n for n in needles if n.lower() in html or n.lower().replace("\\", "\\\\") in html]
    assert not found, f"{where}: shows {found}"


@pytest.fixture
def as_admin(console, gateway):
    if getattr(console, "who", None) != "admin":
        console.forget()
        console.sign_in("admin", gateway.admin_password)
        console.who = "admin"
    return console


@pytest.fixture
def as_limited(console, world):
    if getattr(console, "who", None) != world["user"]:
        console.forget()
        console.sign_in(world["user"], world["password"])
        console.who = world["user"]
    return console
