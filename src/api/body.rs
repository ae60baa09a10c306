//! Lenient request bodies as enterprise clients send them: keys matched case-insensitively,
//! booleans and integers accepted as JSON values or strings, unknown fields ignored.
use actix_web::web;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Why a body could not be used (each dialect renders it in its own error shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    TooLarge(usize),
    Malformed(String),
    NotAnObject,
    /// (field, expected type, what arrived)
    WrongType(String, &'static str, String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(n) => write!(f, "The request body is larger than the {n} bytes this server accepts."),
            BodyError::Malformed(m) => write!(f, "The request body is not valid JSON: {m}"),
            BodyError::NotAnObject => f.write_str("The request body must be a JSON object."),
            BodyError::WrongType(k, t, v) => {
                write!(f, "Invalid value for {k}: expected {t}, got {v}.")
            }
        }
    }
}

/// Reads the whole payload, refusing more than `limit` bytes.
pub async fn read_payload(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, BodyError> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Malformed(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A JSON object with lower-cased keys.
#[derive(Debug, Clone, Default)]
pub struct LenientBody(pub(crate) Map<String, Value>);

impl LenientBody {
    /// An empty body is an empty object (some clients send none on POST).
    pub fn parse(bytes: &[u8]) -> Result<LenientBody, BodyError> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(LenientBody::default());
        }
        let v: Value = serde_json::from_slice(bytes).map_err(|e| BodyError::Malformed(e.to_string()))?;
        match v {
            Value::Object(m) => Ok(LenientBody::from_map(m)),
            _ => Err(BodyError::NotAnObject),
        }
    }

    pub fn from_map(m: Map<String, Value>) -> LenientBody {
        LenientBody(m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect())
    }

    /// From query parameters (the GET variants).
    pub fn from_query(q: &str) -> LenientBody {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
        LenientBody(pairs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v))).collect())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(&key.to_ascii_lowercase()).filter(|v| !v.is_null())
    }

    /// A string (numbers and booleans are taken as their text).
    pub fn str(&self, key: &str) -> Result<Option<String>, BodyError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(BodyError::WrongType(key.to_string(), "a string", short(other))),
        }
    }

    /// A string that, if present, is not blank.
    pub fn nonblank(&self, key: &str) -> Result<Option<String>, BodyError> {
        Ok(self.str(key)?.filter(|s| !s.trim().is_empty()))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, BodyError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" | "" => Ok(Some(false)),
                _ => Err(BodyError::WrongType(key.to_string(), "a boolean", format!("{s:?}"))),
            },
            Some(other) => Err(BodyError::WrongType(key.to_string(), "a boolean", short(other))),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, BodyError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                // A whole float (60.0) is that integer; one outside i64 is refused, not clamped.
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| BodyError::WrongType(key.to_string(), "an integer", n.to_string())),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| BodyError::WrongType(key.to_string(), "an integer", format!("{s:?}"))),
            Some(other) => Err(BodyError::WrongType(key.to_string(), "an integer", short(other))),
        }
    }

    pub fn array(&self, key: &str) -> Result<Vec<Value>, BodyError> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(BodyError::WrongType(key.to_string(), "an array", short(other))),
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 { format!("{}…", s.chars().take(40).collect::<String>()) } else { s }
}

// ---------------------------------------------------------------------------------------------
// Typed bodies: one struct per request that is both what the handler reads and its OpenAPI schema.

/// A request body parsed into `T` with the lenient rules above: keys are matched against `T`'s
/// field names case-insensitively (vaultwarden's `LowerCase<T>` is the model), unknown keys are
/// ignored, `null` is absent, and fields declared with the deserializers in [`lenient`] accept
/// booleans and integers as strings. Errors keep the texts of [`BodyError`].
///
/// `T` declares its fields in the vendor's spelling (that is what the OpenAPI document shows);
/// the spelling a client sends does not matter.
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient<T>(pub T);

