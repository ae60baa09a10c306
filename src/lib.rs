#![recursion_limit = "256"]
//! Renewgate: a self-hosted certificate-renewal gateway speaking the Venafi TPP, Keyfactor
//! Command and ACME renew APIs over one certificate inventory and one built-in CA.
//!
//! This crate is the binary's side of the HTTP line: the dialects, the server, the CLI, the store
//! agent and the benchmark. Everything they act on lives in `renewgate-core`, re-exported here so
//! `crate::engine` reads the same from every module.
pub mod agent;
pub mod api;
pub mod app;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod master_key;
pub mod openapi;
pub mod tls;

pub use renewgate_core::{acme, auth, ca, db, engine, formats, metrics, names, secrets, settings, vocab};
