//! The Venafi error shape, and the one table of Venafi message texts.
//!
//! Bodies: `{"Error": "...", "Success": false}` for certificate calls, OAuth-style
//! `{"error", "error_description"}` for /vedauth and token failures.
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::body::BodyError;
use crate::engine::RenewError;
use crate::engine::validate::PolicyViolation;
use crate::formats::FormatError;

/// `{"Error": "...", "Success": false}`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    error: String,
    success: bool,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody { error: error.into(), success: false }
    }
}

/// The OAuth-style error of `/vedauth` and of token checks: `{"error", "error_description"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    error: String,
    error_description: String,
}

/// The answers every certificate call may give, declared once:
/// `responses((status = 200, ...), VenafiErrors)`.
pub struct VenafiErrors;

impl utoipa::IntoResponses for VenafiErrors {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        let mut answers = VenafiTokenErrors::responses();
        answers.insert("400".into(), answer("The request was refused; `Error` says why", "ErrorBody"));
        answers.insert(
            "403".into(),
            answer("The token lacks the scope (and restriction) the call needs", "OAuthErrorBody"),
        );
        answers
    }
}

/// The answers of the calls that only need a valid token (verify, revoke, version).
pub struct VenafiTokenErrors;

impl utoipa::IntoResponses for VenafiTokenErrors {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        [
            ("401".to_string(), answer("Missing, unknown, expired or revoked token", "OAuthErrorBody")),
            ("503".to_string(), answer("The database is unavailable; try again later", "ErrorBody")),
        ]
        .into_iter()
        .collect()
    }
}

fn answer(description: &str, schema: &str) -> utoipa::openapi::RefOr<utoipa::openapi::response::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build())
        .build()
        .into()
}

#[derive(Debug)]
pub enum VenafiError {
    /// 400 `{"Error", "Success": false}` with the text from the message table.
    Renew(RenewError),
    /// 400 `{"Error", "Success": false}` with a free text.
    BadRequest(String),
    /// 401: missing, unknown, expired or revoked token.
    Unauthorized,
    /// 403 `insufficient_scope`, naming the scope the call needs.
    InsufficientScope(String),
    /// OAuth error body from /vedauth: (status, error, description).
    OAuth(StatusCode, &'static str, String),
    /// A server-side failure that is not the caller's fault.
    Internal(String),
    /// 429 (OAuth shape, `Retry-After`): the login throttle closed this user and source, or the source.
    Throttled(u64),
    /// 503 (OAuth shape): every password-hash slot is taken.
    Busy,
}

impl From<crate::auth::login::LoginError> for VenafiError {
    fn from(e: crate::auth::login::LoginError) -> Self {
        use crate::auth::login::{LoginError, retry_after_secs};
        match e {
            LoginError::Throttled(d) => VenafiError::Throttled(retry_after_secs(d)),
            LoginError::Busy => VenafiError::Busy,
            LoginError::Auth(a) => VenafiError::Internal(a.to_string()),
        }
    }
}

/// The message table: every Venafi text for an engine error lives here.
pub fn message(e: &RenewError) -> String {
    match e {
        RenewError::MissingDn => "Missing CertificateDN.".into(),
        RenewError::DoesNotExist(dn) => format!("Certificate {dn} does not exist."),
        RenewError::AlreadyProcessing(dn) => {
            format!("Certificate {dn} is already being processed.")
        }
        RenewError::ErrorState(dn) => {
            format!("Certificate {dn} is in an error state and cannot be renewed.")
        }
        RenewError::MonitoringOnly(dn) => {
            format!("Certificate {dn} is only enrolled for monitoring.")
        }
        RenewError::Disabled(_) => "Certificate renew error. Certificate is disabled.".into(),
        RenewError::UserCsrRequired(dn) => {
            format!(
                "Certificate renew mismatch. Certificate {dn}, which originated from a User Provided CSR, requires a PKSC#10."
            )
        }
        RenewError::InvalidManagementType(dn, mt) => {
            format!("Certificate renewal failed. Certificate {dn} has an invalid Management type: {mt}.")
        }
        RenewError::PolicyDoesNotExist(dn) => format!("PolicyDN: {dn} does not exist."),
        RenewError::CsrNotBase64(m) => format!("PKCS#10 data not in base64 format; {}.", m.trim_end_matches('.')),
        RenewError::CsrInvalidSignature => "Failed to store csr; Error: InvalidParms.".into(),
        RenewError::StoreFailed(dn, err) => {
            format!("Could not store renewal request on certificate {dn}{err}.")
        }
        RenewError::BadParameter(_, m) => m.clone(),
        RenewError::CertificateMismatch(dn) => {
            format!("CertificateData is not a certificate of {dn}: supply the object's current or an earlier version.")
        }
        RenewError::Policy(v) => policy_message(v),
        RenewError::ReenableFailed(e) => format!("Failed to re-enable the certificate. Error: {e}"),
        RenewError::CsrWriteFailed(e) => format!("Certificate renew error. Failed to write Manual CSR; Error: {e}"),
        RenewError::NoRights(dn) => {
            format!("Certificate {dn} does not exist or you do not have sufficient rights to the object.")
        }
        RenewError::Internal(m) => m.clone(),
    }
}

/// The policy and CSR messages of the seed (Certificates/Renew, HTTP 400): the engine's own
/// wording, which every dialect shows.
pub fn policy_message(v: &PolicyViolation) -> String {
    v.message()
}

/// Retrieve/Renew status texts.
pub const QUEUED_FOR_RENEWAL: &str = "Queued for renewal.";
pub const WORK_TO_DO_TIMEOUT: &str =
    "Certificate processing took longer than WorkToDoTimeout. Call certificates/retrieve...";

impl std::fmt::Display for VenafiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VenafiError::Renew(e) => f.write_str(&message(e)),
            VenafiError::BadRequest(m) | VenafiError::Internal(m) => f.write_str(m),
            VenafiError::Unauthorized => f.write_str("Invalid token format"),
            VenafiError::InsufficientScope(s) => write!(f, "insufficient scope {s}"),
            VenafiError::OAuth(_, e, d) => write!(f, "{e}: {d}"),
            VenafiError::Throttled(secs) => write!(f, "too many failed logins; retry after {secs} s"),
            VenafiError::Busy => f.write_str("too many concurrent logins"),
        }
    }
}