impl<T: DeserializeOwned> Lenient<T> {
    /// From a JSON body (an empty body is an empty object: some clients send none on POST).
    pub fn parse(bytes: &[u8]) -> Result<T, BodyError> {
        Self::from_body(LenientBody::parse(bytes)?)
    }

    /// From query parameters (the GET variants of POST operations).
    pub fn from_query(q: &str) -> Result<T, BodyError> {
        Self::from_body(LenientBody::from_query(q))
    }

    pub fn from_body(body: LenientBody) -> Result<T, BodyError> {
        let map = canonical_keys::<T>(body.0);
        serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            let field = e.path().to_string();
            body_error(field, &e.into_inner().to_string())
        })
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    /// A nested object (an array element, a sub-object) under the same rules.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(m) => {
                let map = canonical_keys::<T>(LenientBody::from_map(m).0);
                serde_path_to_error::deserialize(Value::Object(map)).map(Lenient).map_err(|e| {
                    // The message names the innermost field (`CMSID`, not the `Lookup` holding it).
                    let inner = e.path().to_string();
                    let message = e.into_inner().to_string();
                    if message.starts_with(FIELD) {
                        serde::de::Error::custom(message)
                    } else {
                        serde::de::Error::custom(format!("{FIELD}{inner}{FIELD}{message}"))
                    }
                })
            }
            other => Err(serde::de::Error::custom(format!("{WRONG_TYPE}an object{WRONG_TYPE}{}", short(&other)))),
        }
    }
}

impl<T: utoipa::PartialSchema> utoipa::PartialSchema for Lenient<T> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        T::schema()
    }
}

impl<T: utoipa::ToSchema> utoipa::ToSchema for Lenient<T> {
    fn name() -> std::borrow::Cow<'static, str> {
        T::name()
    }
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        T::schemas(schemas)
    }
}

/// Renames the (lower-cased) keys to `T`'s own field names; keys `T` does not know are dropped.
fn canonical_keys<T: DeserializeOwned>(lower: Map<String, Value>) -> Map<String, Value> {
    let fields = field_names::<T>();
    lower
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .filter_map(|(k, v)| fields.iter().find(|f| f.eq_ignore_ascii_case(&k)).map(|f| ((*f).to_string(), v)))
        .collect()
}

/// The field names (after serde's renames) a struct's derived `Deserialize` asks for: serde passes
/// them to `deserialize_struct`, which this deserializer records and then refuses.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names read")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for Names<'_> {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut fields));
    fields
}

/// Marks a wrong-type message from [`lenient`] so that it comes back as [`BodyError::WrongType`].
const WRONG_TYPE: char = '\u{1f}';
/// Marks the name of the nested field a message is about (`\u{1e}CMSID\u{1e}<message>`).
const FIELD: char = '\u{1e}';

fn body_error(field: String, message: &str) -> BodyError {
    let (field, message) = match message.strip_prefix(FIELD).and_then(|m| m.split_once(FIELD)) {
        Some((inner, rest)) => (inner.to_string(), rest),
        None => (field, message),
    };
    let mut parts = message.splitn(3, WRONG_TYPE);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(expected), Some(got)) => BodyError::WrongType(field, expected_of(expected), got.to_string()),
        _ => BodyError::Malformed(format!("{field}: {message}")),
    }
}

fn expected_of(s: &str) -> &'static str {
    ["a string", "a boolean", "an integer", "an array", "an object"].into_iter().find(|e| *e == s).unwrap_or("a value")
}

/// One element of a list of objects, read with `T`'s lenient rules. A bad element does not fail
/// the whole body: the handler answers it (or skips it) with the vendor's text for that list.
#[derive(Debug)]
pub enum Entry<T> {
    Object(T),
    NotAnObject,
    Invalid(BodyError),
}

