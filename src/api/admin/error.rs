//! The native API's error shape: `{"error": "<code>", "message": "<text>"}`.
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct NativeErrorBody {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `unavailable`.
    pub error: String,
    pub message: String,
}

/// The answers every operation that takes a bearer token and needs a scope may give, declared
/// once: `responses((status = 200, ...), NativeAuthErrors)`.
pub struct NativeAuthErrors;

impl utoipa::IntoResponses for NativeAuthErrors {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let answer = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("NativeErrorBody"))).build(),
                )
                .build()
                .into()
        };
        [("401".to_string(), answer("Unauthorized")), ("403".to_string(), answer("Forbidden"))].into_iter().collect()
    }
}

#[derive(Debug)]
pub struct NativeError {
    pub status: StatusCode,
    pub message: String,
}

impl NativeError {
    pub fn bad_request(m: impl Into<String>) -> Self {
        NativeError { status: StatusCode::BAD_REQUEST, message: m.into() }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        NativeError { status: StatusCode::NOT_FOUND, message: m.into() }
    }
    /// A broken invariant of stored data (logged by the access log with the request id).
    pub fn internal(m: impl Into<String>) -> Self {
        NativeError { status: StatusCode::INTERNAL_SERVER_ERROR, message: m.into() }
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        NativeError { status: StatusCode::SERVICE_UNAVAILABLE, message: m.into() }
    }
}

impl std::fmt::Display for NativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for NativeError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let code = match self.status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            _ => "unavailable",
        };
        if self.status.is_server_error() {
            tracing::error!(error = %self.message, "native API error");
        }
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header(("WWW-Authenticate", "Bearer realm=\"renewgate\""));
        }
        r.content_type("application/json; charset=utf-8").body(
            serde_json::to_string(&NativeErrorBody { error: code.into(), message: self.message.clone() })
                .unwrap_or_default(),
        )
    }
}

impl From<crate::api::venafi::VenafiError> for NativeError {
    fn from(e: crate::api::venafi::VenafiError) -> Self {
        use crate::api::venafi::VenafiError as V;
        let status = match &e {
            V::Unauthorized => StatusCode::UNAUTHORIZED,
            V::InsufficientScope(_) => StatusCode::FORBIDDEN,
            V::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = match &e {
            V::Unauthorized => "A valid bearer token is required.".to_string(),
            V::InsufficientScope(s) => format!("This call needs the scope '{s}'."),
            other => other.to_string(),
        };
        NativeError { status, message }
    }
}

impl From<actix_web::error::BlockingError> for NativeError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        NativeError::unavailable(e.to_string())
    }
}
impl From<r2d2::Error> for NativeError {
    fn from(e: r2d2::Error) -> Self {
        NativeError::unavailable(format!("database unavailable: {e}"))
    }
}
/// Storage failures: 503 with the database's message (a pool timeout as "database unavailable").
impl From<crate::db::DbError> for NativeError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Pool(e) => NativeError::unavailable(format!("database unavailable: {e}")),
            other => NativeError::unavailable(format!("database: {other}")),
        }
    }
}
