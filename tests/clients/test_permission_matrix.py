"""The permission matrix of the "One door" issue: for every endpoint of every dialect and the native
API that names a certificate, object, store, folder or job, a caller without the permission gets
exactly the answer given for an identifier that does not exist (status and body, apart from the
identifier sent), and nothing changes. The caller holds every scope and read,write,key on its own
folder A; everything named here lives in folder B. (ACME orders and authorizations of another
account answer like unknown ones: test_acme_lifecycle and test_acme_accounts.)"""
import json
import re
import uuid

import pytest
import requests

from rg_helpers import db_scalar, request_service, retrieve, retrieved_certs, sql_str, wait_retrieve

PW = "Matrix-Passw0rd!1"
KF_HEADERS = {"x-keyfactor-requested-with": "APIClient"}


@pytest.fixture(scope="module")
def world(gateway):
    tag = uuid.uuid4().hex[:6]
    fa, fb = f"\\VED\\Policy\\MatrixA{tag}", f"\\VED\\Policy\\MatrixB{tag}"
    for f in (fa, fb):
        gateway.cli("policy", "set", f)
    admin = gateway.session()
    dn = request_service(admin, fb, f"matrix-{tag}.example.com")
    cert = retrieved_certs(wait_retrieve(admin, dn))[0]
    row = db_scalar(gateway, f"SELECT c.id || ' ' || o.guid || ' ' || c.thumbprint FROM certificates c "
                             f"JOIN cert_objects o ON o.id = c.object_id WHERE o.dn = {sql_str(dn)}")
    cert_id, guid, thumb = row.split()
    store = gateway.cli("store", "add", "--client-machine", f"matrix-{tag}", "--store-path", "/m", "--type",
                        "pem-dir", "--alias", "m", "--folder", fb).stdout.strip()
    job = db_scalar(gateway, f"SELECT MAX(j.id) FROM jobs j JOIN cert_objects o ON o.id = j.object_id "
                             f"WHERE o.dn = {sql_str(dn)}")
    user = f"matrix-{tag}"
    gateway.cli("user", "add", user, "--password", PW, "--scope",
                "certificate:manage,revoke;configuration:manage", "--folder", f"{fa}:read,write,key")
    token = gateway.token(user=user, password=PW, scope="certificate:manage,revoke;configuration:manage")
    return {
        "gw": gateway, "user": user, "token": token, "fb": fb,
        "dn": dn, "missing_dn": f"{fb}\\nope-{tag}", "guid": guid, "missing_guid": str(uuid.uuid4()),
        "cert_id": int(cert_id), "missing_cert_id": int(cert_id) + 1_000_000,
        "thumb": thumb, "missing_thumb": "AB" * 20,
        "serial": format(cert.serial_number, "X"), "missing_serial": "7E57" * 8,
        "store": store, "missing_store": str(uuid.uuid4()),
        "job": int(job), "missing_job": int(job) + 1_000_000,
        "folder": fb, "missing_folder": f"{fb}Nope",
    }


def venafi(w, method, path, body=None, params=None):
    return requests.request(method, w["gw"].url + path, json=body, params=params, verify=w["gw"].ca_bundle,
                            timeout=60, headers={"Authorization": f"Bearer {w['token']}"})


def keyfactor(w, method, path, body=None, params=None):
    return requests.request(method, w["gw"].url + path, json=body, params=params, verify=w["gw"].ca_bundle,
                            timeout=60, auth=(w["user"], PW), headers=KF_HEADERS)


