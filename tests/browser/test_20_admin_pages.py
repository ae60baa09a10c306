"""Every console page as the admin: the page's frame (navigation, main, one h1, csrf on every POST
form), its security headers, a screenshot and axe-core's verdict; then what each page shows of
the world the test made (three folders, two stores)."""
from urllib.parse import quote, urlparse

import pytest

from conftest import assert_console_headers, assert_page_frame

PAGES = [
    ("overview", "/console/"),
    ("inventory", "/console/inventory"),
    ("policies", "/console/policies"),
    ("stores", "/console/stores"),
    ("acme", "/console/acme"),
    ("audit", "/console/audit"),
    ("users", "/console/users"),
]


@pytest.mark.parametrize("name,path", PAGES, ids=[p[0] for p in PAGES])
def test_admin_page(as_admin, world, name, path):
    console = as_admin
    console.visit(path, f"admin-{name}")
    assert console.nav_status() == 200, f"{path}: {console.nav_status()}"
    assert_page_frame(console, admin=True)
    assert_console_headers(console.requests().get(console.url(path)), path)
    console.assert_accessible([f"admin-{name}"])


def test_admin_certificate_page(as_admin, world):
    console = as_admin
    obj = world["c"]["misc"]
    path = f"/console/certificates/{obj['guid']}"
    console.visit(path, "admin-certificate")
    assert console.nav_status() == 200, f"{path}: {console.nav_status()}"
    assert_page_frame(console, admin=True)
    assert_console_headers(console.requests().get(console.url(path)), path)
    assert obj["cn"] in console.body_text()
    rows = console.finds("#versions tbody tr") or console.finds("#versions tr")
    assert len([r for r in rows if r.find_elements("css selector", "td")]) == 1, "one issued version"
    for action in ("renew", "revoke", "download"):
        console.form(action)
    # Reset is offered only to an object in error.
    assert not console.has('form[data-action="reset"]')
    assert console.has('form[data-action="disable"]') or console.has('form[data-action="enable"]')
    fmt = console.find('form[data-action="download"] select[name="format"]')
    values = [o.get_attribute("value") for o in console.finds("option", fmt)]
    assert set(values) >= {"Base64", "Base64 (PKCS #8)", "DER", "PKCS #7", "PKCS #12", "JKS"}, values
    f = console.form("download")
    assert console.find('input[name="password"]', f).get_attribute("type") == "password"
    assert console.find('input[name="account_password"]', f).get_attribute("type") == "password"
    assert console.find('input[name="include_private_key"]', f).get_attribute("type") == "checkbox"
    assert console.find('form[data-action="revoke"] select[name="reason"]')
    assert console.has("#stores") and console.has("#audit")
    console.assert_accessible(["admin-certificate"])


def test_admin_missing_certificate_is_a_404_page(as_admin):
    console = as_admin
    path = "/console/certificates/00000000-0000-4000-8000-000000000000"
    console.visit(path, "admin-certificate-404")
    assert console.nav_status() == 404, console.nav_status()
    assert_console_headers(console.requests().get(console.url(path)), path)
    console.assert_accessible(["admin-certificate-404"])


def test_admin_overview_counts(as_admin, world):
    console = as_admin
    console.get("/console/")
    states = {r.get_attribute("data-state"): int(console.find("td.count", r).text.strip())
              for r in console.finds("#states tr[data-state]")}
    assert states, "no #states rows"
    total = int(console.text("#total-objects"))
    assert sum(states.values()) == total, f"states {states} do not add up to #total-objects {total}"
    assert total >= 2 + 3 + 4, f"#total-objects {total}: the test made 9 objects"
    bars = chart(console)
    assert sorted(bars) == list(range(13)), f"expiry chart weeks {sorted(bars)}"
    assert sum(bars.values()) >= 9, f"expiry chart {bars}"
    assert bars[2] + bars[3] >= 2, f"folder A's 20-day certificates are not in weeks 2-3: {bars}"
    int(console.text("#expired-count"))
    int(console.text("#queue-depth"))
    console.find("#queue-oldest")
    for css in ("#failing-pushes", "#recent-renewals", "#issuers"):
        assert console.has(css), f"overview without {css}"
    # The API renewal of B's first object, with its dialect.
    rows = [r.text for r in console.finds("#recent-renewals tbody tr")]
    assert any(world["b"][0]["cn"] in r and "venafi" in r for r in rows), rows
    issuers = console.text("#issuers")
    assert "issuing" in issuers, issuers


