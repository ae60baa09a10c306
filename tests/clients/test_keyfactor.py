"""The Keyfactor Command dialect against the real gateway: the `keyfactor-v-1-client` SDK (parsed
models, PascalCase), the classic `CMSApi/CertEnroll/3/*` calls that scripts post with `requests`
(the seed's Renew example), v11-style camelCase callers, the error shape, the other endpoints,
and certificate stores served by a real store agent (`renewgate agent run`), including a store
that fails, acknowledge, and a job whose agent died before reporting."""
import base64
import datetime
import json
import os
import re
import signal
import stat
import subprocess
import time
import uuid
from pathlib import Path

import jks
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from keyfactor_v_1_client import AuthenticatedClient
from keyfactor_v_1_client.api.certificate import (certificate_download_certificate_async, certificate_get_certificate,
                                                  certificate_recover_certificate_async, certificate_revoke)
from keyfactor_v_1_client.api.certificate_authority import certificate_authority_get_cas
from keyfactor_v_1_client.api.certificate_store import (certificate_store_add_certificate,
                                                        certificate_store_get_certificate_store_inventory)
from keyfactor_v_1_client.api.enrollment import (enrollment_add_to_existing_cert_stores,
                                                 enrollment_available_renewal_thumbprint,
                                                 enrollment_install_pfx_to_cert_store, enrollment_post_csr_enroll,
                                                 enrollment_post_pfx_enroll, enrollment_renew)
from keyfactor_v_1_client.api.orchestrator_job import orchestrator_job_get_job_history
from keyfactor_v_1_client.api.status import status_get_endpoints
from keyfactor_v_1_client.api.template import template_get_templates
from keyfactor_v_1_client.models import (KeyfactorApiModelsCertificateStoresAddCertificateRequest,
                                         KeyfactorApiModelsCertificateStoresJobHistoryResponseResult,
                                         KeyfactorApiModelsCertificateStoresJobHistoryResponseStatus,
                                         KeyfactorApiModelsEnrollmentEnrollmentManagementRequest,
                                         KeyfactorCommonSchedulingKeyfactorSchedule,
                                         ModelsCertificateDownloadRequest, ModelsCertificateRecoveryRequest,
                                         ModelsCertificateRetrievalResponseCertState,
                                         ModelsCertificateRetrievalResponseRevocationReason, ModelsCertificateStoreEntry,
                                         ModelsEnrollmentCSREnrollmentRequest,
                                         ModelsEnrollmentExistingEnrollmentManagementRequest,
                                         ModelsEnrollmentPFXEnrollmentRequest, ModelsEnrollmentPFXEnrollmentRequestMetadata,
                                         ModelsEnrollmentPFXEnrollmentRequestSANs, ModelsEnrollmentRenewalRequest,
                                         ModelsRevokeCertificateRequest, ModelsRevokeCertificateRequestReason)
from keyfactor_v_1_client.types import Unset

from rg_helpers import (STRONG_PASSWORD, cert_pem, load_certs, make_ca, make_csr, public_key_der, sha1_thumbprint,
                        wait_retrieve)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("RENEWGATE_BIN", REPO / "target" / "debug" / "renewgate"))
ERROR_CODE_RE = re.compile(r"^0x[0-9A-F]{8}$")
VENAFI_FOLDER = "\\VED\\Policy\\Keyfactor Tests"
JobStatus = KeyfactorApiModelsCertificateStoresJobHistoryResponseStatus
JobResult = KeyfactorApiModelsCertificateStoresJobHistoryResponseResult
WAITING, IN_PROCESS, COMPLETED, ACKNOWLEDGED, COMPLETED_WILL_RETRY = 1, 2, 3, 4, 5
SUCCESS, WARNING, FAILURE = 2, 3, 4


# ---------------------------------------------------------------- clients and helpers

def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def kf_session(gw, user="KEYFACTOR\\admin", password=None):
    """A `requests` session as a classic script: Basic `DOMAIN\\user` credentials."""
    s = gw.session(token=False)
    s.headers["Authorization"] = basic(user, password or gw.admin_password)
    return s


def v1_client(gw):
    """The v1 SDK as reference §7 drives it: token = base64 of `DOMAIN\\user:password`,
    prefix Basic; httpx takes the CA bundle through `verify_ssl`."""
    token = base64.b64encode(f"KEYFACTOR\\admin:{gw.admin_password}".encode()).decode()
    return AuthenticatedClient(base_url=gw.url + "/KeyfactorAPI", token=token, prefix="Basic",
                               verify_ssl=gw.ca_bundle, timeout=30.0)


def unset(v):
    return isinstance(v, Unset)


def assert_fields_set(model, *fields):
    """Each named field of a parsed SDK model holds a value (neither UNSET nor None)."""
    empty = [f for f in fields if unset(getattr(model, f)) or getattr(model, f) is None]
    assert not empty, f"{type(model).__name__}: fields left UNSET/None by the SDK: {empty}; " \
                      f"additional_properties={model.additional_properties}"


def assert_no_miscased_keys(model):
    """No key reached the SDK in a casing it does not read (it would land in additional_properties)."""
    lower = [k for k in model.additional_properties if k[:1].islower()]
    assert not lower, f"{type(model).__name__}: camelCase keys the v1 SDK ignores: {lower}"


def json_of(r, status=200):
    assert r.status_code == status, f"{r.request.method} {r.url}: expected {status}, got {r.status_code}: {r.text[:800]}"
    ct = r.headers.get("Content-Type", "")
    assert ct.startswith("application/json"), f"content type {ct!r}"
    return r.json()


def assert_kf_error(r, status, message=None, code=None, contains=None):
    """Keyfactor's error shape: exactly `{"ErrorCode": "0x…", "Message": "…"}`."""
    body = json_of(r, status)
    assert set(body) == {"ErrorCode", "Message"}, body
    assert ERROR_CODE_RE.match(body["ErrorCode"]), body
    assert isinstance(body["Message"], str) and body["Message"], body
    if code is not None:
        assert body["ErrorCode"] == code, body
    if message is not None:
        assert body["Message"] == message, body
    if contains is not None:
        assert contains in body["Message"], body
    return body


def pfx_enroll(s, cn, template="WebServer", ca=None, metadata=None):
    """`POST /KeyfactorAPI/Enrollment/PFX` as the v1 SDK sends it; returns CertificateInformation."""
    body = {"Password": STRONG_PASSWORD, "Subject": f"CN={cn}", "IncludeChain": True, "Template": template,
            "Timestamp": "2024-01-02T03:04:05.Z", "SANs": {"dns": [cn]}}
    if ca:
        body["CertificateAuthority"] = ca
    if metadata:
        body["Metadata"] = metadata
    r = s.post("/KeyfactorAPI/Enrollment/PFX", json=body,
               headers={"x-keyfactor-api-version": "1", "x-certificateformat": "PFX",
                        "x-keyfactor-requested-with": "APIClient"})
    info = json_of(r)["CertificateInformation"]
    assert info["RequestDisposition"] == "ISSUED", info
    return info


def get_cert(s, cert_id):
    return json_of(s.get(f"/KeyfactorAPI/Certificates/{cert_id}", headers={"x-keyfactor-api-version": "1"}))


def leaf_of_cert(info):
    return x509.load_der_x509_certificate(base64.b64decode(info["ContentBytes"]))


def keyfactor_id_of(s, thumbprint):
    found = json_of(s.get("/KeyfactorAPI/Certificates", params={"pq.queryString": f'Thumbprint -eq "{thumbprint}"'},
                          headers={"x-keyfactor-api-version": "1"}))
    assert len(found) == 1, found
    return found[0]["Id"]


def classic_renew(s, body):
    return s.post("/CMSApi/CertEnroll/3/Renew", json=body,
                  headers={"x-keyfactor-requested-with": "APIClient", "Accept": "application/json"})


def job_history(s, **terms):
    q = " AND ".join(f'{k} -eq "{v}"' for k, v in terms.items())
    params = {"pq.returnLimit": 1000}
    if q:
        params["pq.queryString"] = q
    return json_of(s.get("/KeyfactorAPI/OrchestratorJobs/JobHistory", params=params,
                         headers={"x-keyfactor-api-version": "1"}))


def wait_for(pred, timeout, what, interval=0.25):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def ca_host(s):
    cas = json_of(s.get("/KeyfactorAPI/CertificateAuthority"))
    hosts = {c["HostName"] for c in cas}
    assert len(hosts) == 1, cas
    return hosts.pop()


def bundle_certs(gw):
    return load_certs(Path(gw.ca_bundle).read_bytes())


def add_ca(gw, name):
    """`renewgate ca add NAME`; returns the new CA certificate from the updated bundle."""
    before = {c.fingerprint(c.signature_hash_algorithm) for c in bundle_certs(gw)}
    gw.cli("ca", "add", name)
    new = [c for c in bundle_certs(gw) if c.fingerprint(c.signature_hash_algorithm) not in before]
    assert len(new) == 1, f"ca add {name} should add exactly one CA to the bundle, added {len(new)}"
    return new[0]


def store_add(gw, machine, path, store_type="pem-dir", alias=None, include_keys=False, password=None):
    args = ["store", "add", "--client-machine", machine, "--store-path", path, "--type", store_type]
    if alias:
        args += ["--alias", alias]
    if include_keys:
        args.append("--include-keys")
    if password is not None:
        args.append("--password-stdin")
    out = gw.cli(*args, input=(password + "\n") if password is not None else None).stdout
    guid = out.strip()
    assert re.fullmatch(r"\{?[0-9a-fA-F-]{36}\}?", guid), f"store add should print only a GUID, printed {out!r}"
    return guid


def agent_token(gw, machine):
    out = gw.cli("agent", "token", "create", "--client-machine", machine).stdout
    token = out.strip()
    assert token and "\n" not in token and " " not in token, f"agent token create should print only a token: {out!r}"
    return token


def agent_args(gw, machine, root, token, reload_command=None):
    args = [str(BIN), "agent", "run", "--gateway", gw.url, "--token", token, "--ca-bundle", gw.ca_bundle,
            "--client-machine", machine, "--store-root", str(root), "--poll-interval", "1"]
    if reload_command:
        args += ["--reload-command", reload_command]
    return args


def agent_once(gw, machine, root, token=None, reload_command=None):
    """`renewgate agent run --once`: processes what is due and exits."""
    token = token or agent_token(gw, machine)
    r = subprocess.run(agent_args(gw, machine, root, token, reload_command) + ["--once"], capture_output=True,
                       text=True, timeout=120, env={k: v for k, v in os.environ.items() if not k.startswith("RENEWGATE_")})
    assert r.returncode == 0, f"agent run --once failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture
def agents(tmp_path):
    """Starts background store agents: agents(gw, machine, root, reload_command=None). Each is
    killed (by its own process group) at teardown."""
    procs = []

    def start(gw, machine, root, reload_command=None, token=None):
        token = token or agent_token(gw, machine)
        log = open(tmp_path / f"agent-{len(procs)}.log", "ab")
        p = subprocess.Popen(agent_args(gw, machine, root, token, reload_command), stdout=log, stderr=log,
                             start_new_session=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("RENEWGATE_")})
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=20)


def machine_name(prefix="host"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}.example.net"


def unique_cn(prefix="kf"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}.example.com"


# ---------------------------------------------------------------- module fixtures

@pytest.fixture(scope="module")
def gw(gateway):
    gateway.cli("policy", "set", VENAFI_FOLDER)
    return gateway


@pytest.fixture(scope="module")
def s(gw):
    return kf_session(gw)


@pytest.fixture(scope="module")
def v1(gw):
    return v1_client(gw)


@pytest.fixture(scope="module")
def venafi(gw):
    return gw.session()


