//! ACME Renewal Information (RFC 9773) lookups: the certificate a certID names and what decides
//! its suggested window (revocation, a retired issuer).
use diesel::prelude::*;

use crate::db::models::CertVersion;
use crate::db::schema::{cas, certificates, revocations};
use crate::db::{DbConn, DbError};

/// The certificate a certID names: its serial (by index), then its AKI.
pub fn find_version(c: &mut DbConn, aki: &[u8], serial: &str) -> Result<Option<CertVersion>, DbError> {
    // Stored serials may carry one leading zero nibble.
    let found: Vec<CertVersion> = certificates::table
        .filter(certificates::serial.eq_any([serial.to_string(), format!("0{serial}")]))
        .select(CertVersion::as_select())
        .load(c)?;
    Ok(found.into_iter().find(|v| {
        openssl::x509::X509::from_der(&v.der)
            .ok()
            .and_then(|x| x.authority_key_id().map(|k| k.as_slice().to_vec()))
            .is_some_and(|k| k == aki)
    }))
}

/// Has this certificate version been revoked?
pub fn is_revoked(c: &mut DbConn, version_id: i64) -> Result<bool, DbError> {
    let revoked: i64 = revocations::table.find(version_id).count().get_result(c)?;
    Ok(revoked > 0)
}

/// Has the issuing CA been taken out of service (a CA rotation)? An unknown CA has not.
pub fn issuer_retired(c: &mut DbConn, ca_id: i64) -> Result<bool, DbError> {
    Ok(cas::table.find(ca_id).select(cas::disabled).first::<bool>(c).optional()?.unwrap_or(false))
}
