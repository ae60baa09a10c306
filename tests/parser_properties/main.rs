//! Property tests of the parsers that face the network (issue 18): arbitrary bytes and mutated
//! valid inputs never panic, valid inputs round-trip; 512 cases a property, inputs up to 64 KiB,
//! and a case running over 5 s fails. Failing seeds land in `tests/proptest-regressions/` and
//! are committed, so they are replayed first on every run.
//!
//! The modules are marked `cfg(test)` although this whole crate is a test: clippy's
//! `allow-expect-in-tests` only sees that attribute, and the fixture builders (keys, CSRs,
//! certificates) `expect` on OpenSSL calls that cannot fail with their fixed inputs.
#[cfg(test)]
mod support;

#[cfg(test)]
mod body;
#[cfg(test)]
mod csr;
#[cfg(test)]
mod jws;
#[cfg(test)]
mod names;
#[cfg(test)]
mod pem;