@pytest.fixture(scope="module")
def host(s):
    return ca_host(s)


@pytest.fixture(scope="module")
def csr_cert(gw, s, venafi):
    """A certificate enrolled through Venafi with a local CSR: the gateway holds no private key."""
    cn = unique_cn("csr")
    key, csr = make_csr(cn, dns=[cn], kind="rsa")
    r = venafi.post("/vedsdk/certificates/request", json={"PolicyDN": VENAFI_FOLDER, "PKCS10": csr, "ObjectName": cn})
    assert r.status_code == 200, r.text
    dn = r.json()["CertificateDN"]
    leaf = load_certs(base64.b64decode(wait_retrieve(venafi, dn).json()["CertificateData"]))[0]
    tp = sha1_thumbprint(leaf)
    return {"cn": cn, "key": key, "dn": dn, "leaf": leaf, "thumbprint": tp, "id": keyfactor_id_of(s, tp)}


# ================================================================ 1. keyfactor-v-1-client

def v1_pfx_enroll(v1, cn, host, metadata=None):
    body = ModelsEnrollmentPFXEnrollmentRequest(
        subject=f"CN={cn}", password=STRONG_PASSWORD, include_chain=True, template="WebServer",
        certificate_authority=f"{host}\\issuing",
        # A naive datetime without microseconds: the SDK sends "2024-01-02T03Z" (reference §0 item 8).
        timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5),
        sa_ns=ModelsEnrollmentPFXEnrollmentRequestSANs.from_dict({"dns": [cn, "www." + cn]}),
        metadata=ModelsEnrollmentPFXEnrollmentRequestMetadata.from_dict(metadata or {}))
    r = enrollment_post_pfx_enroll.sync_detailed(client=v1, json_body=body)
    assert r.status_code == 200, r.content[:800]
    assert r.parsed is not None
    return r


def test_v1_pfx_enrollment_parses_every_field(v1, host):
    cn = unique_cn("v1pfx")
    r = v1_pfx_enroll(v1, cn, host, metadata={"AppOwner": "ops team"})
    info = r.parsed.certificate_information
    assert not unset(info), f"CertificateInformation not parsed: {r.content[:500]}"
    assert_fields_set(info, "serial_number", "issuer_dn", "thumbprint", "keyfactor_id", "pkcs_12_blob", "password",
                      "keyfactor_request_id", "request_disposition", "disposition_message")
    assert_no_miscased_keys(info)
    assert_no_miscased_keys(r.parsed)
    assert info.request_disposition == "ISSUED"
    assert isinstance(info.keyfactor_id, int) and info.keyfactor_id > 0
    assert info.password == STRONG_PASSWORD
    key, leaf, chain = pkcs12.load_key_and_certificates(base64.b64decode(info.pkcs_12_blob), STRONG_PASSWORD.encode())
    assert key is not None and leaf is not None
    assert public_key_der(leaf) == key.public_key().public_bytes(serialization.Encoding.DER,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    assert sha1_thumbprint(leaf) == info.thumbprint
    assert format(leaf.serial_number, "X") == info.serial_number.lstrip("0")
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    sans = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {cn, "www." + cn}
    assert chain, "IncludeChain: the PFX carries the issuing chain"
    assert leaf.issuer == chain[0].subject
    assert not unset(r.parsed.metadata)
    assert r.parsed.metadata.additional_properties.get("AppOwner") == "ops team"


def test_v1_get_certificate_parses_every_field(v1, host):
    cn = unique_cn("v1get")
    info = v1_pfx_enroll(v1, cn, host, metadata={"Email-Contact": "a.b@example.com"}).parsed.certificate_information
    r = certificate_get_certificate.sync_detailed(info.keyfactor_id, client=v1, include_locations=True,
                                                  include_metadata=True)
    assert r.status_code == 200, r.content[:500]
    c = r.parsed
    everything = [f.name for f in type(c).__attrs_attrs__ if f.name != "additional_properties"]
    # Only the revocation fields may be absent on a certificate that was never revoked.
    assert_fields_set(c, *[f for f in everything if f not in ("revocation_eff_date", "revocation_reason")])
    assert_no_miscased_keys(c)
    assert c.id == info.keyfactor_id
    assert c.thumbprint == info.thumbprint
    assert c.serial_number == info.serial_number
    assert c.issuer_dn == info.issuer_dn
    assert c.issued_cn == cn
    assert c.cert_state == ModelsCertificateRetrievalResponseCertState.VALUE_1
    assert c.has_private_key is True
    assert c.template_name == "WebServer"
    assert c.certificate_authority_name == "issuing"
    assert c.not_before < c.not_after and c.not_after.tzinfo is not None
    assert c.metadata.additional_properties.get("Email-Contact") == "a.b@example.com"
    assert {e.value for e in c.subject_alt_name_elements} == {cn, "www." + cn}
    assert sha1_thumbprint(x509.load_der_x509_certificate(base64.b64decode(c.content_bytes))) == c.thumbprint


def test_v1_get_certificate_lists_extended_key_usages(v1, host):
    """The WebServer template issues serverAuth+clientAuth; `ExtendedKeyUsages` ([{Id, Oid,
    DisplayName}], reference §4.4) should list them rather than being empty."""
    info = v1_pfx_enroll(v1, unique_cn("v1eku"), host).parsed.certificate_information
    c = certificate_get_certificate.sync(info.keyfactor_id, client=v1)
    leaf = x509.load_der_x509_certificate(base64.b64decode(c.content_bytes))
    ekus = leaf.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    assert {o.dotted_string for o in ekus} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}
    assert {e.oid for e in c.extended_key_usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}, \
        f"ExtendedKeyUsages of certificate {c.id}: {[e.to_dict() for e in c.extended_key_usages]}"


def test_v1_renew_by_id_and_by_thumbprint(v1, host):
    cn = unique_cn("v1renew")
    first = v1_pfx_enroll(v1, cn, host).parsed.certificate_information
    first_key = pkcs12.load_key_and_certificates(base64.b64decode(first.pkcs_12_blob), STRONG_PASSWORD.encode())[0]

    by_id = enrollment_renew.sync_detailed(client=v1, json_body=ModelsEnrollmentRenewalRequest(
        certificate_id=first.keyfactor_id, template="WebServer", certificate_authority=f"{host}\\issuing",
        timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)))
    assert by_id.status_code == 200, by_id.content[:500]
    p = by_id.parsed
    assert_fields_set(p, "keyfactor_id", "keyfactor_request_id", "thumbprint", "serial_number", "issuer_dn",
                      "request_disposition", "disposition_message")
    assert_no_miscased_keys(p)
    assert p.request_disposition == "ISSUED"
    assert p.keyfactor_id > first.keyfactor_id
    assert p.thumbprint != first.thumbprint and p.serial_number != first.serial_number
    renewed = certificate_get_certificate.sync(p.keyfactor_id, client=v1)
    assert renewed.thumbprint == p.thumbprint and renewed.issued_cn == cn
    leaf = x509.load_der_x509_certificate(base64.b64decode(renewed.content_bytes))
    assert public_key_der(leaf) != first_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo), \
        "the gateway holds the key: a Keyfactor renewal gets a new key"

    # By thumbprint, written as a person would paste it: lower case with colons.
    pasted = ":".join(p.thumbprint[i:i + 2] for i in range(0, len(p.thumbprint), 2)).lower()
    by_tp = enrollment_renew.sync_detailed(client=v1, json_body=ModelsEnrollmentRenewalRequest(
        thumbprint=pasted, timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5)))
    assert by_tp.status_code == 200, by_tp.content[:500]
    assert_fields_set(by_tp.parsed, "keyfactor_id", "thumbprint", "request_disposition", "serial_number")
    assert by_tp.parsed.request_disposition == "ISSUED"
    assert by_tp.parsed.keyfactor_id > p.keyfactor_id

    # An older id renews the object it belongs to; the older certificates stay readable.
    by_old = enrollment_renew.sync(client=v1, json_body=ModelsEnrollmentRenewalRequest(thumbprint=first.thumbprint))
    assert by_old.request_disposition == "ISSUED" and by_old.keyfactor_id > by_tp.parsed.keyfactor_id
    old = certificate_get_certificate.sync(first.keyfactor_id, client=v1)
    assert old.thumbprint == first.thumbprint and old.id == first.keyfactor_id


def test_v1_download_pem_with_chain(v1, host):
    info = v1_pfx_enroll(v1, unique_cn("v1dl"), host).parsed.certificate_information
    r = certificate_download_certificate_async.sync_detailed(
        client=v1, json_body=ModelsCertificateDownloadRequest(cert_id=info.keyfactor_id, include_chain=True))
    assert r.status_code == 200, r.content[:500]
    assert_fields_set(r.parsed, "content")
    assert_no_miscased_keys(r.parsed)
    pem = base64.b64decode(r.parsed.content)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----"), "no x-certificateformat header: PEM (reference §0 item 7)"
    certs = load_certs(pem)
    assert sha1_thumbprint(certs[0]) == info.thumbprint
    assert len(certs) >= 2 and certs[0].issuer == certs[1].subject
    by_tp = certificate_download_certificate_async.sync(
        client=v1, json_body=ModelsCertificateDownloadRequest(thumbprint=info.thumbprint.lower()))
    assert sha1_thumbprint(load_certs(base64.b64decode(by_tp.content))[0]) == info.thumbprint