impl<T> Entry<T> {
    /// For lists that skip what is not an object: the element, none, or its field's error.
    pub fn object(self) -> Result<Option<T>, BodyError> {
        match self {
            Entry::Object(t) => Ok(Some(t)),
            Entry::NotAnObject => Ok(None),
            Entry::Invalid(e) => Err(e),
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

/// Field deserializers for typed bodies: `#[serde(default, deserialize_with = "lenient::bool")]`
/// on an `Option<bool>` field, and so on. The field's Rust type is what the document shows.
pub mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::{LenientBody, WRONG_TYPE, short};

    fn wrong<E: serde::de::Error>(expected: &str, got: &str) -> E {
        E::custom(format!("{WRONG_TYPE}{expected}{WRONG_TYPE}{got}"))
    }

    /// The lenient accessors of [`LenientBody`] applied to one value.
    fn one(v: Value) -> LenientBody {
        let mut m = serde_json::Map::new();
        m.insert("v".into(), v);
        LenientBody(m)
    }

    fn as_field_error<T, E: serde::de::Error>(r: Result<Option<T>, super::BodyError>) -> Result<Option<T>, E> {
        r.map_err(|e| match e {
            super::BodyError::WrongType(_, expected, got) => wrong(expected, &got),
            other => E::custom(other.to_string()),
        })
    }

    /// A string; numbers and booleans are taken as their text.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        as_field_error(one(Value::deserialize(d)?).str("v"))
    }

    /// A boolean: also `"true"`/`"false"`, `"1"`/`"0"`, `"yes"`/`"no"`, 1 and 0.
    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        as_field_error(one(Value::deserialize(d)?).bool("v"))
    }

