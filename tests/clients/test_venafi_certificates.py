"""Venafi TPP certificate calls over HTTPS: request, retrieve (POST and GET), renew, search,
checkpolicy, details and dntoguid, with the issued certificates checked by cryptography and
`openssl verify`."""
import base64
import concurrent.futures
import re
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from rg_helpers import (GUID_RE, STRONG_PASSWORD, assert_json, assert_venafi_error, db_scalar, load_certs, make_csr,
                        openssl, openssl_verify, pem_block_types, public_key_der, renew, request_csr,
                        request_service, retrieve, retrieved_certs, san_sets, sha1_thumbprint, wait_retrieve)

FOLDER = "\\VED\\Policy\\Certs Team"


@pytest.fixture(scope="module")
def gw(gateway):
    gateway.cli("policy", "set", FOLDER)
    return gateway


@pytest.fixture(scope="module")
def s(gw):
    return gw.session()


@pytest.fixture(scope="module")
def ca_certs(gw):
    """(root, issuing) from the CA bundle: the EC issuing CA (the CSRs here have EC keys); the
    bundle also holds `issuing-rsa`, which signs RSA keys."""
    certs = load_certs(open(gw.ca_bundle, "rb").read())
    assert len(certs) == 3, "the CA bundle holds the root, the issuing CA and the RSA issuing CA"
    roots = [c for c in certs if c.subject == c.issuer]
    assert len(roots) == 1
    root = roots[0]
    issuing = [c for c in certs if c is not root and not isinstance(c.public_key(), rsa.RSAPublicKey)]
    assert len(issuing) == 1
    assert [c for c in certs if isinstance(c.public_key(), rsa.RSAPublicKey)][0].issuer == root.subject
    return root, issuing[0]


@pytest.fixture(scope="module")
def csr_object(s):
    """An object enrolled with a local CSR with every SAN type the CSR path keeps."""
    cn = f"app-{uuid.uuid4().hex[:6]}.example.com"
    key, csr = make_csr(cn, dns=[cn, "www." + cn], ips=["192.0.2.10", "2001:db8::10"],
                        emails=["ops@example.com"], uris=["https://" + cn + "/id"], org="Example Org")
    r = s.post("/vedsdk/certificates/request", json={"PolicyDN": FOLDER, "PKCS10": csr, "ObjectName": cn})
    assert r.status_code == 200, r.text
    return {"cn": cn, "key": key, "csr": x509.load_pem_x509_csr(csr.encode()), "dn": r.json()["CertificateDN"],
            "guid": r.json()["Guid"]}


@pytest.fixture(scope="module")
def service_object(s):
    cn = f"svc-{uuid.uuid4().hex[:6]}.example.com"
    dn = request_service(s, FOLDER, cn, dns=[cn, "alt." + cn], key_algorithm="RSA", KeyBitSize=2048)
    wait_retrieve(s, dn)
    return {"cn": cn, "dn": dn}


# ---------------------------------------------------------------- request and retrieve

def test_request_answers_dn_and_guid(s, csr_object):
    assert csr_object["dn"] == f"{FOLDER}\\{csr_object['cn']}"
    assert GUID_RE.match(csr_object["guid"]), csr_object["guid"]


def test_requests_for_one_new_dn_at_once_make_one_object(gw, s):
    """Certificates/Request for one new DN, eight at once: one object. Each accepted request has a
    job of its own on it (a request that finds the object idle again reuses it, as TPP does); the
    others are refused as in flight with TPP's text. Never a 500, never a second object."""
    cn = f"race-{uuid.uuid4().hex[:6]}.example.com"
    dn = f"{FOLDER}\\{cn}"
    token = s.headers["Authorization"].split()[1]
    bodies = [{"PolicyDN": FOLDER, "PKCS10": make_csr(cn, dns=[cn])[1], "ObjectName": cn} for _ in range(8)]

    def send(body):
        with gw.session(token=token) as t:
            return t.post("/vedsdk/certificates/request", json=body)

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(send, bodies))
    accepted = [a for a in answers if a.status_code == 200]
    assert accepted, [(a.status_code, a.text[:200]) for a in answers]
    assert {(a.json()["CertificateDN"], a.json()["Guid"]) for a in accepted} == {(dn, accepted[0].json()["Guid"])}
    for a in answers:
        if a.status_code != 200:
            assert_venafi_error(a, 400, exact=f"Certificate {dn} is already being processed.")
    assert int(db_scalar(gw, f"SELECT COUNT(*) FROM cert_objects WHERE dn = '{dn}'")) == 1
    jobs = db_scalar(gw, f"SELECT COUNT(*) FROM jobs j JOIN cert_objects o ON o.id = j.object_id WHERE o.dn = '{dn}'")
    assert int(jobs) == len(accepted), (jobs, len(accepted))


