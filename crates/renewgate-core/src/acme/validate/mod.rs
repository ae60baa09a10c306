//! ACME challenge validation (RFC 8555 §8, RFC 8737, RFC 8738): http-01, dns-01 and
//! tls-alpn-01, each really performed against the identifier being authorized. Shaped like
//! Boulder's `va` package: one file per challenge type, and [`targets`] for what every
//! connecting check shares (which addresses may be connected to, resolution, connecting).
//!
//! Everything here is async tokio I/O (sockets, the hickory resolver, tokio-openssl), so the one
//! [`tokio::time::timeout`] in [`validate`] is a hard deadline: a peer that trickles bytes, a
//! black-holed address or a slow name server cannot hold a validation (and the concurrency slot
//! its caller gives it) longer than `acme.validation.timeout_s`.
//!
//! The caller (the job runner) stores a [`Failure`] with [`Failure::encode`] and turns its
//! [`FailureKind`] into the ACME error type `urn:ietf:params:acme:error:<kind>`.
mod dns01;
mod http01;
mod targets;
mod tls_alpn01;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;

use crate::settings::AcmeValidationSettings;

/// A challenge type. [`ChallengeKind::as_str`] and [`ChallengeKind::parse`] give its ACME name
/// (the `type` of a challenge object, and what the challenge row stores); serde uses the variant
/// names, for the caller's own payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ChallengeKind {
    Http01,
    Dns01,
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::Dns01 => "dns-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    /// The kind named by its ACME text; `None` for a type this server does not offer.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http-01" => Some(ChallengeKind::Http01),
            "dns-01" => Some(ChallengeKind::Dns01),
            "tls-alpn-01" => Some(ChallengeKind::TlsAlpn01),
            _ => None,
        }
    }
}

/// Why a validation failed, as the ACME error type it is reported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The target could not be reached, was refused by policy, or did not finish in time.
    Connection,
    /// Name resolution failed, or the records asked for do not exist.
    Dns,
    /// The TLS handshake of tls-alpn-01 failed or did not negotiate `acme-tls/1`.
    Tls,
    /// The target answered, but not with the proof expected.
    IncorrectResponse,
    /// This server could not perform the validation (its own configuration or a local error).
    ServerInternal,
}

impl FailureKind {
    /// The ACME error type's suffix (`urn:ietf:params:acme:error:` + this).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connection => "connection",
            FailureKind::Dns => "dns",
            FailureKind::Tls => "tls",
            FailureKind::IncorrectResponse => "incorrectResponse",
            FailureKind::ServerInternal => "serverInternal",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            FailureKind::Connection,
            FailureKind::Dns,
            FailureKind::Tls,
            FailureKind::IncorrectResponse,
            FailureKind::ServerInternal,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A failed validation: its kind and a detail for the ACME client. Details name addresses, ports
/// and URLs, never the content a validated server sent (it is the requester's, not ours to echo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Failure { kind, detail: detail.into() }
    }

    /// How a failure is kept on the challenge row (`kind|detail`), read back by [`Failure::decode`].
    pub fn encode(&self) -> String {
        format!("{}|{}", self.kind.as_str(), self.detail)
    }

    /// Reads back [`Failure::encode`]. Text without a known kind prefix (rows written before the
    /// kinds existed) becomes an `incorrectResponse` carrying the whole text, so nothing is lost.
    pub fn decode(stored: &str) -> Failure {
        match stored.split_once('|').and_then(|(k, d)| Some((FailureKind::parse(k)?, d))) {
            Some((kind, detail)) => Failure::new(kind, detail),
            None => Failure::new(FailureKind::IncorrectResponse, stored),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl std::error::Error for Failure {}

/// One challenge to validate.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: ChallengeKind,
    /// A DNS name (a wildcard's base name, without `*.`) or an IP address's text.
    pub identifier: &'a str,
    pub token: &'a str,
    pub key_authorization: &'a str,
}

/// Validates one challenge. The whole of it (resolution, connections, redirects, TLS handshake,
/// reads) is bounded by `settings.timeout_s` (at least 1 s): past the deadline the work is
/// dropped and the outcome is a `connection` failure saying it did not finish in time, whatever
/// the peer does.
///
/// Needs a tokio runtime with the I/O and time drivers enabled (`enable_all`).
pub async fn validate(settings: &AcmeValidationSettings, t: &Target<'_>) -> Result<(), Failure> {
    let limit = time_limit(settings);
    let deadline = tokio::time::Instant::now() + limit;
    match tokio::time::timeout_at(deadline, validate_within(settings, t, deadline)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::new(
            FailureKind::Connection,
            format!("{} validation of {} did not finish within {} s", t.kind.as_str(), t.identifier, limit.as_secs()),
        )),
    }
}

