//! The audit trail: one row per renewal, revocation, key download and policy change — who, what,
//! which certificate, how it ended. Written by the HTTP layer (after the response, from what the
//! handler noted), by the CLI and by the renewal scheduler; read by `renewgate audit` and
//! `GET /api/v1/audit`. Never holds secrets: targets are DNs, ids and thumbprints.
use chrono::SecondsFormat;
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::schema::audit_log;
use crate::db::{DbConn, new_record_guid, now};
use crate::vocab::Permission;

/// Audited actions.
pub mod action {
    pub const RENEW: &str = "renew";
    pub const REVOKE: &str = "revoke";
    pub const KEY_DOWNLOAD: &str = "key_download";
    pub const POLICY_CHANGE: &str = "policy_change";
    /// A successful password sign-in (OAuth, legacy API key, Keyfactor Basic).
    pub const SIGN_IN: &str = "sign_in";
    /// A login-throttle key closed (one row per key and window; target names the key).
    pub const LOGIN_THROTTLED: &str = "login_throttled";
    /// A user added, disabled, enabled, or given a new password.
    pub const USER_CHANGE: &str = "user_change";
    /// A token created or revoked (target: the user, never the token).
    pub const TOKEN_CHANGE: &str = "token_change";
    /// A certificate store created (target: its GUID).
    pub const STORE_CHANGE: &str = "store_change";
    /// A CA added, imported, disabled or enabled (target: its name).
    pub const CA_CHANGE: &str = "ca_change";
    /// An ACME EAB key created (target: its key id, never the HMAC key).
    pub const EAB_CHANGE: &str = "eab_change";
    /// The master key rotated (detail: the key ids and counts, never a key).
    pub const MASTER_KEY_CHANGE: &str = "master_key_change";

    /// Every action, in the order filters list them.
    pub const ALL: &[&str] = &[
        RENEW,
        REVOKE,
        KEY_DOWNLOAD,
        POLICY_CHANGE,
        SIGN_IN,
        LOGIN_THROTTLED,
        USER_CHANGE,
        TOKEN_CHANGE,
        STORE_CHANGE,
        CA_CHANGE,
        EAB_CHANGE,
        MASTER_KEY_CHANGE,
    ];
}

/// One thing to record.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub actor: String,
    pub action: String,
    /// What it was done to: a certificate DN, `certificate <id>`, a thumbprint or a policy DN.
    pub target: String,
    pub certificate_id: Option<i64>,
    /// `success` or `failure`.
    pub outcome: String,
    /// The HTTP status or error text.
    pub detail: String,
    /// Where it came from: `venafi`, `keyfactor`, `acme`, `native`, `cli`, `scheduler`.
    pub source: String,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: i64,
    pub guid: String,
    pub at: chrono::NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub certificate_id: Option<i64>,
    pub outcome: String,
    pub detail: String,
    pub source: String,
    pub request_id: Option<String>,
}

/// An audit record as `renewgate audit` prints it and the native API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// User name, `scheduler`, `cli` or `acme`.
    pub actor: String,
    /// `renew`, `revoke`, `key_download` or `policy_change`.
    pub action: String,
    pub target: String,
    pub certificate_id: Option<i64>,
    /// `success` or `failure`.
    pub outcome: String,
    pub detail: String,
    pub source: String,
    pub request_id: Option<String>,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        AuditRecord {
            id: r.id,
            at: r.at.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true),
            actor: r.actor,
            action: r.action,
            target: r.target,
            certificate_id: r.certificate_id,
            outcome: r.outcome,
            detail: r.detail,
            source: r.source,
            request_id: r.request_id,
        }
    }
}

/// Writes the records of many requests in one transaction (group commit): one thread takes
/// what requests hand it and commits them together, so that a busy gateway pays one commit per
/// batch instead of one per request. Each request still waits until its records are committed.
#[derive(Default)]
pub struct GroupWriter {
    queue: std::sync::OnceLock<std::sync::mpsc::Sender<Batch>>,
}

