"""Regression tests for defects found in review: folder permissions across every dialect, a
multi-byte value in an error excerpt, key release on Request, folder deletion with sub-folders,
refresh-token reuse."""
import base64
import uuid

import pytest
import requests

PW = "Str0ng!Passw0rd#26"


@pytest.fixture(scope="module")
def setup(gateway):
    a = "\\VED\\Policy\\HA" + uuid.uuid4().hex[:6]
    b = "\\VED\\Policy\\HB" + uuid.uuid4().hex[:6]
    gateway.cli("policy", "set", a)
    gateway.cli("policy", "set", b)
    api = gateway.session(scope="certificate:manage,revoke;configuration:manage")
    ids = {}
    for folder, name in ((a, "a.example.com"), (b, "b.example.com")):
        r = api.post("/vedsdk/certificates/request", json={"PolicyDN": folder, "Subject": name, "WorkToDoTimeout": 20,
                                                           "KeyAlgorithm": "ECC"})
        assert r.status_code == 200 and "CertificateData" in r.json(), r.text
        guid = r.json()["Guid"]
        d = api.get(f"/vedsdk/certificates/{guid}").json()
        kf = api.get("/KeyfactorAPI/Certificates", params={"QueryString": f'Thumbprint -eq "{d["X509"]["Thumbprint"]}"'}).json()
        ids[folder] = (r.json()["CertificateDN"], kf[0]["Id"])
    user = "lim" + uuid.uuid4().hex[:6]
    gateway.cli("user", "add", user, "--password", PW, "--scope", "certificate:manage,revoke", "--folder", f"{a}:read,write")
    return gateway, api, a, b, ids, user


def kf(gw, user):
    s = requests.Session()
    s.trust_env = False
    s.verify = gw.ca_bundle
    s.auth = (f"CORP\\{user}", PW)
    return s


def test_keyfactor_honours_folder_permissions(setup):
    gw, api, a, b, ids, user = setup
    s = kf(gw, user)
    other = ids[b][1]
    mine = ids[a][1]
    for method, path, body in (
        ("post", "/KeyfactorAPI/Certificates/Recover", {"CertID": other, "Password": PW}),
        ("post", "/KeyfactorAPI/Certificates/Download", {"CertID": other}),
        ("post", "/KeyfactorAPI/Enrollment/Renew", {"CertificateId": other}),
        ("post", "/KeyfactorAPI/Certificates/Revoke", {"CertificateIds": [other], "Reason": 0}),
        ("get", f"/KeyfactorAPI/Certificates/{other}", None),
        ("post", "/CMSApi/CertEnroll/3/Renew", {"Lookup": {"Type": "CMSID", "CMSID": other}}),
    ):
        r = getattr(s, method)(gw.url + path, json=body) if body is not None else s.get(gw.url + path)
        assert r.status_code == 404, f"{path}: {r.status_code} {r.text}"
        assert set(r.json()) == {"ErrorCode", "Message"}
    listed = s.get(gw.url + "/KeyfactorAPI/Certificates").json()
    assert {c["Id"] for c in listed} >= {mine} and other not in {c["Id"] for c in listed}
    # Its own folder works; the private key needs the key permission.
    assert s.post(gw.url + "/KeyfactorAPI/Certificates/Download", json={"CertID": mine}).status_code == 200
    assert s.post(gw.url + "/KeyfactorAPI/Certificates/Recover", json={"CertID": mine, "Password": PW}).status_code == 404
    # Stores, templates and CAs are configuration: this user has no such scope.
    assert s.get(gw.url + "/KeyfactorAPI/Templates").status_code == 403


def test_venafi_request_does_not_release_a_key_without_permission(setup):
    gw, api, a, b, ids, user = setup
    s = gw.session(token=gw.token(scope="certificate:manage", user=user, password=PW))
    r = s.post("/vedsdk/certificates/request", json={"PolicyDN": a, "Subject": "k.example.com", "WorkToDoTimeout": 10,
                                                     "Format": "Base64 (PKCS #8)", "IncludePrivateKey": True, "Password": PW})
    assert r.status_code == 400 and "Private Key Read" in r.json()["Error"] and "CertificateData" not in r.json()


def test_multibyte_values_in_errors_do_not_crash(setup):
    gw = setup[0]
    r = requests.post(gw.url + "/vedauth/authorize/oauth", verify=gw.ca_bundle,
                      json={"username": ["a" + "é" * 60], "password": "x"})
    assert r.status_code == 400 and r.json()["error"]
    assert requests.get(gw.url + "/health", verify=gw.ca_bundle).status_code == 200


def test_folder_with_sub_folders_is_not_deleted(setup):
    gw, api, *_ = setup
    parent = "\\VED\\Policy\\Del" + uuid.uuid4().hex[:6]
    gw.cli("policy", "set", parent + "\\Child_1")
    r = api.delete("/api/v1/policies", params={"dn": parent})
    assert r.status_code == 400 and "not empty" in r.json()["message"]
    assert api.delete("/api/v1/policies", params={"dn": parent + "\\Child_1"}).json() == {"deleted": True}
    assert api.delete("/api/v1/policies", params={"dn": parent}).json() == {"deleted": True}


def test_refresh_token_is_single_use(setup):
    gw = setup[0]
    r = requests.post(gw.url + "/vedauth/authorize/oauth", verify=gw.ca_bundle, json={
        "username": "admin", "password": gw.admin_password, "client_id": "t", "scope": "certificate:manage"}).json()
    first = requests.post(gw.url + "/vedauth/authorize/token", verify=gw.ca_bundle, json={"refresh_token": r["refresh_token"], "client_id": "t"})
    assert first.status_code == 200
    again = requests.post(gw.url + "/vedauth/authorize/token", verify=gw.ca_bundle, json={"refresh_token": r["refresh_token"], "client_id": "t"})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
