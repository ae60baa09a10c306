//! What every property shares: the run configuration (512 cases, regressions committed under
//! `tests/proptest-regressions/`), the 5 s hang guard, input sizes up to 64 KiB, and mutations
//! of valid inputs.
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

/// Cases per property (issue 18).
pub const CASES: u32 = 512;
/// The largest generated input.
pub const MAX_INPUT: usize = 64 * 1024;
/// A case still running after this long fails: a hang guard, not a timing test.
pub const CASE_DEADLINE: Duration = Duration::from_secs(5);

/// 512 cases; failures are saved beside this test's sources in `tests/proptest-regressions/`
/// (`SourceParallel` climbs to the directory holding `main.rs`, `tests/parser_properties/`, and
/// uses its sibling), a committed directory whose seeds are replayed first on every run.
/// Shrinking is bounded in time so that a case that hangs is reported within a minute instead of
/// being re-run at 5 s a step for hundreds of steps.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// Runs one case on its own thread and fails it if it has not finished within [`CASE_DEADLINE`].
/// proptest's own `timeout` needs its `fork` feature (a subprocess per case); a thread is enough
/// here because every parser under test is synchronous and leaves no state behind. A panic in
/// the case is re-raised on the caller's thread, where proptest records it as a failure.
pub fn within_deadline<F>(case: F) -> Result<(), TestCaseError>
where
    F: FnOnce() -> Result<(), TestCaseError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        // The receiver is gone only when the deadline has already failed the case.
        let _ = tx.send(case());
    });
    match rx.recv_timeout(CASE_DEADLINE) {
        Ok(outcome) => outcome,
        // The worker is left to finish on its own: a thread cannot be stopped from outside.
        Err(mpsc::RecvTimeoutError::Timeout) => {
            Err(TestCaseError::fail(format!("the case ran longer than {} s", CASE_DEADLINE.as_secs())))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => Err(TestCaseError::fail("the case ended without a result")),
        },
    }
}

/// A length up to [`MAX_INPUT`], mostly short: one case in four draws from the whole range, so
/// each property sees about 128 inputs of kilobytes to 64 KiB while the suite stays within
/// seconds (all 512 cases at up to 64 KiB would dominate the test command's time).
pub fn input_len() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..=1024usize, 1 => 0..=MAX_INPUT]
}

/// Arbitrary bytes up to [`MAX_INPUT`].
pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    input_len().prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
}

/// Arbitrary text up to [`MAX_INPUT`] characters (any Unicode scalar, controls included).
pub fn text() -> impl Strategy<Value = String> {
    input_len().prop_flat_map(|n| prop::collection::vec(any::<char>(), n)).prop_map(String::from_iter)
}

/// Text over the characters that matter to a text parser (base64 alphabets, PEM armour,
/// JSON punctuation, whitespace and escapes), so that random cases get past the first check.
pub fn parser_text() -> impl Strategy<Value = String> {
    const ALPHABET: &[char] = &[
        'A', 'B', 'M', 'I', 'Z', 'a', 'b', 'z', '0', '1', '9', '+', '/', '-', '_', '=', ' ', '\t', '\r', '\n', '\\',
        'n', 'r', '{', '}', '[', ']', '"', ':', ',', '.', 'é', '\u{0}', '\u{feff}',
    ];
    let pieces = prop_oneof![
        4 => prop::sample::select(ALPHABET).prop_map(String::from),
        1 => prop::sample::select(&["-----BEGIN ", "-----END ", "-----", "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST", "CERTIFICATE", "\\r\\n", "\\n"][..])
            .prop_map(String::from),
    ];
    input_len().prop_flat_map(move |n| prop::collection::vec(pieces.clone(), n / 4)).prop_map(|p| p.concat())
}

/// One edit of a valid input, at a position proptest chooses.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBits(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    /// Drops everything from the position on.
    Truncate(Index),
    /// Inserts a copy of a span of the input elsewhere (a repeated field or block).
    Splice {
        from: Index,
        to: Index,
        len: u8,
    },
}

/// One to eight mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        4 => (any::<Index>(), 1..=u8::MAX).prop_map(|(i, m)| Mutation::FlipBits(i, m)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>(), any::<u8>()).prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
    ];
    prop::collection::vec(one, 1..=8)
}

/// `input` with `edits` applied in order.
pub fn mutate(input: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for edit in edits {
        match edit {
            Mutation::FlipBits(i, mask) if !out.is_empty() => {
                let i = i.index(out.len());
                out[i] ^= mask;
            }
            Mutation::Insert(i, b) => {
                let i = i.index(out.len() + 1);
                out.insert(i, *b);
            }
            Mutation::Delete(i) if !out.is_empty() => {
                let i = i.index(out.len());
                out.remove(i);
            }
            Mutation::Truncate(i) if !out.is_empty() => {
                let i = i.index(out.len());
                out.truncate(i);
            }
            Mutation::Splice { from, to, len } if !out.is_empty() => {
                let from = from.index(out.len());
                let end = (from + usize::from(*len)).min(out.len());
                let span = out[from..end].to_vec();
                let to = to.index(out.len() + 1);
                out.splice(to..to, span);
            }
            _ => {}
        }
    }
    out
}
