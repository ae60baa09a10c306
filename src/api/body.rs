//! Lenient request bodies as enterprise clients send them: keys matched case-insensitively,
//! booleans and integers accepted as JSON values or strings, unknown fields ignored.
use actix_web::web;
use futures_util::StreamExt;
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
pub struct LenientBody(Map<String, Value>);

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
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
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
    }

    #[test]
    fn rejects_non_objects() {
        assert_eq!(LenientBody::parse(b"[1]").unwrap_err(), BodyError::NotAnObject);
        assert!(matches!(LenientBody::parse(b"{bad").unwrap_err(), BodyError::Malformed(_)));
        assert!(LenientBody::parse(b"  ").is_ok());
    }
}
