"""The administration CLI against the configured database (the server running), with the exact
stdout a script reads; data directory files and secrets."""
import base64
import json
import os
import re
import stat
import uuid

import pytest

from rg_helpers import (STRONG_PASSWORD, assert_json, assert_venafi_error, cert_pem, key_pem, load_certs, make_ca,
                        make_csr, make_leaf, openssl_verify, pem_block_types, public_key_der, renew, retrieve,
                        retrieved_certs, sha1_thumbprint)

IMPORT_LINE = re.compile(r"^(\d+)\t(\d+)\t(\\VED\\Policy\\.+)$")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_dir_files(gateway):
    d = gateway.data_dir
    pw = d / "initial-admin-password"
    assert mode(pw) == 0o600, oct(mode(pw))
    text = pw.read_text()
    assert re.fullmatch(r"[^\s]{12,}\n", text), repr(text)
    mk = d / "master.key"
    assert mode(mk) == 0o600, oct(mode(mk))
    assert len(base64.b64decode(mk.read_text().strip())) == 32
    bundle = load_certs((d / "ca-bundle.pem").read_bytes())
    assert len(bundle) == 3, "root, issuing and issuing-rsa"
    if gateway.database.backend == "sqlite":
        assert (d / "renewgate.db").exists()
    assert (d / "tls").is_dir()


def test_banner_names_paths_but_no_secret(gateway):
    out = gateway.stdout_path.read_text()
    assert str(gateway.data_dir / "initial-admin-password") in out
    assert str(gateway.data_dir / "ca-bundle.pem") in out
    assert gateway.url in out
    assert "curl" in out and "/vedauth/authorize/oauth" in out
    assert gateway.admin_password not in out
    assert gateway.admin_password not in gateway.log_path.read_text()


def test_restart_prints_no_secret(gateway_factory):
    g = gateway_factory()
    password = g.admin_password
    tok = g.token()
    assert g.session(token=tok).get("/vedauth/authorize/verify").status_code == 200
    first_out = g.stdout_path.read_text()
    assert "First start" in first_out or "created" in first_out
    g.stop()
    before = len(g.stdout_path.read_text())
    g.start()
    restart_out = g.stdout_path.read_text()[before:]
    assert restart_out.strip(), "the restart printed a banner"
    assert "First start" not in restart_out
    assert (g.data_dir / "initial-admin-password").read_text() == password + "\n", "the password file is kept"
    for text in (g.stdout_path.read_text(), g.log_path.read_text()):
        assert password not in text, "the admin password appears in the gateway's output"
        assert tok not in text, "an access token appears in the gateway's output"
    mk = (g.data_dir / "master.key").read_text().strip()
    assert mk not in g.stdout_path.read_text() + g.log_path.read_text(), "the master key appears in the output"
    # Same CA and admin after the restart.
    assert g.session(token=tok).get("/vedauth/authorize/verify").status_code == 200


def test_wrong_master_key_stops_the_start(gateway_factory):
    g = gateway_factory()
    g.stop()
    wrong = base64.b64encode(os.urandom(32)).decode()
    bad = gateway_factory(env={"RENEWGATE_MASTER_KEY": wrong}, database=g.database, data_dir=g.data_dir, start=False)
    bad.start(wait=False)
    rc = bad.proc.wait(timeout=60)
    assert rc != 0
    out = bad.logs()
    assert re.search(r"master key", out, re.I), out
    assert wrong not in out
    # The CLI refuses too, with the same kind of message.
    r = g.cli("ca", "show", env={"RENEWGATE_MASTER_KEY": wrong}, check=False)
    assert r.returncode != 0 and r.stdout == ""
    assert re.search(r"master key", r.stderr, re.I), r.stderr
    # A malformed key is refused with a message naming it.
    r = g.cli("ca", "show", env={"RENEWGATE_MASTER_KEY": "not-base64!"}, check=False)
    assert r.returncode != 0 and "RENEWGATE_MASTER_KEY" in r.stderr, r.stderr
    # The right key still works.
    g.start()
    assert g.session(token=False).get("/health").status_code == 200


def test_master_key_file(gateway_factory, tmp_path):
    kf = tmp_path / "mk.b64"
    kf.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    g = gateway_factory(env={"RENEWGATE_MASTER_KEY_FILE": str(kf)})
    assert not (g.data_dir / "master.key").exists(), "no master.key is generated when a key file is configured"
    assert g.session().get("/vedauth/authorize/verify").status_code == 200


def test_ca_show_prints_the_bundle(gateway):
    r = gateway.cli("ca", "show")
    assert r.stdout == open(gateway.ca_bundle).read()
    assert len(load_certs(r.stdout)) == 3


def test_migrate_prints_nothing_on_stdout(gateway):
    r = gateway.cli("migrate")
    assert r.returncode == 0
    assert r.stdout == ""


def test_openapi_command_prints_json(gateway):
    r = gateway.cli("openapi")
    doc = json.loads(r.stdout)
    assert doc["openapi"].startswith("3.1")


