"""vcert (PyPI `vcert` 0.22.1), unchanged, against the real gateway over HTTPS.

vcert-python's renew crashes on an ECDSA-signed old certificate (client bug: `key_type should be
instance of vcert.KeyType`). The default configuration signs RSA keys with the built-in
`issuing-rsa` CA, so vcert works on it; the flows run on a default gateway and on one whose CAs
are all RSA-2048 (`ca.key_type = rsa-2048`)."""
import hashlib
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from vcert import (CSR_ORIGIN_SERVICE, SCOPE_CM, Authentication, CertificateRequest, KeyType, VenafiPlatform,
                   venafi_connection)

from rg_helpers import load_certs, openssl_verify, public_key_der, san_sets

ZONE = "Team A"
POLICY = "\\VED\\Policy\\Team A"


@pytest.fixture(scope="module", params=["default", "rsa-ca"])
def vgw(request):
    """A gateway with the default configuration (EC root and `issuing`, RSA `issuing-rsa`), or
    one whose CAs are all RSA."""
    return request.getfixturevalue("gateway" if request.param == "default" else "rsa_gateway")


@pytest.fixture(scope="module")
def conn(vgw):
    vgw.cli("policy", "set", POLICY)
    c = venafi_connection(url=vgw.url + "/", user="admin", password=vgw.admin_password,
                          platform=VenafiPlatform.TPP,
                          http_request_kwargs={"verify": vgw.ca_bundle, "timeout": 60})
    tok = c.get_access_token(Authentication(user="admin", password=vgw.admin_password,
                                            client_id="vcert-sdk", scope=SCOPE_CM))
    assert tok.access_token and len(tok.access_token) == 24 and tok.access_token.endswith("==")
    assert tok.refresh_token
    assert isinstance(tok.expires, int) and tok.expires > 0
    return c


def x509_of(cert_response):
    return x509.load_pem_x509_certificate(cert_response.cert.encode())


def check_issued(gw, cert_response, cn, sans):
    leaf = x509_of(cert_response)
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn
    assert san_sets(leaf)["dns"] == set(sans)
    # vcert-python's default chain option puts the root last; the chain is the RSA issuing CA
    # (an RSA key is signed by an RSA CA, whatever `ca.key_type` says) and the root.
    bundle = load_certs(open(gw.ca_bundle, "rb").read())
    root = [c for c in bundle if c.subject == c.issuer]
    assert len(root) == 1
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in cert_response.chain]
    assert [c.subject for c in chain] == [leaf.issuer, root[0].subject]
    assert isinstance(chain[0].public_key(), rsa.RSAPublicKey), "RSA keys are signed by an RSA issuing CA"
    assert chain[0] in bundle
    openssl_verify(gw.ca_bundle, cert_response.cert)
    return leaf


def test_vcert_request_retrieve_renew_by_dn_and_thumbprint(vgw, conn):
    cn = f"vcert-{uuid.uuid4().hex[:6]}.example.com"
    sans = [cn, "www." + cn]

    # Request (checkpolicy, then a local RSA key and CSR) and retrieve.
    req = CertificateRequest(common_name=cn, san_dns=sans, timeout=60)
    conn.request_cert(req, ZONE)
    assert req.id == f"{POLICY}\\{cn}"
    assert req.cert_guid and req.cert_guid.startswith("{")
    first = conn.retrieve_cert(req)
    leaf1 = check_issued(vgw, first, cn, sans)
    assert public_key_der(leaf1) == public_key_der(req.private_key)

    # Renew by DN with a new request (new key), then retrieve.
    ren = CertificateRequest(cert_id=req.id, timeout=60)
    conn.renew_cert(ren)
    assert ren.id == req.id
    second = conn.retrieve_cert(ren)
    leaf2 = check_issued(vgw, second, cn, sans)
    assert leaf2.serial_number != leaf1.serial_number
    assert leaf2.subject == leaf1.subject
    assert public_key_der(leaf2) == public_key_der(ren.private_key)
    assert public_key_der(leaf2) != public_key_der(leaf1)

    # Renew by SHA-1 thumbprint (GET certificates/?Thumbprint= resolves the DN), then retrieve.
    tp = hashlib.sha1(leaf2.public_bytes(serialization.Encoding.DER)).hexdigest()
    ren2 = CertificateRequest(thumbprint=tp, timeout=60)
    conn.renew_cert(ren2)
    assert ren2.id == req.id
    third = conn.retrieve_cert(ren2)
    leaf3 = check_issued(vgw, third, cn, sans)
    assert leaf3.serial_number not in (leaf1.serial_number, leaf2.serial_number)
    assert leaf3.subject == leaf1.subject
    assert public_key_der(leaf3) == public_key_der(ren2.private_key)


def test_vcert_service_generated_key(vgw, conn):
    cn = f"vcert-sg-{uuid.uuid4().hex[:6]}.example.com"
    password = "Vcert-Passw0rd!2026"
    req = CertificateRequest(common_name=cn, san_dns=[cn], csr_origin=CSR_ORIGIN_SERVICE,
                             key_type=KeyType(KeyType.RSA, 2048), include_private_key=True,
                             key_password=password, timeout=60)
    conn.request_cert(req, ZONE)
    got = conn.retrieve_cert(req)
    leaf = check_issued(vgw, got, cn, [cn])
    assert got.key, "the encrypted private key came back"
    key = serialization.load_pem_private_key(got.key.encode(), password.encode())
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert public_key_der(key) == public_key_der(leaf)

    # Renew the service-generated object (vcert sends Subject and SubjectAltNames), then retrieve.
    ren = CertificateRequest(cert_id=req.id, csr_origin=CSR_ORIGIN_SERVICE, include_private_key=True,
                             key_password=password, timeout=60)
    conn.renew_cert(ren)
    again = conn.retrieve_cert(ren)
    leaf2 = check_issued(vgw, again, cn, [cn])
    assert leaf2.serial_number != leaf.serial_number
    key2 = serialization.load_pem_private_key(again.key.encode(), password.encode())
    assert public_key_der(key2) == public_key_der(leaf2) != public_key_der(leaf)


def test_vcert_revoke_access_token(rsa_gateway):
    c = venafi_connection(url=rsa_gateway.url + "/", user="admin", password=rsa_gateway.admin_password,
                          platform=VenafiPlatform.TPP, http_request_kwargs={"verify": rsa_gateway.ca_bundle})
    tok = c.get_access_token(Authentication(user="admin", password=rsa_gateway.admin_password,
                                            client_id="vcert-sdk", scope=SCOPE_CM))
    s = rsa_gateway.session(token=tok.access_token)
    assert s.get("/vedauth/authorize/verify").status_code == 200
    c.revoke_access_token()
    assert s.get("/vedauth/authorize/verify").status_code == 401
