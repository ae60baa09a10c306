#![recursion_limit = "256"]
//! Renewgate: a self-hosted certificate-renewal gateway speaking the Venafi TPP, Keyfactor
//! Command and ACME renew APIs over one certificate inventory and one built-in CA.
pub mod agent;
pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod ca;
pub mod cli;
pub mod config;
pub mod db;
pub mod engine;
pub mod formats;
pub mod metrics;
pub mod openapi;
pub mod secrets;
pub mod tls;
