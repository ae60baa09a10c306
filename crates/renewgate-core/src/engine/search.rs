//! Listing and searching the inventory, page by page (Keyfactor's certificate query, Venafi's
//! certificate search). The callers parse their dialect's query syntax into `CertFilter`s and
//! apply folder permissions to what comes back.
use diesel::prelude::*;

use crate::db::models::{CertObject, CertVersion};
use crate::db::schema::{cert_objects, certificates};
use crate::db::{DbConn, DbError};
use crate::vocab::Permission;

/// One condition on an issued certificate (all conditions of a query must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertFilter {
    Id(i64),
    /// Normalised thumbprint (see `inventory::normalize_thumbprint`).
    Thumbprint(String),
    /// Serial as stored (upper-case hex).
    Serial(String),
    CommonName(String),
}

/// How many certificate objects there are.
pub fn count_objects(conn: &mut DbConn) -> Result<i64, DbError> {
    Ok(cert_objects::table.count().get_result(conn)?)
}

/// Certificate objects by id, `limit` from `offset`.
pub fn objects_page(conn: &mut DbConn, limit: i64, offset: i64) -> Result<Vec<CertObject>, DbError> {
    Ok(cert_objects::table
        .order(cert_objects::id.asc())
        .limit(limit)
        .offset(offset)
        .select(CertObject::as_select())
        .load(conn)?)
}

/// One page of the certificate objects a caller may read, by id, and how many there are: the
/// folder filter and the page are in SQL, so a folder-limited caller gets full pages.
pub fn objects_for(
    conn: &mut DbConn,
    access: &crate::auth::FolderAccess,
    limit: i64,
    offset: i64,
) -> Result<(Vec<CertObject>, i64), DbError> {
    let Some(roots) = access.roots(Permission::Read) else {
        return Ok((objects_page(conn, limit, offset)?, count_objects(conn)?));
    };
    let visible = || super::access::under_folders!(cert_objects::policy_dn, &roots);
    let total: i64 = cert_objects::table.filter(visible()).count().get_result(conn)?;
    let page = cert_objects::table
        .filter(visible())
        .order(cert_objects::id.asc())
        .limit(limit)
        .offset(offset)
        .select(CertObject::as_select())
        .load(conn)?;
    Ok((page, total))
}

/// Issued certificates matching every filter whose object lies in a folder the caller may read,
/// by id, `limit` from `offset`: the folder filter and the page are in SQL, so a folder-limited
/// caller gets full pages.
pub fn certificates_for(
    conn: &mut DbConn,
    access: &crate::auth::FolderAccess,
    filters: &[CertFilter],
    limit: i64,
    offset: i64,
) -> Result<Vec<CertVersion>, DbError> {
    let mut query = certificates::table.inner_join(cert_objects::table).into_boxed();
    for f in filters {
        query = match f {
            CertFilter::Id(id) => query.filter(certificates::id.eq(*id)),
            CertFilter::Thumbprint(t) => query.filter(certificates::thumbprint.eq(t.clone())),
            CertFilter::Serial(s) => query.filter(certificates::serial.eq(s.clone())),
            CertFilter::CommonName(cn) => query.filter(certificates::common_name.eq(cn.clone())),
        };
    }
    if let Some(roots) = access.roots(Permission::Read) {
        query = query.filter(super::access::under_folders!(cert_objects::policy_dn, &roots));
    }
    Ok(query.order(certificates::id.asc()).limit(limit).offset(offset).select(CertVersion::as_select()).load(conn)?)
}
