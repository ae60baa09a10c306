"""Automatic renewal: the scheduler renews service-generated certificates that enter their window
(`auto_renew_before`, default 30d, capped at a third of the validity) and pushes them to their
stores without a client call; `auto_renew=false` turns it off; two instances on PostgreSQL renew
each certificate exactly once; `renewgate cert list --expiring` shows what is due."""
import base64
import datetime
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import BIN
from rg_helpers import db_rows, db_scalar, load_certs, request_service, retrieved_certs, wait_retrieve

ROOT = "\\VED\\Policy"
FAST = {"RENEWGATE_SCHEDULER__INTERVAL": "1s", "RENEWGATE_QUEUE__POLL_MS": "200"}
LINE = re.compile(r"^(\d+)\t(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\t(\\VED\\Policy\\.+)$")


def wait_for(pred, timeout=150, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def object_id(gw, dn):
    return int(db_scalar(gw, f"SELECT id FROM cert_objects WHERE dn_lower = {sql_str(dn.lower())}"))


def versions(gw, oid):
    return int(db_scalar(gw, f"SELECT COUNT(*) FROM certificates WHERE object_id = {oid}"))


def current_cert(gw, oid):
    return int(db_scalar(gw, f"SELECT current_cert_id FROM cert_objects WHERE id = {oid}"))


def audit(gw, action="renew"):
    out = gw.cli("audit", "--action", action, "--limit", "100000").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_cert_list_expiring(gateway):
    s = gateway.session()
    long_folder = f"{ROOT}\\ListLong-{uuid.uuid4().hex[:6]}"
    short_folder = f"{ROOT}\\ListShort-{uuid.uuid4().hex[:6]}"
    gateway.cli("policy", "set", long_folder, "validity=90d")
    gateway.cli("policy", "set", short_folder, "validity=10d")
    long_dn = request_service(s, long_folder, f"long-{uuid.uuid4().hex[:6]}.example.com")
    short_dn = request_service(s, short_folder, f"short-{uuid.uuid4().hex[:6]}.example.com")
    short_leaf = retrieved_certs(wait_retrieve(s, short_dn))[0]
    wait_retrieve(s, long_dn)

    out = gateway.cli("cert", "list", "--expiring", "30d").stdout
    lines = out.splitlines()
    for line in lines:
        assert LINE.match(line), f"not '<object id>\\t<not after>\\t<CertificateDN>': {line!r}"
    dns = [LINE.match(line_).group(3) for line_ in lines]
    assert short_dn in dns and long_dn not in dns, lines
    row = LINE.match(lines[dns.index(short_dn)])
    assert int(row.group(1)) == object_id(gateway, short_dn)
    na = short_leaf.not_valid_after_utc if hasattr(short_leaf, "not_valid_after_utc") else \
        short_leaf.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    assert row.group(2) == na.strftime("%Y-%m-%dT%H:%M:%SZ")
    # Without --expiring: everything issued, soonest expiry first.
    every = [LINE.match(line_).group(3) for line_ in gateway.cli("cert", "list").stdout.splitlines()]
    assert short_dn in every and long_dn in every and every.index(short_dn) < every.index(long_dn)
    assert gateway.cli("cert", "list", "--expiring", "soon", check=False).returncode != 0
    # Neither is in its window (10d / 3 and 30d of 90d): the scheduler left them alone.
    assert versions(gateway, object_id(gateway, short_dn)) == 1


def store_add(gw, machine, path):
    guid = gw.cli("store", "add", "--client-machine", machine, "--store-path", path, "--type", "pem-dir").stdout.strip()
    assert re.fullmatch(r"\{?[0-9a-fA-F-]{36}\}?", guid), guid
    return guid


@pytest.fixture
def agent(tmp_path):
    procs = []

    def start(gw, machine, root):
        token = gw.cli("agent", "token", "create", "--client-machine", machine).stdout.strip()
        log = open(tmp_path / f"agent-{len(procs)}.log", "ab")
        p = subprocess.Popen([str(BIN), "agent", "run", "--gateway", gw.url, "--token", token, "--ca-bundle",
                              gw.ca_bundle, "--client-machine", machine, "--store-root", str(root),
                              "--poll-interval", "1"], stdout=log, stderr=log, start_new_session=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("RENEWGATE_")})
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=20)


