"""Durability of the job queue: renewals accepted before a kill -9 complete after the restart,
and none is processed into two certificates."""
import threading
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rg_helpers import (cert_pem, db_rows, db_scalar, key_pem, make_ca, make_csr, make_leaf, public_key_der, renew,
                        request_csr, request_service, retrieve, retrieved_certs, wait_retrieve)

ROOT = "\\VED\\Policy"


def assert_queue_consistent(gw, dns, versions_each):
    """Every job done, each with exactly one certificate that points back to it, and each object with
    exactly `versions_each` versions."""
    in_list = ",".join("'" + d.replace("'", "''").lower() + "'" for d in dns)
    objects = db_rows(gw, f"SELECT id, state, COALESCE(pending_job_id, 0) FROM cert_objects WHERE dn_lower IN ({in_list})")
    assert len(objects) == len(dns), objects
    ids = ",".join(o[0] for o in objects)
    for oid, state, pending in objects:
        assert state == "active" and pending == "0", (oid, state, pending)
    versions = dict(db_rows(gw, f"SELECT object_id, COUNT(*) FROM certificates WHERE object_id IN ({ids}) GROUP BY object_id"))
    assert versions == {o[0]: str(versions_each) for o in objects}, versions
    jobs = db_rows(gw, f"SELECT id, state, COALESCE(result_cert_id, 0) FROM jobs WHERE object_id IN ({ids})")
    assert len(jobs) == len(dns) * versions_each, jobs
    assert all(j[1] == "done" for j in jobs), [j for j in jobs if j[1] != "done"]
    twice = db_rows(gw, f"SELECT job_id, COUNT(*) FROM certificates WHERE object_id IN ({ids}) "
                        "GROUP BY job_id HAVING COUNT(*) > 1")
    assert twice == [], f"jobs with more than one certificate: {twice}"
    linked = db_scalar(gw, f"SELECT COUNT(*) FROM jobs j JOIN certificates c ON c.id = j.result_cert_id "
                           f"AND c.job_id = j.id WHERE j.object_id IN ({ids})")
    assert linked == str(len(jobs)), f"{linked} of {len(jobs)} jobs point at the certificate they produced"
    orphans = db_scalar(gw, f"SELECT COUNT(*) FROM certificates WHERE object_id IN ({ids}) AND job_id IS NULL")
    assert orphans == "0"


