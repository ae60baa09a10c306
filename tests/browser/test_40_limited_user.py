"""A user limited to folder A (certificate:manage,revoke; A: read,write,key) walks every page:
nothing of folder B or C shows anywhere — not an object, a count, a chart bar, a store, an audit
entry or a folder name — and B's certificate page is a 404 like a missing one."""
import json
from urllib.parse import quote

import pytest

from conftest import PW_LIMITED, assert_console_headers, assert_no_text, assert_page_frame
from test_30_forms import download_pkcs12

PAGES = [
    ("overview", "/console/"),
    ("inventory", "/console/inventory"),
    ("policies", "/console/policies"),
    ("stores", "/console/stores"),
    ("acme", "/console/acme"),
    ("audit", "/console/audit"),
]


def hidden(world):
    """What the limited user must never see: B's and C's folder names and object names."""
    t = world["tag"]
    return [f"BrowserB{t}", f"BrowserC{t}"] + [o["cn"] for o in world["b"]] + \
        [o["cn"] for o in world["c"].values()] + [o["guid"] for o in world["b"]]


@pytest.mark.parametrize("name,path", PAGES, ids=[p[0] for p in PAGES])
def test_limited_page(as_limited, world, name, path):
    console = as_limited
    console.visit(path, f"limited-{name}")
    assert console.nav_status() == 200, f"{path}: {console.nav_status()}"
    assert_page_frame(console, admin=False)
    assert_console_headers(console.requests().get(console.url(path)), path)
    assert_no_text(console, hidden(world), f"{path} as {world['user']}")
    console.assert_accessible([f"limited-{name}"])


def test_limited_overview_counts_only_folder_a(as_limited, world):
    console = as_limited
    console.get("/console/")
    states = {r.get_attribute("data-state"): int(console.find("td.count", r).text.strip())
              for r in console.finds("#states tr[data-state]")}
    assert sum(states.values()) == 2, f"states {states}: folder A holds 2 objects"
    assert int(console.text("#total-objects")) == 2, console.text("#total-objects")
    assert states.get("active", 0) == 2, states
    assert int(console.text("#expired-count")) == 0
    svg = console.find("svg#expiry-chart")
    bars = {int(r.get_attribute("data-week")): int(r.get_attribute("data-count"))
            for r in console.finds("rect[data-week]", svg)}
    assert sorted(bars) == list(range(13)), bars
    assert sum(bars.values()) == 2, f"expiry chart {bars}: only A's 2 certificates (20 days) may show"
    assert bars[2] + bars[3] == 2, f"A's certificates expire in 20 days: {bars}"
    assert bars[12] == 0, f"B's and C's 90-day certificates show in week 12: {bars}"
    int(console.text("#queue-depth"))
    # Recent renewals, failing pushes and issuers name nothing of B or C.
    for css in ("#recent-renewals", "#failing-pushes", "#issuers"):
        html = console.find(css).get_attribute("outerHTML")
        leaked = [h for h in hidden(world) if h.lower() in html.lower()]
        assert not leaked, f"{css} shows {leaked}"


def test_limited_inventory_lists_only_folder_a(as_limited, world):
    console = as_limited
    mine = {o["guid"] for o in world["a"]}
    for query in ("", "?q=" + quote(world["b"][0]["cn"]), "?folder=" + quote(world["fb"]),
                  "?q=example.com", "?folder=" + quote("\\VED\\Policy")):
        console.get("/console/inventory" + query)
        assert console.nav_status() in (200, 403, 404), console.nav_status()
        found = {r.get_attribute("data-guid").strip("{}").lower() for r in console.finds("#inventory tr[data-guid]")}
        assert found <= mine, f"/console/inventory{query} lists {found - mine} outside folder A"
        if query == "":
            assert found == mine, f"the limited user's inventory: {found}, expected {mine}"
        assert_no_text(console, hidden(world), f"/console/inventory{query}")


def test_other_folders_certificate_pages_are_404(as_limited, world):
    console = as_limited
    for obj in world["b"][:1] + [world["c"]["misc"]]:
        path = f"/console/certificates/{obj['guid']}"
        console.visit(path, "limited-certificate-of-b-404")
        assert console.nav_status() == 404, f"{path}: {console.nav_status()}"
        assert_no_text(console, hidden(world), path)
        assert console.status_of(path) == 404
    missing = console.requests().get(console.url("/console/certificates/00000000-0000-4000-8000-000000000000"))
    hidden_one = console.requests().get(console.url(f"/console/certificates/{world['b'][0]['guid']}"))
    assert missing.status_code == hidden_one.status_code == 404
    console.assert_accessible(["limited-certificate-of-b-404"])
    # Its forms refuse B's objects too (the hidden object answers like a missing one).
    console.get(f"/console/certificates/{world['a'][0]['guid']}")
    assert console.nav_status() == 200
    assert_page_frame(console, admin=False)
    console.check("limited-certificate")
    console.assert_accessible(["limited-certificate"])


