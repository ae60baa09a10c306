"""Policy engine and the full Certificates/Renew contract: every seed message, triggered by a real
cause, checked for status and exact text (issue: policy)."""
import base64
import ipaddress
import subprocess
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import openssl

PW = "Str0ng!Passw0rd#26"


def csr_pem(cn, o=None, ous=(), l=None, st=None, c=None, dns=(), ips=(), emails=(), uris=(), key=None, kind="ec",
            curve=ec.SECP256R1(), bits=2048):
    if key is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits) if kind == "rsa" else ec.generate_private_key(curve)
    attrs = []
    if c:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, c))
    if st:
        attrs.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, st))
    if l:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, l))
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    for ou in ous:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + \
        [x509.RFC822Name(e) for e in emails] + [x509.UniformResourceIdentifier(u) for u in uris]
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def api(gateway):
    return gateway.session(scope="certificate:manage,revoke;configuration:manage")


def folder(gateway, *settings, lock=()):
    dn = "\\VED\\Policy\\T" + uuid.uuid4().hex[:8]
    args = ["policy", "set", dn, *settings]
    for k in lock:
        args += ["--lock", k]
    gateway.cli(*args)
    return dn


def err(r, status=400):
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert j["Success"] is False
    return j["Error"]


def request_csr(api, dn, pem, **kw):
    return api.post("/vedsdk/certificates/request", json={"PolicyDN": dn, "PKCS10": pem, **kw})


# (settings, locks, CSR arguments, expected message with {dn} for the folder)
CSR_CASES = [
    ("city", ["city=Boston"], ["city"], dict(cn="a.example.com", l="Chicago"),
     "City error. City value Chicago violates policy city settings."),
    ("cn-whitelist", ["domains=example.com"], [], dict(cn="www.other.org"),
     "Common name error. Certificate common name www.other.org violates whitelist domain policy settings."),
    ("cn-wildcard", ["wildcards=false"], [], dict(cn="*.example.com"),
     "Common name error. Certificate common name contains a wildcard symbol that violates policy settings."),
    ("country", ["country=US"], ["country"], dict(cn="a.example.com", c="DE"),
     "Country error. Country value DE violates policy country settings."),
    ("dns-wildcard", ["wildcards=false"], [], dict(cn="a.example.com", dns=["a.example.com", "*.example.com"]),
     "DNS SAN error. Subject alternative name DNS *.example.com contains a wildcard symbol that violates policy settings."),
    ("dns-whitelist", ["domains=example.com"], [], dict(cn="a.example.com", dns=["a.example.com", "evil.org"]),
     "DNS SAN error. Subject alternative name DNS violates policy settings."),
    ("curve", ["ec_curves=P384"], [], dict(cn="a.example.com"),
     "Elliptic curve error. Elliptic curve value violates policy settings."),
    ("email", ["domains=example.com"], [], dict(cn="a.example.com", emails=["x@other.org"]),
     "Email SAN error. Subject alternative name Email violates policy settings."),
    ("ip", ["san_types=dns"], [], dict(cn="a.example.com", ips=["10.0.0.1"]),
     "IP Address SAN error. Subject alternative name IP violates policy settings."),
    ("key-algorithm", ["key_algorithm=ECC"], ["key_algorithm"], dict(cn="a.example.com", kind="rsa"),
     "Key algorithm error. Key algorithm violates policy settings."),
    ("key-size", ["rsa_key_sizes=4096"], [], dict(cn="a.example.com", kind="rsa"),
     "Key size error. Key size violates policy settings."),
    ("organization", ["organization=Acme"], ["organization"], dict(cn="a.example.com", o="Other Corp"),
     "Organization error. Organization value Other Corp violates policy organization settings."),
    ("ou-missing", ["org_units=Ops,Dev"], ["org_units"], dict(cn="a.example.com", ous=["Ops"]),
     "Organization unit error. Organization unit value Dev is missing from the organization unit list."),
    ("ou-violating", ["org_units=Ops"], ["org_units"], dict(cn="a.example.com", ous=["Ops", "Sales"]),
     "Organization unit error. Organization unit value Sales violates policy organization unit settings."),
    ("state", ["state=MA"], ["state"], dict(cn="a.example.com", st="CA"),
     "State error. State value CA violates policy state settings."),
    ("uri", ["domains=example.com"], [], dict(cn="a.example.com", uris=["https://other.org/x"]),
     "URI SAN error. Subject alternative name URI violates policy settings."),
    ("sans", ["san_types=dns"], [], dict(cn="a.example.com", ips=["10.0.0.1"], emails=["a@example.com"]),
     "SANs error. Subject alternative names 10.0.0.1, a@example.com violate policy settings."),
]


