//! RFC 7807 problem documents with ACME error types (`urn:ietf:params:acme:error:*`).
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::acme::wire::AcmeProblem;

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub detail: String,
    /// Set by the handler wrapper: every ACME response carries a fresh nonce.
    pub nonce: Option<String>,
    pub algorithms: bool,
    /// Seconds a rate-limited client should wait (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// The problems every JWS-signed request may meet, declared once for the document: 400 (malformed,
/// badNonce, badSignatureAlgorithm, badPublicKey …), 401 (a JWS url that is not the request's) and
/// 403 (unauthorized, a deactivated account). `responses((status = 200, ...), JwsProblems)`.
pub struct JwsProblems;

impl utoipa::IntoResponses for JwsProblems {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>> {
        ["400", "401", "403"].into_iter().map(|status| (status.to_string(), problem_document().into())).collect()
    }
}

fn problem_document() -> utoipa::openapi::response::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description("A problem document")
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("AcmeProblem"))).build(),
        )
        .build()
}

impl Problem {
    pub fn new(status: u16, kind: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            kind,
            detail: detail.into(),
            nonce: None,
            algorithms: false,
            retry_after: None,
        }
    }
    pub fn malformed(d: impl Into<String>) -> Problem {
        Problem::new(400, "malformed", d)
    }
    pub fn unauthorized(d: impl Into<String>) -> Problem {
        Problem::new(403, "unauthorized", d)
    }
    pub fn server(d: impl Into<String>) -> Problem {
        Problem::new(503, "serverInternal", d)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut body = AcmeProblem::new(self.kind, self.detail.as_str(), self.status.as_u16());
        if self.algorithms {
            body.algorithms = Some(super::jws::ALGORITHMS.iter().map(|a| a.to_string()).collect());
        }
        let mut r = HttpResponse::build(self.status);
        r.insert_header(("Cache-Control", "no-store"));
        if let Some(secs) = self.retry_after {
            r.insert_header(("Retry-After", secs.to_string()));
        }
        if let Some(n) = &self.nonce {
            r.insert_header(("Replay-Nonce", n.as_str()));
        }
        if self.status.is_server_error() {
            tracing::error!(detail = %self.detail, "ACME request failed");
        }
        r.content_type("application/problem+json").json(body)
    }
}

impl From<super::jws::JwsError> for Problem {
    fn from(e: super::jws::JwsError) -> Self {
        match e {
            super::jws::JwsError::Malformed(m) => Problem::malformed(m),
            super::jws::JwsError::BadAlgorithm(a) => {
                let mut p = Problem::new(400, "badSignatureAlgorithm", format!("algorithm {a} is not accepted"));
                p.algorithms = true;
                p
            }
            super::jws::JwsError::BadPublicKey(m) => Problem::new(400, "badPublicKey", m),
        }
    }
}

/// The domain's errors keep their type, status, detail and Retry-After.
impl From<crate::acme::AcmeError> for Problem {
    fn from(e: crate::acme::AcmeError) -> Self {
        Problem {
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            kind: e.kind.as_str(),
            detail: e.detail,
            nonce: None,
            algorithms: false,
            retry_after: e.retry_after,
        }
    }
}

impl From<r2d2::Error> for Problem {
    fn from(e: r2d2::Error) -> Self {
        Problem::server(format!("database unavailable: {e}"))
    }
}
impl From<actix_web::error::BlockingError> for Problem {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Problem::server(e.to_string())
    }
}
