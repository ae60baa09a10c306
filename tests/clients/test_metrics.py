"""`GET /metrics` (Prometheus text format, `renewgate_` prefix, optional bearer token), request ids
on log lines, JSON logs with RENEWGATE_LOG_FORMAT=json."""
import json
import re
import time
import uuid

import requests

from rg_helpers import renew, request_service, retrieved_certs, wait_retrieve

ROOT = "\\VED\\Policy"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')


def scrape(gw, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(gw.url + "/metrics", verify=gw.ca_bundle, timeout=30, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    return parse(r.text)


def parse(text):
    """{(name, frozenset(labels.items())): value}; checks the format line by line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# TYPE") or line.startswith("# HELP"):
                assert line.split()[2].startswith("renewgate_"), line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, labels = m.group(1), {}
        assert name.startswith("renewgate_"), line
        if m.group(3):
            for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3)):
                labels[k] = v
        out[(name, frozenset(labels.items()))] = float(m.group(4))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples, name):
    return {k: v for k, v in samples.items() if k[0] == name}


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_counters_move_with_renewals_and_requests(gateway):
    s = gateway.session()
    before = scrape(gateway)
    dn = request_service(s, ROOT, f"metrics-{uuid.uuid4().hex[:6]}.example.com")
    first = retrieved_certs(wait_retrieve(s, dn))[0]
    r = renew(s, dn)
    assert r.status_code == 200, r.text
    retrieved_certs(wait_retrieve(s, dn, not_serial=first.serial_number))
    bad = renew(s, ROOT + "\\no-such-certificate")
    assert bad.status_code == 400, bad.text
    guid = s.post("/vedsdk/config/dntoguid", json={"ObjectDN": dn}).json()["GUID"]
    assert s.get(f"/vedsdk/certificates/{guid}").status_code == 200

    after = scrape(gateway)
    assert value(after, "renewgate_enrollments_total", dialect="venafi", outcome="success") \
        == value(before, "renewgate_enrollments_total", dialect="venafi", outcome="success") + 1
    assert value(after, "renewgate_renewals_total", dialect="venafi", outcome="success") \
        == value(before, "renewgate_renewals_total", dialect="venafi", outcome="success") + 1
    assert value(after, "renewgate_renewals_total", dialect="venafi", outcome="failure") \
        == value(before, "renewgate_renewals_total", dialect="venafi", outcome="failure") + 1
    # HTTP requests by route template, never by raw path.
    renew_route = dict(method="POST", route="/vedsdk/certificates/renew")
    assert value(after, "renewgate_http_requests_total", status="200", **renew_route) \
        == value(before, "renewgate_http_requests_total", status="200", **renew_route) + 1
    assert value(after, "renewgate_http_requests_total", status="400", **renew_route) \
        == value(before, "renewgate_http_requests_total", status="400", **renew_route) + 1
    assert value(after, "renewgate_http_requests_total", method="GET", route="/vedsdk/certificates/{guid}",
                 status="200") >= 1
    routes = {dict(k[1])["route"] for k in series(after, "renewgate_http_requests_total")}
    assert not any(guid.strip("{}").lower() in r.lower() for r in routes), routes
    # Two issuances (enroll, renew) went through this instance's workers.
    assert value(after, "renewgate_issuance_duration_seconds_count") \
        >= value(before, "renewgate_issuance_duration_seconds_count") + 2
    assert value(after, "renewgate_issuance_duration_seconds_bucket", le="+Inf") \
        == value(after, "renewgate_issuance_duration_seconds_count")
    # Gauges from the database.
    assert value(after, "renewgate_certificates", state="active") >= 1
    by_expiry = series(after, "renewgate_certificates_by_expiry")
    assert {dict(k[1])["days"] for k in by_expiry} == {"expired", "0-7", "7-30", "30-90", "90+"}
    assert sum(by_expiry.values()) >= 1
    assert value(after, "renewgate_certificates_by_expiry", days="30-90") >= 1  # the default 90d validity
    for st in ("queued", "running"):
        assert ("renewgate_queue_depth", frozenset({"state": st}.items())) in after
    assert ("renewgate_queue_oldest_job_age_seconds", frozenset()) in after
    for st in ("waiting", "running", "done", "failed"):
        assert ("renewgate_store_push_jobs", frozenset({"state": st}.items())) in after


def test_metrics_token(gateway_factory):
    gw = gateway_factory(env={"RENEWGATE_METRICS__TOKEN": "scrape-" + uuid.uuid4().hex})
    tok = gw.extra_env["RENEWGATE_METRICS__TOKEN"]
    r = requests.get(gw.url + "/metrics", verify=gw.ca_bundle, timeout=30)
    assert r.status_code == 401, r.text
    r = requests.get(gw.url + "/metrics", verify=gw.ca_bundle, timeout=30,
                     headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401, r.text
    assert value(scrape(gw, token=tok), "renewgate_build_info", version="0.1.0", backend=gw.database.backend) == 1
    assert tok not in gw.logs()


def test_json_logs_carry_the_request_id(gateway_factory):
    gw = gateway_factory(env={"RENEWGATE_LOG_FORMAT": "json"})
    s = gw.session()
    dn = request_service(s, ROOT, f"jsonlog-{uuid.uuid4().hex[:6]}.example.com")
    wait_retrieve(s, dn)
    rid = "rid-" + uuid.uuid4().hex
    r = s.post("/vedsdk/certificates/renew", json={"CertificateDN": dn}, headers={"X-Request-Id": rid})
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == rid
    # Without one, the gateway makes one up and sends it back.
    assert re.fullmatch(r"[0-9a-f]{32}", s.get("/vedsdk/systemstatus/version").headers["X-Request-Id"])

    def lines_of_request():
        out = []
        for line in gw.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            if rid in json.dumps(rec):
                out.append(rec)
        return out if len(out) >= 2 else None

    mine = wait_for(lines_of_request, what="the request's log lines")
    messages = [rec["fields"]["message"] for rec in mine]
    assert "renewal accepted" in messages and "request" in messages, messages
    for rec in mine:
        assert rec["span"]["request_id"] == rid, rec
    # Every line the gateway wrote is JSON (after the banner on stdout).
    text = gw.log_path.read_text(errors="replace")
    for line in text.splitlines():
        if line.strip():
            json.loads(line)
    # Secrets stay out of the logs.
    assert gw.admin_password not in text
    assert s.headers["Authorization"].split()[1] not in text


def test_text_logs_by_default(gateway):
    s = gateway.session()
    rid = "text-" + uuid.uuid4().hex[:12]
    assert s.get("/vedsdk/systemstatus/version", headers={"X-Request-Id": rid}).status_code == 200
    line = wait_for(lambda: next((l for l in gateway.log_path.read_text(errors="replace").splitlines()
                                  if rid in l), None), what="the access log line")
    assert not line.lstrip().startswith("{"), line
    assert f"request_id={rid}" in line, line


def test_alert_rules_name_only_exposed_series(gateway):
    """docs/prometheus-alerts.yml uses series the gateway exposes (a renamed series would leave an
    alert that never fires): every renewgate_* name in it has a `# TYPE` line in /metrics, with the
    label values the rules select on."""
    from pathlib import Path
    rules = (Path(__file__).resolve().parents[2] / "docs" / "prometheus-alerts.yml").read_text()
    text = requests.get(gateway.url + "/metrics", verify=gateway.ca_bundle, timeout=30).text
    exposed = set(re.findall(r"^# TYPE (renewgate_\w+) ", text, re.M))
    used = set(re.findall(r"\b(renewgate_\w+)", rules))
    assert used and used <= exposed, f"not exposed: {sorted(used - exposed)}"
    # Gauges list every label value at once (counters only those that have counted).
    gauges = set(re.findall(r"^# TYPE (renewgate_\w+) gauge$", text, re.M))
    samples = parse(text)
    for name, label, val in re.findall(r'(renewgate_\w+)\{(\w+)="([^"]+)"\}', rules):
        if name in gauges:
            assert any(k[0] == name and (label, val) in k[1] for k in samples), f'{name}{{{label}="{val}"}}'
