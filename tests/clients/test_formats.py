"""Every output format, produced by the running server and checked by independent readers:
the openssl CLI, Java 17 keytool and pyjks (issue: formats)."""
import base64
import re
import subprocess
import time
from pathlib import Path

import jks
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import openssl

PW = "Str0ng!Passw0rd#26"
STORE_PW = "St0re!Passw0rd#26"


def keytool(*args, check=True):
    r = subprocess.run(["keytool", *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"keytool {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def api(gateway):
    return gateway.session(scope="certificate:manage")


@pytest.fixture(scope="module")
def objects(gateway, api):
    """A service-generated EC object, a service-generated RSA object and a CSR (keyless) object."""
    gateway.cli("policy", "set", "\\VED\\Policy\\Formats")
    out = {}
    for name, extra in (("ec", {"KeyAlgorithm": "ECC", "EllipticCurve": "P256"}),
                        ("rsa", {"KeyAlgorithm": "RSA", "KeyBitSize": 2048})):
        r = api.post("/vedsdk/certificates/request", json={
            "PolicyDN": "\\VED\\Policy\\Formats", "Subject": f"{name}.formats.example.com",
            "SubjectAltNames": [{"Type": 2, "Name": f"{name}.formats.example.com"}], "WorkToDoTimeout": 30, **extra})
        assert r.status_code == 200, r.text
        assert "CertificateData" in r.json(), "issuance did not finish within WorkToDoTimeout"
        out[name] = r.json()["CertificateDN"]
    key = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", "/dev/null", "-subj", "/CN=csr.formats.example.com", "-addext",
                          "subjectAltName=DNS:csr.formats.example.com"], capture_output=True, text=True, check=True)
    r = api.post("/vedsdk/certificates/request", json={"PolicyDN": "\\VED\\Policy\\Formats", "PKCS10": key.stdout,
                                                       "WorkToDoTimeout": 30})
    assert r.status_code == 200 and "CertificateData" in r.json(), r.text
    out["csr"] = r.json()["CertificateDN"]
    return out


def retrieve(api, dn, fmt, **kw):
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": fmt, **kw})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["Format"] and body["Filename"]
    return base64.b64decode(body["CertificateData"]), body


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def pubkey_der_of_cert(cert_pem_or_der):
    try:
        c = x509.load_pem_x509_certificate(cert_pem_or_der)
    except ValueError:
        c = x509.load_der_x509_certificate(cert_pem_or_der)
    return c.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pubkey_der_of_key(key_pem, password=None):
    args = ["pkey", "-pubout", "-outform", "DER"]
    if password:
        args += ["-passin", f"pass:{password}"]
    return openssl(*args, input=key_pem).stdout


def blocks(pem):
    return re.findall(r"-----BEGIN ([A-Z ]+)-----", pem.decode())


def subjects(pem):
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pem)]


def test_base64_chain_order_and_file_names(api, objects):
    leaf_only, b = retrieve(api, objects["ec"], "Base64")
    assert blocks(leaf_only) == ["CERTIFICATE"] and b["Filename"].endswith(".cer") and b["Format"] == "Base64"
    chain, b = retrieve(api, objects["ec"], "base64", IncludeChain=True)
    s = subjects(chain)
    assert len(s) == 3 and "ec.formats.example.com" in s[0] and "Root" in s[2] and "Issuing" in s[1]
    assert b["Filename"].endswith(".pem")
    root_first, _ = retrieve(api, objects["ec"], "Base64", IncludeChain="true", RootFirstOrder="true")
    assert subjects(root_first) == list(reversed(s))


def test_leaf_verifies_against_the_ca_bundle(gateway, api, objects, tmp_path):
    pem, _ = retrieve(api, objects["ec"], "Base64", IncludeChain=True)
    certs = x509.load_pem_x509_certificates(pem)
    leaf = write(tmp_path, "leaf.pem", certs[0].public_bytes(serialization.Encoding.PEM))
    out = openssl("verify", "-CAfile", gateway.ca_bundle, leaf).stdout.decode()
    assert out.strip().endswith("OK")
    txt = openssl("x509", "-in", leaf, "-noout", "-text").stdout.decode()
    assert "DNS:ec.formats.example.com" in txt