@pytest.mark.parametrize("name,settings,locks,csr_args,expected", CSR_CASES, ids=[c[0] for c in CSR_CASES])
def test_policy_message_on_request_and_renew(gateway, api, name, settings, locks, csr_args, expected):
    dn = folder(gateway, *settings, lock=locks)
    _, pem = csr_pem(**csr_args)
    assert err(request_csr(api, dn, pem)) == expected
    # The same rule on Renew: an object enrolled with a compliant CSR, renewed with the bad one.
    open_dn = folder(gateway)
    ok_key, ok_pem = csr_pem("fine.example.com")
    r = request_csr(api, open_dn, ok_pem, ObjectName="victim", WorkToDoTimeout=20)
    assert r.status_code == 200 and "CertificateData" in r.json(), r.text
    obj_dn = r.json()["CertificateDN"]
    api.put("/api/v1/policies", params={"dn": open_dn}, json={"settings": {
        k: v for k, v in (s.split("=", 1) for s in settings)}, "locked": list(locks)}).raise_for_status()
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj_dn, "PKCS10": pem})
    assert err(r) == expected
    # Nothing changed: still retrievable, not processing.
    assert api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": obj_dn, "Format": "Base64"}).status_code == 200


def test_upn_san_message_on_a_service_generated_request(gateway, api):
    dn = folder(gateway, "domains=example.com")
    r = api.post("/vedsdk/certificates/request", json={"PolicyDN": dn, "Subject": "a.example.com", "SubjectAltNames": [
        {"Type": 0, "Name": "someone@other.org"}]})
    assert err(r) == "UPN SAN error. Subject alternative name UPN violates policy settings."


def test_locked_and_default_subject_values_are_applied(gateway, api):
    dn = folder(gateway, "organization=Acme Inc", "city=Boston", "country=US", "org_units=Ops", "state=MA",
                lock=["organization", "org_units"])
    _, pem = csr_pem("svc.example.com")
    r = request_csr(api, dn, pem, WorkToDoTimeout=20)
    assert r.status_code == 200, r.text
    cert = x509.load_pem_x509_certificate(base64.b64decode(r.json()["CertificateData"]))
    subj = {a.oid: a.value for a in cert.subject}
    assert subj[NameOID.ORGANIZATION_NAME] == "Acme Inc" and subj[NameOID.LOCALITY_NAME] == "Boston"
    assert subj[NameOID.ORGANIZATIONAL_UNIT_NAME] == "Ops" and subj[NameOID.COUNTRY_NAME] == "US"
    # An unlocked value is only a default: the request's own value stays.
    _, pem = csr_pem("svc2.example.com", l="Denver")
    r = request_csr(api, dn, pem, WorkToDoTimeout=20)
    cert = x509.load_pem_x509_certificate(base64.b64decode(r.json()["CertificateData"]))
    assert cert.subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)[0].value == "Denver"


def test_validity_and_key_defaults_from_the_folder(gateway, api):
    dn = folder(gateway, "validity=2d", "key_algorithm=ECC", "ec_curves=P384")
    r = api.post("/vedsdk/certificates/request", json={"PolicyDN": dn, "Subject": "k.example.com", "WorkToDoTimeout": 20})
    assert r.status_code == 200, r.text
    cert = x509.load_pem_x509_certificate(base64.b64decode(r.json()["CertificateData"]))
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp384r1"
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 2 * 86400 - 120 <= life.total_seconds() <= 2 * 86400 + 120