def test_request_without_object_name_uses_csr_cn(s):
    cn = f"noname-{uuid.uuid4().hex[:6]}.example.com"
    _, csr = make_csr(cn, dns=[cn])
    r = s.post("/vedsdk/certificates/request", json={"PolicyDN": FOLDER, "PKCS10": csr})
    assert r.status_code == 200, r.text
    assert assert_json(r)["CertificateDN"] == f"{FOLDER}\\{cn}"


def test_retrieve_until_ready(s, csr_object):
    r = wait_retrieve(s, csr_object["dn"])
    body = assert_json(r)
    assert set(body) >= {"CertificateData", "Filename", "Format"}
    assert body["Format"] == "Base64"
    assert body["Filename"].endswith((".cer", ".pem"))
    text = base64.b64decode(body["CertificateData"]).decode()
    assert text.startswith("-----BEGIN CERTIFICATE-----")
    assert pem_block_types(text) == ["CERTIFICATE"]


def test_retrieve_pending_is_202_without_certificate_data(gateway_factory):
    gw0 = gateway_factory(env={"RENEWGATE_QUEUE__WORKERS": "0"})
    s0 = gw0.session()
    _, _, dn = request_csr(s0, "\\VED\\Policy", f"pending-{uuid.uuid4().hex[:6]}.example.com")
    for _ in range(3):
        r = retrieve(s0, dn)
        assert r.status_code == 202, r.text
        body = assert_json(r)
        assert isinstance(body["Stage"], int) and isinstance(body["Status"], str) and body["Status"]
        assert "CertificateData" not in body


def test_issued_certificate_matches_csr(gw, s, csr_object, ca_certs):
    leaf = retrieved_certs(wait_retrieve(s, csr_object["dn"]))[0]
    csr = csr_object["csr"]
    assert leaf.subject == csr.subject
    assert san_sets(leaf) == san_sets(csr)
    assert san_sets(leaf)["ip"] == {"192.0.2.10", "2001:db8::10"}
    assert public_key_der(leaf) == public_key_der(csr)
    # SAN last (vcert-python's renew drops SANs otherwise), and the usual extensions present.
    exts = list(leaf.extensions)
    assert exts[-1].oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME, [e.oid._name for e in exts]
    oids = {e.oid for e in exts}
    for oid in (ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.KEY_USAGE,
                ExtensionOID.EXTENDED_KEY_USAGE, ExtensionOID.BASIC_CONSTRAINTS):
        assert oid in oids, oid
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in list(eku)
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key()).digest
    root, issuing = ca_certs
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.issuer == issuing.subject
    assert leaf.serial_number > 0
    assert leaf.not_valid_after_utc > leaf.not_valid_before_utc
    openssl_verify(gw.ca_bundle, leaf.public_bytes(serialization.Encoding.PEM))


def test_serials_are_unique_and_large(s):
    serials = set()
    for i in range(3):
        _, _, dn = request_csr(s, FOLDER, f"serial{i}-{uuid.uuid4().hex[:6]}.example.com")
        serials.add(retrieved_certs(wait_retrieve(s, dn))[0].serial_number)
    assert len(serials) == 3
    assert all(sn.bit_length() > 64 for sn in serials), serials