@pytest.mark.parametrize("kind,label", [("ec", "EC PRIVATE KEY"), ("rsa", "RSA PRIVATE KEY")])
def test_base64_with_traditional_encrypted_key_after_the_certificates(api, objects, kind, label):
    pem, b = retrieve(api, objects[kind], "Base64", IncludeChain=True, IncludePrivateKey=True, Password=PW)
    assert blocks(pem) == ["CERTIFICATE", "CERTIFICATE", "CERTIFICATE", label]
    key_block = pem[pem.index(f"-----BEGIN {label}".encode()):]
    assert b"Proc-Type: 4,ENCRYPTED" in key_block and b"AES-256-CBC" in key_block
    assert pubkey_der_of_key(key_block, PW) == pubkey_der_of_cert(pem)
    wrong = openssl("pkey", "-passin", "pass:Wrong!Passw0rd1", input=key_block, check=False)
    assert wrong.returncode != 0
    assert b["Filename"].endswith(".pem")


def test_pkcs8_key_is_pbes2_aes256_and_matches(api, objects, tmp_path):
    pem, b = retrieve(api, objects["rsa"], "Base64 (PKCS #8)", IncludeChain=True, IncludePrivateKey=True, Password=PW)
    assert blocks(pem) == ["CERTIFICATE", "CERTIFICATE", "CERTIFICATE", "ENCRYPTED PRIVATE KEY"]
    key_block = pem[pem.index(b"-----BEGIN ENCRYPTED PRIVATE KEY"):]
    parsed = openssl("asn1parse", input=key_block).stdout.decode()
    assert "PBES2" in parsed and "aes-256-cbc" in parsed
    assert pubkey_der_of_key(key_block, PW) == pubkey_der_of_cert(pem)
    assert b["Format"] == "Base64 (PKCS #8)" and b["Filename"].endswith(".pem")


def test_retrieve_does_not_include_the_key_by_default(api, objects):
    pem, _ = retrieve(api, objects["ec"], "Base64 (PKCS #8)", Password=PW)
    assert blocks(pem) == ["CERTIFICATE"]


def test_der(api, objects, tmp_path):
    der, b = retrieve(api, objects["ec"], "DER", IncludeChain=True)
    assert b["Filename"].endswith(".cer") and b["Format"] == "DER"
    txt = openssl("x509", "-inform", "DER", "-noout", "-subject", input=der).stdout.decode()
    assert "ec.formats.example.com" in txt


def test_pkcs7_read_by_openssl_and_keytool(api, objects, tmp_path):
    p7, b = retrieve(api, objects["ec"], "PKCS #7", IncludeChain=True)
    assert b["Filename"].endswith(".p7b") and b["Format"] == "PKCS #7"
    printed = openssl("pkcs7", "-inform", "DER", "-print_certs", input=p7).stdout
    s = subjects(printed)
    assert len(s) == 3 and "ec.formats.example.com" in s[0]
    listing = keytool("-printcert", "-file", write(tmp_path, "c.p7b", p7)).stdout
    assert listing.count("Owner:") == 3
    leaf_only, _ = retrieve(api, objects["ec"], "PKCS7")
    assert len(subjects(openssl("pkcs7", "-inform", "DER", "-print_certs", input=leaf_only).stdout)) == 1


def pkcs12_checks(gateway, tmp_path, p12, profile):
    path = write(tmp_path, f"{profile}.pfx", p12)
    info = openssl("pkcs12", "-info", "-in", path, "-passin", f"pass:{PW}", "-nokeys").stderr.decode() + \
        openssl("pkcs12", "-info", "-in", path, "-passin", f"pass:{PW}", "-nokeys").stdout.decode()
    if profile == "modern":
        assert "AES-256-CBC" in info and "MAC: sha256" in info and "Iteration 10000" in info
    else:
        assert "pbeWithSHA1And3-KeyTripleDES-CBC" in info and "MAC: sha1" in info
    assert "friendlyName: my-friendly" in info
    certs = openssl("pkcs12", "-in", path, "-passin", f"pass:{PW}", "-nokeys").stdout
    key = openssl("pkcs12", "-in", path, "-passin", f"pass:{PW}", "-nocerts", "-nodes").stdout
    assert pubkey_der_of_key(key) == pubkey_der_of_cert(certs)
    assert len(subjects(certs)) == 3
    listing = keytool("-list", "-v", "-storetype", "PKCS12", "-keystore", path, "-storepass", PW).stdout
    assert "Entry type: PrivateKeyEntry" in listing and "Certificate chain length: 3" in listing
    dest = str(tmp_path / f"{profile}-copy.p12")
    keytool("-importkeystore", "-srckeystore", path, "-srcstoretype", "PKCS12", "-srcstorepass", PW,
            "-destkeystore", dest, "-deststoretype", "PKCS12", "-deststorepass", "Another!Pass123", "-noprompt")
    assert "PrivateKeyEntry" in keytool("-list", "-keystore", dest, "-storepass", "Another!Pass123").stdout


