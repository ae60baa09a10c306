"""Upgrade: a data directory (SQLite) and a database (PostgreSQL) written by the build before the
"One door" issue start under this build with their certificates, stores and users intact; the
stores are placed in folders and a duplicated (ClientMachine, StorePath) pair made unique.
The fixtures were written by that build (tests/fixtures/upgrade/generate.py)."""
import json
import os
import shutil
import stat
import subprocess

import pytest
import requests

from conftest import PG_HOST, PG_PORT, PG_USER, REPO, Database, Gateway
from rg_helpers import retrieve, retrieved_certs

FIXTURES = REPO / "tests" / "fixtures" / "upgrade"


@pytest.fixture
def upgraded(backend, tmp_path):
    src = FIXTURES / backend
    manifest = json.loads((src / "manifest.json").read_text())
    data = tmp_path / "data"
    shutil.copytree(src / "data", data)
    db = Database(backend)
    if backend == "postgres":
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", db.name,
                        "-f", str(src / "dump.sql")], check=True, capture_output=True)
    gw = Gateway(tmp_path, db, data_dir=data).start()
    yield gw, manifest
    gw.stop(kill=True)
    db.drop()


def kf_get(gw, path, password):
    r = requests.get(gw.url + path, verify=gw.ca_bundle, timeout=30, auth=("admin", password),
                     headers={"x-keyfactor-requested-with": "APIClient"})
    assert r.status_code == 200, r.text
    return r.json()


def test_an_old_data_directory_starts_intact(upgraded):
    gw, m = upgraded
    # Users: the admin and a folder-limited user sign in with their passwords.
    admin = gw.session(token=gw.token(password=m["admin_password"]))
    alice = gw.session(token=gw.token(user="alice", password=m["alice_password"], scope="certificate:manage"))
    # Certificates: each object retrieves the certificate it had.
    for cn, c in m["certificates"].items():
        r = retrieve(admin, c["dn"])
        assert r.status_code == 200, r.text
        assert format(retrieved_certs(r)[0].serial_number, "X") == c["serial"], cn
    # Folder grants survived: alice sees A, not B.
    assert retrieve(alice, m["certificates"]["up-a.example.com"]["dn"]).status_code == 200
    assert retrieve(alice, m["certificates"]["up-b.example.com"]["dn"]).status_code != 200
    # Stores: placed in the deepest folder covering what they received; the younger of two stores
    # sharing (ClientMachine, StorePath) got its GUID appended.
    stores = {s["Id"].strip("{}").lower(): s for s in kf_get(gw, "/KeyfactorAPI/CertificateStores", m["admin_password"])}
    first, second, alone = (stores[m["stores"][k].strip("{}").lower()] for k in ("first", "second", "alone"))
    assert first["ContainerName"] == "\\VED\\Policy\\Up\\A", first
    assert first["Storepath"] == "/same/path"
    assert second["Storepath"] == f"/same/path#{m['stores']['second'].strip('{}').lower()}", second
    assert alone["ContainerName"] == "\\VED\\Policy"
    # The renewal path works on the old rows.
    r = admin.post("/vedsdk/certificates/renew", json={"CertificateDN": m["certificates"]["up-a.example.com"]["dn"],
                                                        "WorkToDoTimeout": 30})
    assert r.status_code == 200 and r.json()["Success"] is True, r.text
    # The data directory is private now.
    assert stat.S_IMODE(os.stat(gw.data_dir).st_mode) == 0o700


def test_an_upgraded_installation_keeps_refusing_key_reuse(upgraded):
    """A new installation allows key reuse; an upgraded one gets key_reuse=false written on its root
    folder, so renewals there keep refusing the current key."""
    from rg_helpers import make_csr, wait_retrieve
    gw, m = upgraded
    lines = gw.cli("policy", "show", "\\VED\\Policy").stdout.splitlines()
    assert "key_reuse = false  # from \\VED\\Policy" in lines, lines
    admin = gw.session(token=gw.token(password=m["admin_password"]))
    key, csr = make_csr("reuse-up.example.com", dns=["reuse-up.example.com"])
    r = admin.post("/vedsdk/certificates/request", json={"PolicyDN": "\\VED\\Policy", "PKCS10": csr,
                                                          "ObjectName": "reuse-up.example.com"})
    assert r.status_code == 200, r.text
    dn = r.json()["CertificateDN"]
    wait_retrieve(admin, dn)
    _, again = make_csr("reuse-up.example.com", dns=["reuse-up.example.com"], key=key)
    r = admin.post("/vedsdk/certificates/renew", json={"CertificateDN": dn, "PKCS10": again})
    assert r.status_code == 400, r.text
    assert r.json()["Error"] == "This CSR appears to reuse a private key. Private key reuse has not been allowed."


def test_an_upgraded_installation_gets_issuing_rsa_under_its_root(upgraded):
    """The built-in `issuing-rsa` is added at upgrade, under the root the installation already had;
    the old certificates still retrieve and renew, an RSA key now from `issuing-rsa` and an EC key
    from `issuing`, each chaining to the old root; both new CAs publish a CRL."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from rg_helpers import load_certs, make_csr, wait_retrieve
    gw, m = upgraded
    lines = [l.split("\t") for l in gw.cli("ca", "list").stdout.splitlines()]
    assert ["issuing-rsa", "builtin", "enabled", "-"] in lines, lines
    bundle = load_certs(open(gw.ca_bundle, "rb").read())
    roots = [c for c in bundle if c.subject == c.issuer]
    assert len(roots) == 1, "the old root stays the only root"
    rsa_ca = [c for c in bundle if c.subject != c.issuer and isinstance(c.public_key(), rsa.RSAPublicKey)]
    assert len(rsa_ca) == 1 and rsa_ca[0].issuer == roots[0].subject
    rsa_ca[0].verify_directly_issued_by(roots[0])
    admin = gw.session(token=gw.token(password=m["admin_password"]))
    for cn, c in m["certificates"].items():
        old = retrieved_certs(retrieve(admin, c["dn"]))[0]
        for kind in ("rsa", "ec"):
            _, csr = make_csr(cn, dns=[cn], kind=kind)
            r = admin.post("/vedsdk/certificates/renew",
                           json={"CertificateDN": c["dn"], "PKCS10": csr, "WorkToDoTimeout": 30})
            assert r.status_code == 200 and r.json()["Success"] is True, r.text
            certs = retrieved_certs(wait_retrieve(admin, c["dn"], IncludeChain=True))
            leaf, issuer = certs[0], certs[1]
            assert leaf.serial_number != old.serial_number
            assert isinstance(issuer.public_key(), rsa.RSAPublicKey) == (kind == "rsa"), (cn, kind, issuer.subject)
            leaf.verify_directly_issued_by(issuer)
            issuer.verify_directly_issued_by(roots[0])
            crl = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            assert crl[0].full_name[0].value.endswith("/crl/issuing-rsa.crl" if kind == "rsa" else "/crl/issuing.crl")
    for name in ("issuing", "issuing-rsa", "root"):
        r = requests.get(f"{gw.url}/crl/{name}.crl", verify=gw.ca_bundle, timeout=30)
        assert r.status_code == 200, (name, r.text)
        x509.load_der_x509_crl(r.content)
