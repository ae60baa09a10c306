//! The one permission check of the engine, for every channel: a caller's folder permissions
//! (`read`, `write`, `key` on policy subtrees) against the folder an object, certificate, store or
//! policy lives in. What the caller may not see answers exactly like what does not exist.
use super::RenewError;
use super::inventory::{self, CertRef};
use crate::auth::FolderAccess;
use crate::db::DbConn;
use crate::db::models::{CertObject, CertVersion};

/// The object `r` if the caller holds `perm` on its folder. Otherwise the answer for a missing
/// object, naming only `sent` (what the caller asked for): `NoRights` for a folder-limited
/// caller (the Venafi wording names both cases), `DoesNotExist` for an unlimited one.
pub fn object(
    conn: &mut DbConn,
    access: &FolderAccess,
    r: &CertRef,
    sent: &str,
    perm: &str,
) -> Result<CertObject, RenewError> {
    match inventory::find_object(conn, r)? {
        Some(o) if access.allows(&o.policy_dn, perm) => Ok(o),
        _ if access.is_restricted() => Err(RenewError::NoRights(sent.to_string())),
        _ => Err(RenewError::DoesNotExist(sent.to_string())),
    }
}

/// Whether the caller holds `perm` on the folder of certificate version `v`.
pub fn certificate_allowed(
    conn: &mut DbConn,
    access: &FolderAccess,
    v: &CertVersion,
    perm: &str,
) -> Result<bool, RenewError> {
    if !access.is_restricted() {
        return Ok(true);
    }
    let folder = super::lookup::object_folder(conn, v.object_id).map_err(|e| RenewError::Internal(e.to_string()))?;
    Ok(access.allows(&folder, perm))
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// `LIKE` pattern (escape character `!`) for "anything below this DN", lower-cased: the folder
/// filter of listings, in SQL. (PostgreSQL would read the DN's backslashes as escapes without it.)
pub fn below_pattern(dn: &str) -> String {
    let mut p = String::new();
    for c in crate::engine::policy::normalize_dn(dn).to_lowercase().chars() {
        if matches!(c, '!' | '%' | '_') {
            p.push('!');
        }
        p.push(c);
    }
    p.push_str("\\%");
    p
}