def test_v1_recover_pfx(v1, host):
    cn = unique_cn("v1rec")
    info = v1_pfx_enroll(v1, cn, host).parsed.certificate_information
    r = certificate_recover_certificate_async.sync_detailed(client=v1, json_body=ModelsCertificateRecoveryRequest(
        password=STRONG_PASSWORD, cert_id=info.keyfactor_id, include_chain=True))
    assert r.status_code == 200, r.content[:500]
    assert_fields_set(r.parsed, "pfx", "file_name")
    assert_no_miscased_keys(r.parsed)
    assert r.parsed.file_name.startswith(cn)
    key, leaf, _ = pkcs12.load_key_and_certificates(base64.b64decode(r.parsed.pfx), STRONG_PASSWORD.encode())
    assert key is not None and sha1_thumbprint(leaf) == info.thumbprint
    assert public_key_der(leaf) == key.public_key().public_bytes(serialization.Encoding.DER,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    by_tp = certificate_recover_certificate_async.sync(client=v1, json_body=ModelsCertificateRecoveryRequest(
        password=STRONG_PASSWORD, thumbprint=info.thumbprint))
    assert sha1_thumbprint(pkcs12.load_key_and_certificates(base64.b64decode(by_tp.pfx),
                                                            STRONG_PASSWORD.encode())[1]) == info.thumbprint


def test_v1_csr_enrollment_and_available_renewal(v1, host):
    """`Enrollment/CSR` answers `KeyfactorID` (capital ID, unlike PFX's `KeyfactorId`), which the v1
    model reads; `Certificates[0]` is the leaf PEM."""
    cn = unique_cn("v1csr")
    key, csr = make_csr(cn, dns=[cn])
    r = enrollment_post_csr_enroll.sync_detailed(client=v1, json_body=ModelsEnrollmentCSREnrollmentRequest(
        csr=csr, template="WebServer", certificate_authority=f"{host}\\issuing", include_chain=True,
        timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)))
    assert r.status_code == 200, r.content[:500]
    info = r.parsed.certificate_information
    assert_fields_set(info, "serial_number", "issuer_dn", "thumbprint", "keyfactor_id", "certificates",
                      "keyfactor_request_id", "request_disposition", "disposition_message")
    assert_no_miscased_keys(info)
    assert info.request_disposition == "ISSUED"
    certs = load_certs(info.certificates[0])
    assert sha1_thumbprint(certs[0]) == info.thumbprint
    assert public_key_der(certs[0]) == key.public_key().public_bytes(serialization.Encoding.DER,
                                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    assert len(info.certificates) >= 2, "IncludeChain: the chain follows the leaf"
    a = enrollment_available_renewal_thumbprint.sync_detailed(info.thumbprint, client=v1)
    assert a.status_code == 200, a.content[:300]
    assert_fields_set(a.parsed, "available_renewal_type", "message")
    assert int(a.parsed.available_renewal_type) == 1, "no key held: renewal re-signs the public key"


def test_v1_store_add_and_job_history(gw, v1, host, tmp_path):
    machine = machine_name("v1")
    store = store_add(gw, machine, "/etc/ssl/web")
    info = v1_pfx_enroll(v1, unique_cn("v1store"), host).parsed.certificate_information
    r = certificate_store_add_certificate.sync_detailed(client=v1, json_body=KeyfactorApiModelsCertificateStoresAddCertificateRequest(
        certificate_id=info.keyfactor_id,
        certificate_stores=[ModelsCertificateStoreEntry(certificate_store_id=store, alias="web", overwrite=True)],
        schedule=KeyfactorCommonSchedulingKeyfactorSchedule(immediate=True)))
    assert r.status_code == 200, r.content[:500]
    assert isinstance(r.parsed, list) and len(r.parsed) == 1, r.parsed
    job = r.parsed[0]
    assert re.fullmatch(r"\{?[0-9a-fA-F-]{36}\}?", job), job

    root = tmp_path / "stores"
    agent_once(gw, machine, root)
    crt = root / "etc" / "ssl" / "web" / "web.crt"
    assert crt.exists(), f"the agent did not install {crt}"
    assert sha1_thumbprint(load_certs(crt.read_bytes())[0]) == info.thumbprint

    h = orchestrator_job_get_job_history.sync_detailed(client=v1, pq_query_string=f'JobId -eq "{job}"',
                                                       pq_return_limit=50)
    assert h.status_code == 200, h.content[:500]
    assert len(h.parsed) == 1, h.content[:800]
    row = h.parsed[0]
    assert_fields_set(row, "job_history_id", "agent_machine", "job_id", "schedule", "job_type", "operation_start",
                      "operation_end", "message", "result", "status", "store_path", "client_machine")
    assert_no_miscased_keys(row)
    assert isinstance(row.status, JobStatus) and row.status == JobStatus.VALUE_3, row.status
    assert isinstance(row.result, JobResult) and row.result == JobResult.VALUE_2, row.result
    assert row.job_id.strip("{}").lower() == job.strip("{}").lower()
    assert row.job_type == "Management"
    assert row.client_machine == machine and row.store_path == "/etc/ssl/web"
    assert row.schedule.immediate is True
    assert row.operation_start <= row.operation_end


# ================================================================ 2. classic Renew: the seed's example

SEED_MACHINE = "192.168.41.171"
SEED_PATH = "/home/pi/cherry/cherrystore"


def test_classic_renew_seed_example(gateway_factory, agents, tmp_path):
    """The seed: `{"Lookup": {"Type": "CMSID", "CMSID": 7}, "CertStores": ["<Guid>"], "Template": …,
    "CAConfiguration": "<host>\\\\<CA>", "Metadata": {"Email-Contact": "a.b@example.com"}}` on a fresh
    gateway, with a store agent running beside it."""
    gw = gateway_factory()
    s = kf_session(gw)
    ids = {}
    for n in range(1, 8):
        cn = f"cherry{n}.example.com"
        ids[pfx_enroll(s, cn)["KeyfactorId"]] = cn
        if 7 in ids:
            break
    assert 7 in ids, f"seven enrollments on a fresh gateway should reach certificate id 7; ids: {sorted(ids)}"
    cn7 = ids[7]
    old7 = get_cert(s, 7)

    new_ca = add_ca(gw, "jdk-CA1")
    host = ca_host(s)
    store = store_add(gw, SEED_MACHINE, SEED_PATH)
    root = tmp_path / "agent-root"
    marker = tmp_path / "reloaded"
    agents(gw, SEED_MACHINE, root, reload_command=f'echo "$RENEWGATE_JOB_ID $RENEWGATE_ALIAS" >> {marker}')

    r = classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": 7}, "CertStores": [store], "Template": "WebServer",
                          "CAConfiguration": f"{host}\\jdk-CA1", "Metadata": {"Email-Contact": "a.b@example.com"}})
    body = json_of(r)
    assert set(body) == {"RenewedCertStores", "Thumbprint", "CMSRequestId", "RequestDisposition",
                         "DispositionMessage"}, body
    assert body["RenewedCertStores"] == [f"{SEED_MACHINE}-{SEED_PATH}"]
    assert body["CMSRequestId"] == 0
    assert body["RequestDisposition"] == "Issued"
    assert body["DispositionMessage"] == ("The certificate renewal has been completed successfully. Agent jobs to "
                                          "install the new certificate have been created.")
    tp = body["Thumbprint"]
    assert re.fullmatch(r"[0-9A-F]{40}", tp), tp

    # The new certificate: a new id in the same object, from the CA named in CAConfiguration.
    new_id = keyfactor_id_of(s, tp)
    assert new_id > 7
    new = get_cert(s, new_id)
    assert new["IssuedCN"] == cn7
    assert new["Metadata"].get("Email-Contact") == "a.b@example.com"
    assert new["Metadata"].get("CertificateDN") == old7["Metadata"].get("CertificateDN")
    assert new["CertificateAuthorityName"] == "jdk-CA1"
    leaf = leaf_of_cert(new)
    assert leaf.issuer == new_ca.subject
    leaf.verify_directly_issued_by(new_ca)
    assert leaf_of_cert(old7).issuer != new_ca.subject, "the CAConfiguration override changed the issuer"
    # CMSID 7 is still the older certificate.
    again7 = get_cert(s, 7)
    assert again7["Thumbprint"] == old7["Thumbprint"] and again7["Id"] == 7

    # The agent installs it into its PEM store and runs the deploy hook.
    crt = root / SEED_PATH.lstrip("/") / f"{cn7}.crt"
    wait_for(lambda: crt.exists() and sha1_thumbprint(load_certs(crt.read_bytes())[0]) == tp, 30,
             f"the agent to install {crt}")
    chain = load_certs((root / SEED_PATH.lstrip("/") / f"{cn7}.chain.pem").read_bytes())
    assert sha1_thumbprint(chain[0]) == tp and chain[1].subject == new_ca.subject
    assert not (root / SEED_PATH.lstrip("/") / f"{cn7}.key").exists(), "the store does not receive keys"
    wait_for(lambda: marker.exists() and marker.read_text().strip(), 30, "the reload command")
    rows = wait_for(lambda: [h for h in job_history(s, ClientMachine=SEED_MACHINE) if h["Status"] == COMPLETED], 30,
                    "the job's history row")
    assert len(rows) == 1 and rows[0]["Result"] == SUCCESS, rows
    assert marker.read_text().split() == [rows[0]["JobId"], cn7]


def imported_cert(gw, tmp_path, serial):
    """A certificate of a foreign CA with a chosen serial, imported with `renewgate cert import`
    (no key: renewals re-sign its public key). Returns (Keyfactor id, leaf)."""
    ca_key, ca_cert = make_ca("Imported Keyfactor Test CA " + uuid.uuid4().hex[:6])
    cn = unique_cn("imported")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    f = tmp_path / f"import-{serial:x}.pem"
    f.write_text(cert_pem(leaf) + cert_pem(ca_cert))
    out = gw.cli("cert", "import", "--policy", VENAFI_FOLDER, str(f)).stdout
    return int(out.split("\t")[1]), leaf


def test_classic_renew_lookup_by_thumbprint_and_serial(gw, s, tmp_path):
    cn = unique_cn("classic")
    first = pfx_enroll(s, cn)
    pasted = " ".join(first["Thumbprint"][i:i + 2] for i in range(0, 40, 2)).lower()
    b1 = json_of(classic_renew(s, {"Lookup": {"Type": "Thumbprint", "Thumbprint": pasted}}))
    assert b1["RequestDisposition"] == "Issued" and b1["RenewedCertStores"] == [] and b1["CMSRequestId"] == 0
    assert b1["Thumbprint"] != first["Thumbprint"]
    assert get_cert(s, keyfactor_id_of(s, b1["Thumbprint"]))["IssuedCN"] == cn

    # Serial + IssuerDN (serial 7A…: no leading zero nibble).
    cert_id, leaf = imported_cert(gw, tmp_path, 0x7A1B2C3D4E5F60718293A4B5C6D7E8F9)
    c = get_cert(s, cert_id)
    assert c["SerialNumber"].lstrip("0") == "7A1B2C3D4E5F60718293A4B5C6D7E8F9"
    b2 = json_of(classic_renew(s, {"Lookup": {"Type": "Serial", "SerialNumber": c["SerialNumber"].lower(),
                                              "IssuerDN": c["IssuerDN"]}}))
    assert b2["RequestDisposition"] == "Issued"
    renewed = get_cert(s, keyfactor_id_of(s, b2["Thumbprint"]))
    assert renewed["IssuedCN"] == c["IssuedCN"]
    assert public_key_der(leaf_of_cert(renewed)) == public_key_der(leaf)


def test_lookup_by_serial_with_leading_zero(gw, s, tmp_path):
    """A serial whose hex starts with a zero nibble (one certificate in sixteen of random serials),
    looked up exactly as `GET Certificates/{id}` spells it."""
    cert_id, leaf = imported_cert(gw, tmp_path, 0x0A1B2C3D4E5F60718293A4B5C6D7E8F9)
    c = get_cert(s, cert_id)
    assert c["SerialNumber"].lstrip("0") == "A1B2C3D4E5F60718293A4B5C6D7E8F9"
    dl = s.post("/KeyfactorAPI/Certificates/Download", json={"SerialNumber": c["SerialNumber"], "IssuerDN": c["IssuerDN"]},
                headers={"x-keyfactor-api-version": "1"})
    assert load_certs(base64.b64decode(json_of(dl)["Content"]))[0] == leaf
    body = json_of(classic_renew(s, {"Lookup": {"Type": "Serial", "SerialNumber": c["SerialNumber"],
                                                "IssuerDN": c["IssuerDN"]}}))
    assert body["RequestDisposition"] == "Issued"


def test_classic_renew_template_override(gw, s):
    """A template with its own validity and EKUs shapes the renewed certificate."""
    gw.cli("template", "add", "ClientOnly", "--policy", "\\VED\\Policy", "--validity", "10d", "--eku", "clientAuth")
    info = pfx_enroll(s, unique_cn("tpl"))
    body = json_of(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]}, "Template": "ClientOnly"}))
    new = get_cert(s, keyfactor_id_of(s, body["Thumbprint"]))
    assert new["TemplateName"] == "ClientOnly"
    leaf = leaf_of_cert(new)
    ekus = list(leaf.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value)
    assert ekus == [ExtendedKeyUsageOID.CLIENT_AUTH]
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() / 86400
    assert 9.9 <= days <= 10.1, days


