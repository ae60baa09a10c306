"""The order lifecycle beyond one issuance: `replaces` (RFC 9773 §5), dry-run orders that change
nothing in the inventory, a reissue that keeps its order's end date, and multi-year coverage
(`acme_coverage`) choosing reissue outside the order renewal window (seed 001)."""
import base64

from cryptography import x509

from rg_helpers import db_scalar
from test_acme_accounts import b64u, problem
from test_acme_orders import account, acme_gw, cert_id, gateway_factory_module, http01, order_and_issue  # noqa: F401


def versions(gw, object_id):
    return int(db_scalar(gw, f"SELECT COUNT(*) FROM certificates WHERE object_id = {object_id}"))


def jobs(gw):
    """Issuance jobs (challenge validations are queue jobs of their own kind)."""
    return int(db_scalar(gw, "SELECT COUNT(*) FROM jobs WHERE kind <> 'acme-validation'"))


def test_replaces_links_the_new_order_to_the_replaced_certificate(acme_gw):
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeRepl")
    o, chain = order_and_issue(c, ["repl.example.test"], expect_validation=False)
    n = o["x-renewgate"]["orderId"]
    old = cert_id(chain[0])
    # Outside the renewal window auto-detection would enroll anew; `replaces` still names the
    # order, and its default action (enroll with the order's options, a new object) applies.
    o2, chain2 = order_and_issue(c, ["repl.example.test"], expect_validation=False, extra={"replaces": old})
    assert o2["replaces"] == old
    # The same certificate cannot be replaced twice.
    url = c.dir["newOrder"]
    ids = {"identifiers": [{"type": "dns", "value": "repl.example.test"}], "replaces": old}
    problem(c.post(url, c.jws(url, ids)), 409, "alreadyReplaced")
    # Garbage is malformed; a certificate not issued here is accepted and links nothing.
    problem(c.post(url, c.jws(url, {**ids, "replaces": "not a cert id"})), 400, "malformed")
    foreign = b64u(b"\x01" * 20) + "." + b64u(b"\x05\x06")
    r = c.post(url, c.jws(url, {**ids, "replaces": foreign}))
    assert r.status_code == 201 and r.json()["replaces"] == foreign, r.text
    # An explicit order id that contradicts `replaces` is refused.
    d = c.s.get(acme_gw.url + f"/acme/directory?action=renew&orderId={n + 1000}").json()
    new = cert_id(chain2[0])
    problem(c.post(d["newOrder"], c.jws(d["newOrder"], {**ids, "replaces": new})), 400, "malformed")
    # Another organisation's account cannot name our certificate.
    other = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeReplOther")
    problem(other.post(other.dir["newOrder"], other.jws(other.dir["newOrder"], {**ids, "replaces": new})), 403, "unauthorized")


def test_replaces_inside_the_window_renews_the_same_object(acme_gw):
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeReplShort", settings=("domains=example.test", "validity=30d"))
    o, chain = order_and_issue(c, ["rs.example.test"], expect_validation=False)
    n = o["x-renewgate"]["orderId"]
    o2, chain2 = order_and_issue(c, ["rs.example.test"], expect_validation=False, extra={"replaces": cert_id(chain[0])})
    assert o2["x-renewgate"] == {"action": "renew", "orderId": n} and o2["replaces"] == cert_id(chain[0])
    assert chain2[0].serial_number != chain[0].serial_number and versions(acme_gw, n) == 2


def test_dry_run_orders_change_nothing(acme_gw):
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeDry", settings=("domains=example.test", "validity=30d"))
    o, chain = order_and_issue(c, ["dry.example.test"], expect_validation=False)
    n = o["x-renewgate"]["orderId"]
    before_versions, before_jobs = versions(acme_gw, n), jobs(acme_gw)
    for q in (f"?action=renew&orderId={n}&dryRun=1", "?dryRun=1"):
        d = c.s.get(acme_gw.url + "/acme/directory" + q).json()
        assert "/acme/dry-run/" in d["newOrder"] and "/dry-run/" not in d["newAccount"]
        o2, chain2 = order_and_issue(c, ["dry.example.test"], d["newOrder"], expect_validation=False)
        assert o2["x-renewgate"]["dryRun"] is True and o2["x-renewgate"]["action"] == "renew"
        assert "/acme/dry-run/cert/" in o2["certificate"]
        issuer = chain2[0].issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert "dry-run" in issuer and chain2[0].issuer != chain[0].issuer
    assert versions(acme_gw, n) == before_versions and jobs(acme_gw) == before_jobs
    # The dry-run alias directory hands out the same dry-run URLs.
    d = c.s.get(acme_gw.url + "/acme/dry-run/directory").json()
    assert d["newOrder"].endswith("/acme/dry-run/new-order")
    # The decisions still apply: an unknown order is refused in a dry run too.
    d = c.s.get(acme_gw.url + "/acme/directory?action=renew&orderId=999999&dryRun=1").json()
    problem(c.post(d["newOrder"], c.jws(d["newOrder"], {"identifiers": [{"type": "dns", "value": "dry.example.test"}]})), 403, "unauthorized")