    /// An integer: also a string of digits (a blank string is absent) or a whole float.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        as_field_error(one(Value::deserialize(d)?).int("v"))
    }

    /// A nested object read with `T`'s rules; a value that is not an object counts as absent, so
    /// the handler's own "X is required." answers it.
    pub fn object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Option<super::Lenient<T>>, D::Error> {
        match Value::deserialize(d)? {
            v @ Value::Object(_) => serde_json::from_value(v).map(Some).map_err(serde::de::Error::custom),
            _ => Ok(None),
        }
    }

    /// A list of objects whose elements the handler judges one by one ([`super::Entry`]); a value
    /// that is not a list counts as absent.
    pub fn entries<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Option<Vec<super::Entry<T>>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| serde_json::from_value(v).map_err(serde::de::Error::custom))
                .collect::<Result<Vec<_>, D::Error>>()
                .map(Some),
            _ => Ok(None),
        }
    }

    /// A list whose elements are read with `T`'s own rules (nested objects through `Lenient`).
    pub fn list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<Vec<T>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Array(items) => items
                .into_iter()
                .map(|v| serde_json::from_value::<T>(v).map_err(serde::de::Error::custom))
                .collect::<Result<Vec<T>, D::Error>>()
                .map(Some),
            other => Err(wrong("an array", &short(&other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_types_and_case() {
        let b = LenientBody::parse(
            br#"{"includechain":"true","ROOTFIRSTORDER":false,"WorkToDoTimeout":"60","Reenable":1,"x":null}"#,
        )
        .unwrap();
        assert_eq!(b.bool("IncludeChain").unwrap(), Some(true));
        assert_eq!(b.bool("RootFirstOrder").unwrap(), Some(false));
        assert_eq!(b.int("WorkToDoTimeout").unwrap(), Some(60));
        assert_eq!(b.bool("Reenable").unwrap(), Some(true));
        assert_eq!(b.str("x").unwrap(), None);
        assert!(b.int("IncludeChain").is_err());
        let big = LenientBody::parse(br#"{"a":1e300,"b":18446744073709551615,"c":60.0}"#).unwrap();
        assert!(big.int("a").is_err());
        assert!(big.int("b").is_err());
        assert_eq!(big.int("c").unwrap(), Some(60));
    }

    #[test]
    fn rejects_non_objects() {
        assert_eq!(LenientBody::parse(b"[1]").unwrap_err(), BodyError::NotAnObject);
        assert!(matches!(LenientBody::parse(b"{bad").unwrap_err(), BodyError::Malformed(_)));
        assert!(LenientBody::parse(b"  ").is_ok());
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Example {
        #[serde(rename = "CertificateDN", default, deserialize_with = "lenient::string")]
        certificate_dn: Option<String>,
        #[serde(default, deserialize_with = "lenient::bool")]
        include_chain: Option<bool>,
        #[serde(default, deserialize_with = "lenient::int")]
        work_to_do_timeout: Option<i64>,
        #[serde(default, deserialize_with = "lenient::list")]
        subject_alt_names: Option<Vec<Lenient<Name>>>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Name {
        #[serde(default, deserialize_with = "lenient::int")]
        type_name: Option<i64>,
        #[serde(default, deserialize_with = "lenient::string")]
        name: Option<String>,
    }

    #[test]
    fn typed_bodies_follow_the_lenient_rules() {
        let e: Example = Lenient::parse(
            br#"{"certificatedn":"\\VED\\x","INCLUDECHAIN":"true","workToDoTimeout":"60","unknown":[1],
                 "subjectaltnames":[{"typename":"2","NAME":"a.example"}]}"#,
        )
        .unwrap();
        assert_eq!(e.certificate_dn.as_deref(), Some("\\VED\\x"));
        assert_eq!(e.include_chain, Some(true));
        assert_eq!(e.work_to_do_timeout, Some(60));
        let names = e.subject_alt_names.unwrap();
        assert_eq!(names[0].0, Name { type_name: Some(2), name: Some("a.example".into()) });
        // Nulls are absent, a blank integer is absent, numbers are strings where a string is asked.
        let e: Example = Lenient::parse(br#"{"CertificateDN":42,"IncludeChain":null,"WorkToDoTimeout":" "}"#).unwrap();
        assert_eq!(e, Example { certificate_dn: Some("42".into()), ..Default::default() });
        assert_eq!(Lenient::<Example>::parse(b"").unwrap(), Example::default());
        let q: Example = Lenient::from_query("includeChain=1&WorkToDoTimeout=5").unwrap();
        assert_eq!((q.include_chain, q.work_to_do_timeout), (Some(true), Some(5)));
    }

    #[test]
    fn typed_bodies_keep_the_error_texts() {
        let err = Lenient::<Example>::parse(br#"{"includechain":"maybe"}"#).unwrap_err();
        assert_eq!(err, BodyError::WrongType("IncludeChain".into(), "a boolean", "\"maybe\"".into()));
        assert_eq!(err.to_string(), r#"Invalid value for IncludeChain: expected a boolean, got "maybe"."#);
        let err = Lenient::<Example>::parse(br#"{"WorkToDoTimeout":[1]}"#).unwrap_err();
        assert_eq!(err, BodyError::WrongType("WorkToDoTimeout".into(), "an integer", "[1]".into()));
        // Inside a nested object the message names the nested field, as the untyped reader did.
        let err = Lenient::<Example>::parse(br#"{"SubjectAltNames":[{"TypeName":"two"}]}"#).unwrap_err();
        assert_eq!(err, BodyError::WrongType("TypeName".into(), "an integer", "\"two\"".into()));
        let err = Lenient::<Example>::parse(br#"{"SubjectAltNames":"x"}"#).unwrap_err();
        assert_eq!(err, BodyError::WrongType("SubjectAltNames".into(), "an array", "\"x\"".into()));
        assert_eq!(Lenient::<Example>::parse(b"[1]").unwrap_err(), BodyError::NotAnObject);
        assert!(matches!(Lenient::<Example>::parse(b"{bad").unwrap_err(), BodyError::Malformed(_)));
    }

    #[test]
    fn field_names_are_read_from_the_derive() {
        assert_eq!(field_names::<Name>(), &["TypeName", "Name"]);
    }
}
