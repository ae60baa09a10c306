//! What the web console reads: the overview's figures, the inventory's pages and searches, a
//! certificate's page, stores and agents, ACME accounts and orders, users and tokens. Every read
//! takes the caller's `FolderAccess` and filters in SQL, so a folder-limited user's counts, charts
//! and pages hold nothing of another folder. (Actions go through the same engine calls as the
//! API's: `Engine::renew`, `revoke`, `reset`, `policy::merge_folder`, …)
//!
//! Fast at a million objects on SQLite: pages are keyset pages over indexed columns; folder,
//! DN and name prefixes are index ranges there (on PostgreSQL, whose collations do not order
//! text byte-wise, they are `LIKE` patterns); the overview's aggregates, when they take a while
//! to compute, are cached for [`OVERVIEW_TTL`] per folder scope.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use super::RenewError;
use super::audit::{self, AuditRecord};
use crate::auth::FolderAccess;
use crate::db::models::{CertObject, CertVersion, Store, StoreJobRun, StorePushJob};
use crate::db::schema::{
    acme_accounts, acme_orders, agent_contacts, cas, cert_objects, certificates, jobs, store_jobs, stores, tokens,
    users,
};
use crate::db::{DbConn, now};
use crate::vocab::{JobState, ObjectState, Permission, StoreJobState};

/// How long the overview's figures are reused for the same folder scope.
pub const OVERVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(15);
/// Overviews computed faster than this are not cached.
const CACHE_WHEN_SLOWER_THAN: std::time::Duration = std::time::Duration::from_millis(50);
/// Rows per inventory page.
pub const PAGE: i64 = 50;
/// Weeks in the expiry chart.
pub const WEEKS: usize = 13;

fn is_sqlite(c: &DbConn) -> bool {
    matches!(c, DbConn::Sqlite(_))
}

/// The smallest string above every string starting with `p` (byte-wise): `p` with its last
/// character incremented. `None` when no such bound exists in practice.
fn prefix_upper(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    let last = chars.pop()?;
    let next = char::from_u32(last as u32 + 1)?;
    chars.push(next);
    Some(chars.into_iter().collect())
}

fn like_escape(p: &str) -> String {
    let mut out = String::new();
    for c in p.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

/// SQL: `expr` (already lower-case) starts with `prefix` (lower-case).
fn starts_with_sql(sqlite: bool, expr: &str, prefix: &str) -> Box<dyn BoxableBool> {
    match (sqlite, prefix_upper(prefix)) {
        (true, Some(hi)) => Box::new(
            sql::<Bool>(&format!("({expr} >= "))
                .bind::<Text, _>(prefix.to_string())
                .sql(&format!(" AND {expr} < "))
                .bind::<Text, _>(hi)
                .sql(")"),
        ),
        _ => Box::new(
            sql::<Bool>(&format!("({expr} LIKE "))
                .bind::<Text, _>(format!("{}%", like_escape(prefix)))
                .sql(" ESCAPE '!')"),
        ),
    }
}

/// A boolean SQL fragment usable in any query of this module.
pub trait BoxableBool: diesel::query_builder::QueryFragment<crate::db::MultiBackend> + Send {}
impl<T: diesel::query_builder::QueryFragment<crate::db::MultiBackend> + Send> BoxableBool for T {}

/// Renders `cond` as a boolean SQL literal with its binds (for `filter(sql(...))`).
struct Cond(Vec<Box<dyn BoxableBool>>, &'static str);

impl diesel::query_builder::QueryFragment<crate::db::MultiBackend> for Cond {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, crate::db::MultiBackend>,
    ) -> QueryResult<()> {
        if self.0.is_empty() {
            out.push_sql(if self.1 == " OR " { "(1 = 0)" } else { "(1 = 1)" });
            return Ok(());
        }
        out.push_sql("(");
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_sql(self.1);
            }
            c.walk_ast(out.reborrow())?;
        }
        out.push_sql(")");
        Ok(())
    }
}