@pytest.mark.parametrize("alg,extra,check", [
    ("RSA", {"KeyBitSize": 2048}, lambda k: isinstance(k, rsa.RSAPublicKey) and k.key_size == 2048),
    ("ECC", {"EllipticCurve": "P256"}, lambda k: isinstance(k, ec.EllipticCurvePublicKey) and k.curve.name == "secp256r1"),
    ("ECC", {"EllipticCurve": "P384"}, lambda k: isinstance(k, ec.EllipticCurvePublicKey) and k.curve.name == "secp384r1"),
])
def test_service_generated_key_with_encrypted_pkcs8(gw, s, alg, extra, check, tmp_path):
    cn = f"sg-{alg.lower()}-{uuid.uuid4().hex[:6]}.example.com"
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": FOLDER, "Subject": cn, "ObjectName": cn, "KeyAlgorithm": alg,
        "SubjectAltNames": [{"Type": 2, "Name": cn}, {"Type": 2, "Name": "b." + cn}, {"Type": 7, "Name": "198.51.100.7"}],
        **extra})
    assert r.status_code == 200, r.text
    dn = r.json()["CertificateDN"]
    assert GUID_RE.match(r.json()["Guid"])
    resp = wait_retrieve(s, dn, fmt="Base64 (PKCS #8)", IncludePrivateKey=True, Password=STRONG_PASSWORD,
                         IncludeChain=True)
    body = assert_json(resp)
    assert body["Format"] == "Base64 (PKCS #8)"
    assert body["Filename"].endswith(".pem")
    text = base64.b64decode(body["CertificateData"]).decode()
    assert pem_block_types(text) == ["CERTIFICATE", "CERTIFICATE", "CERTIFICATE", "ENCRYPTED PRIVATE KEY"]
    leaf = load_certs(text)[0]
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn
    assert san_sets(leaf)["dns"] == {cn, "b." + cn}
    assert san_sets(leaf)["ip"] == {"198.51.100.7"}
    assert check(leaf.public_key())
    # The key block decrypts with openssl and the password, and is the certificate's key.
    key_pem = text[text.index("-----BEGIN ENCRYPTED PRIVATE KEY-----"):]
    kf = tmp_path / "key.pem"
    kf.write_text(key_pem)
    wrong = openssl("pkey", "-in", str(kf), "-passin", "pass:Wrong-Passw0rd!", "-pubout", check=False)
    assert wrong.returncode != 0
    pub = openssl("pkey", "-in", str(kf), "-passin", "pass:" + STRONG_PASSWORD, "-pubout").stdout
    assert pub.decode().strip() == leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode().strip()
    key = serialization.load_pem_private_key(key_pem.encode(), STRONG_PASSWORD.encode())
    assert public_key_der(key) == public_key_der(leaf)
    openssl_verify(gw.ca_bundle, leaf.public_bytes(serialization.Encoding.PEM))


