//! Automatic renewal: a background thread that renews service-generated certificates entering
//! their renewal window, through the same engine path as a client's renewal, and pushes the new
//! version to the stores that hold the old one (push jobs are scheduled when it is issued).
//!
//! The window is the folder's `auto_renew_before` (default 30 days; `auto_renew = false` turns
//! it off), capped at a third of the certificate's validity so short-lived certificates do not
//! renew in a loop. Exactly once across instances: each renewal is decided and enqueued in one
//! write transaction under a PostgreSQL advisory lock (SQLite: `BEGIN IMMEDIATE`) that re-reads the
//! object and its current version, so an object renewed (or being renewed) by another instance
//! in the meantime is not renewed again.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::audit;
use super::inventory::CertRef;
use super::renew::{IssuePayload, RenewRequest};
use super::{Engine, RenewError, policy};
use crate::db::schema::{cert_objects, certificates, jobs, store_jobs};
use crate::db::{DbConn, now, write_tx};
use crate::metrics::METRICS;
use crate::vocab::{CsrOrigin, ManagementType, ObjectState, StoreJobState};

/// Advisory lock (PostgreSQL) serialising the scheduler's renewal decisions across instances.
const SCHEDULER_LOCK: i64 = 7262030;

/// How long before `not_after` a certificate is renewed: `before`, at most a third of its validity.
pub fn renewal_window(before: Duration, not_before: NaiveDateTime, not_after: NaiveDateTime) -> chrono::Duration {
    let validity = (not_after - not_before).max(chrono::Duration::zero());
    let before = chrono::Duration::from_std(before).unwrap_or(chrono::Duration::MAX);
    before.min(validity / 3)
}

/// A certificate object whose current version is in its renewal window.
#[derive(Debug, Clone)]
pub struct Due {
    pub object_id: i64,
    pub dn: String,
    pub certificate_id: i64,
    pub not_after: NaiveDateTime,
}

type Candidate = (i64, String, String, i64, NaiveDateTime, NaiveDateTime, NaiveDateTime, Option<i64>);

/// When a version's validity starts for the cap: issued here, when it was issued (the CA backdates
/// `notBefore` a little for clock skew, which would otherwise make a 30 s certificate look 90 s
/// long and renew at once, in a loop); imported, its `notBefore`.
fn validity_start(not_before: NaiveDateTime, created_at: NaiveDateTime, job_id: Option<i64>) -> NaiveDateTime {
    if job_id.is_some() { not_before.max(created_at) } else { not_before }
}

/// Current versions of the objects the scheduler may renew: service-generated, enrollment-managed,
/// active and enabled.
fn candidates(c: &mut DbConn, object: Option<i64>, until: NaiveDateTime) -> QueryResult<Vec<Candidate>> {
    let mut q = cert_objects::table
        .inner_join(certificates::table.on(certificates::id.nullable().eq(cert_objects::current_cert_id)))
        .filter(cert_objects::csr_origin.eq(CsrOrigin::Service))
        .filter(cert_objects::management_type.eq(ManagementType::Enrollment))
        .filter(cert_objects::state.eq(ObjectState::Active))
        .filter(cert_objects::disabled.eq(false))
        .filter(certificates::not_after.le(until))
        .select((
            cert_objects::id,
            cert_objects::dn,
            cert_objects::policy_dn,
            certificates::id,
            certificates::not_before,
            certificates::not_after,
            certificates::created_at,
            certificates::job_id,
        ))
        .into_boxed();
    if let Some(id) = object {
        q = q.filter(cert_objects::id.eq(id));
    }
    q.order(certificates::not_after.asc()).load(c)
}

/// The longest `auto_renew_before` any folder sets (at least the default): no certificate expiring
/// later than that from now can be due, so a pass reads only the ones that might be.
fn longest_window(c: &mut DbConn) -> QueryResult<chrono::Duration> {
    use crate::db::schema::policy_folders;
    let mut longest = Duration::from_secs(policy::DEFAULT_AUTO_RENEW_BEFORE_SECS);
    for raw in policy_folders::table.select(policy_folders::settings).load::<String>(c)? {
        let settings: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&raw).unwrap_or_default();
        if let Some(d) = settings
            .get("auto_renew_before")
            .and_then(|v| v.as_str())
            .and_then(|s| crate::settings::parse_duration(s).ok())
        {
            longest = longest.max(d);
        }
    }
    Ok(chrono::Duration::from_std(longest).unwrap_or(chrono::Duration::days(36500)))
}

