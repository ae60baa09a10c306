//! ACME Renewal Information (RFC 9773): certID = base64url(AKI keyIdentifier) "."
//! base64url(serial DER content octets). The suggested window sits inside the folder's ACME
//! renewal window so auto-detection keeps choosing *renew*: lead = min(acme_renewal_window,
//! validity/3), start = notAfter − lead, end = start + lead/3; a revoked certificate, or one
//! whose issuing CA was taken out of service (a CA rotation), gets a window that has already begun.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;

use super::db::ari as rows;
use super::{AcmeError, AcmeResult};
use crate::db::DbConn;
use crate::engine::policy;

/// The certID of a certificate (what clients compute).
pub fn cert_id(cert: &openssl::x509::X509Ref) -> Option<String> {
    let aki = cert.authority_key_id()?;
    let mut serial = cert.serial_number().to_bn().ok()?.to_vec();
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    Some(format!("{}.{}", B64U.encode(aki.as_slice()), B64U.encode(&serial)))
}

/// Decodes a certID leniently (padding stripped) into (AKI, serial as upper-case hex without leading zeros).
pub fn parse_cert_id(id: &str) -> Option<(Vec<u8>, String)> {
    let (a, s) = id.split_once('.')?;
    let aki = B64U.decode(a.trim_end_matches('=')).ok()?;
    let serial = B64U.decode(s.trim_end_matches('=')).ok()?;
    let hex = hex::encode_upper(&serial);
    let hex = hex.trim_start_matches('0').to_string();
    if aki.is_empty() || hex.is_empty() {
        return None;
    }
    Some((aki, hex))
}

/// The suggested window (start, end; unix seconds) of the certificate a certID names.
pub fn window(c: &mut DbConn, id: &str) -> AcmeResult<(i64, i64)> {
    let (aki, serial) =
        parse_cert_id(id).ok_or_else(|| AcmeError::malformed("the certID is not base64url(AKI).base64url(serial)"))?;
    let v = rows::find_version(c, &aki, &serial)?.ok_or_else(|| {
        AcmeError::new(404, super::ErrorType::Malformed, "no certificate with this certID was issued here")
    })?;
    let now = chrono::Utc::now().timestamp();
    let retired_issuer = match v.issuer_ca_id {
        Some(ca) => rows::issuer_retired(c, ca)?,
        None => false,
    };
    if rows::is_revoked(c, v.id)? || retired_issuer {
        return Ok((now - 3600, now - 1800));
    }
    let folder = super::db::orders::object_folder(c, v.object_id)?;
    let p = policy::effective(c, &folder)?;
    let window = super::detect::policy_secs(&p, "acme_renewal_window").unwrap_or(32 * 86400);
    let not_after = v.not_after.and_utc().timestamp();
    let validity = (not_after - v.not_before.and_utc().timestamp()).max(3);
    let lead = window.min(validity / 3);
    let start = not_after - lead;
    Ok((start, start + (lead / 3).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_ids_round_trip_with_the_rfc_example_serial() {
        // RFC 9773 §4.1: serial 0x87654321 encodes as AIdlQyE (leading zero kept).
        let (aki, serial) = parse_cert_id("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").unwrap();
        assert_eq!(serial, "87654321");
        assert!(!aki.is_empty());
        assert!(parse_cert_id("nodot").is_none());
        assert!(parse_cert_id(".AIdlQyE").is_none());
    }
}
