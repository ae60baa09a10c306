//! Upstream issuers and their http-01 answers in the database (the only SQL of upstream CAs).
use diesel::prelude::*;

use crate::db::schema::{cas, certificate_info, certificates, http01_answers, issuers, jobs};
use crate::db::{DbConn, now};
use crate::vocab::JobState;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = issuers)]
pub struct IssuerRow {
    pub id: i64,
    pub name: String,
    pub name_lower: String,
    pub kind: String,
    pub directory_url: String,
    pub config: String,
    pub eab_hmac_enc: Option<Vec<u8>>,
    pub account_key_enc: Option<Vec<u8>>,
    pub account_url: Option<String>,
    pub last_error: Option<String>,
    pub removed: bool,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    pub tsig_secret_enc: Option<Vec<u8>>,
}

/// An issuer that is in use (not removed), by name (case-insensitive).
pub fn find(c: &mut DbConn, name: &str) -> QueryResult<Option<IssuerRow>> {
    issuers::table
        .filter(issuers::name_lower.eq(name.to_ascii_lowercase()))
        .filter(issuers::removed.eq(false))
        .select(IssuerRow::as_select())
        .first(c)
        .optional()
}

/// Any issuer row by name, a removed one included (its account still revokes).
pub fn find_any(c: &mut DbConn, name: &str) -> QueryResult<Option<IssuerRow>> {
    issuers::table
        .filter(issuers::name_lower.eq(name.to_ascii_lowercase()))
        .select(IssuerRow::as_select())
        .first(c)
        .optional()
}

pub fn list(c: &mut DbConn) -> QueryResult<Vec<IssuerRow>> {
    issuers::table.filter(issuers::removed.eq(false)).order(issuers::id.asc()).select(IssuerRow::as_select()).load(c)
}

/// Whether a built-in CA (a `cas` row) has this name.
pub fn builtin_exists(c: &mut DbConn, name: &str) -> QueryResult<bool> {
    Ok(cas::table.filter(cas::name_lower.eq(name.to_ascii_lowercase())).count().get_result::<i64>(c)? > 0)
}

pub struct NewIssuer<'a> {
    pub name: &'a str,
    pub directory_url: &'a str,
    pub config: &'a str,
    pub eab_hmac_enc: Option<&'a [u8]>,
    pub tsig_secret_enc: Option<&'a [u8]>,
}

/// Adds an issuer, or brings a removed one of the same name back with the new settings (its
/// old account is dropped: the directory may differ).
pub fn insert(c: &mut DbConn, n: &NewIssuer<'_>) -> QueryResult<()> {
    let ts = now();
    let lower = n.name.to_ascii_lowercase();
    diesel::delete(issuers::table.filter(issuers::name_lower.eq(&lower)).filter(issuers::removed.eq(true)))
        .execute(c)?;
    diesel::insert_into(issuers::table)
        .values((
            issuers::name.eq(n.name),
            issuers::name_lower.eq(&lower),
            issuers::kind.eq("acme"),
            issuers::directory_url.eq(n.directory_url),
            issuers::config.eq(n.config),
            issuers::eab_hmac_enc.eq(n.eab_hmac_enc),
            issuers::tsig_secret_enc.eq(n.tsig_secret_enc),
            issuers::removed.eq(false),
            issuers::created_at.eq(ts),
            issuers::updated_at.eq(ts),
        ))
        .execute(c)?;
    Ok(())
}

/// Replaces an issuer's settings. A new directory or EAB key drops the account: the next order
/// registers again.
pub fn update(c: &mut DbConn, id: i64, n: &NewIssuer<'_>, drop_account: bool) -> QueryResult<()> {
    let row = issuers::table.find(id);
    diesel::update(row)
        .set((
            issuers::directory_url.eq(n.directory_url),
            issuers::config.eq(n.config),
            issuers::eab_hmac_enc.eq(n.eab_hmac_enc),
            issuers::tsig_secret_enc.eq(n.tsig_secret_enc),
            issuers::last_error.eq(None::<String>),
            issuers::updated_at.eq(now()),
        ))
        .execute(c)?;
    if drop_account {
        diesel::update(row)
            .set((issuers::account_key_enc.eq(None::<Vec<u8>>), issuers::account_url.eq(None::<String>)))
            .execute(c)?;
    }
    Ok(())
}

