"""Bad input gets the Venafi error shape (`{"Error": str, "Success": false}`, JSON, 4xx), never a
500 or a crash; one renewal in flight per certificate; WorkToDoTimeout expiry; failed issuance."""
import base64
import threading
import time
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rg_helpers import (WORK_TO_DO_TIMEOUT_TEXT, assert_json, assert_venafi_error, db_exec,
                        db_rows, db_scalar, make_csr, renew, request_service, retrieve, retrieved_certs, sql_str,
                        wait_retrieve)

ROOT = "\\VED\\Policy"
UNKNOWN_DN = "\\VED\\Policy\\X\\nope"
WORKERS_0 = {"RENEWGATE_QUEUE__WORKERS": "0"}


def broken_signature_csr():
    """A well-formed CSR whose signature does not verify (last signature byte flipped)."""
    _, pem = make_csr("broken-signature.example.com", dns=["broken-signature.example.com"], kind="rsa")
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    b64 = base64.b64encode(bytes(der)).decode()
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(
        b64[i:i + 64] for i in range(0, len(b64), 64)) + "\n-----END CERTIFICATE REQUEST-----\n"


@pytest.fixture(scope="module")
def s(gateway):
    return gateway.session()


@pytest.fixture(scope="module")
def dn(s):
    """A service-generated object, issued."""
    d = request_service(s, ROOT, f"bad-input-{uuid.uuid4().hex[:6]}.example.com")
    wait_retrieve(s, d)
    return d


def current_serial(s, d):
    r = retrieve(s, d)
    assert r.status_code == 200, r.text
    return retrieved_certs(r)[0].serial_number


