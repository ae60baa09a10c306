//! The ACME domain's storage: plain functions on a [`DbConn`](crate::db::DbConn), the only SQL
//! of the domain. Statuses are stored in the RFC's spelling ([`super::model`]).
pub mod accounts;
pub mod ari;
pub mod dry_run;
pub mod orders;
pub mod validation;
