"""Two gateway instances on one PostgreSQL database with a shared master key."""
import base64
import os
import threading
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from rg_helpers import (assert_venafi_error, db_rows, db_scalar, make_csr, openssl_verify, renew, request_service,
                        retrieved_certs, wait_retrieve)

ROOT = "\\VED\\Policy"


@pytest.fixture
def pair(backend, gateway_factory):
    """Builds two instances on one database with one master key: pair(env_a, env_b) -> (a, b),
    A started first (the first-start race has its own test)."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only: several instances share one PostgreSQL database (SQLite is one process's file)")
    shared = gateway_factory.new_database()
    key = base64.b64encode(os.urandom(32)).decode()

    def make(env_a=None, env_b=None):
        a = gateway_factory(database=shared, env={"RENEWGATE_MASTER_KEY": key, **(env_a or {})})
        b = gateway_factory(database=shared, env={"RENEWGATE_MASTER_KEY": key, **(env_b or {})})
        return a, b

    make.database = shared
    make.key = key
    return make


def admin_password(a, b):
    files = [g.data_dir / "initial-admin-password" for g in (a, b)]
    present = [f for f in files if f.exists()]
    assert len(present) == 1, f"exactly one instance creates the admin; password files: {present}"
    return present[0].read_text().strip()


def session(g, password, scope="certificate:manage,revoke"):
    return g.session(token=g.token(scope=scope, password=password))


def test_simultaneous_first_start_creates_one_admin_and_one_ca_pair(pair, gateway_factory):
    """Two instances started at the same instant on an empty database both come up, with one admin
    and one set of built-in CAs (root, issuing, issuing-rsa) between them. A race only shows
    sometimes, so this is tried on six
    fresh databases."""
    failures = []
    for attempt in range(6):
        db = pair.database if attempt == 0 else gateway_factory.new_database()
        a = gateway_factory(database=db, env={"RENEWGATE_MASTER_KEY": pair.key}, start=False)
        b = gateway_factory(database=db, env={"RENEWGATE_MASTER_KEY": pair.key}, start=False)
        a.start(wait=False)
        b.start(wait=False)
        up = []
        for g in (a, b):
            try:
                g.wait_ready()
                up.append(g)
            except RuntimeError as e:
                failures.append(f"attempt {attempt}: an instance failed to start: {str(e).strip().splitlines()[-1]}")
        if len(up) < 2:
            continue
        pw = admin_password(a, b)
        assert db_scalar(a, "SELECT COUNT(*) FROM users") == "1"
        assert db_scalar(a, "SELECT name FROM users") == "admin"
        assert sorted(r[0] for r in db_rows(a, "SELECT name FROM cas")) == ["issuing", "issuing-rsa", "root"]
        assert db_scalar(a, "SELECT COUNT(*) FROM policy_folders WHERE dn_lower = '\\ved\\policy'") == "1"
        assert open(a.ca_bundle).read() == open(b.ca_bundle).read()
        # The password works on both; a token from one is valid on the other.
        assert session(a, pw).get("/vedauth/authorize/verify").status_code == 200
        assert session(b, pw).get("/vedauth/authorize/verify").status_code == 200
        tok = a.token(password=pw)
        assert b.session(token=tok).get("/vedsdk/systemstatus/version").status_code == 200
        for g in (a, b):
            h = g.session(token=False).get("/health").json()
            assert h["status"] == "ok" and h["backend"] == "postgres", h
        a.stop(kill=True)
        b.stop(kill=True)
    assert not failures, "\n".join(failures)


def test_renewal_accepted_by_one_is_completed_by_the_other(pair):
    a, b = pair(env_a={"RENEWGATE_QUEUE__WORKERS": "0"}, env_b={"RENEWGATE_QUEUE__POLL_MS": "200"})
    pw = admin_password(a, b)
    sa, sb = session(a, pw), session(b, pw)
    cn = f"shared-{uuid.uuid4().hex[:6]}.example.com"
    # Enrolled through A (no workers): issued by B's workers, retrievable from A.
    _, csr = make_csr(cn, dns=[cn])
    r = sa.post("/vedsdk/certificates/request", json={"PolicyDN": ROOT, "PKCS10": csr})
    assert r.status_code == 200, r.text
    dn = r.json()["CertificateDN"]
    first = retrieved_certs(wait_retrieve(sa, dn))[0]
    # A renewal accepted by A, with a WorkToDoTimeout: A sees B's result in time.
    _, csr2 = make_csr(cn, dns=[cn])
    r = renew(sa, dn, PKCS10=csr2, WorkToDoTimeout=30)
    assert r.status_code == 200, r.text
    second = retrieved_certs(r)[0]
    assert second.serial_number != first.serial_number
    # And one accepted without waiting: visible on both.
    _, csr3 = make_csr(cn, dns=[cn])
    r = renew(sa, dn, PKCS10=csr3)
    assert r.status_code == 200 and r.json()["Success"] is True, r.text
    third = retrieved_certs(wait_retrieve(sa, dn, not_serial=second.serial_number))[0]
    assert third.serial_number not in (first.serial_number, second.serial_number)
    assert retrieved_certs(wait_retrieve(sb, dn))[0].serial_number == third.serial_number
    openssl_verify(a.ca_bundle, third.public_bytes(serialization.Encoding.PEM))
    # Every job was processed by B's workers (lease owners are named after the process id).
    owners = {o[0] for o in db_rows(a, "SELECT DISTINCT lease_owner FROM jobs")}
    assert owners and all(o.startswith(f"{b.proc.pid}-") for o in owners), (owners, a.proc.pid, b.proc.pid)
    assert db_scalar(a, "SELECT COUNT(*) FROM jobs WHERE state <> 'done'") == "0"


def test_one_renewal_in_flight_across_instances(pair, gateway_factory):
    a, b = pair(env_a={"RENEWGATE_QUEUE__WORKERS": "0"}, env_b={"RENEWGATE_QUEUE__WORKERS": "0"})
    pw = admin_password(a, b)
    sa = session(a, pw)
    dn = request_service(sa, ROOT, f"inflight-{uuid.uuid4().hex[:6]}.example.com")
    # A third, working instance on the same database issues it, then goes away.
    c = gateway_factory(database=pair.database, env={"RENEWGATE_MASTER_KEY": pair.key})
    wait_retrieve(session(c, pw), dn)
    c.stop()
    ta, tb = a.token(password=pw), b.token(password=pw)
    results = []

    def go(g, tok):
        results.append(g.session(token=tok).post("/vedsdk/certificates/renew", json={"CertificateDN": dn}))

    threads = [threading.Thread(target=go, args=(g, t)) for g, t in [(a, ta), (b, tb)] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.status_code == 200]
    assert len(ok) == 1, [(r.status_code, r.text) for r in results]
    for r in results:
        if r.status_code != 200:
            assert_venafi_error(r, 400, exact=f"Certificate {dn} is already being processed.")
    assert db_scalar(a, "SELECT COUNT(*) FROM jobs WHERE state = 'queued'") == "1"


def test_twenty_renewals_over_two_working_instances(pair):
    env = {"RENEWGATE_QUEUE__POLL_MS": "100"}
    a, b = pair(env_a=env, env_b=env)
    pw = admin_password(a, b)
    sa, sb = session(a, pw), session(b, pw)
    n = 10
    dns = []
    for i in range(n):
        s = sa if i % 2 == 0 else sb
        dns.append(request_service(s, ROOT, f"spread{i}-{uuid.uuid4().hex[:6]}.example.com"))
    latest = {d: retrieved_certs(wait_retrieve(sa, d))[0].serial_number for d in dns}
    seen = {d: {latest[d]} for d in dns}
    # Two rounds of renewals, each DN alternating between the instances: 20 renewals.
    for rnd in range(2):
        for i, d in enumerate(dns):
            r = renew(sa if (i + rnd) % 2 == 0 else sb, d)
            assert r.status_code == 200 and r.json()["Success"] is True, r.text
        for i, d in enumerate(dns):
            other = sb if (i + rnd) % 2 == 0 else sa  # retrieve from the instance that did not accept it
            leaf = retrieved_certs(wait_retrieve(other, d, not_serial=latest[d]))[0]
            assert leaf.serial_number not in seen[d]
            latest[d] = leaf.serial_number
            seen[d].add(leaf.serial_number)
    in_list = ",".join("'" + d.replace("'", "''").lower() + "'" for d in dns)
    ids = ",".join(r[0] for r in db_rows(a, f"SELECT id FROM cert_objects WHERE dn_lower IN ({in_list})"))
    versions = db_rows(a, f"SELECT object_id, COUNT(*) FROM certificates WHERE object_id IN ({ids}) GROUP BY object_id")
    assert sorted(v[1] for v in versions) == ["3"] * n, versions
    jobs = db_rows(a, f"SELECT id, state FROM jobs WHERE object_id IN ({ids})")
    assert len(jobs) == 3 * n and all(j[1] == "done" for j in jobs), jobs
    per_job = db_rows(a, f"SELECT j.id, COUNT(c.id) FROM jobs j LEFT JOIN certificates c ON c.job_id = j.id "
                         f"WHERE j.object_id IN ({ids}) GROUP BY j.id")
    assert len(per_job) == 3 * n and all(c == "1" for _, c in per_job), per_job
    linked = db_scalar(a, f"SELECT COUNT(*) FROM jobs j JOIN certificates c ON c.id = j.result_cert_id "
                          f"AND c.job_id = j.id WHERE j.object_id IN ({ids})")
    assert linked == str(3 * n)
    assert db_scalar(a, f"SELECT COUNT(*) FROM cert_objects WHERE id IN ({ids}) AND state <> 'active'") == "0"