def test_policy_set(gateway):
    s = gateway.session()
    dn = f"\\VED\\Policy\\CLI {uuid.uuid4().hex[:6]}\\Sub"
    assert s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": dn}).status_code == 400
    r = gateway.cli("policy", "set", dn)
    assert r.stdout == ""
    assert s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": dn}).status_code == 200
    again = gateway.cli("policy", "set", dn)
    assert again.returncode == 0 and again.stdout == ""


def test_user_add_and_oauth(gateway):
    name = "cli-" + uuid.uuid4().hex[:6]
    r = gateway.cli("user", "add", name, "--password", "Cli-Passw0rd!x", "--scope",
                    "certificate:manage,revoke;configuration:manage")
    assert r.stdout == ""
    assert "Cli-Passw0rd!x" not in r.stderr
    tok = gateway.token(user=name, password="Cli-Passw0rd!x", scope="certificate:manage;configuration:manage")
    v = gateway.session(token=tok).get("/vedauth/authorize/verify")
    assert v.status_code == 200 and "configuration:manage" in v.json()["scope"], v.text
    # Duplicate names are refused.
    dup = gateway.cli("user", "add", name, "--password", "Other-Passw0rd!x", check=False)
    assert dup.returncode != 0 and dup.stdout == ""


def test_user_add_password_stdin(gateway):
    name = "stdin-" + uuid.uuid4().hex[:6]
    r = gateway.cli("user", "add", name, "--password-stdin", input="From-Stdin-Passw0rd\n")
    assert r.stdout == ""
    tok = gateway.token(user=name, password="From-Stdin-Passw0rd", scope="certificate:manage")
    assert gateway.session(token=tok).get("/vedsdk/systemstatus/version").status_code == 200


def test_user_add_without_password_fails(gateway):
    r = gateway.cli("user", "add", "nopw-" + uuid.uuid4().hex[:6], check=False)
    assert r.returncode != 0 and r.stdout == "" and r.stderr


def test_token_create_and_revoke(gateway):
    r = gateway.cli("token", "create", "--user", "admin", "--scope", "certificate:manage")
    assert re.fullmatch(r"[A-Za-z0-9+/]{22}==\n", r.stdout), repr(r.stdout)
    tok = r.stdout.strip()
    s = gateway.session(token=tok)
    assert s.get("/vedauth/authorize/verify").status_code == 200
    chk = s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": "\\VED\\Policy"})
    assert chk.status_code == 200, chk.text
    rv = gateway.cli("token", "revoke", tok)
    assert rv.returncode == 0 and rv.stdout == ""
    gone = s.get("/vedauth/authorize/verify")
    assert gone.status_code == 401 and assert_json(gone)["error"] == "session_error"
    assert s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": "\\VED\\Policy"}).status_code == 401


def test_token_create_beyond_user_scope_fails(gateway):
    name = "narrow-" + uuid.uuid4().hex[:6]
    gateway.cli("user", "add", name, "--password", "Narrow-Passw0rd!")
    r = gateway.cli("token", "create", "--user", name, "--scope", "certificate:manage;configuration:manage", check=False)
    assert r.returncode != 0 and r.stdout == ""
    r = gateway.cli("token", "create", "--user", "nobody-" + uuid.uuid4().hex[:6], "--scope", "certificate", check=False)
    assert r.returncode != 0 and r.stdout == ""


def test_token_revoke_unknown_fails(gateway):
    r = gateway.cli("token", "revoke", "AAAAAAAAAAAAAAAAAAAAAA==", check=False)
    assert r.returncode != 0 and r.stdout == ""


@pytest.fixture
def foreign_pem(tmp_path):
    """A PEM with a leaf and the (foreign) CA that issued it, plus the leaf's key."""
    ca_key, ca_cert = make_ca("Imported Test CA")
    cn = f"imported-{uuid.uuid4().hex[:6]}.example.com"
    key, leaf = make_leaf(ca_key, ca_cert, cn, dns=[cn, "alt." + cn])
    f = tmp_path / "bundle.pem"
    f.write_text(cert_pem(leaf) + cert_pem(ca_cert))
    return {"file": f, "cn": cn, "leaf": leaf, "ca": ca_cert, "key": key}


