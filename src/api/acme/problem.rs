//! RFC 7807 problem documents with ACME error types (`urn:ietf:params:acme:error:*`).
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

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
        let mut body = json!({
            "type": format!("urn:ietf:params:acme:error:{}", self.kind),
            "detail": self.detail,
            "status": self.status.as_u16(),
        });
        if self.algorithms {
            body["algorithms"] = json!(super::jws::ALGORITHMS);
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
        r.content_type("application/problem+json").body(body.to_string())
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