def test_day_old_dry_run_orders_are_purged(gateway_factory_module):  # noqa: F811
    """Dry-run orders (and their authorizations and certificates) go after a day; real ones stay."""
    from rg_helpers import db_exec
    gw = gateway_factory_module(env={})
    c = account(gw, prevalidated=True, folder="\\VED\\Policy\\AcmePurge")
    real, _ = order_and_issue(c, ["purge.example.test"], expect_validation=False)
    d = c.s.get(gw.url + "/acme/directory?dryRun=1").json()
    order_and_issue(c, ["purge.example.test"], d["newOrder"], expect_validation=False)
    count = lambda sql: int(db_scalar(gw, sql))  # noqa: E731
    assert count("SELECT COUNT(*) FROM acme_dry_run_certs") == 1
    gw.stop()
    db_exec(gw, "UPDATE acme_orders SET created_at = created_at - INTERVAL '2 days' WHERE dry_run = true"
            if gw.database.backend == "postgres" else
            "UPDATE acme_orders SET created_at = datetime(created_at, '-2 days') WHERE dry_run = 1")
    gw.start()
    import time
    for _ in range(100):  # the purge runs in the background at start
        if count("SELECT COUNT(*) FROM acme_orders WHERE dry_run = true") == 0:
            break
        time.sleep(0.1)
    assert count("SELECT COUNT(*) FROM acme_orders WHERE dry_run = true") == 0
    assert count("SELECT COUNT(*) FROM acme_dry_run_certs") == 0
    assert count("SELECT COUNT(*) FROM acme_orders WHERE dry_run = false") == 1
    assert count("SELECT COUNT(*) FROM acme_authz") == 1
    assert real["status"] == "valid"


