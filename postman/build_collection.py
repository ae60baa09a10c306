#!/usr/bin/env python3
"""Writes postman/renewgate.postman_collection.json (Postman v2.1) and
postman/renewgate.postman_environment.json. The JSON files are committed; edit this script and
run it again (`python3 postman/build_collection.py`) rather than editing them by hand.

The collection is an end-to-end test of every documented endpoint of the Venafi TPP, Keyfactor
(classic and API) and native dialects (ACME excluded: its requests are JWS-signed). It needs only
`baseUrl`, `username` and `password` (the `admin` user of a gateway): the first request's
pre-request script makes a run id, the run's names and its CSRs, and everything else (its policy
folder, stores, certificates) is created by the collection and captured from responses into
collection variables, so the collection passes run after run against the same gateway.
"""
import json
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
STRONG = "Str0ng!Passw0rd#2024"
SCOPE = "certificate:manage,revoke;configuration:manage"

# The enrollments that take a caller's CSR get CSRs made in the run's first pre-request script, with
# fresh names and a fresh key per run: a gateway whose policy refuses key reuse (`key_reuse=false`, as
# an upgraded installation has on `\VED\Policy`) would refuse a fixed CSR the second time. newman's
# sandbox has no crypto module, so the collection carries node-forge (pure JS, pinned in package.json)
# and makes an RSA key with it (forge has no P-256 CSRs); its random numbers come from Math.random
# there, which is enough for keys of certificates that are never used.
FORGE_VERSION = "1.3.1"
FORGE_DIR = HERE.parent / "node_modules" / "node-forge"


def forge_source():
    """node-forge's browser bundle, from the version package.json pins (`npm ci` installs it)."""
    version = json.loads((FORGE_DIR / "package.json").read_text())["version"]
    if version != FORGE_VERSION:
        raise SystemExit(f"node_modules has node-forge {version}, expected {FORGE_VERSION}: run `npm ci`")
    return (FORGE_DIR / "dist" / "forge.min.js").read_text().strip()


# --------------------------------------------------------------------------- scripts

COLLECTION_PREREQUEST = """
// A bearer token for the requests that use {{token}}: fetched once per run (the first
// Venafi request also fetches one and checks the answer).
if (!pm.collectionVariables.get('token')) {
  pm.sendRequest({
    url: pm.variables.get('baseUrl') + '/vedauth/authorize/oauth',
    method: 'POST',
    header: { 'Content-Type': 'application/json' },
    body: { mode: 'raw', raw: JSON.stringify({
      username: pm.variables.get('username'), password: pm.variables.get('password'),
      client_id: 'postman', scope: '%s' }) }
  }, function (err, res) {
    if (err) { throw err; }
    if (res.code !== 200) { throw new Error('token request failed: ' + res.code + ' ' + res.text()); }
    pm.collectionVariables.set('token', res.json().access_token);
  });
}
""" % SCOPE

COLLECTION_TEST = """
pm.test('no server error', function () { pm.expect(pm.response.code).to.be.below(500); });
"""

RUN_SETUP = r"""
// A fresh run: new names for everything this run creates.
const id = Date.now().toString(36) + Math.floor(Math.random() * 1e6).toString(36);
const dn = '\\VED\\Policy\\Postman ' + id;
const set = (k, v) => pm.collectionVariables.set(k, v);
set('runId', id);
set('policyDN', dn);
set('policyDNJson', JSON.stringify(dn).slice(1, -1));
set('policyDNUrl', encodeURIComponent(dn));
set('scratchDNUrl', encodeURIComponent(dn + '\\Scratch'));
set('domain', id + '.example.com');
set('venafiCN', 'www.' + id + '.example.com');
set('pfxCN', 'pfx.' + id + '.example.com');
set('csrCN', 'csr.' + id + '.example.com');
set('pkcs10CN', 'pkcs10.' + id + '.example.com');
set('storeMachine', 'postman-' + id);
pm.collectionVariables.unset('token');
"""

MAKE_CSRS = r"""
// The run's two CSRs (Keyfactor Enrollment/CSR and CMSApi Pkcs10), on one fresh RSA key made by
// the node-forge bundle below (newman's sandbox has no crypto module, nor a window).
const forge = (function () {
  const module = { exports: {} };
  const exports = module.exports;
  const window = {};
FORGE_SOURCE
  return module.exports;
})();
const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
const makeCsr = function (cn) {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = keys.publicKey;
  csr.setSubject([{ name: 'commonName', value: cn }]);
  csr.setAttributes([{ name: 'extensionRequest',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: cn }] }] }]);
  csr.sign(keys.privateKey, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
};
[['csr', 'csrCN'], ['pkcs10', 'pkcs10CN']].forEach(function (v) {
  const pem = makeCsr(pm.collectionVariables.get(v[1]));
  pm.collectionVariables.set(v[0] + 'PemJson', JSON.stringify(pem).slice(1, -1));
});
"""

HELPERS = """
const body = () => pm.response.json();
const status = (code) => pm.test('status ' + code, function () { pm.response.to.have.status(code); });
const isJson = () => pm.test('JSON answer', function () {
  pm.expect(pm.response.headers.get('Content-Type')).to.match(/^application\\/json/);
});
const keep = (k, v) => pm.collectionVariables.set(k, v);
const kfError = (code) => {
  status(code); isJson();
  pm.test('Keyfactor error shape', function () {
    const b = body();
    pm.expect(Object.keys(b).sort()).to.eql(['ErrorCode', 'Message']);
    pm.expect(b.ErrorCode).to.match(/^0x[0-9A-F]{8}$/);
  });
};
"""


def script(kind, src):
    return {"listen": kind, "script": {"type": "text/javascript", "exec": src.strip("\n").split("\n")}}


def tests(src):
    return [script("test", HELPERS + src)]


# --------------------------------------------------------------------------- requests