impl diesel::query_builder::QueryId for Cond {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::expression::Expression for Cond {
    type SqlType = Bool;
}

impl<QS> diesel::expression::AppearsOnTable<QS> for Cond {}
impl<QS> diesel::expression::SelectableExpression<QS> for Cond {}
impl diesel::expression::ValidGrouping<()> for Cond {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

/// SQL: the folder column `col` (a DN) is one of `roots` or below one.
fn in_folders(sqlite: bool, col: &str, roots: &[String]) -> Cond {
    let lower = format!("lower({col})");
    let mut parts: Vec<Box<dyn BoxableBool>> = vec![];
    for r in roots {
        let dn = super::policy::normalize_dn(r).to_lowercase();
        parts.push(Box::new(sql::<Bool>(&format!("{lower} = ")).bind::<Text, _>(dn.clone())));
        parts.push(starts_with_sql(sqlite, &lower, &format!("{dn}\\")));
    }
    Cond(parts, " OR ")
}

/// The read scope of a caller over `cert_objects`, like [`scope`], but on SQLite without the
/// subtree range of a root that has no object below it (one index probe per root): a lone
/// `lower(policy_dn) = ?` lets the `(lower(policy_dn), id)` index give the rows newest first, where
/// `= ? OR (>= ? AND < ?)` makes SQLite walk the whole table from the newest id (a folder of old
/// objects at a million rows: every row read before the first match).
fn object_scope(c: &mut DbConn, access: &FolderAccess) -> QueryResult<Option<Cond>> {
    let Some(roots) = access.roots(Permission::Read) else { return Ok(None) };
    if !is_sqlite(c) {
        return Ok(Some(in_folders(false, "cert_objects.policy_dn", &roots)));
    }
    let mut parts: Vec<Box<dyn BoxableBool>> = vec![];
    for r in roots {
        let dn = super::policy::normalize_dn(&r).to_lowercase();
        parts.push(Box::new(sql::<Bool>("lower(cert_objects.policy_dn) = ").bind::<Text, _>(dn.clone())));
        let below = format!("{dn}\\");
        let any: Option<i64> = cert_objects::table
            .filter(Cond(vec![starts_with_sql(true, "lower(cert_objects.policy_dn)", &below)], " AND "))
            .select(cert_objects::id)
            .limit(1)
            .first(c)
            .optional()?;
        if any.is_some() {
            parts.push(starts_with_sql(true, "lower(cert_objects.policy_dn)", &below));
        }
    }
    Ok(Some(Cond(parts, " OR ")))
}

/// The read scope of a caller, as the filter of `col`; `None` for an unlimited caller.
fn scope(sqlite: bool, access: &FolderAccess, col: &str) -> Option<Cond> {
    access.roots(Permission::Read).map(|roots| in_folders(sqlite, col, &roots))
}

// ---------------------------------------------------------------------------------------------
// Overview

/// The state shown for a disabled object, whatever its stored state (disabled is a flag beside it).
pub const DISABLED: &str = "disabled";

#[derive(Debug, Clone)]
pub struct StateCount {
    /// `active`, `processing`, `error` or `disabled` (a disabled object counts only there).
    pub state: String,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct FailingPush {
    pub store_guid: String,
    pub store: String,
    pub operation: String,
    pub attempts: i32,
    pub message: String,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub struct IssuerHealth {
    pub name: String,
    pub kind: String,
    pub status: String,
    pub healthy: bool,
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub states: Vec<StateCount>,
    pub total: i64,
    /// Current certificates already expired.
    pub expired: i64,
    /// Current certificates expiring in each of the next 13 weeks (week 0 starts now).
    pub weeks: Vec<i64>,
    pub week_starts: Vec<NaiveDateTime>,
    pub queue_depth: i64,
    pub oldest_job: Option<NaiveDateTime>,
    pub failing_pushes: Vec<FailingPush>,
    pub recent_renewals: Vec<AuditRecord>,
    pub issuers: Vec<IssuerHealth>,
    pub computed_at: NaiveDateTime,
}

type OverviewCache = Mutex<HashMap<String, (Instant, Arc<Overview>)>>;
static OVERVIEW_CACHE: std::sync::OnceLock<OverviewCache> = std::sync::OnceLock::new();

/// The overview for a caller: computed at most every [`OVERVIEW_TTL`] per folder scope.
pub fn overview(c: &mut DbConn, access: &FolderAccess) -> Result<Arc<Overview>, RenewError> {
    let key = format!("{:?}", access.roots(Permission::Read));
    let cache = OVERVIEW_CACHE.get_or_init(Default::default);
    if let Ok(m) = cache.lock()
        && let Some((at, o)) = m.get(&key)
        && at.elapsed() < OVERVIEW_TTL
    {
        return Ok(o.clone());
    }
    let started = Instant::now();
    let o = Arc::new(compute_overview(c, access)?);
    // Only figures that took a while are worth reusing (a large inventory); a small one is
    // always shown as it is now.
    if started.elapsed() < CACHE_WHEN_SLOWER_THAN {
        return Ok(o);
    }
    if let Ok(mut m) = cache.lock() {
        m.retain(|_, (at, _)| at.elapsed() < OVERVIEW_TTL);
        m.insert(key, (Instant::now(), o.clone()));
    }
    Ok(o)
}

/// Drops the cached overviews (after an action whose effect the user expects to see).
pub fn invalidate_overview() {
    if let Some(cache) = OVERVIEW_CACHE.get()
        && let Ok(mut m) = cache.lock()
    {
        m.clear();
    }
}

fn compute_overview(c: &mut DbConn, access: &FolderAccess) -> Result<Overview, RenewError> {
    let sqlite = is_sqlite(c);
    let t = now();
    // Objects by state (a disabled object is counted as disabled, whatever its state).
    let mut q = cert_objects::table
        .group_by((cert_objects::state, cert_objects::disabled))
        .select((cert_objects::state, cert_objects::disabled, diesel::dsl::count_star()))
        .into_boxed();
    if let Some(s) = object_scope(c, access)? {
        q = q.filter(s);
    }
    let rows: Vec<(ObjectState, bool, i64)> = q.load(c)?;
    let mut by: std::collections::BTreeMap<String, i64> = Default::default();
    for s in ObjectState::ALL.iter().map(|s| s.as_str()).chain([DISABLED]) {
        by.insert(s.to_string(), 0);
    }
    for (s, disabled, n) in rows {
        *by.entry(if disabled { DISABLED } else { s.as_str() }.to_string()).or_default() += n;
    }
    let total = by.values().sum();
    let states = by.into_iter().map(|(state, count)| StateCount { state, count }).collect();
    // Expiry: one count per week over the current certificates, each a range of the not_after
    // index with an `EXISTS` probe of the object whose current certificate it is (an index on
    // current_cert_id): each certificate is read once, from the index, never its row (the DER and
    // chain make a row kilobytes). A join lets SQLite start from the objects and read every
    // certificate's row instead (seconds at a million objects); bucketing in one query with a
    // CASE costs more than the ranges.
    let count_between = |c: &mut DbConn, from: Option<NaiveDateTime>, to: NaiveDateTime| -> QueryResult<i64> {
        let mut q =
            certificates::table.filter(certificates::not_after.lt(to)).select(diesel::dsl::count_star()).into_boxed();
        if let Some(f) = from {
            q = q.filter(certificates::not_after.ge(f));
        }
        q = q.filter(Cond(vec![Box::new(IsCurrent(object_scope(c, access)?))], " AND "));
        q.first(c)
    };
    let expired = count_between(c, None, t)?;
    let mut weeks = Vec::with_capacity(WEEKS);
    let mut week_starts = Vec::with_capacity(WEEKS);
    for w in 0..WEEKS as i64 {
        let from = t + ChronoDuration::weeks(w);
        week_starts.push(from);
        weeks.push(count_between(c, Some(from), from + ChronoDuration::weeks(1))?);
    }
    // Queue: renewal/issuance jobs not finished, of the caller's objects.
    let mut q = jobs::table
        .inner_join(cert_objects::table.on(cert_objects::id.eq(jobs::object_id)))
        .filter(jobs::state.eq_any([JobState::Queued, JobState::Running]))
        .select((diesel::dsl::count_star(), diesel::dsl::min(jobs::created_at)))
        .into_boxed();
    if let Some(s) = scope(sqlite, access, "cert_objects.policy_dn") {
        q = q.filter(s);
    }
    let (queue_depth, oldest_job): (i64, Option<NaiveDateTime>) = q.first(c)?;
    let failing_pushes = failing_pushes(c, access, 20)?;
    let recent_renewals = audit::list_for(
        c,
        access,
        &audit::Filter { action: Some(audit::action::RENEW.into()), limit: 10, ..Default::default() },
    )?
    .into_iter()
    .rev()
    .collect();
    let issuers = issuers(c)?;
    Ok(Overview {
        states,
        total,
        expired,
        weeks,
        week_starts,
        queue_depth,
        oldest_job,
        failing_pushes,
        recent_renewals,
        issuers,
        computed_at: t,
    })
}

/// Store push jobs that failed for good or are retrying after a failure, newest first.
pub fn failing_pushes(c: &mut DbConn, access: &FolderAccess, limit: i64) -> Result<Vec<FailingPush>, RenewError> {
    let mut q = store_jobs::table
        .inner_join(stores::table)
        .filter(
            store_jobs::state
                .eq(StoreJobState::Failed)
                .or(store_jobs::state.eq(StoreJobState::Waiting).and(store_jobs::attempts.gt(0))),
        )
        .select((StorePushJob::as_select(), Store::as_select()))
        .order(store_jobs::updated_at.desc())
        .limit(limit)
        .into_boxed();
    if let Some(s) = store_scope(is_sqlite(c), access) {
        q = q.filter(s);
    }
    let rows: Vec<(StorePushJob, Store)> = q.load(c)?;
    Ok(rows
        .into_iter()
        .map(|(j, s)| FailingPush {
            store_guid: s.guid.clone(),
            store: super::stores::store_label(&s),
            operation: j.operation,
            attempts: j.attempts,
            message: j.message.unwrap_or_default(),
            updated_at: j.updated_at,
        })
        .collect())
}

/// Stores a caller may read (a store not yet placed in a folder belongs to the root).
fn store_scope(sqlite: bool, access: &FolderAccess) -> Option<Cond> {
    let roots = access.roots(Permission::Read)?;
    Some(in_folders(sqlite, "COALESCE(stores.folder_dn, '\\VED\\Policy')", &roots))
}

/// Every issuer with its health: built-in CAs (enabled, not expired) and upstream ACME CAs (no
/// last error).
pub fn issuers(c: &mut DbConn) -> Result<Vec<IssuerHealth>, RenewError> {
    let cas: Vec<(String, bool, bool, String)> =
        cas::table.select((cas::name, cas::is_root, cas::disabled, cas::cert_pem)).order(cas::id).load(c)?;
    let mut out = vec![];
    for (name, is_root, disabled, pem) in cas {
        let not_after =
            openssl::x509::X509::from_pem(pem.as_bytes()).ok().map(|x| crate::ca::asn1_to_naive(x.not_after()));
        let expired = not_after.is_some_and(|n| n < now());
        let status = match (disabled, expired) {
            (_, true) => "expired".to_string(),
            (true, _) => "disabled".to_string(),
            _ => format!(
                "enabled, valid until {}",
                not_after.map(|n| n.format("%Y-%m-%d").to_string()).unwrap_or_default()
            ),
        };
        out.push(IssuerHealth {
            name,
            kind: if is_root { "built-in root".into() } else { "built-in".into() },
            healthy: !disabled && !expired,
            status,
        });
    }
    for r in crate::ca::upstream::db::list(c)? {
        out.push(IssuerHealth {
            healthy: r.last_error.is_none(),
            status: match (&r.last_error, &r.account_url) {
                (Some(e), _) => format!("failing: {e}"),
                (None, Some(_)) => "registered".into(),
                (None, None) => "not registered yet".into(),
            },
            name: r.name,
            kind: "ACME".into(),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Inventory

#[derive(Debug, Clone, Default)]
pub struct InventoryFilter {
    /// DN prefix (starts with `\`), serial or thumbprint (hex), a name prefix (CN or SAN), or a
    /// substring (`*text*`).
    pub q: Option<String>,
    pub folder: Option<String>,
    /// `active`, `processing`, `error` or `disabled`.
    pub state: Option<String>,
    /// An issuer (CA) name.
    pub issuer: Option<String>,
    pub expires_within_days: Option<i64>,
    /// The keyset cursor: the last row of the previous page (an id, or a DN for DN searches).
    pub after: Option<String>,
    pub limit: i64,
}

/// How a search term is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKind {
    None,
    /// Exact serial or thumbprint (hex, colons allowed).
    Hex(String),
    /// DN prefix (lower-case).
    DnPrefix(String),
    /// CN / SAN / object name prefix (lower-case).
    NamePrefix(String),
    /// Substring of the DN or a name (lower-case): a full scan, reported apart in the benchmark.
    Substring(String),
}

pub fn search_kind(q: Option<&str>) -> SearchKind {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return SearchKind::None;
    };
    if q.len() > 1 && q.starts_with('*') || q.ends_with('*') && q.len() > 1 {
        return SearchKind::Substring(q.trim_matches('*').to_lowercase());
    }
    if q.starts_with('\\') {
        return SearchKind::DnPrefix(super::policy::normalize_dn(q).to_lowercase());
    }
    let hex: String = q.chars().filter(|c| *c != ':' && *c != ' ').collect();
    if hex.len() >= 8 && hex.chars().all(|c| c.is_ascii_hexdigit()) && hex.chars().any(|c| c.is_ascii_digit()) {
        return SearchKind::Hex(hex.to_uppercase());
    }
    SearchKind::NamePrefix(q.trim_end_matches('.').to_lowercase())
}

#[derive(Debug, Clone)]
pub struct InventoryRow {
    pub object: CertObject,
    pub serial: Option<String>,
    pub not_after: Option<NaiveDateTime>,
    pub issuer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InventoryPage {
    pub rows: Vec<InventoryRow>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
    pub kind: SearchKind,
}

/// An inventory row as loaded: the object, its current certificate's serial, expiry and issuer.
type PageRow = (CertObject, Option<String>, Option<NaiveDateTime>, Option<String>);

/// One page of the caller's objects: newest first, or by DN for a DN-prefix search.
pub fn inventory(c: &mut DbConn, access: &FolderAccess, f: &InventoryFilter) -> Result<InventoryPage, RenewError> {
    let sqlite = is_sqlite(c);
    let kind = search_kind(f.q.as_deref());
    let limit = f.limit.clamp(1, 500);
    let mut q = cert_objects::table
        .left_join(certificates::table.on(cert_objects::current_cert_id.eq(certificates::id.nullable())))
        .select((
            CertObject::as_select(),
            certificates::serial.nullable(),
            certificates::not_after.nullable(),
            certificates::issuer_dn.nullable(),
        ))
        .into_boxed();
    if let Some(s) = object_scope(c, access)? {
        q = q.filter(s);
    }
    if let Some(folder) = f.folder.as_deref().filter(|s| !s.trim().is_empty()) {
        q = q.filter(in_folders(sqlite, "cert_objects.policy_dn", &[folder.to_string()]));
    }
    match f.state.as_deref().filter(|s| !s.is_empty()) {
        Some("disabled") => q = q.filter(cert_objects::disabled.eq(true)),
        Some(s) => q = q.filter(cert_objects::state.eq(s.to_string())).filter(cert_objects::disabled.eq(false)),
        None => {}
    }
    if let Some(issuer) = f.issuer.as_deref().filter(|s| !s.trim().is_empty()) {
        // By CA name (certificate_info), or by the issuer DN's CN for certificates from elsewhere.
        q = q.filter(
            sql::<Bool>("(certificates.id IN (SELECT certificate_id FROM certificate_info WHERE lower(ca_name) = ")
                .bind::<Text, _>(issuer.trim().to_lowercase())
                .sql(") OR certificates.issuer_ca_id IN (SELECT id FROM cas WHERE name_lower = ")
                .bind::<Text, _>(issuer.trim().to_lowercase())
                .sql("))"),
        );
    }
    if let Some(d) = f.expires_within_days {
        q = q.filter(certificates::not_after.lt(now() + ChronoDuration::days(d.clamp(0, 36_500))));
    }
    let by_dn = matches!(kind, SearchKind::DnPrefix(_));
    match &kind {
        SearchKind::None => {}
        SearchKind::Hex(h) => {
            q = q.filter(
                sql::<Bool>("cert_objects.id IN (SELECT object_id FROM certificates WHERE serial = ")
                    .bind::<Text, _>(h.trim_start_matches('0').to_string())
                    .sql(" OR serial = ")
                    .bind::<Text, _>(h.clone())
                    .sql(" OR thumbprint = ")
                    .bind::<Text, _>(h.clone())
                    .sql(")"),
            );
        }
        SearchKind::DnPrefix(p) => {
            q = q.filter(Cond(vec![starts_with_sql(sqlite, "cert_objects.dn_lower", p)], " AND "));
        }
        SearchKind::NamePrefix(p) => {
            let inner = starts_with_sql(sqlite, "name", p);
            let by_object_name = starts_with_sql(sqlite, "lower(cert_objects.name)", p);
            q = q.filter(Cond(vec![Box::new(NameSubquery(inner)), by_object_name], " OR "));
        }
        SearchKind::Substring(s) => {
            let pat = format!("%{}%", like_escape(s));
            q = q.filter(
                sql::<Bool>("(cert_objects.dn_lower LIKE ")
                    .bind::<Text, _>(pat.clone())
                    .sql(" ESCAPE '!' OR cert_objects.id IN (SELECT object_id FROM certificate_names WHERE name LIKE ")
                    .bind::<Text, _>(pat)
                    .sql(" ESCAPE '!'))"),
            );
        }
    }
    if let Some(after) = f.after.as_deref().filter(|s| !s.is_empty()) {
        if by_dn {
            q = q.filter(cert_objects::dn_lower.gt(after.to_lowercase()));
        } else if let Ok(id) = after.parse::<i64>() {
            q = q.filter(cert_objects::id.lt(id));
        }
    }
    q = if by_dn { q.order(cert_objects::dn_lower.asc()) } else { q.order(cert_objects::id.desc()) };
    let mut rows: Vec<PageRow> = q.limit(limit + 1).load(c)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next =
        if more { rows.last().map(|(o, ..)| if by_dn { o.dn_lower.clone() } else { o.id.to_string() }) } else { None };
    Ok(InventoryPage {
        rows: rows
            .into_iter()
            .map(|(object, serial, not_after, issuer)| InventoryRow { object, serial, not_after, issuer })
            .collect(),
        next,
        kind,
    })
}

/// `EXISTS (SELECT 1 FROM cert_objects WHERE current_cert_id = certificates.id [AND <scope>])`:
/// the certificate is some (readable) object's current one.
struct IsCurrent(Option<Cond>);

impl diesel::query_builder::QueryFragment<crate::db::MultiBackend> for IsCurrent {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, crate::db::MultiBackend>,
    ) -> QueryResult<()> {
        out.push_sql("EXISTS (SELECT 1 FROM cert_objects WHERE cert_objects.current_cert_id = certificates.id");
        if let Some(s) = &self.0 {
            out.push_sql(" AND ");
            s.walk_ast(out.reborrow())?;
        }
        out.push_sql(")");
        Ok(())
    }
}

/// `cert_objects.id IN (SELECT object_id FROM certificate_names WHERE <name condition>)`.
struct NameSubquery(Box<dyn BoxableBool>);

impl diesel::query_builder::QueryFragment<crate::db::MultiBackend> for NameSubquery {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, crate::db::MultiBackend>,
    ) -> QueryResult<()> {
        out.push_sql("cert_objects.id IN (SELECT object_id FROM certificate_names WHERE ");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// A certificate's page

#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub version: CertVersion,
    pub key_type: String,
    pub sans: Vec<String>,
    pub revoked: bool,
    pub current: bool,
}

#[derive(Debug, Clone)]
pub struct StoreInstall {
    pub store: Store,
    pub alias: String,
    pub runs: Vec<(StorePushJob, Vec<StoreJobRun>)>,
}

#[derive(Debug, Clone)]
pub struct CertificatePage {
    pub object: CertObject,
    pub versions: Vec<VersionInfo>,
    pub stores: Vec<StoreInstall>,
    pub audit: Vec<AuditRecord>,
    pub may_write: bool,
    pub may_read_keys: bool,
    pub has_key: bool,
}

fn key_type_of(x: &openssl::x509::X509) -> String {
    match x.public_key() {
        Ok(k) => match k.id() {
            openssl::pkey::Id::RSA => format!("RSA {}", k.bits()),
            openssl::pkey::Id::EC => k
                .ec_key()
                .ok()
                .and_then(|e| e.group().curve_name())
                .and_then(|n| n.short_name().ok().map(str::to_string))
                .map(|n| format!("EC {n}"))
                .unwrap_or_else(|| "EC".into()),
            openssl::pkey::Id::ED25519 => "Ed25519".into(),
            other => format!("{other:?}"),
        },
        Err(_) => "unknown".into(),
    }
}

/// An object's page, for a caller who may read its folder (`None`: missing or hidden alike).
pub fn certificate_page(
    c: &mut DbConn,
    access: &FolderAccess,
    guid: &str,
) -> Result<Option<CertificatePage>, RenewError> {
    let Some(object) = super::access::readable_object(c, access, guid)? else {
        return Ok(None);
    };
    let revoked: Vec<i64> = crate::db::schema::revocations::table
        .inner_join(certificates::table.on(certificates::id.eq(crate::db::schema::revocations::certificate_id)))
        .filter(certificates::object_id.eq(object.id))
        .select(crate::db::schema::revocations::certificate_id)
        .load(c)?;
    let mut versions = vec![];
    for v in super::inventory::versions(c, object.id)?.into_iter().rev() {
        let x = openssl::x509::X509::from_der(&v.der).ok();
        versions.push(VersionInfo {
            key_type: x.as_ref().map(key_type_of).unwrap_or_default(),
            sans: x.as_ref().map(super::inventory::sans_of).unwrap_or_default(),
            revoked: revoked.contains(&v.id),
            current: object.current_cert_id == Some(v.id),
            version: v,
        });
    }
    let mut installs = vec![];
    if let Some(cur) = object.current_cert_id {
        for (store, alias) in super::stores::locations_of(c, cur)? {
            if !super::stores::allowed(access, &store, Permission::Read) {
                continue;
            }
            installs.push(StoreInstall { store, alias, runs: vec![] });
        }
    }
    // Every push job of this object's certificates, per store, with its runs.
    let ids: Vec<i64> = versions.iter().map(|v| v.version.id).collect();
    let jobs: Vec<(StorePushJob, Store)> = store_jobs::table
        .inner_join(stores::table)
        .filter(store_jobs::certificate_id.eq_any(&ids))
        .order(store_jobs::id.desc())
        .limit(200)
        .select((StorePushJob::as_select(), Store::as_select()))
        .load(c)?;
    for (j, s) in jobs {
        if !super::stores::allowed(access, &s, Permission::Read) {
            continue;
        }
        let runs: Vec<StoreJobRun> = crate::db::schema::store_job_runs::table
            .filter(crate::db::schema::store_job_runs::job_id.eq(j.id))
            .order(crate::db::schema::store_job_runs::id.desc())
            .limit(20)
            .select(StoreJobRun::as_select())
            .load(c)?;
        match installs.iter_mut().find(|i| i.store.id == s.id) {
            Some(i) => i.runs.push((j, runs)),
            None => installs.push(StoreInstall {
                alias: j.alias.clone().unwrap_or_default(),
                store: s,
                runs: vec![(j, runs)],
            }),
        }
    }
    let audit = audit_of_object(c, &object, &ids)?;
    let has_key = versions.iter().any(|v| v.current && v.version.key_enc.is_some());
    Ok(Some(CertificatePage {
        may_write: super::access::object_allowed(access, &object, Permission::Write),
        may_read_keys: super::access::may_read_keys(access, &object.policy_dn),
        has_key,
        object,
        versions,
        stores: installs,
        audit,
    }))
}

/// The audit records of an object: by its DN or one of its certificates, newest first.
fn audit_of_object(c: &mut DbConn, o: &CertObject, cert_ids: &[i64]) -> QueryResult<Vec<AuditRecord>> {
    use crate::db::schema::audit_log;
    let rows: Vec<audit::AuditRow> = audit_log::table
        .filter(audit_log::target.eq(&o.dn).or(audit_log::certificate_id.eq_any(cert_ids)))
        .order(audit_log::id.desc())
        .limit(100)
        .select(audit::AuditRow::as_select())
        .load(c)?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

// ---------------------------------------------------------------------------------------------
// Stores and agents

#[derive(Debug, Clone)]
pub struct StoreRow {
    pub store: Store,
    pub last_contact: Option<NaiveDateTime>,
    pub pending: i64,
    pub failed: i64,
}

#[derive(Debug, Clone)]
pub struct StoresPage {
    pub stores: Vec<StoreRow>,
    /// Jobs waiting, running or failed, of the caller's stores, newest first.
    pub jobs: Vec<(StorePushJob, Store)>,
}

pub fn stores_page(c: &mut DbConn, access: &FolderAccess) -> Result<StoresPage, RenewError> {
    let list = super::stores::list_stores_for(c, access)?;
    let contacts: HashMap<String, NaiveDateTime> = agent_contacts::table
        .select((agent_contacts::client_machine_lower, agent_contacts::last_contact))
        .load::<(String, NaiveDateTime)>(c)?
        .into_iter()
        .collect();
    let counts: Vec<(i64, StoreJobState, i64)> = store_jobs::table
        .filter(store_jobs::state.ne(StoreJobState::Done))
        .group_by((store_jobs::store_id, store_jobs::state))
        .select((store_jobs::store_id, store_jobs::state, diesel::dsl::count_star()))
        .load(c)?;
    let stores = list
        .into_iter()
        .map(|s| {
            let of = |st: StoreJobState| {
                counts.iter().filter(|(id, state, _)| *id == s.id && *state == st).map(|x| x.2).sum()
            };
            StoreRow {
                last_contact: contacts.get(&s.client_machine_lower).copied(),
                pending: of(StoreJobState::Waiting) + of(StoreJobState::Running),
                failed: of(StoreJobState::Failed),
                store: s,
            }
        })
        .collect();
    let mut q = store_jobs::table
        .inner_join(stores::table)
        .filter(store_jobs::state.ne(StoreJobState::Done))
        .select((StorePushJob::as_select(), Store::as_select()))
        .order(store_jobs::id.desc())
        .limit(200)
        .into_boxed();
    if let Some(s) = store_scope(is_sqlite(c), access) {
        q = q.filter(s);
    }
    Ok(StoresPage { stores, jobs: q.load(c)? })
}

/// Notes that a store agent asked for its jobs (the stores page shows its last contact).
pub fn agent_contact(c: &mut DbConn, machine: &str) -> QueryResult<()> {
    let lower = machine.to_lowercase();
    let t = now();
    let n = diesel::update(agent_contacts::table.find(&lower)).set(agent_contacts::last_contact.eq(t)).execute(c)?;
    if n == 0 {
        // Two first contacts at once: the loser's insert fails harmlessly.
        let _ = diesel::insert_into(agent_contacts::table)
            .values((
                agent_contacts::client_machine_lower.eq(&lower),
                agent_contacts::client_machine.eq(machine),
                agent_contacts::last_contact.eq(t),
            ))
            .execute(c);
    }
    Ok(())
}

/// Retries a failed store push job now (write on its store's folder). `false`: no such job
/// the caller may change, or it is not failed.
pub fn retry_push(c: &mut DbConn, access: &FolderAccess, job_guid: &str) -> Result<bool, RenewError> {
    let row: Option<(StorePushJob, Store)> = store_jobs::table
        .inner_join(stores::table)
        .filter(store_jobs::guid.eq(super::inventory::normalize_guid(job_guid)))
        .select((StorePushJob::as_select(), Store::as_select()))
        .first(c)
        .optional()?;
    let Some((j, s)) = row else { return Ok(false) };
    if !super::stores::allowed(access, &s, Permission::Write) || j.state != StoreJobState::Failed {
        return Ok(false);
    }
    let n = diesel::update(store_jobs::table.find(j.id).filter(store_jobs::state.eq(StoreJobState::Failed)))
        .set((
            store_jobs::state.eq(StoreJobState::Waiting),
            store_jobs::attempts.eq(0),
            store_jobs::run_after.eq(now()),
            store_jobs::lease_owner.eq(None::<String>),
            store_jobs::lease_until.eq(None::<NaiveDateTime>),
            store_jobs::updated_at.eq(now()),
        ))
        .execute(c)?;
    Ok(n == 1)
}

// ---------------------------------------------------------------------------------------------
// ACME

#[derive(Debug, Clone)]
pub struct AcmeAccountRow {
    pub id: i64,
    pub status: String,
    pub contact: String,
    pub eab_kid: Option<String>,
    pub policy_dn: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub struct AcmeOrderRow {
    pub id: i64,
    pub account_id: i64,
    pub status: String,
    pub identifiers: String,
    pub action: String,
    pub created_at: NaiveDateTime,
    pub error: Option<String>,
}

/// ACME accounts bound to the caller's folders, and their latest orders.
pub fn acme_page(
    c: &mut DbConn,
    access: &FolderAccess,
) -> Result<(Vec<AcmeAccountRow>, Vec<AcmeOrderRow>), RenewError> {
    let sqlite = is_sqlite(c);
    let mut q = acme_accounts::table
        .select((
            acme_accounts::id,
            acme_accounts::status,
            acme_accounts::contact,
            acme_accounts::eab_kid,
            acme_accounts::policy_dn,
            acme_accounts::created_at,
        ))
        .order(acme_accounts::id.desc())
        .limit(200)
        .into_boxed();
    if let Some(s) = scope(sqlite, access, "acme_accounts.policy_dn") {
        q = q.filter(s);
    }
    let accounts: Vec<AcmeAccountRow> = q
        .load::<(i64, String, String, Option<String>, String, NaiveDateTime)>(c)?
        .into_iter()
        .map(|(id, status, contact, eab_kid, policy_dn, created_at)| AcmeAccountRow {
            id,
            status,
            contact,
            eab_kid,
            policy_dn,
            created_at,
        })
        .collect();
    let mut q = acme_orders::table
        .inner_join(acme_accounts::table.on(acme_accounts::id.eq(acme_orders::account_id)))
        .select((
            acme_orders::id,
            acme_orders::account_id,
            acme_orders::status,
            acme_orders::identifiers,
            acme_orders::action,
            acme_orders::created_at,
            acme_orders::error,
        ))
        .order(acme_orders::id.desc())
        .limit(100)
        .into_boxed();
    if let Some(s) = scope(sqlite, access, "acme_accounts.policy_dn") {
        q = q.filter(s);
    }
    let orders = q
        .load::<(i64, i64, String, String, String, NaiveDateTime, Option<String>)>(c)?
        .into_iter()
        .map(|(id, account_id, status, identifiers, action, created_at, error)| AcmeOrderRow {
            id,
            account_id,
            status,
            identifiers,
            action,
            created_at,
            error,
        })
        .collect();
    Ok((accounts, orders))
}

// ---------------------------------------------------------------------------------------------
// Users and tokens

#[derive(Debug, Clone)]
pub struct UserRow {
    pub name: String,
    pub max_scope: String,
    pub folders: String,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: i64,
    pub user: String,
    pub scope: String,
    pub client_id: String,
    pub kind: String,
    pub issued_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Users and their live tokens (never a token's value: only what identifies it).
pub fn users_page(c: &mut DbConn) -> Result<(Vec<UserRow>, Vec<TokenRow>), RenewError> {
    let us: Vec<(String, String, String, bool, NaiveDateTime)> = users::table
        .order(users::name_lower)
        .select((users::name, users::max_scope, users::folders, users::disabled, users::created_at))
        .load(c)?;
    let ts: Vec<(i64, String, String, String, String, NaiveDateTime, NaiveDateTime)> = tokens::table
        .inner_join(users::table)
        .filter(tokens::revoked.eq(false))
        .filter(tokens::expires_at.gt(now()).or(tokens::refresh_until.gt(now())))
        .order(tokens::id.desc())
        .limit(500)
        .select((
            tokens::id,
            users::name,
            tokens::scope,
            tokens::client_id,
            tokens::kind,
            tokens::issued_at,
            tokens::expires_at,
        ))
        .load(c)?;
    Ok((
        us.into_iter()
            .map(|(name, max_scope, folders, disabled, created_at)| UserRow {
                name,
                max_scope,
                folders,
                disabled,
                created_at,
            })
            .collect(),
        ts.into_iter()
            .map(|(id, user, scope, client_id, kind, issued_at, expires_at)| TokenRow {
                id,
                user,
                scope,
                client_id,
                kind,
                issued_at,
                expires_at,
            })
            .collect(),
    ))
}

/// The user a token (by id) belongs to.
pub fn token_owner(c: &mut DbConn, id: i64) -> Result<Option<crate::db::models::User>, RenewError> {
    Ok(tokens::table
        .inner_join(users::table)
        .filter(tokens::id.eq(id))
        .select(crate::db::models::User::as_select())
        .first(c)
        .optional()?)
}

/// Revokes a token by its id (the console lists ids, never values).
pub fn revoke_token_by_id(c: &mut DbConn, id: i64) -> Result<bool, RenewError> {
    Ok(diesel::update(tokens::table.find(id).filter(tokens::revoked.eq(false)))
        .set(tokens::revoked.eq(true))
        .execute(c)?
        == 1)
}

/// The policy folders a caller may read, for the folder choices.
pub fn folder_names(c: &mut DbConn, access: &FolderAccess) -> Result<Vec<String>, RenewError> {
    use crate::db::schema::policy_folders;
    let all: Vec<String> = policy_folders::table.select(policy_folders::dn).order(policy_folders::dn_lower).load(c)?;
    Ok(all.into_iter().filter(|dn| super::policy::may(access, dn, Permission::Read)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_are_read_by_their_shape() {
        assert_eq!(search_kind(None), SearchKind::None);
        assert_eq!(search_kind(Some("  ")), SearchKind::None);
        assert_eq!(search_kind(Some("\\VED\\Policy\\A")), SearchKind::DnPrefix("\\ved\\policy\\a".into()));
        assert_eq!(search_kind(Some("0A:1B:2C:3D:4E")), SearchKind::Hex("0A1B2C3D4E".into()));
        assert_eq!(search_kind(Some("www.Example.com.")), SearchKind::NamePrefix("www.example.com".into()));
        assert_eq!(search_kind(Some("*ample*")), SearchKind::Substring("ample".into()));
        // A word made of hex letters only is a name, not a serial.
        assert_eq!(search_kind(Some("deadbeefcafe")), SearchKind::NamePrefix("deadbeefcafe".into()));
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper("\\ved\\").as_deref(), Some("\\ved]"));
        assert_eq!(prefix_upper(""), None);
        assert_eq!(like_escape("a_b%c!"), "a!_b!%c!!");
    }
}