def test_csr_errors(gateway, api):
    # A new installation allows key reuse: the folder refuses it explicitly.
    dn = folder(gateway, "key_reuse=false")
    key, pem = csr_pem("reuse.example.com")
    r = request_csr(api, dn, pem, WorkToDoTimeout=20)
    assert r.status_code == 200
    obj = r.json()["CertificateDN"]
    # Same key again: refused (key_reuse=false) ...
    _, again = csr_pem("reuse.example.com", key=key)
    assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": again})) == \
        "This CSR appears to reuse a private key. Private key reuse has not been allowed."
    # ... unless the folder allows it.
    gateway.cli("policy", "set", dn, "key_reuse=true")
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": again, "WorkToDoTimeout": 20})
    assert r.status_code == 200 and r.json()["Success"] is True, r.text
    e = err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": "@@@ not base64 @@@"}))
    assert e.startswith("PKCS#10 data not in base64 format; ")
    # A CSR that parses but whose signature does not verify.
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": base64.b64encode(bytes(der)).decode()})) \
        == "Failed to store csr; Error: InvalidParms."
    # PKCS10 accepted as bare base64 DER and with literal \r\n escapes.
    gateway.cli("policy", "set", dn, "key_reuse=false")
    _, p2 = csr_pem("reuse.example.com")
    bare = "".join(l for l in p2.splitlines() if not l.startswith("-----"))
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": bare, "WorkToDoTimeout": 20})
    assert r.status_code == 200, r.text
    _, p3 = csr_pem("reuse.example.com")
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": p3.replace("\n", "\\r\\n"), "WorkToDoTimeout": 20})
    assert r.status_code == 200, r.text


def test_user_provided_csr_lock(gateway, api):
    dn = folder(gateway, "csr_origin=user")
    r = api.post("/vedsdk/certificates/request", json={"PolicyDN": dn, "Subject": "x.example.com"})
    assert err(r) == f"PKCS#10 data required. Policy {dn}\\ is locked to a User Provided CSR."


def enroll(api, dn, name, wait=20, **extra):
    r = api.post("/vedsdk/certificates/request", json={"PolicyDN": dn, "Subject": name, "WorkToDoTimeout": wait, **extra})
    assert r.status_code == 200 and "CertificateData" in r.json(), r.text
    return r.json()["CertificateDN"], r.json()["Guid"]


def serial_of(api, dn):
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": "Base64"})
    assert r.status_code == 200, r.text
    return x509.load_pem_x509_certificate(base64.b64decode(r.json()["CertificateData"])).serial_number


def wait_retrieve(api, dn, status, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": "Base64"})
        if r.status_code == status:
            return r
        time.sleep(0.2)
    raise AssertionError(f"retrieve never answered {status}: {r.status_code} {r.text}")


def test_error_state_from_a_disabled_ca_then_reset(gateway, api):
    ca = "ca" + uuid.uuid4().hex[:6]
    gateway.cli("ca", "add", ca)
    dn = folder(gateway, f"ca={ca}")
    obj, guid = enroll(api, dn, "err.example.com")
    cert = x509.load_pem_x509_certificate(base64.b64decode(
        api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": obj, "Format": "Base64"}).json()["CertificateData"]))
    assert ca in cert.issuer.rfc4514_string()
    gateway.cli("ca", "disable", ca)
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj})
    assert r.status_code == 200 and r.json()["Success"] is True
    r = wait_retrieve(api, obj, 500)
    assert r.json()["Stage"] == 500 and r.json()["Status"] == f"Post CSR failed with error: CA {ca} is disabled"
    d = api.get(f"/vedsdk/certificates/{guid}").json()
    assert d["ProcessingDetails"]["InError"] is True and f"CA {ca} is disabled" in d["ProcessingDetails"]["Status"]
    assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj})) == \
        f"Certificate {obj} is in an error state and cannot be renewed."
    gateway.cli("ca", "enable", ca)
    r = api.post("/vedsdk/certificates/reset", json={"CertificateDN": obj, "Restart": False})
    assert r.status_code == 200 and r.json()["ProcessingResetCompleted"] is True
    assert err(api.post("/vedsdk/certificates/reset", json={"CertificateDN": obj})) == \
        "Reset is not completed. No reset is required for the certificate."
    before = serial_of(api, obj)
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "WorkToDoTimeout": 20})
    assert r.status_code == 200 and "CertificateData" in r.json(), r.text
    assert serial_of(api, obj) != before


