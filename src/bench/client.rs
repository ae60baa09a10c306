//! The load generator's HTTP side: one keep-alive ureq agent per client thread, trusting the
//! gateway's CA bundle; the Venafi and Keyfactor renewal calls and the checks of their answers.
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use serde_json::{Value, json};

/// An agent trusting the certificates of `ca_bundle` (keep-alive: the pool keeps the connection).
pub fn agent(ca_bundle: &Path) -> anyhow::Result<ureq::Agent> {
    let pem = std::fs::read(ca_bundle).map_err(|e| anyhow::anyhow!("{}: {e}", ca_bundle.display()))?;
    agent_for_pem(&pem)
}

pub fn agent_for_pem(pem: &[u8]) -> anyhow::Result<ureq::Agent> {
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(pem)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    anyhow::ensure!(!certs.is_empty(), "no certificates in the CA bundle");
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_redirects(0)
        .build()
        .new_agent())
}

/// An X509 store of the CA bundle, for the sampled chain checks.
pub fn ca_store(pem: &[u8]) -> anyhow::Result<X509Store> {
    let mut b = X509StoreBuilder::new()?;
    for c in X509::stack_from_pem(pem)? {
        b.add_cert(c)?;
    }
    Ok(b.build())
}

/// True when `leaf` (with `chain` as untrusted intermediates) verifies up to the store.
pub fn chains_to(store: &X509Store, leaf: &X509, chain: &[X509]) -> bool {
    let Ok(mut untrusted) = openssl::stack::Stack::new() else { return false };
    for c in chain {
        if untrusted.push(c.clone()).is_err() {
            return false;
        }
    }
    let Ok(mut ctx) = openssl::x509::X509StoreContext::new() else { return false };
    ctx.init(store, leaf, &untrusted, |c| c.verify_cert()).unwrap_or(false)
}

pub fn serial_hex(c: &X509) -> String {
    c.serial_number().to_bn().ok().and_then(|b| b.to_hex_str().ok()).map(|s| s.to_string()).unwrap_or_default()
}

pub fn sha1_thumbprint(der: &[u8]) -> String {
    hex::encode_upper(openssl::sha::sha1(der))
}

/// A JSON POST; the status and the parsed body (Null when the body is not JSON).
pub fn post_json(agent: &ureq::Agent, url: &str, auth: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let mut r = agent.post(url).header("Authorization", auth).header("Accept", "application/json").send_json(body)?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// The certificates of a Venafi Base64 answer's `CertificateData` (PEM inside base64).
pub fn certs_of(body: &Value) -> Option<Vec<X509>> {
    let data = body.get("CertificateData")?.as_str()?;
    let pem = B64.decode(data.trim()).ok()?;
    X509::stack_from_pem(&pem).ok().filter(|v| !v.is_empty())
}

/// Venafi Request with a CSR (the object then belongs to its user CSR): DN and first serial.
pub fn venafi_request_csr(
    agent: &ureq::Agent,
    base: &str,
    auth: &str,
    policy_dn: &str,
    name: &str,
    csr_pem: &str,
) -> anyhow::Result<(String, X509)> {
    let body = json!({"PolicyDN": policy_dn, "ObjectName": name, "PKCS10": csr_pem,
                      "WorkToDoTimeout": 30, "Format": "Base64"});
    request_answer(post_json(agent, &format!("{base}/vedsdk/Certificates/Request"), auth, &body)?)
}

/// Venafi Request with a service-generated EC P-256 key.
pub fn venafi_request_service(
    agent: &ureq::Agent,
    base: &str,
    auth: &str,
    policy_dn: &str,
    name: &str,
) -> anyhow::Result<(String, X509)> {
    let body = json!({"PolicyDN": policy_dn, "ObjectName": name, "Subject": name,
                      "SubjectAltNames": [{"Type": 2, "Name": name}],
                      "KeyAlgorithm": "ECC", "EllipticCurve": "P256",
                      "WorkToDoTimeout": 30, "Format": "Base64"});
    request_answer(post_json(agent, &format!("{base}/vedsdk/Certificates/Request"), auth, &body)?)
}

fn request_answer((status, body): (u16, Value)) -> anyhow::Result<(String, X509)> {
    anyhow::ensure!(status == 200, "Request answered {status}: {body}");
    let dn = body.get("CertificateDN").and_then(Value::as_str).unwrap_or_default().to_string();
    let certs = certs_of(&body).ok_or_else(|| anyhow::anyhow!("Request answered without a certificate: {body}"))?;
    let leaf = certs.into_iter().next().ok_or_else(|| anyhow::anyhow!("Request answered an empty chain: {body}"))?;
    Ok((dn, leaf))
}
