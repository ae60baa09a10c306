//! The Renewgate core: everything below the HTTP line — the renewal engine (inventory, policy,
//! renew/enroll, the durable queue, stores, scheduler, audit), the CA, the output formats, storage
//! (diesel schema, models, embedded migrations), the auth model and the settings. This crate does
//! not depend on actix-web: the compiler keeps the engine free of HTTP.
pub mod acme;
pub mod auth;
pub mod ca;
pub mod db;
pub mod engine;
pub mod formats;
pub mod metrics;
pub mod names;
pub mod secrets;
pub mod settings;
pub mod vocab;
