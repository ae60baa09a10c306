//! ACME accounts (RFC 8555 §7.3): registration with or without an external account binding,
//! contacts, deactivation and key rollover. Accounts made with one EAB key share that key's
//! objects ([`super::ownership`]); accounts made without one are anonymous: they belong to
//! `acme.default_policy` (never the root) and each source address may make only a few an hour.
use serde_json::Value;

use super::db::accounts as rows;
use super::{Account, AcmeError, AcmeResult, Binding, ErrorType};
use crate::db::{DbConn, now, write_tx};
use crate::engine::{Engine, policy};

/// A registration as the dialect verified it.
pub struct NewAccount {
    /// RFC 7638 thumbprint of the account key, and the key as canonical JWK.
    pub thumbprint: String,
    pub jwk: Value,
    pub contacts: Vec<String>,
    /// The verified external account binding, if the client sent one.
    pub binding: Option<Binding>,
    pub only_return_existing: bool,
    /// The client's address (the hourly limit of accounts without EAB).
    pub source: Option<String>,
}

/// The stored HMAC key of an EAB key id, opened, and what it binds an account to; the dialect
/// verifies the binding's MAC with it.
pub fn eab_key(engine: &Engine, c: &mut DbConn, kid: &str) -> AcmeResult<(Vec<u8>, Binding)> {
    let key =
        rows::eab_key(c, kid)?.ok_or_else(|| AcmeError::unauthorized(format!("unknown external account key {kid}")))?;
    let hmac = engine
        .master
        .open(rows::EAB_PURPOSE, &key.hmac_enc)
        .map_err(|_| AcmeError::server("cannot open the stored EAB key"))?;
    Ok((hmac, Binding { kid: kid.to_string(), policy_dn: key.policy_dn, prevalidated: key.prevalidated }))
}

/// Finds the key's account, or creates one. Returns the account and whether it was created.
pub fn find_or_create(engine: &Engine, c: &mut DbConn, n: NewAccount) -> AcmeResult<(Account, bool)> {
    if let Some(a) = rows::account_by_thumbprint(c, &n.thumbprint)? {
        return Ok((a, false));
    }
    if n.only_return_existing {
        return Err(AcmeError::new(400, ErrorType::AccountDoesNotExist, "no account exists for this key"));
    }
    let settings = &engine.settings.acme;
    if n.binding.is_none() && settings.eab_required {
        return Err(AcmeError::new(
            403,
            ErrorType::ExternalAccountRequired,
            "an external account binding is required: get a key with `renewgate acme eab create`",
        ));
    }
    let unbound_folder = policy::normalize_dn(&settings.default_policy);
    let limit = settings.accounts_per_hour as i64;
    write_tx(c, Some(7_263_100), |tx| -> AcmeResult<()> {
        if n.binding.is_none() {
            let source = n.source.as_deref().unwrap_or("unknown");
            let recent = rows::accounts_created_from(tx, source, now() - chrono::Duration::hours(1))?;
            if recent >= limit {
                return Err(AcmeError::rate_limited(
                    format!("{source} made {recent} accounts without external account binding in the last hour"),
                    3600,
                ));
            }
            policy::ensure_folder(tx, &unbound_folder)?;
        }
        let source = if n.binding.is_none() { Some(n.source.as_deref().unwrap_or("unknown")) } else { None };
        rows::insert_account(tx, &n.thumbprint, &n.jwk, &n.contacts, n.binding, &unbound_folder, source)?;
        Ok(())
    })?;
    let a = rows::account_by_thumbprint(c, &n.thumbprint)?.ok_or_else(|| AcmeError::server("account vanished"))?;
    Ok((a, true))
}

/// The account a `kid` names, if it may act (is `valid`).
pub fn acting(c: &mut DbConn, id: i64, kid: &str) -> AcmeResult<Account> {
    let a = rows::account(c, id)?
        .ok_or_else(|| AcmeError::new(400, ErrorType::AccountDoesNotExist, format!("no account {kid}")))?;
    if super::AccountStatus::stored(&a.status)? != super::AccountStatus::Valid {
        return Err(AcmeError::new(401, ErrorType::Unauthorized, format!("account {kid} is {}", a.status)));
    }
    Ok(a)
}

/// Checks `contact` (mailto: URLs only).
pub fn check_contacts(v: Option<&Value>) -> AcmeResult<Vec<String>> {
    let Some(v) = v else { return Ok(vec![]) };
    let arr = v.as_array().ok_or_else(|| AcmeError::malformed("contact must be an array of URLs"))?;
    let mut out = vec![];
    for c in arr {
        let s = c.as_str().ok_or_else(|| AcmeError::malformed("contact entries must be strings"))?;
        let Some(addr) = s.strip_prefix("mailto:") else {
            return Err(AcmeError::new(
                400,
                ErrorType::UnsupportedContact,
                format!("only mailto: contacts are supported, not {s}"),
            ));
        };
        if !addr.contains('@') || addr.contains(',') || addr.starts_with('@') || addr.ends_with('@') {
            return Err(AcmeError::new(400, ErrorType::InvalidContact, format!("{s} is not an e-mail address")));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

/// Updates an account (RFC 8555 §7.3.2, §7.3.6): new contacts, or `status: deactivated`.
pub fn update(c: &mut DbConn, account: &Account, body: &Value) -> AcmeResult<Account> {
    let contacts = match body.get("contact") {
        Some(v) => Some(check_contacts(Some(v))?),
        None => None,
    };
    let deactivate = match body.get("status").and_then(|s| s.as_str()) {
        Some(s) if super::AccountStatus::parse(s) == Some(super::AccountStatus::Deactivated) => true,
        Some(other) => {
            return Err(AcmeError::malformed(format!(
                "an account's status can only be set to deactivated, not {other}"
            )));
        }
        None => false,
    };
    rows::set_account_fields(c, account.id, contacts, deactivate)?;
    rows::account(c, account.id)?.ok_or_else(|| AcmeError::server("account vanished"))
}

/// Key rollover (RFC 8555 §7.3.5), the JWS checks done by the dialect: a key may belong to one
/// account only.
pub fn change_key(c: &mut DbConn, account: &Account, thumbprint: &str, jwk: &Value) -> AcmeResult<Account> {
    write_tx(c, Some(7_263_100), |tx| -> AcmeResult<Account> {
        if let Some(other) = rows::account_by_thumbprint(tx, thumbprint)? {
            return Err(AcmeError::new(
                409,
                ErrorType::Malformed,
                format!("the new key already belongs to account {} (see Location)", other.id),
            ));
        }
        rows::set_account_key(tx, account.id, thumbprint, jwk)?;
        rows::account(tx, account.id)?.ok_or_else(|| AcmeError::server("account vanished"))
    })
}

/// The URLs' ids of the account's orders.
pub fn order_ids(c: &mut DbConn, account: &Account) -> AcmeResult<Vec<i64>> {
    Ok(super::db::orders::order_ids(c, account.id)?)
}
