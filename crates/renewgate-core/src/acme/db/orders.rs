//! ACME orders, authorizations and challenges in the database, and the ACME side of inventory
//! objects (`acme_objects`: the coverage of multi-year orders and the name later orders match).
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::acme::model::{AuthzStatus, ChallengeStatus, OrderStatus};
use crate::db::models::CertVersion;
use crate::db::schema::{acme_authz, acme_challenges, acme_objects, acme_orders, cert_objects, certificates};
use crate::db::{DbConn, DbError, now};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = acme_orders)]
pub struct Order {
    pub id: i64,
    pub account_id: i64,
    pub status: String,
    pub identifiers: String,
    pub action: String,
    pub target_object_id: Option<i64>,
    pub expires: NaiveDateTime,
    pub job_id: Option<i64>,
    pub object_id: Option<i64>,
    pub certificate_id: Option<i64>,
    pub error: Option<String>,
    pub created_at: NaiveDateTime,
    pub replaces: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = acme_authz)]
pub struct Authz {
    pub id: i64,
    pub order_id: i64,
    pub identifier: String,
    pub wildcard: bool,
    pub status: String,
    pub expires: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = acme_challenges)]
pub struct Challenge {
    pub id: i64,
    pub authz_id: i64,
    pub kind: String,
    pub token: String,
    pub status: String,
    pub validated: Option<NaiveDateTime>,
    pub error: Option<String>,
}

// ---- orders ----

/// The ids of an account's orders, oldest first.
pub fn order_ids(c: &mut DbConn, account_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(acme_orders::table
        .filter(acme_orders::account_id.eq(account_id))
        .order(acme_orders::id.asc())
        .select(acme_orders::id)
        .load(c)?)
}

pub fn find_order(c: &mut DbConn, id: i64) -> Result<Option<Order>, DbError> {
    Ok(crate::on_backend!(c, |c| acme_orders::table.find(id).select(Order::as_select()).first(c).optional())?)
}

/// Did one of the account's orders issue this certificate version?
pub fn account_ordered_certificate(c: &mut DbConn, account_id: i64, certificate_id: i64) -> Result<bool, DbError> {
    let owned: i64 = acme_orders::table
        .filter(acme_orders::account_id.eq(account_id))
        .filter(acme_orders::certificate_id.eq(certificate_id))
        .count()
        .get_result(c)?;
    Ok(owned > 0)
}

/// Has a (real) order that issued, or is issuing, already replaced the certificate `cert_id`?
pub fn already_replaced(c: &mut DbConn, cert_id: &str) -> Result<bool, DbError> {
    let taken: i64 = acme_orders::table
        .filter(acme_orders::replaces.eq(cert_id))
        .filter(acme_orders::dry_run.eq(false))
        .filter(acme_orders::status.eq_any([OrderStatus::Processing.as_str(), OrderStatus::Valid.as_str()]))
        .count()
        .get_result(c)?;
    Ok(taken > 0)
}

/// Records where an order's status went (`ready`/`invalid` from its authorizations, `valid`/
/// `invalid` from its job), with the certificate and the error.
pub fn set_order_status(
    c: &mut DbConn,
    id: i64,
    status: &str,
    certificate_id: Option<i64>,
    error: &Option<String>,
) -> Result<(), DbError> {
    diesel::update(acme_orders::table.find(id))
        .set((
            acme_orders::status.eq(status),
            acme_orders::certificate_id.eq(certificate_id),
            acme_orders::error.eq(error),
        ))
        .execute(c)?;
    Ok(())
}

/// A finalized order is `processing` its issuance job for the object. Written in the
/// transaction that enqueues the job, and only while the order is still `ready`: false when
/// another finalize of the same order got there first (the caller then rolls its job back).
pub fn set_order_processing(c: &mut DbConn, id: i64, job_id: i64, object_id: i64) -> Result<bool, DbError> {
    let n = crate::db::Prepared(
        diesel::update(acme_orders::table.find(id).filter(acme_orders::status.eq(OrderStatus::Ready.as_str())))
            .set((
                acme_orders::status.eq(OrderStatus::Processing.as_str()),
                acme_orders::job_id.eq(job_id),
                acme_orders::object_id.eq(object_id),
            ))
            .returning(acme_orders::id),
    )
    .write(c)?;
    Ok(n == 1)
}

