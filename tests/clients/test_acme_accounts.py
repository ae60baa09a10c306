"""ACME (RFC 8555), first slice: directory with DigiCert-style actions, nonces, accounts with
external account binding, and the JWS pipeline — requests signed here with RS256, ES256, ES384
and EdDSA keys, bad input answered with RFC 7807 problem documents."""
import base64
import hashlib
import hmac
import json

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PROBLEM = "application/problem+json"


def b64u(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def uint(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return n.to_bytes(size, "big")


class Key:
    def __init__(self, alg):
        self.alg = alg
        if alg == "RS256":
            self.k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pn = self.k.public_key().public_numbers()
            self.jwk = {"e": b64u(uint(pn.e)), "kty": "RSA", "n": b64u(uint(pn.n))}
        elif alg in ("ES256", "ES384"):
            curve, self.size, crv = (ec.SECP256R1(), 32, "P-256") if alg == "ES256" else (ec.SECP384R1(), 48, "P-384")
            self.k = ec.generate_private_key(curve)
            pn = self.k.public_key().public_numbers()
            self.jwk = {"crv": crv, "kty": "EC", "x": b64u(uint(pn.x, self.size)), "y": b64u(uint(pn.y, self.size))}
        else:
            self.k = ed25519.Ed25519PrivateKey.generate()
            from cryptography.hazmat.primitives import serialization
            raw = self.k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.jwk = {"crv": "Ed25519", "kty": "OKP", "x": b64u(raw)}

    def sign(self, data):
        if self.alg == "RS256":
            return self.k.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if self.alg in ("ES256", "ES384"):
            r, s = decode_dss_signature(self.k.sign(data, ec.ECDSA(hashes.SHA256() if self.alg == "ES256" else hashes.SHA384())))
            return uint(r, self.size) + uint(s, self.size)
        return self.k.sign(data)

    def thumbprint(self):
        return b64u(hashlib.sha256(json.dumps(self.jwk, sort_keys=True, separators=(",", ":")).encode()).digest())


class Client:
    def __init__(self, gw, key):
        self.gw = gw
        self.key = key
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.verify = gw.ca_bundle
        self.dir = self.s.get(gw.url + "/acme/directory", timeout=30).json()
        self.kid = None

    def nonce(self):
        r = self.s.head(self.dir["newNonce"], timeout=30)
        assert r.status_code == 200 and r.headers["Replay-Nonce"]
        return r.headers["Replay-Nonce"]

    def jws(self, url, payload, nonce=None, use_jwk=None, alg=None, extra=None):
        protected = {"alg": alg or self.key.alg, "nonce": nonce or self.nonce(), "url": url}
        if use_jwk or (use_jwk is None and self.kid is None):
            protected["jwk"] = self.key.jwk
        else:
            protected["kid"] = self.kid
        protected.update(extra or {})
        p = b64u(json.dumps(protected))
        pl = "" if payload is None else b64u(json.dumps(payload))
        return {"protected": p, "payload": pl, "signature": b64u(self.key.sign(f"{p}.{pl}".encode()))}

    def post(self, url, body, ct="application/jose+json"):
        return self.s.post(url, data=json.dumps(body), headers={"Content-Type": ct}, timeout=30)

    def eab(self, kid, hmac_key, url):
        p = b64u(json.dumps({"alg": "HS256", "kid": kid, "url": url}))
        pl = b64u(json.dumps(self.key.jwk))
        mac = hmac.new(base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4)), f"{p}.{pl}".encode(), hashlib.sha256).digest()
        return {"protected": p, "payload": pl, "signature": b64u(mac)}

    def register(self, kid, hmac_key):
        url = self.dir["newAccount"]
        r = self.post(url, self.jws(url, {"termsOfServiceAgreed": True, "contact": ["mailto:ops@example.com"],
                                          "externalAccountBinding": self.eab(kid, hmac_key, url)}))
        if r.status_code in (200, 201):
            self.kid = r.headers["Location"]
        return r


def problem(r, status, kind):
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers["Content-Type"].startswith(PROBLEM), r.headers
    j = r.json()
    assert j["type"] == f"urn:ietf:params:acme:error:{kind}", j
    assert j["status"] == status and j["detail"]
    assert r.headers.get("Replay-Nonce"), "every ACME response carries a fresh nonce"
    return j


