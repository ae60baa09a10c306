"""Master-key rotation: `renewgate master-key rotate --new-key-file` re-seals every stored secret (CA
keys, service-generated private keys, store passwords, ACME EAB keys) under a new key in one
transaction; blobs name their key id; an instance holding another key than the database's refuses
to start, naming both ids; a failed rotation changes nothing."""
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import subprocess
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from conftest import PG_HOST, PG_PORT, PG_USER, REPO, Database, Gateway
from rg_helpers import (db_exec, db_rows, db_scalar, key_pem, leaf_of, make_ca, openssl_verify, request_service,
                        sha1_thumbprint, wait_retrieve)
from test_acme_accounts import Client, Key

PW = "Str0ng!Passw0rd#26"
STORE_PW = "St0re!Passw0rd#26"
# Every column holding sealed blobs (crates/renewgate-core/src/db/sealed.rs SEALED).
SEALED = [("cas", "key_enc"), ("certificates", "key_enc"), ("stores", "password_enc"), ("acme_eab_keys", "hmac_enc"),
          ("issuers", "eab_hmac_enc"), ("issuers", "account_key_enc"), ("issuers", "tsig_secret_enc"),
          ("jobs", "key_enc")]
RG2 = b"RG2".hex()


def new_key_file(path, mode=0o600):
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(path, mode)
    return path


def key_id(key_b64):
    """The documented key id: the first 8 bytes of HMAC-SHA256(key, "renewgate-master-key-id"), hex."""
    raw = base64.b64decode(key_b64.strip())
    return hmac.new(raw, b"renewgate-master-key-id", hashlib.sha256).hexdigest()[:16]


def file_key_id(path):
    return key_id(path.read_text())


def show(gw, env=None):
    """`master-key show` -> {"configured": id, "database": id or "-"}."""
    out = gw.cli("master-key", "show", env=env).stdout
    rows = dict(line.split("\t")[:2] for line in out.splitlines())
    assert set(rows) == {"configured", "database"}, out
    return rows


def blobs(gw):
    """Every sealed blob as lower-case hex, by column and row id (a database not migrated yet has
    no rows in the columns later migrations add)."""
    out = {}
    for table, col in SEALED:
        hexed = f"hex({col})" if gw.database.backend == "sqlite" else f"encode({col}, 'hex')"
        try:
            rows = db_rows(gw, f"SELECT id, {hexed} FROM {table} WHERE {col} IS NOT NULL ORDER BY id")
        except Exception as e:  # noqa: BLE001 (sqlite3 and psql report a missing column differently)
            assert "issuers" in str(e) or "key_enc" in str(e), e
            rows = []
        out[f"{table}.{col}"] = {r[0]: r[1].lower() for r in rows}
    return out


def blob_key_ids(snapshot):
    ids = set()
    for rows in snapshot.values():
        for h in rows.values():
            ids.add(h[6:22] if h.startswith(RG2) else "legacy")
    return ids


def counts(stdout):
    """`  re-sealed N WHAT (table.column)` lines -> {"table.column": N}."""
    return {m.group(2): int(m.group(1)) for m in re.finditer(r"re-sealed (\d+) .+ \((\w+\.\w+)\)$", stdout, re.M)}


def refused_start(gateway_factory, g, env):
    """Starts an instance on g's database and data directory with env; it must exit non-zero.
    Returns its output."""
    bad = gateway_factory(env=env, database=g.database, data_dir=g.data_dir, start=False)
    bad.start(wait=False)
    rc = bad.proc.wait(timeout=60)
    out = bad.logs()
    assert rc != 0, out
    assert "panicked" not in out, out
    return out


