//! The requests' JSON payloads, signed inside the JWS (RFC 8555 §7.3–7.6): one type per request, read from
//! the payload's JSON with the RFC 8555 problem texts ACME clients see today. They are read by
//! hand rather than derived: a member of the wrong type is either ignored (`onlyReturnExisting`,
//! `reason`, as before) or refused with its own detail ("csr is required"), never with a serde
//! message; and `externalAccountBinding` must stay the JSON the client signed.
use serde_json::{Map, Value};

use super::Problem;
use super::jws::{self, Jws};

/// The payload as JSON: an empty payload (POST-as-GET) is `{}`.
pub fn json(jws: &Jws) -> Result<Value, Problem> {
    if jws.payload.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(&jws.payload).map_err(|e| Problem::malformed(format!("the payload is not JSON: {e}")))
}

/// newAccount (§7.3).
pub struct NewAccount {
    /// `mailto:` contacts, checked by the domain.
    pub contacts: Vec<String>,
    /// A value that is not a boolean counts as false.
    pub only_return_existing: bool,
    /// The binding's flattened JWS, kept as signed: its MAC is checked over it and the created
    /// account's answer echoes it.
    pub external_account_binding: Option<Value>,
}

impl NewAccount {
    pub fn parse(jws: &Jws) -> Result<NewAccount, Problem> {
        let body = json(jws)?;
        Ok(NewAccount {
            contacts: crate::acme::accounts::check_contacts(body.get("contact"))?,
            only_return_existing: body.get("onlyReturnExisting").and_then(Value::as_bool).unwrap_or(false),
            external_account_binding: body.get("externalAccountBinding").cloned(),
        })
    }
}

/// keyChange's inner payload (§7.3.5).
pub struct KeyChange {
    /// The account URL the new key is for.
    pub account: Option<String>,
    /// Required; the handler says so after checking `account` (the order of today's problems).
    pub old_key: Option<Map<String, Value>>,
}

impl KeyChange {
    pub fn parse(inner: &Jws) -> Result<KeyChange, Problem> {
        let body = json(inner)?;
        Ok(KeyChange {
            account: body.get("account").and_then(Value::as_str).map(str::to_string),
            old_key: body.get("oldKey").and_then(Value::as_object).cloned(),
        })
    }
}

/// newOrder (§7.4); the action comes from the URL.
pub struct NewOrder {
    /// `(type, value)` as sent (a member that is not a string is empty); the domain checks them.
    pub identifiers: Vec<(String, String)>,
    /// ARI (RFC 9773): the certID of the certificate this order replaces.
    pub replaces: Option<String>,
}

impl NewOrder {
    pub fn parse(jws: &Jws) -> Result<NewOrder, Problem> {
        let body = json(jws)?;
        let sent = body
            .get("identifiers")
            .and_then(Value::as_array)
            .ok_or_else(|| Problem::malformed("identifiers is required"))?;
        let identifiers = sent
            .iter()
            .map(|i| {
                let field = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                (field("type"), field("value"))
            })
            .collect();
        let replaces = match body.get("replaces") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Problem::malformed("replaces must be a certID string")),
        };
        Ok(NewOrder { identifiers, replaces })
    }
}

/// finalize (§7.4): the CSR's DER.
pub struct Finalize {
    pub csr_der: Vec<u8>,
}

impl Finalize {
    pub fn parse(jws: &Jws) -> Result<Finalize, Problem> {
        let body = json(jws)?;
        let csr = body.get("csr").and_then(Value::as_str).ok_or_else(|| Problem::malformed("csr is required"))?;
        Ok(Finalize { csr_der: jws::b64u_decode(csr)? })
    }
}

/// revokeCert (§7.6).
pub struct Revoke {
    pub certificate_der: Vec<u8>,
    /// The CRL reason code; 0 (unspecified) when absent or not an integer.
    pub reason: i64,
}