# (name, caller, method, path template, body template, params template, identifier kind). Templates
# use {id}, filled with the hidden identifier, then with the missing one.
CASES = [
    ("venafi-retrieve", venafi, "POST", "/vedsdk/certificates/retrieve", {"CertificateDN": "{id}"}, None, "dn"),
    ("venafi-retrieve-get", venafi, "GET", "/vedsdk/certificates/retrieve", None, {"CertificateDN": "{id}"}, "dn"),
    ("venafi-renew", venafi, "POST", "/vedsdk/certificates/renew", {"CertificateDN": "{id}"}, None, "dn"),
    ("venafi-revoke", venafi, "POST", "/vedsdk/certificates/revoke", {"CertificateDN": "{id}"}, None, "dn"),
    ("venafi-reset", venafi, "POST", "/vedsdk/certificates/reset", {"CertificateDN": "{id}"}, None, "dn"),
    ("venafi-dntoguid", venafi, "POST", "/vedsdk/config/dntoguid", {"ObjectDN": "{id}"}, None, "dn"),
    ("venafi-details", venafi, "GET", "/vedsdk/certificates/{id}", None, None, "guid"),
    ("venafi-update", venafi, "PUT", "/vedsdk/certificates/{id}",
     {"AttributeData": [{"Name": "Disabled", "Value": ["1"]}]}, None, "guid"),
    ("venafi-checkpolicy", venafi, "POST", "/vedsdk/certificates/checkpolicy", {"PolicyDN": "{id}"}, None, "folder"),
    ("venafi-request", venafi, "POST", "/vedsdk/certificates/request",
     {"PolicyDN": "{id}", "Subject": "x.example.com", "ObjectName": "x.example.com"}, None, "folder"),
    ("kf-get", keyfactor, "GET", "/KeyfactorAPI/Certificates/{id}", None, None, "cert_id"),
    ("kf-download", keyfactor, "POST", "/KeyfactorAPI/Certificates/Download", {"CertID": "{id}"}, None, "cert_id"),
    ("kf-recover", keyfactor, "POST", "/KeyfactorAPI/Certificates/Recover",
     {"CertID": "{id}", "Password": PW}, None, "cert_id"),
    ("kf-revoke", keyfactor, "POST", "/KeyfactorAPI/Certificates/Revoke",
     {"CertificateIds": ["{id}"], "Reason": 0, "Comment": "x"}, None, "cert_id"),
    ("kf-renew", keyfactor, "POST", "/KeyfactorAPI/Enrollment/Renew", {"CertificateId": "{id}"}, None, "cert_id"),
    ("kf-renew-thumbprint", keyfactor, "POST", "/KeyfactorAPI/Enrollment/Renew", {"Thumbprint": "{id}"}, None, "thumb"),
    ("kf-available-renewal", keyfactor, "GET", "/KeyfactorAPI/Enrollment/AvailableRenewal/Id/{id}", None, None,
     "cert_id"),
    ("kf-pfx-deploy", keyfactor, "POST", "/KeyfactorAPI/Enrollment/PFX/Deploy",
     {"CertificateId": "{id}", "StoreIds": [], "Password": PW}, None, "cert_id"),
    ("kf-pfx-replace", keyfactor, "POST", "/KeyfactorAPI/Enrollment/PFX/Replace",
     {"ExistingCertificateId": "{id}", "CertificateId": "{id}", "Password": PW}, None, "cert_id"),
    ("kf-store-add-cert", keyfactor, "POST", "/KeyfactorAPI/CertificateStores/Certificates/Add",
     {"CertificateId": "{id}", "CertificateStores": []}, None, "cert_id"),
    ("kf-classic-renew", keyfactor, "POST", "/CMSApi/CertEnroll/3/Renew",
     {"Lookup": {"Type": "CMSID", "CMSID": "{id}"}}, None, "cert_id"),
    ("kf-classic-renew-serial", keyfactor, "POST", "/CMSApi/CertEnroll/3/Renew",
     {"Lookup": {"Type": "Serial", "SerialNumber": "{id}"}}, None, "serial"),
    ("kf-classic-renew-thumbprint", keyfactor, "POST", "/CMSApi/CertEnroll/3/Renew",
     {"Lookup": {"Type": "Thumbprint", "Thumbprint": "{id}"}}, None, "thumb"),
    ("kf-store-get", keyfactor, "GET", "/KeyfactorAPI/CertificateStores/{id}", None, None, "store"),
    ("kf-store-inventory", keyfactor, "GET", "/KeyfactorAPI/CertificateStores/{id}/Inventory", None, None, "store"),
    ("kf-store-add", keyfactor, "POST", "/KeyfactorAPI/CertificateStores/Certificates/Add",
     {"CertificateId": 0, "CertificateStores": [{"CertificateStoreId": "{id}"}]}, None, "store"),
    ("kf-store-remove", keyfactor, "POST", "/KeyfactorAPI/CertificateStores/Certificates/Remove",
     {"CertificateStores": [{"CertificateStoreId": "{id}", "Alias": "m"}]}, None, "store"),
    ("native-job", venafi, "GET", "/api/v1/jobs/{id}", None, None, "job"),
    ("native-policy-get", venafi, "GET", "/api/v1/policies", None, {"dn": "{id}"}, "folder"),
    ("native-policy-put", venafi, "PUT", "/api/v1/policies", {"settings": {"city": "Nowhere"}}, {"dn": "{id}"},
     "folder"),
    ("native-policy-delete", venafi, "DELETE", "/api/v1/policies", None, {"dn": "{id}"}, "folder"),
]


def fill(template, value):
    if template is None:
        return None
    text = json.dumps(template)
    # Numbers stay numbers: "{id}" in a JSON string becomes the bare value when it is an int.
    if isinstance(value, int):
        text = text.replace('"{id}"', str(value))
    return json.loads(text.replace("{id}", json.dumps(str(value))[1:-1]))


def snapshot(gw):
    return tuple(db_scalar(gw, f"SELECT COUNT(*) FROM {t}") for t in
                 ("certificates", "jobs", "store_jobs", "cert_objects", "revocations", "policy_folders")) + (
        db_scalar(gw, "SELECT COUNT(*) FROM cert_objects WHERE disabled = " + ("true" if gw.database.url else "1")),)


def normalized(r, ident):
    """Status and body with the identifier sent replaced (whole tokens only: an id of 11 must not
    match inside the error code 0xA0110004)."""
    try:
        body = r.json()
    except ValueError:
        body = r.text
    text = json.dumps(body, sort_keys=True)
    for form in {json.dumps(str(ident))[1:-1], str(ident)}:
        text = re.sub(r"(?<![0-9A-Za-z])" + re.escape(form) + r"(?![0-9A-Za-z])", "<id>", text)
    return r.status_code, text


def served(status, text):
    """Whether the answer handed out the object: an error status, or Venafi's DNToGUID shape
    (200 with Result 400 and an empty GUID for an unknown DN)."""
    if status >= 400:
        return False
    body = json.loads(text)
    return not (isinstance(body, dict) and body.get("Result") == 400 and body.get("GUID") == "")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hidden_answers_like_missing(world, case):
    name, call, method, path, body, params, kind = case
    w = world
    before = snapshot(w["gw"])
    answers = []
    for ident in (w[kind], w["missing_" + kind]):
        r = call(w, method, path.replace("{id}", str(ident)), fill(body, ident), fill(params, ident))
        answers.append(normalized(r, ident))
    assert answers[0] == answers[1], f"{name}: hidden {answers[0]} != missing {answers[1]}"
    assert not served(*answers[0]), f"{name}: a hidden {kind} was served: {answers[0]}"
    assert snapshot(w["gw"]) == before, f"{name}: something changed"


def test_the_owner_still_sees_everything(world):
    """Control: the admin reaches what the restricted caller could not."""
    admin = world["gw"].session()
    assert retrieve(admin, world["dn"]).status_code == 200
