//! The ACME resources in the OpenAPI document. ACME clients never read it (they follow the
//! directory), but SDK generators, Postman and API catalogues do: these types describe the wire
//! format the handlers write with `serde_json::json!` (which keeps JWS bytes and field order
//! under the handlers' control), so they are documentation, never constructed.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// A flattened JWS (RFC 7515 §7.2.2), the body of every ACME POST (`application/jose+json`).
#[derive(Serialize, ToSchema)]
pub struct FlattenedJws {
    /// base64url of the protected header: `alg`, `nonce`, `url`, and `jwk` or `kid`.
    pub protected: String,
    /// base64url of the JSON payload; empty for POST-as-GET.
    pub payload: String,
    pub signature: String,
}

/// An RFC 7807 problem document (`application/problem+json`).
#[derive(Serialize, ToSchema)]
pub struct AcmeProblem {
    /// `urn:ietf:params:acme:error:<type>` (malformed, badNonce, unauthorized, rejectedIdentifier, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
    pub status: u16,
    /// Signature algorithms accepted (with `badSignatureAlgorithm`).
    pub algorithms: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct DirectoryMeta {
    #[serde(rename = "externalAccountRequired")]
    pub external_account_required: bool,
}

/// The directory. `newOrder` carries the automation action of the directory's query.
#[derive(Serialize, ToSchema)]
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

#[derive(Serialize, ToSchema)]
pub struct AcmeAccount {
    /// valid or deactivated.
    pub status: String,
    pub contact: Vec<String>,
    pub orders: String,
}

#[derive(Serialize, ToSchema)]
pub struct Identifier {
    /// dns or ip.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// Renewgate's extension: the inventory object an order acts on.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDecision {
    /// renew, reissue, duplicate or enroll.
    pub action: String,
    /// The inventory object id (usable as `orderId`).
    pub order_id: Option<i64>,
    pub dry_run: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct AcmeOrder {
    /// pending, ready, processing, valid or invalid.
    pub status: String,
    pub expires: String,
    pub identifiers: Vec<Identifier>,
    pub authorizations: Vec<String>,
    pub finalize: String,
    pub certificate: Option<String>,
    pub replaces: Option<String>,
    pub error: Option<AcmeProblem>,
    #[serde(rename = "x-renewgate")]
    pub x_renewgate: OrderDecision,
}

#[derive(Serialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AcmeChallenge {
    /// http-01, dns-01 or tls-alpn-01.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    /// pending, processing, valid or invalid.
    pub status: String,
    pub token: String,
    pub validated: Option<String>,
    pub error: Option<AcmeProblem>,
}

#[derive(Serialize, ToSchema)]
pub struct AcmeAuthorization {
    pub identifier: Identifier,
    /// pending, valid, invalid or deactivated.
    pub status: String,
    pub expires: String,
    pub challenges: Vec<AcmeChallenge>,
    pub wildcard: Option<bool>,
}

/// The certificate chain, PEM (leaf first), as `application/pem-certificate-chain`.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct PemCertificateChain(Vec<u8>);

#[derive(Serialize, ToSchema)]
pub struct SuggestedWindow {
    pub start: String,
    pub end: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenewalInfo {
    pub suggested_window: SuggestedWindow,
}

#[derive(OpenApi)]
#[openapi(paths(
    super::directory,
    super::new_nonce_head,
    super::new_account,
    super::account,
    super::key_change,
    super::orders::new_order,
    super::orders::order,
    super::orders::orders_list,
    super::orders::authz,
    super::orders::challenge,
    super::orders::finalize,
    super::orders::certificate,
    super::orders::revoke,
    super::ari::renewal_info,
))]
pub struct AcmeDoc;
