"""Venafi TPP authentication: /vedauth tokens, the legacy API key, scopes, and route spelling."""
import base64
import re
import time
import uuid

import pytest
import requests
from packaging.version import Version

from rg_helpers import assert_json, assert_venafi_error

OAUTH = "/vedauth/authorize/oauth"


def oauth(gw, user="admin", password=None, scope="certificate:manage,revoke", client_id="renewgate-tests", **extra):
    s = gw.session(token=False)
    return s.post(OAUTH, json={"username": user, "password": password if password is not None else gw.admin_password,
                               "client_id": client_id, "scope": scope, **extra})


def bearer(gw, token):
    return gw.session(token=token)


def assert_session_error(resp):
    assert resp.status_code == 401, f"{resp.status_code} {resp.text}"
    body = assert_json(resp)
    assert body.get("error") == "session_error", body
    assert isinstance(body.get("error_description"), str) and body["error_description"], body


def assert_token_shape(tok):
    assert isinstance(tok, str) and len(tok) == 24 and tok.endswith("=="), tok
    assert len(base64.b64decode(tok)) == 16, tok


@pytest.fixture(scope="module")
def limited_user(gateway):
    """A user whose most is certificate:manage."""
    name = "limited-" + uuid.uuid4().hex[:6]
    gateway.cli("user", "add", name, "--password", "Limited-Passw0rd!", "--scope", "certificate:manage")
    return name, "Limited-Passw0rd!"


def test_oauth_token_shape(gateway):
    before = int(time.time())
    r = oauth(gateway, scope="certificate:manage,revoke")
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert_token_shape(body["access_token"])
    assert isinstance(body["refresh_token"], str) and body["refresh_token"]
    assert body["refresh_token"] != body["access_token"]
    for k in ("expires", "expires_in", "refresh_until"):
        assert type(body[k]) is int, (k, body[k])
    assert body["expires"] > before
    assert body["expires_in"] > 0
    assert abs(body["expires"] - (before + body["expires_in"])) < 120
    assert body["refresh_until"] >= body["expires"]
    assert body["token_type"] == "Bearer"
    assert isinstance(body["scope"], str) and body["scope"].startswith("certificate:")
    assert "manage" in body["scope"] and "revoke" in body["scope"]
    assert isinstance(body["identity"], str) and body["identity"].startswith("local:"), body["identity"]


def test_tokens_are_distinct(gateway):
    a = oauth(gateway).json()["access_token"]
    b = oauth(gateway).json()["access_token"]
    assert a != b


def test_oauth_route_spelling_of_pyvenafi(gateway):
    s = gateway.session(token=False)
    r = s.post("/vedauth/Authorize/OAuth", json={"username": "admin", "password": gateway.admin_password,
                                                 "client_id": "pyvenafi", "scope": "certificate:manage"})
    assert r.status_code == 200, r.text
    assert_token_shape(r.json()["access_token"])


def test_refresh_token_rotates_and_revokes_old(gateway):
    first = oauth(gateway, client_id="refresh-test").json()
    s = gateway.session(token=False)
    r = s.post("/vedauth/authorize/token", json={"refresh_token": first["refresh_token"], "client_id": "refresh-test"})
    assert r.status_code == 200, r.text
    second = assert_json(r)
    assert_token_shape(second["access_token"])
    assert second["access_token"] != first["access_token"]
    assert type(second["expires"]) is int and type(second["refresh_until"]) is int
    assert second["token_type"] == "Bearer"
    # The new token works, the old one is revoked.
    assert bearer(gateway, second["access_token"]).get("/vedauth/authorize/verify").status_code == 200
    assert_session_error(bearer(gateway, first["access_token"]).get("/vedauth/authorize/verify"))
    assert_session_error(bearer(gateway, first["access_token"]).get("/vedsdk/systemstatus/version"))
    # The used refresh token cannot be used again.
    again = s.post("/vedauth/authorize/token", json={"refresh_token": first["refresh_token"], "client_id": "refresh-test"})
    assert again.status_code == 400, again.text
    assert assert_json(again)["error"] == "invalid_grant"