def url(path, query=None):
    raw = "{{baseUrl}}" + path
    u = {"raw": raw, "host": ["{{baseUrl}}"], "path": [p for p in path.split("/") if p]}
    if query:
        u["query"] = [{"key": k, "value": v} for k, v in query]
        u["raw"] += "?" + "&".join(f"{k}={v}" for k, v in query)
    return u


def request(name, method, path, test_src, body=None, query=None, headers=None, auth=None, prerequest=None,
            examples=None, description=None):
    hdrs = [{"key": k, "value": v} for k, v in (headers or {}).items()]
    r = {"method": method, "header": hdrs, "url": url(path, query)}
    if body is not None:
        r["header"].append({"key": "Content-Type", "value": "application/json"})
        r["body"] = {"mode": "raw", "raw": body if isinstance(body, str) else json.dumps(body, indent=2),
                     "options": {"raw": {"language": "json"}}}
    if auth is not None:
        r["auth"] = auth
    if description:
        r["description"] = description
    item = {"name": name, "request": r, "event": tests(test_src)}
    if prerequest:
        item["event"].insert(0, script("prerequest", prerequest))
    if examples:
        item["response"] = examples
    return item


def example(name, req_item, req_body, code, status, resp_body, content_type="application/json"):
    """A saved example (a seed's request and answer)."""
    r = json.loads(json.dumps(req_item["request"]))
    r["body"] = {"mode": "raw", "raw": json.dumps(req_body, indent=2), "options": {"raw": {"language": "json"}}}
    return {"name": name, "originalRequest": r, "status": status, "code": code, "_postman_previewlanguage": "json",
            "header": [{"key": "Content-Type", "value": content_type}], "body": json.dumps(resp_body, indent=2)}