def test_cert_import_leaf_with_ca(gateway, foreign_pem):
    policy = "\\VED\\Policy\\Imported " + uuid.uuid4().hex[:6]
    r = gateway.cli("cert", "import", "--policy", policy, str(foreign_pem["file"]))
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and r.stdout.endswith("\n"), repr(r.stdout)
    m = IMPORT_LINE.match(lines[0])
    assert m, repr(lines[0])
    dn = m.group(3)
    assert dn == f"{policy}\\{foreign_pem['cn']}"
    s = gateway.session()
    got = retrieve(s, dn, IncludeChain=True)
    assert got.status_code == 200, got.text
    certs = retrieved_certs(got)
    assert certs[0] == foreign_pem["leaf"]
    assert certs[1:] == [foreign_pem["ca"]], "the CA certificate of the file is the object's chain"
    # Searchable by thumbprint, and the folder was created.
    found = s.get("/vedsdk/certificates/?Thumbprint=" + sha1_thumbprint(foreign_pem["leaf"])).json()
    assert found["TotalCount"] == 1 and found["Certificates"][0]["DN"] == dn
    assert s.post("/vedsdk/certificates/checkpolicy", json={"PolicyDN": policy}).status_code == 200
    # An imported (user-provided) object renews with a CSR, from the built-in CA.
    key, csr = make_csr(foreign_pem["cn"], dns=[foreign_pem["cn"]])
    rn = renew(s, dn, PKCS10=csr, WorkToDoTimeout=20)
    assert rn.status_code == 200, rn.text
    new = retrieved_certs(rn)[0]
    assert public_key_der(new) == public_key_der(key)
    openssl_verify(gateway.ca_bundle, cert_pem(new))
    # Ids are integers from the database, unique per import.
    r2 = gateway.cli("cert", "import", "--policy", policy, str(foreign_pem["file"]))
    m2 = IMPORT_LINE.match(r2.stdout.strip())
    assert m2 and int(m2.group(1)) != int(m.group(1)) and int(m2.group(2)) != int(m.group(2))
    assert m2.group(3) != dn


def test_cert_import_with_key_is_service_generated(gateway, foreign_pem, tmp_path):
    policy = "\\VED\\Policy\\Imported Keys"
    kf = tmp_path / "key.pem"
    kf.write_text(key_pem(foreign_pem["key"]))
    r = gateway.cli("cert", "import", "--policy", policy, str(foreign_pem["file"]), "--key", str(kf))
    m = IMPORT_LINE.match(r.stdout.strip())
    assert m, r.stdout
    dn = m.group(3)
    s = gateway.session()
    got = retrieve(s, dn, fmt="Base64 (PKCS #8)", IncludePrivateKey=True, Password=STRONG_PASSWORD)
    assert got.status_code == 200, got.text
    text = base64.b64decode(got.json()["CertificateData"]).decode()
    assert pem_block_types(text)[-1] == "ENCRYPTED PRIVATE KEY"
    # Renewal without a CSR: the gateway generates a new key.
    rn = renew(s, dn, WorkToDoTimeout=20)
    assert rn.status_code == 200, rn.text
    new = retrieved_certs(rn)[0]
    assert public_key_der(new) != public_key_der(foreign_pem["key"])
    assert new.subject == foreign_pem["leaf"].subject


def test_cert_import_monitoring_cannot_be_renewed(gateway, foreign_pem):
    policy = "\\VED\\Policy\\Monitored"
    r = gateway.cli("cert", "import", "--policy", policy, str(foreign_pem["file"]), "--management-type", "Monitoring")
    m = IMPORT_LINE.match(r.stdout.strip())
    assert m, r.stdout
    dn = m.group(3)
    s = gateway.session()
    assert retrieve(s, dn).status_code == 200
    _, csr = make_csr(foreign_pem["cn"], dns=[foreign_pem["cn"]])
    rn = renew(s, dn, PKCS10=csr)
    assert_venafi_error(rn, 400, exact=f"Certificate {dn} is only enrolled for monitoring.")
    assert retrieved_certs(retrieve(s, dn))[0] == foreign_pem["leaf"]


def test_cert_import_bad_input(gateway, tmp_path, foreign_pem):
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    r = gateway.cli("cert", "import", "--policy", "\\VED\\Policy\\X", str(empty), check=False)
    assert r.returncode != 0 and r.stdout == "" and r.stderr
    ca_only = tmp_path / "ca.pem"
    ca_only.write_text(cert_pem(foreign_pem["ca"]))
    r = gateway.cli("cert", "import", "--policy", "\\VED\\Policy\\X", str(ca_only), check=False)
    assert r.returncode != 0 and r.stdout == "" and r.stderr
    r = gateway.cli("cert", "import", "--policy", "\\VED\\Policy\\X", str(foreign_pem["file"]),
                    "--management-type", "Sometimes", check=False)
    assert r.returncode != 0 and r.stdout == "" and r.stderr


def test_cert_import_provisioning_object_renews(gateway, foreign_pem):
    """TPP renews Provisioning objects (and then provisions them): One Door reverses the policy
    issue's refusal; only Unassigned and Monitoring objects are not for renewal."""
    r = gateway.cli("cert", "import", "--policy", "\\VED\\Policy\\Provisioned", str(foreign_pem["file"]),
                    "--management-type", "Provisioning")
    m = IMPORT_LINE.match(r.stdout.strip())
    assert m, r.stdout
    dn = m.group(3)
    s = gateway.session()
    _, csr = make_csr(foreign_pem["cn"], dns=[foreign_pem["cn"]])
    rn = renew(s, dn, PKCS10=csr, WorkToDoTimeout=20)
    assert rn.status_code == 200, rn.text
    assert rn.json()["Success"] is True and rn.json()["CertificateData"], rn.text