def test_accepted_renewals_survive_kill_9(gateway_factory):
    n = 8
    gw = gateway_factory()
    s = gw.session()
    dns = [request_service(s, ROOT, f"durable{i}-{uuid.uuid4().hex[:6]}.example.com") for i in range(n)]
    old = {d: retrieved_certs(wait_retrieve(s, d))[0].serial_number for d in dns}
    gw.stop()

    # Accept the renewals on an instance whose workers never run them.
    paused = gateway_factory(env={"RENEWGATE_QUEUE__WORKERS": "0"}, database=gw.database, data_dir=gw.data_dir)
    sp = paused.session()
    for d in dns:
        r = renew(sp, d)
        assert r.status_code == 200 and r.json()["Success"] is True, r.text
    queued = db_scalar(paused, "SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
    assert queued == str(n), queued
    for d in dns:
        r = retrieve(sp, d)
        assert r.status_code == 202 and r.json()["Status"] == "Queued for renewal.", r.text
    paused.stop(kill=True)

    # Restart with workers: every accepted renewal completes, none twice.
    resumed = gateway_factory(database=gw.database, data_dir=gw.data_dir)
    sr = resumed.session()
    for d in dns:
        new = retrieved_certs(wait_retrieve(sr, d, not_serial=old[d]))[0]
        assert new.serial_number != old[d]
    assert_queue_consistent(resumed, dns, versions_each=2)


def test_jobs_running_at_kill_9_are_recovered_after_their_lease(gateway_factory, tmp_path):
    """Slow issuance (service-generated RSA-4096 keys) with a 2 s lease: kill -9 while jobs are
    running; after the restart the expired leases are claimed again and every job ends with exactly
    one certificate (a worker that lost its lease must not commit its result)."""
    env = {"RENEWGATE_QUEUE__LEASE_SECS": "2", "RENEWGATE_QUEUE__POLL_MS": "100"}
    n = 3
    gw = gateway_factory(env=env)
    # The objects come from `cert import --key` with an RSA-4096 key: service-generated objects whose
    # renewals generate RSA-4096 keys (slow), without paying for slow enrollments first.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    ca_key, ca_cert = make_ca("Durability Import CA")
    leaves = [make_leaf(ca_key, ca_cert, f"lease{i}-{uuid.uuid4().hex[:6]}.example.com", key=rsa_key)[1]
              for i in range(n)]
    (tmp_path / "certs.pem").write_text("".join(cert_pem(c) for c in leaves) + cert_pem(ca_cert))
    (tmp_path / "key.pem").write_text(key_pem(rsa_key))
    out = gw.cli("cert", "import", "--policy", "\\VED\\Policy\\Lease", str(tmp_path / "certs.pem"),
                 "--key", str(tmp_path / "key.pem")).stdout
    dns = [line.split("\t")[2] for line in out.splitlines()]
    assert len(dns) == n, out
    s = gw.session()
    old = {d: retrieved_certs(wait_retrieve(s, d))[0].serial_number for d in dns}
    for d in dns:
        r = renew(s, d)
        assert r.status_code == 200, r.text

    # Wait until a renewal job is being worked on, then kill -9.
    deadline = time.time() + 60
    running = []
    while time.time() < deadline:
        running = db_rows(gw, "SELECT id FROM jobs WHERE state = 'running'")
        if running:
            break
        time.sleep(0.02)
    assert running, "no job was seen running"
    gw.stop(kill=True)
    interrupted = [r[0] for r in db_rows(gw, "SELECT id FROM jobs WHERE state = 'running'")]
    assert interrupted, "the kill -9 left no running job (RSA-4096 key generation finished first?)"

    resumed = gateway_factory(env=env, database=gw.database, data_dir=gw.data_dir)
    sr = resumed.session()
    for d in dns:
        new = retrieved_certs(wait_retrieve(sr, d, timeout=240, not_serial=old[d]))[0]
        assert new.serial_number != old[d]
        assert isinstance(new.public_key(), rsa.RSAPublicKey) and new.public_key().key_size == 4096
        assert public_key_der(new) != public_key_der(rsa_key)
    # Imported versions have no job; each renewal job produced exactly one certificate.
    in_list = ",".join("'" + d.replace("'", "''").lower() + "'" for d in dns)
    ids = ",".join(r[0] for r in db_rows(resumed, f"SELECT id FROM cert_objects WHERE dn_lower IN ({in_list})"))
    versions = db_rows(resumed, f"SELECT object_id, COUNT(*) FROM certificates WHERE object_id IN ({ids}) GROUP BY object_id")
    assert sorted(v[1] for v in versions) == ["2"] * n, versions
    jobs = db_rows(resumed, f"SELECT id, state FROM jobs WHERE object_id IN ({ids})")
    assert len(jobs) == n and all(j[1] == "done" for j in jobs), jobs
    per_job = db_rows(resumed, f"SELECT j.id, COUNT(c.id) FROM jobs j LEFT JOIN certificates c ON c.job_id = j.id "
                               f"WHERE j.object_id IN ({ids}) GROUP BY j.id")
    assert all(c == "1" for _, c in per_job) and len(per_job) == n, per_job
    linked = db_scalar(resumed, f"SELECT COUNT(*) FROM jobs j JOIN certificates c ON c.id = j.result_cert_id "
                                f"AND c.job_id = j.id WHERE j.object_id IN ({ids})")
    assert linked == str(n)
    # A job interrupted while running was claimed again after its lease expired.
    for job_id in interrupted:
        attempts = int(db_scalar(resumed, f"SELECT attempts FROM jobs WHERE id = {job_id}"))
        assert attempts >= 2, f"job {job_id} was running at the kill; attempts = {attempts}"


def test_kill_9_under_load_at_1000_accepted_renewals(gateway_factory, tmp_path):
    """A crash under load: sixteen clients have 1,000 renewals accepted (queued: no WorkToDoTimeout)
    while one worker issues them; kill -9 the moment the 1,000th is accepted. After the restart
    every accepted renewal completes exactly once: no job lost, none with two certificates."""
    n, clients = 1000, 16
    env = {"RENEWGATE_QUEUE__LEASE_SECS": "2", "RENEWGATE_QUEUE__POLL_MS": "100"}
    # One worker: issuance is slower than acceptance, so the kill finds the queue full.
    gw = gateway_factory(env={**env, "RENEWGATE_QUEUE__WORKERS": "1"})
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key, ca_cert = make_ca("Crash Import CA")
    tag = uuid.uuid4().hex[:6]
    leaves = [make_leaf(ca_key, ca_cert, f"crash{i}-{tag}.example.com", key=key)[1] for i in range(n)]
    (tmp_path / "certs.pem").write_text("".join(cert_pem(c) for c in leaves) + cert_pem(ca_cert))
    (tmp_path / "key.pem").write_text(key_pem(key))
    out = gw.cli("cert", "import", "--policy", "\\VED\\Policy\\Crash", str(tmp_path / "certs.pem"),
                 "--key", str(tmp_path / "key.pem")).stdout
    dns = [line.split("\t")[2] for line in out.splitlines()]
    assert len(dns) == n, out[-500:]

    accepted, refused = [], []
    lock = threading.Lock()
    token = gw.token("certificate:manage")

    def client(part):
        s = gw.session(token)
        for d in part:
            r = renew(s, d)
            with lock:
                (accepted if r.status_code == 200 and r.json().get("Success") is True else refused).append((d, r.text))

    threads = [threading.Thread(target=client, args=(dns[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gw.stop(kill=True)
    assert refused == [] and len(accepted) == n, refused[:3]
    open_at_kill = int(db_scalar(gw, "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')"))
    assert open_at_kill > 0, "every job was done before the kill: the crash was not under load"

    resumed = gateway_factory(env=env, database=gw.database, data_dir=gw.data_dir)
    deadline = time.time() + 600
    while time.time() < deadline:
        if db_scalar(resumed, "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')") == "0":
            break
        time.sleep(0.5)
    in_list = ",".join("'" + d.replace("'", "''").lower() + "'" for d in dns)
    objects = db_rows(resumed, f"SELECT id, state, COALESCE(pending_job_id, 0) FROM cert_objects "
                               f"WHERE dn_lower IN ({in_list})")
    assert len(objects) == n
    assert all(state == "active" and pending == "0" for _, state, pending in objects), \
        [o for o in objects if o[1] != "active" or o[2] != "0"][:5]
    ids = ",".join(o[0] for o in objects)
    jobs = db_rows(resumed, f"SELECT id, state FROM jobs WHERE object_id IN ({ids})")
    assert len(jobs) == n, f"{len(jobs)} jobs for {n} accepted renewals"
    assert all(j[1] == "done" for j in jobs), [j for j in jobs if j[1] != "done"][:5]
    # The imported version and the renewal's: two per object, one per job, linked both ways.
    versions = db_rows(resumed, f"SELECT COUNT(*) FROM certificates WHERE object_id IN ({ids}) GROUP BY object_id")
    assert len(versions) == n and all(v[0] == "2" for v in versions), \
        f"objects without exactly two versions: {[v for v in versions if v[0] != '2'][:5]}"
    twice = db_rows(resumed, f"SELECT job_id FROM certificates WHERE object_id IN ({ids}) AND job_id IS NOT NULL "
                             "GROUP BY job_id HAVING COUNT(*) > 1")
    assert twice == [], f"jobs with more than one certificate: {twice[:5]}"
    linked = db_scalar(resumed, f"SELECT COUNT(*) FROM jobs j JOIN certificates c ON c.id = j.result_cert_id "
                                f"AND c.job_id = j.id WHERE j.object_id IN ({ids})")
    assert linked == str(n), f"{linked} of {n} jobs point at the certificate they produced"


def test_connections_the_postgresql_server_cut_are_replaced(backend, gateway_factory):
    """A pooled PostgreSQL connection used within the last 500 ms is handed out without a `SELECT 1`
    first; one idle longer is tested and, when the server has cut it, replaced. Every server-side
    connection of the gateway is terminated; after a pause, requests and a renewal still succeed."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only: a SQLite connection is a file handle no server can cut")
    gw = gateway_factory()
    s = gw.session()
    cn = f"cut-{uuid.uuid4().hex[:6]}.example.com"
    _, csr, dn = request_csr(s, ROOT, cn, dns=[cn])
    first = retrieved_certs(wait_retrieve(s, dn))[0]
    cut = gw.database.query(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            f"WHERE datname = '{gw.database.name}' AND pid <> pg_backend_pid()")
    assert int(cut) >= 1, cut
    time.sleep(1.0)
    for _ in range(20):
        r = retrieve(s, dn)
        assert r.status_code == 200, r.text
    _, csr2 = make_csr(cn, dns=[cn])
    r = renew(s, dn, PKCS10=csr2, WorkToDoTimeout=30)
    assert r.status_code == 200, r.text
    assert retrieved_certs(r)[0].serial_number != first.serial_number
    assert_queue_consistent(gw, [dn], 2)