def test_waiting_for_new_csr(gateway, api):
    ca = "ca" + uuid.uuid4().hex[:6]
    gateway.cli("ca", "add", ca)
    gateway.cli("ca", "disable", ca)
    dn = folder(gateway, f"ca={ca}")
    _, pem = csr_pem("never.example.com")
    r = request_csr(api, dn, pem)
    obj = r.json()["CertificateDN"]
    wait_retrieve(api, obj, 500)
    api.post("/vedsdk/certificates/reset", json={"CertificateDN": obj}).raise_for_status()
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": obj, "Format": "Base64"})
    assert r.status_code == 202 and r.json()["Status"] == "Waiting for new CSR."


def import_cert(gateway, tmp_path, dn, mgmt):
    key = tmp_path / f"{mgmt}.key"
    crt = tmp_path / f"{mgmt}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "30", "-subj", f"/CN={mgmt.lower()}.example.com",
                    "-addext", "basicConstraints=critical,CA:FALSE"], check=True, capture_output=True)
    out = gateway.cli("cert", "import", "--policy", dn, str(crt), "--management-type", mgmt).stdout
    return out.strip().split("\t")[2]


@pytest.mark.parametrize("mgmt,expected", [
    ("Monitoring", "Certificate {dn} is only enrolled for monitoring."),
    ("Unassigned", "Certificate renewal failed. Certificate {dn} has an invalid Management type: Unassigned."),
])
def test_management_types(gateway, api, tmp_path, mgmt, expected):
    dn = folder(gateway)
    obj = import_cert(gateway, tmp_path, dn, mgmt)
    _, pem = csr_pem(f"{mgmt.lower()}.example.com")
    assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": pem})) == expected.format(dn=obj)


def test_provisioning_objects_renew(gateway, api, tmp_path):
    """TPP renews Provisioning objects (One Door reversed the refusal the policy issue had pinned)."""
    dn = folder(gateway)
    obj = import_cert(gateway, tmp_path, dn, "Provisioning")
    _, pem = csr_pem("provisioning.example.com")
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": pem, "WorkToDoTimeout": 20})
    assert r.status_code == 200 and r.json()["Success"] is True and r.json()["CertificateData"], r.text


def test_user_provided_object_requires_a_csr(gateway, api):
    dn = folder(gateway)
    _, pem = csr_pem("u.example.com")
    obj = request_csr(api, dn, pem, WorkToDoTimeout=20).json()["CertificateDN"]
    assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj})) == \
        f"Certificate renew mismatch. Certificate {obj}, which originated from a User Provided CSR, requires a PKSC#10."


def test_disable_and_reenable(gateway, api):
    dn = folder(gateway)
    obj, guid = enroll(api, dn, "dis.example.com")
    r = api.put(f"/vedsdk/certificates/{guid}", json={"AttributeData": [{"Name": "Disabled", "Value": ["1"]}]})
    assert r.status_code == 200 and r.json()["Success"] is True
    assert api.get(f"/vedsdk/certificates/{guid}").json()["Disabled"] is True
    assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj})) == \
        "Certificate renew error. Certificate is disabled."
    before = serial_of(api, obj)
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "Reenable": True, "WorkToDoTimeout": 20})
    assert r.status_code == 200 and "CertificateData" in r.json(), r.text
    assert serial_of(api, obj) != before
    assert api.get(f"/vedsdk/certificates/{guid}").json()["Disabled"] is False
    gateway.cli("cert", "disable", obj)
    assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj})) == \
        "Certificate renew error. Certificate is disabled."


def test_service_renew_with_new_names_checked_against_policy(gateway, api):
    dn = folder(gateway, "domains=example.com")
    obj, _ = enroll(api, dn, "svc.example.com")
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "Subject": "svc.example.com",
                                                     "SubjectAltNames": [{"Type": 2, "Name": "bad.other.org"}]})
    assert err(r) == "DNS SAN error. Subject alternative name DNS violates policy settings."
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "Subject": "svc.example.com", "WorkToDoTimeout": 20,
                                                     "SubjectAltNames": [{"Type": 2, "Name": "svc.example.com"},
                                                                         {"Type": 2, "Name": "alt.example.com"}]})
    assert r.status_code == 200, r.text
    cert = x509.load_pem_x509_certificate(base64.b64decode(r.json()["CertificateData"]))
    assert set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)) \
        == {"svc.example.com", "alt.example.com"}