@pytest.fixture(scope="module")
def eab(gateway):
    gateway.cli("policy", "set", "\\VED\\Policy\\Acme", "domains=example.test")
    out = gateway.cli("acme", "eab", "create", "--policy", "\\VED\\Policy\\Acme").stdout.split()
    env = dict(line.split("=", 1) for line in out)
    assert set(env) == {"EAB_KID", "EAB_HMAC_KEY"} and len(env["EAB_HMAC_KEY"]) == 43
    return env["EAB_KID"], env["EAB_HMAC_KEY"]


def test_directory_and_actions(gateway):
    s = requests.Session()
    s.trust_env = False
    d = s.get(gateway.url + "/acme/directory", verify=gateway.ca_bundle).json()
    base = gateway.url + "/acme"
    assert d["newNonce"] == base + "/new-nonce" and d["newAccount"] == base + "/new-account"
    assert d["newOrder"] == base + "/new-order" and d["renewalInfo"] == base + "/renewal-info"
    assert d["meta"]["externalAccountRequired"] is True
    d = s.get(gateway.url + "/acme/directory?action=renew&orderId=555123456", verify=gateway.ca_bundle).json()
    assert d["newOrder"] == base + "/o/renew/555123456/new-order" and d["renewalInfo"] == base + "/renewal-info"
    d = s.get(gateway.url + "/acme/directory?action=enroll&dryRun=1", verify=gateway.ca_bundle).json()
    assert d["newOrder"] == base + "/dry-run/o/enroll/new-order"
    for q in ("action=renew", "orderId=5", "action=enroll&orderId=5", "action=fly&orderId=1", "action=renew&orderId=x"):
        r = s.get(gateway.url + "/acme/directory?" + q, verify=gateway.ca_bundle)
        assert r.status_code == 400 and r.headers["Content-Type"].startswith(PROBLEM), q
        assert r.json()["type"] == "urn:ietf:params:acme:error:malformed"


def test_nonces(gateway):
    c = Client(gateway, Key("ES256"))
    r = c.s.get(c.dir["newNonce"])
    assert r.status_code == 204 and r.headers["Cache-Control"] == "no-store" and len(r.headers["Replay-Nonce"]) == 22
    assert c.nonce() != c.nonce()


@pytest.mark.parametrize("alg", ["RS256", "ES256", "ES384", "EdDSA"])
def test_register_with_eab_for_every_algorithm(gateway, eab, alg):
    c = Client(gateway, Key(alg))
    r = c.register(*eab)
    assert r.status_code == 201, r.text
    assert r.headers["Location"].startswith(gateway.url + "/acme/acct/") and r.headers["Replay-Nonce"]
    j = r.json()
    assert j["status"] == "valid" and j["contact"] == ["mailto:ops@example.com"] and j["orders"].endswith("/orders")
    # The same key again: 200 with the same account.
    again = Client(gateway, c.key)
    r2 = again.register(*eab)
    assert r2.status_code == 200 and r2.headers["Location"] == r.headers["Location"]
    # POST-as-GET with kid.
    r3 = c.post(c.kid, c.jws(c.kid, None))
    assert r3.status_code == 200 and r3.json()["status"] == "valid"


def test_eab_is_required_and_checked(gateway, eab):
    c = Client(gateway, Key("ES256"))
    url = c.dir["newAccount"]
    problem(c.post(url, c.jws(url, {"termsOfServiceAgreed": True})), 403, "externalAccountRequired")
    kid, key = eab
    wrong_key = b64u(b"\x01" * 32)
    problem(c.register(kid, wrong_key), 403, "unauthorized")
    problem(c.register("no-such-kid", key), 403, "unauthorized")
    # The binding names another key than the request's.
    other = Client(gateway, Key("ES256"))
    bad = other.eab(kid, key, url)
    problem(c.post(url, c.jws(url, {"externalAccountBinding": bad})), 400, "badPublicKey")
    # onlyReturnExisting for an unknown key.
    problem(c.post(url, c.jws(url, {"onlyReturnExisting": True})), 400, "accountDoesNotExist")