def test_classic_renew_pending_then_collected(gateway_factory, agents, tmp_path):
    """An API-only gateway (no issuance workers) answers Pending with the request's id; the renewal
    is collected later (`GET /api/v1/jobs/{id}`), and the store job is created on issuance."""
    gw = gateway_factory()
    s = kf_session(gw)
    cn = unique_cn("pending")
    info = pfx_enroll(s, cn)
    machine = machine_name("pend")
    store = store_add(gw, machine, "/srv/tls")
    gw.stop()
    gw.extra_env.update({"RENEWGATE_QUEUE__WORKERS": "0", "RENEWGATE_KEYFACTOR__CLASSIC_WAIT": "1s"})
    gw.start()
    s = kf_session(gw)
    body = json_of(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]}, "CertStores": [store]}))
    assert body["RequestDisposition"] == "Pending", body
    assert isinstance(body["CMSRequestId"], int) and body["CMSRequestId"] > 0, body
    assert body["RenewedCertStores"] == [f"{machine}-/srv/tls"]
    native = gw.session(scope="certificate")
    st = native.get(f"/api/v1/jobs/{body['CMSRequestId']}")
    assert st.status_code == 200 and st.json()["state"] == "queued", st.text
    scheduled = json_of(s.get("/KeyfactorAPI/OrchestratorJobs/ScheduledJobs"))
    assert [j for j in scheduled if j["ClientMachine"] == machine] == [], "store jobs wait for the issuance"

    gw.stop()
    gw.extra_env["RENEWGATE_QUEUE__WORKERS"] = "2"
    gw.start()
    native = gw.session(scope="certificate")
    done = wait_for(lambda: (lambda j: j if j["state"] == "done" else None)(
        native.get(f"/api/v1/jobs/{body['CMSRequestId']}").json()), 30, "the pending renewal to be issued")
    assert done["certificate_id"] > info["KeyfactorId"] and re.fullmatch(r"[0-9A-F]{40}", done["thumbprint"])
    root = tmp_path / "root"
    agents(gw, machine, root)
    crt = root / "srv" / "tls" / f"{cn}.crt"
    wait_for(lambda: crt.exists() and sha1_thumbprint(load_certs(crt.read_bytes())[0]) == done["thumbprint"], 30,
             f"the store job scheduled on issuance to install {crt}")


# ================================================================ 3. a failing store

def test_failing_store_retries_and_is_acknowledged(gw, s, agents, tmp_path):
    machine = machine_name("fail")
    root = tmp_path / "root"
    root.mkdir()
    (root / "blocked").write_text("a regular file where the store's parent directory should be\n")
    good = store_add(gw, machine, "/good/tls")
    bad = store_add(gw, machine, "/blocked/tls")
    info = pfx_enroll(s, unique_cn("twostores"))
    agents(gw, machine, root)

    body = json_of(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]}, "CertStores": [good, bad]}))
    assert sorted(body["RenewedCertStores"]) == sorted([f"{machine}-/good/tls", f"{machine}-/blocked/tls"])
    tp = body["Thumbprint"]
    cn = get_cert(s, info["KeyfactorId"])["IssuedCN"]

    def rows(path):
        return [h for h in job_history(s, ClientMachine=machine) if h["StorePath"] == path]

    failed = wait_for(lambda: [h for h in rows("/blocked/tls") if h["Result"] == FAILURE], 30,
                      "a failed run of the blocked store")
    assert failed[0]["Status"] == COMPLETED_WILL_RETRY, failed
    assert "OperationEnd" in failed[0] and failed[0]["Message"], failed
    ok = wait_for(lambda: [h for h in rows("/good/tls") if h["Status"] == COMPLETED], 30, "the good store's run")
    assert [h["Result"] for h in ok] == [SUCCESS], ok
    good_crt = root / "good" / "tls" / f"{cn}.crt"
    assert sha1_thumbprint(load_certs(good_crt.read_bytes())[0]) == tp, "the other store is installed"

    # Acknowledge the failed run.
    audit = failed[0]["JobHistoryId"]
    r = s.post("/KeyfactorAPI/OrchestratorJobs/Acknowledge", json={"JobAuditIds": [audit]},
               headers={"x-keyfactor-api-version": "1"})
    assert r.status_code == 204, r.text
    acked = [h for h in job_history(s, ClientMachine=machine) if h["JobHistoryId"] == audit]
    assert len(acked) == 1 and acked[0]["Status"] == ACKNOWLEDGED and acked[0]["Result"] == FAILURE, acked
    # Only Warning/Failure runs are acknowledged (reference §4.5): a successful run stays Completed.
    r = s.post("/KeyfactorAPI/OrchestratorJobs/Acknowledge", json={"JobAuditIds": [ok[0]["JobHistoryId"]]})
    assert r.status_code == 204, r.text
    assert [h["Status"] for h in rows("/good/tls")] == [COMPLETED]

    # Remove the fault: the job is retried and succeeds.
    (root / "blocked").unlink()
    (root / "blocked").mkdir()
    done = wait_for(lambda: [h for h in rows("/blocked/tls") if h["Status"] == COMPLETED and h["Result"] == SUCCESS],
                    45, "the blocked store's job to succeed after the fault is removed")
    assert len(done) == 1
    assert len({h["JobId"] for h in rows("/blocked/tls")}) == 1, "every run belongs to the same job"
    bad_crt = root / "blocked" / "tls" / f"{cn}.crt"
    assert sha1_thumbprint(load_certs(bad_crt.read_bytes())[0]) == tp
    assert len([h for h in rows("/good/tls")]) == 1, "the good store ran once"


# ================================================================ 4. camelCase (v11 style)

def test_camelcase_renew_and_get(gw, s, v1, host):
    cn = unique_cn("camel")
    info = pfx_enroll(s, cn, metadata={"Email-Contact": "a.b@example.com", "appOwner": "ops"})
    # v11 `post_enrollment_renew`: camelCase body, ?collectionId=0, no x-keyfactor-api-version.
    r = s.post("/KeyfactorAPI/Enrollment/Renew?collectionId=0", headers={"X-Keyfactor-Requested-With": "APIClient"},
               json={"certificateId": info["KeyfactorId"], "certificateAuthority": f"{host}\\issuing",
                     "template": "WebServer", "timestamp": "2024-01-02T03:04:05Z"})
    body = json_of(r)
    for k in ("keyfactorId", "keyfactorRequestId", "thumbprint", "serialNumber", "issuerDN", "requestDisposition",
              "dispositionMessage"):
        assert k in body, f"{k} missing from the camelCase answer {body}"
    assert not [k for k in body if k[:1].isupper()], f"PascalCase keys in a camelCase answer: {body}"
    assert body["requestDisposition"] == "ISSUED" and body["keyfactorId"] > info["KeyfactorId"]

    # v11 `get_certificates_id`: no version header, collectionId=0.
    q = "includeLocations=true&includeMetadata=true&collectionId=0&verbose=0"
    c = json_of(s.get(f"/KeyfactorAPI/Certificates/{info['KeyfactorId']}?{q}",
                      headers={"X-Keyfactor-Requested-With": "APIClient"}))
    for k in ("id", "thumbprint", "issuerDN", "issuedDN", "issuedCN", "crlDistributionPoints", "sslLocations",
              "caRowIndex", "caRecordId", "notBefore", "notAfter", "certState", "metadata", "detailedKeyUsage",
              "subjectAltNameElements", "locationsCount", "hasPrivateKey", "contentBytes"):
        assert k in c, f"{k} missing from the camelCase certificate {sorted(c)}"
    assert not [k for k in c if k[:1].isupper()], f"PascalCase keys in a camelCase answer: {sorted(c)}"
    assert c["thumbprint"] == info["Thumbprint"]
    assert c["metadata"]["Email-Contact"] == "a.b@example.com" and c["metadata"]["appOwner"] == "ops", \
        "metadata keys are data: never re-cased"
    assert "hexCode" in c["detailedKeyUsage"] and "digitalSignature" in c["detailedKeyUsage"]
    assert {"id", "value", "type", "valueHash"} <= set(c["subjectAltNameElements"][0])

    # Beside it, the v1 SDK (x-keyfactor-api-version: 1) on the same certificate gets PascalCase.
    p = certificate_get_certificate.sync_detailed(info["KeyfactorId"], client=v1, collection_id=0)
    raw = json.loads(p.content)
    assert "IssuerDN" in raw and "CRLDistributionPoints" in raw and "SSLLocations" in raw and "issuerDN" not in raw
    assert p.parsed.thumbprint == info["Thumbprint"]
    assert p.parsed.metadata.additional_properties["appOwner"] == "ops"
    # And a PascalCase body gets PascalCase back even without the version header.
    r = s.post("/KeyfactorAPI/Enrollment/Renew?collectionId=0", json={"CertificateId": body["keyfactorId"]})
    assert "KeyfactorId" in json_of(r) and "keyfactorId" not in r.json()


# ================================================================ 5. errors

def test_classic_unknown_cmsid_is_404(s):
    assert_kf_error(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": 987654321}}), 404)


def test_classic_unknown_store_is_400_and_renews_nothing(s):
    info = pfx_enroll(s, unique_cn("nostore"))
    bogus = str(uuid.uuid4())
    assert_kf_error(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]}, "CertStores": [bogus]}),
                    400, contains=bogus)
    found = json_of(s.get("/KeyfactorAPI/Certificates", params={"pq.queryString": f'IssuedCN -eq "{get_cert(s, info["KeyfactorId"])["IssuedCN"]}"'}))
    assert [c["Id"] for c in found] == [info["KeyfactorId"]], "a refused renewal issues nothing"


def test_unknown_template_and_ca_are_400(s, host):
    info = pfx_enroll(s, unique_cn("notpl"))
    assert_kf_error(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]}, "Template": "NoSuchTemplate"}),
                    400, contains="NoSuchTemplate")
    assert_kf_error(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]},
                                      "CAConfiguration": f"{host}\\NoSuchCA"}), 400, contains="NoSuchCA")
    assert_kf_error(s.post("/KeyfactorAPI/Enrollment/Renew", json={"CertificateId": info["KeyfactorId"],
                                                                   "Template": "NoSuchTemplate"}), 400)
    assert_kf_error(s.post("/KeyfactorAPI/Enrollment/PFX", headers={"x-certificateformat": "PFX"},
                           json={"Password": STRONG_PASSWORD, "Subject": "CN=x.example.com", "Template": "NoSuchTemplate"}),
                    400, contains="NoSuchTemplate")


def test_auth_missing_wrong_and_forms(gw):
    url = gw.url + "/KeyfactorAPI/Status/Endpoints"
    r = requests.get(url, verify=gw.ca_bundle, timeout=30)
    assert_kf_error(r, 401)
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic"), r.headers
    r = requests.get(url, verify=gw.ca_bundle, timeout=30, headers={"Authorization": basic("KEYFACTOR\\admin", "wrong")})
    assert_kf_error(r, 401)
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic")
    r = requests.post(gw.url + "/CMSApi/CertEnroll/3/Renew", verify=gw.ca_bundle, timeout=30,
                      json={"Lookup": {"Type": "CMSID", "CMSID": 1}})
    assert_kf_error(r, 401)
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic")
    for user in ("KEYFACTOR\\admin", "admin@keyfactor.example", "admin"):
        r = requests.get(url, verify=gw.ca_bundle, timeout=30, headers={"Authorization": basic(user, gw.admin_password)})
        assert r.status_code == 200, (user, r.text)
    r = requests.get(url, verify=gw.ca_bundle, timeout=30, headers={"Authorization": "Bearer " + gw.token("certificate")})
    assert r.status_code == 200, r.text


def test_recover_without_private_key(s, csr_cert):
    r = s.post("/KeyfactorAPI/Certificates/Recover", json={"Password": STRONG_PASSWORD, "CertID": csr_cert["id"]},
               headers={"x-keyfactor-api-version": "1"})
    assert_kf_error(r, 400, code="0xA0110002", message="No private key could be found for the given certificate.")


