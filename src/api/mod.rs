//! HTTP dialects: thin adapters that parse, authenticate, call the engine and map errors to
//! each dialect's own shape.
pub mod acme;
pub mod admin;
pub mod body;
pub mod keyfactor;
pub mod observe;
pub mod venafi;
