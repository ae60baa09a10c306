"""The audit trail: a record (who, what, which certificate, outcome) for every renewal, revocation,
key download and policy change, read with `renewgate audit` (JSON lines) and GET /api/v1/audit."""
import json
import uuid

from rg_helpers import STRONG_PASSWORD, db_scalar, renew, request_service, retrieved_certs, wait_retrieve

ROOT = "\\VED\\Policy"


def cli_audit(gw, *args):
    out = gw.cli("audit", *args).stdout
    recs = [json.loads(line) for line in out.splitlines() if line.strip()]
    for r in recs:
        assert set(r) >= {"id", "at", "actor", "action", "target", "certificate_id", "outcome", "detail", "source",
                          "request_id"}, r
    return recs


def after(recs, first_id):
    return [r for r in recs if r["id"] > first_id]


def last_id(gw):
    recs = cli_audit(gw, "--limit", "1")
    return recs[-1]["id"] if recs else 0


def test_renew_revoke_key_download_and_policy_change_are_audited(gateway):
    s = gateway.session()
    start = last_id(gateway)
    folder = f"{ROOT}\\Audit-{uuid.uuid4().hex[:6]}"
    # A policy change over the native API...
    conf = gateway.session(scope="certificate:manage,revoke;configuration:manage")
    r = conf.put("/api/v1/policies", params={"dn": folder}, json={"settings": {"validity": "20d"}})
    assert r.status_code == 200, r.text
    # ...and one with the CLI.
    gateway.cli("policy", "set", folder, "key_reuse=false", "--lock", "validity")
    dn = request_service(s, folder, f"audited-{uuid.uuid4().hex[:6]}.example.com")
    first = retrieved_certs(wait_retrieve(s, dn))[0]
    rid = "audit-" + uuid.uuid4().hex[:10]
    r = renew(s, dn, WorkToDoTimeout=60)
    assert r.status_code == 200, r.text
    second = retrieved_certs(wait_retrieve(s, dn, not_serial=first.serial_number))[0]
    assert second.serial_number != first.serial_number
    # A renewal that fails is audited too.
    missing = folder + "\\nobody.example.com"
    r = s.post("/vedsdk/certificates/renew", json={"CertificateDN": missing}, headers={"X-Request-Id": rid})
    assert r.status_code == 400, r.text
    # A key download.
    r = s.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": "Base64",
                                                      "IncludePrivateKey": True, "Password": STRONG_PASSWORD})
    assert r.status_code == 200, r.text
    # A revocation.
    r = s.post("/vedsdk/certificates/revoke", json={"CertificateDN": dn, "Reason": 1})
    assert r.status_code == 200 and r.json()["Success"] is True, r.text

    recs = after(cli_audit(gateway), start)
    by = lambda action: [x for x in recs if x["action"] == action]  # noqa: E731
    policy = by("policy_change")
    assert [(p["source"], p["target"], p["outcome"]) for p in policy] == [
        ("native", folder, "success"), ("cli", folder, "success")], policy
    assert policy[0]["actor"] == "admin" and policy[1]["actor"].startswith("cli")
    renews = by("renew")
    ok = [x for x in renews if x["target"] == dn]
    assert len(ok) == 1 and ok[0]["outcome"] == "success" and ok[0]["actor"] == "admin", renews
    assert ok[0]["source"] == "venafi" and ok[0]["request_id"], ok
    failed = [x for x in renews if x["target"] == missing]
    assert len(failed) == 1 and failed[0]["outcome"] == "failure" and failed[0]["request_id"] == rid, renews
    assert "400" in failed[0]["detail"]
    keys = by("key_download")
    assert [(k["target"], k["outcome"], k["actor"]) for k in keys] == [(dn, "success", "admin")], keys
    revokes = by("revoke")
    assert [(k["target"], k["outcome"], k["actor"]) for k in revokes] == [(dn, "success", "admin")], revokes
    # Oldest first, ids increasing, timestamps RFC 3339 UTC.
    assert [x["id"] for x in recs] == sorted(x["id"] for x in recs)
    assert all(x["at"].endswith("Z") and "T" in x["at"] for x in recs)
    # Filters.
    only = cli_audit(gateway, "--action", "revoke", "--after-id", str(start))
    assert [x["id"] for x in only] == [x["id"] for x in revokes]

    # The same trail over the native API (configuration scope).
    r = conf.get("/api/v1/audit", params={"after_id": start, "limit": 1000})
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()["records"]] == [x["id"] for x in cli_audit(gateway, "--after-id", str(start))]
    r = conf.get("/api/v1/audit", params={"action": "key_download", "after_id": start})
    assert [x["target"] for x in r.json()["records"]] == [dn]
    assert conf.get("/api/v1/audit", params={"action": "nonsense"}).status_code == 400
    assert s.get("/api/v1/audit").status_code == 403  # certificate scopes only
    assert gateway.session(token=False).get("/api/v1/audit").status_code == 401
    # Nothing secret in the trail.
    dump = json.dumps(recs)
    assert STRONG_PASSWORD not in dump and gateway.admin_password not in dump