def test_renew_csr_certificate_resigns_its_public_key(s, venafi, csr_cert):
    """Keyfactor renewal of an object without a gateway-held key re-signs its public key, as a new
    version of the same object (Venafi sees it by the DN)."""
    avail = json_of(s.get(f"/KeyfactorAPI/Enrollment/AvailableRenewal/Id/{csr_cert['id']}"))
    assert avail["AvailableRenewalType"] == 1, avail
    body = json_of(s.post("/KeyfactorAPI/Enrollment/Renew", json={"CertificateId": csr_cert["id"]},
                          headers={"x-keyfactor-api-version": "1"}))
    assert body["RequestDisposition"] == "ISSUED", body
    new = get_cert(s, body["KeyfactorId"])
    assert new["HasPrivateKey"] is False
    new_leaf = leaf_of_cert(new)
    assert public_key_der(new_leaf) == public_key_der(csr_cert["leaf"]), "same public key, re-signed"
    assert new_leaf.serial_number != csr_cert["leaf"].serial_number
    assert new["Metadata"]["CertificateDN"] == csr_cert["dn"]
    r = wait_retrieve(venafi, csr_cert["dn"])
    venafi_leaf = load_certs(base64.b64decode(r.json()["CertificateData"]))[0]
    assert sha1_thumbprint(venafi_leaf) == body["Thumbprint"], "Venafi Retrieve by the DN returns the new version"


# ================================================================ 6. other endpoints

def test_templates_and_cas(gw, s, v1):
    gw.cli("template", "add", "UserServer", "--policy", "\\VED\\Policy\\Users", "--validity", "30d",
           "--eku", "serverAuth,clientAuth")
    r = template_get_templates.sync_detailed(client=v1)
    assert r.status_code == 200, r.content[:500]
    by_name = {t.common_name: t for t in r.parsed}
    assert {"WebServer", "UserServer"} <= set(by_name), list(by_name)
    for t in r.parsed:
        assert_fields_set(t, "id", "common_name", "template_name", "key_size", "key_type", "allowed_enrollment_types")
    assert {e.oid for e in by_name["UserServer"].extended_key_usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}

    add_ca(gw, "Second-CA")
    r = certificate_authority_get_cas.sync_detailed(client=v1)
    assert r.status_code == 200, r.content[:500]
    names = {c.logical_name: c for c in r.parsed}
    assert {"issuing", "Second-CA"} <= set(names), list(names)
    for c in r.parsed:
        assert_fields_set(c, "id", "logical_name", "host_name")
    assert names["Second-CA"].host_name == names["issuing"].host_name
    info = pfx_enroll(s, unique_cn("second"), ca=f"{names['Second-CA'].host_name}\\Second-CA")
    assert "Second-CA" in info["IssuerDN"], info["IssuerDN"]


def test_status_endpoints(v1):
    r = status_get_endpoints.sync_detailed(client=v1)
    assert r.status_code == 200
    assert isinstance(r.parsed, list) and r.parsed and all(isinstance(e, str) for e in r.parsed)
    assert "POST /Enrollment/Renew" in r.parsed and "GET /Status/Endpoints" in r.parsed


def test_store_create_list_get_and_inventory(gw, s, tmp_path):
    machine = machine_name("api")
    r = s.post("/KeyfactorAPI/CertificateStores", headers={"x-keyfactor-api-version": "1"},
               json={"ClientMachine": machine, "Storepath": "/opt/app/tls", "CertStoreType": 1,
                     "Properties": json.dumps({"alias": "web", "includeKeys": True})})
    st = json_of(r)
    guid = st["Id"]
    assert st["ClientMachine"] == machine and st["Storepath"] == "/opt/app/tls" and st["CertStoreType"] == 1
    assert isinstance(st["Properties"], str), "Properties is a string holding JSON (reference §4.5)"
    props = json.loads(st["Properties"])
    assert props.get("alias") == "web" and props.get("includeKeys") is True, props
    listed = json_of(s.get("/KeyfactorAPI/CertificateStores"))
    assert guid in [x["Id"] for x in listed]
    got = json_of(s.get(f"/KeyfactorAPI/CertificateStores/{guid}"))
    assert got["Id"] == guid and got["Storepath"] == "/opt/app/tls"
    assert_kf_error(s.get(f"/KeyfactorAPI/CertificateStores/{uuid.uuid4()}"), 404)

    info = pfx_enroll(s, unique_cn("inv"))
    jobs = json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": info["KeyfactorId"], "CertificateStores": [{"CertificateStoreId": guid, "Overwrite": True}],
        "Schedule": {"Immediate": True}}))
    assert len(jobs) == 1
    assert json_of(s.get(f"/KeyfactorAPI/CertificateStores/{guid}/Inventory")) == [], "nothing installed yet"
    root = tmp_path / "root"
    agent_once(gw, machine, root)
    d = root / "opt" / "app" / "tls"
    leaf = load_certs((d / "web.crt").read_bytes())[0]
    assert sha1_thumbprint(leaf) == info["Thumbprint"]
    key_file = d / "web.key"
    assert key_file.exists(), "a store with includeKeys gets the key the gateway holds"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo) == public_key_der(leaf)

    inv = json_of(s.get(f"/KeyfactorAPI/CertificateStores/{guid}/Inventory"))
    assert len(inv) == 1 and inv[0]["Name"] == "web", inv
    assert [c["Thumbprint"] for c in inv[0]["Certificates"]] == [info["Thumbprint"]]
    cert = get_cert(s, info["KeyfactorId"])
    assert [(loc["CertStoreId"], loc["StorePath"]) for loc in cert["Locations"]] == [(guid, "/opt/app/tls")]


def test_store_inventory_parses_in_v1_client(gw, s, v1, tmp_path):
    """`certificate_store_get_certificate_store_inventory` of the v1 SDK on a store holding one
    certificate: the SDK models `Certificates[].Metadata` values as objects."""
    machine = machine_name("inv1")
    guid = store_add(gw, machine, "/v1/inventory", alias="site")
    info = pfx_enroll(s, unique_cn("inv1"))
    json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": info["KeyfactorId"], "CertificateStores": [{"CertificateStoreId": guid}],
        "Schedule": {"Immediate": True}}))
    agent_once(gw, machine, tmp_path / "root")
    r = certificate_store_get_certificate_store_inventory.sync_detailed(guid, client=v1)
    assert r.status_code == 200, r.content[:500]
    assert len(r.parsed) == 1 and r.parsed[0].name == "site"
    assert [c.thumbprint for c in r.parsed[0].certificates] == [info["Thumbprint"]]


def test_inventory_names_the_alias_the_agent_used(gw, s, tmp_path):
    """A store without an alias: the agent installs `<CN>.crt` (the alias defaults to the CN), so
    the inventory entry's `Name` and the certificate's `Locations[].Alias` should say the CN."""
    machine = machine_name("cn")
    guid = store_add(gw, machine, "/cn/alias")
    cn = unique_cn("alias")
    info = pfx_enroll(s, cn)
    json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": info["KeyfactorId"], "CertificateStores": [{"CertificateStoreId": guid}],
        "Schedule": {"Immediate": True}}))
    root = tmp_path / "root"
    agent_once(gw, machine, root)
    assert (root / "cn" / "alias" / f"{cn}.crt").exists()
    inv = json_of(s.get(f"/KeyfactorAPI/CertificateStores/{guid}/Inventory"))
    locs = get_cert(s, info["KeyfactorId"])["Locations"]
    assert [e["Name"] for e in inv] == [cn] and [loc["Alias"] for loc in locs] == [cn], \
        f"inventory names {[e['Name'] for e in inv]}, location aliases {[loc['Alias'] for loc in locs]}; installed as {cn}.crt"


def test_pfx_deploy_and_replace(gw, s, v1, host, tmp_path):
    machine = machine_name("deploy")
    store = store_add(gw, machine, "/deploy/tls", alias="app")
    first = v1_pfx_enroll(v1, unique_cn("deploy"), host).parsed.certificate_information
    bogus = str(uuid.uuid4())
    r = enrollment_install_pfx_to_cert_store.sync_detailed(
        client=v1, json_body=KeyfactorApiModelsEnrollmentEnrollmentManagementRequest(
            password=STRONG_PASSWORD, store_ids=[store, bogus], certificate_id=first.keyfactor_id))
    assert r.status_code == 200, r.content[:500]
    assert_fields_set(r.parsed, "successful_stores", "failed_stores")
    assert [g.strip("{}").lower() for g in r.parsed.successful_stores] == [store.strip("{}").lower()]
    assert r.parsed.failed_stores == [bogus]
    scheduled = json_of(s.get("/KeyfactorAPI/OrchestratorJobs/ScheduledJobs"))
    assert [j["Target"] for j in scheduled if j["ClientMachine"] == machine] == ["/deploy/tls"]
    root = tmp_path / "root"
    agent_once(gw, machine, root)
    crt = root / "deploy" / "tls" / "app.crt"
    assert sha1_thumbprint(load_certs(crt.read_bytes())[0]) == first.thumbprint
    assert [(h["Status"], h["Result"]) for h in job_history(s, ClientMachine=machine)] == [(COMPLETED, SUCCESS)]

    # Replace is how a caller moves stores to a new certificate when renewals do not (the
    # folder's push_on_renew=false; by default the renewal itself reaches these stores).
    from rg_helpers import db_scalar
    folder = db_scalar(gw, f"SELECT o.policy_dn FROM cert_objects o JOIN certificates c ON c.object_id = o.id "
                           f"WHERE c.id = {int(first.keyfactor_id)}")
    gw.cli("policy", "set", folder, "push_on_renew=false")
    try:
        renewed = enrollment_renew.sync(client=v1, json_body=ModelsEnrollmentRenewalRequest(certificate_id=first.keyfactor_id))
    finally:
        gw.cli("policy", "set", folder, "--unset", "push_on_renew")
    assert renewed.request_disposition == "ISSUED"
    # Replace puts the new certificate wherever the old one still is, under the same alias.
    r = enrollment_add_to_existing_cert_stores.sync_detailed(
        client=v1, json_body=ModelsEnrollmentExistingEnrollmentManagementRequest(
            existing_certificate_id=first.keyfactor_id, certificate_id=renewed.keyfactor_id, password=STRONG_PASSWORD))
    assert r.status_code == 200, r.content[:500]
    assert [g.strip("{}").lower() for g in r.parsed.successful_stores] == [store.strip("{}").lower()]
    assert r.parsed.failed_stores == []
    agent_once(gw, machine, root)
    assert sha1_thumbprint(load_certs(crt.read_bytes())[0]) == renewed.thumbprint
    assert sha1_thumbprint(load_certs((root / "deploy" / "tls" / "app.crt.bak").read_bytes())[0]) == first.thumbprint
    assert [(h["Status"], h["Result"]) for h in job_history(s, ClientMachine=machine)] == [(COMPLETED, SUCCESS)] * 2