impl Revoke {
    pub fn parse(jws: &Jws) -> Result<Revoke, Problem> {
        let body = json(jws)?;
        let certificate = body
            .get("certificate")
            .and_then(Value::as_str)
            .ok_or_else(|| Problem::malformed("certificate is required"))?;
        Ok(Revoke {
            certificate_der: jws::b64u_decode(certificate)?,
            reason: body.get("reason").and_then(Value::as_i64).unwrap_or(0),
        })
    }
}

/// An authorization's POST: empty (POST-as-GET) reads it, `{"status": "deactivated"}`
/// deactivates it (§7.5.2); anything else is refused.
pub fn deactivates_authz(jws: &Jws) -> Result<bool, Problem> {
    if jws.payload.is_empty() {
        return Ok(false);
    }
    if json(jws)?.get("status").and_then(Value::as_str) != Some("deactivated") {
        return Err(Problem::malformed("an authorization can only be deactivated"));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::wire::FlattenedJws;

    fn signed(payload: &str) -> Jws {
        Jws {
            flattened: FlattenedJws { protected: String::new(), payload: String::new(), signature: String::new() },
            signature: vec![],
            header: Map::new(),
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn detail<T>(r: Result<T, Problem>) -> String {
        match r {
            Ok(_) => panic!("expected a problem"),
            Err(p) => format!("{}: {}", p.kind, p.detail),
        }
    }

    #[test]
    fn new_account_ignores_a_non_boolean_only_return_existing_and_keeps_the_binding_as_sent() {
        let eab = r#"{"protected":"p","payload":"q","signature":"s"}"#;
        let a = NewAccount::parse(&signed(&format!(
            r#"{{"contact":["mailto:a@example.com"],"onlyReturnExisting":"yes","externalAccountBinding":{eab}}}"#
        )))
        .unwrap();
        assert_eq!(a.contacts, vec!["mailto:a@example.com".to_string()]);
        assert!(!a.only_return_existing);
        assert_eq!(a.external_account_binding, Some(serde_json::from_str::<Value>(eab).unwrap()));
        assert!(NewAccount::parse(&signed("")).unwrap().contacts.is_empty());
        assert_eq!(detail(NewAccount::parse(&signed("{"))).split(':').next(), Some("malformed"));
    }

    #[test]
    fn new_order_texts() {
        let o = NewOrder::parse(&signed(r#"{"identifiers":[{"type":"dns","value":"a.example"},{"type":1}]}"#)).unwrap();
        assert_eq!(o.identifiers, vec![("dns".into(), "a.example".into()), (String::new(), String::new())]);
        assert_eq!(o.replaces, None);
        assert_eq!(detail(NewOrder::parse(&signed("{}"))), "malformed: identifiers is required");
        assert_eq!(
            detail(NewOrder::parse(&signed(r#"{"identifiers":[],"replaces":5}"#))),
            "malformed: replaces must be a certID string"
        );
    }

    #[test]
    fn finalize_revoke_and_key_change() {
        assert_eq!(detail(Finalize::parse(&signed(r#"{"csr":5}"#))), "malformed: csr is required");
        assert_eq!(Finalize::parse(&signed(r#"{"csr":"AAEC"}"#)).unwrap().csr_der, vec![0, 1, 2]);
        let r = Revoke::parse(&signed(r#"{"certificate":"AAEC","reason":"4"}"#)).unwrap();
        assert_eq!((r.certificate_der, r.reason), (vec![0, 1, 2], 0));
        assert_eq!(detail(Revoke::parse(&signed("{}"))), "malformed: certificate is required");
        let k = KeyChange::parse(&signed(r#"{"account":"https://gw/acme/acct/1"}"#)).unwrap();
        assert_eq!((k.account.as_deref(), k.old_key), (Some("https://gw/acme/acct/1"), None));
    }

    #[test]
    fn an_authorization_is_read_or_deactivated() {
        assert!(!deactivates_authz(&signed("")).unwrap());
        assert!(deactivates_authz(&signed(r#"{"status":"deactivated"}"#)).unwrap());
        assert_eq!(
            detail(deactivates_authz(&signed(r#"{"status":"valid"}"#))),
            "malformed: an authorization can only be deactivated"
        );
    }
}
