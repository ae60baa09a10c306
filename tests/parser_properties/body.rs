//! Lenient JSON request bodies (`api::body::LenientBody`): keys matched case-insensitively,
//! booleans and integers as JSON values or strings. Any bytes give a body or an error, every
//! accessor gives a value or an error, and what a client sends is what a handler reads.
use proptest::prelude::*;
use renewgate::api::body::LenientBody;
use serde_json::{Map, Number, Value};

use crate::support::{bytes, config, mutate, mutations, text, within_deadline};

/// Every accessor on `key`, and the error texts the dialects print.
fn read_all(body: &LenientBody, key: &str) {
    let _ = body.get(key);
    for err in [
        body.str(key).err(),
        body.nonblank(key).err(),
        body.bool(key).err(),
        body.int(key).err(),
        body.array(key).err(),
    ]
    .into_iter()
    .flatten()
    {
        let _ = err.to_string();
    }
}

/// The keys a handler might ask for: the body's own and some it does not hold.
fn keys_of(raw: &[u8]) -> Vec<String> {
    let mut keys = vec!["PKCS10".to_string(), "IncludeChain".into(), "WorkToDoTimeout".into(), String::new()];
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(raw) {
        keys.extend(m.keys().flat_map(|k| [k.clone(), k.to_uppercase(), k.to_lowercase()]));
    }
    keys
}

/// JSON values a client might send, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Quarters are exact in binary and in decimal: serde_json's default float parsing is not
        // guaranteed to round-trip every f64 to the last bit, and that is not this parser's rule.
        any::<i32>().prop_filter_map("a finite number", |i| Number::from_f64(f64::from(i) / 4.0).map(Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A body object with keys distinct case-insensitively (two keys differing only in case are a
/// client's ambiguity, not a round trip).
fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z][a-zA-Z0-9]{0,15}", json_value(), 0..12).prop_map(|m| {
        let mut seen = std::collections::HashSet::new();
        m.into_iter().filter(|(k, _)| seen.insert(k.to_ascii_lowercase())).collect()
    })
}

/// `key` with the case of each letter chosen by `flips`.
fn recase(key: &str, flips: u64) -> String {
    key.chars()
        .enumerate()
        .map(|(i, c)| if flips >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes (up to 64 KiB): a body or an error, and every accessor answers.
    #[test]
    fn arbitrary_bytes_never_panic(raw in bytes()) {
        within_deadline(move || {
            match LenientBody::parse(&raw) {
                Ok(body) => keys_of(&raw).iter().for_each(|key| read_all(&body, key)),
                Err(e) => drop(e.to_string()),
            }
            Ok(())
        })?;
    }

    /// Deeply nested arrays and objects (up to 64 Ki levels): an error, not a stack overflow
    /// (which would abort the process rather than fail a test).
    #[test]
    fn deep_nesting_is_refused(depth in crate::support::input_len(), objects in any::<bool>()) {
        within_deadline(move || {
            let open = if objects { "{\"a\":" } else { "[" };
            let raw = open.repeat(depth).into_bytes();
            prop_assert!(depth == 0 || LenientBody::parse(&raw).is_err());
            Ok(())
        })?;
    }

    /// Arbitrary query strings (the GET variants) give a body whose accessors answer.
    #[test]
    fn arbitrary_queries_never_panic(query in text()) {
        within_deadline(move || {
            let body = LenientBody::from_query(&query);
            for key in query.split(['&', '=']).take(64) {
                read_all(&body, key);
            }
            Ok(())
        })?;
    }

    /// Valid bodies with bytes flipped, inserted, deleted: a body or an error, never a panic.
    #[test]
    fn mutated_bodies_never_panic(object in json_object(), edits in mutations()) {
        within_deadline(move || {
            let raw = serde_json::to_vec(&Value::Object(object)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mutated = mutate(&raw, &edits);
            if let Ok(body) = LenientBody::parse(&mutated) {
                for key in keys_of(&mutated) {
                    read_all(&body, &key);
                }
            }
            Ok(())
        })?;
    }

    /// Every member reads back under any casing of its key; null reads as absent.
    #[test]
    fn values_round_trip_under_any_key_case(object in json_object(), flips in any::<u64>()) {
        within_deadline(move || {
            let raw = serde_json::to_vec(&Value::Object(object.clone())).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let body = LenientBody::parse(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (key, value) in &object {
                let asked = recase(key, flips);
                let expected = if value.is_null() { None } else { Some(value) };
                prop_assert_eq!(body.get(&asked), expected, "{}", asked);
                match value {
                    Value::String(s) => prop_assert_eq!(body.str(&asked), Ok(Some(s.clone()))),
                    Value::Bool(b) => prop_assert_eq!(body.bool(&asked), Ok(Some(*b))),
                    Value::Array(a) => prop_assert_eq!(body.array(&asked), Ok(a.clone())),
                    Value::Number(n) if n.is_i64() => prop_assert_eq!(body.int(&asked), Ok(n.as_i64())),
                    _ => {}
                }
            }
            Ok(())
        })?;
    }

    /// Integers and booleans sent as strings (padded, any case) read as the typed value.
    #[test]
    fn typed_values_as_strings_round_trip(
        n in any::<i64>(),
        b in any::<bool>(),
        pad in "[ \t]{0,3}",
        flips in any::<u64>(),
        spelling in 0usize..3,
    ) {
        within_deadline(move || {
            let word = match (b, spelling) {
                (true, 0) => "true",
                (true, 1) => "1",
                (true, _) => "yes",
                (false, 0) => "false",
                (false, 1) => "0",
                (false, _) => "no",
            };
            let body = serde_json::json!({
                "WorkToDoTimeout": format!("{pad}{n}{pad}"),
                "IncludeChain": format!("{pad}{}{pad}", recase(word, flips)),
                "Plain": n,
            });
            let raw = serde_json::to_vec(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let body = LenientBody::parse(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(body.int("worktodotimeout"), Ok(Some(n)));
            prop_assert_eq!(body.int("PLAIN"), Ok(Some(n)));
            prop_assert_eq!(body.str("Plain"), Ok(Some(n.to_string())));
            prop_assert_eq!(body.bool("includeChain"), Ok(Some(b)));
            Ok(())
        })?;
    }

    /// Query parameters encoded by a client read back as strings under any key case.
    #[test]
    fn query_parameters_round_trip(
        pairs in prop::collection::btree_map("[a-z][a-zA-Z0-9]{0,11}", ".{0,40}", 0..8),
        flips in any::<u64>(),
    ) {
        within_deadline(move || {
            let mut seen = std::collections::HashSet::new();
            let pairs: Vec<(String, String)> =
                pairs.into_iter().filter(|(k, _)| seen.insert(k.to_ascii_lowercase())).collect();
            let query = serde_urlencoded::to_string(&pairs).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let body = LenientBody::from_query(&query);
            for (key, value) in &pairs {
                prop_assert_eq!(body.str(&recase(key, flips)), Ok(Some(value.clone())));
            }
            Ok(())
        })?;
    }
}
