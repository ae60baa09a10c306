//! The issuer interface: what the queue's jobs call to have a certificate signed, whichever CA
//! signs it — a built-in CA of this gateway or an upstream CA reached over ACME. The engine has
//! settled what to certify (policy applied) before an issuer sees a request; an issuer only
//! signs, revokes and describes itself.
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::{PKeyRef, Private, Public};
use openssl::x509::{X509, X509NameRef, X509Ref};

use super::csr::Csr;
use super::{IssuerUrls, LeafTemplate, SanSet, build_leaf};

/// What to certify.
pub struct IssueInput<'a> {
    pub subject: &'a X509NameRef,
    pub sans: &'a SanSet,
    pub public_key: &'a PKeyRef<Public>,
    /// The key the gateway generated for this request (service-generated objects): an upstream
    /// CA is sent a CSR signed with it.
    pub private_key: Option<&'a PKeyRef<Private>>,
    /// The requester's CSR as received, when there is one.
    pub csr: Option<&'a Csr>,
    pub validity_secs: u64,
    /// Extended key usages by name; empty: serverAuth and clientAuth.
    pub ekus: &'a [String],
    /// Latest notAfter allowed (unix seconds).
    pub not_after_max: Option<i64>,
}

/// A signed certificate and the chain above it (nearest issuer first).
pub struct Issued {
    pub leaf: X509,
    pub chain: Vec<X509>,
    /// The `cas` row of a built-in CA; None for an upstream CA.
    pub ca_id: Option<i64>,
}

/// Why an issuer did not sign (or revoke).
#[derive(Debug, Clone, PartialEq)]
pub struct IssueError {
    pub message: String,
    /// The upstream problem type (`rateLimited`, `badNonce`, …) or a local class (`crypto`,
    /// `unreachable`), for metrics.
    pub kind: String,
    /// None: retrying cannot help. Some(None): retry with the queue's backoff. Some(Some(d)):
    /// retry no sooner than `d` (an upstream Retry-After).
    pub retry: Option<Option<Duration>>,
}

impl IssueError {
    pub fn permanent(kind: &str, message: impl Into<String>) -> Self {
        IssueError { message: message.into(), kind: kind.into(), retry: None }
    }
    pub fn transient(kind: &str, message: impl Into<String>) -> Self {
        IssueError { message: message.into(), kind: kind.into(), retry: Some(None) }
    }
    pub fn retry_after(kind: &str, message: impl Into<String>, after: Duration) -> Self {
        IssueError { message: message.into(), kind: kind.into(), retry: Some(Some(after)) }
    }
}

impl From<openssl::error::ErrorStack> for IssueError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        IssueError::permanent("crypto", format!("crypto: {e}"))
    }
}

/// A job's progress at an issuer that works in steps (an upstream ACME order), kept with the
/// job: a job resumed after a crash continues where it was instead of starting again.
pub trait JobProgress {
    fn load(&self) -> Option<String>;
    fn save(&self, state: &str) -> Result<(), IssueError>;
}

/// No progress kept (a revocation, a dry run).
pub struct NoProgress;

impl JobProgress for NoProgress {
    fn load(&self) -> Option<String> {
        None
    }
    fn save(&self, _state: &str) -> Result<(), IssueError> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerKind {
    Builtin,
    Acme,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Builtin => "builtin",
            IssuerKind::Acme => "acme",
        }
    }
}

/// What `ca list` and the metrics show of an issuer.
#[derive(Debug, Clone)]
pub struct IssuerInfo {
    pub name: String,
    pub kind: IssuerKind,
    /// `enabled`, `disabled`, or the last failure of an upstream CA.
    pub status: String,
    /// An upstream CA's directory URL.
    pub directory: Option<String>,
    /// The CA certificates above what it issues (a built-in CA's own certificate and parents;
    /// empty for an upstream CA until it has issued).
    pub chain: Vec<X509>,
}

pub trait Issuer: Send + Sync {
    fn describe(&self) -> IssuerInfo;
    fn issue(&self, input: &IssueInput<'_>, progress: &dyn JobProgress) -> Result<Issued, IssueError>;
    /// Revokes a certificate this issuer signed (RFC 5280 reason code).
    fn revoke(&self, leaf: &X509Ref, reason: i32) -> Result<(), IssueError>;
    /// Undoes what a job given up on left outside (published DNS records).
    fn abandon(&self, _progress: &dyn JobProgress) -> Result<(), IssueError> {
        Ok(())
    }
}

/// A built-in CA as an issuer: its certificates name where its CRL and certificate are
/// published.
pub struct BuiltinIssuer {
    pub ca: Arc<super::LoadedCa>,
    pub urls: IssuerUrls,
}

impl Issuer for BuiltinIssuer {
    fn describe(&self) -> IssuerInfo {
        let ca = &self.ca;
        IssuerInfo {
            name: ca.name.clone(),
            kind: IssuerKind::Builtin,
            status: if ca.disabled { "disabled".into() } else { "enabled".into() },
            directory: None,
            chain: ca.chain(),
        }
    }

    fn issue(&self, input: &IssueInput<'_>, _progress: &dyn JobProgress) -> Result<Issued, IssueError> {
        let ca = &self.ca;
        if ca.disabled {
            return Err(IssueError::permanent("disabled", format!("CA {} is disabled", ca.name)));
        }
        let leaf = build_leaf(
            &ca.cert,
            &ca.key,
            &LeafTemplate {
                subject: input.subject,
                sans: input.sans,
                public_key: input.public_key,
                validity_secs: input.validity_secs,
                ekus: input.ekus,
                not_after_max: input.not_after_max,
                urls: Some(&self.urls),
            },
        )?;
        Ok(Issued { leaf, chain: ca.chain(), ca_id: Some(ca.id) })
    }

    /// A built-in CA's revocations are its database rows (what its CRL lists): nothing to call.
    fn revoke(&self, _leaf: &X509Ref, _reason: i32) -> Result<(), IssueError> {
        Ok(())
    }
}