def test_reissue_keeps_the_end_date_and_may_change_names(acme_gw):
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeReissue")
    o, chain = order_and_issue(c, ["ri.example.test"], expect_validation=False)
    n = o["x-renewgate"]["orderId"]
    d = c.s.get(acme_gw.url + f"/acme/directory?action=reissue&orderId={n}").json()
    o2, chain2 = order_and_issue(c, ["ri.example.test", "ri2.example.test"], d["newOrder"], expect_validation=False)
    assert o2["x-renewgate"] == {"action": "reissue", "orderId": n}
    assert chain2[0].not_valid_after_utc == chain[0].not_valid_after_utc
    assert chain2[0].serial_number != chain[0].serial_number and versions(acme_gw, n) == 2
    sans = chain2[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert set(sans) == {"ri.example.test", "ri2.example.test"}
    # The object's current version (Venafi dialect) is the reissued one.
    api = acme_gw.session(scope="certificate:manage")
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": "\\VED\\Policy\\AcmeReissue\\ri.example.test", "Format": "Base64"})
    assert x509.load_pem_x509_certificate(base64.b64decode(r.json()["CertificateData"])).serial_number == chain2[0].serial_number


def test_multi_year_coverage_reissues_outside_the_order_window(acme_gw):
    c = account(acme_gw, prevalidated=True, folder="\\VED\\Policy\\AcmeMulti",
                settings=("domains=example.test", "validity=30d", "acme_coverage=3y"))
    o, chain = order_and_issue(c, ["multi.example.test"], expect_validation=False)
    n = o["x-renewgate"]["orderId"]
    end = db_scalar(acme_gw, f"SELECT coverage_end FROM acme_objects WHERE object_id = {n}")
    assert end.startswith(str(chain[0].not_valid_before_utc.year + 3))
    # Inside the 32-day certificate window, but a multi-year plan looks at the order window
    # (90 days before the coverage ends): the default is a reissue of the same order.
    o2, chain2 = order_and_issue(c, ["multi.example.test"], expect_validation=False)
    assert o2["x-renewgate"] == {"action": "reissue", "orderId": n}
    # 30 days, well inside the coverage.
    assert (chain2[0].not_valid_after_utc - chain2[0].not_valid_before_utc).days in (29, 30)
    # An explicit renew starts a new coverage period.
    d = c.s.get(acme_gw.url + f"/acme/directory?action=renew&orderId={n}").json()
    o3, _ = order_and_issue(c, ["multi.example.test"], d["newOrder"], expect_validation=False)
    assert o3["x-renewgate"] == {"action": "renew", "orderId": n}
    assert db_scalar(acme_gw, f"SELECT coverage_end FROM acme_objects WHERE object_id = {n}") >= end


def test_a_validation_interrupted_by_a_kill_9_completes_after_restart(gateway_factory_module, http01):  # noqa: F811
    """A challenge accepted (`processing`) when the gateway is killed is validated after the restart:
    its validation job is claimed again once its lease (timeout_s + 5 s) has expired."""
    import threading
    import time
    from test_acme_orders import HOLD, TOKENS
    gw = gateway_factory_module(env={"RENEWGATE_ACME__VALIDATION__HTTP01_PORT": str(http01),
                                     "RENEWGATE_ACME__VALIDATION__HOSTS": "*.example.test=127.0.0.1",
                                     "RENEWGATE_ACME__VALIDATION__TIMEOUT_S": "5"})
    c = account(gw, folder="\\VED\\Policy\\AcmeCrash")
    url = c.dir["newOrder"]
    o = c.post(url, c.jws(url, {"identifiers": [{"type": "dns", "value": "crash.example.test"}]})).json()
    az = o["authorizations"][0]
    ch = [x for x in c.post(az, c.jws(az, None)).json()["challenges"] if x["type"] == "http-01"][0]
    TOKENS[ch["token"]] = f"{ch['token']}.{c.key.thumbprint()}"
    # The server holds its answer: the validation is in flight when the gateway is killed.
    HOLD[ch["token"]] = threading.Event()
    r = c.post(ch["url"], c.jws(ch["url"], {}))
    assert r.status_code == 200, r.text
    a = c.post(az, c.jws(az, None)).json()
    assert [x for x in a["challenges"] if x["type"] == "http-01"][0]["status"] == "processing", a
    gw.stop(kill=True)
    HOLD.pop(ch["token"]).set()
    gw.start()
    deadline = time.time() + 60
    while time.time() < deadline:
        a = c.post(az, c.jws(az, None)).json()
        if a["status"] != "pending":
            break
        time.sleep(0.2)
    assert a["status"] == "valid", a


def test_one_inventory_across_dialects(acme_gw):
    """An object enrolled through Venafi is renewed by an explicit ACME action; an object ACME
    created is renewed through Venafi (a new PKCS#10) and Keyfactor (CertEnroll/3/Renew)."""
    from rg_helpers import make_csr, renew, retrieved_certs, wait_retrieve
    from test_keyfactor import classic_renew, kf_session
    folder = "\\VED\\Policy\\AcmeMixed"
    c = account(acme_gw, prevalidated=True, folder=folder)
    api = acme_gw.session(scope="certificate:manage")
    # Venafi → ACME.
    _, csr = make_csr("ven.example.test", dns=["ven.example.test"])
    r = api.post("/vedsdk/certificates/request", json={"PolicyDN": folder, "PKCS10": csr, "ObjectName": "ven.example.test"})
    assert r.status_code == 200, r.text
    dn, guid = r.json()["CertificateDN"], r.json()["Guid"]
    first = retrieved_certs(wait_retrieve(api, dn))[0]
    n = api.get(f"/vedsdk/certificates/{guid}").json()["ObjectId"]
    # An object ACME did not issue belongs to no EAB key: it is handed to this account's key.
    acme_gw.cli("acme", "assign", "--eab-kid", c.eab_kid, "--object", str(n))
    d = c.s.get(acme_gw.url + f"/acme/directory?action=renew&orderId={n}").json()
    o, chain = order_and_issue(c, ["ven.example.test"], d["newOrder"], expect_validation=False)
    assert o["x-renewgate"] == {"action": "renew", "orderId": n} and chain[0].serial_number != first.serial_number
    assert retrieved_certs(wait_retrieve(api, dn))[0].serial_number == chain[0].serial_number
    # ACME → Venafi and Keyfactor.
    o, chain = order_and_issue(c, ["acm.example.test"], expect_validation=False)
    dn = folder + "\\acm.example.test"
    _, csr = make_csr("acm.example.test", dns=["acm.example.test"])
    r = renew(api, dn, PKCS10=csr, WorkToDoTimeout=10)
    assert r.status_code == 200, r.text
    by_venafi = retrieved_certs(r)[0]
    assert by_venafi.serial_number != chain[0].serial_number
    tp = __import__("hashlib").sha1(by_venafi.public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.DER)).hexdigest()
    b = classic_renew(kf_session(acme_gw), {"Lookup": {"Type": "Thumbprint", "Thumbprint": tp}})
    assert b.status_code == 200 and b.json()["RequestDisposition"] == "Issued", b.text
    assert retrieved_certs(wait_retrieve(api, dn))[0].serial_number not in (by_venafi.serial_number, chain[0].serial_number)
