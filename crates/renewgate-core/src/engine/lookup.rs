//! Point lookups the HTTP dialects and the request observer make: one row or one column by id,
//! thumbprint or serial. Plain reads with no policy of their own (the callers check folders).
//! `find_*` answers `None` for an absent row; the others treat absence as a storage error
//! (`DbError::Query(NotFound)`), as a row the caller was just given must exist.
use diesel::prelude::*;

use crate::db::models::{CertObject, CertVersion};
use crate::db::schema::{acme_orders, cert_objects, certificate_info, certificates, jobs, revocations};
use crate::db::{DbConn, DbError};

/// One issued certificate (a version) by id, if it exists.
pub fn find_version(conn: &mut DbConn, id: i64) -> Result<Option<CertVersion>, DbError> {
    Ok(certificates::table.find(id).select(CertVersion::as_select()).first(conn).optional()?)
}

/// One issued certificate (a version) by id; absent is an error.
pub fn version(conn: &mut DbConn, id: i64) -> Result<CertVersion, DbError> {
    // Read for every rendered certificate: on the concrete connection (`on_backend`).
    Ok(crate::on_backend!(conn, |c| certificates::table.find(id).select(CertVersion::as_select()).first(c))?)
}

/// Versions an engine committed lately, newest last: a request that waited for its renewal
/// renders the certificate it was just issued, and reading the row back would be one more
/// round trip per renewal.
///
/// A copy is as good as the row: nothing updates or deletes `certificates` once a row is
/// inserted. (A master-key rotation re-seals `key_enc`, for instances started with the new
/// key; this one holds the key its copy was sealed with.) Kept per engine, not per process: a
/// test process holds many in-memory databases whose ids overlap.
#[derive(Default)]
pub struct RecentVersions(std::sync::Mutex<std::collections::VecDeque<CertVersion>>);

/// How many committed versions are kept (a few hundred KB): more than the requests that can be
/// waiting for theirs at once.
const RECENT_KEPT: usize = 256;

impl RecentVersions {
    /// Keeps a version the caller has just committed (`id` is the database's).
    pub fn remember(&self, v: CertVersion) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= RECENT_KEPT {
            q.pop_front();
        }
        q.push_back(v);
    }

    /// [`version`], without reading a version kept here.
    pub fn version(&self, conn: &mut DbConn, id: i64) -> Result<CertVersion, DbError> {
        match self.kept(id) {
            Some(v) => Ok(v),
            None => version(conn, id),
        }
    }

    /// [`find_version`], without reading a version kept here.
    pub fn find_version(&self, conn: &mut DbConn, id: i64) -> Result<Option<CertVersion>, DbError> {
        match self.kept(id) {
            Some(v) => Ok(Some(v)),
            None => find_version(conn, id),
        }
    }

    pub(crate) fn kept(&self, id: i64) -> Option<CertVersion> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().find(|v| v.id == id).cloned()
    }
}

/// The newest version with this thumbprint (already normalised by the caller).
pub fn latest_version_by_thumbprint(conn: &mut DbConn, thumbprint: &str) -> Result<Option<CertVersion>, DbError> {
    Ok(certificates::table
        .filter(certificates::thumbprint.eq(thumbprint))
        .order(certificates::id.desc())
        .select(CertVersion::as_select())
        .first(conn)
        .optional()?)
}

/// Versions whose stored serial is any of `serials` (exact text match).
pub fn versions_by_serials(conn: &mut DbConn, serials: &[String]) -> Result<Vec<CertVersion>, DbError> {
    Ok(certificates::table.filter(certificates::serial.eq_any(serials)).select(CertVersion::as_select()).load(conn)?)
}

/// A version's thumbprint, if the version exists.
pub fn find_thumbprint(conn: &mut DbConn, certificate_id: i64) -> Result<Option<String>, DbError> {
    Ok(certificates::table.find(certificate_id).select(certificates::thumbprint).first::<String>(conn).optional()?)
}

/// One certificate object by id; absent is an error.
pub fn object(conn: &mut DbConn, id: i64) -> Result<CertObject, DbError> {
    Ok(crate::on_backend!(conn, |c| cert_objects::table.find(id).select(CertObject::as_select()).first(c))?)
}

/// The policy folder of an object, if the object exists.
pub fn find_object_folder(conn: &mut DbConn, object_id: i64) -> Result<Option<String>, DbError> {
    Ok(cert_objects::table.find(object_id).select(cert_objects::policy_dn).first(conn).optional()?)
}

/// The policy folder of an object; absent is an error.
pub fn object_folder(conn: &mut DbConn, object_id: i64) -> Result<String, DbError> {
    Ok(cert_objects::table.find(object_id).select(cert_objects::policy_dn).first(conn)?)
}

/// The DN of an object, if the object exists.
pub fn find_object_dn(conn: &mut DbConn, object_id: i64) -> Result<Option<String>, DbError> {
    Ok(cert_objects::table.find(object_id).select(cert_objects::dn).first(conn).optional()?)
}

/// What a version was issued with: (template, CA name, metadata JSON).
pub type IssueInfo = (Option<String>, Option<String>, String);

/// What a version was issued with, if recorded.
pub fn certificate_info(conn: &mut DbConn, certificate_id: i64) -> Result<Option<IssueInfo>, DbError> {
    Ok(certificate_info::table
        .find(certificate_id)
        .select((certificate_info::template, certificate_info::ca_name, certificate_info::metadata))
        .first(conn)
        .optional()?)
}

/// A revocation: (reason code, comments, when).
pub type Revocation = (i32, String, chrono::NaiveDateTime);

/// A version's revocation, if it is revoked.
pub fn revocation(conn: &mut DbConn, certificate_id: i64) -> Result<Option<Revocation>, DbError> {
    Ok(revocations::table
        .find(certificate_id)
        .select((revocations::reason, revocations::comments, revocations::revoked_at))
        .first(conn)
        .optional()?)
}

/// The certificate an issuance job produced: `None` if there is no such job, `Some(None)` if it
/// has not produced one (yet).
pub fn job_result_certificate(conn: &mut DbConn, job_id: i64) -> Result<Option<Option<i64>>, DbError> {
    Ok(jobs::table.find(job_id).select(jobs::result_cert_id).first::<Option<i64>>(conn).optional()?)
}

/// An ACME order's action (`enroll`, `renew`, `reissue`) and target object, if the order exists.
pub fn acme_order_action(conn: &mut DbConn, order_id: i64) -> Result<Option<(String, Option<i64>)>, DbError> {
    Ok(acme_orders::table
        .find(order_id)
        .select((acme_orders::action, acme_orders::target_object_id))
        .first(conn)
        .optional()?)
}
