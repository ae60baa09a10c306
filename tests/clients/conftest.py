"""Test harness: starts the real `renewgate` binary over HTTPS on loopback, on SQLite or on
PostgreSQL (`--backend`), each gateway in its own data directory and (PostgreSQL) its own
fresh database. A PostgreSQL that cannot be reached fails the run loudly; nothing is skipped.
"""
import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("RENEWGATE_BIN", REPO / "target" / "debug" / "renewgate"))
PG_HOST = os.environ.get("RENEWGATE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("RENEWGATE_TEST_PG_PORT", "5432")
PG_USER = os.environ.get("RENEWGATE_TEST_PG_USER", "postgres")


def pytest_addoption(parser):
    parser.addoption("--backend", default="sqlite", choices=["sqlite", "postgres"],
                     help="storage backend of the gateways the tests start")


@pytest.fixture(scope="session")
def backend(request):
    return request.config.getoption("--backend")


_HANDED_OUT_PORTS = set()


def free_port():
    """A loopback port nothing listens on now, and one this test process has not handed out before.
    The kernel can return one port to two bind(0) calls in a row (about 1 in 3,000 groups of four
    here); two servers of one test given the same port then fail like a product bug (a Pebble whose
    listener got the http-01 port answers the validation itself, 400)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT_PORTS:
            _HANDED_OUT_PORTS.add(port)
            return port


def psql(sql, db="postgres"):
    r = subprocess.run(["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", db, "-v", "ON_ERROR_STOP=1",
                        "-qAt", "-c", sql], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"PostgreSQL at {PG_HOST}:{PG_PORT} is required for --backend postgres: {r.stderr.strip()}")
    return r.stdout.strip()


class Database:
    """A fresh database for one or more gateways (PostgreSQL), or None for SQLite's default file."""

    def __init__(self, backend):
        self.backend = backend
        self.name = None
        self.url = None
        if backend == "postgres":
            self.name = "rgtest_" + uuid.uuid4().hex[:12]
            psql(f'CREATE DATABASE "{self.name}"')
            self.url = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.name}"

    def query(self, sql):
        """Runs SQL on this PostgreSQL database (tests that count rows)."""
        assert self.backend == "postgres"
        return psql(sql, db=self.name)

    def drop(self):
        if self.name:
            psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Gateway:
    """One gateway process on 127.0.0.1:<random port>."""

    def __init__(self, root: Path, database: Database, env=None, data_dir=None):
        self.root = root
        self.database = database
        self.port = free_port()
        # A port can come back within one test: the name must not reuse an earlier gateway's files.
        self.data_dir = Path(data_dir) if data_dir else root / f"data-{self.port}-{uuid.uuid4().hex[:8]}"
        self.url = f"https://127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.proc = None
        self.log_path = root / f"gateway-{self.port}.log"

    @property
    def env(self):
        e = dict(os.environ)
        e.update({
            "RENEWGATE_DATA_DIR": str(self.data_dir),
            "RENEWGATE_BIND": f"127.0.0.1:{self.port}",
            "RENEWGATE_LOG__LEVEL": "info",
        })
        if self.database.url:
            e["RENEWGATE_DATABASE_URL"] = self.database.url
        e.update(self.extra_env)
        return e

    @property
    def ca_bundle(self):
        return str(self.data_dir / "ca-bundle.pem")

    @property
    def admin_password(self):
        return (self.data_dir / "initial-admin-password").read_text().strip()

    def start(self, wait=True):
        self.stdout_path = self.root / f"gateway-{self.port}.out"
        self.proc = subprocess.Popen([str(BIN), "serve"], env=self.env, stdout=open(self.stdout_path, "ab"),
                                     stderr=open(self.log_path, "ab"), start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if Path(self.ca_bundle).exists():
                    r = requests.get(self.url + "/health", verify=self.ca_bundle, timeout=2)
                    if r.status_code == 200:
                        return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.logs()}")

    def logs(self):
        out = ""
        for p in (getattr(self, "stdout_path", None), self.log_path):
            if p and Path(p).exists():
                out += Path(p).read_text(errors="replace")[-6000:]
        return out

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)

    def cli(self, *args, input=None, check=True, env=None):
        """Runs `renewgate ARGS` against this gateway's configuration and database."""
        e = self.env
        e.update(env or {})
        r = subprocess.run([str(BIN), *args], env=e, input=input, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"renewgate {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def token(self, scope="certificate:manage,revoke", user="admin", password=None):
        r = requests.post(self.url + "/vedauth/authorize/oauth", verify=self.ca_bundle, timeout=30, json={
            "username": user, "password": password or self.admin_password, "client_id": "renewgate-tests", "scope": scope})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def session(self, token=None, scope="certificate:manage,revoke"):
        s = ApiSession(self.url, self.ca_bundle)
        if token is not False:
            s.headers["Authorization"] = "Bearer " + (token or self.token(scope))
        return s


class ApiSession(requests.Session):
    def __init__(self, base, ca):
        super().__init__()
        self.base = base
        self.verify = ca

    def request(self, method, url, *a, **kw):
        kw.setdefault("timeout", 60)
        # An explicit verify: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a
        # session's `verify`, which would drop the gateway's CA bundle.
        kw.setdefault("verify", self.verify)
        if url.startswith("/"):
            url = self.base + url
        return super().request(method, url, *a, **kw)


@pytest.fixture
def gateway_factory(backend, tmp_path):
    """Starts gateways on demand: gateway_factory(env={...}, database=None, start=True)."""
    started, databases = [], []

    def make(env=None, database=None, start=True, data_dir=None):
        db = database
        if db is None:
            db = Database(backend)
            databases.append(db)
        gw = Gateway(tmp_path, db, env=env, data_dir=data_dir)
        started.append(gw)
        if start:
            gw.start()
        return gw

    make.new_database = lambda: databases.append(Database(backend)) or databases[-1]
    yield make
    for gw in started:
        gw.stop(kill=True)
    for db in databases:
        db.drop()


@pytest.fixture(scope="module")
def gateway(backend, tmp_path_factory):
    """One gateway (default P-256 CA) shared by the tests of a module."""
    root = tmp_path_factory.mktemp("gw")
    db = Database(backend)
    gw = Gateway(root, db).start()
    yield gw
    gw.stop(kill=True)
    db.drop()


@pytest.fixture(scope="module")
def rsa_gateway(backend, tmp_path_factory):
    """A gateway whose CAs are RSA-2048 (vcert-python's renew only works with an RSA-signed
    certificate: it crashes on ECDSA signature algorithms)."""
    root = tmp_path_factory.mktemp("gwrsa")
    db = Database(backend)
    gw = Gateway(root, db, env={"RENEWGATE_CA__KEY_TYPE": "rsa-2048"}).start()
    yield gw
    gw.stop(kill=True)
    db.drop()


def b64d(s):
    return base64.b64decode(s)


def openssl(*args, input=None, check=True):
    r = subprocess.run(["openssl", *args], input=input, capture_output=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")
    return r
