//! ACME state in the database: consumed nonces (shared by every instance), EAB keys, accounts
//! and the objects assigned to EAB keys.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use diesel::prelude::*;
use serde_json::Value;

use crate::db::schema::{acme_accounts, acme_assignments, acme_eab_keys, acme_nonces};
use crate::db::{DbConn, DbError, now};
use crate::secrets::MasterKey;

/// The sealing purpose of EAB HMAC keys (see [`MasterKey::seal`]).
pub const EAB_PURPOSE: &str = "acme-eab-key";

/// Records a nonce a verified request consumed: false when it was consumed before (a replay,
/// on this instance or another sharing the database).
pub fn record_used_nonce(c: &mut DbConn, n: &str, expires_at: chrono::NaiveDateTime) -> Result<bool, DbError> {
    // Kept prepared (`db::Prepared`): on PostgreSQL every ACME request consumes a nonce.
    match crate::db::Prepared(
        diesel::insert_into(acme_nonces::table)
            .values((acme_nonces::nonce.eq(n), acme_nonces::expires_at.eq(expires_at)))
            .returning(acme_nonces::expires_at),
    )
    .load::<chrono::NaiveDateTime>(c)
    {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes consumed nonces that have expired (they could not verify any more).
pub fn purge_nonces(c: &mut DbConn) -> Result<usize, DbError> {
    Ok(diesel::delete(acme_nonces::table.filter(acme_nonces::expires_at.le(now()))).execute(c)?)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = acme_accounts)]
pub struct Account {
    pub id: i64,
    pub thumbprint: String,
    pub jwk: String,
    pub status: String,
    pub contact: String,
    pub eab_kid: Option<String>,
    pub policy_dn: String,
    pub prevalidated: bool,
    pub created_at: chrono::NaiveDateTime,
    pub created_from: Option<String>,
}

pub fn account(c: &mut DbConn, id: i64) -> Result<Option<Account>, DbError> {
    // Every request signed with `kid` reads its account: on the concrete connection (`on_backend`).
    Ok(crate::on_backend!(c, |c| acme_accounts::table.find(id).select(Account::as_select()).first(c).optional())?)
}

pub fn account_by_thumbprint(c: &mut DbConn, t: &str) -> Result<Option<Account>, DbError> {
    Ok(acme_accounts::table.filter(acme_accounts::thumbprint.eq(t)).select(Account::as_select()).first(c).optional()?)
}

/// What an EAB key binds an account to.
pub struct Binding {
    pub kid: String,
    pub policy_dn: String,
    pub prevalidated: bool,
}

/// Accounts created without EAB from `source` since `since` (the hourly limit).
pub fn accounts_created_from(c: &mut DbConn, source: &str, since: chrono::NaiveDateTime) -> Result<i64, DbError> {
    Ok(acme_accounts::table
        .filter(acme_accounts::created_from.eq(source))
        .filter(acme_accounts::created_at.gt(since))
        .count()
        .get_result(c)?)
}

/// Does the EAB key `kid` exist, and may its accounts act on any object of its folder?
pub fn eab_folder_orders(c: &mut DbConn, kid: &str) -> Result<Option<bool>, DbError> {
    Ok(acme_eab_keys::table
        .filter(acme_eab_keys::kid.eq(kid))
        .select(acme_eab_keys::folder_orders)
        .first(c)
        .optional()?)
}

/// Lets the accounts of EAB key `kid` act on `object_id` (`renewgate acme assign`).
pub fn assign(c: &mut DbConn, kid: &str, object_id: i64) -> Result<bool, DbError> {
    match diesel::insert_into(acme_assignments::table)
        .values((
            acme_assignments::eab_kid.eq(kid),
            acme_assignments::object_id.eq(object_id),
            acme_assignments::created_at.eq(now()),
        ))
        .execute(c)
    {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The objects assigned to EAB key `kid`.
pub fn assigned_objects(c: &mut DbConn, kid: &str) -> Result<Vec<i64>, DbError> {
    Ok(acme_assignments::table.filter(acme_assignments::eab_kid.eq(kid)).select(acme_assignments::object_id).load(c)?)
}

/// Creates an EAB key bound to a policy folder; returns (kid, base64url HMAC key).
pub fn create_eab(
    c: &mut DbConn,
    master: &MasterKey,
    policy_dn: &str,
    prevalidated: bool,
    folder_orders: bool,
) -> Result<(String, String), String> {
    let dn = crate::engine::policy::normalize_dn(policy_dn);
    if crate::engine::policy::find_folder(c, &dn).map_err(|e| e.to_string())?.is_none() {
        return Err(format!("PolicyDN: {dn} does not exist."));
    }
    if prevalidated {
        let p = crate::engine::policy::effective(c, &dn).map_err(|e| e.to_string())?;
        if p.domains().is_empty() {
            return Err(format!(
                "{dn} has no whitelisted domains: a pre-validated key needs them (renewgate policy set '{dn}' domains=example.com)"
            ));
        }
    }
    // Neither value may start with '-': `certbot --eab-kid -x…` reads it as an option (1 key in
    // 64 would fail). The kid is hex; the key stays base64url (what clients expect) and is drawn
    // again in that case.
    let mut key = [0u8; 32];
    loop {
        openssl::rand::rand_bytes(&mut key).map_err(|e| e.to_string())?;
        if !B64U.encode(key).starts_with('-') {
            break;
        }
    }
    let mut kid = [0u8; 12];
    openssl::rand::rand_bytes(&mut kid).map_err(|e| e.to_string())?;
    let kid = hex::encode(kid);
    let sealed = master.seal(EAB_PURPOSE, &key).map_err(|e| e.to_string())?;
    diesel::insert_into(acme_eab_keys::table)
        .values((
            acme_eab_keys::kid.eq(&kid),
            acme_eab_keys::hmac_enc.eq(sealed),
            acme_eab_keys::policy_dn.eq(&dn),
            acme_eab_keys::prevalidated.eq(prevalidated),
            acme_eab_keys::created_at.eq(now()),
            acme_eab_keys::folder_orders.eq(folder_orders),
        ))
        .execute(c)
        .map_err(|e| e.to_string())?;
    Ok((kid, B64U.encode(key)))
}

/// A stored EAB key: its HMAC key sealed with [`EAB_PURPOSE`], and what it binds to.
pub struct EabKey {
    pub hmac_enc: Vec<u8>,
    pub policy_dn: String,
    pub prevalidated: bool,
}

pub fn eab_key(c: &mut DbConn, kid: &str) -> Result<Option<EabKey>, DbError> {
    let row: Option<(Vec<u8>, String, bool)> = acme_eab_keys::table
        .filter(acme_eab_keys::kid.eq(kid))
        .select((acme_eab_keys::hmac_enc, acme_eab_keys::policy_dn, acme_eab_keys::prevalidated))
        .first(c)
        .optional()?;
    Ok(row.map(|(hmac_enc, policy_dn, prevalidated)| EabKey { hmac_enc, policy_dn, prevalidated }))
}

/// Inserts a `valid` account for the key `thumb` (read it back with [`account_by_thumbprint`]):
/// bound by its EAB key, or (`b` None) to `unbound_folder`, recording where it came from.
pub fn insert_account(
    c: &mut DbConn,
    thumb: &str,
    jwk: &Value,
    contacts: &[String],
    b: Option<Binding>,
    unbound_folder: &str,
    source: Option<&str>,
) -> Result<(), DbError> {
    let (kid, dn, pre) = match b {
        Some(b) => (Some(b.kid), b.policy_dn, b.prevalidated),
        None => (None, unbound_folder.to_string(), false),
    };
    diesel::insert_into(acme_accounts::table)
        .values((
            acme_accounts::thumbprint.eq(thumb),
            acme_accounts::jwk.eq(jwk.to_string()),
            acme_accounts::status.eq("valid"),
            acme_accounts::contact.eq(serde_json::to_string(contacts).unwrap_or_else(|_| "[]".into())),
            acme_accounts::eab_kid.eq(kid),
            acme_accounts::policy_dn.eq(dn),
            acme_accounts::prevalidated.eq(pre),
            acme_accounts::created_at.eq(now()),
            acme_accounts::created_from.eq(source),
        ))
        .execute(c)?;
    Ok(())
}

pub fn set_account_key(c: &mut DbConn, id: i64, thumb: &str, jwk: &Value) -> Result<(), DbError> {
    diesel::update(acme_accounts::table.find(id))
        .set((acme_accounts::thumbprint.eq(thumb), acme_accounts::jwk.eq(jwk.to_string())))
        .execute(c)?;
    Ok(())
}

/// Replaces the contacts (when given), then deactivates (when asked).
pub fn set_account_fields(
    c: &mut DbConn,
    id: i64,
    contacts: Option<Vec<String>>,
    deactivate: bool,
) -> Result<(), DbError> {
    if let Some(cs) = contacts {
        diesel::update(acme_accounts::table.find(id))
            .set(acme_accounts::contact.eq(serde_json::to_string(&cs).unwrap_or_else(|_| "[]".into())))
            .execute(c)?;
    }
    if deactivate {
        diesel::update(acme_accounts::table.find(id)).set(acme_accounts::status.eq("deactivated")).execute(c)?;
    }
    Ok(())
}
