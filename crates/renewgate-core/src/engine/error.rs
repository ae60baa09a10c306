//! What can go wrong in the engine, in domain terms. Each dialect renders these in its own
//! error shape; the variants carry what the vendor messages need (DNs, values, reasons).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenewError {
    #[error("missing certificate DN")]
    MissingDn,
    #[error("certificate {0} does not exist")]
    DoesNotExist(String),
    #[error("certificate {0} is already being processed")]
    AlreadyProcessing(String),
    #[error("certificate {0} is in an error state")]
    ErrorState(String),
    #[error("certificate {0} is only enrolled for monitoring")]
    MonitoringOnly(String),
    #[error("certificate is disabled")]
    Disabled(String),
    #[error("certificate {0} originated from a user-provided CSR and requires one")]
    UserCsrRequired(String),
    #[error("certificate {0} has management type {1}")]
    InvalidManagementType(String, String),
    #[error("policy folder {0} does not exist")]
    PolicyDoesNotExist(String),
    #[error("PKCS#10 data not in base64 format: {0}")]
    CsrNotBase64(String),
    #[error("the CSR signature does not verify")]
    CsrInvalidSignature,
    #[error("could not store the renewal request on {0}: {1}")]
    StoreFailed(String, String),
    /// A request value is missing or malformed (field name, explanation).
    #[error("{0}: {1}")]
    BadParameter(String, String),
    /// The stored certificate data given by the caller is not a version of the object.
    #[error("the supplied certificate is not a version of {0}")]
    CertificateMismatch(String),
    #[error("policy violation: {0:?}")]
    Policy(super::validate::PolicyViolation),
    #[error("failed to re-enable the certificate: {0}")]
    ReenableFailed(String),
    #[error("failed to write the CSR: {0}")]
    CsrWriteFailed(String),
    /// Outside the caller's folders, or absent: one answer for both so nothing leaks.
    #[error("certificate {0} does not exist or the caller has no rights to it")]
    NoRights(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<diesel::result::Error> for RenewError {
    fn from(e: diesel::result::Error) -> Self {
        RenewError::Internal(format!("database: {e}"))
    }
}

impl From<crate::db::DbError> for RenewError {
    fn from(e: crate::db::DbError) -> Self {
        RenewError::Internal(format!("database: {e}"))
    }
}

impl From<r2d2::Error> for RenewError {
    fn from(e: r2d2::Error) -> Self {
        RenewError::Internal(format!("database pool: {e}"))
    }
}

impl From<openssl::error::ErrorStack> for RenewError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        RenewError::Internal(format!("crypto: {e}"))
    }
}