def test_limited_audit_shows_none_of_the_other_folders(as_limited, world, gateway):
    console = as_limited
    console.get("/console/audit")
    assert_no_text(console, hidden(world), "/console/audit")
    for q in ("?target=" + quote(world["b"][0]["dn"]), "?target=" + quote(world["fb"]), "?actor=admin"):
        console.get("/console/audit" + q)
        assert_no_text(console, hidden(world), "/console/audit" + q)
    r = console.requests().get(console.url("/console/audit/export"))
    assert r.status_code == 200, r.status_code
    lines = [json.loads(x) for x in r.text.splitlines() if x.strip()]
    leaked = [x for x in lines if any(h.lower() in json.dumps(x).lower() for h in hidden(world))]
    assert not leaked, f"the audit export shows other folders' entries: {leaked[:3]}"


def test_limited_policies_and_stores(as_limited, world):
    console = as_limited
    console.get("/console/policies?dn=" + quote(world["fb"]))
    assert console.nav_status() in (403, 404), f"B's policy page as the limited user: {console.nav_status()}"
    assert_no_text(console, hidden(world), "/console/policies?dn=B")
    console.get("/console/policies?dn=" + quote(world["fa"]))
    assert console.nav_status() == 200
    assert "20d" in console.find('#effective tr[data-key="validity"]').text
    console.get("/console/stores")
    ids = {r.get_attribute("data-store-guid").strip("{}").lower() for r in console.finds("#stores tr[data-store-guid]")}
    assert ids == {world["stores"]["a"].strip("{}").lower()}, f"stores {ids}"


def test_limited_user_has_no_users_page(as_limited):
    console = as_limited
    assert console.status_of("/console/users") in (403, 404)
    console.visit("/console/users", "limited-users-refused")
    assert console.nav_status() in (403, 404)
    console.assert_accessible(["limited-users-refused"])


def test_limited_user_downloads_a_pkcs12_of_folder_a(as_limited, world, download_dir):
    download_pkcs12(as_limited, world["a"][0], PW_LIMITED, download_dir, "limited-download-pkcs12")


def test_limited_user_cannot_act_on_folder_b(as_limited, world):
    """B's certificate page is 404, so are its forms posted from outside the page."""
    console = as_limited
    console.get(f"/console/certificates/{world['a'][0]['guid']}")
    form = console.form("renew")
    action = form.get_attribute("action")
    fields = dict(console.d.execute_script("return Array.from(new FormData(arguments[0]))", form))
    other = action.replace(world["a"][0]["guid"], world["b"][0]["guid"])
    assert other != action, f"the renew form's action {action} does not name the object"
    r = console.requests().post(console.url(other), data=fields, allow_redirects=False)
    assert r.status_code == 404, f"renew of B's object as the limited user: {r.status_code}"


def test_limited_user_forms_outside_their_reach(as_limited, world, gateway):
    """Posted with a valid csrf token from outside the pages: an EAB key for B answers like a
    missing folder; policy edits need configuration:manage; tokens and other users' passwords need
    security:manage."""
    import re
    console = as_limited
    s = console.requests()
    page = s.get(console.url("/console/acme"))
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    flash = lambda r: re.findall(r'id="flash"[^>]*>([^<]*)', r.text)
    b = s.post(console.url("/console/acme/eab"), data={"csrf": token, "folder": world["fb"]}, allow_redirects=False)
    missing = s.post(console.url("/console/acme/eab"), data={"csrf": token, "folder": world["fb"] + "Nope"},
                     allow_redirects=False)
    assert b.status_code == missing.status_code == 404, (b.status_code, missing.status_code)
    assert 'id="eab-kid"' not in b.text
    assert [x.replace("Nope", "") for x in flash(missing)] == flash(b), (flash(b), flash(missing))
    for path, data in (("/console/policies", {"dn": world["fb"], "key": "validity", "value": "5d"}),
                       ("/console/policies", {"dn": world["fa"], "key": "validity", "value": "5d"}),
                       ("/console/tokens", {"user": world["user"], "scope": "certificate:manage"}),
                       ("/console/users/admin/password", {"password": "Hijack-Passw0rd!9"}),
                       ("/console/users", {"username": "intruder-" + world["tag"], "password": "Intruder-Passw0rd!1",
                                           "scope": "certificate:manage", "folders": ""})):
        r = s.post(console.url(path), data={"csrf": token, **data}, allow_redirects=False)
        assert r.status_code in (403, 404), f"POST {path} as the limited user: {r.status_code}"
    assert '"5d"' not in gateway.cli("policy", "show", world["fa"]).stdout
    assert '"5d"' not in gateway.cli("policy", "show", world["fb"]).stdout
    assert gateway.token()  # the admin's password still works