def test_short_lived_certificate_is_renewed_and_pushed_without_a_client_call(gateway_factory, agent, tmp_path):
    gw = gateway_factory(env=FAST)
    s = gw.session()
    off = f"{ROOT}\\AutoOff-{uuid.uuid4().hex[:6]}"
    on = f"{ROOT}\\AutoOn-{uuid.uuid4().hex[:6]}"
    gw.cli("policy", "set", off, "validity=30s", "auto_renew=false")
    gw.cli("policy", "set", on, "validity=30s")
    # The switched-off one first: it is due before the other one.
    off_dn = request_service(s, off, f"manual-{uuid.uuid4().hex[:6]}.example.com")
    wait_retrieve(s, off_dn)
    cn = f"auto-{uuid.uuid4().hex[:6]}.example.com"
    dn = request_service(s, on, cn)
    first = retrieved_certs(wait_retrieve(s, dn))[0]
    oid = object_id(gw, dn)
    first_id = current_cert(gw, oid)
    # Into a store, through the Keyfactor API, installed by an agent.
    machine = f"auto-{uuid.uuid4().hex[:8]}.example.net"
    store = store_add(gw, machine, "/etc/ssl/auto")
    r = s.post("/KeyfactorAPI/CertificateStores/Certificates/Add", headers={"x-keyfactor-api-version": "1"},
               json={"CertificateId": first_id,
                     "CertificateStores": [{"CertificateStoreId": store, "Alias": "web", "Overwrite": True}]})
    assert r.status_code == 200, r.text
    root = tmp_path / "stores"
    agent(gw, machine, root)
    crt = root / "etc" / "ssl" / "auto" / "web.crt"

    def installed_serial():
        try:
            return load_certs(crt.read_bytes())[0].serial_number
        except (OSError, ValueError, IndexError):
            return None

    wait_for(lambda: installed_serial() == first.serial_number, what="the first version in the store")
    # No client call from here on: the scheduler renews it (due 10 s before expiry) and the agent
    # installs the new version in the same store entry.
    renewed = wait_for(lambda: (installed_serial() not in (None, first.serial_number)) and installed_serial(),
                       what="the renewed certificate in the store")
    assert versions(gw, oid) >= 2
    new_leaf = load_certs(crt.read_bytes())[0]
    assert renewed != first.serial_number and new_leaf.serial_number != first.serial_number
    assert new_leaf.subject == first.subject
    assert new_leaf.public_key().public_numbers() != first.public_key().public_numbers(), "a new key"
    recs = [x for x in audit(gw) if x["target"] == dn]
    assert recs and recs[0]["actor"] == "scheduler" and recs[0]["source"] == "scheduler", recs
    assert recs[0]["certificate_id"] == first_id and recs[0]["outcome"] == "success"
    # Not before its window: 10 s (a third of 30 s) before expiry, not at once (1 s of rounding).
    at = datetime.datetime.fromisoformat(recs[0]["at"].replace("Z", "+00:00"))
    na = first.not_valid_after_utc if hasattr(first, "not_valid_after_utc") else \
        first.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    assert at >= na - datetime.timedelta(seconds=11), (at, na)
    # Its push job, scheduled on issuance, went to the same store and alias.
    jobs = db_rows(gw, "SELECT j.state, j.alias FROM store_jobs j JOIN certificates c ON c.id = j.certificate_id "
                       f"WHERE c.object_id = {oid} AND j.certificate_id <> {first_id}")
    assert jobs and all(a == "web" for _, a in jobs), jobs
    # auto_renew=false: the other one, due earlier, was left alone.
    assert versions(gw, object_id(gw, off_dn)) == 1
    assert not [x for x in audit(gw) if x["target"] == off_dn]
    # The scheduler's renewals show in the metrics.
    import requests
    m = requests.get(gw.url + "/metrics", verify=gw.ca_bundle, timeout=30).text
    assert re.search(r'^renewgate_renewals_total\{dialect="scheduler",outcome="success"\} [1-9]', m, re.M), m