def test_revoke(gateway, api):
    dn = folder(gateway)
    obj, guid = enroll(api, dn, "rev.example.com")
    r = api.post("/vedsdk/certificates/revoke", json={"CertificateDN": obj, "Reason": 4, "Comments": "superseded"})
    assert r.status_code == 200 and r.json() == {"Requested": True, "Success": True}
    r = api.post("/vedsdk/certificates/revoke", json={"CertificateDN": obj})
    assert r.json() == {"Requested": False, "Success": True}
    # By thumbprint, with Disable.
    obj2, guid2 = enroll(api, dn, "rev2.example.com")
    pem = base64.b64decode(api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": obj2, "Format": "Base64"}).json()["CertificateData"])
    tp = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1()).hex()
    r = api.post("/vedsdk/certificates/revoke", json={"Thumbprint": tp, "Disable": True})
    assert r.status_code == 200 and r.json()["Requested"] is True
    assert api.get(f"/vedsdk/certificates/{guid2}").json()["Disabled"] is True
    assert err(api.post("/vedsdk/certificates/revoke", json={"CertificateDN": obj, "Reason": 9})).startswith("Invalid Reason")
    # Revoking needs the certificate:revoke scope.
    manage_only = gateway.session(scope="certificate:manage")
    r = manage_only.post("/vedsdk/certificates/revoke", json={"CertificateDN": obj})
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"


def test_folder_permissions(gateway, api):
    a = folder(gateway)
    b = folder(gateway)
    obj_b, _ = enroll(api, b, "b.example.com")
    obj_a, _ = enroll(api, a, "a.example.com")
    user = "limited" + uuid.uuid4().hex[:6]
    gateway.cli("user", "add", user, "--password", PW, "--scope", "certificate:manage,revoke", "--folder", f"{a}:read,write")
    keyuser = "keyed" + uuid.uuid4().hex[:6]
    gateway.cli("user", "add", keyuser, "--password", PW, "--folder", f"{a}:read,write,key")
    s = gateway.session(token=gateway.token(scope="certificate:manage,revoke", user=user, password=PW))
    # Another folder's certificate and a certificate that does not exist: one answer.
    assert err(s.post("/vedsdk/certificates/renew", json={"CertificateDN": obj_b})) == \
        f"Certificate {obj_b} does not exist or you do not have sufficient rights to the object."
    ghost = a + "\\ghost.example.com"
    assert err(s.post("/vedsdk/certificates/renew", json={"CertificateDN": ghost})) == \
        f"Certificate {ghost} does not exist or you do not have sufficient rights to the object."
    assert err(s.post("/vedsdk/certificates/retrieve", json={"CertificateDN": obj_b, "Format": "Base64"})) == \
        f"Certificate {obj_b} does not exist or you do not have sufficient rights to the object."
    assert err(s.post("/vedsdk/certificates/request", json={"PolicyDN": b, "Subject": "x.example.com"})) == \
        f"PolicyDN: {b} does not exist."
    pem = base64.b64decode(api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": obj_b, "Format": "Base64"}).json()["CertificateData"])
    tp = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1()).hex()
    assert s.get("/vedsdk/certificates/", params={"Thumbprint": tp}).json()["TotalCount"] == 0
    # In its own folder it renews; but without Private Key Read it gets no key.
    r = s.post("/vedsdk/certificates/renew", json={"CertificateDN": obj_a, "WorkToDoTimeout": 20})
    assert r.status_code == 200 and "CertificateData" in r.json(), r.text
    r = s.post("/vedsdk/certificates/retrieve", json={"CertificateDN": obj_a, "Format": "Base64 (PKCS #8)",
                                                      "IncludePrivateKey": True, "Password": PW})
    assert "Private Key Read" in err(r)
    k = gateway.session(token=gateway.token(scope="certificate:manage", user=keyuser, password=PW))
    r = k.post("/vedsdk/certificates/retrieve", json={"CertificateDN": obj_a, "Format": "Base64 (PKCS #8)",
                                                      "IncludePrivateKey": True, "Password": PW})
    assert r.status_code == 200 and b"ENCRYPTED PRIVATE KEY" in base64.b64decode(r.json()["CertificateData"])


