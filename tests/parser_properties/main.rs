//! Property tests of the parsers that face the network (issue 18): arbitrary bytes and mutated
//! valid inputs never panic, valid inputs round-trip; 512 cases a property, inputs up to 64 KiB,
//! and a case running over 5 s fails. Failing seeds land in `tests/proptest-regressions/` and
//! are committed, so they are replayed first on every run.
mod support;

mod csr;