def test_pkcs12_modern_is_the_default(gateway, api, objects, tmp_path):
    p12, b = retrieve(api, objects["ec"], "PKCS #12", IncludeChain=True, IncludePrivateKey=True, Password=PW,
                      FriendlyName="my-friendly")
    assert b["Filename"].endswith(".pfx") and b["Format"] == "PKCS #12"
    pkcs12_checks(gateway, tmp_path, p12, "modern")


def test_pkcs12_legacy_profile(gateway, api, objects, tmp_path):
    p12, _ = retrieve(api, objects["rsa"], "PKCS #12", IncludeChain=True, IncludePrivateKey=True, Password=PW,
                      FriendlyName="my-friendly", Pkcs12Profile="legacy")
    pkcs12_checks(gateway, tmp_path, p12, "legacy")


def test_jks_read_by_keytool_and_pyjks(api, objects, tmp_path):
    data, b = retrieve(api, objects["ec"], "JKS", IncludeChain=True, IncludePrivateKey=True, Password=PW,
                       KeystorePassword=STORE_PW, FriendlyName="webapp")
    assert b["Filename"].endswith(".jks") and b["Format"] == "JKS"
    path = write(tmp_path, "s.jks", data)
    listing = keytool("-list", "-v", "-keystore", path, "-storepass", STORE_PW).stdout
    assert "Alias name: webapp" in listing and "Entry type: PrivateKeyEntry" in listing
    assert "Certificate chain length: 3" in listing
    # The key decrypts with the key password (Password), through keytool ...
    dest = str(tmp_path / "from-jks.p12")
    keytool("-importkeystore", "-srckeystore", path, "-srcstoretype", "JKS", "-srcstorepass", STORE_PW,
            "-srcalias", "webapp", "-srckeypass", PW, "-destkeystore", dest, "-deststoretype", "PKCS12",
            "-deststorepass", PW, "-destkeypass", PW, "-noprompt")
    key = openssl("pkcs12", "-in", dest, "-passin", f"pass:{PW}", "-nocerts", "-nodes").stdout
    leaf_der = x509.load_pem_x509_certificates(openssl("pkcs12", "-in", dest, "-passin", f"pass:{PW}", "-nokeys").stdout)
    assert pubkey_der_of_key(key) == leaf_der[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # ... and through pyjks, which refuses the wrong password.
    ks = jks.KeyStore.loads(data, STORE_PW, try_decrypt_keys=False)
    entry = ks.private_keys["webapp"]
    assert len(entry.cert_chain) == 3
    with pytest.raises(Exception):
        entry.decrypt("Wrong!Passw0rd#1")
    entry.decrypt(PW)
    assert entry.is_decrypted()
    pk = serialization.load_der_private_key(entry.pkey_pkcs8, None)
    assert pk.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        x509.load_der_x509_certificate(entry.cert_chain[0][1]).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(Exception):
        jks.KeyStore.loads(data, "Wrong!Store#123")


@pytest.mark.parametrize("fmt,mime,ext", [
    ("Base64", "application/x-pem-file", ".cer"),
    ("DER", "application/x-x509-ca-cert", ".cer"),
    ("PKCS #7", "application/x-pkcs7-certificates", ".p7b"),
])
def test_get_retrieve_returns_the_file(api, objects, fmt, mime, ext):
    r = api.get("/vedsdk/Certificates/Retrieve", params={"CertificateDN": objects["ec"], "Format": fmt})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith(mime)
    assert re.search(r'attachment; filename="[^"]+' + re.escape(ext) + '"', r.headers["Content-Disposition"])
    posted, _ = retrieve(api, objects["ec"], fmt)
    assert r.content == posted


def test_get_retrieve_binary_keystores(api, objects):
    r = api.get("/vedsdk/Certificates/Retrieve", params={"CertificateDN": objects["ec"], "Format": "JKS",
                "KeystorePassword": STORE_PW, "FriendlyName": "a", "IncludePrivateKey": "true", "Password": PW})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/octet-stream")
    assert r.content[:4] == b"\xfe\xed\xfe\xed"
    r = api.get("/vedsdk/Certificates/Retrieve", params={"CertificateDN": objects["ec"], "Format": "PKCS #12",
                "IncludePrivateKey": "true", "Password": PW})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-pkcs12")
    assert 'filename="ec.formats.example.com.pfx"' in r.headers["Content-Disposition"]


@pytest.mark.parametrize("body,fragment", [
    ({"Format": "Base64 (PKCS #8)", "IncludePrivateKey": True, "Password": "short1A!"}, "Password is not strong enough"),
    ({"Format": "Base64 (PKCS #8)", "IncludePrivateKey": True, "Password": "alllowercaseletters"}, "Password is not strong enough"),
    ({"Format": "PKCS #12", "IncludePrivateKey": True}, "Password is required"),
    ({"Format": "JKS", "KeystorePassword": STORE_PW}, "FriendlyName is required"),
    ({"Format": "JKS", "FriendlyName": "x"}, "KeystorePassword is required"),
    ({"Format": "JKS", "FriendlyName": "x", "KeystorePassword": "weakweak"}, "KeystorePassword is not strong enough"),
    ({"Format": "DER", "IncludePrivateKey": True, "Password": PW}, "cannot carry a private key"),
    ({"Format": "PKCS #7", "IncludePrivateKey": True, "Password": PW}, "cannot carry a private key"),
    ({"Format": "PKCS #12", "Password": PW, "Pkcs12Profile": "ancient"}, "Pkcs12Profile"),
    ({"Format": "ZIP"}, "Invalid Format"),
])
def test_bad_output_parameters_are_refused_without_key_material(api, objects, body, fragment):
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": objects["ec"], **body})
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert j["Success"] is False and fragment in j["Error"] and "CertificateData" not in j


def test_key_of_a_keyless_object_is_refused(api, objects):
    r = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": objects["csr"], "Format": "Base64 (PKCS #8)",
                                                        "IncludePrivateKey": True, "Password": PW})
    assert r.status_code == 400
    assert r.json()["Error"] == "Failed to lookup private key, error: Failed to lookup private key vault id"