def test_policy_cli_show_and_inheritance(gateway):
    parent = folder(gateway, "domains=example.com,example.org", "organization=Acme", lock=["organization"])
    child = parent + "\\Child"
    gateway.cli("policy", "set", child, "wildcards=false", "validity=30d")
    out = gateway.cli("policy", "show", child).stdout
    lines = out.splitlines()
    assert f'domains = ["example.com", "example.org"]  # from {parent}' in lines
    assert f'organization = "Acme"  # from {parent}, locked' in lines
    assert f'wildcards = false  # from {child}' in lines
    assert f'validity = "30d"  # from {child}' in lines
    gateway.cli("policy", "set", parent, "--unset", "organization")
    assert not any(l.startswith("organization =") for l in gateway.cli("policy", "show", child).stdout.splitlines())
    bad = gateway.cli("policy", "set", parent, "rsa_key_sizes=1024", check=False)
    assert bad.returncode != 0 and "rsa_key_sizes" in bad.stderr


def test_policy_http_api(gateway, api):
    dn = "\\VED\\Policy\\Api" + uuid.uuid4().hex[:6] + "\\Leaf"
    r = api.put("/api/v1/policies", params={"dn": dn}, json={"dn": dn, "settings": {"domains": ["example.com"],
                "wildcards": False, "organization": "Acme"}, "locked": ["organization"]})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["settings"]["domains"] == ["example.com"] and j["locked"] == ["organization"]
    r = api.put("/api/v1/policies", params={"dn": dn}, json={"settings": {"wildcards": None, "city": "Boston"}})
    j = r.json()
    assert "wildcards" not in j["settings"] and j["settings"]["city"] == "Boston" and j["settings"]["domains"] == ["example.com"]
    assert j["locked"] == ["organization"]
    assert api.get("/api/v1/policies", params={"dn": dn}).json()["effective"]["organization"]["locked"] is True
    # CheckPolicy answers from the same tree.
    cp = api.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": dn}).json()["Policy"]
    assert cp["WhitelistedDomains"] == ["example.com"] and cp["Subject"]["Organization"] == {"Locked": True, "Value": "Acme"}
    assert cp["Subject"]["City"] == {"Locked": False, "Value": "Boston"}
    bad = api.put("/api/v1/policies", params={"dn": dn}, json={"settings": {"colour": "blue"}})
    assert bad.status_code == 400 and "unknown policy key" in bad.json()["message"]
    no_scope = gateway.session(scope="certificate:manage")
    assert no_scope.put("/api/v1/policies", params={"dn": dn}, json={"settings": {}}).status_code == 403
    assert api.delete("/api/v1/policies", params={"dn": dn}).json() == {"deleted": True}
    assert api.get("/api/v1/policies", params={"dn": dn}).status_code == 404


def test_policy_file_wins_for_what_it_names(gateway_factory, tmp_path):
    cfg = tmp_path / "renewgate.toml"
    cfg.write_text("[policy.'\\VED\\Policy\\FromFile']\ndomains = [\"example.com\"]\norganization = \"File Org\"\n"
                   "locked = [\"organization\"]\n")
    gw = gateway_factory(env={"RENEWGATE_CONFIG": str(cfg)})
    show = gw.cli("policy", "show", "\\VED\\Policy\\FromFile").stdout
    assert 'organization = "File Org"  # from \\VED\\Policy\\FromFile, locked' in show
    api = gw.session(scope="certificate:manage;configuration:manage")
    api.put("/api/v1/policies", params={"dn": "\\VED\\Policy\\FromFile"},
            json={"settings": {"organization": "Changed", "city": "Boston"}}).raise_for_status()
    gw.stop()
    gw.start()
    eff = api.get("/api/v1/policies", params={"dn": "\\VED\\Policy\\FromFile"}).json()["settings"]
    assert eff["organization"] == "File Org" and eff["city"] == "Boston"