def chart(console):
    svg = console.find('svg#expiry-chart')
    assert svg.get_attribute("role") == "img", "the expiry chart is not role=img"
    bars = {}
    for r in console.finds("rect[data-week]", svg):
        bars[int(r.get_attribute("data-week"))] = int(r.get_attribute("data-count"))
    return bars


def test_admin_inventory_lists_every_folder_and_searches(as_admin, world):
    console = as_admin
    console.get("/console/inventory")
    guids = {r.get_attribute("data-guid").strip("{}").lower() for r in console.finds("#inventory tr[data-guid]")}
    everyone = [o["guid"] for o in world["a"] + world["b"] + list(world["c"].values())]
    assert set(everyone) <= guids or console.has('a[rel="next"]'), f"inventory misses objects: {set(everyone) - guids}"
    for row in console.finds("#inventory tr[data-guid]"):
        g = row.get_attribute("data-guid").strip("{}").lower()
        links = [urlparse(a.get_attribute("href")).path for a in console.finds("a[href]", row)]
        assert any(p.strip("/").split("/")[-1].strip("{}").lower() == g and "/console/certificates/" in p
                   for p in links), f"row {g} links to {links}"
    # The search form (GET) by name and by folder.
    f = console.form("search")
    assert (f.get_attribute("method") or "get").lower() == "get"
    console.fill(f, q=world["b"][0]["cn"])
    console.submit(f)
    console.check("admin-inventory-search")
    found = {r.get_attribute("data-guid").strip("{}").lower() for r in console.finds("#inventory tr[data-guid]")}
    assert found == {world["b"][0]["guid"]}, f"search q={world['b'][0]['cn']}: {found}"
    console.get("/console/inventory?folder=" + quote(world["fa"]))
    found = {r.get_attribute("data-guid").strip("{}").lower() for r in console.finds("#inventory tr[data-guid]")}
    assert found == {o["guid"] for o in world["a"]}, f"folder={world['fa']}: {found}"
    # Expires within 30 days: exactly A's 20-day certificates; state=disabled: none of the test's.
    console.get("/console/inventory?expires=30")
    found = {r.get_attribute("data-guid").strip("{}").lower() for r in console.finds("#inventory tr[data-guid]")}
    assert found == {o["guid"] for o in world["a"]}, f"expires=30: {found}"
    console.get("/console/inventory?state=disabled")
    found = {r.get_attribute("data-guid").strip("{}").lower() for r in console.finds("#inventory tr[data-guid]")}
    assert not found & set(everyone), f"state=disabled lists active objects: {found}"
    console.assert_accessible(["admin-inventory-search"])


def test_admin_policies_tree_and_settings(as_admin, world):
    console = as_admin
    console.visit("/console/policies?dn=" + quote(world["fa"]), "admin-policies-folder")
    assert console.nav_status() == 200
    tree = [a.get_attribute("href") for a in console.finds("#folder-tree a[href]")]
    assert any(f"Browser{x}{world['tag']}" in requote(h) for h in tree for x in "A"), f"tree {tree}"
    assert any(f"BrowserB{world['tag']}" in requote(h) for h in tree), f"tree {tree}"
    row = console.find('#effective tr[data-key="validity"]')
    assert "20d" in row.text and (world["fa"].split("\\")[-1] in row.text or "this folder" in row.text), row.text
    f = console.form("policy-edit")
    assert console.find('input[type="hidden"][name="dn"]', f).get_attribute("value") == world["fa"]
    for n in ("key", "value", "locked"):
        console.find(f'[name="{n}"]', f)
    console.assert_accessible(["admin-policies-folder"])