/// The order's issuance job committed its certificate: the order is `valid`, in the job's
/// completion transaction (so no later read has to write it). Only the order processing that
/// very job changes.
pub fn set_order_issued(c: &mut DbConn, id: i64, job_id: i64, certificate_id: i64) -> QueryResult<()> {
    crate::db::Prepared(
        diesel::update(
            acme_orders::table
                .find(id)
                .filter(acme_orders::job_id.eq(job_id))
                .filter(acme_orders::status.eq(OrderStatus::Processing.as_str())),
        )
        .set((acme_orders::status.eq(OrderStatus::Valid.as_str()), acme_orders::certificate_id.eq(certificate_id)))
        .returning(acme_orders::id),
    )
    .write(c)?;
    Ok(())
}

/// A new order, as newOrder decided it.
pub struct NewOrder<'a> {
    pub account_id: i64,
    /// `[(type, value)]` as JSON.
    pub identifiers: String,
    pub action: &'a str,
    pub target_object_id: Option<i64>,
    pub replaces: &'a Option<String>,
    pub dry_run: bool,
}

/// One authorization of a new order: pre-validated (`valid`, no challenge), or `pending` with
/// one challenge per offered type, all sharing `token`.
pub struct NewAuthz<'a> {
    pub identifier: &'a str,
    pub wildcard: bool,
    /// `None`: pre-validated.
    pub challenges: Option<(&'a str, &'a [&'a str])>,
}

/// Writes an order with its authorizations and challenges, inside the caller's transaction;
/// all expire in 7 days. Returns the order's id.
pub fn create_order(c: &mut DbConn, o: &NewOrder, authz: &[NewAuthz]) -> Result<i64, DbError> {
    let ts = now();
    // An order none of whose names needs a challenge (each pre-validated) is ready at once
    // (RFC 8555 §7.1.6: all its authorizations are valid).
    let status = if authz.iter().all(|a| a.challenges.is_none()) { OrderStatus::Ready } else { OrderStatus::Pending };
    // The writes of newOrder are kept prepared (`db::Prepared`), on the concrete connection
    // (`on_backend`).
    let oid: i64 = crate::on_backend!(c, |c| crate::db::Prepared(
        diesel::insert_into(acme_orders::table)
            .values((
                acme_orders::account_id.eq(o.account_id),
                acme_orders::status.eq(status.as_str()),
                acme_orders::identifiers.eq(&o.identifiers),
                acme_orders::action.eq(o.action),
                acme_orders::target_object_id.eq(o.target_object_id),
                acme_orders::expires.eq(ts + chrono::Duration::days(7)),
                acme_orders::created_at.eq(ts),
                acme_orders::replaces.eq(o.replaces),
                acme_orders::dry_run.eq(o.dry_run),
            ))
            .returning(acme_orders::id)
    )
    .get_result(c))?;
    for a in authz {
        let aid: i64 = crate::on_backend!(c, |c| crate::db::Prepared(
            diesel::insert_into(acme_authz::table)
                .values((
                    acme_authz::order_id.eq(oid),
                    acme_authz::identifier.eq(a.identifier),
                    acme_authz::wildcard.eq(a.wildcard),
                    acme_authz::status.eq(if a.challenges.is_none() {
                        AuthzStatus::Valid.as_str()
                    } else {
                        AuthzStatus::Pending.as_str()
                    }),
                    acme_authz::expires.eq(ts + chrono::Duration::days(7)),
                ))
                .returning(acme_authz::id)
        )
        .get_result(c))?;
        if let Some((token, kinds)) = a.challenges {
            for kind in kinds {
                crate::on_backend!(c, |c| crate::db::Prepared(
                    diesel::insert_into(acme_challenges::table)
                        .values((
                            acme_challenges::authz_id.eq(aid),
                            acme_challenges::kind.eq(*kind),
                            acme_challenges::token.eq(token),
                            acme_challenges::status.eq(ChallengeStatus::Pending.as_str()),
                        ))
                        .returning(acme_challenges::id)
                )
                .write(c))?;
            }
        }
    }
    Ok(oid)
}

// ---- authorizations and challenges ----

/// The ids of an order's authorizations, in creation order.
pub fn authz_ids(c: &mut DbConn, order_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(crate::on_backend!(c, |c| acme_authz::table
        .filter(acme_authz::order_id.eq(order_id))
        .order(acme_authz::id.asc())
        .select(acme_authz::id)
        .load(c))?)
}

/// The statuses of an order's authorizations.
pub fn authz_statuses(c: &mut DbConn, order_id: i64) -> Result<Vec<String>, DbError> {
    Ok(crate::on_backend!(c, |c| acme_authz::table
        .filter(acme_authz::order_id.eq(order_id))
        .select(acme_authz::status)
        .load(c))?)
}

pub fn find_authz(c: &mut DbConn, id: i64) -> Result<Option<Authz>, DbError> {
    Ok(crate::on_backend!(c, |c| acme_authz::table.find(id).select(Authz::as_select()).first(c).optional())?)
}

/// An authorization that must exist.
pub fn authz(c: &mut DbConn, id: i64) -> Result<Authz, DbError> {
    Ok(crate::on_backend!(c, |c| acme_authz::table.find(id).select(Authz::as_select()).first(c))?)
}

/// The account an order belongs to (an error if there is no such order).
pub fn order_account(c: &mut DbConn, order_id: i64) -> Result<i64, DbError> {
    Ok(acme_orders::table.find(order_id).select(acme_orders::account_id).first(c)?)
}

/// Deactivates a `pending` or `valid` authorization (RFC 8555 §7.5.2).
pub fn deactivate_authz(c: &mut DbConn, id: i64) -> Result<(), DbError> {
    diesel::update(
        acme_authz::table
            .find(id)
            .filter(acme_authz::status.eq_any([AuthzStatus::Pending.as_str(), AuthzStatus::Valid.as_str()])),
    )
    .set(acme_authz::status.eq(AuthzStatus::Deactivated.as_str()))
    .execute(c)?;
    Ok(())
}

/// The account's authorizations still waiting for a validation (on orders not yet expired).
pub fn pending_authz_count(c: &mut DbConn, account_id: i64) -> Result<i64, DbError> {
    Ok(acme_authz::table
        .inner_join(acme_orders::table.on(acme_orders::id.eq(acme_authz::order_id)))
        .filter(acme_orders::account_id.eq(account_id))
        .filter(acme_authz::status.eq(AuthzStatus::Pending.as_str()))
        .filter(acme_authz::expires.gt(now()))
        .count()
        .get_result(c)?)
}

/// An authorization's challenges.
pub fn challenges(c: &mut DbConn, authz_id: i64) -> Result<Vec<Challenge>, DbError> {
    // In creation order: PostgreSQL returns an updated row wherever its new version lies.
    Ok(crate::on_backend!(c, |c| acme_challenges::table
        .filter(acme_challenges::authz_id.eq(authz_id))
        .order(acme_challenges::id.asc())
        .select(Challenge::as_select())
        .load(c))?)
}

pub fn find_challenge(c: &mut DbConn, id: i64) -> Result<Option<Challenge>, DbError> {
    Ok(crate::on_backend!(c, |c| acme_challenges::table.find(id).select(Challenge::as_select()).first(c).optional())?)
}

/// A challenge that must exist.
pub fn challenge(c: &mut DbConn, id: i64) -> Result<Challenge, DbError> {
    Ok(acme_challenges::table.find(id).select(Challenge::as_select()).first(c)?)
}

/// The client answered: a `pending` challenge is `processing` until its validation records the
/// outcome. False when it was not pending (answered twice, or by two requests at once).
pub fn start_challenge(c: &mut DbConn, id: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        acme_challenges::table.find(id).filter(acme_challenges::status.eq(ChallengeStatus::Pending.as_str())),
    )
    .set(acme_challenges::status.eq(ChallengeStatus::Processing.as_str()))
    .execute(c)?;
    Ok(n == 1)
}

