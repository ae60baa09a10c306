//! Challenge validation's storage: the challenges a crash left `processing`, and the outcome of
//! a validation (challenge and authorization together).
use diesel::prelude::*;

use super::orders::Challenge;
use crate::db::schema::{acme_accounts, acme_authz, acme_challenges, acme_orders};
use crate::db::{DbConn, DbError, now};

/// The challenges left `processing` (their validation was interrupted), with their account's JWK.
pub fn interrupted(c: &mut DbConn) -> Result<Vec<(Challenge, String)>, DbError> {
    Ok(acme_challenges::table
        .inner_join(acme_authz::table.on(acme_authz::id.eq(acme_challenges::authz_id)))
        .inner_join(acme_orders::table.on(acme_orders::id.eq(acme_authz::order_id)))
        .inner_join(acme_accounts::table.on(acme_accounts::id.eq(acme_orders::account_id)))
        .filter(acme_challenges::status.eq("processing"))
        .select((Challenge::as_select(), acme_accounts::jwk))
        .load(c)?)
}

/// Records a validation's outcome in one transaction: the challenge becomes `valid` (validated
/// now) or `invalid` with `failure` (the stored error), and its authorization follows if it is
/// still `pending` (a deactivated authorization, the client gave up, stays deactivated).
pub fn record(c: &mut DbConn, challenge_id: i64, authz_id: i64, failure: Option<String>) -> Result<(), DbError> {
    let ts = now();
    crate::db::write_tx(c, None, |tx| -> Result<(), diesel::result::Error> {
        let current: String = acme_authz::table.find(authz_id).select(acme_authz::status).first(tx)?;
        match &failure {
            None => {
                diesel::update(acme_challenges::table.find(challenge_id))
                    .set((acme_challenges::status.eq("valid"), acme_challenges::validated.eq(ts)))
                    .execute(tx)?;
                if current == "pending" {
                    diesel::update(acme_authz::table.find(authz_id)).set(acme_authz::status.eq("valid")).execute(tx)?;
                }
            }
            Some(e) => {
                diesel::update(acme_challenges::table.find(challenge_id))
                    .set((acme_challenges::status.eq("invalid"), acme_challenges::error.eq(e)))
                    .execute(tx)?;
                if current == "pending" {
                    diesel::update(acme_authz::table.find(authz_id))
                        .set(acme_authz::status.eq("invalid"))
                        .execute(tx)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(())
}