def retrieve_key_and_cert(s, dn):
    """Retrieve as `Base64 (PKCS #8)` with the encrypted private key: (certificate, private key)."""
    r = s.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": "Base64 (PKCS #8)",
                                                       "IncludePrivateKey": True, "Password": PW})
    assert r.status_code == 200, r.text
    pem = base64.b64decode(r.json()["CertificateData"])
    cert = x509.load_pem_x509_certificates(pem)[0]
    key = serialization.load_pem_private_key(pem[pem.index(b"-----BEGIN ENCRYPTED PRIVATE KEY"):], PW.encode())
    return cert, key


def spki(k):
    return k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def intermediate_ca(root_key, root, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(root.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    return key, cert


def kf_add_to_store(gw, cert_id, store):
    """Keyfactor CertificateStores/Certificates/Add: one push job for the store."""
    s = gw.session(token=False)
    s.headers["Authorization"] = "Basic " + base64.b64encode(f"KEYFACTOR\\admin:{gw.admin_password}".encode()).decode()
    r = s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", json={
        "CertificateId": cert_id, "CertificateStores": [{"CertificateStoreId": store}], "Schedule": {"Immediate": True}})
    assert r.status_code == 200, r.text
    return r.json()


def test_rotation_keeps_every_secret_and_the_old_key_is_refused(gateway_factory, tmp_path):
    old_file = new_key_file(tmp_path / "old.key")
    g = gateway_factory(env={"RENEWGATE_MASTER_KEY_FILE": str(old_file)})
    old_id = file_key_id(old_file)
    assert show(g) == {"configured": old_id, "database": old_id}, "the first start records the key id"
    s = g.session()
    # A secret of every kind: a service-generated private key, a store password, an EAB key, an
    # imported CA (its key and the empty blob of its chain certificate) besides the built-in CAs.
    folder = "\\VED\\Policy\\Rotate"
    g.cli("policy", "set", folder, "domains=rotate.example.com")
    dn = request_service(s, folder, "svc.rotate.example.com", WorkToDoTimeout=30)
    leaf = leaf_of(s, dn)
    cert_before, key_before = retrieve_key_and_cert(s, dn)
    assert spki(key_before.public_key()) == spki(cert_before.public_key())
    machine = f"rotate-{uuid.uuid4().hex[:6]}"
    store = g.cli("store", "add", "--client-machine", machine, "--store-path", "/rotate/tls.p12", "--type", "pkcs12",
                  "--password-stdin", "--include-keys", input=STORE_PW + "\n").stdout.strip()
    acme_folder = "\\VED\\Policy\\Rotate ACME"
    g.cli("policy", "set", acme_folder, "domains=example.test")
    eab = dict(line.split("=", 1) for line in g.cli("acme", "eab", "create", "--policy", acme_folder).stdout.split())
    root_key, root = make_ca("Rotate Foreign Root")
    int_key, inter = intermediate_ca(root_key, root, "Rotate Foreign Issuing")
    chain = tmp_path / "foreign-chain.pem"
    chain.write_bytes(inter.public_bytes(serialization.Encoding.PEM) + root.public_bytes(serialization.Encoding.PEM))
    ikey = tmp_path / "foreign.key"
    ikey.write_text(key_pem(int_key))
    g.cli("ca", "import", "rotate-foreign", "--cert", str(chain), "--key", str(ikey))
    # An upstream ACME issuer's EAB key (its account is registered on first use).
    upstream_eab = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    g.cli("ca", "add", "rotate-upstream", "--acme-directory", "https://acme.example.net/directory",
          "--eab-kid", "rotate-kid", "--eab-hmac-key-stdin", "--solver", "none", input=upstream_eab)
    g.stop()

    before = blobs(g)
    assert blob_key_ids(before) == {old_id}, "new blobs name the key they are sealed under"
    # root, issuing, issuing-rsa, the imported CA and its chain certificate
    assert len(before["cas.key_enc"]) == 5 and len(before["stores.password_enc"]) == 1
    assert len(before["issuers.eab_hmac_enc"]) == 1
    assert len(before["acme_eab_keys.hmac_enc"]) == 1 and len(before["certificates.key_enc"]) >= 1

    # Rotate, the old key still configured. A new key file readable by others gets a warning.
    new_file = new_key_file(tmp_path / "new.key", mode=0o644)
    new_id = file_key_id(new_file)
    r = g.cli("master-key", "rotate", "--new-key-file", str(new_file))
    assert "warning" in r.stderr and "0644" in r.stderr, r.stderr
    assert f"{old_id} -> {new_id}" in r.stdout, r.stdout
    assert counts(r.stdout) == {k: len(v) for k, v in before.items()}, r.stdout
    assert "RENEWGATE_MASTER_KEY_FILE" in r.stderr and str(new_file) in r.stderr, r.stderr
    for secret in (old_file.read_text().strip(), new_file.read_text().strip()):
        assert secret not in r.stdout + r.stderr, "a master key was printed"
    after = blobs(g)
    assert {k: set(v) for k, v in after.items()} == {k: set(v) for k, v in before.items()}
    assert blob_key_ids(after) == {new_id}, "every blob is re-sealed under the new key"
    assert old_file.read_text() and not (g.data_dir / "master.key").exists(), "a configured key file is not touched"
    assert show(g, env={"RENEWGATE_MASTER_KEY_FILE": str(new_file)}) == {"configured": new_id, "database": new_id}
    audit = [json.loads(line) for line in
             g.cli("audit", "--action", "master_key_change", env={"RENEWGATE_MASTER_KEY_FILE": str(new_file)})
             .stdout.splitlines()]
    assert len(audit) == 1 and old_id in audit[0]["detail"] and new_id in audit[0]["detail"], audit

    # Only the old key: the gateway and the CLI refuse, naming both ids.
    message = (f"the database's secrets are sealed under master key {new_id}; this instance holds master key {old_id}: "
               "configure the rotated key (RENEWGATE_MASTER_KEY_FILE)")
    out = refused_start(gateway_factory, g, {"RENEWGATE_MASTER_KEY_FILE": str(old_file)})
    assert message in out, out
    r = g.cli("ca", "show", check=False)
    assert r.returncode != 0 and r.stdout == "" and message in r.stderr, r.stderr
    # Rotating again from the old key: refused, nothing changed.
    third = new_key_file(tmp_path / "third.key")
    r = g.cli("master-key", "rotate", "--new-key-file", str(third), check=False)
    assert r.returncode != 0 and new_id in r.stderr and old_id in r.stderr and "nothing was changed" in r.stderr, r.stderr
    assert blobs(g) == after

    # The new key: everything works.
    g.extra_env["RENEWGATE_MASTER_KEY_FILE"] = str(new_file)
    g.start()
    s = g.session()
    cert_after, key_after = retrieve_key_and_cert(s, dn)
    assert cert_after.serial_number == leaf.serial_number == cert_before.serial_number
    assert spki(key_after.public_key()) == spki(cert_after.public_key()) == spki(key_before.public_key())
    r = s.post("/vedsdk/certificates/retrieve", json={"CertificateDN": dn, "Format": "PKCS #12",
                                                       "IncludePrivateKey": True, "Password": PW})
    assert r.status_code == 200, r.text
    p12_key, p12_cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(r.json()["CertificateData"]), PW.encode())
    assert spki(p12_key.public_key()) == spki(p12_cert.public_key()) == spki(key_before.public_key())
    # The built-in CA still issues.
    fresh = request_service(s, folder, "after.rotate.example.com", WorkToDoTimeout=30)
    new_leaf = leaf_of(s, fresh)
    openssl_verify(g.ca_bundle, new_leaf.public_bytes(serialization.Encoding.PEM))
    # The imported CA still issues (its key opened under the new key).
    foreign_folder = "\\VED\\Policy\\Rotate Foreign"
    g.cli("policy", "set", foreign_folder, "ca=rotate-foreign", "domains=rotate.example.com")
    foreign = leaf_of(s, request_service(s, foreign_folder, "foreign.rotate.example.com", WorkToDoTimeout=30))
    assert foreign.issuer == inter.subject
    # The store password (and the private key) reach the store's agent.
    cert_id = int(db_scalar(g, f"SELECT id FROM certificates WHERE thumbprint = '{sha1_thumbprint(leaf)}'"))
    kf_add_to_store(g, cert_id, store)
    token = g.cli("agent", "token", "create", "--client-machine", machine).stdout.strip()
    r = g.session(token=token).get("/api/v1/agent/jobs")
    assert r.status_code == 200, r.text
    [job] = r.json()
    assert job["store_password"] == STORE_PW
    agent_key = serialization.load_pem_private_key(job["private_key_pem"].encode(), None)
    assert spki(agent_key.public_key()) == spki(key_before.public_key())
    # The EAB key still binds a new ACME account.
    c = Client(g, Key("ES256"))
    r = c.register(eab["EAB_KID"], eab["EAB_HMAC_KEY"])
    assert r.status_code == 201, r.text
    # Blobs written after the rotation name the new key.
    assert blob_key_ids(blobs(g)) == {new_id}


