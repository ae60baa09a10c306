//! ACME state in the database: nonces (shared by every instance), EAB keys and accounts. The
//! rows are the core's ([`crate::acme::store`]); this side draws nonces, checks EAB JWSs and
//! turns storage outcomes into problem documents.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use serde_json::Value;

use super::jws::{self, Jws};
use super::problem::Problem;
use crate::acme::store as data;
pub use crate::acme::store::{Account, Binding, create_eab};
use crate::db::DbConn;
use crate::secrets::MasterKey;

pub fn issue_nonce(c: &mut DbConn) -> Result<String, Problem> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).map_err(|e| Problem::server(e.to_string()))?;
    let n = B64U.encode(b);
    // Now and then, drop expired nonces so the table does not grow without bound.
    if b[0] == 0 {
        data::purge_nonces(c)?;
        crate::acme::dry_run::purge(c)?;
    }
    data::insert_nonce(c, &n)?;
    Ok(n)
}

/// Consumes a nonce atomically: true iff it existed and had not expired.
pub fn consume_nonce(c: &mut DbConn, n: &str) -> Result<bool, Problem> {
    Ok(data::consume_nonce(c, n)?)
}

pub fn account(c: &mut DbConn, id: i64) -> Result<Option<Account>, Problem> {
    Ok(data::account(c, id)?)
}

pub fn account_by_thumbprint(c: &mut DbConn, t: &str) -> Result<Option<Account>, Problem> {
    Ok(data::account_by_thumbprint(c, t)?)
}

/// Verifies an `externalAccountBinding` (RFC 8555 §7.3.4) for an account key with thumbprint `thumb`.
pub fn check_eab(
    c: &mut DbConn,
    master: &MasterKey,
    eab: &Value,
    outer_url: &str,
    thumb: &str,
) -> Result<Binding, Problem> {
    let inner = Jws::parse(eab.to_string().as_bytes())
        .map_err(|e| Problem::malformed(format!("externalAccountBinding: {e:?}")))?;
    if inner.nonce().is_some() {
        return Err(Problem::malformed("the external account binding must not carry a nonce"));
    }
    if inner.url() != Some(outer_url) {
        return Err(Problem::malformed("the external account binding's url differs from the request's"));
    }
    if !matches!(inner.alg(), Some("HS256" | "HS384" | "HS512")) {
        return Err(Problem::malformed("the external account binding must use HS256, HS384 or HS512"));
    }
    let kid = inner.kid().ok_or_else(|| Problem::malformed("the external account binding has no kid"))?.to_string();
    let data::EabKey { hmac_enc: sealed, policy_dn, prevalidated } =
        data::eab_key(c, &kid)?.ok_or_else(|| Problem::unauthorized(format!("unknown external account key {kid}")))?;
    let key = master.open(data::EAB_PURPOSE, &sealed).map_err(|_| Problem::server("cannot open the stored EAB key"))?;
    jws::verify_eab_mac(&inner, &key)
        .map_err(|_| Problem::unauthorized("the external account binding MAC does not verify"))?;
    let inner_jwk: Value = serde_json::from_slice(&inner.payload)
        .map_err(|_| Problem::malformed("the external account binding payload is not a JWK"))?;
    let inner_thumb =
        jws::thumbprint(inner_jwk.as_object().ok_or_else(|| Problem::malformed("the EAB payload must be a JWK"))?)?;
    if inner_thumb != thumb {
        return Err(Problem::new(
            400,
            "badPublicKey",
            "the external account binding names another key than the request's jwk",
        ));
    }
    Ok(Binding { kid, policy_dn, prevalidated })
}

pub fn create_account(
    c: &mut DbConn,
    thumb: &str,
    jwk: &Value,
    contacts: &[String],
    b: Option<Binding>,
) -> Result<Account, Problem> {
    data::insert_account(c, thumb, jwk, contacts, b)?;
    account_by_thumbprint(c, thumb)?.ok_or_else(|| Problem::server("account vanished"))
}

pub fn replace_key(c: &mut DbConn, id: i64, thumb: &str, jwk: &Value) -> Result<Account, Problem> {
    data::set_account_key(c, id, thumb, jwk)?;
    account(c, id)?.ok_or_else(|| Problem::server("account vanished"))
}

pub fn update_account(
    c: &mut DbConn,
    id: i64,
    contacts: Option<Vec<String>>,
    deactivate: bool,
) -> Result<Account, Problem> {
    data::set_account_fields(c, id, contacts, deactivate)?;
    account(c, id)?.ok_or_else(|| Problem::server("account vanished"))
}