# (id, path, body builder(dn) -> dict/str/bytes, checks for assert_venafi_error)
CASES = [
    ("renew-malformed-json", "/vedsdk/certificates/renew", lambda d: b'{"CertificateDN": ', {}),
    ("renew-not-json", "/vedsdk/certificates/renew", lambda d: b"CertificateDN=x", {}),
    ("renew-invalid-utf8", "/vedsdk/certificates/renew", lambda d: b"\xff\xfe{", {}),
    ("request-malformed-json", "/vedsdk/certificates/request", lambda d: b"{bad json", {}),
    ("retrieve-malformed-json", "/vedsdk/certificates/retrieve", lambda d: b'{"CertificateDN": "x",}', {}),
    ("checkpolicy-malformed-json", "/vedsdk/certificates/checkpolicy", lambda d: b"{", {}),
    ("renew-array", "/vedsdk/certificates/renew", lambda d: b"[1, 2]", {}),
    ("renew-string", "/vedsdk/certificates/renew", lambda d: b'"CertificateDN"', {}),
    ("renew-number", "/vedsdk/certificates/renew", lambda d: b"42", {}),
    ("renew-null", "/vedsdk/certificates/renew", lambda d: b"null", {}),
    ("request-array", "/vedsdk/certificates/request", lambda d: b'[{"PolicyDN": "\\\\VED\\\\Policy"}]', {}),
    ("renew-timeout-abc", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": d, "WorkToDoTimeout": "abc"},
     {"contains": "WorkToDoTimeout"}),
    ("renew-timeout-121", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": d, "WorkToDoTimeout": 121},
     {"contains": "WorkToDoTimeout"}),
    ("renew-timeout-negative", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": d, "WorkToDoTimeout": -1},
     {"contains": "WorkToDoTimeout"}),
    ("renew-timeout-object", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": d, "WorkToDoTimeout": {}},
     {"contains": "WorkToDoTimeout"}),
    ("retrieve-includechain-5", "/vedsdk/certificates/retrieve",
     lambda d: {"CertificateDN": d, "Format": "Base64", "IncludeChain": 5}, {"contains": "IncludeChain"}),
    ("retrieve-includechain-maybe", "/vedsdk/certificates/retrieve",
     lambda d: {"CertificateDN": d, "Format": "Base64", "IncludeChain": "maybe"}, {"contains": "IncludeChain"}),
    ("renew-dn-array", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": [d]}, {"contains": "CertificateDN"}),
    ("renew-unknown-dn", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": UNKNOWN_DN},
     {"exact": "Certificate \\VED\\Policy\\X\\nope does not exist."}),
    ("renew-unknown-dn-with-timeout", "/vedsdk/certificates/renew",
     lambda d: {"CertificateDN": UNKNOWN_DN, "WorkToDoTimeout": 5},
     {"exact": "Certificate \\VED\\Policy\\X\\nope does not exist."}),
    ("retrieve-unknown-dn", "/vedsdk/certificates/retrieve", lambda d: {"CertificateDN": UNKNOWN_DN, "Format": "Base64"},
     {"exact": "Certificate \\VED\\Policy\\X\\nope does not exist."}),
    ("renew-missing-dn", "/vedsdk/certificates/renew", lambda d: {"WorkToDoTimeout": 0},
     {"exact": "Missing CertificateDN."}),
    ("renew-empty-object", "/vedsdk/certificates/renew", lambda d: {}, {"exact": "Missing CertificateDN."}),
    ("renew-blank-dn", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": "  "},
     {"exact": "Missing CertificateDN."}),
    ("renew-empty-body", "/vedsdk/certificates/renew", lambda d: b"", {"exact": "Missing CertificateDN."}),
    ("retrieve-missing-dn", "/vedsdk/certificates/retrieve", lambda d: {"Format": "Base64"},
     {"exact": "Missing CertificateDN."}),
    ("retrieve-unknown-format", "/vedsdk/certificates/retrieve", lambda d: {"CertificateDN": d, "Format": "zip"},
     {"contains": "zip"}),
    ("retrieve-missing-format", "/vedsdk/certificates/retrieve", lambda d: {"CertificateDN": d}, {"contains": "Format"}),
    ("renew-unknown-format", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": d, "Format": "zip"},
     {"contains": "zip"}),
    ("retrieve-key-without-password", "/vedsdk/certificates/retrieve",
     lambda d: {"CertificateDN": d, "Format": "Base64 (PKCS #8)", "IncludePrivateKey": True}, {"contains": "Password"}),
    ("retrieve-key-weak-password", "/vedsdk/certificates/retrieve",
     lambda d: {"CertificateDN": d, "Format": "Base64 (PKCS #8)", "IncludePrivateKey": True, "Password": "abc"},
     {"contains": "Password"}),
    ("renew-pkcs10-not-base64", "/vedsdk/certificates/renew",
     lambda d: {"CertificateDN": d, "PKCS10": "this is not base64 !!!"},
     {"startswith": "PKCS#10 data not in base64 format;"}),
    ("renew-pkcs10-pem-not-base64", "/vedsdk/certificates/renew",
     lambda d: {"CertificateDN": d, "PKCS10": "-----BEGIN CERTIFICATE REQUEST-----\n@@@@\n-----END CERTIFICATE REQUEST-----"},
     {"startswith": "PKCS#10 data not in base64 format;"}),
    ("renew-pkcs10-base64-garbage", "/vedsdk/certificates/renew", lambda d: {"CertificateDN": d, "PKCS10": "aGVsbG8="},
     {"startswith": "PKCS#10 data not in base64 format;"}),
    ("request-pkcs10-not-base64", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "PKCS10": "not base64 %%%"}, {"startswith": "PKCS#10 data not in base64 format;"}),
    ("request-missing-policy", "/vedsdk/certificates/request", lambda d: {"Subject": "x.example.com"},
     {"contains": "PolicyDN"}),
    ("request-bad-ip-san", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "Subject": "ipsan.example.com", "SubjectAltNames": [{"Type": 7, "Name": "not-an-ip"}]},
     {"contains": "not-an-ip"}),
    ("request-san-not-object", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "Subject": "san.example.com", "SubjectAltNames": ["san.example.com"]}, {}),
    ("request-san-unknown-type", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "Subject": "san.example.com", "SubjectAltNames": [{"Type": 99, "Name": "x"}]}, {}),
    ("request-unknown-key-algorithm", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "Subject": "dsa.example.com", "KeyAlgorithm": "DSA"}, {"contains": "DSA"}),
    ("request-unsupported-key-size", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "Subject": "rsa1024.example.com", "KeyAlgorithm": "RSA", "KeyBitSize": 1024},
     {"contains": "1024"}),
    ("request-unknown-curve", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "Subject": "curve.example.com", "KeyAlgorithm": "ECC", "EllipticCurve": "P999"},
     {"contains": "P999"}),
    ("request-garbage-pkix-parameter-set", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "Subject": "pkix.example.com", "PkixParameterSet": "1.2.3.4"}, {"contains": "1.2.3.4"}),
    ("request-object-name-backslash", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": ROOT, "Subject": "bs.example.com", "ObjectName": "a\\b"}, {}),
    ("request-missing-folder", "/vedsdk/certificates/request",
     lambda d: {"PolicyDN": "\\VED\\Policy\\Nope Folder", "Subject": "mf.example.com"},
     {"exact": "PolicyDN: \\VED\\Policy\\Nope Folder does not exist."}),
    ("checkpolicy-missing-policy-dn", "/vedsdk/certificates/checkpolicy", lambda d: {}, {"contains": "PolicyDN"}),
    ("renew-oversized-body", "/vedsdk/certificates/renew",
     lambda d: b'{"CertificateDN": "' + b"A" * (2 * 1024 * 1024) + b'"}', {}),
    ("request-oversized-body", "/vedsdk/certificates/request",
     lambda d: b'{"PolicyDN": "\\\\VED\\\\Policy", "PKCS10": "' + b"A" * (2 * 1024 * 1024) + b'"}', {}),
]