def test_classic_pkcs10(s):
    cn = unique_cn("p10")
    key, csr_pem = make_csr(cn, dns=[cn])
    der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    # As classic PowerShell scripts send it: lower-case path and envelope keys.
    r = s.post("/cmsapi/CertEnroll/3/Pkcs10", json={"timestamp": "2024-01-02T03:04:05", "request": {
        "Flags": 0, "TemplateName": "WebServer", "Pkcs10Request": base64.b64encode(der).decode(),
        "metadataList": [{"MetadataFieldTypeName": "Email-Contact", "Value": "p10@example.com"}]}})
    body = json_of(r)
    text = body["Certificates"][0]
    assert "-----" not in text, "plain base64, no PEM armour"
    assert "\r\n" in text
    lines = text.split("\r\n")
    assert all(len(line) == 64 for line in lines[:-1]) and 0 < len(lines[-1]) <= 64, [len(x) for x in lines]
    leaf = x509.load_der_x509_certificate(base64.b64decode("".join(lines)))
    assert public_key_der(leaf) == key.public_key().public_bytes(serialization.Encoding.DER,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    got = get_cert(s, keyfactor_id_of(s, sha1_thumbprint(leaf)))
    assert got["Metadata"].get("Email-Contact") == "p10@example.com"


def test_classic_pkcs12(s):
    cn = unique_cn("p12")
    body = json_of(s.post("/CMSApi/CertEnroll/3/Pkcs12", json={"timestamp": "2024-01-02T03:04:05.000000", "Request": {
        "Flags": 0, "TemplateName": "WebServer", "Pkcs12Password": STRONG_PASSWORD,
        "SubjectNameAttributes": {"CN": cn, "OU": "Ops"},
        "SubjectAltNameElements": [{"key": "dns", "value": cn}]}}))
    key, leaf, chain = pkcs12.load_key_and_certificates(base64.b64decode(body["Pkcs12Blob"]), STRONG_PASSWORD.encode())
    assert key is not None and leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Ops"
    assert leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value \
        .get_values_for_type(x509.DNSName) == [cn]
    assert body["Thumbprint"] == sha1_thumbprint(leaf)


def test_revoke(s, v1, host):
    info = v1_pfx_enroll(v1, unique_cn("rev"), host).parsed.certificate_information
    r = certificate_revoke.sync_detailed(client=v1, json_body=ModelsRevokeCertificateRequest(
        certificate_ids=[info.keyfactor_id], reason=ModelsRevokeCertificateRequestReason.VALUE_1,
        comment="key compromise drill", effective_date=datetime.datetime.now(datetime.timezone.utc)))
    assert r.status_code == 200, r.content[:500]
    assert_fields_set(r.parsed, "revoked_ids", "suspended_certs")
    assert r.parsed.revoked_ids == [info.keyfactor_id] and r.parsed.suspended_certs == []
    c = certificate_get_certificate.sync(info.keyfactor_id, client=v1)
    assert c.cert_state == ModelsCertificateRetrievalResponseCertState.VALUE_2
    assert c.revocation_reason == ModelsCertificateRetrievalResponseRevocationReason.VALUE_1
    assert not unset(c.revocation_eff_date) and c.revocation_eff_date is not None
    assert c.revocation_comment == "key compromise drill"


# ================================================================ 7. agent restarts lose nothing

def test_claimed_job_is_not_handed_out_twice_within_its_lease(gw, s):
    """Default lease (5 minutes): a job claimed by an agent is not given to another poll meanwhile,
    and JobHistory shows it InProcess."""
    machine = machine_name("lease")
    store = store_add(gw, machine, "/lease/tls")
    token = agent_token(gw, machine)
    info = pfx_enroll(s, unique_cn("lease"))
    [job] = json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": info["KeyfactorId"], "CertificateStores": [{"CertificateStoreId": store}],
        "Schedule": {"Immediate": True}}))
    a = gw.session(token=token)
    claimed = json_of(a.get("/api/v1/agent/jobs"))
    assert [j["job_id"] for j in claimed] == [job]
    assert json_of(a.get("/api/v1/agent/jobs")) == [], "a leased job is not handed out again"
    rows = job_history(s, JobId=job)
    assert [(h["Status"], h["Result"]) for h in rows] == [(IN_PROCESS, 0)], rows


def test_job_of_a_dead_agent_is_retried_after_its_lease(gateway_factory, tmp_path):
    """An agent claims a job and dies before reporting (simulated: claim with the agent token, never
    report). Leases are 5 minutes by default; this gateway uses keyfactor.agent_lease_secs=3."""
    gw = gateway_factory(env={"RENEWGATE_KEYFACTOR__AGENT_LEASE_SECS": "3"})
    s = kf_session(gw)
    machine = machine_name("dead")
    store = store_add(gw, machine, "/dead/tls")
    token = agent_token(gw, machine)
    info = pfx_enroll(s, unique_cn("dead"))
    body = json_of(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]}, "CertStores": [store]}))
    a = gw.session(token=token)
    [claimed] = json_of(a.get("/api/v1/agent/jobs"))
    assert claimed["certificate_pem"] and claimed["store_path"] == "/dead/tls"
    assert json_of(a.get("/api/v1/agent/jobs")) == []
    # The dead agent never reports. After the lease, a restarted agent takes the job again.
    time.sleep(4)
    root = tmp_path / "root"
    agent_once(gw, machine, root, token=token)
    crt = root / "dead" / "tls" / f"{get_cert(s, info['KeyfactorId'])['IssuedCN']}.crt"
    assert sha1_thumbprint(load_certs(crt.read_bytes())[0]) == body["Thumbprint"]
    rows = sorted(job_history(s, JobId=claimed["job_id"]), key=lambda h: h["JobHistoryId"])
    assert [(h["Status"], h["Result"]) for h in rows] == [(COMPLETED_WILL_RETRY, FAILURE), (COMPLETED, SUCCESS)], rows
    assert rows[0]["JobHistoryId"] == claimed["audit_id"]
    # The dead agent's late report is refused: the job is no longer its.
    late = a.post(f"/api/v1/agent/jobs/{claimed['job_id']}/result", json={"outcome": "success", "message": "late"})
    assert late.status_code == 409, late.text


# ================================================================ more endpoints and store behaviour

def test_v11_style_download_and_recover(s):
    """The v11 SDK: camelCase bodies, `?collectionId=0`, `x-certificateformat: PEM` on both."""
    cn = unique_cn("v11dl")
    info = pfx_enroll(s, cn)
    h = {"X-Keyfactor-Requested-With": "APIClient", "x-certificateformat": "PEM"}
    d = json_of(s.post("/KeyfactorAPI/Certificates/Download?collectionId=0", headers=h,
                       json={"certID": info["KeyfactorId"], "includeChain": True}))
    assert set(d) == {"content"}, d
    certs = load_certs(base64.b64decode(d["content"]))
    assert sha1_thumbprint(certs[0]) == info["Thumbprint"] and len(certs) >= 2
    rec = json_of(s.post("/KeyfactorAPI/Certificates/Recover?collectionId=0", headers=h,
                         json={"password": STRONG_PASSWORD, "thumbprint": info["Thumbprint"]}))
    assert set(rec) == {"pfx", "fileName"}, rec
    pem = base64.b64decode(rec["pfx"])
    assert sha1_thumbprint(load_certs(pem)[0]) == info["Thumbprint"]
    key = serialization.load_pem_private_key(pem, STRONG_PASSWORD.encode())
    assert key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == public_key_der(load_certs(pem)[0])


def test_certificates_query_and_paging(s):
    cn = unique_cn("query")
    first = pfx_enroll(s, cn)
    for _ in range(2):
        assert json_of(s.post("/KeyfactorAPI/Enrollment/Renew", json={"CertificateId": first["KeyfactorId"]}))[
            "RequestDisposition"] == "ISSUED"
    every = json_of(s.get("/KeyfactorAPI/Certificates", params={"pq.queryString": f'IssuedCN -eq "{cn}"'}))
    assert len(every) == 3 and every[0]["Id"] == first["KeyfactorId"], [c["Id"] for c in every]
    ids = [c["Id"] for c in every]
    # v11 parameter names (no prefix), page 2 of 2-per-page.
    page2 = json_of(s.get("/KeyfactorAPI/Certificates", params={
        "QueryString": f'IssuedCN -eq "{cn}"', "ReturnLimit": 2, "PageReturned": 2, "collectionId": 0,
        "includeLocations": "false", "includeMetadata": "false", "includeHasPrivateKey": "false", "verbose": 0}))
    assert [c["id"] for c in page2] == ids[2:], page2
    assert_kf_error(s.get("/KeyfactorAPI/Certificates", params={"pq.queryString": 'NoSuchField -eq "x"'}), 400)


def test_store_remove(gw, s, tmp_path):
    machine = machine_name("rm")
    store = store_add(gw, machine, "/rm/tls", alias="gone")
    info = pfx_enroll(s, unique_cn("rm"))
    json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": info["KeyfactorId"], "CertificateStores": [{"CertificateStoreId": store}],
        "Schedule": {"Immediate": True}}))
    root = tmp_path / "root"
    agent_once(gw, machine, root)
    d = root / "rm" / "tls"
    assert (d / "gone.crt").exists() and (d / "gone.chain.pem").exists()
    jobs = json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Remove", json={
        "CertificateStores": [{"CertificateStoreId": store, "Alias": "gone"}], "Schedule": {"Immediate": True}}))
    assert len(jobs) == 1
    agent_once(gw, machine, root)
    assert not (d / "gone.crt").exists() and not (d / "gone.chain.pem").exists()
    [row] = job_history(s, JobId=jobs[0])
    assert (row["Status"], row["Result"]) == (COMPLETED, SUCCESS), row


def test_agent_refuses_a_store_path_escaping_its_root(gw, s, tmp_path):
    machine = machine_name("escape")
    store = store_add(gw, machine, "/../escaped")
    info = pfx_enroll(s, unique_cn("escape"))
    [job] = json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": info["KeyfactorId"], "CertificateStores": [{"CertificateStoreId": store}],
        "Schedule": {"Immediate": True}}))
    root = tmp_path / "inner" / "root"
    root.mkdir(parents=True)
    agent_once(gw, machine, root)
    assert not (tmp_path / "inner" / "escaped").exists(), "nothing is written outside the store root"
    [row] = job_history(s, JobId=job)
    assert (row["Status"], row["Result"]) == (COMPLETED_WILL_RETRY, FAILURE), row
    assert "escapes the store root" in row["Message"], row


def test_pkcs12_and_jks_stores(gw, s, tmp_path):
    machine = machine_name("ks")
    p12 = store_add(gw, machine, "/ks/site.p12", store_type="pkcs12", alias="site", include_keys=True,
                    password="store-pass-1")
    jk = store_add(gw, machine, "/ks/site.jks", store_type="jks", alias="site", include_keys=True,
                   password="store-pass-2")
    info = pfx_enroll(s, unique_cn("ks"))
    r = s.post("/KeyfactorAPI/Enrollment/PFX/Deploy", json={"Password": STRONG_PASSWORD, "CertificateId": info["KeyfactorId"],
                                                           "StoreIds": [p12, jk]})
    assert sorted(json_of(r)["SuccessfulStores"]) == sorted([p12, jk]) and r.json()["FailedStores"] == []
    root = tmp_path / "root"
    agent_once(gw, machine, root)
    key, leaf, _ = pkcs12.load_key_and_certificates((root / "ks" / "site.p12").read_bytes(), b"store-pass-1")
    assert sha1_thumbprint(leaf) == info["Thumbprint"] and key is not None
    assert stat.S_IMODE((root / "ks" / "site.p12").stat().st_mode) == 0o600
    ks = jks.KeyStore.loads((root / "ks" / "site.jks").read_bytes(), "store-pass-2")
    assert "site" in ks.private_keys, list(ks.entries)
    entry = ks.private_keys["site"]
    if not entry.is_decrypted():
        entry.decrypt("store-pass-2")
    assert sha1_thumbprint(x509.load_der_x509_certificate(entry.cert_chain[0][1])) == info["Thumbprint"]


def test_reload_failure_is_a_warning_and_can_be_acknowledged(gw, s, tmp_path):
    """Installed, but the reload command failed: JobHistory Result 3 (Warning), Status 3; a
    warning is acknowledged like a failure."""
    machine = machine_name("warn")
    store = store_add(gw, machine, "/warn/tls")
    info = pfx_enroll(s, unique_cn("warn"))
    [job] = json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": info["KeyfactorId"], "CertificateStores": [{"CertificateStoreId": store}],
        "Schedule": {"Immediate": True}}))
    agent_once(gw, machine, tmp_path / "root", reload_command="exit 3")
    [row] = job_history(s, JobId=job)
    assert (row["Status"], row["Result"]) == (COMPLETED, WARNING), row
    assert "reload" in row["Message"], row
    r = s.post("/KeyfactorAPI/OrchestratorJobs/Acknowledge", json={"JobAuditIds": [row["JobHistoryId"]]})
    assert r.status_code == 204, r.text
    [row] = job_history(s, JobId=job)
    assert (row["Status"], row["Result"]) == (ACKNOWLEDGED, WARNING), row