def test_failed_rotations_change_nothing_and_the_default_key_file_is_replaced(gateway_factory, tmp_path):
    g = gateway_factory()
    default = g.data_dir / "master.key"
    old_text = default.read_text()
    old_id = key_id(old_text)
    s = g.session()
    folder = "\\VED\\Policy\\Rotate Default"
    g.cli("policy", "set", folder, "domains=default.example.com")
    dn = request_service(s, folder, "svc.default.example.com", WorkToDoTimeout=30)
    _, key_before = retrieve_key_and_cert(s, dn)
    g.stop()
    before = blobs(g)
    new_file = new_key_file(tmp_path / "new.key")
    new_id = file_key_id(new_file)

    def unchanged():
        assert blobs(g) == before
        assert default.read_text() == old_text
        assert not (g.data_dir / "master.key.old").exists()
        assert show(g) == {"configured": old_id, "database": old_id}

    # A wrong "old" key configured: refused before anything is written.
    wrong = base64.b64encode(os.urandom(32)).decode()
    r = g.cli("master-key", "rotate", "--new-key-file", str(new_file), env={"RENEWGATE_MASTER_KEY": wrong}, check=False)
    assert r.returncode != 0, r.stdout
    assert f"sealed under master key {old_id}" in r.stderr and key_id(wrong) in r.stderr, r.stderr
    assert wrong not in r.stderr + r.stdout
    unchanged()
    # A new key file that is no key, or the configured key again.
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    r = g.cli("master-key", "rotate", "--new-key-file", str(bad), check=False)
    assert r.returncode != 0 and str(bad) in r.stderr, r.stderr
    r = g.cli("master-key", "rotate", "--new-key-file", str(default), check=False)
    assert r.returncode != 0 and "nothing to rotate" in r.stderr, r.stderr
    unchanged()
    # One secret the configured key cannot open (its tag damaged): the whole rotation is rolled back.
    cid, good = next(iter(before["certificates.key_enc"].items()))
    damaged = good[:-2] + ("00" if good[-2:] != "00" else "01")
    literal = f"X'{damaged}'" if g.database.backend == "sqlite" else f"decode('{damaged}', 'hex')"
    db_exec(g, f"UPDATE certificates SET key_enc = {literal} WHERE id = {cid}")
    r = g.cli("master-key", "rotate", "--new-key-file", str(new_file), check=False)
    assert r.returncode != 0, r.stdout
    assert f"certificates.key_enc, id {cid}" in r.stderr and "nothing was changed" in r.stderr, r.stderr
    after_failure = blobs(g)
    after_failure["certificates.key_enc"][cid] = good
    assert after_failure == before
    literal = f"X'{good}'" if g.database.backend == "sqlite" else f"decode('{good}', 'hex')"
    db_exec(g, f"UPDATE certificates SET key_enc = {literal} WHERE id = {cid}")
    unchanged()

    # The default key file: replaced by the new key after the commit, the old key kept (0600).
    r = g.cli("master-key", "rotate", "--new-key-file", str(new_file))
    assert f"{old_id} -> {new_id}" in r.stdout
    assert str(default) in r.stderr and "master.key.old" in r.stderr, r.stderr
    assert key_id(default.read_text()) == new_id
    assert stat.S_IMODE(os.stat(default).st_mode) == 0o600
    backup = g.data_dir / "master.key.old"
    assert backup.read_text() == old_text and stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    # The default setup keeps working: started as before, the key retrievable.
    g.start()
    _, key_after = retrieve_key_and_cert(g.session(), dn)
    assert spki(key_after.public_key()) == spki(key_before.public_key())
    g.stop()
    out = refused_start(gateway_factory, g, {"RENEWGATE_MASTER_KEY_FILE": str(backup)})
    assert f"sealed under master key {new_id}; this instance holds master key {old_id}" in out, out
    # A second rotation keeps the first backup under its key id.
    newer = new_key_file(tmp_path / "newer.key")
    g.cli("master-key", "rotate", "--new-key-file", str(newer))
    assert key_id(backup.read_text()) == new_id
    assert (g.data_dir / f"master.key.old.{old_id}").read_text() == old_text
    assert key_id(default.read_text()) == file_key_id(newer)


