//! Field readers the dialect's typed bodies share: TPP treats a blank string as absent, and refuses
//! a list entry that is not an object (or has a bad field) with its own text, in list order.
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::VenafiError;
pub use crate::api::body::Entry;
use crate::api::body::lenient;

/// A string that, if present, is not blank.
pub fn nonblank(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// The vendor's answer for a bad element of a list of objects (SubjectAltNames, AttributeData),
/// in list order.
impl<T> Entry<T> {
    /// The element, or the answer for a bad one (`not_an_object` is the list's own text).
    pub fn get(self, not_an_object: &str) -> Result<T, VenafiError> {
        match self {
            Entry::Object(t) => Ok(t),
            Entry::NotAnObject => Err(VenafiError::BadRequest(not_an_object.into())),
            Entry::Invalid(e) => Err(e.into()),
        }
    }
}

/// A list of strings, or one string: the string elements of an array (others are skipped), or a
/// single non-blank value taken as its text (OrganizationalUnit).
pub fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Array(a) => Ok(Some(a.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect())),
        // The single value follows `lenient::string` (and its error text); the message of a
        // `serde_json::Value` error is the bare text, which keeps `lenient`'s wrong-type marker.
        other => {
            lenient::string(other).map(|s| Some(nonblank(s).into_iter().collect())).map_err(serde::de::Error::custom)
        }
    }
}

/// A value the gateway only logs: any JSON value, as its text (never refused).
pub fn any_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// An attribute value as TPP sends it: a list (`["1"]`) or one value, each element as its text
/// (numbers and booleans too; anything else as an empty text).
pub fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let text = |v: Value| match v {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    };
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::Array(a) => Some(a.into_iter().map(text).collect()),
        other => Some(vec![text(other)]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body::Lenient;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct San {
        #[serde(default, deserialize_with = "lenient::int")]
        r#type: Option<i64>,
        #[serde(default, deserialize_with = "lenient::string")]
        name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        #[serde(default, deserialize_with = "lenient::list")]
        subject_alt_names: Option<Vec<Entry<San>>>,
        #[serde(default, deserialize_with = "string_or_list")]
        organizational_unit: Option<Vec<String>>,
        #[serde(default, deserialize_with = "texts")]
        value: Option<Vec<String>>,
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T, VenafiError>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn list_entries_keep_the_vendor_texts_in_order() {
        let b: Body =
            Lenient::parse(br#"{"subjectaltnames":[{"TYPE":"2","name":"a.example"},5,{"Type":"x"}]}"#).unwrap();
        let mut entries = b.subject_alt_names.unwrap().into_iter();
        let first = entries.next().unwrap().get("not an object").unwrap();
        assert_eq!((first.r#type, first.name.as_deref()), (Some(2), Some("a.example")));
        assert_eq!(err_text(entries.next().unwrap().get("not an object")), "not an object");
        // A bad field of an entry answers with that field's name, as the accessors did.
        assert_eq!(
            err_text(entries.next().unwrap().get("not an object")),
            r#"Invalid value for Type: expected an integer, got "x"."#
        );
        let err = Lenient::<Body>::parse(br#"{"SubjectAltNames":{"Type":2}}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"Invalid value for SubjectAltNames: expected an array, got {"Type":2}."#);
    }

    #[test]
    fn organizational_unit_is_a_list_or_one_value() {
        let b: Body = Lenient::parse(br#"{"OrganizationalUnit":["Web",3,"Ops"]}"#).unwrap();
        assert_eq!(b.organizational_unit.unwrap(), ["Web", "Ops"]);
        let b: Body = Lenient::parse(br#"{"organizationalunit":"Web"}"#).unwrap();
        assert_eq!(b.organizational_unit.unwrap(), ["Web"]);
        let b: Body = Lenient::parse(br#"{"OrganizationalUnit":"  "}"#).unwrap();
        assert!(b.organizational_unit.unwrap().is_empty());
        let err = Lenient::<Body>::parse(br#"{"OrganizationalUnit":{"a":1}}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"Invalid value for OrganizationalUnit: expected a string, got {"a":1}."#);
    }

    #[test]
    fn attribute_values_are_texts() {
        let b: Body = Lenient::parse(br#"{"Value":["1",true,null]}"#).unwrap();
        assert_eq!(b.value.unwrap(), ["1", "true", ""]);
        let b: Body = Lenient::parse(br#"{"Value":1}"#).unwrap();
        assert_eq!(b.value.unwrap(), ["1"]);
    }
}