def test_storage_failures_are_vendor_messages(gateway, api, backend):
    if backend != "postgres":
        pytest.skip("fault injection uses a PostgreSQL trigger in the test database; SQLite has no RAISE from a trigger on a chosen table step here")
    db = gateway.database
    dn = folder(gateway)
    obj, guid = enroll(api, dn, "fault.example.com")
    before = serial_of(api, obj)
    db.query("CREATE OR REPLACE FUNCTION rg_fault() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql")
    try:
        db.query("CREATE TRIGGER rg_fault_jobs BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION rg_fault()")
        assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj})) == \
            f"Could not store renewal request on certificate {obj}injected fault."
        db.query("DROP TRIGGER rg_fault_jobs ON jobs")
        _, pem = csr_pem("fault.example.com")
        db.query("CREATE TRIGGER rg_fault_csrs BEFORE INSERT ON csrs FOR EACH ROW EXECUTE FUNCTION rg_fault()")
        assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "PKCS10": pem})) == \
            "Certificate renew error. Failed to write Manual CSR; Error: injected fault"
        db.query("DROP TRIGGER rg_fault_csrs ON csrs")
        api.put(f"/vedsdk/certificates/{guid}", json={"AttributeData": [{"Name": "Disabled", "Value": ["1"]}]}).raise_for_status()
        db.query("CREATE TRIGGER rg_fault_reenable BEFORE UPDATE OF disabled ON cert_objects FOR EACH ROW EXECUTE FUNCTION rg_fault()")
        assert err(api.post("/vedsdk/certificates/renew", json={"CertificateDN": obj, "Reenable": True})) == \
            "Failed to re-enable the certificate. Error: injected fault"
        db.query("DROP TRIGGER rg_fault_reenable ON cert_objects")
    finally:
        for t, tab in (("rg_fault_jobs", "jobs"), ("rg_fault_csrs", "csrs"), ("rg_fault_reenable", "cert_objects")):
            db.query(f"DROP TRIGGER IF EXISTS {t} ON {tab}")
    # The object is unchanged: same certificate, still disabled, not processing.
    assert serial_of(api, obj) == before
    d = api.get(f"/vedsdk/certificates/{guid}").json()
    assert d["Disabled"] is True and d["ProcessingDetails"]["InProcess"] is False


def test_vcert_copies_locked_values_from_checkpolicy(rsa_gateway):
    """vcert reads CheckPolicy before every request and forces locked subject values into its
    CSR: a request naming another organization still succeeds with the locked one (the gateway
    itself would refuse a CSR carrying the other value)."""
    from vcert import CertificateRequest, Connection, VenafiPlatform, venafi_connection  # noqa: F401

    gw = rsa_gateway
    dn = "\\VED\\Policy\\Locked" + uuid.uuid4().hex[:6]
    gw.cli("policy", "set", dn, "organization=Acme Inc", "city=Boston", "state=MA", "country=US", "org_units=Ops",
           "--lock", "organization", "--lock", "city", "--lock", "state", "--lock", "country", "--lock", "org_units")
    conn = venafi_connection(url=gw.url + "/", user="admin", password=gw.admin_password, platform=VenafiPlatform.TPP,
                             http_request_kwargs={"verify": gw.ca_bundle, "timeout": 30})
    req = CertificateRequest(common_name="locked.example.com", organization="Other Corp", timeout=60)
    conn.request_cert(req, dn.split("\\VED\\Policy\\", 1)[1])
    cert = conn.retrieve_cert(req)
    c = x509.load_pem_x509_certificate(cert.cert.encode())
    subj = {a.oid: a.value for a in c.subject}
    assert subj[NameOID.ORGANIZATION_NAME] == "Acme Inc"
    assert subj[NameOID.LOCALITY_NAME] == "Boston" and subj[NameOID.STATE_OR_PROVINCE_NAME] == "MA"
    assert subj[NameOID.COUNTRY_NAME] == "US" and subj[NameOID.ORGANIZATIONAL_UNIT_NAME] == "Ops"
    # The gateway refuses the same foreign organization when a client does not follow CheckPolicy.
    api = gw.session(scope="certificate:manage")
    _, pem = csr_pem("locked2.example.com", o="Other Corp", kind="rsa")
    assert err(request_csr(api, dn, pem)) == \
        "Organization error. Organization value Other Corp violates policy organization settings."