@pytest.fixture
def upgraded(backend, tmp_path):
    """A data directory (and PostgreSQL database) written before key ids (test_upgrade's fixtures),
    not started by this build yet."""
    src = REPO / "tests" / "fixtures" / "upgrade" / backend
    manifest = json.loads((src / "manifest.json").read_text())
    data = tmp_path / "data"
    shutil.copytree(src / "data", data)
    db = Database(backend)
    if backend == "postgres":
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", db.name,
                        "-f", str(src / "dump.sql")], check=True, capture_output=True)
    gw = Gateway(tmp_path, db, data_dir=data)
    yield gw, manifest
    gw.stop(kill=True)
    db.drop()


def test_an_upgraded_installation_rotates_its_legacy_blobs(upgraded, gateway_factory, tmp_path):
    gw, m = upgraded
    before = blobs(gw)
    assert blob_key_ids(before) == {"legacy"}
    # A wrong key on a database without a recorded key id: the start stops at the CA key, as
    # before, and records nothing.
    wrong = base64.b64encode(os.urandom(32)).decode()
    out = refused_start(gateway_factory, gw, {"RENEWGATE_MASTER_KEY": wrong})
    assert "the master key cannot decrypt the stored key of CA" in out, out
    assert show(gw)["database"] == "-"
    # Rotated before this build ever started on it: every legacy blob opens and is re-sealed.
    new_file = new_key_file(tmp_path / "new.key")
    new_id = file_key_id(new_file)
    r = gw.cli("master-key", "rotate", "--new-key-file", str(new_file))
    total = sum(len(v) for v in before.values())
    assert f"({total} of {total} were in the format without key id)" in r.stdout, r.stdout
    assert blob_key_ids(blobs(gw)) == {new_id}
    assert show(gw) == {"configured": new_id, "database": new_id}
    gw.start()
    admin = gw.session(token=gw.token(password=m["admin_password"]))
    for cn, c in m["certificates"].items():
        cert, key = retrieve_key_and_cert(admin, c["dn"])
        assert format(cert.serial_number, "X") == c["serial"], cn
        assert spki(key.public_key()) == spki(cert.public_key()), cn
    r = admin.post("/vedsdk/certificates/renew", json={"CertificateDN": m["certificates"]["up-a.example.com"]["dn"],
                                                        "WorkToDoTimeout": 30})
    assert r.status_code == 200 and r.json()["Success"] is True, r.text
    wait_retrieve(admin, m["certificates"]["up-a.example.com"]["dn"])
