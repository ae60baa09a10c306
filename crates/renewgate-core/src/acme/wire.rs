//! The ACME resources as the handlers write them (RFC 8555 §7.1): each type is serialized into
//! the answer and is its schema in the OpenAPI document. ACME clients (certbot, lego, acme.sh …)
//! parse these keys, so their spelling, and which optional keys are left out rather than sent as
//! `null`, are part of the contract.
use chrono::NaiveDateTime;
use serde::Serialize;
use utoipa::ToSchema;

use crate::acme::orders::{AuthzView, ChallengeView, OrderView};
use crate::acme::{Account, OrderStatus};

/// RFC 3339 in UTC with whole seconds, as every ACME timestamp here is written.
pub fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A flattened JWS (RFC 7515 §7.2.2), the body of every ACME POST (`application/jose+json`),
/// and the external account binding inside newAccount. The members as received: the signature
/// is checked over exactly these strings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlattenedJws {
    /// base64url of the protected header: `alg`, `nonce`, `url`, and `jwk` or `kid`.
    pub protected: String,
    /// base64url of the JSON payload; empty for POST-as-GET.
    pub payload: String,
    pub signature: String,
}

/// An RFC 7807 problem document (`application/problem+json`), alone or as an order's or a
/// challenge's `error`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcmeProblem {
    /// `urn:ietf:params:acme:error:<type>` (malformed, badNonce, unauthorized, rejectedIdentifier, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
    pub status: u16,
    /// Signature algorithms accepted (with `badSignatureAlgorithm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
}

