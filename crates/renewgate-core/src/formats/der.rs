//! DER: the raw leaf certificate.
use super::FormatError;
use crate::engine::inventory::CertBundle;

pub fn render(bundle: &CertBundle) -> Result<Vec<u8>, FormatError> {
    Ok(bundle.leaf.to_der()?)
}
