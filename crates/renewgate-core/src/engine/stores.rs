//! Certificate stores and their push jobs (Keyfactor's Management jobs). A job belongs to one
//! store; an agent for the store's client machine claims it with a lease, installs, and reports.
//! Each run leaves a history row (JobHistoryId / audit id). Failures retry with backoff
//! (`CompletedWillRetry`) until `MAX_STORE_ATTEMPTS`.
use diesel::prelude::*;

use crate::auth::FolderAccess;

use super::RenewError;
use crate::db::models::{Store, StoreJobRun, StorePushJob};
use crate::db::schema::{store_job_runs, store_jobs, stores};
use crate::db::{DbConn, new_guid, new_record_guid, now, write_tx};
use crate::secrets::MasterKey;
use crate::vocab::{Permission, StoreJobState};

pub const STORE_TYPES: &[&str] = &["pem-dir", "pkcs12", "jks"];
pub const STORE_PASSWORD_PURPOSE: &str = "store-password";
pub const MAX_STORE_ATTEMPTS: i32 = 5;

/// JobHistory Status values.
pub mod status {
    pub const WAITING: i32 = 1;
    pub const IN_PROCESS: i32 = 2;
    pub const COMPLETED: i32 = 3;
    pub const ACKNOWLEDGED: i32 = 4;
    pub const COMPLETED_WILL_RETRY: i32 = 5;
}
/// JobHistory Result values.
pub mod result {
    pub const UNKNOWN: i32 = 0;
    pub const SUCCESS: i32 = 2;
    pub const WARNING: i32 = 3;
    pub const FAILURE: i32 = 4;
}

pub struct NewStore<'a> {
    pub client_machine: &'a str,
    pub store_path: &'a str,
    pub store_type: &'a str,
    pub alias: Option<&'a str>,
    pub password: Option<&'a str>,
    pub include_keys: bool,
    /// The policy folder the store belongs to (default: the root).
    pub folder_dn: Option<&'a str>,
}

/// Creates a store in a folder the caller may write to (another folder answers as missing).
pub fn create_store(
    conn: &mut DbConn,
    master: &MasterKey,
    access: &FolderAccess,
    s: &NewStore<'_>,
) -> Result<Store, RenewError> {
    if !STORE_TYPES.contains(&s.store_type) {
        return Err(RenewError::BadParameter(
            "type".into(),
            format!("unknown store type {:?} (use pem-dir, pkcs12 or jks)", s.store_type),
        ));
    }
    if s.client_machine.trim().is_empty() || s.store_path.trim().is_empty() {
        return Err(RenewError::BadParameter("store".into(), "ClientMachine and StorePath are required".into()));
    }
    let folder = super::policy::normalize_dn(s.folder_dn.unwrap_or(super::policy::ROOT_DN));
    if super::policy::find_folder(conn, &folder)?.is_none() || !access.allows(&folder, Permission::Write) {
        return Err(RenewError::PolicyDoesNotExist(folder));
    }
    // The agent resolves `/a//b/`, `a/b` and `./a/b` to one place, and a store at `a/b/x.key`
    // lies inside the pem-dir store `a/b`: on one machine no store may equal, contain or lie
    // inside another (else a user of one folder could overwrite or delete another folder's files).
    let wanted = canonical_store_path(s.store_path);
    let same_machine: Vec<String> = stores::table
        .filter(stores::client_machine_lower.eq(s.client_machine.trim().to_lowercase()))
        .select(stores::store_path)
        .load(conn)?;
    if same_machine.iter().map(|p| canonical_store_path(p)).any(|other| {
        let n = other.len().min(wanted.len());
        other[..n] == wanted[..n]
    }) {
        return Err(RenewError::BadParameter(
            "store".into(),
            format!(
                "A certificate store for ClientMachine {} already exists at or around StorePath {}.",
                s.client_machine.trim(),
                s.store_path.trim()
            ),
        ));
    }
    let guid = new_guid();
    let pw = s
        .password
        .map(|p| master.seal(STORE_PASSWORD_PURPOSE, p.as_bytes()))
        .transpose()
        .map_err(|e| RenewError::Internal(e.to_string()))?;
    diesel::insert_into(stores::table)
        .values((
            stores::guid.eq(&guid),
            stores::client_machine.eq(s.client_machine.trim()),
            stores::client_machine_lower.eq(s.client_machine.trim().to_lowercase()),
            stores::store_path.eq(s.store_path.trim()),
            stores::store_type.eq(s.store_type),
            stores::alias.eq(s.alias),
            stores::password_enc.eq(pw),
            stores::include_keys.eq(s.include_keys),
            stores::created_at.eq(now()),
            stores::folder_dn.eq(Some(&folder)),
        ))
        .execute(conn)?;
    find_store(conn, &guid)?.ok_or_else(|| RenewError::Internal("store vanished".into()))
}

