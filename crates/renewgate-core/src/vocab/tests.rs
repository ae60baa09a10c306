use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::*;
use crate::db::{DbConn, establish};

fn sqlite() -> DbConn {
    establish(":memory:").expect("an in-memory SQLite database opens")
}

/// Every word goes through the text form, JSON and a SQLite round trip (through the
/// MultiConnection, as the engine uses it) unchanged; a word the enum does not know is an error.
macro_rules! assert_round_trips {
    ($t:ty) => {{
        let mut conn = sqlite();
        for &v in <$t>::ALL {
            let word = v.as_str();
            assert_eq!(word.parse::<$t>(), Ok(v));
            assert_eq!(v.to_string(), word);
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{word}\""));
            assert_eq!(serde_json::from_str::<$t>(&format!("\"{word}\"")).unwrap(), v);
            let back: $t = diesel::select(v.into_sql::<Text>()).get_result(&mut conn).unwrap();
            assert_eq!(back, v);
            // Stored as plain text: what the column held before the enum existed.
            let stored: String = diesel::select(v.into_sql::<Text>()).get_result(&mut conn).unwrap();
            assert_eq!(stored, word);
            let read: $t = diesel::select(sql::<Text>(&format!("'{word}'"))).get_result(&mut conn).unwrap();
            assert_eq!(read, v);
        }
        assert!("no-such-word".parse::<$t>().is_err());
        assert!(serde_json::from_str::<$t>("\"no-such-word\"").is_err());
        let read = diesel::select(sql::<Text>("'no-such-word'")).get_result::<$t>(&mut conn);
        assert!(matches!(read, Err(diesel::result::Error::DeserializationError(_))), "{read:?}");
    }};
}

#[test]
fn object_state_round_trips() {
    assert_round_trips!(ObjectState);
    assert_eq!(ObjectState::ALL.len(), 3);
}

#[test]
fn job_state_round_trips() {
    assert_round_trips!(JobState);
    assert_eq!(JobState::ALL.len(), 4);
}

#[test]
fn store_job_state_round_trips() {
    assert_round_trips!(StoreJobState);
    assert_eq!(StoreJobState::ALL.len(), 4);
}

#[test]
fn csr_origin_round_trips() {
    assert_round_trips!(CsrOrigin);
    assert_eq!(CsrOrigin::ALL.len(), 2);
}

#[test]
fn management_type_round_trips() {
    assert_round_trips!(ManagementType);
    assert_eq!(ManagementType::ALL.len(), 4);
    // Stored words are case-sensitive; callers' input is not.
    assert!("monitoring".parse::<ManagementType>().is_err());
    assert_eq!(ManagementType::parse_any_case(" monitoring "), Some(ManagementType::Monitoring));
    assert_eq!(ManagementType::parse_any_case("watch"), None);
}

#[test]
fn permission_round_trips() {
    assert_round_trips!(Permission);
    assert_eq!(Permission::ALL.len(), 3);
}

#[test]
fn unknown_word_names_its_vocabulary() {
    let e = "paused".parse::<ObjectState>().unwrap_err();
    assert_eq!(e.to_string(), "unknown certificate object state \"paused\"");
}
