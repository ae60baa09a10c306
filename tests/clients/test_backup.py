"""`renewgate backup FILE` and `renewgate restore FILE`: a consistent copy of the SQLite database
taken with SQLite's online backup API while the gateway renews certificates, restored into a fresh
data directory under the same master key, with its inventory (every version's serial and
thumbprint), its private keys and its audit trail intact. Restore refuses while a gateway runs on
the data directory, under another master key, and a file that is not a sound SQLite database. On
PostgreSQL both commands name PostgreSQL's own tools and exit 2."""
import base64
import hashlib
import hmac
import os
import re
import sqlite3
import stat
import threading
import time
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rg_helpers import assert_json, openssl, renew, request_service, retrieved_certs, sha1_thumbprint, wait_retrieve

FOLDER = "\\VED\\Policy\\Backup"
PFX_PW = "Str0ng!Backup#2026"
KF = {"x-keyfactor-api-version": "1", "x-keyfactor-requested-with": "APIClient"}
SUMMARY_RE = r"^(?:backup|restored) (?P<path>.+): (?P<bytes>\d+) bytes, (?P<objects>\d+) certificate objects, " \
             r"master key (?P<key>[0-9a-f]{16})$"


def new_key_file(path):
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(path, 0o600)
    return path


def key_id(path):
    """The documented key id: the first 8 bytes of HMAC-SHA256(key, "renewgate-master-key-id"), hex."""
    raw = base64.b64decode(path.read_text().strip())
    return hmac.new(raw, b"renewgate-master-key-id", hashlib.sha256).hexdigest()[:16]


def summary(stdout):
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, f"one summary line on stdout: {stdout!r}"
    m = re.match(SUMMARY_RE, lines[0])
    assert m, lines[0]
    return m


def read_backup(path):
    """What the backup file holds, read with Python's sqlite3 (read-only)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        integrity = [r[0] for r in con.execute("PRAGMA integrity_check")]
        objects = {r[0]: {"guid": r[1], "dn": r[2], "current": r[3]}
                   for r in con.execute("SELECT id, guid, dn, current_cert_id FROM cert_objects")}
        certs = {r[0]: {"object": r[1], "serial": r[2], "thumbprint": r[3], "has_key": bool(r[4])}
                 for r in con.execute("SELECT id, object_id, serial, thumbprint, key_enc IS NOT NULL FROM certificates")}
        audit_ids = [r[0] for r in con.execute("SELECT id FROM audit_log ORDER BY id")]
        recorded_key = con.execute("SELECT key_id FROM master_key WHERE id = 1").fetchone()[0]
        journal = con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()
    return {"integrity": integrity, "objects": objects, "certs": certs, "audit_ids": audit_ids,
            "key_id": recorded_key, "journal": journal}


def kf_session(gw, password):
    s = gw.session(token=False)
    s.headers["Authorization"] = "Basic " + base64.b64encode(f"KEYFACTOR\\admin:{password}".encode()).decode()
    return s


def versions(gw, password, cert_ids):
    """{certificate id: (SerialNumber, Thumbprint)} as the gateway's Keyfactor API reports them."""
    s = kf_session(gw, password)
    out = {}
    for cid in cert_ids:
        r = s.get(f"/KeyfactorAPI/Certificates/{cid}", headers=KF)
        assert r.status_code == 200, f"certificate {cid}: {r.status_code} {r.text[:300]}"
        c = assert_json(r)
        out[cid] = (c["SerialNumber"].upper(), c["Thumbprint"].upper())
    return out


def audit_trail(gw, password):
    s = gw.session(token=gw.token(scope="certificate:manage;configuration:manage", password=password))
    r = s.get("/api/v1/audit", params={"limit": 10000})
    assert r.status_code == 200, r.text
    return assert_json(r)["records"]