@pytest.mark.parametrize("path,build,checks", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_venafi_error_shape(gateway, s, dn, path, build, checks):
    body = build(dn)
    if isinstance(body, dict):
        r = s.post(path, json=body)
    else:
        r = s.post(path, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code != 500, r.text
    assert_venafi_error(r, 400, **checks)
    assert gateway.proc.poll() is None, "the gateway process died"


def test_refused_renewals_queue_nothing(s, dn):
    before = current_serial(s, dn)
    for body in ({"CertificateDN": dn, "Format": "zip"}, {"CertificateDN": dn, "WorkToDoTimeout": 121},
                 {"CertificateDN": dn, "PKCS10": "not base64 !!!"},
                 {"CertificateDN": dn, "IncludePrivateKey": True, "Format": "Base64 (PKCS #8)", "Password": "weak"}):
        r = s.post("/vedsdk/certificates/renew", json=body)
        assert_venafi_error(r, 400)
        after = retrieve(s, dn)
        assert after.status_code == 200, f"a refused renewal changed the object's state: {after.text}"
        assert retrieved_certs(after)[0].serial_number == before


# A CSR whose signature does not verify gets its own gateway: see the next test for why.

def test_csr_with_broken_signature_is_refused(gateway_factory):
    g = gateway_factory()
    token = g.token()
    d = request_service(g.session(token=token), ROOT, f"sig-{uuid.uuid4().hex[:6]}.example.com")
    wait_retrieve(g.session(token=token), d)
    for path, body in (("/vedsdk/certificates/renew", {"CertificateDN": d, "PKCS10": broken_signature_csr()}),
                       ("/vedsdk/certificates/request", {"PolicyDN": ROOT, "PKCS10": broken_signature_csr()})):
        fresh = g.session(token=token)
        fresh.headers["Connection"] = "close"
        r = fresh.post(path, json=body)
        assert_venafi_error(r, 400, exact="Failed to store csr; Error: InvalidParms.")
    r = g.session(token=token).post("/vedsdk/certificates/retrieve", json={"CertificateDN": d, "Format": "Base64"})
    assert r.status_code == 200, "the refused renewal queued nothing: " + r.text


def test_broken_csr_signature_does_not_break_keep_alive_connections(gateway_factory):
    """After answering 400 to a CSR whose signature does not verify, the same keep-alive connection
    must still serve the client's next requests (vcert and requests reuse connections)."""
    g = gateway_factory()
    k = g.session()
    assert k.get("/health").status_code == 200
    broken = []
    for i in range(6):
        r = k.post("/vedsdk/certificates/renew", json={"CertificateDN": "\\VED\\Policy\\x",
                                                         "PKCS10": broken_signature_csr()})
        assert_venafi_error(r, 400, exact="Failed to store csr; Error: InvalidParms.")
        for pause in (0.5, 0):  # the client's next requests come a little later, on the same connection
            time.sleep(pause)
            try:
                nxt = k.get("/health")
                assert nxt.status_code == 200, nxt.text
            except requests.ConnectionError as e:
                broken.append(f"round {i}: {e}")
    assert not broken, ("the gateway dropped the keep-alive connection after refusing a CSR with a bad "
                        "signature: " + "; ".join(broken))


@pytest.mark.parametrize("path", ["/vedsdk/certificates/renew", "/vedsdk/certificates/request",
                                  "/vedsdk/certificates/retrieve", "/vedsdk/certificates/checkpolicy"])
@pytest.mark.parametrize("body", [b'{"CertificateDN": "x"}', b"{bad", b"A" * (2 * 1024 * 1024)], ids=["ok", "malformed", "oversized"])
def test_missing_token_is_401_whatever_the_body(gateway, path, body):
    r = gateway.session(token=False).post(path, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text
    b = assert_json(r)
    assert b["error"] == "session_error" and b["error_description"]


def test_oauth_bad_bodies_get_oauth_error_shape(gateway):
    anon = gateway.session(token=False)
    for body in (b"{bad", b"[]", b'{"password": "x"}', b"A" * (2 * 1024 * 1024)):
        r = anon.post("/vedauth/authorize/oauth", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body[:20], r.text)
        b = assert_json(r)
        assert isinstance(b.get("error"), str) and b["error"] and isinstance(b.get("error_description"), str), b


def test_max_body_bytes_is_configurable(gateway_factory):
    g = gateway_factory(env={"RENEWGATE_HTTP__MAX_BODY_BYTES": "2000"})
    s2 = g.session()
    r = s2.post("/vedsdk/certificates/renew", json={"CertificateDN": "\\VED\\Policy\\" + "x" * 3000})
    assert_venafi_error(r, 400, contains="2000")
    r = s2.post("/vedsdk/certificates/renew", json={"CertificateDN": "\\VED\\Policy\\small"})
    assert_venafi_error(r, 400, exact="Certificate \\VED\\Policy\\small does not exist.")


def test_request_with_unsupported_pkix_parameter_set_is_refused(gateway, s):
    """KeyBitSize 1024 is refused up front (400); an RSA PkixParameterSet of an impossible size must
    be refused the same way, not accepted and left to fail in the worker (which puts the object in
    the error state and makes Retrieve answer 500)."""
    cn = f"pkix100-{uuid.uuid4().hex[:6]}.example.com"
    r = s.post("/vedsdk/certificates/request", json={"PolicyDN": ROOT, "Subject": cn,
                                                     "PkixParameterSet": "1.3.6.1.4.1.28783.10.1.1.100"})
    if r.status_code == 200:
        later = wait_failed_or_ready(s, r.json()["CertificateDN"])
        pytest.fail(f"Request with PkixParameterSet 1.3.6.1.4.1.28783.10.1.1.100 (RSA-100) was accepted (200); "
                    f"Retrieve then answered {later.status_code} {later.text[:300]}")
    assert_venafi_error(r, 400, contains="PkixParameterSet")


def wait_failed_or_ready(s, d, timeout=30):
    deadline = time.time() + timeout
    while True:
        r = retrieve(s, d)
        if r.status_code != 202 or time.time() > deadline:
            return r
        time.sleep(0.2)


def test_server_healthy_after_bad_input(gateway, s, dn):
    assert gateway.proc.poll() is None
    h = s.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok", h.text
    old = current_serial(s, dn)
    r = renew(s, dn, WorkToDoTimeout=20)
    assert r.status_code == 200, r.text
    assert retrieved_certs(r)[0].serial_number != old


# ---------------------------------------------------------------- worker-less gateway

def paused_gateway(gateway_factory, n):
    """Enrolls n service-generated objects on a normal gateway, stops it, and restarts the same data
    directory and database with no queue workers (the instance accepts jobs, never runs them)."""
    g = gateway_factory()
    s1 = g.session()
    dns = [request_service(s1, ROOT, f"paused{i}-{uuid.uuid4().hex[:6]}.example.com") for i in range(n)]
    old = {d: retrieved_certs(wait_retrieve(s1, d))[0].serial_number for d in dns}
    g.stop()
    g0 = gateway_factory(env=WORKERS_0, database=g.database, data_dir=g.data_dir)
    return g0, dns, old


def assert_queued_for_renewal(s0, d):
    r = retrieve(s0, d)
    assert r.status_code == 202, f"Retrieve after an accepted renewal: {r.status_code} {r.text[:300]}"
    body = assert_json(r)
    assert body["Status"] == "Queued for renewal.", body
    assert isinstance(body["Stage"], int)
    assert "CertificateData" not in body


def test_second_renew_while_first_is_queued(gateway_factory):
    g0, (d,), _ = paused_gateway(gateway_factory, 1)
    s0 = g0.session()
    r = renew(s0, d)
    assert r.status_code == 200, r.text
    assert r.json()["Success"] is True
    again = renew(s0, d)
    assert_venafi_error(again, 400, exact=f"Certificate {d} is already being processed.")
    with_csr = renew(s0, d, PKCS10=make_csr("other.example.com")[1])
    assert_venafi_error(with_csr, 400, exact=f"Certificate {d} is already being processed.")
    assert_queued_for_renewal(s0, d)
    # Only one job was queued for the object.
    assert db_scalar(g0, "SELECT COUNT(*) FROM jobs WHERE state = 'queued'") == "1"


def test_concurrent_renewals_of_one_certificate_accept_exactly_one(gateway_factory):
    g0, (d,), _ = paused_gateway(gateway_factory, 1)
    token = g0.token()
    results = []

    def go():
        r = g0.session(token=token).post("/vedsdk/certificates/renew", json={"CertificateDN": d})
        results.append(r)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code != 200]
    assert len(ok) == 1, [(r.status_code, r.text) for r in results]
    for r in refused:
        assert_venafi_error(r, 400, exact=f"Certificate {d} is already being processed.")
    assert db_scalar(g0, "SELECT COUNT(*) FROM jobs WHERE state = 'queued'") == "1"


def test_renew_work_to_do_timeout_expires_then_completes_after_restart(gateway_factory):
    g0, (d,), old = paused_gateway(gateway_factory, 1)
    s0 = g0.session()
    r = renew(s0, d, WorkToDoTimeout=1)
    assert r.status_code == 202, r.text
    assert assert_json(r) == {"Error": WORK_TO_DO_TIMEOUT_TEXT, "Success": False}
    assert_queued_for_renewal(s0, d)
    # Retrieve with its own WorkToDoTimeout still answers 202, never the old certificate.
    r = retrieve(s0, d, WorkToDoTimeout=1)
    assert r.status_code == 202 and r.json()["Status"] == "Queued for renewal.", r.text
    # The accepted job completes once a worker runs.
    g0.stop()
    g1 = gateway_factory(database=g0.database, data_dir=g0.data_dir)
    new = retrieved_certs(wait_retrieve(g1.session(), d, not_serial=old[d]))[0]
    assert new.serial_number != old[d]


def test_request_on_worker_less_gateway_is_pending(gateway_factory):
    g0, _, _ = paused_gateway(gateway_factory, 0)
    s0 = g0.session()
    cn = f"pending-{uuid.uuid4().hex[:6]}.example.com"
    r = s0.post("/vedsdk/certificates/request", json={"PolicyDN": ROOT, "PKCS10": make_csr(cn, dns=[cn])[1],
                                                      "WorkToDoTimeout": 1})
    assert r.status_code == 200, "Request always answers 200 {CertificateDN, Guid}: " + r.text
    body = assert_json(r)
    assert body["CertificateDN"] == f"{ROOT}\\{cn}" and body["Guid"]
    assert "CertificateData" not in body
    p = retrieve(s0, body["CertificateDN"])
    assert p.status_code == 202 and "CertificateData" not in p.json(), p.text


def test_failed_issuance_retrieve_500_and_renew_refused(gateway_factory):
    """The one documented 500: Retrieve of a certificate whose issuance failed. Renew is then refused
    with the seed's error-state text."""
    g0, (d,), _ = paused_gateway(gateway_factory, 1)
    assert renew(g0.session(), d).status_code == 200
    g0.stop()
    job = db_rows(g0, "SELECT id FROM jobs WHERE state = 'queued'")
    assert len(job) == 1, job
    db_exec(g0, f"UPDATE jobs SET payload = {sql_str('{not a job payload')} WHERE id = {job[0][0]}")
    g1 = gateway_factory(database=g0.database, data_dir=g0.data_dir)
    s1 = g1.session()
    r = wait_failed_or_ready(s1, d)
    assert r.status_code == 500, r.text
    body = assert_json(r)
    assert isinstance(body["Stage"], int) and isinstance(body["Status"], str) and body["Status"], body
    assert "CertificateData" not in body
    rr = renew(s1, d)
    assert_venafi_error(rr, 400, exact=f"Certificate {d} is in an error state and cannot be renewed.")
    details = s1.post("/vedsdk/config/dntoguid", json={"ObjectDN": d}).json()
    info = s1.get(f"/vedsdk/certificates/{details['GUID']}").json()
    assert info["ProcessingDetails"]["InError"] is True
    assert db_scalar(g1, f"SELECT state FROM jobs WHERE id = {job[0][0]}") == "failed"
    assert s1.get("/health").status_code == 200
