//! Keyfactor's error shape: `{"ErrorCode": "0x…", "Message": "…"}`; 401 carries a Basic challenge.
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::RenewError;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KeyfactorErrorBody {
    pub error_code: String,
    pub message: String,
}

/// What a 400 means in every operation's document.
pub const INVALID_REQUEST: &str = "Invalid request (the vendor's documented 400)";
/// What a 404 means in the operations that name a certificate, request or store: a hidden one
/// answers like a missing one.
pub const NOT_VISIBLE: &str = "The certificate, request or store does not exist (or is not visible to the caller)";

/// The responses every Keyfactor operation shares: 401 with its Basic challenge, 403 for a
/// missing permission, both with the `{ErrorCode, Message}` body (the schema is registered by
/// each operation's 400, which names `KeyfactorErrorBody` as its body).
pub struct KeyfactorAuthErrors;

impl utoipa::IntoResponses for KeyfactorAuthErrors {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, ResponseBuilder, Type};
        let answer = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("KeyfactorErrorBody"))).build(),
            )
        };
        let challenge = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some("Basic realm=\"Keyfactor\""))
            .build();
        [
            ("401".to_string(), answer("Not authenticated").header("WWW-Authenticate", challenge).build().into()),
            ("403".to_string(), answer("Missing permission").build().into()),
        ]
        .into_iter()
        .collect()
    }
}

#[derive(Debug)]
pub struct KeyfactorError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 from the login throttle).
    pub retry_after: Option<u64>,
}

/// Codes: the ones seen from real Command, and one per class of our own.
pub const NO_PRIVATE_KEY: &str = "0xA0110002";
pub const VALIDATION: &str = "0xA0110001";
pub const NOT_FOUND: &str = "0xA0110004";
pub const AUTH: &str = "0xA0100001";
pub const UNAVAILABLE: &str = "0xA0100002";

impl KeyfactorError {
    pub fn bad_request(m: impl Into<String>) -> Self {
        KeyfactorError { status: StatusCode::BAD_REQUEST, code: VALIDATION, message: m.into(), retry_after: None }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        KeyfactorError { status: StatusCode::NOT_FOUND, code: NOT_FOUND, message: m.into(), retry_after: None }
    }
    pub fn unauthorized() -> Self {
        KeyfactorError {
            status: StatusCode::UNAUTHORIZED,
            code: AUTH,
            message: "The user is not authenticated.".into(),
            retry_after: None,
        }
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        KeyfactorError { status: StatusCode::FORBIDDEN, code: AUTH, message: m.into(), retry_after: None }
    }
    /// 429: the login throttle closed this user and source, or the source.
    pub fn throttled(secs: u64) -> Self {
        KeyfactorError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: AUTH,
            message: format!("Too many failed logins; retry after {secs} seconds."),
            retry_after: Some(secs),
        }
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        KeyfactorError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: UNAVAILABLE,
            message: m.into(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for KeyfactorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for KeyfactorError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!(error = %self.message, "Keyfactor call failed");
        }
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header(("WWW-Authenticate", "Basic realm=\"Keyfactor\""));
        }
        if let Some(secs) = self.retry_after {
            r.insert_header(("Retry-After", secs.to_string()));
        }
        r.content_type("application/json; charset=utf-8").body(
            serde_json::to_string(&KeyfactorErrorBody { error_code: self.code.into(), message: self.message.clone() })
                .unwrap_or_default(),
        )
    }
}

impl From<RenewError> for KeyfactorError {
    fn from(e: RenewError) -> Self {
        match e {
            RenewError::Internal(m) => KeyfactorError::unavailable(m),
            RenewError::DoesNotExist(_) | RenewError::NoRights(_) => KeyfactorError::not_found(
                "The requested certificate does not exist or you do not have sufficient rights to it.",
            ),
            other => KeyfactorError::bad_request(crate::api::venafi::error::message(&other)),
        }
    }
}

impl From<actix_web::error::BlockingError> for KeyfactorError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        KeyfactorError::unavailable(e.to_string())
    }
}
impl From<r2d2::Error> for KeyfactorError {
    fn from(e: r2d2::Error) -> Self {
        KeyfactorError::unavailable(format!("database unavailable: {e}"))
    }
}
/// Storage failures: 503 with the database's message (a pool timeout as "database unavailable").
impl From<crate::db::DbError> for KeyfactorError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Pool(e) => KeyfactorError::unavailable(format!("database unavailable: {e}")),
            other => KeyfactorError::unavailable(format!("database: {other}")),
        }
    }
}
impl From<crate::formats::FormatError> for KeyfactorError {
    fn from(e: crate::formats::FormatError) -> Self {
        KeyfactorError::bad_request(e.to_string())
    }
}

impl From<crate::auth::login::LoginError> for KeyfactorError {
    fn from(e: crate::auth::login::LoginError) -> Self {
        use crate::auth::login::{LoginError, retry_after_secs};
        match e {
            LoginError::Throttled(d) => KeyfactorError::throttled(retry_after_secs(d)),
            LoginError::Busy => KeyfactorError::unavailable("Too many logins at once; retry shortly."),
            LoginError::Auth(a) => KeyfactorError::unavailable(a.to_string()),
        }
    }
}