impl From<RenewError> for VenafiError {
    fn from(e: RenewError) -> Self {
        match e {
            RenewError::Internal(m) => VenafiError::Internal(m),
            other => VenafiError::Renew(other),
        }
    }
}

impl From<BodyError> for VenafiError {
    fn from(e: BodyError) -> Self {
        VenafiError::BadRequest(e.to_string())
    }
}

impl From<FormatError> for VenafiError {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Crypto(m) => VenafiError::Internal(m),
            other => VenafiError::BadRequest(other.to_string()),
        }
    }
}

impl From<actix_web::error::BlockingError> for VenafiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        VenafiError::Internal(e.to_string())
    }
}

impl From<r2d2::Error> for VenafiError {
    fn from(e: r2d2::Error) -> Self {
        VenafiError::Internal(format!("database unavailable: {e}"))
    }
}

/// Storage failures: 503 with the database's message (a pool timeout as "database unavailable").
impl From<crate::db::DbError> for VenafiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Pool(e) => VenafiError::Internal(format!("database unavailable: {e}")),
            other => VenafiError::Internal(format!("database: {other}")),
        }
    }
}

impl ResponseError for VenafiError {
    fn status_code(&self) -> StatusCode {
        match self {
            VenafiError::Renew(_) | VenafiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            VenafiError::Unauthorized => StatusCode::UNAUTHORIZED,
            VenafiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            VenafiError::OAuth(s, _, _) => *s,
            VenafiError::Internal(_) | VenafiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            VenafiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let oauth = |error: &str, description: String| {
            serde_json::to_string(&OAuthErrorBody { error: error.into(), error_description: description })
        };
        let body = match self {
            VenafiError::Unauthorized => oauth("session_error", "Invalid token format".into()),
            VenafiError::InsufficientScope(scope) => oauth(
                "insufficient_scope",
                format!("Grant rejected scope '{scope}'. Call POST Authorize/OAuth with the correct scope and restriction. Update the header with the new token and retry."),
            ),
            VenafiError::OAuth(_, e, d) => oauth(e, d.clone()),
            VenafiError::Throttled(secs) => {
                oauth("too_many_requests", format!("Too many failed logins; retry after {secs} seconds."))
            }
            VenafiError::Busy => oauth("temporarily_unavailable", "Too many logins at once; retry shortly.".into()),
            VenafiError::Internal(m) => {
                tracing::error!(error = %m, "internal error answering a Venafi call");
                serde_json::to_string(&ErrorBody::new("The gateway could not complete the request; try again later."))
            }
            other => serde_json::to_string(&ErrorBody::new(other.to_string())),
        }
        // Two string fields always serialise; the fallback keeps the status if that ever changes.
        .unwrap_or_else(|_| "{}".into());
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, VenafiError::Unauthorized) {
            resp.insert_header(("WWW-Authenticate", "Bearer realm=\"renewgate\""));
        }
        if let VenafiError::Throttled(secs) = self {
            resp.insert_header(("Retry-After", secs.to_string()));
        }
        resp.content_type("application/json; charset=utf-8").body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_messages_render_exactly() {
        let dn = "\\VED\\Policy\\Web\\www.example.com".to_string();
        assert_eq!(
            message(&RenewError::ErrorState(dn.clone())),
            "Certificate \\VED\\Policy\\Web\\www.example.com is in an error state and cannot be renewed."
        );
        assert_eq!(
            message(&RenewError::AlreadyProcessing(dn.clone())),
            format!("Certificate {dn} is already being processed.")
        );
        assert_eq!(message(&RenewError::MissingDn), "Missing CertificateDN.");
        assert_eq!(message(&RenewError::CsrInvalidSignature), "Failed to store csr; Error: InvalidParms.");
        assert_eq!(
            policy_message(&PolicyViolation::CsrRequired("\\VED\\Policy\\Web".into())),
            "PKCS#10 data required. Policy \\VED\\Policy\\Web\\ is locked to a User Provided CSR."
        );
        assert_eq!(
            message(&RenewError::UserCsrRequired(dn.clone())),
            format!(
                "Certificate renew mismatch. Certificate {dn}, which originated from a User Provided CSR, requires a PKSC#10."
            )
        );
    }
}