impl AcmeProblem {
    /// `kind` is the RFC 8555 error type without its URN prefix.
    pub fn new(kind: &str, detail: impl Into<String>, status: u16) -> AcmeProblem {
        AcmeProblem {
            kind: format!("urn:ietf:params:acme:error:{kind}"),
            detail: detail.into(),
            status,
            algorithms: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryMeta {
    #[serde(rename = "externalAccountRequired")]
    pub external_account_required: bool,
}

/// The directory. `newOrder` carries the automation action of the directory's query.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    pub revoke_cert: String,
    pub key_change: String,
    pub renewal_info: String,
    pub meta: DirectoryMeta,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeAccount {
    /// valid or deactivated.
    pub status: String,
    pub contact: Vec<String>,
    pub orders: String,
    /// The binding the account was created with, echoed as sent (RFC 8555 §7.3.4); only in the
    /// answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<FlattenedJws>)]
    pub external_account_binding: Option<serde_json::Value>,
}

impl AcmeAccount {
    pub fn new(a: &Account, base: &str) -> AcmeAccount {
        // Stored by the domain as a JSON array of strings.
        let contact = serde_json::from_str(&a.contact).unwrap_or_default();
        AcmeAccount {
            status: a.status.clone(),
            contact,
            orders: format!("{base}/acct/{}/orders", a.id),
            external_account_binding: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Identifier {
    /// dns or ip.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl From<&crate::acme::Identifier> for Identifier {
    fn from(i: &crate::acme::Identifier) -> Self {
        Identifier { kind: i.kind.clone(), value: i.value.clone() }
    }
}

/// Renewgate's extension: the inventory object an order acts on.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDecision {
    /// renew, reissue, duplicate or enroll.
    pub action: String,
    /// The inventory object id (usable as `orderId`); `null` until the order has one.
    pub order_id: Option<i64>,
    /// Present (true) on dry-run orders only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcmeOrder {
    /// pending, ready, processing, valid or invalid.
    pub status: String,
    pub expires: String,
    pub identifiers: Vec<Identifier>,
    pub authorizations: Vec<String>,
    pub finalize: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AcmeProblem>,
    #[serde(rename = "x-renewgate")]
    pub x_renewgate: OrderDecision,
}

impl AcmeOrder {
    pub fn new(o: &OrderView, base: &str) -> AcmeOrder {
        // A dry-run order's chain is served apart from the inventory's certificates.
        let certificate = if o.dry_run && o.status == OrderStatus::Valid {
            Some(format!("{base}/dry-run/cert/{}", o.id))
        } else {
            o.certificate_id.map(|cid| format!("{base}/cert/{cid}"))
        };
        AcmeOrder {
            status: o.status.as_str().to_string(),
            expires: rfc3339(o.expires),
            identifiers: o.identifiers.iter().map(Identifier::from).collect(),
            authorizations: o.authz_ids.iter().map(|a| format!("{base}/authz/{a}")).collect(),
            finalize: format!("{base}/order/{}/finalize", o.id),
            certificate,
            replaces: o.replaces.clone(),
            error: o.error.as_ref().map(|e| AcmeProblem::new("serverInternal", e.as_str(), 500)),
            x_renewgate: OrderDecision {
                action: o.action.as_str().to_string(),
                order_id: o.object_id,
                dry_run: o.dry_run.then_some(true),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcmeChallenge {
    /// http-01, dns-01 or tls-alpn-01.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    /// pending, processing, valid or invalid.
    pub status: String,
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validated: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AcmeProblem>,
}

impl AcmeChallenge {
    pub fn new(ch: &ChallengeView, base: &str) -> AcmeChallenge {
        AcmeChallenge {
            kind: ch.kind.as_str().to_string(),
            url: format!("{base}/chall/{}", ch.id),
            status: ch.status.as_str().to_string(),
            token: ch.token.clone(),
            validated: ch.validated.map(rfc3339),
            error: ch.error.as_ref().map(|e| AcmeProblem::new(e.kind.as_str(), e.detail.as_str(), 400)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcmeAuthorization {
    pub identifier: Identifier,
    /// pending, valid, invalid or deactivated.
    pub status: String,
    pub expires: String,
    pub challenges: Vec<AcmeChallenge>,
    /// Present (true) for a wildcard name only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<bool>,
}

impl AcmeAuthorization {
    pub fn new(a: &AuthzView, base: &str) -> AcmeAuthorization {
        AcmeAuthorization {
            identifier: Identifier::from(&a.identifier),
            status: a.status.as_str().to_string(),
            expires: rfc3339(a.expires),
            challenges: a.challenges.iter().map(|ch| AcmeChallenge::new(ch, base)).collect(),
            wildcard: a.wildcard.then_some(true),
        }
    }
}

/// The certificate chain, PEM (leaf first), as `application/pem-certificate-chain`.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct PemCertificateChain(pub Vec<u8>);

#[derive(Debug, Serialize, ToSchema)]
pub struct SuggestedWindow {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenewalInfo {
    pub suggested_window: SuggestedWindow,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::orders::{AuthzView, ChallengeView, OrderView};
    use crate::acme::validate::{ChallengeKind, Failure, FailureKind};
    use crate::acme::{AuthzStatus, ChallengeStatus, OrderAction};
    use serde_json::{Value, json};

    const BASE: &str = "https://gw/acme";

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn ident(kind: &str, value: &str) -> crate::acme::Identifier {
        crate::acme::Identifier { kind: kind.into(), value: value.into() }
    }

    fn order(status: OrderStatus, dry_run: bool) -> OrderView {
        OrderView {
            id: 7,
            status,
            expires: at("2026-12-03 10:00:00"),
            identifiers: vec![ident("dns", "a.example"), ident("ip", "192.0.2.1")],
            authz_ids: vec![11, 12],
            action: OrderAction::Renew,
            object_id: None,
            dry_run,
            replaces: None,
            certificate_id: None,
            error: None,
        }
    }

    fn to_json(v: impl Serialize) -> Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn an_order_leaves_out_what_it_has_not_and_keeps_a_null_order_id() {
        let fresh = to_json(AcmeOrder::new(&order(OrderStatus::Pending, false), BASE));
        assert_eq!(
            fresh,
            json!({
                "status": "pending",
                "expires": "2026-12-03T10:00:00Z",
                "identifiers": [{"type": "dns", "value": "a.example"}, {"type": "ip", "value": "192.0.2.1"}],
                "authorizations": ["https://gw/acme/authz/11", "https://gw/acme/authz/12"],
                "finalize": "https://gw/acme/order/7/finalize",
                "x-renewgate": {"action": "renew", "orderId": null},
            })
        );

        let mut done = order(OrderStatus::Valid, false);
        done.object_id = Some(42);
        done.certificate_id = Some(9);
        done.replaces = Some("aki.serial".into());
        done.error = Some("the CA refused".into());
        let v = to_json(AcmeOrder::new(&done, BASE));
        assert_eq!(v["certificate"], "https://gw/acme/cert/9");
        assert_eq!(v["replaces"], "aki.serial");
        assert_eq!(
            v["error"],
            json!({"type": "urn:ietf:params:acme:error:serverInternal", "detail": "the CA refused", "status": 500})
        );
        assert_eq!(v["x-renewgate"], json!({"action": "renew", "orderId": 42}));
    }

    #[test]
    fn a_valid_dry_run_order_points_at_its_dry_run_chain() {
        let mut o = order(OrderStatus::Valid, true);
        o.certificate_id = Some(9);
        let v = to_json(AcmeOrder::new(&o, BASE));
        assert_eq!(v["certificate"], "https://gw/acme/dry-run/cert/7");
        assert_eq!(v["x-renewgate"], json!({"action": "renew", "orderId": null, "dryRun": true}));
        let pending = to_json(AcmeOrder::new(&order(OrderStatus::Pending, true), BASE));
        assert!(pending.get("certificate").is_none());
    }

    #[test]
    fn authorizations_and_challenges() {
        let pending = ChallengeView {
            id: 3,
            authz_id: 11,
            kind: ChallengeKind::Http01,
            token: "tok".into(),
            status: ChallengeStatus::Pending,
            validated: None,
            error: None,
        };
        let failed = ChallengeView {
            id: 4,
            kind: ChallengeKind::Dns01,
            status: ChallengeStatus::Invalid,
            validated: Some(at("2026-12-03 09:00:01")),
            error: Some(Failure { kind: FailureKind::Dns, detail: "no TXT record".into() }),
            ..pending.clone()
        };
        let mut a = AuthzView {
            id: 11,
            identifier: ident("dns", "*.a.example"),
            wildcard: false,
            status: AuthzStatus::Pending,
            expires: at("2026-12-04 00:00:00"),
            challenges: vec![pending, failed],
        };
        let v = to_json(AcmeAuthorization::new(&a, BASE));
        assert!(v.get("wildcard").is_none());
        assert_eq!(v["identifier"], json!({"type": "dns", "value": "*.a.example"}));
        assert_eq!(
            v["challenges"][0],
            json!({"type": "http-01", "url": "https://gw/acme/chall/3", "status": "pending", "token": "tok"})
        );
        assert_eq!(
            v["challenges"][1],
            json!({"type": "dns-01", "url": "https://gw/acme/chall/4", "status": "invalid", "token": "tok",
                "validated": "2026-12-03T09:00:01Z",
                "error": {"type": "urn:ietf:params:acme:error:dns", "detail": "no TXT record", "status": 400}})
        );
        a.wildcard = true;
        assert_eq!(to_json(AcmeAuthorization::new(&a, BASE))["wildcard"], true);
    }

    #[test]
    fn a_problem_names_its_algorithms_only_when_asked() {
        let p = AcmeProblem::new("badNonce", "stale", 400);
        assert_eq!(
            to_json(&p),
            json!({"type": "urn:ietf:params:acme:error:badNonce", "detail": "stale", "status": 400})
        );
    }
}
