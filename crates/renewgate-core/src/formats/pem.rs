//! Base64 (PEM) and Base64 (PKCS #8): certificates first (leaf then chain, or root first), the
//! private key last — vcert-go takes everything from the key block on as the key, and
//! vcert-python picks the leaf by position.
use openssl::symm::Cipher;

use super::{FormatError, OutputFormat, OutputOptions, ordered_certs};
use crate::engine::inventory::CertBundle;

pub fn render(bundle: &CertBundle, opts: &OutputOptions) -> Result<(Vec<u8>, &'static str), FormatError> {
    let mut out = Vec::new();
    for c in ordered_certs(bundle, opts) {
        out.extend_from_slice(&c.to_pem()?);
    }
    let key = bundle.key.as_ref().filter(|_| opts.include_private_key);
    let with_key = key.is_some();
    if let Some(key) = key {
        let pw = opts.password.as_deref().unwrap_or_default().as_bytes();
        let block = match opts.format {
            // PKCS#8 with PBES2 / AES-256-CBC.
            OutputFormat::Base64Pkcs8 => key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), pw)?,
            // Traditional ("RSA PRIVATE KEY" / "EC PRIVATE KEY") with a DEK-Info AES-256 header.
            _ => match key.id() {
                openssl::pkey::Id::RSA => key.rsa()?.private_key_to_pem_passphrase(Cipher::aes_256_cbc(), pw)?,
                openssl::pkey::Id::EC => key.ec_key()?.private_key_to_pem_passphrase(Cipher::aes_256_cbc(), pw)?,
                _ => key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), pw)?,
            },
        };
        out.extend_from_slice(&block);
    }
    let ext = if opts.format == OutputFormat::Base64 && !opts.include_chain && !with_key { "cer" } else { "pem" };
    Ok((out, ext))
}