/// `timeout_s`, at least 1 s (0 would fail every validation) and at most a day (an absurd value
/// must not overflow the clock; nothing legitimate waits that long).
fn time_limit(settings: &AcmeValidationSettings) -> Duration {
    Duration::from_secs(settings.timeout_s.clamp(1, 86_400))
}

async fn validate_within(
    settings: &AcmeValidationSettings,
    t: &Target<'_>,
    deadline: tokio::time::Instant,
) -> Result<(), Failure> {
    let host = targets::Host::parse(t.identifier)?;
    match t.kind {
        ChallengeKind::Dns01 => match &host {
            targets::Host::Name(name) => dns01::validate(settings, name, t.key_authorization).await,
            targets::Host::Ip(ip) => Err(Failure::new(
                FailureKind::ServerInternal,
                format!("dns-01 is not offered for the IP address {ip} (RFC 8738)"),
            )),
        },
        ChallengeKind::Http01 => {
            let mut lookup = targets::Lookup::new(settings)?;
            http01::validate(&mut lookup, &host, t.token, t.key_authorization, deadline).await
        }
        ChallengeKind::TlsAlpn01 => {
            let mut lookup = targets::Lookup::new(settings)?;
            tls_alpn01::validate(&mut lookup, &host, t.key_authorization, deadline).await
        }
    }
}

/// The challenge types offered for an identifier, as Pebble and Let's Encrypt do: all three for a
/// name, dns-01 only for a wildcard (only DNS proves control of a whole zone level), http-01 and
/// tls-alpn-01 for an IP address (RFC 8738: an address has no zone to put a TXT record in).
pub fn offered(identifier: &str, wildcard: bool) -> &'static [ChallengeKind] {
    if wildcard {
        &[ChallengeKind::Dns01]
    } else if identifier.parse::<IpAddr>().is_ok() {
        &[ChallengeKind::Http01, ChallengeKind::TlsAlpn01]
    } else {
        &[ChallengeKind::Http01, ChallengeKind::Dns01, ChallengeKind::TlsAlpn01]
    }
}

/// base64url(SHA-256(key authorization)): the TXT value dns-01 looks for (RFC 8555 §8.4).
pub fn dns01_value(key_authorization: &str) -> String {
    B64U.encode(openssl::sha::sha256(key_authorization.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_acme_names() {
        for k in [ChallengeKind::Http01, ChallengeKind::Dns01, ChallengeKind::TlsAlpn01] {
            assert_eq!(ChallengeKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<ChallengeKind>(&json).unwrap(), k);
        }
        assert_eq!(ChallengeKind::parse("tls-sni-01"), None);
    }

    #[test]
    fn failures_are_stored_and_read_back() {
        let f = Failure::new(FailureKind::IncorrectResponse, "a|b");
        assert_eq!(f.encode(), "incorrectResponse|a|b");
        assert_eq!(Failure::decode(&f.encode()), f);
        assert_eq!(Failure::decode("dns|no record"), Failure::new(FailureKind::Dns, "no record"));
        assert_eq!(Failure::decode("serverInternal|x").kind, FailureKind::ServerInternal);
        assert_eq!(Failure::decode("weird|x"), Failure::new(FailureKind::IncorrectResponse, "weird|x"));
        assert_eq!(Failure::decode("plain"), Failure::new(FailureKind::IncorrectResponse, "plain"));
    }

    #[test]
    fn offered_types_follow_the_identifier() {
        assert_eq!(offered("a.example.com", true), [ChallengeKind::Dns01]);
        assert_eq!(offered("192.0.2.1", false), [ChallengeKind::Http01, ChallengeKind::TlsAlpn01]);
        assert_eq!(offered("2001:db8::1", false), [ChallengeKind::Http01, ChallengeKind::TlsAlpn01]);
        assert_eq!(offered("a.example.com", false).len(), 3);
    }

    #[test]
    fn the_dns01_value_is_the_rfc_digest() {
        // RFC 8555 §8.4: base64url without padding of SHA-256 (43 characters).
        let v = dns01_value("token.thumbprint");
        assert_eq!(v.len(), 43);
        assert_eq!(B64U.decode(&v).unwrap(), openssl::sha::sha256(b"token.thumbprint"));
    }

    #[tokio::test]
    async fn dns01_is_not_attempted_for_an_ip_address() {
        let settings = AcmeValidationSettings::default();
        let t = Target { kind: ChallengeKind::Dns01, identifier: "192.0.2.1", token: "t", key_authorization: "t.k" };
        let f = validate(&settings, &t).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::ServerInternal);
    }
}
