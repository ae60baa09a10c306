"""Helpers shared by the Renewgate client tests: CSRs, certificate parsing, Retrieve polling,
Venafi error-shape checks and row counts on either backend."""
import base64
import hashlib
import ipaddress
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

STRONG_PASSWORD = "Str0ng!Passw0rd#2026"
GUID_RE = re.compile(r"^\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}$")
WORK_TO_DO_TIMEOUT_TEXT = "Certificate processing took longer than WorkToDoTimeout. Call certificates/retrieve..."


# ---------------------------------------------------------------- keys, CSRs, certificates

def new_key(kind="ec"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(cn, dns=(), ips=(), emails=(), uris=(), key=None, kind="ec", org=None):
    """A signed PKCS#10 request. Returns (private key, PEM text)."""
    key = key or new_key(kind)
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] \
        + [x509.RFC822Name(e) for e in emails] + [x509.UniformResourceIdentifier(u) for u in uris]
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = b.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def load_certs(pem_bytes):
    """Every CERTIFICATE block of a PEM text, in order."""
    if isinstance(pem_bytes, str):
        pem_bytes = pem_bytes.encode()
    return x509.load_pem_x509_certificates(pem_bytes)


def pem_block_types(pem_text):
    """The PEM block labels in order, e.g. ['CERTIFICATE', 'CERTIFICATE', 'ENCRYPTED PRIVATE KEY']."""
    if isinstance(pem_text, bytes):
        pem_text = pem_text.decode()
    return re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----", pem_text)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def sha1_thumbprint(cert):
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def san_sets(obj):
    """SANs of a certificate or CSR as a dict of sets by type."""
    try:
        ext = obj.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return {"dns": set(), "ip": set(), "email": set(), "uri": set()}
    return {
        "dns": set(ext.get_values_for_type(x509.DNSName)),
        "ip": {str(i) for i in ext.get_values_for_type(x509.IPAddress)},
        "email": set(ext.get_values_for_type(x509.RFC822Name)),
        "uri": set(ext.get_values_for_type(x509.UniformResourceIdentifier)),
    }


