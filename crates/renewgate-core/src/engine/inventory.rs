//! The certificate inventory: objects (a DN, a state, versions) and their issued versions.
use diesel::prelude::*;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::error::RenewError;
use crate::db::DbConn;
use crate::db::models::{CertObject, CertVersion, Job};
use crate::db::schema::{cert_objects, certificates, jobs};
use crate::secrets::MasterKey;

pub const KEY_PURPOSE: &str = "certificate-key";

/// How a caller names a certificate object.
#[derive(Debug, Clone)]
pub enum CertRef {
    Dn(String),
    Guid(String),
    /// Any version's SHA-1 thumbprint (hex; case, spaces and colons ignored).
    Thumbprint(String),
    /// The database id of one issued certificate (a version).
    CertificateId(i64),
    ObjectId(i64),
}

pub fn normalize_thumbprint(t: &str) -> String {
    t.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_ascii_uppercase()
}

pub fn normalize_guid(g: &str) -> String {
    g.trim().trim_start_matches('{').trim_end_matches('}').to_ascii_lowercase()
}

pub fn find_object(conn: &mut DbConn, r: &CertRef) -> Result<Option<CertObject>, RenewError> {
    let q = cert_objects::table.select(CertObject::as_select());
    let obj = match r {
        CertRef::Dn(dn) => q.filter(cert_objects::dn_lower.eq(dn.trim().to_lowercase())).first(conn).optional()?,
        CertRef::Guid(g) => q.filter(cert_objects::guid.eq(normalize_guid(g))).first(conn).optional()?,
        CertRef::ObjectId(id) => q.filter(cert_objects::id.eq(id)).first(conn).optional()?,
        CertRef::Thumbprint(t) => {
            let oid: Option<i64> = certificates::table
                .filter(certificates::thumbprint.eq(normalize_thumbprint(t)))
                .order(certificates::id.desc())
                .select(certificates::object_id)
                .first(conn)
                .optional()?;
            match oid {
                Some(id) => q.filter(cert_objects::id.eq(id)).first(conn).optional()?,
                None => None,
            }
        }
        CertRef::CertificateId(cid) => {
            let oid: Option<i64> =
                certificates::table.find(cid).select(certificates::object_id).first(conn).optional()?;
            match oid {
                Some(id) => q.filter(cert_objects::id.eq(id)).first(conn).optional()?,
                None => None,
            }
        }
    };
    Ok(obj)
}

/// Objects any of whose versions has this thumbprint (deduplicated, newest first).
pub fn objects_by_thumbprint(
    conn: &mut DbConn,
    thumbprint: &str,
) -> Result<Vec<(CertObject, CertVersion)>, RenewError> {
    let rows: Vec<(CertVersion, CertObject)> = certificates::table
        .inner_join(cert_objects::table)
        .filter(certificates::thumbprint.eq(normalize_thumbprint(thumbprint)))
        .order(certificates::id.desc())
        .select((CertVersion::as_select(), CertObject::as_select()))
        .load(conn)?;
    let mut out: Vec<(CertObject, CertVersion)> = vec![];
    for (v, o) in rows {
        if !out.iter().any(|(x, _)| x.id == o.id) {
            out.push((o, v));
        }
    }
    Ok(out)
}

pub fn current_version(conn: &mut DbConn, obj: &CertObject) -> Result<Option<CertVersion>, RenewError> {
    match obj.current_cert_id {
        Some(id) => Ok(certificates::table.find(id).select(CertVersion::as_select()).first(conn).optional()?),
        None => Ok(None),
    }
}

pub fn versions(conn: &mut DbConn, object_id: i64) -> Result<Vec<CertVersion>, RenewError> {
    Ok(certificates::table
        .filter(certificates::object_id.eq(object_id))
        .order(certificates::id.asc())
        .select(CertVersion::as_select())
        .load(conn)?)
}

pub fn job(conn: &mut DbConn, id: i64) -> Result<Option<Job>, RenewError> {
    Ok(jobs::table.find(id).select(Job::as_select()).first(conn).optional()?)
}

/// A version's certificate, chain and (if the gateway holds it) private key, decrypted.
pub struct CertBundle {
    pub leaf: X509,
    /// Issuer chain, nearest first, root last.
    pub chain: Vec<X509>,
    pub key: Option<PKey<Private>>,
}

impl CertBundle {
    pub fn load(v: &CertVersion, master: &MasterKey, with_key: bool) -> Result<CertBundle, RenewError> {
        let leaf = X509::from_der(&v.der)?;
        let chain = if v.chain_pem.trim().is_empty() { vec![] } else { X509::stack_from_pem(v.chain_pem.as_bytes())? };
        let key = match (&v.key_enc, with_key) {
            (Some(sealed), true) => {
                let der =
                    master.open(KEY_PURPOSE, sealed).map_err(|e| RenewError::Internal(format!("private key: {e}")))?;
                Some(PKey::private_key_from_der(&der)?)
            }
            _ => None,
        };
        Ok(CertBundle { leaf, chain, key })
    }
}