NOAUTH = {"type": "noauth"}
BEARER = {"type": "bearer", "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}]}
BASIC = {"type": "basic", "basic": [{"key": "username", "value": "KEYFACTOR\\{{username}}", "type": "string"},
                                    {"key": "password", "value": "{{password}}", "type": "string"}]}
KF_V1 = {"x-keyfactor-api-version": "1", "x-keyfactor-requested-with": "APIClient"}


def folder(name, description, items, auth=None):
    f = {"name": name, "description": description, "item": items}
    if auth:
        f["auth"] = auth
    return f


# --------------------------------------------------------------------------- native (setup)

native_setup = folder("Native API: setup", "Health and the run's policy folder (`/api/v1/policies`).", [
    request("Health", "GET", "/health", """
status(200); isJson();
pm.test('database answers', function () {
  pm.expect(body().status).to.eql('ok');
  pm.expect(body().database).to.eql('ok');
  pm.expect(body().backend).to.be.oneOf(['sqlite', 'postgres']);
});
""", auth=NOAUTH, prerequest=RUN_SETUP + MAKE_CSRS.replace("FORGE_SOURCE", forge_source())),
    request("Create the run's policy folder", "PUT", "/api/v1/policies", """
status(200); isJson();
pm.test('folder created with its settings', function () {
  const b = body();
  pm.expect(b.dn).to.eql(pm.collectionVariables.get('policyDN'));
  pm.expect(b.settings.domains).to.eql(['example.com']);
  pm.expect(b.settings.validity).to.eql('30d');
  pm.expect(b.locked).to.eql(['organization']);
  pm.expect(b.effective.organization.value).to.eql('Postman Inc');
  pm.expect(b.effective.organization.locked).to.eql(true);
});
""", query=[("dn", "{{policyDNUrl}}")], body={"settings": {"domains": ["example.com"], "validity": "30d",
                                                           "organization": "Postman Inc"},
                                              "locked": ["organization"]}),
    request("Get the policy folder", "GET", "/api/v1/policies", """
status(200); isJson();
pm.test('effective settings name their folder', function () {
  const b = body();
  pm.expect(b.effective.validity.value).to.eql('30d');
  pm.expect(b.effective.validity.folder).to.eql(pm.collectionVariables.get('policyDN'));
  pm.expect(b.effective.domains.value).to.eql(['example.com']);
});
""", query=[("dn", "{{policyDNUrl}}")]),
    request("Create a scratch sub-folder", "PUT", "/api/v1/policies", """
status(200);
pm.test('sub-folder inherits the domains', function () {
  pm.expect(body().effective.domains.value).to.eql(['example.com']);
  pm.expect(body().effective.domains.folder).to.eql(pm.collectionVariables.get('policyDN'));
});
""", query=[("dn", "{{scratchDNUrl}}")], body={"settings": {"city": "Boston"}}),
    request("Policy folder that does not exist (404)", "GET", "/api/v1/policies", """
status(404); isJson();
pm.test('native error shape', function () { pm.expect(body().message).to.be.a('string'); });
""", query=[("dn", "%5CVED%5CPolicy%5CNo%20such%20{{runId}}")]),
], auth=BEARER)

# --------------------------------------------------------------------------- Venafi

venafi_auth = folder("Authentication", "`/vedauth` tokens and the legacy `/vedsdk/authorize` API key.", [
    request("Get a token (oauth)", "POST", "/vedauth/authorize/oauth", """
status(200); isJson();
pm.test('token answer', function () {
  const b = body();
  ['access_token', 'refresh_token', 'expires', 'expires_in', 'scope', 'token_type', 'identity'].forEach(function (k) {
    pm.expect(b).to.have.property(k);
  });
  pm.expect(b.token_type).to.eql('Bearer');
  pm.expect(b.scope).to.include('certificate:manage');
  keep('token', b.access_token);
  keep('refreshToken', b.refresh_token);
});
""", auth=NOAUTH, body='{\n  "username": "{{username}}",\n  "password": "{{password}}",\n  "client_id": "postman",\n'
                       f'  "scope": "{SCOPE}"\n}}'),
    request("Wrong password (400)", "POST", "/vedauth/authorize/oauth", """
status(400); isJson();
pm.test('OAuth error', function () { pm.expect(body().error).to.be.a('string'); });
""", auth=NOAUTH, body={"username": "{{username}}", "password": "not-the-password", "client_id": "postman",
                       "scope": "certificate"}),
    request("Refresh the token", "POST", "/vedauth/authorize/token", """
status(200); isJson();
pm.test('a new access token', function () {
  pm.expect(body().access_token).to.be.a('string').and.not.eql(pm.collectionVariables.get('token'));
  keep('token', body().access_token);
  keep('refreshToken', body().refresh_token);
});
""", auth=NOAUTH, body={"refresh_token": "{{refreshToken}}", "client_id": "postman"}),
    request("Verify the token", "GET", "/vedauth/authorize/verify", """
status(200); isJson();
pm.test('identity and scope', function () {
  pm.expect(body().identity).to.be.a('string');
  pm.expect(body().scope).to.include('certificate:manage');
});
"""),
    request("Without a token (401)", "GET", "/vedauth/authorize/verify", """
status(401); isJson();
""", auth=NOAUTH),
    request("Legacy API key", "POST", "/vedsdk/authorize", """
status(200); isJson();
pm.test('APIKey and ValidUntil', function () {
  pm.expect(body().APIKey).to.be.a('string').and.not.empty;
  pm.expect(body()).to.have.property('ValidUntil');
  keep('apiKey', body().APIKey);
});
""", auth=NOAUTH, body={"Username": "{{username}}", "Password": "{{password}}"}),
    request("Version (with the API key)", "GET", "/vedsdk/systemstatus/version", """
status(200); isJson();
pm.test('a TPP version', function () { pm.expect(body().Version).to.match(/^\\d+\\.\\d+/); });
""", auth=NOAUTH, headers={"X-Venafi-Api-Key": "{{apiKey}}"}),
])

renew_seed_1 = {"CertificateDN": "\\VED\\Policy\\Marketing\\Zoey", "WorkToDoTimeout": 60}
renew_seed_1_resp = {"CertificateData": "LS0tLS1CR...0F", "Filename": "test56.domaine.fr.cer", "Format": "Base64",
                     "Success": True}
renew_seed_2 = {"CertificateDN": "\\VED\\Policy\\Certificates\\test56.domaine.fr", "WorkToDoTimeout": 120,
                "CertificateData": "LS0tLS1CRU...NCg=="}
renew_seed_busy = {"Error": "Certificate processing took longer than WorkToDoTimeout. Call certificates/retrieve...",
                   "Success": False}

venafi_renew = request("Renew (new key, PKCS #12 answer)", "POST", "/vedsdk/Certificates/Renew", """
status(200); isJson();
pm.test('renewed, with the new certificate as PKCS #12', function () {
  const b = body();
  pm.expect(b.Success).to.eql(true);
  pm.expect(b.CertificateDN).to.eql(pm.collectionVariables.get('venafiDN'));
  pm.expect(b.Format).to.match(/PKCS #12/);
  pm.expect(b.Filename).to.match(/\\.pfx$/);
  pm.expect(b.CertificateData).to.be.a('string').and.not.empty;
});
""", body='{\n  "CertificateDN": "{{venafiDNJson}}",\n  "WorkToDoTimeout": 60,\n  "Format": "PKCS #12",\n'
          f'  "Password": "{STRONG}"\n}}')
venafi_renew["response"] = [
    example("Seed: renew a DN, waiting 60 s (200)", venafi_renew, renew_seed_1, 200, "OK", renew_seed_1_resp),
    example("Seed: renew with the caller's certificate (200)", venafi_renew, renew_seed_2, 200, "OK",
            renew_seed_1_resp),
    example("Seed: system busy (202)", venafi_renew, renew_seed_1, 202, "Accepted", renew_seed_busy),
]

DETAILS_TEST = """
status(200); isJson();
pm.test('details of the object', function () {
  const b = body();
  pm.expect(b.DN).to.eql(pm.collectionVariables.get('venafiDN'));
  pm.expect(b.CertificateDetails.Serial).to.be.a('string').and.not.empty;
  pm.expect(b.CertificateDetails.Thumbprint).to.match(/^[0-9A-F]{40}$/);
  pm.expect(b.ProcessingDetails.InError).to.eql(false);
});
"""

venafi_certs = folder("Certificates", "`/vedsdk/Certificates/*` and `/vedsdk/Config/DnToGuid` on the run's folder.", [
    request("CheckPolicy", "POST", "/vedsdk/Certificates/CheckPolicy", """
status(200); isJson();
pm.test('the folder policy, organization locked', function () {
  const p = body().Policy;
  pm.expect(p.Subject.Organization.Value).to.eql('Postman Inc');
  pm.expect(p.Subject.Organization.Locked).to.eql(true);
  pm.expect(body().Error).to.eql(null);
});
""", body='{\n  "PolicyDN": "{{policyDNJson}}"\n}'),
    request("Request (service-generated key)", "POST", "/vedsdk/Certificates/Request", """
status(200); isJson();
pm.test('object created', function () {
  const b = body();
  pm.expect(b.CertificateDN).to.eql(pm.collectionVariables.get('policyDN') + '\\\\' + pm.collectionVariables.get('venafiCN'));
  pm.expect(b.Guid).to.match(/^\\{[0-9a-f-]{36}\\}$/i);
  keep('venafiDN', b.CertificateDN);
  keep('venafiDNJson', JSON.stringify(b.CertificateDN).slice(1, -1));
  keep('venafiDNUrl', encodeURIComponent(b.CertificateDN));
  keep('venafiGuid', b.Guid);
});
""", body='{\n  "PolicyDN": "{{policyDNJson}}",\n  "Subject": "{{venafiCN}}",\n  "SubjectAltNames": [{"Type": 2, "Name": "{{venafiCN}}"}],\n'
          '  "KeyAlgorithm": "ECC",\n  "EllipticCurve": "P256",\n  "WorkToDoTimeout": 20\n}'),
    request("Request outside the policy (400)", "POST", "/vedsdk/Certificates/Request", """
status(400); isJson();
pm.test('policy violation message', function () {
  pm.expect(body().Error).to.include('violates');
});
""", body='{\n  "PolicyDN": "{{policyDNJson}}",\n  "Subject": "www.example.org",\n  "WorkToDoTimeout": 0\n}'),
    request("Retrieve (POST, Base64 with chain)", "POST", "/vedsdk/Certificates/Retrieve", """
status(200); isJson();
pm.test('PEM certificate data', function () {
  const b = body();
  pm.expect(b.Format).to.eql('Base64');
  pm.expect(atob(b.CertificateData)).to.include('-----BEGIN CERTIFICATE-----');
  pm.expect(b.Filename).to.match(/\\.pem$/);
});
""", body='{\n  "CertificateDN": "{{venafiDNJson}}",\n  "Format": "Base64",\n  "IncludeChain": true,\n  "WorkToDoTimeout": 20\n}'),
    request("Retrieve (GET, DER file)", "GET", "/vedsdk/Certificates/Retrieve", """
status(200);
pm.test('the file itself', function () {
  pm.expect(pm.response.headers.get('Content-Type')).to.include('application/x-x509-ca-cert');
  pm.expect(pm.response.headers.get('Content-Disposition')).to.match(/attachment; *filename=.*\\.cer/);
  pm.expect(pm.response.responseSize).to.be.above(200);
});
""", query=[("CertificateDN", "{{venafiDNUrl}}"), ("Format", "DER")]),
    request("Details", "GET", "/vedsdk/Certificates/{{venafiGuid}}", DETAILS_TEST + """
keep('venafiSerial', body().CertificateDetails.Serial);
keep('venafiThumbprint', body().CertificateDetails.Thumbprint);
"""),
    request("Search by thumbprint", "GET", "/vedsdk/Certificates/", """
status(200); isJson();
pm.test('one hit: the object', function () {
  const b = body();
  pm.expect(b.TotalCount).to.eql(1);
  pm.expect(b.Certificates[0].DN).to.eql(pm.collectionVariables.get('venafiDN'));
  pm.expect(b.Certificates[0].Guid).to.eql(pm.collectionVariables.get('venafiGuid'));
});
""", query=[("Thumbprint", "{{venafiThumbprint}}")]),
    request("DnToGuid", "POST", "/vedsdk/Config/DnToGuid", """
status(200); isJson();
pm.test('the object GUID', function () {
  pm.expect(body().GUID).to.eql(pm.collectionVariables.get('venafiGuid'));
  pm.expect(body().Result).to.eql(1);
  pm.expect(body().ClassName).to.eql('X509 Certificate');
});
""", body='{\n  "ObjectDN": "{{venafiDNJson}}"\n}'),
    venafi_renew,
    request("Details after renewal: a new serial", "GET", "/vedsdk/Certificates/{{venafiGuid}}", DETAILS_TEST + """
pm.test('new serial and thumbprint', function () {
  pm.expect(body().CertificateDetails.Serial).to.not.eql(pm.collectionVariables.get('venafiSerial'));
  pm.expect(body().CertificateDetails.Thumbprint).to.not.eql(pm.collectionVariables.get('venafiThumbprint'));
  keep('venafiSerial', body().CertificateDetails.Serial);
});
"""),
    request("Disable the object (PUT attributes)", "PUT", "/vedsdk/Certificates/{{venafiGuid}}", """
status(200); isJson();
pm.test('Success', function () { pm.expect(body().Success).to.eql(true); });
""", body={"AttributeData": [{"Name": "Disabled", "Value": ["1"]}]}),
    request("Renew a disabled object (400)", "POST", "/vedsdk/Certificates/Renew", """
status(400); isJson();
pm.test('disabled', function () {
  pm.expect(body().Success).to.eql(false);
  pm.expect(body().Error).to.include('disabled');
});
""", body='{\n  "CertificateDN": "{{venafiDNJson}}",\n  "WorkToDoTimeout": 0\n}'),
    request("Renew with Reenable", "POST", "/vedsdk/Certificates/Renew", """
status(200); isJson();
pm.test('renewed again', function () { pm.expect(body().Success).to.eql(true); });
""", body='{\n  "CertificateDN": "{{venafiDNJson}}",\n  "Reenable": true,\n  "WorkToDoTimeout": 60\n}'),
    request("Reset (nothing to reset: 400)", "POST", "/vedsdk/Certificates/Reset", """
status(400); isJson();
pm.test('TPP says no reset is required', function () {
  pm.expect(body().Success).to.eql(false);
  pm.expect(body().Error).to.eql('Reset is not completed. No reset is required for the certificate.');
});
""", body='{\n  "CertificateDN": "{{venafiDNJson}}",\n  "Restart": false\n}'),
    request("Revoke", "POST", "/vedsdk/Certificates/Revoke", """
status(200); isJson();
pm.test('revocation requested', function () {
  pm.expect(body().Success).to.eql(true);
  pm.expect(body().Requested).to.eql(true);
});
""", body='{\n  "CertificateDN": "{{venafiDNJson}}",\n  "Reason": 4,\n  "Comments": "superseded (Postman run {{runId}})"\n}'),
])

venafi = folder("Venafi TPP", "The Venafi TPP dialect: `/vedauth` and `/vedsdk`.", [venafi_auth, venafi_certs],
                auth=BEARER)

# --------------------------------------------------------------------------- Keyfactor API

kf_api = folder("Keyfactor API", "`/KeyfactorAPI` with Basic `KEYFACTOR\\\\user` credentials (v1 PascalCase).", [
    request("Status endpoints", "GET", "/KeyfactorAPI/Status/Endpoints", """
status(200); isJson();
pm.test('a list of endpoints', function () {
  pm.expect(body()).to.be.an('array').and.not.empty;
});
""", headers=KF_V1),
    request("Templates", "GET", "/KeyfactorAPI/Templates", """
status(200); isJson();
pm.test('the WebServer template', function () {
  const t = body().find(function (x) { return x.CommonName === 'WebServer'; });
  pm.expect(t, 'WebServer template').to.be.an('object');
  pm.expect(t.Id).to.be.a('number');
});
""", headers=KF_V1),
    request("Certificate authorities", "GET", "/KeyfactorAPI/CertificateAuthority", """
status(200); isJson();
pm.test('the issuing CA', function () {
  const ca = body().find(function (x) { return x.LogicalName === 'issuing'; });
  pm.expect(ca, 'issuing CA').to.be.an('object');
  pm.expect(ca.HostName).to.be.a('string').and.not.empty;
  keep('caConfig', ca.HostName + '\\\\' + ca.LogicalName);
  keep('caConfigJson', JSON.stringify(ca.HostName + '\\\\' + ca.LogicalName).slice(1, -1));
});
""", headers=KF_V1),
    request("Create a certificate store", "POST", "/KeyfactorAPI/CertificateStores", """
status(200); isJson();
pm.test('a PEM-directory store', function () {
  const b = body();
  pm.expect(b.Id).to.match(/^[0-9a-f-]{36}$/i);
  pm.expect(b.ClientMachine).to.eql(pm.collectionVariables.get('storeMachine'));
  pm.expect(b.Storepath).to.eql('/srv/postman/tls');
  pm.expect(b.CertStoreType).to.eql(1);
  keep('storeId', b.Id);
});
""", headers=KF_V1, body={"ClientMachine": "{{storeMachine}}", "Storepath": "/srv/postman/tls", "CertStoreType": 1,
                         "Properties": "{\"alias\":\"web\",\"includeKeys\":false}"}),
    request("List certificate stores", "GET", "/KeyfactorAPI/CertificateStores", """
status(200); isJson();
pm.test('the new store is listed', function () {
  pm.expect(body().map(function (s) { return s.Id; })).to.include(pm.collectionVariables.get('storeId'));
});
""", headers=KF_V1),
    request("Get the certificate store", "GET", "/KeyfactorAPI/CertificateStores/{{storeId}}", """
status(200); isJson();
pm.test('the store', function () {
  pm.expect(body().Id).to.eql(pm.collectionVariables.get('storeId'));
  pm.expect(body().ClientMachine).to.eql(pm.collectionVariables.get('storeMachine'));
});
""", headers=KF_V1),
    request("Enroll PFX", "POST", "/KeyfactorAPI/Enrollment/PFX", """
status(200); isJson();
pm.test('issued', function () {
  const i = body().CertificateInformation;
  pm.expect(i.RequestDisposition).to.eql('ISSUED');
  pm.expect(i.KeyfactorId).to.be.above(0);
  pm.expect(i.Thumbprint).to.match(/^[0-9A-F]{40}$/);
  pm.expect(i.Pkcs12Blob).to.be.a('string').and.not.empty;
  keep('pfxId', i.KeyfactorId);
  keep('pfxThumbprint', i.Thumbprint);
  keep('pfxSerial', i.SerialNumber);
  keep('pfxRequestId', i.KeyfactorRequestId);
});
""", headers=dict(KF_V1, **{"x-certificateformat": "PFX"}),
        body='{\n  "Password": "' + STRONG + '",\n  "Subject": "CN={{pfxCN}}",\n  "IncludeChain": true,\n'
             '  "Template": "WebServer",\n  "Timestamp": "2024-01-02T03:04:05.000Z",\n'
             '  "SANs": {"dns": ["{{pfxCN}}"]},\n  "Metadata": {"Email-Contact": "ops@example.com"}\n}'),
    request("Enroll CSR", "POST", "/KeyfactorAPI/Enrollment/CSR", """
status(200); isJson();
pm.test('issued from the CSR', function () {
  const i = body().CertificateInformation;
  pm.expect(i.RequestDisposition).to.eql('ISSUED');
  pm.expect(i.KeyfactorID).to.be.above(0);
  pm.expect(i.Certificates).to.be.an('array').and.not.empty;
  keep('csrId', i.KeyfactorID);
});
""", headers=KF_V1, body='{\n  "CSR": "{{csrPemJson}}",\n  "Template": "WebServer",\n  "IncludeChain": true,\n'
                         '  "Timestamp": "2024-01-02T03:04:05.000Z"\n}'),
    request("Get a certificate", "GET", "/KeyfactorAPI/Certificates/{{pfxId}}", """
status(200); isJson();
pm.test('the enrolled certificate', function () {
  const b = body();
  pm.expect(b.Id).to.eql(pm.collectionVariables.get('pfxId') * 1);
  pm.expect(b.Thumbprint).to.eql(pm.collectionVariables.get('pfxThumbprint'));
  pm.expect(b.IssuedCN).to.eql(pm.collectionVariables.get('pfxCN'));
  pm.expect(b.CertStateString).to.eql('Active');
  pm.expect(b.HasPrivateKey).to.eql(true);
  pm.expect(b.Metadata['Email-Contact']).to.eql('ops@example.com');
});
""", headers=KF_V1),
    request("Query certificates", "GET", "/KeyfactorAPI/Certificates", """
status(200); isJson();
pm.test('one hit by thumbprint', function () {
  pm.expect(body()).to.have.lengthOf(1);
  pm.expect(body()[0].Id).to.eql(pm.collectionVariables.get('pfxId') * 1);
});
""", headers=KF_V1, query=[("pq.queryString", 'Thumbprint -eq "{{pfxThumbprint}}"'), ("pq.returnLimit", "10")]),
    request("Available renewal by id", "GET", "/KeyfactorAPI/Enrollment/AvailableRenewal/Id/{{pfxId}}", """
status(200); isJson();
pm.test('one-click renewal (the gateway holds the key)', function () {
  pm.expect(body().AvailableRenewalType).to.eql(2);
});
""", headers=KF_V1),
    request("Available renewal by thumbprint", "GET",
            "/KeyfactorAPI/Enrollment/AvailableRenewal/Thumbprint/{{pfxThumbprint}}", """
status(200); isJson();
pm.test('one-click renewal', function () { pm.expect(body().AvailableRenewalType).to.eql(2); });
""", headers=KF_V1),
    request("Renew", "POST", "/KeyfactorAPI/Enrollment/Renew", """
status(200); isJson();
pm.test('a new certificate with a new serial', function () {
  const b = body();
  pm.expect(b.RequestDisposition).to.eql('ISSUED');
  pm.expect(b.KeyfactorId).to.be.above(pm.collectionVariables.get('pfxId') * 1);
  pm.expect(b.SerialNumber).to.not.eql(pm.collectionVariables.get('pfxSerial'));
  pm.expect(b.Thumbprint).to.not.eql(pm.collectionVariables.get('pfxThumbprint'));
  keep('renewedId', b.KeyfactorId);
  keep('renewedSerial', b.SerialNumber);
});
""", headers=KF_V1, body='{\n  "CertificateId": {{pfxId}}\n}'),
    request("Download (PEM)", "POST", "/KeyfactorAPI/Certificates/Download", """
status(200); isJson();
pm.test('PEM content', function () {
  pm.expect(atob(body().Content)).to.include('-----BEGIN CERTIFICATE-----');
});
""", headers=dict(KF_V1, **{"x-certificateformat": "PEM"}), body='{\n  "CertID": {{renewedId}},\n  "IncludeChain": true\n}'),
    request("Recover (PFX with key)", "POST", "/KeyfactorAPI/Certificates/Recover", """
status(200); isJson();
pm.test('a PFX file', function () {
  pm.expect(body().PFX).to.be.a('string').and.not.empty;
  pm.expect(body().FileName).to.eql(pm.collectionVariables.get('pfxCN') + '.pfx');
});
""", headers=dict(KF_V1, **{"x-certificateformat": "PFX"}),
        body='{\n  "CertId": {{renewedId}},\n  "Password": "' + STRONG + '",\n  "IncludeChain": true\n}'),
    request("Add to a store", "POST", "/KeyfactorAPI/CertificateStores/Certificates/Add", """
status(200); isJson();
pm.test('one job scheduled', function () {
  pm.expect(body()).to.have.lengthOf(1);
  pm.expect(body()[0]).to.match(/^[0-9a-f-]{36}$/i);
  keep('addJobId', body()[0]);
});
""", headers=KF_V1, body='{\n  "CertificateId": {{renewedId}},\n  "CertificateStores": [{"CertificateStoreId": "{{storeId}}", "Alias": "web", "Overwrite": true}],\n'
                        '  "Schedule": {"Immediate": true}\n}'),
    request("Deploy PFX to a store", "POST", "/KeyfactorAPI/Enrollment/PFX/Deploy", """
status(200); isJson();
pm.test('the store succeeded', function () {
  pm.expect(body().SuccessfulStores).to.include(pm.collectionVariables.get('storeId'));
  pm.expect(body().FailedStores).to.eql([]);
});
""", headers=KF_V1, body='{\n  "CertificateId": {{renewedId}},\n  "Password": "' + STRONG + '",\n  "StoreIds": ["{{storeId}}"]\n}'),
    request("Replace PFX in stores", "POST", "/KeyfactorAPI/Enrollment/PFX/Replace", """
status(200); isJson();
pm.test('answer lists', function () {
  pm.expect(body().SuccessfulStores).to.be.an('array');
  pm.expect(body().FailedStores).to.eql([]);
});
""", headers=KF_V1, body='{\n  "ExistingCertificateId": {{pfxId}},\n  "CertificateId": {{renewedId}},\n  "Password": "' + STRONG + '"\n}'),
    request("Scheduled jobs: the store job waits for its agent", "GET", "/KeyfactorAPI/OrchestratorJobs/ScheduledJobs", """
status(200); isJson();
pm.test('the add job is scheduled for the store machine', function () {
  const j = body().find(function (x) { return x.Id === pm.collectionVariables.get('addJobId'); });
  pm.expect(j, 'scheduled job').to.be.an('object');
  pm.expect(j.ClientMachine).to.eql(pm.collectionVariables.get('storeMachine'));
  pm.expect(j.Target).to.eql('/srv/postman/tls');
  pm.expect(j.JobType).to.eql('Management');
});
""", headers=KF_V1),
    request("Job history of the store machine (no agent ran)", "GET", "/KeyfactorAPI/OrchestratorJobs/JobHistory", """
status(200); isJson();
pm.test('no run yet: no agent serves this machine', function () {
  pm.expect(body()).to.eql([]);
});
""", headers=KF_V1, query=[("pq.queryString", 'ClientMachine -eq "{{storeMachine}}"')]),
    request("Acknowledge jobs", "POST", "/KeyfactorAPI/OrchestratorJobs/Acknowledge", """
pm.test('accepted', function () { pm.expect(pm.response.code).to.be.oneOf([200, 204]); });
""", headers=KF_V1, body={"JobAuditIds": []}),
    request("Store inventory", "GET", "/KeyfactorAPI/CertificateStores/{{storeId}}/Inventory", """
status(200); isJson();
pm.test('an inventory list', function () { pm.expect(body()).to.be.an('array'); });
""", headers=KF_V1),
    request("Remove from a store", "POST", "/KeyfactorAPI/CertificateStores/Certificates/Remove", """
status(200); isJson();
pm.test('one remove job', function () {
  pm.expect(body()).to.have.lengthOf(1);
  pm.expect(body()[0]).to.match(/^[0-9a-f-]{36}$/i);
});
""", headers=KF_V1, body='{\n  "CertificateStores": [{"CertificateStoreId": "{{storeId}}", "Alias": "web"}]\n}'),
    request("Revoke", "POST", "/KeyfactorAPI/Certificates/Revoke", """
status(200); isJson();
pm.test('revoked', function () {
  pm.expect(body().RevokedIds).to.eql([pm.collectionVariables.get('renewedId') * 1]);
});
""", headers=KF_V1, body='{\n  "CertificateIds": [{{renewedId}}],\n  "Reason": 4,\n  "Comment": "superseded (Postman run {{runId}})"\n}'),
    request("Revoked certificate", "GET", "/KeyfactorAPI/Certificates/{{renewedId}}", """
status(200); isJson();
pm.test('state Revoked, reason 4', function () {
  pm.expect(body().CertStateString).to.eql('Revoked');
  pm.expect(body().RevocationReason).to.eql(4);
});
""", headers=KF_V1),
    request("Unknown certificate (404)", "GET", "/KeyfactorAPI/Certificates/999999999", """
kfError(404);
""", headers=KF_V1),
], auth=BASIC)

# --------------------------------------------------------------------------- Keyfactor classic

classic_seed_req = {"Lookup": {"Type": "CMSID", "CMSID": 7}, "CertStores": ["<Guid>"], "Template": "UserServer",
                    "CAConfiguration": "CA1.jdk.com\\jdk-CA1", "Metadata": {"Email-Contact": "a.b@example.com"}}
classic_seed_resp = {"RenewedCertStores": ["192.168.41.171-/home/pi/cherry/cherrystore"],
                     "Thumbprint": "46CCE7023bce5c434f4206b74473fd614df56218", "CMSRequestId": 0,
                     "RequestDisposition": "Issued",
                     "DispositionMessage": "The certificate renewal has been completed successfully. Agent jobs to "
                                           "install the new certificate have been created."}

classic_renew = request("CertEnroll/3/Renew (the seed's call)", "POST", "/CMSApi/CertEnroll/3/Renew", """
status(200); isJson();
pm.test('issued, pushed to the store', function () {
  const b = body();
  pm.expect(b.RequestDisposition).to.eql('Issued');
  pm.expect(b.Thumbprint).to.match(/^[0-9A-F]{40}$/i);
  pm.expect(b.RenewedCertStores).to.eql([pm.collectionVariables.get('storeMachine') + '-/srv/postman/tls']);
  keep('classicThumbprint', b.Thumbprint);
});
""", headers={"x-keyfactor-requested-with": "APIClient"},
    body='{\n  "Lookup": {"Type": "CMSID", "CMSID": {{csrId}}},\n  "CertStores": ["{{storeId}}"],\n  "Template": "WebServer",\n'
         '  "CAConfiguration": "{{caConfigJson}}",\n  "Metadata": {"Email-Contact": "a.b@example.com"}\n}')
classic_renew["response"] = [example("Seed: CertEnroll Renew (200)", classic_renew, classic_seed_req, 200, "OK",
                                     classic_seed_resp)]

kf_classic = folder("Keyfactor classic (CMSApi)", "`/CMSApi/CertEnroll/3/*` with Basic credentials.", [
    classic_renew,
    request("The renewed certificate has its store job", "GET", "/KeyfactorAPI/OrchestratorJobs/ScheduledJobs", """
status(200); isJson();
pm.test('two jobs now wait for the store machine', function () {
  const mine = body().filter(function (x) { return x.ClientMachine === pm.collectionVariables.get('storeMachine'); });
  pm.expect(mine.length).to.be.at.least(2);
});
""", headers=KF_V1),
    request("CertEnroll/3/Pkcs10", "POST", "/CMSApi/CertEnroll/3/Pkcs10", """
status(200); isJson();
pm.test('issued from the CSR', function () {
  const b = body();
  pm.expect(b.RequestDisposition).to.eql('Issued');
  pm.expect(b.KeyfactorID).to.be.above(0);
  pm.expect(b.Certificates).to.be.an('array').and.not.empty;
});
""", headers={"x-keyfactor-requested-with": "APIClient"},
        body='{\n  "Request": {\n    "Pkcs10Request": "{{pkcs10PemJson}}",\n    "TemplateName": "WebServer",\n'
             '    "metadataList": [{"MetadataFieldTypeName": "Email-Contact", "Value": "ops@example.com"}]\n  }\n}'),
    request("CertEnroll/3/Pkcs12", "POST", "/CMSApi/CertEnroll/3/Pkcs12", """
status(200); isJson();
pm.test('a PKCS #12 blob', function () {
  const b = body();
  pm.expect(b.RequestDisposition).to.eql('Issued');
  pm.expect(b.Pkcs12Blob).to.be.a('string').and.not.empty;
  pm.expect(b.SerialNumber).to.be.a('string').and.not.empty;
});
""", headers={"x-keyfactor-requested-with": "APIClient"},
        body='{\n  "Request": {\n    "Pkcs12Password": "' + STRONG + '",\n    "TemplateName": "WebServer",\n'
             '    "SubjectNameAttributes": {"CN": "p12.{{domain}}"},\n'
             '    "SubjectAltNameElements": [{"key": "dns", "value": "p12.{{domain}}"}]\n  }\n}'),
    request("Wrong password (401)", "POST", "/CMSApi/CertEnroll/3/Renew", """
kfError(401);
""", auth={"type": "basic", "basic": [{"key": "username", "value": "KEYFACTOR\\{{username}}", "type": "string"},
                                      {"key": "password", "value": "wrong", "type": "string"}]},
        body={"Lookup": {"Type": "CMSID", "CMSID": 1}}),
], auth=BASIC)

# --------------------------------------------------------------------------- native (end)

native_end = folder("Native API: jobs, agents, teardown", "`/api/v1/jobs`, the store agents' endpoints, cleanup.", [
    request("Issuance request status", "GET", "/api/v1/jobs/{{pfxRequestId}}", """
status(200); isJson();
pm.test('done, with the certificate', function () {
  const b = body();
  pm.expect(b.state).to.eql('done');
  pm.expect(b.certificate_id).to.eql(pm.collectionVariables.get('pfxId') * 1);
  pm.expect(b.thumbprint).to.eql(pm.collectionVariables.get('pfxThumbprint'));
});
"""),
    request("Unknown request (404)", "GET", "/api/v1/jobs/999999999", """
status(404); isJson();
"""),
    request("Agent jobs need an agent token (403)", "GET", "/api/v1/agent/jobs", """
status(403); isJson();
pm.test('explains the agent scope', function () { pm.expect(body().message).to.be.a('string'); });
""", query=[("limit", "10")]),
    request("Agent result needs an agent token (403)", "POST", "/api/v1/agent/jobs/{{addJobId}}/result", """
status(403); isJson();
""", body={"outcome": "success", "message": "installed"}),
    request("Agent jobs without a token (401)", "GET", "/api/v1/agent/jobs", """
status(401); isJson();
""", auth=NOAUTH),
    request("Agent token renewal needs an agent token (403)", "POST", "/api/v1/agent/token", """
status(403); isJson();
"""),
    request("Delete the scratch folder", "DELETE", "/api/v1/policies", """
status(200); isJson();
pm.test('deleted', function () { pm.expect(body().deleted).to.eql(true); });
""", query=[("dn", "{{scratchDNUrl}}")]),
    request("The scratch folder is gone (404)", "GET", "/api/v1/policies", """
status(404); isJson();
""", query=[("dn", "{{scratchDNUrl}}")]),
    request("Metrics (Prometheus text)", "GET", "/metrics", """
status(200);
pm.test('Prometheus text format', function () {
  pm.expect(pm.response.headers.get('Content-Type')).to.match(/^text\\/plain/);
});
pm.test('every series is prefixed renewgate_', function () {
  const names = pm.response.text().split('\\n').filter(l => l && !l.startsWith('#')).map(l => l.split(/[{ ]/)[0]);
  pm.expect(names.length).to.be.above(0);
  names.forEach(n => pm.expect(n).to.match(/^renewgate_/));
});
pm.test('this run\\'s renewals are counted', function () {
  const lines = pm.response.text().split('\\n').filter(l => l.startsWith('renewgate_renewals_total{') && /outcome="(success|accepted)"/.test(l));
  const total = lines.map(l => parseFloat(l.split(' ').pop())).reduce((a, b) => a + b, 0);
  pm.expect(total).to.be.above(0);
});
""", auth=NOAUTH),
    request("Audit trail: this run's renewals", "GET", "/api/v1/audit", """
status(200); isJson();
pm.test('a renew record for this run\\'s folder, with who and the outcome', function () {
  // Newest first: this run's records are among them whatever earlier runs left.
  const recs = body().records.filter(r => r.target.indexOf(pm.collectionVariables.get('runId')) >= 0);
  pm.expect(recs.length).to.be.above(0);
  recs.forEach(r => {
    pm.expect(r.action).to.eql('renew');
    pm.expect(r.actor).to.be.a('string').and.not.empty;
    pm.expect(r.outcome).to.be.oneOf(['success', 'failure']);
  });
});
""", query=[("action", "renew"), ("limit", "1000")]),
    request("Revoke the token", "GET", "/vedauth/revoke/token", """
status(200); isJson();
pm.test('revoked', function () { pm.expect(body().Revoked).to.eql(true); });
"""),
    request("The revoked token is refused (401)", "GET", "/vedauth/authorize/verify", """
status(401); isJson();
pm.collectionVariables.unset('token');
"""),
], auth=BEARER)

collection = {
    "info": {
        "_postman_id": str(uuid.UUID("5b0e3f0e-7a54-4d0c-9f43-2b1e4f7c9a10")),
        "name": "Renewgate",
        "description": (
            "Every documented endpoint of Renewgate's Venafi TPP, Keyfactor Command (classic and API) and "
            "native dialects, as an end-to-end test. Needs only the environment's `baseUrl` "
            "(`https://host:port`), `username` and `password` (the `admin` user of a fresh gateway). "
            "Run the folders in order (Runner or `newman run`): later requests use ids earlier ones captured. "
            "Generated by postman/build_collection.py."),
        "schema": SCHEMA,
    },
    "auth": BEARER,
    "event": [script("prerequest", COLLECTION_PREREQUEST), script("test", COLLECTION_TEST)],
    "variable": [],
    "item": [native_setup, venafi, kf_api, kf_classic, native_end],
}

environment = {
    "id": "8f7d2c4a-1b3e-4f5a-9c6d-7e8f9a0b1c2d",
    "name": "Renewgate (local)",
    "values": [
        {"key": "baseUrl", "value": "https://127.0.0.1:8443", "type": "default", "enabled": True},
        {"key": "username", "value": "admin", "type": "default", "enabled": True},
        {"key": "password", "value": "", "type": "secret", "enabled": True},
    ],
    "_postman_variable_scope": "environment",
}


def count(items):
    return sum(count(i["item"]) if "item" in i else 1 for i in items)


if __name__ == "__main__":
    (HERE / "renewgate.postman_collection.json").write_text(json.dumps(collection, indent=2) + "\n")
    (HERE / "renewgate.postman_environment.json").write_text(json.dumps(environment, indent=2) + "\n")
    print(f"{count(collection['item'])} requests written")
