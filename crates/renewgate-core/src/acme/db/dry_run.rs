//! Dry-run certificates: the chain an order signed by the untrusted test issuer got, kept for a
//! day, and the purge of day-old dry-run orders.
use diesel::prelude::*;

use crate::db::schema::{acme_authz, acme_challenges, acme_dry_run_certs, acme_orders};
use crate::db::{DbConn, DbError, now};

/// Stores a dry-run order's chain and makes the order `valid`, in one transaction.
pub fn store_certificate(c: &mut DbConn, order_id: i64, pem: &str) -> Result<(), DbError> {
    crate::db::write_tx(c, None, |tx| -> Result<(), diesel::result::Error> {
        diesel::insert_into(acme_dry_run_certs::table)
            .values((
                acme_dry_run_certs::order_id.eq(order_id),
                acme_dry_run_certs::pem.eq(pem),
                acme_dry_run_certs::created_at.eq(now()),
            ))
            .execute(tx)?;
        diesel::update(acme_orders::table.find(order_id))
            .set(acme_orders::status.eq(crate::acme::model::OrderStatus::Valid.as_str()))
            .execute(tx)?;
        Ok(())
    })?;
    Ok(())
}

/// The stored chain of a dry-run order.
pub fn certificate(c: &mut DbConn, order_id: i64) -> Result<Option<String>, DbError> {
    Ok(acme_dry_run_certs::table.find(order_id).select(acme_dry_run_certs::pem).first(c).optional()?)
}

/// Removes dry-run orders (with their authorizations, challenges and certificates) older than a day.
pub fn purge(c: &mut DbConn) -> Result<usize, DbError> {
    let cutoff = now() - chrono::Duration::hours(24);
    let old = acme_orders::table
        .filter(acme_orders::dry_run.eq(true))
        .filter(acme_orders::created_at.lt(cutoff))
        .select(acme_orders::id);
    let old_authz = acme_authz::table.filter(acme_authz::order_id.eq_any(old)).select(acme_authz::id);
    diesel::delete(acme_challenges::table.filter(acme_challenges::authz_id.eq_any(old_authz))).execute(c)?;
    diesel::delete(acme_authz::table.filter(acme_authz::order_id.eq_any(old))).execute(c)?;
    diesel::delete(acme_dry_run_certs::table.filter(acme_dry_run_certs::order_id.eq_any(old))).execute(c)?;
    Ok(diesel::delete(
        acme_orders::table.filter(acme_orders::dry_run.eq(true)).filter(acme_orders::created_at.lt(cutoff)),
    )
    .execute(c)?)
}