type Batch = (Vec<Entry>, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Records taken into one transaction at most.
const GROUP_MAX: usize = 512;

impl GroupWriter {
    /// Records `entries`; resolves once they are committed.
    pub async fn record(
        &self,
        pool: &crate::db::Pool,
        writer: &crate::db::WriterConn,
        entries: Vec<Entry>,
    ) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Batch>();
            let (pool, writer) = (pool.clone(), writer.clone());
            // Without its thread the writer answers every request with an error (below).
            let _ = std::thread::Builder::new()
                .name("renewgate-audit".into())
                .spawn(move || write_loop(&pool, &writer, &rx));
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        queue.send((entries, reply)).map_err(|_| "the audit writer is not running".to_string())?;
        answer.await.map_err(|_| "the audit writer stopped".to_string())?
    }
}

fn write_loop(pool: &crate::db::Pool, writer: &crate::db::WriterConn, rx: &std::sync::mpsc::Receiver<Batch>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut n = batch[0].0.len();
        while n < GROUP_MAX {
            match rx.try_recv() {
                Ok(b) => {
                    n += b.0.len();
                    batch.push(b);
                }
                Err(_) => break,
            }
        }
        let write = |groups: &[&[Entry]]| -> Result<(), String> {
            let mut c = pool.get().map_err(|e| e.to_string())?;
            writer
                .write_tx(&mut c, |tx| record_all(tx, groups.iter().flat_map(|g| g.iter())))
                .map_err(|e| e.to_string())
        };
        let all: Vec<&[Entry]> = batch.iter().map(|(e, _)| e.as_slice()).collect();
        if write(&all).is_ok() {
            for (_, reply) in batch {
                let _ = reply.send(Ok(()));
            }
            continue;
        }
        // One request's records must not fail the others': each on its own.
        for (entries, reply) in batch {
            let _ = reply.send(write(&[entries.as_slice()]));
        }
    }
}

/// Records many entries (inside the caller's transaction). On PostgreSQL in one statement,
/// whatever their number (the rows travel as one array per column, and are numbered in order):
/// a busy gateway's group otherwise costs a round trip and an executed statement per renewal.
fn record_all<'e>(conn: &mut DbConn, entries: impl Iterator<Item = &'e Entry>) -> QueryResult<()> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamp};
    let DbConn::Postgresql(pg) = conn else {
        for e in entries {
            record(conn, e)?;
        }
        return Ok(());
    };
    let entries: Vec<&Entry> = entries.collect();
    let column = |f: fn(&Entry) -> &String| entries.iter().map(|e| f(e).as_str()).collect::<Vec<&str>>();
    let at = now();
    diesel::sql_query(
        "INSERT INTO audit_log (guid, at, actor, action, target, certificate_id, outcome, detail, source, \
         request_id) SELECT g, t, ac, an, ta, c, o, d, s, r FROM UNNEST($1::text[], $2::timestamp[], \
         $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[]) \
         WITH ORDINALITY AS e(g, t, ac, an, ta, c, o, d, s, r, n) ORDER BY n",
    )
    .bind::<Array<Text>, _>(entries.iter().map(|_| new_record_guid()).collect::<Vec<String>>())
    .bind::<Array<Timestamp>, _>(vec![at; entries.len()])
    .bind::<Array<Text>, _>(column(|e| &e.actor))
    .bind::<Array<Text>, _>(column(|e| &e.action))
    .bind::<Array<Text>, _>(column(|e| &e.target))
    .bind::<Array<Nullable<BigInt>>, _>(entries.iter().map(|e| e.certificate_id).collect::<Vec<Option<i64>>>())
    .bind::<Array<Text>, _>(column(|e| &e.outcome))
    .bind::<Array<Text>, _>(column(|e| &e.detail))
    .bind::<Array<Text>, _>(column(|e| &e.source))
    .bind::<Array<Nullable<Text>>, _>(entries.iter().map(|e| e.request_id.as_deref()).collect::<Vec<Option<&str>>>())
    .execute(pg)?;
    Ok(())
}