def test_refresh_with_unknown_token_is_invalid_grant(gateway):
    r = gateway.session(token=False).post("/vedauth/authorize/token",
                                          json={"refresh_token": "AAAAAAAAAAAAAAAAAAAAAA==", "client_id": "x"})
    assert r.status_code == 400, r.text
    body = assert_json(r)
    assert body["error"] == "invalid_grant" and body["error_description"]


def test_verify(gateway):
    tok = oauth(gateway, client_id="verify-app", scope="certificate:manage").json()
    r = bearer(gateway, tok["access_token"]).get("/vedauth/authorize/verify")
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["application"] == "verify-app"
    assert body["identity"] == tok["identity"]
    assert body["scope"] == tok["scope"]
    assert type(body["valid_for"]) is int and 0 < body["valid_for"] <= tok["expires_in"]
    assert body["expires_unix_time"] == tok["expires"]
    for k in ("access_issued_on_ISO8601", "expires_ISO8601", "grant_issued_on_ISO8601"):
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", body[k]), (k, body[k])


def test_revoke_token(gateway):
    tok = oauth(gateway).json()["access_token"]
    s = bearer(gateway, tok)
    assert s.get("/vedauth/authorize/verify").status_code == 200
    r = s.get("/vedauth/revoke/token")
    assert r.status_code == 200, r.text
    assert_json(r)
    assert_session_error(s.get("/vedauth/authorize/verify"))
    assert_session_error(s.post("/vedsdk/certificates/renew", json={"CertificateDN": "\\VED\\Policy\\x"}))


def test_legacy_api_key(gateway):
    s = gateway.session(token=False)
    r = s.post("/vedsdk/authorize/", json={"Username": "admin", "Password": gateway.admin_password})
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert isinstance(body["APIKey"], str) and body["APIKey"]
    m = re.match(r"^/Date\((\d+)\)/$", body["ValidUntil"])
    assert m, body["ValidUntil"]
    assert int(m.group(1)) > time.time() * 1000
    k = gateway.session(token=False)
    k.headers["X-Venafi-Api-Key"] = body["APIKey"]
    v = k.get("/vedsdk/systemstatus/version")
    assert v.status_code == 200, v.text
    # The key also works on the certificate calls (any header case).
    k2 = gateway.session(token=False)
    k2.headers["x-venafi-api-key"] = body["APIKey"]
    cp = k2.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": "\\VED\\Policy"})
    assert cp.status_code == 200, cp.text


def test_legacy_api_key_wrong_password(gateway):
    r = gateway.session(token=False).post("/vedsdk/authorize/", json={"Username": "admin", "Password": "wrong"})
    assert r.status_code in (400, 401), r.text
    assert_json(r)
    assert "APIKey" not in r.json()


def test_x_venafi_api_key_bearer_form(gateway):
    tok = gateway.token()
    s = gateway.session(token=False)
    s.headers["X-Venafi-API-Key"] = "Bearer " + tok
    r = s.get("/vedsdk/systemstatus/version")
    assert r.status_code == 200, r.text
    s2 = gateway.session(token=False)
    s2.headers["X-Venafi-Api-Key"] = tok
    assert s2.get("/vedauth/authorize/verify").status_code == 200


def test_version_is_pep440(gateway):
    r = gateway.session().get("/vedsdk/systemstatus/version")
    assert r.status_code == 200, r.text
    v = assert_json(r)["Version"]
    assert re.match(r"^\d+(\.\d+){1,3}$", v), v
    Version(v)  # PEP 440 parsable (pyvenafi parses it at login)


def test_version_route_spelling_of_pyvenafi(gateway):
    r = gateway.session().get("/vedsdk/SystemStatus/Version")
    assert r.status_code == 200 and "Version" in r.json(), r.text