/// Saves the account the gateway registered (credentials sealed by the caller), unless another
/// job or instance saved one since `previous` was read: false then, and that one is to be used.
/// The update time is left alone: a new account does not make the cached issuer stale.
pub fn save_account(c: &mut DbConn, id: i64, sealed: &[u8], url: &str, previous: Option<&[u8]>) -> QueryResult<bool> {
    let set = (issuers::account_key_enc.eq(sealed), issuers::account_url.eq(url));
    let n = match previous {
        Some(p) => {
            diesel::update(issuers::table.find(id).filter(issuers::account_key_enc.eq(p))).set(set).execute(c)?
        }
        None => {
            diesel::update(issuers::table.find(id).filter(issuers::account_key_enc.is_null())).set(set).execute(c)?
        }
    };
    Ok(n == 1)
}

/// The stored (sealed) account of an issuer.
pub fn stored_account(c: &mut DbConn, id: i64) -> QueryResult<Option<Vec<u8>>> {
    Ok(issuers::table.find(id).select(issuers::account_key_enc).first::<Option<Vec<u8>>>(c).optional()?.flatten())
}

pub fn set_last_error(c: &mut DbConn, id: i64, error: Option<&str>) -> QueryResult<()> {
    diesel::update(issuers::table.find(id)).set(issuers::last_error.eq(error)).execute(c)?;
    Ok(())
}

/// Marks an issuer removed (the row and its account stay for later revocations).
pub fn mark_removed(c: &mut DbConn, id: i64) -> QueryResult<()> {
    diesel::update(issuers::table.find(id))
        .set((issuers::removed.eq(true), issuers::updated_at.eq(now())))
        .execute(c)?;
    Ok(())
}

/// What still depends on an issuer: unexpired certificates it issued and unfinished jobs that
/// name it.
pub fn references(c: &mut DbConn, name: &str) -> QueryResult<(i64, i64)> {
    let certs: i64 = certificates::table
        .inner_join(certificate_info::table.on(certificate_info::certificate_id.eq(certificates::id)))
        .filter(certificate_info::ca_name.eq(name))
        .filter(certificates::not_after.gt(now()))
        .count()
        .get_result(c)?;
    // Job payloads are JSON: `"ca":"<name>"` as serde writes it, the name as the folder spelled
    // it (compared without case; `_` and `%` in a name match themselves).
    let quoted = serde_json::Value::String(name.to_ascii_lowercase()).to_string();
    let escaped = quoted.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    let pattern = format!("%\"ca\":{escaped}%");
    let open_jobs: i64 = jobs::table
        .filter(jobs::state.eq_any([JobState::Queued, JobState::Running]))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(payload) LIKE ")
                .bind::<diesel::sql_types::Text, _>(pattern)
                .sql(" ESCAPE '\\'"),
        )
        .count()
        .get_result(c)?;
    Ok((certs, open_jobs))
}

/// Publishes the answer to an http-01 challenge (any instance's listener serves it).
pub fn put_answer(c: &mut DbConn, token: &str, key_authorization: &str, ttl: chrono::Duration) -> QueryResult<()> {
    let expires = now() + ttl;
    diesel::delete(http01_answers::table.filter(http01_answers::token.eq(token))).execute(c)?;
    diesel::insert_into(http01_answers::table)
        .values((
            http01_answers::token.eq(token),
            http01_answers::key_authorization.eq(key_authorization),
            http01_answers::expires_at.eq(expires),
        ))
        .execute(c)?;
    Ok(())
}

pub fn answer(c: &mut DbConn, token: &str) -> QueryResult<Option<String>> {
    http01_answers::table
        .filter(http01_answers::token.eq(token))
        .filter(http01_answers::expires_at.gt(now()))
        .select(http01_answers::key_authorization)
        .first(c)
        .optional()
}

/// Drops answers no longer needed (and any that expired).
pub fn remove_answers(c: &mut DbConn, tokens: &[String]) -> QueryResult<()> {
    diesel::delete(http01_answers::table.filter(http01_answers::token.eq_any(tokens))).execute(c)?;
    diesel::delete(http01_answers::table.filter(http01_answers::expires_at.le(now()))).execute(c)?;
    Ok(())
}

/// The issuer that signed a certificate (`certificate_info.ca_name`) and its DER.
pub fn issued_by(c: &mut DbConn, certificate_id: i64) -> QueryResult<Option<(String, Vec<u8>)>> {
    certificates::table
        .inner_join(certificate_info::table.on(certificate_info::certificate_id.eq(certificates::id)))
        .filter(certificates::id.eq(certificate_id))
        .select((certificate_info::ca_name.assume_not_null(), certificates::der))
        .first(c)
        .optional()
}