def test_two_instances_renew_each_exactly_once(backend, gateway_factory):
    if backend != "postgres":
        pytest.skip("PostgreSQL only: several instances share one PostgreSQL database")
    shared = gateway_factory.new_database()
    key = base64.b64encode(os.urandom(32)).decode()
    a = gateway_factory(database=shared, env={"RENEWGATE_MASTER_KEY": key, **FAST})
    b = gateway_factory(database=shared, env={"RENEWGATE_MASTER_KEY": key, **FAST})
    pw_file = [g.data_dir / "initial-admin-password" for g in (a, b) if (g.data_dir / "initial-admin-password").exists()]
    pw = pw_file[0].read_text().strip()
    s = a.session(token=a.token(password=pw))
    folder = f"{ROOT}\\Pair-{uuid.uuid4().hex[:6]}"
    a.cli("policy", "set", folder, "validity=45s")
    dns = [request_service(s, folder, f"pair{i}-{uuid.uuid4().hex[:6]}.example.com") for i in range(6)]
    for dn in dns:
        wait_retrieve(s, dn)
    ids = [object_id(a, dn) for dn in dns]
    in_ids = ",".join(map(str, ids))
    wait_for(lambda: all(versions(a, i) >= 2 for i in ids), timeout=240, what="every certificate renewed once")
    # Stop further rounds, and let what is in flight finish.
    a.cli("policy", "set", folder, "auto_renew=false")
    wait_for(lambda: db_scalar(a, f"SELECT COUNT(*) FROM cert_objects WHERE id IN ({in_ids}) AND state <> 'active'")
             == "0", what="no renewal in flight")
    recs = [x for x in audit(a) if x["target"] in dns and x["actor"] == "scheduler"]
    assert all(x["outcome"] == "success" for x in recs), recs
    renewed = [x["certificate_id"] for x in recs]
    # Exactly once: no version was renewed twice, and every renewal made one new version.
    assert len(renewed) == len(set(renewed)), recs
    for i in ids:
        n = versions(a, i)
        by_sched = [x for x in recs if x["target"] == dns[ids.index(i)]]
        assert len(by_sched) == n - 1, (i, n, by_sched)
    jobs = db_rows(a, f"SELECT object_id, state FROM jobs WHERE object_id IN ({in_ids})")
    assert all(st == "done" for _, st in jobs), jobs
    assert len(jobs) == sum(versions(a, i) for i in ids)
    # Both instances' schedulers ran (each pass is counted in its own metrics).
    import requests
    for g in (a, b):
        m = requests.get(g.url + "/metrics", verify=g.ca_bundle, timeout=30).text
        assert re.search(r'^renewgate_scheduler_runs_total\{outcome="success"\} [1-9]', m, re.M), m


def imported(gw, tmp_path, folder, cn, days_before, days_after):
    """Imports a foreign certificate with its key (so the gateway can renew it with a new key),
    valid from `days_before` days ago to `days_after` days from now. Returns the object id."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from rg_helpers import key_pem, make_ca
    ca_key, ca = make_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=days_before))
            .not_valid_after(now + datetime.timedelta(days=days_after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, k = tmp_path / f"{cn}.crt", tmp_path / f"{cn}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_text(key_pem(key))
    out = gw.cli("cert", "import", "--policy", folder, str(crt), "--key", str(k)).stdout.split("\t")
    return int(out[0])


def test_window_follows_auto_renew_before_and_the_cap(gateway_factory, tmp_path):
    """Imported certificates late in their life: the folder's auto_renew_before decides, within a
    third of the validity; a window longer than the default is honoured too."""
    gw = gateway_factory(env=FAST)
    tag = uuid.uuid4().hex[:6]
    default, short, long_, off = (f"{ROOT}\\Win{n}-{tag}" for n in ("Default", "Short", "Long", "Off"))
    gw.cli("policy", "set", default, "validity=90d")
    gw.cli("policy", "set", short, "auto_renew_before=10d")
    gw.cli("policy", "set", long_, "auto_renew_before=60d")
    gw.cli("policy", "set", off, "auto_renew=false")
    # 100-day certificates with 20 days left; 340-day certificates with 40 days left.
    skip_short = imported(gw, tmp_path, short, f"short-{tag}.example.com", 80, 20)  # 10d window: not yet
    skip_off = imported(gw, tmp_path, off, f"off-{tag}.example.com", 80, 20)  # switched off
    skip_default = imported(gw, tmp_path, default, f"later-{tag}.example.com", 300, 40)  # 30d window: not yet
    due_default = imported(gw, tmp_path, default, f"due-{tag}.example.com", 80, 20)  # 30d window
    due_long = imported(gw, tmp_path, long_, f"long-{tag}.example.com", 300, 40)  # 60d window (cap 113d)
    wait_for(lambda: versions(gw, due_default) >= 2 and versions(gw, due_long) >= 2, what="the due ones renewed")
    # Every pass looks at all of them: the ones not due were left alone.
    for oid in (skip_short, skip_off, skip_default):
        assert versions(gw, oid) == 1, oid
    # The renewed ones are now issued by the gateway with the folder's (default) validity.
    lines = gw.cli("cert", "list", "--expiring", "30d").stdout.splitlines()
    listed = {int(LINE.match(line).group(1)) for line in lines}
    assert {skip_short, skip_off} <= listed and not {skip_default, due_default, due_long} & listed, lines