def test_service_generated_default_is_rsa_when_no_key_fields(s):
    cn = f"sg-default-{uuid.uuid4().hex[:6]}.example.com"
    r = s.post("/vedsdk/certificates/request", json={"PolicyDN": FOLDER, "Subject": cn})
    assert r.status_code == 200, r.text
    leaf = retrieved_certs(wait_retrieve(s, r.json()["CertificateDN"]))[0]
    assert isinstance(leaf.public_key(), (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn


def test_chain_options_and_order(s, csr_object, ca_certs):
    root, issuing = ca_certs
    dn = csr_object["dn"]
    wait_retrieve(s, dn)

    def subjects(**opts):
        r = retrieve(s, dn, **opts)
        assert r.status_code == 200, r.text
        return [c.subject for c in retrieved_certs(r)], r.json()

    leaf_subject = csr_object["csr"].subject
    got, body = subjects(IncludeChain=True, RootFirstOrder=False)
    assert got == [leaf_subject, issuing.subject, root.subject]
    assert body["Filename"].endswith(".pem")
    got, _ = subjects(IncludeChain=True, RootFirstOrder=True)
    assert got == [root.subject, issuing.subject, leaf_subject]
    got, body = subjects(IncludeChain=False)
    assert got == [leaf_subject]
    got, _ = subjects()
    assert got == [leaf_subject]
    # vcert-python sends strings for the booleans; the chain certificates are the bundle's.
    r = retrieve(s, dn, fmt="Base64 (PKCS #8)", IncludeChain="true", RootFirstOrder="false")
    assert r.status_code == 200, r.text
    certs = retrieved_certs(r)
    assert [c.subject for c in certs] == [leaf_subject, issuing.subject, root.subject]
    assert certs[1] == issuing and certs[2] == root


def test_lenient_json_keys_and_format_spellings(s, csr_object):
    dn = csr_object["dn"]
    wait_retrieve(s, dn)
    for fmt in ("base64", "BASE64", "Base64 (PKCS #8)", "base64pkcs8", "Base64 (PKCS#8)"):
        r = s.post("/vedsdk/certificates/retrieve", json={"certificatedn": dn, "FORMAT": fmt, "includechain": "1",
                                                          "UnknownField": {"x": [1, 2]}})
        assert r.status_code == 200, (fmt, r.text)
        assert len(retrieved_certs(r)) == 3, fmt


def test_retrieve_get_variant_returns_the_file(gw, s, csr_object):
    dn = csr_object["dn"]
    wait_retrieve(s, dn)
    r = s.get("/vedsdk/Certificates/Retrieve", params={"CertificateDN": dn, "Format": "Base64", "IncludeChain": "true"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/x-pem-file"), r.headers["Content-Type"]
    cd = r.headers.get("Content-Disposition", "")
    m = re.search(r'filename="?([^";]+)"?', cd)
    assert cd.startswith("attachment") and m, cd
    assert m.group(1).endswith(".pem")
    certs = load_certs(r.content)
    assert len(certs) == 3
    assert certs[0].subject == csr_object["csr"].subject
    # Leaf only: a .cer file.
    r = s.get("/vedsdk/certificates/retrieve", params={"CertificateDN": dn, "Format": "Base64"})
    assert r.status_code == 200
    assert len(load_certs(r.content)) == 1
    assert 'filename="' in r.headers["Content-Disposition"] and ".cer" in r.headers["Content-Disposition"]


def test_retrieve_private_key_of_user_csr_object_is_refused(s, csr_object):
    wait_retrieve(s, csr_object["dn"])
    r = retrieve(s, csr_object["dn"], fmt="Base64 (PKCS #8)", IncludePrivateKey=True, Password=STRONG_PASSWORD)
    assert_venafi_error(r, 400, exact="Failed to lookup private key, error: Failed to lookup private key vault id")


# ---------------------------------------------------------------- renew

def test_renew_without_timeout_answers_at_once_then_new_serial(gw, s, service_object):
    dn = service_object["dn"]
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    r = renew(s, dn, WorkToDoTimeout=0)
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["Success"] is True and body["CertificateDN"] == dn
    assert "CertificateData" not in body
    new = retrieved_certs(wait_retrieve(s, dn, not_serial=old.serial_number))[0]
    assert new.serial_number != old.serial_number
    assert new.subject == old.subject
    assert san_sets(new) == san_sets(old)
    assert public_key_der(new) != public_key_der(old), "a service-generated renewal gets a new key"
    openssl_verify(gw.ca_bundle, new.public_bytes(serialization.Encoding.PEM))


def test_renew_absent_timeout_is_like_zero(s, service_object):
    dn = service_object["dn"]
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    r = renew(s, dn)
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["Success"] is True and body["CertificateDN"] == dn and "CertificateData" not in body, body
    wait_retrieve(s, dn, not_serial=old.serial_number)


def test_renew_with_work_to_do_timeout_returns_the_certificate(gw, s, service_object):
    dn = service_object["dn"]
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    r = renew(s, dn, WorkToDoTimeout=10)
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["Success"] is True
    assert body["CertificateDN"] == dn
    assert body["Format"] == "Base64"
    assert body["Filename"].endswith((".cer", ".pem"))
    new = retrieved_certs(r)[0]
    assert new.serial_number != old.serial_number
    assert san_sets(new) == san_sets(old) and new.subject == old.subject
    again = retrieved_certs(wait_retrieve(s, dn))[0]
    assert again.serial_number == new.serial_number
    openssl_verify(gw.ca_bundle, new.public_bytes(serialization.Encoding.PEM))


def test_renew_timeout_as_string_like_vcert_go(s, service_object):
    dn = service_object["dn"]
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    r = renew(s, dn, WorkToDoTimeout="10")
    assert r.status_code == 200, r.text
    assert retrieved_certs(r)[0].serial_number != old.serial_number


def test_renew_user_csr_object_with_new_pkcs10(gw, s, csr_object):
    dn = csr_object["dn"]
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    key, csr = make_csr(csr_object["cn"], dns=[csr_object["cn"]], kind="rsa")
    r = renew(s, dn, PKCS10=csr, WorkToDoTimeout=10)
    assert r.status_code == 200, r.text
    new = retrieved_certs(r)[0]
    assert new.serial_number != old.serial_number
    assert public_key_der(new) == public_key_der(key)
    assert san_sets(new)["dns"] == {csr_object["cn"]}
    openssl_verify(gw.ca_bundle, new.public_bytes(serialization.Encoding.PEM))


def test_renew_user_csr_object_without_pkcs10_is_refused(s):
    _, _, dn = request_csr(s, FOLDER, f"needcsr-{uuid.uuid4().hex[:6]}.example.com")
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    r = renew(s, dn)
    assert_venafi_error(r, 400, exact=f"Certificate renew mismatch. Certificate {dn}, which originated from a "
                                      "User Provided CSR, requires a PKSC#10.")
    # Nothing was queued: the certificate is still the current one.
    assert retrieved_certs(retrieve(s, dn))[0].serial_number == old.serial_number


def test_renew_with_certificate_data_seed_example_2(gw, s, service_object):
    dn = service_object["dn"]
    current = wait_retrieve(s, dn)
    old = retrieved_certs(current)[0]
    r = renew(s, dn, WorkToDoTimeout=30, CertificateData=current.json()["CertificateData"])
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["Success"] is True and body["Format"] == "Base64" and body["Filename"]
    new = retrieved_certs(r)[0]
    assert new.serial_number != old.serial_number


def test_renew_with_foreign_certificate_data_is_refused(s, service_object, csr_object):
    dn = service_object["dn"]
    current = retrieved_certs(wait_retrieve(s, dn))[0]
    foreign = wait_retrieve(s, csr_object["dn"]).json()["CertificateData"]
    r = renew(s, dn, WorkToDoTimeout=10, CertificateData=foreign)
    body = assert_venafi_error(r, 400)
    assert "CertificateData" in body["Error"] and dn in body["Error"], body
    # Refused means nothing queued.
    after = retrieve(s, dn)
    assert after.status_code == 200
    assert retrieved_certs(after)[0].serial_number == current.serial_number


def test_renew_dn_is_case_insensitive(s, service_object):
    dn = service_object["dn"]
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    r = renew(s, dn.lower(), WorkToDoTimeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["CertificateDN"] == dn
    assert retrieved_certs(r)[0].serial_number != old.serial_number


def test_default_work_to_do_timeout_from_configuration(gateway_factory):
    g = gateway_factory(env={"RENEWGATE_VENAFI__WORK_TO_DO_TIMEOUT": "20"})
    s2 = g.session()
    dn = request_service(s2, "\\VED\\Policy", f"cfg-{uuid.uuid4().hex[:6]}.example.com")
    old = retrieved_certs(wait_retrieve(s2, dn))[0]
    r = renew(s2, dn)  # no WorkToDoTimeout: the configured 20 s applies
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["Success"] is True and "CertificateData" in body, body
    assert retrieved_certs(r)[0].serial_number != old.serial_number
    # An explicit 0 still answers at once.
    r0 = renew(s2, dn, WorkToDoTimeout=0)
    assert r0.status_code == 200 and "CertificateData" not in r0.json(), r0.text


# ---------------------------------------------------------------- search, details, dntoguid

def test_thumbprint_search(s, csr_object):
    dn = csr_object["dn"]
    leaf = retrieved_certs(wait_retrieve(s, dn))[0]
    tp = sha1_thumbprint(leaf)
    r = s.get("/vedsdk/certificates/", params={"Thumbprint": tp})
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["TotalCount"] == 1
    assert len(body["Certificates"]) == 1
    c = body["Certificates"][0]
    assert c["DN"] == dn
    assert c["Guid"] == csr_object["guid"]
    assert c["Name"] == csr_object["cn"]
    assert c["ParentDn"] == FOLDER
    assert c["SchemaClass"] == "X509 Certificate"
    assert c["X509"]["Thumbprint"] == tp
    assert int(c["X509"]["Serial"], 16) == leaf.serial_number
    assert c["X509"]["CN"] == csr_object["cn"]
    assert set(c["X509"]["SANS"]["DNS"]) == san_sets(leaf)["dns"]
    # vcert-go strips ':' and '.', vcert-python non-hex characters; a lower-case, colon form works too.
    colon = ":".join(tp[i:i + 2] for i in range(0, len(tp), 2)).lower()
    r2 = s.get("/vedsdk/certificates/?Thumbprint=" + colon)
    assert r2.status_code == 200 and r2.json()["TotalCount"] == 1, r2.text
    assert r2.json()["Certificates"][0]["DN"] == dn


def test_thumbprint_search_unknown_is_empty(s):
    r = s.get("/vedsdk/certificates/?Thumbprint=" + "AB" * 20)
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["TotalCount"] == 0 and body["Certificates"] == []


def test_certificate_details_by_guid(s, csr_object):
    dn, guid = csr_object["dn"], csr_object["guid"]
    leaf = retrieved_certs(wait_retrieve(s, dn))[0]
    for g in (guid, guid.strip("{}")):
        r = s.get(f"/vedsdk/certificates/{g}")
        assert r.status_code == 200, r.text
        body = assert_json(r)
        assert body["DN"] == dn and body["Guid"] == guid
        assert body["CertificateDetails"]["Thumbprint"] == sha1_thumbprint(leaf)
        assert body["ProcessingDetails"]["InError"] is False
        assert body["ManagementType"] == "Enrollment"
        assert body["Disabled"] is False


def test_certificate_details_unknown_guid(s):
    r = s.get("/vedsdk/certificates/{%s}" % uuid.uuid4())
    assert_venafi_error(r, 400)


def test_dn_to_guid(s, csr_object):
    r = s.post("/vedsdk/config/dntoguid", json={"ObjectDN": csr_object["dn"]})
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["GUID"] == csr_object["guid"] and body["Result"] == 1 and body["ClassName"] == "X509 Certificate"
    r = s.post("/vedsdk/Config/DnToGuid", json={"ObjectDN": FOLDER})
    assert r.status_code == 200 and r.json()["ClassName"] == "Policy" and r.json()["Result"] == 1, r.text
    assert GUID_RE.match(r.json()["GUID"])
    r = s.post("/vedsdk/config/dntoguid", json={"ObjectDN": FOLDER + "\\does not exist"})
    assert r.status_code == 200 and r.json()["Result"] == 400, r.text


# ---------------------------------------------------------------- checkpolicy and folders

def test_checkpolicy_existing_folder(s):
    for dn in (FOLDER, "Certs Team", "\\Certs Team"):  # vcert zone spellings
        r = s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": dn})
        assert r.status_code == 200, (dn, r.text)
        body = assert_json(r)
        assert "Error" in body and body["Error"] is None
        p = body["Policy"]
        for k in ("Organization", "State", "City", "Country"):
            assert set(p["Subject"][k]) >= {"Value", "Locked"}, k
            assert isinstance(p["Subject"][k]["Locked"], bool)
        assert isinstance(p["Subject"]["OrganizationalUnit"]["Locked"], bool)
        kp = p["KeyPair"]
        assert set(kp["KeyAlgorithm"]) >= {"Value", "Locked"}
        assert kp["KeyAlgorithm"]["Value"] in ("RSA", "ECC")
        if kp["KeyAlgorithm"]["Value"] == "RSA":
            assert type(kp["KeySize"]["Value"]) is int and kp["KeySize"]["Value"] in (2048, 3072, 4096, 8192)
            assert isinstance(kp["KeySize"]["Locked"], bool)
        else:
            assert kp["EllipticCurve"]["Value"] in ("P256", "P384", "P521")
        for k in ("CsrGeneration", "KeyGeneration", "ManagementType", "CertificateAuthority"):
            assert set(p[k]) >= {"Value", "Locked"}, k
        for k in ("SubjAltNameDnsAllowed", "SubjAltNameIpAllowed", "SubjAltNameEmailAllowed",
                  "SubjAltNameUriAllowed", "SubjAltNameUpnAllowed", "WildcardsAllowed", "UniqueSubjectEnforced"):
            assert isinstance(p[k], bool), k
        assert isinstance(p["WhitelistedDomains"], list)


def test_checkpolicy_missing_folder(s):
    r = s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": "\\VED\\Policy\\No Such Folder"})
    body = assert_venafi_error(r, 400)
    assert re.search(r"PolicyDN: .+ does not exist", body["Error"]), body
    assert "\\VED\\Policy\\No Such Folder" in body["Error"]


def test_request_into_missing_folder(s):
    _, csr = make_csr("x.example.com", dns=["x.example.com"])
    r = s.post("/vedsdk/certificates/request", json={"PolicyDN": "\\VED\\Policy\\Missing Folder", "PKCS10": csr})
    body = assert_venafi_error(r, 400)
    assert re.search(r"PolicyDN: .+ does not exist", body["Error"]), body
    assert "\\VED\\Policy\\Missing Folder" in body["Error"]
    r = s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": "\\VED\\Policy\\Missing Folder"})
    assert r.status_code == 400, "a refused request must not create the folder"


def test_policy_set_creates_parents(gw, s):
    gw.cli("policy", "set", "\\VED\\Policy\\Parent One\\Child Two")
    for dn in ("\\VED\\Policy\\Parent One", "\\VED\\Policy\\Parent One\\Child Two"):
        assert s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": dn}).status_code == 200, dn
    _, _, dn = request_csr(s, "\\VED\\Policy\\Parent One\\Child Two", f"deep-{uuid.uuid4().hex[:6]}.example.com")
    assert dn.startswith("\\VED\\Policy\\Parent One\\Child Two\\")
    wait_retrieve(s, dn)


# ---------------------------------------------------------------- client quirks and SAN types

UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def upn_names(cert):
    """UPN otherName values of a certificate's SAN (the UTF8String text)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    out = set()
    for n in san:
        if isinstance(n, x509.OtherName) and n.type_id == UPN_OID:
            assert n.value[0] == 0x0C, n.value  # UTF8String
            out.add(n.value[2:].decode())
    return out


def test_vcert_go_style_request_follows_the_csr(gw, s):
    """vcert-go sends KeyAlgorithm/KeyBitSize with a PKCS10, WorkToDoTimeout as a string, an empty
    ObjectName is omitted; unknown fields are ignored and the CSR wins."""
    cn = f"go-{uuid.uuid4().hex[:6]}.example.com"
    key, csr = make_csr(cn, dns=[cn])  # an EC key
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": FOLDER, "PKCS10": csr, "KeyAlgorithm": "RSA", "KeyBitSize": 2048, "CertificateType": "AUTO",
        "DisableAutomaticRenewal": True, "Reenable": True, "Origin": "Venafi VCert-Go",
        "CASpecificAttributes": [{"Name": "Origin", "Value": "Venafi VCert-Go"}], "WorkToDoTimeout": "60",
        "CustomFields": [{"Name": "Owner", "Values": ["team"]}]})
    assert r.status_code == 200, r.text
    body = assert_json(r)
    assert body["CertificateDN"] == f"{FOLDER}\\{cn}" and GUID_RE.match(body["Guid"])
    # Issued within the WorkToDoTimeout: pyvenafi reads CertificateData from the Request answer.
    assert body["Format"] == "Base64" and body["Filename"]
    leaf = retrieved_certs(r)[0]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert public_key_der(leaf) == public_key_der(key)
    openssl_verify(gw.ca_bundle, leaf.public_bytes(serialization.Encoding.PEM))


def test_service_generated_every_san_type(s):
    cn = f"sans-{uuid.uuid4().hex[:6]}.example.com"
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": FOLDER, "Subject": cn, "KeyAlgorithm": "ECC", "EllipticCurve": "P256",
        "SubjectAltNames": [{"Type": 2, "Name": cn}, {"Type": 1, "Name": "owner@example.com"},
                            {"Type": 6, "Name": "spiffe://example.com/svc"}, {"Type": 7, "Name": "203.0.113.9"},
                            {"Type": 0, "Name": "svc-user@example.com"}]})
    assert r.status_code == 200, r.text
    leaf = retrieved_certs(wait_retrieve(s, r.json()["CertificateDN"]))[0]
    assert san_sets(leaf) == {"dns": {cn}, "email": {"owner@example.com"}, "uri": {"spiffe://example.com/svc"},
                              "ip": {"203.0.113.9"}}
    assert upn_names(leaf) == {"svc-user@example.com"}
    assert list(leaf.extensions)[-1].oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME


def test_service_generated_renewal_keeps_every_san(s):
    """Renew without SubjectAltNames: the new certificate has the old one's SANs, UPN included."""
    cn = f"keep-upn-{uuid.uuid4().hex[:6]}.example.com"
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": FOLDER, "Subject": cn, "KeyAlgorithm": "ECC",
        "SubjectAltNames": [{"Type": 2, "Name": cn}, {"Type": 0, "Name": "keep-user@example.com"}]})
    assert r.status_code == 200, r.text
    dn = r.json()["CertificateDN"]
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    assert upn_names(old) == {"keep-user@example.com"}
    rn = renew(s, dn, WorkToDoTimeout=20)
    assert rn.status_code == 200, rn.text
    new = retrieved_certs(rn)[0]
    assert san_sets(new) == san_sets(old)
    assert upn_names(new) == upn_names(old), f"UPN SANs after renewal: {upn_names(new)}; before: {upn_names(old)}"


def test_csr_upn_san_is_kept(gw, s):
    """Issued certificates have the CSR's SANs: a UPN (otherName) SAN too."""
    cn = f"csr-upn-{uuid.uuid4().hex[:6]}.example.com"
    key = ec.generate_private_key(ec.SECP256R1())
    upn = "csr-user@example.com".encode()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn),
                                                       x509.OtherName(UPN_OID, bytes([0x0C, len(upn)]) + upn)]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": FOLDER, "PKCS10": csr.public_bytes(serialization.Encoding.PEM).decode()})
    assert r.status_code == 200, r.text
    leaf = retrieved_certs(wait_retrieve(s, r.json()["CertificateDN"]))[0]
    assert san_sets(leaf)["dns"] == {cn}
    assert upn_names(leaf) == {"csr-user@example.com"}, \
        f"the CSR's UPN SAN is missing from the issued certificate: {leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}"


def test_service_generated_subject_fields_kept_on_vcert_style_renewal(s):
    """vcert-python's service-side renew sends only Subject (the CN) and SubjectAltNames: the other
    subject fields of the old certificate stay."""
    cn = f"org-{uuid.uuid4().hex[:6]}.example.com"
    r = s.post("/vedsdk/certificates/request", json={
        "PolicyDN": FOLDER, "Subject": cn, "Organization": "Example Inc", "OrganizationalUnit": ["Ops"],
        "City": "Berlin", "State": "Berlin", "Country": "DE", "KeyAlgorithm": "ECC",
        "SubjectAltNames": [{"Type": 2, "Name": cn}]})
    assert r.status_code == 200, r.text
    dn = r.json()["CertificateDN"]
    old = retrieved_certs(wait_retrieve(s, dn))[0]
    attrs = {a.oid._name: a.value for a in old.subject}
    assert attrs == {"commonName": cn, "organizationalUnitName": "Ops", "organizationName": "Example Inc",
                     "localityName": "Berlin", "stateOrProvinceName": "Berlin", "countryName": "DE"}, attrs
    rn = renew(s, dn, Subject=cn, SubjectAltNames=[{"Type": 2, "Name": cn}], WorkToDoTimeout=20)
    assert rn.status_code == 200, rn.text
    new = retrieved_certs(rn)[0]
    assert new.subject == old.subject
    assert new.serial_number != old.serial_number