pub fn record(conn: &mut DbConn, e: &Entry) -> QueryResult<()> {
    // Kept prepared (see `db::Prepared`) on the concrete connection (`on_backend`): one insert
    // per renewal, under the writer lock.
    crate::on_backend!(conn, |c| crate::db::Prepared(
        diesel::insert_into(audit_log::table)
            .values((
                audit_log::guid.eq(new_record_guid()),
                audit_log::at.eq(now()),
                audit_log::actor.eq(&e.actor),
                audit_log::action.eq(&e.action),
                audit_log::target.eq(&e.target),
                audit_log::certificate_id.eq(e.certificate_id),
                audit_log::outcome.eq(&e.outcome),
                audit_log::detail.eq(&e.detail),
                audit_log::source.eq(&e.source),
                audit_log::request_id.eq(&e.request_id),
            ))
            .returning(audit_log::id)
    )
    .write(c))?;
    Ok(())
}

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    /// Only records with a larger id (to follow the trail).
    pub after_id: Option<i64>,
    /// The newest `limit` records.
    pub limit: i64,
    /// A folder-limited reader: only records whose target is one of these folders or lies below
    /// one (certificate DNs, policy DNs). `None`: every record.
    pub folders: Option<Vec<String>>,
}

/// [`list`] for a reader with folder permissions: a folder-limited reader sees only the records
/// of the folders it may read.
pub fn list_for(conn: &mut DbConn, access: &crate::auth::FolderAccess, f: &Filter) -> QueryResult<Vec<AuditRecord>> {
    let f = Filter { folders: access.roots(Permission::Read), ..f.clone() };
    list(conn, &f)
}

/// The newest `limit` matching records, oldest first.
pub fn list(conn: &mut DbConn, f: &Filter) -> QueryResult<Vec<AuditRecord>> {
    let mut q = audit_log::table.select(AuditRow::as_select()).into_boxed();
    if let Some(a) = &f.action {
        q = q.filter(audit_log::action.eq(a.clone()));
    }
    if let Some(id) = f.after_id {
        q = q.filter(audit_log::id.gt(id));
    }
    if let Some(folders) = &f.folders {
        // The folder filter is in SQL, so a restricted reader gets full pages.
        let cond = super::access::under_folders!(audit_log::target, folders);
        q = q.filter(cond);
    }
    let mut rows: Vec<AuditRow> = q.order(audit_log::id.desc()).limit(f.limit.clamp(1, 100_000)).load(conn)?;
    rows.reverse();
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

/// More filters for the console's audit page: who, what object, when.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub actor: Option<String>,
    /// An object or folder: records whose target is it or lies below it.
    pub target: Option<String>,
    pub since: Option<chrono::NaiveDateTime>,
    pub until: Option<chrono::NaiveDateTime>,
}

/// The newest `f.limit` records matching `f` and `s` that the caller may see, newest first.
pub fn search_for(
    conn: &mut DbConn,
    access: &crate::auth::FolderAccess,
    f: &Filter,
    s: &Search,
) -> QueryResult<Vec<AuditRecord>> {
    let mut q = audit_log::table.select(AuditRow::as_select()).into_boxed();
    if let Some(a) = &f.action {
        q = q.filter(audit_log::action.eq(a.clone()));
    }
    if let Some(roots) = access.roots(Permission::Read) {
        let cond = super::access::under_folders!(audit_log::target, &roots);
        q = q.filter(cond);
    }
    if let Some(a) = &s.actor {
        q = q.filter(audit_log::actor.eq(a.clone()));
    }
    if let Some(t) = &s.target {
        let t = t.trim().to_string();
        let cond = super::access::under_folders!(audit_log::target, std::slice::from_ref(&t));
        q = q.filter(cond.or(audit_log::target.eq(t)));
    }
    if let Some(t) = s.since {
        q = q.filter(audit_log::at.ge(t));
    }
    if let Some(t) = s.until {
        q = q.filter(audit_log::at.lt(t));
    }
    let rows: Vec<AuditRow> = q.order(audit_log::id.desc()).limit(f.limit.clamp(1, 100_000)).load(conn)?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}