def assert_key_matches(gw, password, cert_id, thumbprint, tmp_path):
    """Keyfactor Recover of one version: the PKCS#12, opened by `openssl pkcs12`, holds that
    certificate and a private key whose public key is the certificate's."""
    r = kf_session(gw, password).post("/KeyfactorAPI/Certificates/Recover", headers=KF,
                                      json={"Password": PFX_PW, "CertID": cert_id, "IncludeChain": False})
    assert r.status_code == 200, f"recover {cert_id}: {r.status_code} {r.text[:300]}"
    p12 = tmp_path / f"recover-{cert_id}.pfx"
    p12.write_bytes(base64.b64decode(assert_json(r)["PFX"]))
    cert_pem = openssl("pkcs12", "-in", str(p12), "-passin", f"pass:{PFX_PW}", "-nokeys", "-clcerts").stdout
    key_pem = openssl("pkcs12", "-in", str(p12), "-passin", f"pass:{PFX_PW}", "-nocerts", "-nodes").stdout
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    key = serialization.load_pem_private_key(key_pem[key_pem.index(b"-----BEGIN"):], None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert sha1_thumbprint(cert) == thumbprint
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        cert.public_key().public_bytes(serialization.Encoding.DER, spki), f"version {cert_id}: key does not match"


class RenewalLoad:
    """One thread per certificate object, each renewing its object and waiting for the result
    until stopped. Unexpected answers are collected, not raised (the main thread asserts)."""

    def __init__(self, gw, dns):
        self.token = gw.token()
        self.gw = gw
        self.dns = dns
        self.stop = threading.Event()
        self.done = []  # (time, dn) of every renewal that completed
        self.errors = []
        self.threads = [threading.Thread(target=self.run, args=(dn,), daemon=True) for dn in dns]

    def run(self, dn):
        s = self.gw.session(token=self.token)
        try:
            while not self.stop.is_set():
                old = retrieved_certs(wait_retrieve(s, dn))[0].serial_number
                r = renew(s, dn, WorkToDoTimeout=30)
                if r.status_code not in (200, 202):
                    self.errors.append(f"renew {dn}: {r.status_code} {r.text[:300]}")
                    return
                wait_retrieve(s, dn, not_serial=old, timeout=120)
                self.done.append((time.time(), dn))
        except Exception as e:  # noqa: BLE001 (reported by the main thread)
            self.errors.append(f"{dn}: {e!r}")

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=180)
        assert not any(t.is_alive() for t in self.threads), "a load thread did not stop"


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_backup_during_renewals_then_restore(backend, gateway_factory, tmp_path):
    key_file = new_key_file(tmp_path / "master.key")  # outside every data directory
    # A short lease: jobs running when the backup was taken are claimed again soon after the restore.
    env = {"RENEWGATE_MASTER_KEY_FILE": str(key_file), "RENEWGATE_QUEUE__LEASE_SECS": "10"}
    if backend == "postgres":
        gw = gateway_factory(env=env)
        db_name = gw.database.name
        # The command never connects: a password in the URL must not be echoed.
        url = f"postgres://postgres:hunter2-secret@127.0.0.1:5432/{db_name}"
        r = gw.cli("backup", str(tmp_path / "x.db"), check=False, env={"RENEWGATE_DATABASE_URL": url})
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert r.stdout == "" and "pg_dump" in r.stderr and db_name in r.stderr, r.stderr
        assert "hunter2-secret" not in r.stderr
        assert not (tmp_path / "x.db").exists()
        r = gw.cli("restore", str(tmp_path / "x.db"), check=False)
        assert r.returncode == 2 and "pg_restore" in r.stderr and db_name in r.stderr, r.stderr
        assert gw.session(token=False).get("/health").status_code == 200
        return

    orig = gateway_factory(env=env)
    password = orig.admin_password
    orig.cli("policy", "set", FOLDER)
    s = orig.session()
    dns = [request_service(s, FOLDER, f"bk{i}-{uuid.uuid4().hex[:6]}.example.com",
                           key_algorithm="RSA" if i == 0 else "ECC", **({"KeyBitSize": 2048} if i == 0 else {}))
           for i in range(4)]
    for dn in dns:
        wait_retrieve(s, dn)
    backup = tmp_path / "backups" / "renewgate-backup.db"
    backup.parent.mkdir()

    with RenewalLoad(orig, dns) as load:
        wait_for(lambda: len(load.done) >= 4 or load.errors, 120, "renewals before the backup")
        started = time.time()
        r = orig.cli("backup", str(backup))
        finished = time.time()
        # A restore while this gateway runs on the data directory: refused, nothing changed.
        refused = orig.cli("restore", str(backup), check=False)
        wait_for(lambda: any(t > finished for t, _ in load.done) or load.errors, 120, "renewals after the backup")
    assert not load.errors, load.errors
    assert any(t < started for t, _ in load.done) and any(t > finished for t, _ in load.done)
    assert refused.returncode != 0 and refused.stdout == "", refused.stdout
    assert "gateway is running" in refused.stderr and str(orig.data_dir / "renewgate.lock") in refused.stderr, \
        refused.stderr
    assert orig.session(token=False).get("/health").status_code == 200

    # The file: 0600, sound, self-contained, and what the summary says.
    m = summary(r.stdout)
    assert m["path"] == str(backup) and int(m["bytes"]) == backup.stat().st_size
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert [p.name for p in backup.parent.iterdir()] == [backup.name], "no temporary file left behind"
    held = read_backup(backup)
    assert held["integrity"] == ["ok"]
    assert held["journal"] == "delete", "the backup is one file (rollback journal, no -wal needed)"
    assert int(m["objects"]) == len(held["objects"]) and len(held["objects"]) >= len(dns)
    assert m["key"] == held["key_id"] == key_id(key_file)
    for o in held["objects"].values():
        assert o["current"] is None or o["current"] in held["certs"], "consistent: the current version is there"
    ours = [c for c in held["certs"].values() if held["objects"][c["object"]]["dn"] in dns]
    assert len(ours) > len(dns), "renewals issued before the backup are in it"
    for password_text in (password, key_file.read_text().strip()):
        assert password_text not in r.stdout + r.stderr

    # What the original gateway reports for the versions and the audit records the backup holds.
    before = versions(orig, password, sorted(held["certs"]))
    orig_audit = audit_trail(orig, password)
    assert [a["id"] for a in orig_audit][:len(held["audit_ids"])] == held["audit_ids"], \
        "the backup's audit trail is a prefix of the original's"
    for cid, c in held["certs"].items():
        assert before[cid] == (c["serial"].upper(), c["thumbprint"].upper())
    orig.stop()

    # Restore into a fresh data directory with the same key: refused under another key first.
    restored = gateway_factory(env=env, data_dir=tmp_path / "restored-data", start=False)
    other = new_key_file(tmp_path / "other.key")
    r = restored.cli("restore", str(backup), check=False, env={"RENEWGATE_MASTER_KEY_FILE": str(other)})
    assert r.returncode != 0 and r.stdout == ""
    assert key_id(key_file) in r.stderr and key_id(other) in r.stderr, r.stderr
    assert not (restored.data_dir / "renewgate.db").exists()
    # Not a database / a damaged one: refused.
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(64 * 1024))
    r = restored.cli("restore", str(junk), check=False)
    assert r.returncode != 0 and "database" in r.stderr, r.stderr
    damaged = tmp_path / "damaged.db"
    data = bytearray(backup.read_bytes())
    page = sqlite3.connect(str(backup)).execute("PRAGMA page_size").fetchone()[0]
    data[2 * page:4 * page] = os.urandom(2 * page)
    damaged.write_bytes(bytes(data))
    r = restored.cli("restore", str(damaged), check=False)
    assert r.returncode != 0 and "integrity_check" in r.stderr, r.stderr
    assert not (restored.data_dir / "renewgate.db").exists()

    r = restored.cli("restore", str(backup))
    rm = summary(r.stdout)
    assert (rm["objects"], rm["key"]) == (m["objects"], m["key"])
    live = restored.data_dir / "renewgate.db"
    assert stat.S_IMODE(live.stat().st_mode) == 0o600
    restored.start()

    # Every object of the backup, with every version it held, as the original reported them.
    after = versions(restored, password, sorted(held["certs"]))
    assert after == before
    rs = restored.session(token=restored.token(password=password))
    for oid, o in held["objects"].items():
        r = rs.post("/vedsdk/config/dntoguid", json={"ObjectDN": o["dn"]})
        assert r.status_code == 200 and r.json()["GUID"].strip("{}").lower() == o["guid"].strip("{}").lower(), r.text
    # Private keys of every version that has one: retrievable, matching the certificate.
    with_keys = [cid for cid in sorted(held["certs"]) if held["certs"][cid]["has_key"]]
    assert len(with_keys) >= len(ours)
    for cid in with_keys:
        assert_key_matches(restored, password, cid, held["certs"][cid]["thumbprint"].upper(), tmp_path)
    # The audit trail: the original's first N records, N the backup's.
    restored_audit = {a["id"]: a for a in audit_trail(restored, password)}
    n = len(held["audit_ids"])
    assert [restored_audit[i] for i in held["audit_ids"]] == orig_audit[:n]
    # Renewals in flight when the backup was taken complete on the restored gateway, and a new
    # one works (the CA keys open under the same master key).
    for dn in dns:
        wait_retrieve(rs, dn, timeout=120)
    for dn in dns[:1]:
        old = retrieved_certs(wait_retrieve(rs, dn))[0].serial_number
        assert renew(rs, dn).status_code == 200
        assert retrieved_certs(wait_retrieve(rs, dn, not_serial=old))[0].serial_number != old

    # A second gateway on the same SQLite data directory is refused (it holds the lock).
    twin = gateway_factory(env=env, data_dir=restored.data_dir, start=False)
    twin.start(wait=False)
    assert twin.proc.wait(timeout=60) != 0
    assert "renewgate.lock" in Path(twin.log_path).read_text()
    assert restored.session(token=False).get("/health").status_code == 200


def test_restore_refusals_without_a_backup_taken_live(backend, gateway_factory, tmp_path):
    """Restore's refusals on each backend: PostgreSQL names pg_restore and exits 2; SQLite
    refuses a missing file and a database with no key id, changing nothing."""
    gw = gateway_factory()
    if backend == "postgres":
        r = gw.cli("restore", str(tmp_path / "nothing.dump"), check=False)
        assert r.returncode == 2 and "pg_restore" in r.stderr and "psql" in r.stderr, r.stderr
        return
    gw.stop()
    db = gw.data_dir / "renewgate.db"
    before = db.read_bytes()
    r = gw.cli("restore", str(tmp_path / "missing.db"), check=False)
    assert r.returncode != 0 and "missing.db" in r.stderr, r.stderr
    empty = tmp_path / "empty.db"
    sqlite3.connect(str(empty)).execute("CREATE TABLE t (x)").connection.commit()
    r = gw.cli("restore", str(empty), check=False)
    assert r.returncode != 0 and r.stdout == "", r.stderr
    assert db.read_bytes() == before, "a refused restore changes nothing"
    gw.start()
    assert gw.session(token=False).get("/health").status_code == 200