def public_key_der(obj):
    return obj.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def openssl(*args, input=None, check=True):
    r = subprocess.run(["openssl", *args], input=input, capture_output=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")
    return r


def openssl_verify(ca_bundle, leaf_pem):
    """`openssl verify -CAfile <bundle>` on the leaf; asserts success."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(leaf_pem if isinstance(leaf_pem, str) else leaf_pem.decode())
        path = f.name
    try:
        r = openssl("verify", "-CAfile", str(ca_bundle), path, check=False)
        out = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode == 0 and f"{path}: OK" in out, f"openssl verify failed: {out}"
    finally:
        Path(path).unlink()


# ---------------------------------------------------------------- Venafi calls

def assert_json(resp):
    ct = resp.headers.get("Content-Type", "")
    assert ct.startswith("application/json"), f"content type {ct!r} for {resp.status_code} {resp.text[:300]}"
    return resp.json()


def assert_venafi_error(resp, status=400, exact=None, startswith=None, contains=None):
    """The certificate-call error shape: `{"Error": str, "Success": false}` with a JSON content type."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    body = assert_json(resp)
    assert isinstance(body, dict), body
    assert isinstance(body.get("Error"), str) and body["Error"], body
    assert body.get("Success") is False, body
    if exact is not None:
        assert body["Error"] == exact, f"Error {body['Error']!r} != {exact!r}"
    if startswith is not None:
        assert body["Error"].startswith(startswith), f"Error {body['Error']!r} does not start with {startswith!r}"
    if contains is not None:
        assert contains in body["Error"], f"Error {body['Error']!r} does not contain {contains!r}"
    return body


def retrieve(session, dn, fmt="Base64", **extra):
    return session.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": fmt, **extra})


def wait_retrieve(session, dn, timeout=90, not_serial=None, fmt="Base64", **extra):
    """Polls Retrieve until 200. Every pending answer must be 202 `{Stage, Status}` without
    CertificateData; a 200 must never carry the certificate whose serial is `not_serial`
    (the one an accepted renewal replaces). Returns the 200 response."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        r = retrieve(session, dn, fmt, **extra)
        last = r
        if r.status_code == 200:
            body = assert_json(r)
            if not_serial is not None:
                leaf = load_certs(base64.b64decode(body["CertificateData"]))[0]
                assert leaf.serial_number != not_serial, \
                    f"Retrieve of {dn} returned the old certificate after an accepted renewal"
            return r
        assert r.status_code == 202, f"Retrieve of {dn}: {r.status_code} {r.text[:500]}"
        body = assert_json(r)
        assert isinstance(body.get("Stage"), int) and isinstance(body.get("Status"), str), body
        assert "CertificateData" not in body, body
        time.sleep(0.2)
    raise AssertionError(f"{dn} not issued within {timeout}s; last answer {last.status_code} {last.text[:300]}")


def retrieved_certs(resp):
    """The certificates of a 200 Retrieve/Renew answer (Base64 formats)."""
    return load_certs(base64.b64decode(resp.json()["CertificateData"]))


def leaf_of(session, dn, **kw):
    return retrieved_certs(wait_retrieve(session, dn, **kw))[0]


def request_csr(session, policy_dn, cn, **csr_kw):
    """Certificates/Request with a local CSR. Returns (key, csr_pem, DN)."""
    key, csr = make_csr(cn, **csr_kw)
    r = session.post("/vedsdk/certificates/request", json={"PolicyDN": policy_dn, "PKCS10": csr, "ObjectName": cn})
    assert r.status_code == 200, r.text
    return key, csr, r.json()["CertificateDN"]


def request_service(session, policy_dn, cn, dns=None, key_algorithm="ECC", **extra):
    """Certificates/Request with a service-generated key. Returns the DN."""
    body = {"PolicyDN": policy_dn, "Subject": cn, "ObjectName": cn,
            "SubjectAltNames": [{"Type": 2, "Name": d} for d in (dns or [cn])],
            "KeyAlgorithm": key_algorithm, **extra}
    if key_algorithm == "ECC":
        body.setdefault("EllipticCurve", "P256")
    r = session.post("/vedsdk/certificates/request", json=body)
    assert r.status_code == 200, r.text
    return r.json()["CertificateDN"]


def renew(session, dn, **extra):
    return session.post("/vedsdk/certificates/renew", json={"CertificateDN": dn, **extra})


# ---------------------------------------------------------------- database access (row counts)

def db_rows(gw, sql):
    """Runs a read query on the gateway's database; rows as tuples of strings."""
    if gw.database.backend == "postgres":
        out = gw.database.query(sql)
        return [tuple(line.split("|")) for line in out.splitlines() if line.strip()]
    con = sqlite3.connect(str(Path(gw.data_dir) / "renewgate.db"), timeout=30)
    try:
        return [tuple("" if v is None else str(v) for v in row) for row in con.execute(sql)]
    finally:
        con.close()


def db_scalar(gw, sql):
    rows = db_rows(gw, sql)
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    return rows[0][0]


def db_exec(gw, sql):
    """Runs a write statement (tests that tamper with state while the gateway is stopped)."""
    if gw.database.backend == "postgres":
        gw.database.query(sql)
        return
    con = sqlite3.connect(str(Path(gw.data_dir) / "renewgate.db"), timeout=30)
    try:
        con.execute(sql)
        con.commit()
    finally:
        con.close()


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


# ---------------------------------------------------------------- a foreign CA (cert import)

def make_ca(cn="Foreign Test CA", key=None):
    """A self-signed CA certificate. Returns (key, cert)."""
    import datetime
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key, ca_cert, cn, key=None, dns=None):
    """An end-entity certificate issued by (ca_key, ca_cert). Returns (key, cert)."""
    import datetime
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in (dns or [cn])]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