pub fn find_store_by_id(conn: &mut DbConn, id: i64) -> Result<Option<Store>, RenewError> {
    Ok(stores::table.find(id).select(Store::as_select()).first(conn).optional()?)
}

pub fn find_store(conn: &mut DbConn, guid: &str) -> Result<Option<Store>, RenewError> {
    Ok(stores::table
        .filter(stores::guid.eq(super::inventory::normalize_guid(guid)))
        .select(Store::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_stores(conn: &mut DbConn) -> Result<Vec<Store>, RenewError> {
    Ok(stores::table.order(stores::id.asc()).select(Store::as_select()).load(conn)?)
}

/// "<ClientMachine>-<StorePath>", as Keyfactor lists renewed stores.
pub fn store_label(s: &Store) -> String {
    format!("{}-{}", s.client_machine, s.store_path)
}

/// Resolves store GUIDs; an unknown one is an error naming it.
pub fn resolve_stores(conn: &mut DbConn, guids: &[String]) -> Result<Vec<Store>, RenewError> {
    let mut out = vec![];
    for g in guids {
        match find_store(conn, g)? {
            Some(s) => out.push(s),
            None => {
                return Err(RenewError::BadParameter(
                    "CertStores".into(),
                    format!("Certificate store {g} does not exist."),
                ));
            }
        }
    }
    Ok(out)
}

/// Schedules one push job per store (inside the caller's transaction). Returns the job GUIDs.
pub fn schedule(
    conn: &mut DbConn,
    store_ids: &[i64],
    certificate_id: i64,
    operation: &str,
    alias: Option<&str>,
    overwrite: bool,
) -> Result<Vec<String>, diesel::result::Error> {
    let mut out = vec![];
    let ts = now();
    for sid in store_ids {
        let guid = new_record_guid();
        diesel::insert_into(store_jobs::table)
            .values((
                store_jobs::guid.eq(&guid),
                store_jobs::store_id.eq(sid),
                store_jobs::certificate_id.eq(certificate_id),
                store_jobs::operation.eq(operation),
                store_jobs::alias.eq(alias),
                store_jobs::overwrite.eq(overwrite),
                store_jobs::state.eq(StoreJobState::Waiting),
                store_jobs::attempts.eq(0),
                store_jobs::run_after.eq(ts),
                store_jobs::created_at.eq(ts),
                store_jobs::updated_at.eq(ts),
            ))
            .execute(conn)?;
        out.push(guid);
    }
    Ok(out)
}

/// A claimed job with its store and the history row of this run.
pub struct ClaimedJob {
    pub job: StorePushJob,
    pub store: Store,
    pub run_id: i64,
}

/// Claims up to `limit` due jobs of stores on `client_machine` (expired leases included).
pub fn claim_for_machine(
    conn: &mut DbConn,
    client_machine: &str,
    owner: &str,
    lease_secs: i64,
    limit: i64,
) -> Result<Vec<ClaimedJob>, RenewError> {
    let machine = client_machine.to_lowercase();
    // Outside the claim's transaction: on PostgreSQL a lost insert race would abort it.
    super::console::agent_contact(conn, client_machine)?;
    write_tx(conn, Some(7262010), |c| -> Result<Vec<ClaimedJob>, RenewError> {
        let ts = now();
        let due: Vec<(StorePushJob, Store)> = store_jobs::table
            .inner_join(stores::table)
            .filter(stores::client_machine_lower.eq(&machine))
            .filter(
                store_jobs::state
                    .eq(StoreJobState::Waiting)
                    .and(store_jobs::run_after.le(ts))
                    .or(store_jobs::state.eq(StoreJobState::Running).and(store_jobs::lease_until.lt(ts))),
            )
            .order(store_jobs::id.asc())
            .limit(limit)
            .select((StorePushJob::as_select(), Store::as_select()))
            .load(c)?;
        let mut out = vec![];
        for (j, s) in due {
            if j.state == StoreJobState::Running && j.attempts >= MAX_STORE_ATTEMPTS {
                // Its agent died on every attempt: stop handing it out.
                diesel::update(
                    store_job_runs::table
                        .filter(store_job_runs::job_id.eq(j.id))
                        .filter(store_job_runs::status.eq(status::IN_PROCESS)),
                )
                .set((
                    store_job_runs::status.eq(status::COMPLETED),
                    store_job_runs::result.eq(result::FAILURE),
                    store_job_runs::message.eq("The agent stopped before reporting on every attempt; giving up."),
                    store_job_runs::operation_end.eq(ts),
                ))
                .execute(c)?;
                diesel::update(store_jobs::table.find(j.id))
                    .set((store_jobs::state.eq(StoreJobState::Failed), store_jobs::updated_at.eq(ts)))
                    .execute(c)?;
                continue;
            }
            // A run that was in progress when its agent died ends as a failure to retry.
            if j.state == StoreJobState::Running {
                diesel::update(
                    store_job_runs::table
                        .filter(store_job_runs::job_id.eq(j.id))
                        .filter(store_job_runs::status.eq(status::IN_PROCESS)),
                )
                .set((
                    store_job_runs::status.eq(status::COMPLETED_WILL_RETRY),
                    store_job_runs::result.eq(result::FAILURE),
                    store_job_runs::message.eq("The agent stopped before reporting; the job is retried."),
                    store_job_runs::operation_end.eq(ts),
                ))
                .execute(c)?;
            }
            diesel::update(store_jobs::table.find(j.id))
                .set((
                    store_jobs::state.eq(StoreJobState::Running),
                    store_jobs::lease_owner.eq(owner),
                    store_jobs::lease_until.eq(ts + chrono::Duration::seconds(lease_secs)),
                    store_jobs::attempts.eq(j.attempts + 1),
                    store_jobs::updated_at.eq(ts),
                ))
                .execute(c)?;
            diesel::insert_into(store_job_runs::table)
                .values((
                    store_job_runs::job_id.eq(j.id),
                    store_job_runs::status.eq(status::IN_PROCESS),
                    store_job_runs::result.eq(result::UNKNOWN),
                    store_job_runs::message.eq(""),
                    store_job_runs::operation_start.eq(ts),
                ))
                .execute(c)?;
            let run_id: i64 = store_job_runs::table
                .filter(store_job_runs::job_id.eq(j.id))
                .order(store_job_runs::id.desc())
                .select(store_job_runs::id)
                .first(c)?;
            let job = store_jobs::table.find(j.id).select(StorePushJob::as_select()).first(c)?;
            out.push(ClaimedJob { job, store: s, run_id });
        }
        Ok(out)
    })
}

/// Records an agent's result for a job it holds. Failures retry with backoff until the attempts
/// run out. Returns false when the job is not leased to this machine any more.
pub fn complete(
    conn: &mut DbConn,
    job_guid: &str,
    client_machine: &str,
    outcome: &str,
    message: &str,
    audit_id: Option<i64>,
) -> Result<bool, RenewError> {
    let success = outcome != "failure";
    let warning = outcome == "warning";
    let machine = client_machine.to_lowercase();
    write_tx(conn, None, |c| -> Result<bool, RenewError> {
        let found: Option<(StorePushJob, Store)> = store_jobs::table
            .inner_join(stores::table)
            .filter(store_jobs::guid.eq(super::inventory::normalize_guid(job_guid)))
            .select((StorePushJob::as_select(), Store::as_select()))
            .first(c)
            .optional()?;
        let Some((j, s)) = found else { return Ok(false) };
        if s.client_machine_lower != machine || j.state != StoreJobState::Running {
            return Ok(false);
        }
        let ts = now();
        let run: Option<StoreJobRun> = store_job_runs::table
            .filter(store_job_runs::job_id.eq(j.id))
            .filter(store_job_runs::status.eq(status::IN_PROCESS))
            .order(store_job_runs::id.desc())
            .select(StoreJobRun::as_select())
            .first(c)
            .optional()?;
        if audit_id.is_some() && run.as_ref().map(|r| r.id) != audit_id {
            // A late report from a run that was since taken over by another claim.
            return Ok(false);
        }
        let retry = !success && j.attempts < MAX_STORE_ATTEMPTS;
        let (st, res) = match (success, retry) {
            (true, _) if warning => (status::COMPLETED, result::WARNING),
            (true, _) => (status::COMPLETED, result::SUCCESS),
            (false, true) => (status::COMPLETED_WILL_RETRY, result::FAILURE),
            (false, false) => (status::COMPLETED, result::FAILURE),
        };
        if let Some(r) = run {
            diesel::update(store_job_runs::table.find(r.id))
                .set((
                    store_job_runs::status.eq(st),
                    store_job_runs::result.eq(res),
                    store_job_runs::message.eq(message),
                    store_job_runs::operation_end.eq(ts),
                ))
                .execute(c)?;
        }
        let (state, run_after) = if success {
            (StoreJobState::Done, ts)
        } else if retry {
            // 2 s, 4 s, 8 s, … between attempts.
            (StoreJobState::Waiting, ts + chrono::Duration::seconds(2i64.pow(j.attempts.clamp(1, 8) as u32)))
        } else {
            (StoreJobState::Failed, ts)
        };
        diesel::update(store_jobs::table.find(j.id))
            .set((
                store_jobs::state.eq(state),
                store_jobs::run_after.eq(run_after),
                store_jobs::lease_owner.eq(None::<String>),
                store_jobs::lease_until.eq(None::<chrono::NaiveDateTime>),
                store_jobs::message.eq(message),
                store_jobs::updated_at.eq(ts),
            ))
            .execute(c)?;
        Ok(true)
    })
}

/// History rows with their job and store, newest first.
pub fn history(
    conn: &mut DbConn,
    limit: i64,
    offset: i64,
) -> Result<Vec<(StoreJobRun, StorePushJob, Store)>, RenewError> {
    Ok(store_job_runs::table
        .inner_join(store_jobs::table.inner_join(stores::table))
        .order(store_job_runs::id.desc())
        .limit(limit)
        .offset(offset)
        .select((StoreJobRun::as_select(), StorePushJob::as_select(), Store::as_select()))
        .load(conn)?)
}

/// Jobs not yet finished, with their store.
pub fn scheduled(conn: &mut DbConn) -> Result<Vec<(StorePushJob, Store)>, RenewError> {
    Ok(store_jobs::table
        .inner_join(stores::table)
        .filter(store_jobs::state.eq_any([StoreJobState::Waiting, StoreJobState::Running]))
        .order(store_jobs::id.asc())
        .select((StorePushJob::as_select(), Store::as_select()))
        .load(conn)?)
}

/// Acknowledges finished runs (Status Completed or CompletedWillRetry with Result Warning or
/// Failure); returns how many changed.
pub fn acknowledge(conn: &mut DbConn, run_ids: &[i64]) -> Result<usize, RenewError> {
    Ok(diesel::update(
        store_job_runs::table
            .filter(store_job_runs::id.eq_any(run_ids))
            .filter(store_job_runs::status.eq_any([status::COMPLETED, status::COMPLETED_WILL_RETRY]))
            .filter(store_job_runs::result.eq_any([3, result::FAILURE])),
    )
    .set(store_job_runs::status.eq(status::ACKNOWLEDGED))
    .execute(conn)?)
}

/// The alias a job installs under or removes: the job's, else the store's, else the CN of its
/// certificate (what the agent uses).
fn effective_alias(job_alias: Option<&str>, store: &Store, cn: Option<&str>) -> Option<String> {
    job_alias.or(store.alias.as_deref()).or(cn).filter(|a| !a.is_empty()).map(str::to_string)
}

/// What a store holds now: alias → certificate id, replaying its finished Add and Remove jobs in order.
pub fn contents(conn: &mut DbConn, store: &Store) -> Result<std::collections::BTreeMap<String, i64>, RenewError> {
    use crate::db::schema::certificates;
    let rows: Vec<(StorePushJob, Option<String>)> = store_jobs::table
        .left_join(certificates::table.on(certificates::id.nullable().eq(store_jobs::certificate_id)))
        .filter(store_jobs::store_id.eq(store.id))
        .filter(store_jobs::state.eq(StoreJobState::Done))
        .order(store_jobs::id.asc())
        .select((StorePushJob::as_select(), certificates::common_name.nullable()))
        .load(conn)?;
    let mut held = std::collections::BTreeMap::new();
    for (j, cn) in rows {
        let Some(alias) = effective_alias(j.alias.as_deref(), store, cn.as_deref()) else { continue };
        match (j.operation.as_str(), j.certificate_id) {
            ("add", Some(cid)) => {
                held.insert(alias, cid);
            }
            ("remove", _) => {
                held.remove(&alias);
            }
            _ => {}
        }
    }
    Ok(held)
}

/// Where a certificate is installed now: (store, alias) pairs.
pub fn locations_of(conn: &mut DbConn, certificate_id: i64) -> Result<Vec<(Store, String)>, RenewError> {
    let store_ids: Vec<i64> = store_jobs::table
        .filter(store_jobs::certificate_id.eq(certificate_id))
        .filter(store_jobs::state.eq(StoreJobState::Done))
        .select(store_jobs::store_id)
        .distinct()
        .load(conn)?;
    let stores: Vec<Store> =
        stores::table.filter(stores::id.eq_any(store_ids)).select(Store::as_select()).load(conn)?;
    let mut out = vec![];
    for s in stores {
        for (alias, cid) in contents(conn, &s)? {
            if cid == certificate_id {
                out.push((s.clone(), alias));
            }
        }
    }
    Ok(out)
}

/// The alias an earlier version of `object_id` occupies in `store_id` now, if any (a renewal's
/// push replaces that entry).
pub fn alias_of_object_in_store(
    conn: &mut DbConn,
    object_id: i64,
    store_id: i64,
) -> Result<Option<String>, RenewError> {
    use crate::db::schema::certificates;
    let Some(store) = stores::table.find(store_id).select(Store::as_select()).first(conn).optional()? else {
        return Ok(None);
    };
    let versions: Vec<i64> =
        certificates::table.filter(certificates::object_id.eq(object_id)).select(certificates::id).load(conn)?;
    Ok(contents(conn, &store)?.into_iter().rev().find(|(_, cid)| versions.contains(cid)).map(|(a, _)| a))
}

/// Schedules a `remove` push job for `store` (inside the caller's transaction): the entry under
/// `alias`, else under the store's own alias. Returns the job GUID.
pub fn schedule_remove(conn: &mut DbConn, store: &Store, alias: Option<&str>) -> Result<String, diesel::result::Error> {
    let ts = now();
    let guid = new_record_guid();
    diesel::insert_into(store_jobs::table)
        .values((
            store_jobs::guid.eq(&guid),
            store_jobs::store_id.eq(store.id),
            store_jobs::certificate_id.eq(None::<i64>),
            store_jobs::operation.eq("remove"),
            store_jobs::alias.eq(alias.or(store.alias.as_deref())),
            store_jobs::overwrite.eq(false),
            store_jobs::state.eq(StoreJobState::Waiting),
            store_jobs::attempts.eq(0),
            store_jobs::run_after.eq(ts),
            store_jobs::created_at.eq(ts),
            store_jobs::updated_at.eq(ts),
        ))
        .execute(conn)?;
    Ok(guid)
}

/// A StorePath as the agent resolves it beneath its root: its components without empty and `.`
/// ones (`..` is kept: the agent refuses such a path).
pub fn canonical_store_path(p: &str) -> Vec<String> {
    p.trim().split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect()
}

/// The one rule for stores: the caller needs `perm` on the store's folder. A store the caller may
/// not use answers exactly like a missing one (`find_store_for` gives `None`).
pub fn allowed(access: &FolderAccess, s: &Store, perm: Permission) -> bool {
    access.allows(s.folder(), perm)
}

/// A store by GUID, if it exists and the caller has `perm` on its folder.
pub fn find_store_for(
    conn: &mut DbConn,
    access: &FolderAccess,
    guid: &str,
    perm: Permission,
) -> Result<Option<Store>, RenewError> {
    Ok(find_store(conn, guid)?.filter(|s| allowed(access, s, perm)))
}

/// The stores the caller may see, oldest first.
pub fn list_stores_for(conn: &mut DbConn, access: &FolderAccess) -> Result<Vec<Store>, RenewError> {
    Ok(list_stores(conn)?.into_iter().filter(|s| allowed(access, s, Permission::Read)).collect())
}

/// Resolves store GUIDs for a caller who will push to them (`write` on each store's folder); a
/// forbidden store gets the unknown store's answer.
pub fn resolve_stores_for(
    conn: &mut DbConn,
    access: &FolderAccess,
    guids: &[String],
) -> Result<Vec<Store>, RenewError> {
    let all = resolve_stores(conn, guids)?;
    if let Some((g, _)) = guids.iter().zip(&all).find(|(_, s)| !allowed(access, s, Permission::Write)) {
        return Err(RenewError::BadParameter("CertStores".into(), format!("Certificate store {g} does not exist.")));
    }
    Ok(all)
}

/// Putting a certificate of folder `cert_folder` into store `s`: `write` on the store's folder,
/// and, when the store receives private keys, `key` on the certificate's folder (the same
/// permission Recover asks for: a store that receives keys writes them to disk).
pub fn check_push(access: &FolderAccess, s: &Store, cert_folder: &str) -> Result<(), StoreDenied> {
    if !allowed(access, s, Permission::Write) {
        return Err(StoreDenied::Store);
    }
    if s.include_keys && !access.allows(cert_folder, Permission::Key) {
        return Err(StoreDenied::Key);
    }
    Ok(())
}

/// Why a push is refused: the store is not the caller's (answered as unknown), or the store
/// receives keys and the caller may not read the certificate's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDenied {
    Store,
    Key,
}

/// The message for a push refused because the store receives keys.
pub const NO_KEY_FOR_STORE: &str = "You do not have Private Key Read permission on this certificate; it cannot be placed in a certificate store that receives private keys.";

/// Places the stores that existed before stores had folders (`folder_dn` NULL): each goes to the
/// deepest folder that covers every certificate it has received, the root when none. Also logs
/// the stores the upgrade renamed to keep (ClientMachine, StorePath) unique. Idempotent.
pub fn place_unplaced_stores(conn: &mut DbConn) -> Result<usize, RenewError> {
    use crate::db::schema::{cert_objects, certificates};
    let unplaced: Vec<Store> =
        stores::table.filter(stores::folder_dn.is_null()).select(Store::as_select()).load(conn)?;
    for s in &unplaced {
        let folders: Vec<String> = store_jobs::table
            .inner_join(certificates::table.on(certificates::id.nullable().eq(store_jobs::certificate_id)))
            .inner_join(cert_objects::table.on(cert_objects::id.eq(certificates::object_id)))
            .filter(store_jobs::store_id.eq(s.id))
            .filter(store_jobs::operation.eq("add"))
            .select(cert_objects::policy_dn)
            .distinct()
            .load(conn)?;
        let folder = deepest_common_folder(&folders);
        diesel::update(stores::table.find(s.id)).set(stores::folder_dn.eq(Some(&folder))).execute(conn)?;
        tracing::info!(store = %s.guid, folder = %folder.escape_debug(), "store placed in a policy folder");
        if s.store_path.ends_with(&format!("#{}", s.guid)) {
            tracing::warn!(
                store = %s.guid,
                machine = %s.client_machine.escape_debug(),
                path = %s.store_path.escape_debug(),
                "store shared its ClientMachine and StorePath with an older store: its StorePath got its GUID appended"
            );
        }
    }
    Ok(unplaced.len())
}

/// The deepest folder that is, or is above, every DN given (`\VED\Policy` when none).
fn deepest_common_folder(dns: &[String]) -> String {
    let root = super::policy::ROOT_DN;
    let mut common: Option<Vec<String>> = None;
    for dn in dns {
        let parts: Vec<String> = super::policy::normalize_dn(dn).split('\\').map(str::to_string).collect();
        common = Some(match common {
            None => parts,
            Some(c) => {
                c.iter().zip(&parts).take_while(|(a, b)| a.eq_ignore_ascii_case(b)).map(|(a, _)| a.clone()).collect()
            }
        });
    }
    let joined = common.map(|c| c.join("\\")).unwrap_or_default();
    if joined.len() < root.len() || !joined.to_ascii_lowercase().starts_with(&root.to_ascii_lowercase()) {
        root.to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod folder_tests {
    use super::deepest_common_folder;

    #[test]
    fn the_deepest_folder_covering_every_certificate() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(deepest_common_folder(&[]), "\\VED\\Policy");
        assert_eq!(deepest_common_folder(&v(&["\\VED\\Policy\\A\\B"])), "\\VED\\Policy\\A\\B");
        assert_eq!(deepest_common_folder(&v(&["\\VED\\Policy\\A\\B", "\\VED\\Policy\\A\\C"])), "\\VED\\Policy\\A");
        assert_eq!(deepest_common_folder(&v(&["\\VED\\Policy\\A", "\\VED\\Policy\\B"])), "\\VED\\Policy");
        // Components compare whole: \A is not the parent of \AB.
        assert_eq!(deepest_common_folder(&v(&["\\VED\\Policy\\A", "\\VED\\Policy\\AB"])), "\\VED\\Policy");
    }
}

/// Keyfactor's ContainerId of a store: the numeric id of its folder (0 when it has none yet).
pub fn container_id(conn: &mut DbConn, s: &Store) -> Result<i64, RenewError> {
    Ok(super::policy::find_folder(conn, s.folder())?.map(|f| f.id).unwrap_or(0))
}

fn unknown_store(guid: &str) -> RenewError {
    RenewError::BadParameter("CertStores".into(), format!("Certificate store {guid} does not exist."))
}

/// A store the caller may put a certificate of `cert_folder` into ([`check_push`]); a store the
/// caller may not use answers like an unknown one.
pub fn store_for_push(
    conn: &mut DbConn,
    access: &FolderAccess,
    guid: &str,
    cert_folder: &str,
) -> Result<Store, RenewError> {
    let s = find_store(conn, guid)?.ok_or_else(|| unknown_store(guid))?;
    match check_push(access, &s, cert_folder) {
        Ok(()) => Ok(s),
        Err(StoreDenied::Store) => Err(unknown_store(guid)),
        Err(StoreDenied::Key) => Err(RenewError::BadParameter("CertStores".into(), NO_KEY_FOR_STORE.into())),
    }
}

/// [`store_for_push`] for each GUID, all or nothing: checked before anything is issued or queued.
pub fn stores_for_push(
    conn: &mut DbConn,
    access: &FolderAccess,
    guids: &[String],
    cert_folder: &str,
) -> Result<Vec<Store>, RenewError> {
    guids.iter().map(|g| store_for_push(conn, access, g, cert_folder)).collect()
}

/// What a job-history listing asks for (Keyfactor's `pq.queryString` terms, already parsed).
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub job_guid: Option<String>,
    pub status: Option<i32>,
    pub result: Option<i32>,
    pub client_machine: Option<String>,
    /// A term no row can match (an unknown field): the page is empty.
    pub nothing: bool,
}

/// One page of store-job runs, newest first, of the stores the caller may read: the folder
/// filter, the query terms and the page are all in SQL, so a restricted caller gets full pages.
pub fn history_for(
    conn: &mut DbConn,
    access: &FolderAccess,
    f: &HistoryFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<(StoreJobRun, StorePushJob, Store)>, RenewError> {
    if f.nothing {
        return Ok(vec![]);
    }
    let mut q = store_job_runs::table
        .inner_join(store_jobs::table.inner_join(stores::table))
        .select((StoreJobRun::as_select(), StorePushJob::as_select(), Store::as_select()))
        .into_boxed();
    if let Some(roots) = access.roots(Permission::Read) {
        // Stores not yet placed in a folder (NULL) belong to the root.
        let mut visible = super::access::under_folders!(stores::folder_dn.assume_not_null(), &roots);
        if roots.iter().any(|dn| super::policy::normalize_dn(dn).eq_ignore_ascii_case(super::policy::ROOT_DN)) {
            visible = Box::new(visible.or(stores::folder_dn.is_null()));
        }
        q = q.filter(visible);
    }
    if let Some(g) = &f.job_guid {
        q = q.filter(store_jobs::guid.eq(super::inventory::normalize_guid(g)));
    }
    if let Some(st) = f.status {
        q = q.filter(store_job_runs::status.eq(st));
    }
    if let Some(r) = f.result {
        q = q.filter(store_job_runs::result.eq(r));
    }
    if let Some(m) = &f.client_machine {
        q = q.filter(stores::client_machine_lower.eq(m.to_lowercase()));
    }
    Ok(q.order(store_job_runs::id.desc()).limit(limit).offset(offset).load(conn)?)
}

/// Unfinished jobs of the stores the caller may read.
pub fn scheduled_for(conn: &mut DbConn, access: &FolderAccess) -> Result<Vec<(StorePushJob, Store)>, RenewError> {
    Ok(scheduled(conn)?.into_iter().filter(|(_, s)| allowed(access, s, Permission::Read)).collect())
}

/// [`acknowledge`] limited to the runs of stores the caller may write to.
pub fn acknowledge_for(conn: &mut DbConn, access: &FolderAccess, run_ids: &[i64]) -> Result<usize, RenewError> {
    if !access.is_restricted() {
        return acknowledge(conn, run_ids);
    }
    let rows: Vec<(i64, Store)> = store_job_runs::table
        .inner_join(store_jobs::table.inner_join(stores::table))
        .filter(store_job_runs::id.eq_any(run_ids))
        .select((store_job_runs::id, Store::as_select()))
        .load(conn)?;
    let mine: Vec<i64> =
        rows.into_iter().filter(|(_, s)| allowed(access, s, Permission::Write)).map(|(id, _)| id).collect();
    acknowledge(conn, &mine)
}