def current_serial(api, dn):
    pem, _ = retrieve(api, dn, "Base64")
    return x509.load_pem_x509_certificate(pem).serial_number


def test_renew_with_bad_output_parameters_renews_nothing(api, objects):
    before = current_serial(api, objects["rsa"])
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": objects["rsa"], "Format": "JKS",
                                                     "WorkToDoTimeout": 10, "KeystorePassword": "weak"})
    assert r.status_code == 400 and r.json()["Success"] is False
    time.sleep(0.5)
    # Not processing, same certificate.
    again = api.post("/vedsdk/certificates/retrieve", json={"CertificateDN": objects["rsa"], "Format": "Base64"})
    assert again.status_code == 200
    assert current_serial(api, objects["rsa"]) == before


def test_renew_returns_the_requested_format_with_the_default_key_rule(api, objects, tmp_path):
    before = current_serial(api, objects["ec"])
    # PKCS #12 + Password, IncludePrivateKey absent: Renew's default includes the key.
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": objects["ec"], "WorkToDoTimeout": 30,
                                                     "Format": "PKCS #12", "Password": PW, "IncludeChain": True})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["Success"] is True and j["Format"] == "PKCS #12" and j["Filename"].endswith(".pfx")
    path = write(tmp_path, "renewed.pfx", base64.b64decode(j["CertificateData"]))
    key = openssl("pkcs12", "-in", path, "-passin", f"pass:{PW}", "-nocerts", "-nodes").stdout
    certs = openssl("pkcs12", "-in", path, "-passin", f"pass:{PW}", "-nokeys").stdout
    assert b"PRIVATE KEY" in key and pubkey_der_of_key(key) == pubkey_der_of_cert(certs)
    assert x509.load_pem_x509_certificates(certs)[0].serial_number != before
    # Base64 with a Password: no key by default.
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": objects["ec"], "WorkToDoTimeout": 30,
                                                     "Format": "Base64", "Password": PW})
    assert r.status_code == 200 and blocks(base64.b64decode(r.json()["CertificateData"])) == ["CERTIFICATE"]
    # A keyless object renewed with a CSR and PKCS #8 + Password: the answer simply carries no key.
    csr = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", "/dev/null", "-subj", "/CN=csr.formats.example.com", "-addext",
                          "subjectAltName=DNS:csr.formats.example.com"], capture_output=True, text=True, check=True).stdout
    r = api.post("/vedsdk/certificates/renew", json={"CertificateDN": objects["csr"], "PKCS10": csr, "WorkToDoTimeout": 30,
                                                     "Format": "Base64 (PKCS #8)", "Password": PW})
    assert r.status_code == 200, r.text
    assert blocks(base64.b64decode(r.json()["CertificateData"])) == ["CERTIFICATE"]
