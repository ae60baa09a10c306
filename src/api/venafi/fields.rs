//! Field readers the dialect's typed bodies share: TPP treats a blank string as absent, and refuses
//! a list entry that is not an object (or has a bad field) with its own text, in list order.
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::VenafiError;
use crate::api::body::{BodyError, Lenient, LenientBody, lenient};

/// A string that, if present, is not blank.
pub fn nonblank(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// One element of a list of objects (SubjectAltNames, AttributeData), read with `T`'s lenient
/// rules. A bad element does not fail the whole body: the handler refuses it with the vendor's
/// text for that list when it reaches it.
#[derive(Debug)]
pub enum Entry<T> {
    Object(T),
    NotAnObject,
    Invalid(BodyError),
}

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

impl<'de, T: DeserializeOwned> Deserialize<'de> for Entry<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Object(m) => match Lenient::<T>::from_body(LenientBody::from_map(m)) {
                Ok(t) => Entry::Object(t),
                Err(e) => Entry::Invalid(e),
            },
            _ => Entry::NotAnObject,
        })
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