@pytest.mark.parametrize("path,method", [
    ("/vedsdk/systemstatus/version", "GET"),
    ("/vedauth/authorize/verify", "GET"),
    ("/vedauth/revoke/token", "GET"),
    ("/vedsdk/certificates/renew", "POST"),
    ("/vedsdk/certificates/request", "POST"),
    ("/vedsdk/certificates/retrieve", "POST"),
    ("/vedsdk/certificates/checkpolicy", "POST"),
    ("/vedsdk/certificates/?Thumbprint=00", "GET"),
])
@pytest.mark.parametrize("token", [None, "AAAAAAAAAAAAAAAAAAAAAA==", "not-a-token"])
def test_missing_or_invalid_token_is_401(gateway, path, method, token):
    s = gateway.session(token=False)
    if token:
        s.headers["Authorization"] = "Bearer " + token
    r = s.request(method, path, json={"CertificateDN": "\\VED\\Policy\\x"} if method == "POST" else None)
    assert_session_error(r)


def test_scope_beyond_user_maximum_is_400(gateway, limited_user):
    name, pw = limited_user
    ok = oauth(gateway, user=name, password=pw, scope="certificate:manage")
    assert ok.status_code == 200, ok.text
    r = oauth(gateway, user=name, password=pw, scope="certificate:manage;configuration:manage")
    assert r.status_code == 400, r.text
    body = assert_json(r)
    assert body.get("error") == "invalid_scope", body
    assert isinstance(body.get("error_description"), str) and body["error_description"]
    assert "access_token" not in body


def test_user_default_scope_is_certificate_manage(gateway):
    name = "dflt-" + uuid.uuid4().hex[:6]
    gateway.cli("user", "add", name, "--password", "Dflt-Passw0rd!")
    assert oauth(gateway, user=name, password="Dflt-Passw0rd!", scope="certificate:manage").status_code == 200
    r = oauth(gateway, user=name, password="Dflt-Passw0rd!", scope="certificate:manage,revoke")
    assert r.status_code == 400 and assert_json(r)["error"] == "invalid_scope", r.text


def test_insufficient_scope_is_403(gateway):
    tok = oauth(gateway, scope="certificate").json()["access_token"]
    s = bearer(gateway, tok)
    r = s.post("/vedsdk/certificates/renew", json={"CertificateDN": "\\VED\\Policy\\whatever"})
    assert r.status_code == 403, r.text
    body = assert_json(r)
    assert body["error"] == "insufficient_scope", body
    assert "certificate:manage" in body["error_description"].lower()
    # Read scope is enough for search, and any valid token for version/verify.
    assert s.get("/vedsdk/certificates/?Thumbprint=00").status_code == 200
    assert s.get("/vedsdk/systemstatus/version").status_code == 200
    assert s.get("/vedauth/authorize/verify").status_code == 200


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"WorkToDoTimeout": 500, "CertificateDN": "\\\\VED\\\\Policy\\\\x"}',
    b'{"PKCS10": "-----BEGIN CERTIFICATE REQUEST-----\\nAAAA\\n-----END CERTIFICATE REQUEST-----"}',
    b'{"CertificateDN": "\\\\VED\\\\Policy\\\\x", "PKCS10": "-----BEGIN CERTIFICATE REQUEST-----\\nAAAA\\n-----END CERTIFICATE REQUEST-----"}',
    b'{"CertificateDN": "\\\\VED\\\\Policy\\\\x", "CertificateData": "%%% not base64"}',
    b"{}",
])
def test_renew_answers_401_and_403_before_reading_a_bad_body(gateway, body):
    """Renew reads its body before the token (one blocking hop); authentication still answers first,
    and a CSR is only decoded for a caller whose token is good."""
    headers = {"Content-Type": "application/json"}
    anonymous = gateway.session(token=False)
    assert_session_error(anonymous.post("/vedsdk/certificates/renew", data=body, headers=headers))
    forged = gateway.session(token=False)
    forged.headers["Authorization"] = "Bearer AAAAAAAAAAAAAAAAAAAAAA=="
    assert_session_error(forged.post("/vedsdk/certificates/renew", data=body, headers=headers))
    narrow = bearer(gateway, oauth(gateway, scope="certificate").json()["access_token"])
    r = narrow.post("/vedsdk/certificates/renew", data=body, headers=headers)
    assert r.status_code == 403, r.text
    assert assert_json(r)["error"] == "insufficient_scope", r.text
    # With the scope, the same body is the 400 it is.
    full = bearer(gateway, oauth(gateway, scope="certificate:manage").json()["access_token"])
    r = full.post("/vedsdk/certificates/renew", data=body, headers=headers)
    assert r.status_code == 400, r.text
    assert_venafi_error(r)