def add_with_alias(gw, s, tmp_path, machine, store, cert_id, alias):
    json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": cert_id, "CertificateStores": [{"CertificateStoreId": store, "Alias": alias, "Overwrite": True}],
        "Schedule": {"Immediate": True}}))
    agent_once(gw, machine, tmp_path / "root")


def test_pfx_replace_replaces_the_entry_the_old_certificate_occupies(gw, s, tmp_path):
    """`PFX/Replace` "replaces the old certificate in every store that holds it" (reference §4.3):
    the old one was added under the alias `web` (a store without its own alias), so the new one
    goes to `web.crt`, not beside it."""
    machine = machine_name("repl")
    store = store_add(gw, machine, "/repl/tls")
    first = pfx_enroll(s, unique_cn("repl"))
    add_with_alias(gw, s, tmp_path, machine, store, first["KeyfactorId"], "web")
    d = tmp_path / "root" / "repl" / "tls"
    assert sha1_thumbprint(load_certs((d / "web.crt").read_bytes())[0]) == first["Thumbprint"]
    renewed = json_of(s.post("/KeyfactorAPI/Enrollment/Renew", json={"CertificateId": first["KeyfactorId"]}))
    r = json_of(s.post("/KeyfactorAPI/Enrollment/PFX/Replace", json={
        "ExistingCertificateId": first["KeyfactorId"], "CertificateId": renewed["KeyfactorId"], "Password": STRONG_PASSWORD}))
    assert r["SuccessfulStores"] == [store] and r["FailedStores"] == []
    agent_once(gw, machine, tmp_path / "root")
    installed = {p.name: sha1_thumbprint(load_certs(p.read_bytes())[0]) for p in d.glob("*.crt")}
    assert installed == {"web.crt": renewed["Thumbprint"]}, installed


def test_classic_renew_pushes_to_the_alias_of_the_old_location(gw, s, tmp_path):
    """Reference §3 (an [INF] design rule): a renewal's push job uses the alias of the old
    certificate's location in that store, so the renewed certificate replaces the installed one."""
    machine = machine_name("ralias")
    store = store_add(gw, machine, "/ralias/tls")
    first = pfx_enroll(s, unique_cn("ralias"))
    add_with_alias(gw, s, tmp_path, machine, store, first["KeyfactorId"], "web")
    body = json_of(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": first["KeyfactorId"]}, "CertStores": [store]}))
    agent_once(gw, machine, tmp_path / "root")
    d = tmp_path / "root" / "ralias" / "tls"
    installed = {p.name: sha1_thumbprint(load_certs(p.read_bytes())[0]) for p in d.glob("*.crt")}
    assert installed == {"web.crt": body["Thumbprint"]}, installed


def test_casing_defaults_to_pascal_for_gets(s):
    """Rule 2: a GET with neither a version header nor `collectionId=0` is PascalCase."""
    info = pfx_enroll(s, unique_cn("pascal"))
    c = json_of(s.get(f"/KeyfactorAPI/Certificates/{info['KeyfactorId']}"))
    assert "IssuerDN" in c and "issuerDN" not in c
    c = json_of(s.get(f"/KEYFACTORAPI/certificates/{info['KeyfactorId']}?collectionId=0",
                      headers={"x-keyfactor-api-version": "1"}))
    assert "IssuerDN" in c and "issuerDN" not in c, "the v1 SDK sends collectionId too, with its version header"


def test_locations_follow_what_the_store_holds(gw, s, tmp_path):
    """`Locations` of `GET Certificates/{id}` and the store's inventory say where a certificate is
    now: after a store alias is overwritten by a newer certificate, or removed, the old certificate
    is no longer listed there."""
    machine = machine_name("loc")
    store = store_add(gw, machine, "/loc/tls", alias="site")
    first = pfx_enroll(s, unique_cn("loc"))
    add_with_alias(gw, s, tmp_path, machine, store, first["KeyfactorId"], "site")
    assert [loc["CertStoreId"] for loc in get_cert(s, first["KeyfactorId"])["Locations"]] == [store]
    renewed = json_of(s.post("/KeyfactorAPI/Enrollment/Renew", json={"CertificateId": first["KeyfactorId"]}))
    add_with_alias(gw, s, tmp_path, machine, store, renewed["KeyfactorId"], "site")
    inv = json_of(s.get(f"/KeyfactorAPI/CertificateStores/{store}/Inventory"))
    assert [[c["Id"] for c in e["Certificates"]] for e in inv] == [[renewed["KeyfactorId"]]], inv
    assert [loc["CertStoreId"] for loc in get_cert(s, renewed["KeyfactorId"])["Locations"]] == [store]
    old_locations = get_cert(s, first["KeyfactorId"])["Locations"]
    removed = json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Remove", json={
        "CertificateStores": [{"CertificateStoreId": store, "Alias": "site"}], "Schedule": {"Immediate": True}}))
    assert len(removed) == 1
    agent_once(gw, machine, tmp_path / "root")
    assert json_of(s.get(f"/KeyfactorAPI/CertificateStores/{store}/Inventory")) == []
    new_locations = get_cert(s, renewed["KeyfactorId"])["Locations"]
    assert (old_locations, new_locations) == ([], []), \
        f"Locations: replaced certificate {old_locations}; removed certificate {new_locations}"


def test_ca_configuration_forms(s, host):
    """`<ca.host>\\NAME` matched case-insensitively, or a bare NAME; another host names no CA here."""
    info = pfx_enroll(s, unique_cn("cafmt"))
    for cfg in (f"{host.upper()}\\ISSUING", "issuing"):
        body = json_of(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]}, "CAConfiguration": cfg}))
        assert body["RequestDisposition"] == "Issued", (cfg, body)
        assert get_cert(s, keyfactor_id_of(s, body["Thumbprint"]))["CertificateAuthorityName"] == "issuing"
    assert_kf_error(classic_renew(s, {"Lookup": {"Type": "CMSID", "CMSID": info["KeyfactorId"]},
                                      "CAConfiguration": "CA1.jdk.com\\issuing"}), 400, contains="CA1.jdk.com")
    assert_kf_error(s.post("/KeyfactorAPI/Enrollment/Renew", json={"CertificateId": info["KeyfactorId"],
                                                                   "CertificateAuthority": "CA1.jdk.com\\issuing"}), 400)


def add_to_store(s, info, store):
    return json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": info["KeyfactorId"], "CertificateStores": [{"CertificateStoreId": store, "Overwrite": True}],
        "Schedule": {"Immediate": True}}))


def test_agent_never_writes_through_a_planted_symlink(gw, s, tmp_path):
    """One Door hole 10: a `.NAME.key.tmp` symlink planted in the store received the private key in
    a 0644 file (create+truncate followed it). Now temp files have random names created with
    O_EXCL|O_NOFOLLOW, a symlinked target fails the job, and Remove leaves no backup behind."""
    machine = machine_name("symlink")
    store = store_add(gw, machine, "/sl/tls", alias="site", include_keys=True)
    root = tmp_path / "root"
    d = root / "sl" / "tls"
    d.mkdir(parents=True)
    loot = tmp_path / "loot.pem"
    loot.write_text("")
    os.chmod(loot, 0o644)
    (d / ".site.key.tmp").symlink_to(loot)
    add_to_store(s, pfx_enroll(s, unique_cn("symlink")), store)
    agent_once(gw, machine, root)
    assert loot.read_text() == "", "the planted link received nothing"
    assert stat.S_IMODE((d / "site.key").stat().st_mode) == 0o600
    assert not (d / "site.key").is_symlink()
    # A second install keeps the previous key as a hard-linked backup, also 0600.
    add_to_store(s, pfx_enroll(s, unique_cn("symlink2")), store)
    agent_once(gw, machine, root)
    assert stat.S_IMODE((d / "site.key.bak").stat().st_mode) == 0o600
    # A target that is a symlink is refused with a clear store-job error.
    (d / "site.crt").unlink()
    (d / "site.crt").symlink_to(loot)
    [job] = add_to_store(s, pfx_enroll(s, unique_cn("symlink3")), store)
    agent_once(gw, machine, root)
    [row] = job_history(s, JobId=job)
    assert row["Result"] == FAILURE and "symbolic link" in row["Message"], row
    assert loot.read_text() == ""
    # Remove takes the backups with it: no key material is left behind.
    (d / "site.crt").unlink()
    [job] = json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Remove", json={
        "CertificateStores": [{"CertificateStoreId": store, "Alias": "site"}], "Schedule": {"Immediate": True}}))
    agent_once(gw, machine, root)
    left = sorted(p.name for p in d.iterdir() if p.name != ".site.key.tmp")
    assert not [n for n in left if "key" in n], left


def test_every_renewal_path_pushes_to_the_stores_holding_the_previous_certificate(gw, s, tmp_path):
    """One Door hole 11: the scheduler pushed a renewed certificate to the stores holding the old
    one, a Venafi Renew did not. Now every renewal does, unless the folder's push_on_renew is false."""
    from rg_helpers import db_scalar, sql_str
    machine = machine_name("push")
    store = store_add(gw, machine, "/push/tls", alias="site", include_keys=True)
    info = pfx_enroll(s, unique_cn("push"))
    add_to_store(s, info, store)
    agent_once(gw, machine, tmp_path / "root")
    dn = db_scalar(gw, f"SELECT o.dn FROM cert_objects o JOIN certificates c ON c.object_id = o.id "
                       f"WHERE c.id = {int(info['KeyfactorId'])}")
    store_id = int(db_scalar(gw, f"SELECT id FROM stores WHERE guid = {sql_str(store.strip('{}'))} OR guid = {sql_str(store)}"))
    pushes = f"SELECT COUNT(*) FROM store_jobs WHERE store_id = {store_id} AND operation = 'add'"
    before = int(db_scalar(gw, pushes))
    v = gw.session()
    r = v.post("/vedsdk/certificates/renew", json={"CertificateDN": dn, "WorkToDoTimeout": 30})
    assert r.status_code == 200, r.text
    assert int(db_scalar(gw, pushes)) == before + 1, "the Venafi renewal reaches the store holding the old certificate"
    folder = db_scalar(gw, f"SELECT policy_dn FROM cert_objects WHERE dn = {sql_str(dn)}")
    gw.cli("policy", "set", folder, "push_on_renew=false")
    try:
        r = v.post("/vedsdk/certificates/renew", json={"CertificateDN": dn, "WorkToDoTimeout": 30})
        assert r.status_code == 200, r.text
        assert int(db_scalar(gw, pushes)) == before + 1, "push_on_renew=false: no push"
    finally:
        gw.cli("policy", "set", folder, "--unset", "push_on_renew")


