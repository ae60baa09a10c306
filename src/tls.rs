//! The gateway's own HTTPS certificate: issued by the built-in issuing CA on first start
//! (localhost, 127.0.0.1, ::1 and configured names), or a configured certificate and key.
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslMethod};
use openssl::x509::{X509, X509NameBuilder};

use crate::ca::{EcCurve, KeySpec, LeafTemplate, LoadedCa, SanSet, build_leaf};
use crate::secrets::write_private_file;
use crate::settings::Settings;

pub struct ServerIdentity {
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

fn required_names(settings: &Settings) -> SanSet {
    let mut s =
        SanSet { dns: vec!["localhost".into()], ip: vec!["127.0.0.1".into(), "::1".into()], ..Default::default() };
    for n in &settings.tls.names {
        let n = n.trim();
        if n.is_empty() {
            continue;
        }
        if n.parse::<IpAddr>().is_ok() {
            if !s.ip.iter().any(|x| x == n) {
                s.ip.push(n.to_string());
            }
        } else if !s.dns.iter().any(|x| x.eq_ignore_ascii_case(n)) {
            s.dns.push(n.to_string());
        }
    }
    s
}

fn paths(settings: &Settings) -> (PathBuf, PathBuf) {
    let dir = settings.data_dir.join("tls");
    (dir.join("server.crt"), dir.join("server.key"))
}

/// Loads or (re)issues the server identity. Reissued when the CA changed, a name is missing,
/// or fewer than 30 days remain.
pub fn server_identity(settings: &Settings, issuing: &LoadedCa) -> anyhow::Result<ServerIdentity> {
    if let (Some(c), Some(k)) = (&settings.tls.cert_file, &settings.tls.key_file) {
        let chain = X509::stack_from_pem(&fs::read(c)?)?;
        let key = PKey::private_key_from_pem(&fs::read(k)?)?;
        anyhow::ensure!(!chain.is_empty(), "{}: no certificate", c.display());
        return Ok(ServerIdentity { chain, key });
    }
    let (cert_path, key_path) = paths(settings);
    let want = required_names(settings);
    if let (Ok(cp), Ok(kp)) = (fs::read(&cert_path), fs::read(&key_path))
        && let (Ok(chain), Ok(key)) = (X509::stack_from_pem(&cp), PKey::private_key_from_pem(&kp))
    {
        let ok = chain.first().is_some_and(|leaf| {
            let have = SanSet::of_cert(leaf);
            let signed = issuing.cert.public_key().ok().is_some_and(|pk| leaf.verify(&pk).unwrap_or(false));
            let names = want.dns.iter().all(|d| have.dns.iter().any(|h| h.eq_ignore_ascii_case(d)))
                && want.ip.iter().all(|i| have.ip.iter().any(|h| h.parse::<IpAddr>().ok() == i.parse::<IpAddr>().ok()));
            let left = crate::ca::asn1_to_unix(leaf.not_after()).unwrap_or(0) - chrono::Utc::now().timestamp();
            signed && names && left > 30 * 86400
        });
        if ok {
            return Ok(ServerIdentity { chain, key });
        }
    }
    let key = KeySpec::Ec(EcCurve::P256).generate()?;
    let mut nb = X509NameBuilder::new()?;
    nb.append_entry_by_text("CN", want.dns.last().map(String::as_str).unwrap_or("localhost"))?;
    let name = nb.build();
    let public = PKey::public_key_from_der(&key.public_key_to_der()?)?;
    let leaf = build_leaf(
        &issuing.cert,
        &issuing.key,
        &LeafTemplate {
            subject: &name,
            sans: &want,
            public_key: &public,
            validity_secs: 365 * 86400,
            ekus: &["serverAuth".into()],
            not_after_max: None,
            // The gateway's own server certificate names no CRL: clients check it by the bundle.
            urls: None,
        },
    )?;
    let mut pem = leaf.to_pem()?;
    for c in issuing.chain() {
        pem.extend_from_slice(&c.to_pem()?);
    }
    if let Some(dir) = cert_path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&cert_path, &pem)?;
    write_private_file(&key_path, &key.private_key_to_pem_pkcs8()?)?;
    let mut chain = vec![leaf];
    chain.extend(issuing.chain().into_iter().filter(|c| c.issued(c) != openssl::x509::X509VerifyResult::OK));
    Ok(ServerIdentity { chain, key })
}

pub fn acceptor(id: &ServerIdentity) -> anyhow::Result<SslAcceptorBuilder> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    b.set_private_key(&id.key)?;
    b.set_certificate(&id.chain[0])?;
    for c in id.chain.iter().skip(1) {
        // Roots need not be sent; clients have them in the CA bundle.
        if c.issued(c) != openssl::x509::X509VerifyResult::OK {
            b.add_extra_chain_cert(c.clone())?;
        }
    }
    b.check_private_key()?;
    Ok(b)
}
