//! The ACME domain's error: an RFC 8555 §6.7 error type, the HTTP status it is sent with, a
//! detail for the client, and `Retry-After` for rate limits. The dialect renders it as an RFC
//! 7807 problem document; the domain never builds HTTP.
use crate::db::DbError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    AccountDoesNotExist,
    AlreadyReplaced,
    AlreadyRevoked,
    BadCsr,
    BadNonce,
    BadPublicKey,
    BadRevocationReason,
    Connection,
    Dns,
    ExternalAccountRequired,
    IncorrectResponse,
    InvalidContact,
    Malformed,
    OrderNotReady,
    RateLimited,
    RejectedIdentifier,
    ServerInternal,
    Tls,
    Unauthorized,
    UnsupportedContact,
    UnsupportedIdentifier,
}

impl ErrorType {
    /// The suffix of `urn:ietf:params:acme:error:`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::AccountDoesNotExist => "accountDoesNotExist",
            ErrorType::AlreadyReplaced => "alreadyReplaced",
            ErrorType::AlreadyRevoked => "alreadyRevoked",
            ErrorType::BadCsr => "badCSR",
            ErrorType::BadNonce => "badNonce",
            ErrorType::BadPublicKey => "badPublicKey",
            ErrorType::BadRevocationReason => "badRevocationReason",
            ErrorType::Connection => "connection",
            ErrorType::Dns => "dns",
            ErrorType::ExternalAccountRequired => "externalAccountRequired",
            ErrorType::IncorrectResponse => "incorrectResponse",
            ErrorType::InvalidContact => "invalidContact",
            ErrorType::Malformed => "malformed",
            ErrorType::OrderNotReady => "orderNotReady",
            ErrorType::RateLimited => "rateLimited",
            ErrorType::RejectedIdentifier => "rejectedIdentifier",
            ErrorType::ServerInternal => "serverInternal",
            ErrorType::Tls => "tls",
            ErrorType::Unauthorized => "unauthorized",
            ErrorType::UnsupportedContact => "unsupportedContact",
            ErrorType::UnsupportedIdentifier => "unsupportedIdentifier",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AcmeError {
    pub status: u16,
    pub kind: ErrorType,
    pub detail: String,
    /// Seconds a rate-limited client should wait.
    pub retry_after: Option<u64>,
}

impl AcmeError {
    pub fn new(status: u16, kind: ErrorType, detail: impl Into<String>) -> AcmeError {
        AcmeError { status, kind, detail: detail.into(), retry_after: None }
    }
    pub fn malformed(d: impl Into<String>) -> AcmeError {
        AcmeError::new(400, ErrorType::Malformed, d)
    }
    pub fn unauthorized(d: impl Into<String>) -> AcmeError {
        AcmeError::new(403, ErrorType::Unauthorized, d)
    }
    pub fn bad_csr(d: impl Into<String>) -> AcmeError {
        AcmeError::new(400, ErrorType::BadCsr, d)
    }
    pub fn rejected_identifier(d: impl Into<String>) -> AcmeError {
        AcmeError::new(400, ErrorType::RejectedIdentifier, d)
    }
    pub fn rate_limited(d: impl Into<String>, retry_after: u64) -> AcmeError {
        AcmeError { retry_after: Some(retry_after), ..AcmeError::new(429, ErrorType::RateLimited, d) }
    }
    pub fn server(d: impl Into<String>) -> AcmeError {
        AcmeError::new(503, ErrorType::ServerInternal, d)
    }
    /// What an object another key owns, or that does not exist, answers (the same text, so
    /// that an account cannot tell them apart).
    pub fn unknown_order(n: i64) -> AcmeError {
        AcmeError::unauthorized(format!("Order {n} not found for this account"))
    }
}

impl std::fmt::Display for AcmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl std::error::Error for AcmeError {}

impl From<DbError> for AcmeError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Pool(e) => AcmeError::server(format!("database unavailable: {e}")),
            e => AcmeError::server(format!("database: {e}")),
        }
    }
}

impl From<diesel::result::Error> for AcmeError {
    fn from(e: diesel::result::Error) -> Self {
        DbError::from(e).into()
    }
}

impl From<r2d2::Error> for AcmeError {
    fn from(e: r2d2::Error) -> Self {
        AcmeError::server(format!("database unavailable: {e}"))
    }
}

impl From<crate::engine::RenewError> for AcmeError {
    fn from(e: crate::engine::RenewError) -> Self {
        AcmeError::server(e.to_string())
    }
}