// ---- inventory objects, as ACME sees them ----

/// The policy folder of an inventory object, if there is one.
pub fn find_object_folder(c: &mut DbConn, object_id: i64) -> Result<Option<String>, DbError> {
    Ok(cert_objects::table.find(object_id).select(cert_objects::policy_dn).first(c).optional()?)
}

/// The policy folder of an inventory object that must exist.
pub fn object_folder(c: &mut DbConn, object_id: i64) -> Result<String, DbError> {
    Ok(cert_objects::table.find(object_id).select(cert_objects::policy_dn).first(c)?)
}

/// The end of an object's multi-year coverage, if it has one.
pub fn coverage_end(c: &mut DbConn, object_id: i64) -> Result<Option<NaiveDateTime>, DbError> {
    Ok(crate::on_backend!(c, |c| acme_objects::table
        .find(object_id)
        .select(acme_objects::coverage_end)
        .first(c)
        .optional())?
    .flatten())
}

pub fn set_coverage_end(c: &mut DbConn, object_id: i64, end: NaiveDateTime) -> Result<(), DbError> {
    diesel::update(acme_objects::table.find(object_id)).set(acme_objects::coverage_end.eq(end)).execute(c)?;
    Ok(())
}

/// The objects auto-detection considers (seed 001): first issued through ACME, enabled, issued
/// (a current version), in `policy_dn`, with a `match_name` among `keys` (or none recorded), and
/// — unless `owners` is None (a key that may act on its whole folder) — owned by one of `owners`
/// or in `assigned`. Newest current version first (then oldest object): an order for a name
/// enrolled many times decodes the newest object's certificate, not every one of them.
///
/// Two lookups, each by its own key, so the cost follows the names' objects and not the
/// folder's: joined in one statement, SQLite (without statistics) walks every object of the
/// folder by `policy_dn` and every object of the account by `owner`, which made each newOrder
/// read the whole folder. First the `match_name` index gives the candidates (few: the objects
/// of these names), then their objects and current versions are read by primary key.
pub fn match_candidates(
    c: &mut DbConn,
    policy_dn: &str,
    keys: Vec<String>,
    owners: Option<(&str, &[i64])>,
) -> Result<Vec<i64>, DbError> {
    let named: Vec<(i64, Option<String>)> = acme_objects::table
        .filter(acme_objects::match_name.eq_any(keys).or(acme_objects::match_name.is_null()))
        .select((acme_objects::object_id, acme_objects::owner))
        .load(c)?;
    let ids: Vec<i64> = named
        .into_iter()
        .filter(|(id, owner)| match owners {
            None => true,
            Some((key, assigned)) => owner.as_deref() == Some(key) || assigned.contains(id),
        })
        .map(|(id, _)| id)
        .collect();
    // In chunks: objects from before match_name (NULL) all qualify, and SQLite binds at most
    // 32,766 values in one statement.
    let mut found: Vec<(i64, NaiveDateTime)> = vec![];
    for chunk in ids.chunks(1000) {
        found.extend(
            cert_objects::table
                .inner_join(certificates::table.on(cert_objects::current_cert_id.eq(certificates::id.nullable())))
                .filter(cert_objects::id.eq_any(chunk))
                .filter(cert_objects::policy_dn.eq(policy_dn))
                .filter(cert_objects::disabled.eq(false))
                .select((cert_objects::id, certificates::not_after))
                .load::<(i64, NaiveDateTime)>(c)?,
        );
    }
    found.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(found.into_iter().map(|(id, _)| id).collect())
}

