//! The ACME resources' states as types (RFC 8555 §7.1.6) and the other closed sets of the
//! dialect: identifier types and the DigiCert-style automation actions. The database keeps the
//! RFC's spelling (`as_str`); anything else read back is an error, never a silent default.
use std::net::IpAddr;

macro_rules! spelled {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The RFC's spelling, as stored and as sent.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// A stored value; an unknown one is a corrupt row.
            pub fn stored(s: &str) -> Result<$name, super::AcmeError> {
                $name::parse(s).ok_or_else(|| {
                    super::AcmeError::server(format!("stored {} {s:?} is not one of its states", stringify!($name)))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled!(
    /// An account: `valid` until its holder deactivates it.
    AccountStatus { Valid = "valid", Deactivated = "deactivated", Revoked = "revoked" }
);

spelled!(
    /// An order: `pending` authorizations → `ready` → finalize → `processing` → `valid`, or `invalid`.
    OrderStatus { Pending = "pending", Ready = "ready", Processing = "processing", Valid = "valid", Invalid = "invalid" }
);

spelled!(
    /// An authorization: `pending` until one of its challenges is validated.
    AuthzStatus {
        Pending = "pending",
        Valid = "valid",
        Invalid = "invalid",
        Deactivated = "deactivated",
        Expired = "expired",
        Revoked = "revoked",
    }
);

spelled!(
    /// A challenge: `processing` from the client's answer until its validation job records the outcome.
    ChallengeStatus { Pending = "pending", Processing = "processing", Valid = "valid", Invalid = "invalid" }
);

spelled!(
    /// What an order does to the inventory (seed 001 and the DigiCert reference): a new object,
    /// a new version of an object (renew: a new period; reissue: same end date), or a copy.
    OrderAction { Enroll = "enroll", Renew = "renew", Reissue = "reissue", Duplicate = "duplicate" }
);

spelled!(
    /// RFC 8555 `dns` and RFC 8738 `ip` identifiers.
    IdentifierType { Dns = "dns", Ip = "ip" }
);

/// The action a newOrder URL asks for (the directory's `?action=…&orderId=N`), before the
/// domain decides: `Auto` lets auto-detection choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedAction {
    Auto,
    Enroll,
    /// renew, reissue or duplicate of an inventory object (the DigiCert orderId).
    On(OrderAction, i64),
}

impl RequestedAction {
    /// The directory query's `action` and `orderId` (reference §4.2): an unknown action, an
    /// orderId that is not 1–19 digits, one missing for renew/reissue/duplicate, or present
    /// with enroll or without an action → `malformed`.
    pub fn parse(action: Option<&str>, order_id: Option<&str>) -> Result<RequestedAction, super::AcmeError> {
        use super::AcmeError;
        let order = match order_id {
            Some(o) => {
                if o.is_empty() || o.len() > 19 || !o.chars().all(|c| c.is_ascii_digit()) {
                    return Err(AcmeError::malformed(format!("orderId must be 1 to 19 digits, not {o:?}")));
                }
                Some(o.parse::<i64>().map_err(|_| AcmeError::malformed("orderId is out of range"))?)
            }
            None => None,
        };
        match (action, order) {
            (None, None) => Ok(RequestedAction::Auto),
            (None, Some(_)) => Err(AcmeError::malformed("orderId needs an action (renew, reissue or duplicate)")),
            (Some("enroll"), None) => Ok(RequestedAction::Enroll),
            (Some("enroll"), Some(_)) => Err(AcmeError::malformed("action=enroll takes no orderId")),
            (Some(a), n) => match (OrderAction::parse(a), n) {
                (Some(act), Some(n)) => Ok(RequestedAction::On(act, n)),
                (Some(_), None) => Err(AcmeError::malformed(format!("action={a} needs an orderId"))),
                (None, _) => {
                    Err(AcmeError::malformed(format!("unknown action {a:?}: use renew, reissue, duplicate or enroll")))
                }
            },
        }
    }

    /// The action a newOrder URL's path below the directory carries (`o/renew/5/new-order`,
    /// `o/enroll/new-order`, `new-order`): the inverse of [`RequestedAction::url_part`].
    pub fn from_url_part(path: &str) -> Result<RequestedAction, super::AcmeError> {
        let parts: Vec<&str> = path.strip_prefix("o/").map(|r| r.split('/').collect()).unwrap_or_default();
        match parts.as_slice() {
            [] => Ok(RequestedAction::Auto),
            ["enroll", ..] => Ok(RequestedAction::Enroll),
            [a, n, ..] => RequestedAction::parse(Some(a), Some(n)),
            _ => Err(super::AcmeError::malformed("unknown action in the URL")),
        }
    }

    /// The part of a newOrder URL (`o/renew/5/`) that carries the action.
    pub fn url_part(&self) -> String {
        match self {
            RequestedAction::Auto => String::new(),
            RequestedAction::Enroll => "o/enroll/".into(),
            RequestedAction::On(a, n) => format!("o/{a}/{n}/"),
        }
    }
}

/// One identifier of an order, normalized (lower-case, no trailing dot, canonical IP text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub fn kind(&self) -> IdentifierType {
        if self.kind == "ip" { IdentifierType::Ip } else { IdentifierType::Dns }
    }

    pub fn is_wildcard(&self) -> bool {
        self.value.starts_with("*.")
    }

    /// The name an authorization covers: a wildcard's base name.
    pub fn authz_name(&self) -> &str {
        self.value.trim_start_matches("*.")
    }

    /// Checks and normalizes an identifier as a client sent it.
    pub fn parse(kind: &str, value: &str) -> Result<Identifier, super::AcmeError> {
        use super::AcmeError;
        match IdentifierType::parse(kind) {
            Some(IdentifierType::Dns) => {
                let v = value.trim().trim_end_matches('.').to_lowercase();
                let v = crate::names::normalize_dns_name(&v, true).map_err(|e| {
                    AcmeError::rejected_identifier(format!("{value:?} is not a valid dns identifier: {e}"))
                })?;
                Ok(Identifier { kind: "dns".into(), value: v })
            }
            Some(IdentifierType::Ip) => {
                let ip: IpAddr = value
                    .trim()
                    .parse()
                    .map_err(|_| AcmeError::rejected_identifier(format!("{value:?} is not a valid ip identifier")))?;
                Ok(Identifier { kind: "ip".into(), value: ip.to_string() })
            }
            None => Err(AcmeError::new(
                400,
                super::ErrorType::UnsupportedIdentifier,
                format!("identifier type {kind:?} is not supported (dns, ip)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_actions() {
        assert_eq!(RequestedAction::parse(None, None).unwrap(), RequestedAction::Auto);
        assert_eq!(
            RequestedAction::parse(Some("renew"), Some("555123456")).unwrap(),
            RequestedAction::On(OrderAction::Renew, 555123456)
        );
        assert_eq!(
            RequestedAction::parse(Some("duplicate"), Some("8")).unwrap(),
            RequestedAction::On(OrderAction::Duplicate, 8)
        );
        assert_eq!(RequestedAction::parse(Some("enroll"), None).unwrap(), RequestedAction::Enroll);
        for (a, n) in [
            (Some("renew"), None),
            (None, Some("5")),
            (Some("enroll"), Some("5")),
            (Some("fly"), Some("5")),
            (Some("renew"), Some("x1")),
            (Some("renew"), Some("12345678901234567890")),
        ] {
            assert!(RequestedAction::parse(a, n).is_err(), "{a:?} {n:?}");
        }
        assert_eq!(RequestedAction::On(OrderAction::Reissue, 3).url_part(), "o/reissue/3/");
        for a in [RequestedAction::Auto, RequestedAction::Enroll, RequestedAction::On(OrderAction::Renew, 12)] {
            assert_eq!(RequestedAction::from_url_part(&format!("{}new-order", a.url_part())).unwrap(), a);
        }
        assert!(RequestedAction::from_url_part("o/fly/12/new-order").is_err());
        assert!(RequestedAction::from_url_part("o/renew/x/new-order").is_err());
    }
}