def test_keyfactor_recover_and_revoke_are_audited(gateway):
    s = gateway.session()
    start = last_id(gateway)
    dn = request_service(s, ROOT, f"kfaudit-{uuid.uuid4().hex[:6]}.example.com")
    wait_retrieve(s, dn)
    cert_id = int(db_scalar(gateway, "SELECT c.id FROM certificates c JOIN cert_objects o ON o.current_cert_id = c.id "
                                     f"WHERE o.dn_lower = '{dn.lower()}'"))
    kf = {"x-keyfactor-api-version": "1", "x-keyfactor-requested-with": "APIClient"}
    r = s.post("/KeyfactorAPI/Certificates/Recover", json={"CertID": cert_id, "Password": STRONG_PASSWORD},
               headers={**kf, "x-certificateformat": "PFX"})
    assert r.status_code == 200, r.text
    r = s.post("/KeyfactorAPI/Certificates/Revoke", json={"CertificateIds": [cert_id], "Reason": 0}, headers=kf)
    assert r.status_code in (200, 204), r.text
    # A PFX enrollment hands out a key too.
    cn = f"kfpfx-{uuid.uuid4().hex[:6]}.example.com"
    r = s.post("/KeyfactorAPI/Enrollment/PFX", headers={**kf, "x-certificateformat": "PFX"},
               json={"Password": STRONG_PASSWORD, "Subject": f"CN={cn}", "IncludeChain": True, "Template": "WebServer",
                     "Timestamp": "2024-01-02T03:04:05.Z", "SANs": {"dns": [cn]}})
    assert r.status_code == 200, r.text
    info = r.json()["CertificateInformation"]
    assert info["RequestDisposition"] == "ISSUED", info
    recs = after(cli_audit(gateway), start)
    got = [(x["action"], x["certificate_id"], x["outcome"], x["source"], x["actor"]) for x in recs]
    assert ("key_download", info["KeyfactorId"], "success", "keyfactor", "admin") in got, got
    assert ("key_download", cert_id, "success", "keyfactor", "admin") in got, got
    assert ("revoke", cert_id, "success", "keyfactor", "admin") in got, got


def test_a_renewal_whose_issuance_fails_is_audited_as_a_failure(gateway):
    s = gateway.session()
    ca = "auditca" + uuid.uuid4().hex[:6]
    gateway.cli("ca", "add", ca)
    folder = f"{ROOT}\\AuditCA-{uuid.uuid4().hex[:6]}"
    gateway.cli("policy", "set", folder, f"ca={ca}")
    dn = request_service(s, folder, f"failing-{uuid.uuid4().hex[:6]}.example.com")
    wait_retrieve(s, dn)
    start = last_id(gateway)
    gateway.cli("ca", "disable", ca)
    r = renew(s, dn)
    assert r.status_code == 200 and r.json()["Success"] is True, r.text
    import time
    deadline = time.time() + 90
    while time.time() < deadline:
        recs = [x for x in after(cli_audit(gateway, "--action", "renew"), start) if x["target"] == dn]
        if len(recs) >= 2:
            break
        time.sleep(0.5)
    # The acceptance (written with the response) and the failed issuance (by a worker), in either order.
    assert sorted((x["actor"], x["outcome"]) for x in recs) == [("admin", "success"), ("worker", "failure")], recs
    assert f"CA {ca} is disabled" in next(x for x in recs if x["actor"] == "worker")["detail"], recs
    gateway.cli("ca", "enable", ca)