def test_agent_renews_its_own_token(gw, tmp_path):
    """One Door: agent tokens expire (default 90d); the agent renews its own token through the API
    once a third of its lifetime remains, rewriting its token file; the old token stops working."""
    machine = machine_name("renewtok")
    out = gw.cli("agent", "token", "create", "--client-machine", machine, "--lifetime", "30s").stdout
    old = out.strip()
    tf = tmp_path / "agent.token"
    tf.write_text(old + "\n")
    os.chmod(tf, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENEWGATE_")}

    def run_once():
        r = subprocess.run([str(BIN), "agent", "run", "--gateway", gw.url, "--token-file", str(tf), "--ca-bundle",
                            gw.ca_bundle, "--client-machine", machine, "--store-root", str(tmp_path / "root"), "--once"],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr

    def claim(token):
        return requests.get(gw.url + "/api/v1/agent/jobs", verify=gw.ca_bundle, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})

    run_once()
    assert tf.read_text().strip() == old, "a young token is kept"
    time.sleep(21)
    run_once()
    new = tf.read_text().strip()
    assert new and new != old, "renewed once a third of the lifetime remains"
    assert stat.S_IMODE(tf.stat().st_mode) == 0o600
    assert claim(old).status_code == 401, "the renewed token replaces the old one"
    assert claim(new).status_code == 200


# ---------------------------------------------------------------- One Door: stores belong to folders

def folder_user(gw, folder, perms):
    """A user limited to `folder` with `perms`; returns a requests session speaking Keyfactor Basic."""
    name, pw = f"fu-{uuid.uuid4().hex[:8]}", "Folder-Passw0rd!1"
    gw.cli("user", "add", name, "--password", pw, "--scope", "certificate:manage,revoke;configuration:manage",
           "--folder", f"{folder}:{perms}")
    u = requests.Session()
    u.trust_env = False
    u.verify = gw.ca_bundle
    u.auth = (name, pw)
    u.headers["x-keyfactor-requested-with"] = "APIClient"
    u.base = gw.url
    return u, name, pw


def kf(u, method, path, **kw):
    return u.request(method, u.base + path, timeout=60, **kw)


def issued_in(gw, folder, cn):
    """A service-generated certificate issued in `folder` through Venafi; returns its certificate id."""
    from rg_helpers import db_scalar, request_service, sql_str, wait_retrieve
    v = gw.session()
    dn = request_service(v, folder, cn)
    wait_retrieve(v, dn)
    return int(db_scalar(gw, f"SELECT c.id FROM certificates c JOIN cert_objects o ON o.id = c.object_id "
                             f"WHERE o.dn = {sql_str(dn)}"))


def store_jobs_of(gw, store):
    from rg_helpers import db_scalar, sql_str
    return int(db_scalar(gw, "SELECT COUNT(*) FROM store_jobs j JOIN stores s ON s.id = j.store_id "
                             f"WHERE s.guid = {sql_str(store.strip('{}').lower())}"))


def test_a_store_receiving_keys_needs_key_permission(gw, tmp_path):
    """Hole 1: read,write without key got the folder's private keys written to disk through a
    store that receives keys (Add, PFX Deploy, classic Renew CertStores), while Recover was refused."""
    tag = uuid.uuid4().hex[:6]
    folder = f"\\VED\\Policy\\KeyHole{tag}"
    gw.cli("policy", "set", folder)
    cert_id = issued_in(gw, folder, f"keyhole-{tag}.example.com")
    keyed = store_add(gw, machine_name("keyed"), f"/kh{tag}/keys", alias="k", include_keys=True)
    gw.cli("store", "add", "--client-machine", machine_name("plain"), "--store-path", f"/kh{tag}/plain",
           "--type", "pem-dir", "--folder", folder)
    plain = gw.cli("store", "add", "--client-machine", machine_name("plain2"), "--store-path", f"/kh{tag}/plain2",
                   "--type", "pem-dir", "--folder", folder).stdout.strip()
    u, _, _ = folder_user(gw, folder, "read,write")
    # The store is in the root folder: first it is simply not this user's.
    r = kf(u, "POST", "/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": cert_id, "CertificateStores": [{"CertificateStoreId": keyed}], "Schedule": {"Immediate": True}})
    assert_kf_error(r, 400, contains="does not exist")
    # A key-receiving store in the user's own folder still needs key permission on the certificate.
    keyed_here = gw.cli("store", "add", "--client-machine", machine_name("keyed2"), "--store-path", f"/kh{tag}/k2",
                        "--type", "pem-dir", "--include-keys", "--folder", folder).stdout.strip()
    r = kf(u, "POST", "/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": cert_id, "CertificateStores": [{"CertificateStoreId": keyed_here}],
        "Schedule": {"Immediate": True}})
    assert_kf_error(r, 400, contains="Private Key Read")
    assert store_jobs_of(gw, keyed_here) == 0
    r = kf(u, "POST", "/KeyfactorAPI/Enrollment/PFX/Deploy", json={
        "Password": STRONG_PASSWORD, "CertificateId": cert_id, "StoreIds": [keyed_here]})
    assert json_of(r)["SuccessfulStores"] == [] and json_of(r)["FailedStores"] == [keyed_here]
    assert store_jobs_of(gw, keyed_here) == 0
    from rg_helpers import db_scalar
    versions = f"SELECT COUNT(*) FROM certificates WHERE object_id = (SELECT object_id FROM certificates WHERE id = {cert_id})"
    before = int(db_scalar(gw, versions))
    r = kf(u, "POST", "/CMSApi/CertEnroll/3/Renew", json={"CMSID": cert_id, "CertStores": [keyed_here]})
    assert r.status_code == 400, r.text
    assert int(db_scalar(gw, versions)) == before, "refused before anything is issued"
    assert store_jobs_of(gw, keyed_here) == 0
    # Recover on the same certificate is refused too: the rules agree.
    r = kf(u, "POST", "/KeyfactorAPI/Certificates/Recover", json={"CertID": cert_id, "Password": STRONG_PASSWORD})
    assert r.status_code in (400, 403, 404), r.text
    # A store that does not receive keys is fine with read,write.
    r = kf(u, "POST", "/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": cert_id, "CertificateStores": [{"CertificateStoreId": plain}], "Schedule": {"Immediate": True}})
    assert len(json_of(r)) == 1
    # With key permission the key-receiving store is accepted.
    k, _, _ = folder_user(gw, folder, "read,write,key")
    r = kf(k, "POST", "/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": cert_id, "CertificateStores": [{"CertificateStoreId": keyed_here}],
        "Schedule": {"Immediate": True}})
    assert len(json_of(r)) == 1


def test_stores_of_another_folder_are_invisible(gw, s, tmp_path):
    """Hole 2: stores were global: a user of folder A removed and replaced what folder B deployed."""
    tag = uuid.uuid4().hex[:6]
    fa, fb = f"\\VED\\Policy\\StoreA{tag}", f"\\VED\\Policy\\StoreB{tag}"
    for f in (fa, fb):
        gw.cli("policy", "set", f)
    machine = machine_name("storeb")
    store_b = gw.cli("store", "add", "--client-machine", machine, "--store-path", f"/sb{tag}", "--type", "pem-dir",
                     "--alias", "b", "--folder", fb).stdout.strip()
    cert_b = issued_in(gw, fb, f"storeb-{tag}.example.com")
    cert_a = issued_in(gw, fa, f"storea-{tag}.example.com")
    json_of(s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": cert_b, "CertificateStores": [{"CertificateStoreId": store_b}], "Schedule": {"Immediate": True}}))
    agent_once(gw, machine, tmp_path / "root")
    jobs_before = store_jobs_of(gw, store_b)
    u, _, _ = folder_user(gw, fa, "read,write,key")
    missing = str(uuid.uuid4())
    # Remove: the other folder's store answers like a store that does not exist.
    answers = []
    for g in (store_b, missing):
        r = kf(u, "POST", "/KeyfactorAPI/CertificateStores/Certificates/Remove", json={
            "CertificateStores": [{"CertificateStoreId": g, "Alias": "b"}], "Schedule": {"Immediate": True}})
        answers.append((r.status_code, r.json()["Message"].replace(g, "<id>")))
    assert answers[0] == answers[1] and answers[0][0] == 400, answers
    # Replace: the replaced certificate must be the caller's to see.
    answers = []
    for old in (cert_b, cert_b + 1_000_000):
        r = kf(u, "POST", "/KeyfactorAPI/Enrollment/PFX/Replace", json={
            "ExistingCertificateId": old, "CertificateId": cert_a, "Password": STRONG_PASSWORD})
        answers.append((r.status_code, r.json()["Message"].replace(str(old), "<id>")))
    assert answers[0] == answers[1] and answers[0][0] == 404, answers
    assert store_jobs_of(gw, store_b) == jobs_before, "nothing was scheduled on the other folder's store"
    # Get, inventory, list, job history: nothing of folder B.
    assert kf(u, "GET", f"/KeyfactorAPI/CertificateStores/{store_b}").status_code == 404
    assert kf(u, "GET", f"/KeyfactorAPI/CertificateStores/{store_b}/Inventory").status_code == 404
    listed = [x["Id"].strip("{}").lower() for x in json_of(kf(u, "GET", "/KeyfactorAPI/CertificateStores"))]
    assert store_b.strip("{}").lower() not in listed
    hist = json_of(kf(u, "GET", "/KeyfactorAPI/OrchestratorJobs/JobHistory", params={"pq.returnLimit": 1000},
                      headers={"x-keyfactor-api-version": "1"}))
    assert all(h["ClientMachine"] != machine for h in hist), hist
    # The store shows its container (folder) to those who may see it.
    mine = json_of(s.get(f"/KeyfactorAPI/CertificateStores/{store_b}"))
    assert mine["ContainerName"] == fb and mine["ContainerId"] > 0


def test_store_pairs_are_unique_and_containers_are_honoured(gw, s):
    tag = uuid.uuid4().hex[:6]
    machine = machine_name("uniq")
    store_add(gw, machine, f"/u{tag}")
    r = gw.cli("store", "add", "--client-machine", machine.upper(), "--store-path", f"/u{tag}", "--type", "pem-dir",
               check=False)
    assert r.returncode != 0 and "already exists" in r.stderr
    folder = f"\\VED\\Policy\\Container{tag}"
    gw.cli("policy", "set", folder)
    created = json_of(s.post("/KeyfactorAPI/CertificateStores", json={
        "ClientMachine": machine, "Storepath": f"/c{tag}", "CertStoreType": 1, "ContainerName": folder}))
    assert created["ContainerName"] == folder
    created2 = json_of(s.post("/KeyfactorAPI/CertificateStores", json={
        "ClientMachine": machine, "Storepath": f"/d{tag}", "CertStoreType": 1, "ContainerId": created["ContainerId"]}))
    assert created2["ContainerName"] == folder


def test_store_paths_may_not_overlap_on_one_machine(gw):
    """A store at `a/b/x.key` lies inside the pem-dir store `a/b`, and `a//b/` is `/a/b` to the agent:
    such a store would let a user of one folder overwrite or delete another folder's files."""
    tag = uuid.uuid4().hex[:6]
    machine = machine_name("overlap")
    store_add(gw, machine, f"/ov{tag}/tls")
    for path in (f"ov{tag}/tls/", f"/ov{tag}//tls", f"./ov{tag}/tls", f"/ov{tag}/tls/svc.key", f"/ov{tag}"):
        r = gw.cli("store", "add", "--client-machine", machine, "--store-path", path, "--type", "pkcs12", check=False)
        assert r.returncode != 0 and "already exists" in r.stderr, (path, r.stderr)
    store_add(gw, machine, f"/ov{tag}/other")
    store_add(gw, machine_name("overlap2"), f"/ov{tag}/tls")


def test_basic_credentials_stop_at_once_when_the_user_is_disabled(gw):
    name, pw = f"basic-{uuid.uuid4().hex[:6]}", "Basic-Passw0rd!1"
    gw.cli("user", "add", name, "--password", pw, "--scope", "certificate:manage")
    get = lambda: requests.get(gw.url + "/KeyfactorAPI/Certificates", verify=gw.ca_bundle, timeout=30,  # noqa: E731
                               auth=(name, pw), headers={"x-keyfactor-requested-with": "APIClient"})
    assert get().status_code == 200
    assert get().status_code == 200, "served from the cache"
    gw.cli("user", "disable", name)
    assert get().status_code == 401, "the cached sign-in does not outlive the disable"
    gw.cli("user", "enable", name)
    assert get().status_code == 200
    gw.cli("user", "passwd", name, "--password-stdin", input="Basic-Passw0rd!2\n")
    assert get().status_code == 401, "nor a password change"
