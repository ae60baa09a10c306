//! Challenge validation's storage: what a validation job needs, and its outcome (challenge and
//! authorization together).
use diesel::prelude::*;

use super::orders::Challenge;
use crate::acme::model::{AuthzStatus, ChallengeStatus};
use crate::db::schema::{acme_accounts, acme_authz, acme_challenges, acme_orders};
use crate::db::{DbConn, DbError, now};

/// What validating a challenge needs: the challenge, its authorization's identifier and wildcard
/// flag, and the ordering account's key thumbprint (the key authorization's second half).
pub fn task(c: &mut DbConn, challenge_id: i64) -> Result<Option<(Challenge, String, String)>, DbError> {
    Ok(acme_challenges::table
        .find(challenge_id)
        .inner_join(acme_authz::table.on(acme_authz::id.eq(acme_challenges::authz_id)))
        .inner_join(acme_orders::table.on(acme_orders::id.eq(acme_authz::order_id)))
        .inner_join(acme_accounts::table.on(acme_accounts::id.eq(acme_orders::account_id)))
        .select((Challenge::as_select(), acme_authz::identifier, acme_accounts::thumbprint))
        .first(c)
        .optional()?)
}

/// Records a validation's outcome inside the caller's transaction: the challenge becomes
/// `valid` (validated now) or `invalid` with `failure` (the stored error), and its
/// authorization follows if it is still `pending` (a deactivated authorization, the client gave
/// up, stays deactivated). Only a `processing` challenge changes.
pub fn record(tx: &mut DbConn, challenge_id: i64, authz_id: i64, failure: Option<&str>) -> Result<(), DbError> {
    let ts = now();
    {
        let current: String = acme_authz::table.find(authz_id).select(acme_authz::status).first(tx)?;
        let processing = acme_challenges::table
            .find(challenge_id)
            .filter(acme_challenges::status.eq(ChallengeStatus::Processing.as_str()));
        match &failure {
            None => {
                let n = diesel::update(processing)
                    .set((
                        acme_challenges::status.eq(ChallengeStatus::Valid.as_str()),
                        acme_challenges::validated.eq(ts),
                    ))
                    .execute(tx)?;
                if n == 1 && current == AuthzStatus::Pending.as_str() {
                    diesel::update(acme_authz::table.find(authz_id))
                        .set(acme_authz::status.eq(AuthzStatus::Valid.as_str()))
                        .execute(tx)?;
                }
            }
            Some(e) => {
                let n = diesel::update(processing)
                    .set((acme_challenges::status.eq(ChallengeStatus::Invalid.as_str()), acme_challenges::error.eq(e)))
                    .execute(tx)?;
                if n == 1 && current == AuthzStatus::Pending.as_str() {
                    diesel::update(acme_authz::table.find(authz_id))
                        .set(acme_authz::status.eq(AuthzStatus::Invalid.as_str()))
                        .execute(tx)?;
                }
            }
        }
    }
    Ok(())
}
