//! JKS through the `jks` crate (the only JKS writer for Rust; keytool reads its output):
//! a PrivateKeyEntry under the alias with the chain (leaf first, as Java requires), or
//! trustedCertEntries when no key is included.
use std::time::SystemTime;

use super::{FormatError, OutputOptions};
use crate::engine::inventory::CertBundle;

pub fn render(
    bundle: &CertBundle,
    opts: &OutputOptions,
    alias: &str,
    store_password: &str,
) -> Result<Vec<u8>, FormatError> {
    let err = |e: jks::KeyStoreError| FormatError::Crypto(format!("JKS: {e:?}"));
    let cert = |x: &openssl::x509::X509| -> Result<jks::Certificate, FormatError> {
        Ok(jks::Certificate { cert_type: "X509".into(), content: x.to_der()? })
    };
    let mut ks = jks::KeyStore::with_options(jks::KeyStoreOptions { min_password_len: 1, ..Default::default() });
    let mut chain = vec![cert(&bundle.leaf)?];
    if opts.include_chain {
        for c in &bundle.chain {
            chain.push(cert(c)?);
        }
    }
    match (&bundle.key, opts.include_private_key) {
        (Some(key), true) => {
            let key_password = opts.password.as_deref().unwrap_or(store_password);
            let entry = jks::PrivateKeyEntry {
                creation_time: SystemTime::now(),
                private_key: key.private_key_to_pkcs8()?,
                certificate_chain: chain,
            };
            ks.set_private_key_entry(alias, entry, key_password.as_bytes()).map_err(err)?;
        }
        _ => {
            for (i, c) in chain.into_iter().enumerate() {
                let a = if i == 0 { alias.to_string() } else { format!("{alias}-ca{i}") };
                ks.set_trusted_certificate_entry(
                    &a,
                    jks::TrustedCertificateEntry { creation_time: SystemTime::now(), certificate: c },
                )
                .map_err(err)?;
            }
        }
    }
    let mut out = Vec::new();
    ks.store(&mut out, store_password.as_bytes()).map_err(err)?;
    Ok(out)
}
