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
        // Each phase bounded rather than the whole call: with a global timeout, ureq resolves
        // every request's host (an IP literal here) on a thread of its own, a thread spawned per
        // request, 6 % of the load generator's CPU in the acme workload. Unbounded, resolving
        // runs on the caller's thread.
        .timeout_connect(Some(Duration::from_secs(60)))
        .timeout_send_request(Some(Duration::from_secs(60)))
        .timeout_send_body(Some(Duration::from_secs(60)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
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
    let pem = pem_of(body)?;
    X509::stack_from_pem(&pem).ok().filter(|v| !v.is_empty())
}

/// The PEM text of a Venafi Base64 answer.
pub fn pem_of(body: &Value) -> Option<Vec<u8>> {
    let data = body.get("CertificateData")?.as_str()?;
    B64.decode(data.trim()).ok()
}

/// The DER of the first certificate of a PEM text, without decoding it as a certificate: the
/// load generator checks every answer's serial, and a full X.509 decode (OpenSSL 3) cost it
/// more CPU than the gateway spent on the renewal. The sampled chain check decodes in full.
pub fn first_der(pem: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let start = pem.windows(BEGIN.len()).position(|w| w == BEGIN)? + BEGIN.len();
    let len = pem[start..].windows(END.len()).position(|w| w == END)?;
    let b64: Vec<u8> = pem[start..start + len].iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    B64.decode(b64).ok()
}

/// One DER header: (tag, content start, content length) at `at`.
fn der_header(d: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *d.get(at)?;
    let first = *d.get(at + 1)? as usize;
    if first < 0x80 {
        return Some((tag, at + 2, first));
    }
    let n = first & 0x7f;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *d.get(at + 2 + i)? as usize;
    }
    Some((tag, at + 2 + n, len))
}

/// A certificate's serial number (hex of its INTEGER's content octets), read from its DER:
/// Certificate SEQUENCE > TBSCertificate SEQUENCE > [0] version (optional) > serial INTEGER.
pub fn serial_of_der(der: &[u8]) -> Option<String> {
    let (t, cert, _) = der_header(der, 0)?;
    let (t2, tbs, _) = der_header(der, cert)?;
    let (mut tag, mut at, mut len) = der_header(der, tbs)?;
    if tag == 0xa0 {
        (tag, at, len) = der_header(der, at + len)?;
    }
    if t != 0x30 || t2 != 0x30 || tag != 0x02 {
        return None;
    }
    Some(hex::encode_upper(der.get(at..at + len)?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_of_a_pem_chain_and_its_serial_read_as_openssl_reads_them() {
        let key = super::super::raw::ec_key().unwrap();
        let ca = super::super::raw::self_signed_ca(&key).unwrap();
        let other_key = super::super::raw::ec_key().unwrap();
        let other = super::super::raw::self_signed_ca(&other_key).unwrap();
        let mut pem = ca.to_pem().unwrap();
        pem.extend(other.to_pem().unwrap());
        let leaf = first_der(&pem).expect("a certificate");
        assert_eq!(leaf, ca.to_der().unwrap());
        let serial = hex::encode_upper(ca.serial_number().to_bn().unwrap().to_vec());
        assert_eq!(serial_of_der(&leaf).as_deref().map(|s| s.trim_start_matches("00")), Some(serial.as_str()));
        assert_eq!(first_der(b"no certificate here"), None);
    }
}