/// The key (`kid:…` or `acct:…`) that owns an object first issued through ACME.
pub fn object_owner(c: &mut DbConn, object_id: i64) -> Result<Option<String>, DbError> {
    Ok(crate::on_backend!(c, |c| acme_objects::table.find(object_id).select(acme_objects::owner).first(c).optional())?
        .flatten())
}

/// Records an object first issued through ACME.
pub fn insert_object(
    c: &mut DbConn,
    object_id: i64,
    account_id: i64,
    duplicate_of: Option<i64>,
    coverage_end: Option<NaiveDateTime>,
    match_name: &str,
    owner: &str,
) -> Result<(), DbError> {
    let ts = now();
    crate::on_backend!(c, |c| crate::db::Prepared(
        diesel::insert_into(acme_objects::table)
            .values((
                acme_objects::object_id.eq(object_id),
                acme_objects::account_id.eq(account_id),
                acme_objects::duplicate_of.eq(duplicate_of),
                acme_objects::created_at.eq(ts),
                acme_objects::coverage_end.eq(coverage_end),
                acme_objects::match_name.eq(match_name),
                acme_objects::owner.eq(owner),
            ))
            .returning(acme_objects::object_id)
    )
    .write(c))?;
    Ok(())
}

pub fn set_match_name(c: &mut DbConn, object_id: i64, match_name: &str) -> Result<(), DbError> {
    diesel::update(acme_objects::table.find(object_id)).set(acme_objects::match_name.eq(match_name)).execute(c)?;
    Ok(())
}

// ---- certificates ----

/// The certificate version with this thumbprint, if it was issued here.
pub fn version_by_thumbprint(c: &mut DbConn, thumbprint: &str) -> Result<Option<CertVersion>, DbError> {
    Ok(certificates::table
        .filter(certificates::thumbprint.eq(thumbprint))
        .select(CertVersion::as_select())
        .first(c)
        .optional()?)
}

/// A certificate version that must exist.
pub fn version(c: &mut DbConn, id: i64) -> Result<CertVersion, DbError> {
    Ok(crate::on_backend!(c, |c| certificates::table.find(id).select(CertVersion::as_select()).first(c))?)
}