def test_jws_faults(gateway, eab):
    c = Client(gateway, Key("ES256"))
    assert c.register(*eab).status_code == 201
    url = c.kid
    # Bad signature.
    body = c.jws(url, None)
    body["signature"] = b64u(b"\x00" * 64)
    problem(c.post(url, body), 400, "malformed")
    # Replayed nonce.
    n = c.nonce()
    assert c.post(url, c.jws(url, None, nonce=n)).status_code == 200
    problem(c.post(url, c.jws(url, None, nonce=n)), 400, "badNonce")
    # Wrong url.
    problem(c.post(url, c.jws(gateway.url + "/acme/acct/999999", None)), 401, "unauthorized")
    # Algorithms outside the list (none, HS256).
    for alg in ("none", "HS256"):
        j = problem(c.post(url, c.jws(url, None, alg=alg)), 400, "badSignatureAlgorithm")
        assert "ES256" in j["algorithms"]
    # An algorithm that does not fit the key.
    problem(c.post(url, c.jws(url, None, alg="ES384")), 400, "badPublicKey")
    # Unknown account.
    ghost = Client(gateway, Key("ES256"))
    ghost.kid = gateway.url + "/acme/acct/987654"
    problem(ghost.post(ghost.kid, ghost.jws(ghost.kid, None, use_jwk=False)), 400, "accountDoesNotExist")
    # Wrong content type, not a JWS, both jwk and kid.
    r = c.post(url, c.jws(url, None), ct="application/json")
    problem(r, 415, "malformed")
    problem(c.s.post(url, data="not json", headers={"Content-Type": "application/jose+json"}), 400, "malformed")
    problem(c.post(url, c.jws(url, None, extra={"jwk": c.key.jwk})), 400, "malformed")
    # Oversized body.
    big = c.jws(url, {"pad": "x" * 2_000_000})
    r = c.post(url, big)
    assert r.status_code in (400, 413) and r.headers["Content-Type"].startswith(PROBLEM)
    # Still healthy.
    assert c.s.get(gateway.url + "/health").status_code == 200


def test_contacts_and_deactivation(gateway, eab):
    c = Client(gateway, Key("EdDSA"))
    assert c.register(*eab).status_code == 201
    problem(c.post(c.kid, c.jws(c.kid, {"contact": ["tel:+1555"]})), 400, "unsupportedContact")
    problem(c.post(c.kid, c.jws(c.kid, {"contact": ["mailto:nobody"]})), 400, "invalidContact")
    r = c.post(c.kid, c.jws(c.kid, {"contact": ["mailto:new@example.com"]}))
    assert r.status_code == 200 and r.json()["contact"] == ["mailto:new@example.com"]
    r = c.post(c.kid, c.jws(c.kid, {"status": "deactivated"}))
    assert r.status_code == 200 and r.json()["status"] == "deactivated"
    problem(c.post(c.kid, c.jws(c.kid, None)), 401, "unauthorized")


def test_prevalidated_keys_need_whitelisted_domains(gateway):
    gateway.cli("policy", "set", "\\VED\\Policy\\NoDomains")
    r = gateway.cli("acme", "eab", "create", "--policy", "\\VED\\Policy\\NoDomains", "--prevalidated", check=False)
    assert r.returncode != 0 and "whitelisted domains" in r.stderr and r.stdout == ""
    out = gateway.cli("acme", "eab", "create", "--policy", "\\VED\\Policy\\Acme", "--prevalidated").stdout
    assert out.startswith("EAB_KID=") and "\nEAB_HMAC_KEY=" in out


def test_key_change(gateway, eab):
    c = Client(gateway, Key("ES256"))
    assert c.register(*eab).status_code == 201
    old_key, new_key = c.key, Key("RS256")
    url = c.dir["keyChange"]

    def inner(key, account, old):
        p = b64u(json.dumps({"alg": key.alg, "jwk": key.jwk, "url": url}))
        pl = b64u(json.dumps({"account": account, "oldKey": old.jwk}))
        return {"protected": p, "payload": pl, "signature": b64u(key.sign(f"{p}.{pl}".encode()))}

    # oldKey must be the account's key.
    problem(c.post(url, c.jws(url, inner(new_key, c.kid, Key("ES256")))), 400, "malformed")
    r = c.post(url, c.jws(url, inner(new_key, c.kid, old_key)))
    assert r.status_code == 200, r.text
    # The new key now signs for the account; the old one (ES256 against an RSA account key) no longer does.
    problem(c.post(c.kid, c.jws(c.kid, None)), 400, "badPublicKey")
    c.key = new_key
    assert c.post(c.kid, c.jws(c.kid, None)).status_code == 200
    # A key that already belongs to another account is refused.
    other = Client(gateway, Key("ES256"))
    assert other.register(*eab).status_code == 201
    r = c.post(url, c.jws(url, inner(other.key, c.kid, new_key)))
    assert r.status_code == 409 and r.headers["Content-Type"].startswith("application/problem+json")