/// Objects due for automatic renewal now (`at`), soonest expiry first.
pub fn due(c: &mut DbConn, at: NaiveDateTime, object: Option<i64>) -> QueryResult<Vec<Due>> {
    let mut folders: HashMap<String, Option<Duration>> = HashMap::new();
    let mut out = vec![];
    let until = at.checked_add_signed(longest_window(c)?).unwrap_or(NaiveDateTime::MAX);
    for (object_id, dn, policy_dn, certificate_id, not_before, not_after, created_at, job_id) in
        candidates(c, object, until)?
    {
        let not_before = validity_start(not_before, created_at, job_id);
        let before = match folders.get(&policy_dn) {
            Some(b) => *b,
            None => {
                let p = policy::effective(c, &policy_dn)?;
                let b = p.auto_renew().then(|| p.auto_renew_before());
                folders.insert(policy_dn.clone(), b);
                b
            }
        };
        let Some(before) = before else { continue };
        if at >= not_after - renewal_window(before, not_before, not_after) {
            out.push(Due { object_id, dn, certificate_id, not_after });
        }
    }
    Ok(out)
}

/// Stores holding a version of the object now (a renewal's push replaces that entry).
pub fn stores_holding(c: &mut DbConn, object_id: i64) -> Result<Vec<i64>, RenewError> {
    // One statement whatever the number of versions (diesel keeps it prepared; a list of the
    // object's versions grew with every renewal and was prepared afresh each time).
    // Every renewal runs it: on the concrete connection (`on_backend`).
    let mut ids: Vec<i64> = crate::on_backend!(c, |c| store_jobs::table
        .inner_join(certificates::table.on(certificates::id.nullable().eq(store_jobs::certificate_id)))
        .filter(certificates::object_id.eq(object_id))
        .filter(store_jobs::state.eq(StoreJobState::Done))
        .filter(store_jobs::operation.eq("add"))
        .select(store_jobs::store_id)
        .distinct()
        .load(c))?;
    ids.sort_unstable();
    let mut out = vec![];
    for sid in ids {
        if super::stores::alias_of_object_in_store(c, object_id, sid)?.is_some() {
            out.push(sid);
        }
    }
    Ok(out)
}

impl Engine {
    /// Starts the scheduler thread (`scheduler.enabled`, every `scheduler.interval`).
    /// Fails only when the OS refuses a thread.
    pub fn start_scheduler(self: &Arc<Self>) -> std::io::Result<()> {
        if !self.settings.scheduler.enabled {
            tracing::info!("automatic renewal is off (scheduler.enabled = false)");
            return Ok(());
        }
        let every =
            crate::settings::parse_duration(&self.settings.scheduler.interval).unwrap_or(Duration::from_secs(60));
        let engine = self.clone();
        std::thread::Builder::new().name("renewgate-scheduler".into()).spawn(move || {
            let mut reported = HashSet::new();
            loop {
                std::thread::sleep(every);
                match engine.auto_renew_pass(&mut reported) {
                    Ok(_) => METRICS.scheduler_run("success"),
                    Err(e) => {
                        METRICS.scheduler_run("failure");
                        tracing::warn!(error = %e, "scheduler: pass failed; trying again next time");
                    }
                }
            }
        })?;
        Ok(())
    }

    /// One pass: renews every due object. Returns how many renewals this pass started.
    /// `reported` holds the versions whose failed renewal is already in the audit trail, so a
    /// renewal that keeps failing (a policy violation, say) is recorded once, not every pass.
    pub fn auto_renew_pass(&self, reported: &mut HashSet<i64>) -> Result<usize, RenewError> {
        let mut conn = self.pool.get()?;
        let due = due(&mut conn, now(), None)?;
        let mut started = 0;
        for d in due {
            match self.auto_renew_one(&mut conn, &d) {
                Ok(Some(job)) => {
                    started += 1;
                    METRICS.renewal("scheduler", "success");
                    tracing::info!(object = d.object_id, job, dn = %d.dn, not_after = %d.not_after, "automatic renewal started");
                }
                Ok(None) | Err(RenewError::AlreadyProcessing(_)) => {}
                Err(e) => {
                    if reported.insert(d.certificate_id) {
                        METRICS.renewal("scheduler", "failure");
                        tracing::warn!(object = d.object_id, dn = %d.dn, error = %e, "automatic renewal refused");
                        let _ = audit::record(
                            &mut conn,
                            &audit::Entry {
                                actor: "scheduler".into(),
                                action: audit::action::RENEW.into(),
                                target: d.dn.clone(),
                                certificate_id: Some(d.certificate_id),
                                outcome: "failure".into(),
                                detail: e.to_string(),
                                source: "scheduler".into(),
                                request_id: None,
                            },
                        );
                    }
                }
            }
        }
        if started > 0 {
            self.signals.job_enqueued();
        }
        Ok(started)
    }

