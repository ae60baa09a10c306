//! The one permission check of the engine, for every channel: a caller's folder permissions
//! (`read`, `write`, `key` on policy subtrees) against the folder an object, certificate, store or
//! policy lives in. What the caller may not see answers exactly like what does not exist.
use super::RenewError;
use super::inventory::{self, CertRef};
use crate::auth::FolderAccess;
use crate::db::DbConn;
use crate::db::models::{CertObject, CertVersion};
use crate::vocab::Permission;

/// The object `r` if the caller holds `perm` on its folder. Otherwise the answer for a missing
/// object, naming only `sent` (what the caller asked for): `NoRights` for a folder-limited
/// caller (the Venafi wording names both cases), `DoesNotExist` for an unlimited one.
pub fn object(
    conn: &mut DbConn,
    access: &FolderAccess,
    r: &CertRef,
    sent: &str,
    perm: Permission,
) -> Result<CertObject, RenewError> {
    match inventory::find_object(conn, r)? {
        Some(o) if access.allows(&o.policy_dn, perm) => Ok(o),
        _ if access.is_restricted() => Err(RenewError::NoRights(sent.to_string())),
        _ => Err(RenewError::DoesNotExist(sent.to_string())),
    }
}

/// A policy folder a request names (enrollment, CheckPolicy): the caller needs `perm` on it, and
/// a folder outside its grants answers as a missing one. Returns the normalized DN.
pub fn folder(access: &FolderAccess, dn: &str, perm: Permission) -> Result<String, RenewError> {
    let dn = crate::engine::policy::normalize_dn(dn);
    if access.allows(&dn, perm) { Ok(dn) } else { Err(RenewError::PolicyDoesNotExist(dn)) }
}

/// An existing policy folder the caller may read (missing and hidden answer alike).
pub fn existing_folder(conn: &mut DbConn, access: &FolderAccess, dn: &str) -> Result<String, RenewError> {
    let dn = folder(access, dn, Permission::Read)?;
    match crate::engine::policy::find_folder(conn, &dn)? {
        Some(_) => Ok(dn),
        None => Err(RenewError::PolicyDoesNotExist(dn)),
    }
}

/// Private Key Read: private keys of a folder's certificates are handed out (in an answer or to a
/// store) only to callers holding `key` on it.
pub fn may_read_keys(access: &FolderAccess, folder: &str) -> bool {
    access.allows(folder, Permission::Key)
}

/// DN to GUID for what the caller may read: an object (`X509 Certificate`) or a policy folder
/// (`Policy`); `None` for a missing or hidden one.
pub fn guid_of(
    conn: &mut DbConn,
    access: &FolderAccess,
    dn: &str,
) -> Result<Option<(&'static str, String)>, RenewError> {
    if let Some(o) = inventory::find_object(conn, &CertRef::Dn(dn.to_string()))? {
        return Ok(access.allows(&o.policy_dn, Permission::Read).then_some(("X509 Certificate", o.guid)));
    }
    Ok(crate::engine::policy::find_folder(conn, dn)?
        .filter(|f| access.allows(&f.dn, Permission::Read))
        .map(|f| ("Policy", f.guid)))
}

/// Whether the caller may read the object a job belongs to (`None`: the object is gone).
pub fn job_visible(conn: &mut DbConn, access: &FolderAccess, object_id: i64) -> Result<bool, RenewError> {
    let folder = super::lookup::find_object_folder(conn, object_id).map_err(|e| RenewError::Internal(e.to_string()))?;
    Ok(folder.is_some_and(|f| access.allows(&f, Permission::Read)))
}

/// A template the caller may enroll through: `write` on its folder, and `key` when the
/// enrollment hands out a key. Another folder's template answers as a missing one.
pub fn template(
    conn: &mut DbConn,
    access: &FolderAccess,
    name: &str,
    needs_key: bool,
) -> Result<Option<crate::db::models::Template>, RenewError> {
    Ok(super::templates::find(conn, name)?.filter(|t| {
        access.allows(&t.policy_dn, Permission::Write) && (!needs_key || may_read_keys(access, &t.policy_dn))
    }))
}

/// The object with GUID `guid` if the caller may read it (`None` for a missing or hidden one).
pub fn readable_object(conn: &mut DbConn, access: &FolderAccess, guid: &str) -> Result<Option<CertObject>, RenewError> {
    Ok(inventory::find_object(conn, &CertRef::Guid(guid.to_string()))?
        .filter(|o| access.allows(&o.policy_dn, Permission::Read)))
}

/// The objects (with the matching version) having a version of this thumbprint that the caller
/// may read.
pub fn readable_by_thumbprint(
    conn: &mut DbConn,
    access: &FolderAccess,
    thumbprint: &str,
) -> Result<Vec<(CertObject, CertVersion)>, RenewError> {
    Ok(inventory::objects_by_thumbprint(conn, thumbprint)?
        .into_iter()
        .filter(|(o, _)| access.allows(&o.policy_dn, Permission::Read))
        .collect())
}

/// What an ACME account may do: read and write in the folder its EAB key binds it to (and
/// below), never Private Key Read (an ACME client's keys are its own).
pub fn acme_account(binding_folder: &str) -> FolderAccess {
    FolderAccess(Some(vec![crate::auth::FolderGrant {
        dn: binding_folder.to_string(),
        perms: vec![Permission::Read, Permission::Write],
    }]))
}

/// Whether the caller holds `perm` on an object's folder.
pub fn object_allowed(access: &FolderAccess, o: &CertObject, perm: Permission) -> bool {
    access.allows(&o.policy_dn, perm)
}

/// Whether the caller holds `perm` on the folder of certificate version `v`.
pub fn certificate_allowed(
    conn: &mut DbConn,
    access: &FolderAccess,
    v: &CertVersion,
    perm: Permission,
) -> Result<bool, RenewError> {
    if !access.is_restricted() {
        return Ok(true);
    }
    let folder = super::lookup::object_folder(conn, v.object_id).map_err(|e| RenewError::Internal(e.to_string()))?;
    Ok(access.allows(&folder, perm))
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// The folder filter of listings, in SQL: the DN column `$column` is one of `$roots` or lies below
/// one (case-insensitively). A macro because each listing boxes a query over its own tables.
macro_rules! under_folders {
    ($column:expr, $roots:expr) => {{
        let mut cond: Box<dyn diesel::BoxableExpression<_, _, SqlType = diesel::sql_types::Bool>> =
            Box::new(diesel::dsl::sql::<diesel::sql_types::Bool>("1 = 0"));
        for dn in $roots {
            let dn = $crate::engine::policy::normalize_dn(dn);
            cond = Box::new(cond.or($crate::engine::access::lower($column).eq(dn.to_lowercase())).or(
                $crate::engine::access::lower($column).like($crate::engine::access::below_pattern(&dn)).escape('!'),
            ));
        }
        cond
    }};
}
pub(crate) use under_folders;

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
