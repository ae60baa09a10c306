//! Numbers about the shared database for the metrics endpoint: queue depth and age, store push
//! jobs, certificate objects by state and current certificates by days to expiry. Counted with a
//! few aggregate queries at scrape time; rendering is the caller's.
use chrono::NaiveDateTime;
use diesel::dsl::{count_star, min};
use diesel::prelude::*;

use crate::db::schema::{cert_objects, certificates, jobs, store_jobs};
use crate::db::{DbConn, DbError, now};
use crate::vocab::JobState;

/// Gauges read from the database.
#[derive(Debug, Default)]
pub struct DbGauges {
    /// Open issuance jobs (queued, running) by state.
    pub jobs: Vec<(String, i64)>,
    /// Creation time of the oldest open issuance job.
    pub oldest_job: Option<NaiveDateTime>,
    /// Store push jobs by state.
    pub store_jobs: Vec<(String, i64)>,
    /// Certificate objects by (state, disabled).
    pub objects: Vec<(String, bool, i64)>,
    /// Current certificates by days to expiry: (bucket label, count).
    pub expiry: Vec<(&'static str, i64)>,
}

pub fn gauges(c: &mut DbConn) -> Result<DbGauges, DbError> {
    let open = [JobState::Queued, JobState::Running];
    let jobs_by_state: Vec<(String, i64)> = jobs::table
        .filter(jobs::state.eq_any(open))
        .group_by(jobs::state)
        .select((jobs::state, count_star()))
        .load(c)?;
    let oldest_job: Option<NaiveDateTime> =
        jobs::table.filter(jobs::state.eq_any(open)).select(min(jobs::created_at)).first(c)?;
    let store_jobs: Vec<(String, i64)> =
        store_jobs::table.group_by(store_jobs::state).select((store_jobs::state, count_star())).load(c)?;
    let objects: Vec<(String, bool, i64)> = cert_objects::table
        .group_by((cert_objects::state, cert_objects::disabled))
        .select((cert_objects::state, cert_objects::disabled, count_star()))
        .load(c)?;
    let ts = now();
    let current = || {
        certificates::table
            .inner_join(cert_objects::table.on(cert_objects::current_cert_id.eq(certificates::id.nullable())))
    };
    let total: i64 = current().count().get_result(c)?;
    let mut below = vec![];
    for days in [0i64, 7, 30, 90] {
        let n: i64 =
            current().filter(certificates::not_after.lt(ts + chrono::Duration::days(days))).count().get_result(c)?;
        below.push(n);
    }
    let expiry = vec![
        ("expired", below[0]),
        ("0-7", below[1] - below[0]),
        ("7-30", below[2] - below[1]),
        ("30-90", below[3] - below[2]),
        ("90+", total - below[3]),
    ];
    Ok(DbGauges { jobs: jobs_by_state, oldest_job, store_jobs, objects, expiry })
}