def requote(h):
    from urllib.parse import unquote_plus
    return unquote_plus(h or "")


def test_admin_stores_lists_both_stores(as_admin, world):
    console = as_admin
    console.get("/console/stores")
    ids = {r.get_attribute("data-store-guid").strip("{}").lower() for r in console.finds("#stores tr[data-store-guid]")}
    want = {s.strip("{}").lower() for s in world["stores"].values()}
    assert want <= ids, f"stores {ids}, expected {want}"
    assert console.has("#store-jobs")


def test_admin_audit_filter_and_export(as_admin, world, gateway):
    console = as_admin
    console.get("/console/audit")
    f = console.form("audit-filter")
    assert (f.get_attribute("method") or "get").lower() == "get"
    target = world["b"][0]["dn"]
    console.fill(f, target=target)
    console.submit(f)
    console.check("admin-audit-filtered")
    rows = console.finds("#audit tbody tr") or console.finds("#audit tr")
    rows = [r for r in rows if r.find_elements("css selector", "td")]
    assert rows, f"no audit rows for target {target}"
    assert all(world["b"][0]["cn"] in r.text for r in rows), [r.text for r in rows]
    export = console.find("a#audit-export").get_attribute("href")
    assert urlparse(export).path == "/console/audit/export", export
    r = console.requests().get(export)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/jsonl"), \
        (r.status_code, r.headers.get("Content-Type"))
    lines = [__import__("json").loads(line) for line in r.text.splitlines() if line.strip()]
    assert lines and all(isinstance(x, dict) for x in lines)
    assert all(world["b"][0]["cn"] in __import__("json").dumps(x) for x in lines), "export not filtered by target"
    console.assert_accessible(["admin-audit-filtered"])


def test_admin_users_page(as_admin, world):
    console = as_admin
    console.get("/console/users")
    users = {r.get_attribute("data-user") for r in console.finds("#users tr[data-user]")}
    assert {"admin", world["user"]} <= users, users
    for action in ("user-add", "token-create", "user-password"):
        console.form(action)
    assert console.has('form[data-action="user-disable"]') or console.has('form[data-action="user-enable"]')
    assert console.has("#tokens")


# Regressions of console defects this test found (fixed on main in e515343).


@pytest.mark.parametrize("path", [p for _, p in PAGES])
def test_no_page_scrolls_sideways_at_1366_px(as_admin, path):
    console = as_admin
    console.get(path)
    sw, cw = console.d.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert sw <= cw, f"{path} is {sw} px wide in a {cw} px window"


def test_the_versions_table_shows_the_sans(as_admin, world):
    console = as_admin
    obj = world["c"]["misc"]
    console.get(f"/console/certificates/{obj['guid']}")
    header = [th.text.strip() for th in console.finds("#versions thead th")]
    row = [r for r in console.finds("#versions tbody tr")][0]
    cells = [td.text.strip() for td in console.finds("td", row)]
    sans = cells[header.index("SANs")]
    assert obj["cn"] in sans, f"SANs cell {sans!r}; the certificate's only SAN is DNS:{obj['cn']}"


def test_recent_renewals_name_their_certificate(as_admin):
    """A form refused before it acted (the CSRF refusals of test_10) is no renewal."""
    console = as_admin
    console.get("/console/")
    header = [th.text.strip() for th in console.finds("#recent-renewals thead th")]
    rows = [[td.text.strip() for td in console.finds("td", r)] for r in console.finds("#recent-renewals tbody tr")]
    rows = [r for r in rows if len(r) == len(header)]
    assert rows, "no renewals listed (test_10 and the world fixture renewed)"
    empty = [r for r in rows if not r[header.index("Certificate")]]
    assert not empty, f"renewals without a certificate: {empty}"