def test_wrong_password_is_invalid_grant(gateway):
    r = oauth(gateway, password="definitely-wrong")
    assert r.status_code == 400, r.text
    body = assert_json(r)
    assert body["error"] == "invalid_grant", body
    assert "access_token" not in body


def test_unknown_user_is_invalid_grant(gateway):
    r = oauth(gateway, user="nobody-" + uuid.uuid4().hex[:6], password="x")
    assert r.status_code == 400 and assert_json(r)["error"] == "invalid_grant", r.text


@pytest.mark.parametrize("path", [
    "/VEDSDK/Certificates/Renew/",
    "/vedsdk/certificates/renew",
    "/vedsdk/Certificates/Renew",
    "/vedsdk/certificates/renew/",
    "/VedSdk/CERTIFICATES/RENEW",
])
def test_routes_case_insensitive_with_optional_slash(gateway, path):
    r = gateway.session().post(path, json={"CertificateDN": "\\VED\\Policy\\no such certificate"})
    assert_venafi_error(r, 400, exact="Certificate \\VED\\Policy\\no such certificate does not exist.")


def test_search_route_with_and_without_slash(gateway):
    s = gateway.session()
    for path in ("/vedsdk/certificates/?Thumbprint=0011", "/vedsdk/certificates?Thumbprint=0011",
                 "/VEDSDK/Certificates/?Thumbprint=0011"):
        r = s.get(path)
        assert r.status_code == 200, (path, r.text)
        assert assert_json(r)["TotalCount"] == 0


def test_unknown_vedsdk_route_is_json_404(gateway):
    r = gateway.session().get("/vedsdk/no/such/route")
    assert r.status_code == 404
    assert_json(r)


def test_plain_http_is_not_served(gateway):
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{gateway.port}/health", timeout=5)


def test_refresh_with_another_client_id_is_refused(gateway):
    first = oauth(gateway, client_id="app-one").json()
    r = gateway.session(token=False).post("/vedauth/authorize/token",
                                          json={"refresh_token": first["refresh_token"], "client_id": "app-two"})
    assert r.status_code == 400, r.text
    body = assert_json(r)
    assert body["error"] and "client_id" in body["error_description"], body
    # The refused attempt does not revoke the grant.
    assert bearer(gateway, first["access_token"]).get("/vedauth/authorize/verify").status_code == 200


def test_expired_token_is_401_and_refresh_still_works(gateway_factory):
    g = gateway_factory(env={"RENEWGATE_AUTH__TOKEN_LIFETIME": "2s"})
    tok = oauth(g, client_id="short").json()
    assert tok["expires_in"] == 2
    s = bearer(g, tok["access_token"])
    assert s.get("/vedauth/authorize/verify").status_code == 200
    time.sleep(3.5)
    assert_session_error(s.get("/vedauth/authorize/verify"))
    assert_session_error(s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": "\\VED\\Policy"}))
    r = g.session(token=False).post("/vedauth/authorize/token",
                                    json={"refresh_token": tok["refresh_token"], "client_id": "short"})
    assert r.status_code == 200, r.text
    assert bearer(g, r.json()["access_token"]).get("/vedauth/authorize/verify").status_code == 200