    /// Renews one object if it is still due, deciding and enqueuing in one transaction under the
    /// scheduler lock. Returns the job id, or None when it is no longer due.
    fn auto_renew_one(&self, conn: &mut DbConn, d: &Due) -> Result<Option<i64>, RenewError> {
        write_tx(conn, Some(SCHEDULER_LOCK), |c| -> Result<Option<i64>, RenewError> {
            // Fresh reads inside the lock: another instance may have renewed it since `due` ran.
            let still = due(c, now(), Some(d.object_id))?;
            if !still.iter().any(|x| x.certificate_id == d.certificate_id) {
                return Ok(None);
            }
            // The stores holding the previous certificate get the new one through renew_tx, as
            // for every other renewal (the folder's push_on_renew).
            let accepted = self.renew_tx(
                c,
                &RenewRequest {
                    certificate: CertRef::ObjectId(d.object_id),
                    csr: None,
                    subject: None,
                    sans: None,
                    reenable: false,
                    certificate_data: None,
                    not_after_max: None,
                    access: Default::default(),
                    issue_as: None,
                    object: None,
                },
            )?;
            let raw: String = jobs::table.find(accepted.job_id).select(jobs::payload).first(c)?;
            let stores = serde_json::from_str::<IssuePayload>(&raw).map(|p| p.store_ids).unwrap_or_default();
            audit::record(
                c,
                &audit::Entry {
                    actor: "scheduler".into(),
                    action: audit::action::RENEW.into(),
                    target: accepted.object.dn.clone(),
                    certificate_id: Some(d.certificate_id),
                    outcome: "success".into(),
                    detail: format!(
                        "expires {}; job {}; {} store(s)",
                        d.not_after.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        accepted.job_id,
                        stores.len()
                    ),
                    source: "scheduler".into(),
                    request_id: None,
                },
            )?;
            Ok(Some(accepted.job_id))
        })
    }
}

/// `renewgate cert list`: objects with a current certificate, expiring before `until` when given,
/// soonest first: (object id, not after, DN).
pub fn list_expiring(
    c: &mut DbConn,
    until: Option<NaiveDateTime>,
) -> Result<Vec<(i64, NaiveDateTime, String)>, RenewError> {
    let mut q = cert_objects::table
        .inner_join(certificates::table.on(certificates::id.nullable().eq(cert_objects::current_cert_id)))
        .select((cert_objects::id, certificates::not_after, cert_objects::dn))
        .into_boxed();
    if let Some(u) = until {
        q = q.filter(certificates::not_after.le(u));
    }
    Ok(q.order((certificates::not_after.asc(), cert_objects::id.asc())).load(c)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap().naive_utc()
    }

    #[test]
    fn window_is_capped_at_a_third_of_the_validity() {
        let d30 = Duration::from_secs(30 * 86400);
        // 90-day certificate: the full 30 days.
        assert_eq!(renewal_window(d30, t(0), t(90 * 86400)), chrono::Duration::days(30));
        // 30-second certificate: 10 seconds, not 30 days.
        assert_eq!(renewal_window(d30, t(0), t(30)), chrono::Duration::seconds(10));
        // A short configured window wins over the cap.
        assert_eq!(renewal_window(Duration::from_secs(5), t(0), t(30)), chrono::Duration::seconds(5));
        // Nonsense validity: no window.
        assert_eq!(renewal_window(d30, t(10), t(0)), chrono::Duration::zero());
        // Issued here: from the issuance, not the backdated notBefore; imported: notBefore.
        assert_eq!(validity_start(t(-60), t(0), Some(1)), t(0));
        assert_eq!(validity_start(t(-60), t(0), None), t(-60));
    }
}
