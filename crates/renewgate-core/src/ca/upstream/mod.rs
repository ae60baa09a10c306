//! Upstream CAs reached over ACME (Let's Encrypt, DigiCert, EJBCA, step-ca, Pebble…), through
//! the instant-acme client. The gateway registers once per issuer (the account sealed under the
//! master key), orders exactly the names the engine settled, answers the challenges with its
//! solver, finalizes with the request's CSR (or one signed by the key it generated), and keeps
//! the order URL with the job so that a job resumed after a crash continues the same order.
pub mod admin;
pub mod db;
pub mod http;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeStatus, ChallengeType, ExternalAccountKey, Identifier,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use openssl::hash::MessageDigest;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509, X509Ref, X509ReqBuilder};
use serde::{Deserialize, Serialize};

use super::issuer::{IssueError, IssueInput, Issued, Issuer, IssuerInfo, IssuerKind, JobProgress};
use crate::db::{DbConn, Pool};
use crate::secrets::MasterKey;

/// Sealing purposes (see [`MasterKey::seal`]).
pub const ACCOUNT_PURPOSE: &str = "acme-issuer-account";
pub const EAB_PURPOSE: &str = "acme-issuer-eab";

/// How an upstream CA's challenges are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Solver {
    /// From the gateway's plain-HTTP listener (`http_listen`), for hosts whose port 80 forwards to it.
    #[serde(rename = "http-01")]
    Http01,
    /// Authorizations are already valid upstream (a pre-validated organisation account).
    #[serde(rename = "none")]
    None,
}

impl Solver {
    pub fn parse(s: &str) -> Option<Solver> {
        match s.to_ascii_lowercase().as_str() {
            "http-01" => Some(Solver::Http01),
            "none" => Some(Solver::None),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Solver::Http01 => "http-01",
            Solver::None => "none",
        }
    }
}

/// An upstream issuer's settings (`issuers.config`, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamConfig {
    #[serde(default)]
    pub contact: Vec<String>,
    pub solver: Solver,
    #[serde(default)]
    pub http_listen: Option<String>,
    /// Certificates appear in Certificate Transparency logs: folders using it need a `domains`
    /// policy, and names a public CA refuses are refused before ordering.
    pub public: bool,
    #[serde(default)]
    pub ca_bundle_pem: Option<String>,
    #[serde(default)]
    pub eab_kid: Option<String>,
}

/// Whether a directory URL is on loopback or a private network (then the issuer is not public
/// unless said so).
pub fn is_private_directory(url: &str) -> bool {
    let Ok(uri) = url.parse::<::http::Uri>() else { return false };
    let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback() || a.is_private() || a.is_link_local(),
        Ok(IpAddr::V6(a)) => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => false,
    }
}

/// Names a public CA would refuse (underscores, single labels): refused before ordering.
pub fn public_name_problem(name: &str) -> Option<String> {
    if name.parse::<IpAddr>().is_ok() {
        return None;
    }
    if name.contains('_') {
        return Some(format!("{name} contains an underscore, which a public CA refuses"));
    }
    if !name.trim_start_matches("*.").contains('.') {
        return Some(format!("{name} is a single-label name, which a public CA refuses"));
    }
    None
}

/// One upstream ACME CA.
pub struct UpstreamIssuer {
    pub row_id: i64,
    pub name: String,
    pub directory: String,
    pub config: UpstreamConfig,
    eab: Option<(String, Vec<u8>)>,
    account: Option<Vec<u8>>,
    last_error: Option<String>,
    master: MasterKey,
    pool: Pool,
}

impl UpstreamIssuer {
    pub fn from_row(row: &db::IssuerRow, master: &MasterKey, pool: &Pool) -> Result<UpstreamIssuer, String> {
        let config: UpstreamConfig =
            serde_json::from_str(&row.config).map_err(|e| format!("issuer {}: unreadable settings: {e}", row.name))?;
        let eab = match (&config.eab_kid, &row.eab_hmac_enc) {
            (Some(kid), Some(sealed)) => Some((
                kid.clone(),
                master.open(EAB_PURPOSE, sealed).map_err(|e| format!("issuer {}: EAB key: {e}", row.name))?,
            )),
            _ => None,
        };
        Ok(UpstreamIssuer {
            row_id: row.id,
            name: row.name.clone(),
            directory: row.directory_url.clone(),
            config,
            eab,
            account: row.account_key_enc.clone(),
            last_error: row.last_error.clone(),
            master: master.clone(),
            pool: pool.clone(),
        })
    }

    fn conn(&self) -> Result<crate::db::PooledConn, IssueError> {
        self.pool.get().map_err(|e| IssueError::transient("database", e.to_string()))
    }

    fn http(&self) -> Result<Box<http::UreqClient>, IssueError> {
        http::UreqClient::new(self.config.ca_bundle_pem.as_deref())
            .map(Box::new)
            .map_err(|e| IssueError::permanent("configuration", format!("issuer {}: {e}", self.name)))
    }

    /// The stored account, else a new registration (saved sealed for every instance).
    async fn account(&self, fresh: bool) -> Result<Account, IssueError> {
        if !fresh {
            // A registration made since this issuer was loaded (by another job or instance).
            let stored = {
                let mut c = self.conn()?;
                db::find_any(&mut c, &self.name)
                    .map_err(|e| IssueError::transient("database", e.to_string()))?
                    .and_then(|r| r.account_key_enc)
                    .or_else(|| self.account.clone())
            };
            if let Some(sealed) = stored {
                let json = self.master.open(ACCOUNT_PURPOSE, &sealed).map_err(|e| {
                    IssueError::permanent("configuration", format!("issuer {}: account: {e}", self.name))
                })?;
                let creds: AccountCredentials = serde_json::from_slice(&json).map_err(|e| {
                    IssueError::permanent("configuration", format!("issuer {}: account: {e}", self.name))
                })?;
                return Account::builder_with_http(self.http()?).from_credentials(creds).await.map_err(upstream_error);
            }
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let eab = self.eab.as_ref().map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
        let (account, creds) = Account::builder_with_http(self.http()?)
            .create(
                &NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false },
                self.directory.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(upstream_error)?;
        let json = serde_json::to_vec(&creds).map_err(|e| IssueError::permanent("internal", e.to_string()))?;
        let sealed =
            self.master.seal(ACCOUNT_PURPOSE, &json).map_err(|e| IssueError::permanent("internal", e.to_string()))?;
        let mut c = self.conn()?;
        db::save_account(&mut c, self.row_id, &sealed, account.id())
            .map_err(|e| IssueError::transient("database", e.to_string()))?;
        tracing::info!(issuer = %self.name, account = %account.id(), "registered with the upstream CA");
        Ok(account)
    }

    /// The order a resumed job placed before, else a new one for `ids`.
    async fn order(
        &self,
        account: &Account,
        ids: &[Identifier],
        progress: &dyn JobProgress,
    ) -> Result<Order, IssueError> {
        if let Some(url) = progress.load() {
            match account.order(url.clone()).await {
                Ok(mut o) => {
                    if o.state().status != OrderStatus::Invalid {
                        tracing::info!(issuer = %self.name, order = %url, "continuing the upstream order of a resumed job");
                        return Ok(o);
                    }
                    tracing::info!(issuer = %self.name, order = %url, "the resumed job's order is invalid; placing another");
                }
                Err(e) => {
                    let e = upstream_error(e);
                    if e.kind != "accountDoesNotExist" && e.kind != "malformed" && e.kind != "unauthorized" {
                        return Err(e);
                    }
                }
            }
        }
        let order = account.new_order(&NewOrder::new(ids)).await.map_err(upstream_error)?;
        progress.save(order.url())?;
        Ok(order)
    }

    async fn issue_async(&self, input: &IssueInput<'_>, progress: &dyn JobProgress) -> Result<Issued, IssueError> {
        let ids = identifiers(input, self.config.public)?;
        let csr_der = match (input.csr, input.private_key) {
            (Some(csr), _) => csr.to_der()?,
            (None, Some(key)) => build_csr(input, key)?,
            (None, None) => {
                return Err(IssueError::permanent(
                    "configuration",
                    format!(
                        "the upstream CA {} signs CSRs only: a renewal needs a new CSR or a key the gateway generates",
                        self.name
                    ),
                ));
            }
        };
        let mut account = self.account(false).await?;
        let mut order = match self.order(&account, &ids, progress).await {
            // The CA forgot the account (a reset test CA, a deactivated account): register again.
            Err(e) if e.kind == "accountDoesNotExist" => {
                tracing::warn!(issuer = %self.name, "the upstream CA does not know the account; registering again");
                account = self.account(true).await?;
                self.order(&account, &ids, progress).await?
            }
            other => other?,
        };
        let mut answered = vec![];
        let result = self.complete(&mut order, &csr_der, &mut answered).await;
        if !answered.is_empty()
            && let Ok(mut c) = self.conn()
        {
            let _ = db::remove_answers(&mut c, &answered);
        }
        let pem = result?;
        let mut certs = X509::stack_from_pem(pem.as_bytes())?.into_iter();
        let leaf = certs
            .next()
            .ok_or_else(|| IssueError::permanent("badCertificate", "the upstream CA returned no certificate"))?;
        Ok(Issued { leaf, chain: certs.collect(), ca_id: None })
    }

    /// Answers the pending authorizations, finalizes and downloads the chain (PEM).
    async fn complete(
        &self,
        order: &mut Order,
        csr_der: &[u8],
        answered: &mut Vec<String>,
    ) -> Result<String, IssueError> {
        let retries =
            RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(90));
        if order.state().status == OrderStatus::Pending {
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(upstream_error)?;
                match a.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(IssueError::permanent(
                            "unauthorized",
                            format!("an authorization of the upstream order is {other:?}"),
                        ));
                    }
                }
                let name = identifier_text(a.identifier().identifier);
                if self.config.solver == Solver::None {
                    return Err(IssueError::permanent(
                        "unauthorized",
                        format!("{name} is not pre-validated at the upstream CA {} (solver none)", self.name),
                    ));
                }
                let mut ch = a.challenge(ChallengeType::Http01).ok_or_else(|| {
                    IssueError::permanent(
                        "unauthorized",
                        format!("the upstream CA offers no http-01 challenge for {name}"),
                    )
                })?;
                if ch.status != ChallengeStatus::Pending {
                    // Answered before a crash: the CA is validating it already.
                    continue;
                }
                let token = ch.token.clone();
                let key_auth = ch.key_authorization();
                {
                    let mut c = self.conn()?;
                    db::put_answer(&mut c, &token, key_auth.as_str(), chrono::Duration::minutes(10))
                        .map_err(|e| IssueError::transient("database", e.to_string()))?;
                }
                answered.push(token);
                ch.set_ready().await.map_err(upstream_error)?;
            }
        }
        let status = match order.state().status {
            OrderStatus::Pending => order.poll_ready(&retries).await.map_err(upstream_error)?,
            s => s,
        };
        match status {
            OrderStatus::Ready => order.finalize_csr(csr_der).await.map_err(upstream_error)?,
            OrderStatus::Processing | OrderStatus::Valid => {}
            OrderStatus::Invalid | OrderStatus::Pending => {
                let detail = order.state().error.as_ref().and_then(|p| p.detail.clone());
                return Err(IssueError::permanent(
                    "unauthorized",
                    format!("the upstream order is invalid: {}", detail.unwrap_or_else(|| "validation failed".into())),
                ));
            }
        }
        order.poll_certificate(&retries).await.map_err(upstream_error)
    }

    async fn revoke_async(&self, leaf: &X509Ref, reason: i32) -> Result<(), IssueError> {
        let account = self.account(false).await?;
        let der = leaf.to_der()?;
        let cert = rustls_pki_types::CertificateDer::from(der);
        let reason = match reason {
            1 => instant_acme::RevocationReason::KeyCompromise,
            2 => instant_acme::RevocationReason::CaCompromise,
            3 => instant_acme::RevocationReason::AffiliationChanged,
            4 => instant_acme::RevocationReason::Superseded,
            5 => instant_acme::RevocationReason::CessationOfOperation,
            _ => instant_acme::RevocationReason::Unspecified,
        };
        match account.revoke(&instant_acme::RevocationRequest { certificate: &cert, reason: Some(reason) }).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = upstream_error(e);
                // Revoked before (another instance, an earlier attempt): done.
                if e.kind == "alreadyRevoked" { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Runs one upstream exchange on a single-threaded runtime of the calling worker thread,
    /// and records its outcome as the issuer's status.
    fn run<T>(&self, f: impl std::future::Future<Output = Result<T, IssueError>>) -> Result<T, IssueError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| IssueError::transient("internal", e.to_string()))?;
        let out = rt.block_on(f);
        let status = out.as_ref().err().map(|e| format!("{}: {}", e.kind, e.message));
        if status != self.last_error
            && let Ok(mut c) = self.conn()
        {
            let _ = db::set_last_error(&mut c, self.row_id, status.as_deref());
        }
        out
    }
}

impl Issuer for UpstreamIssuer {
    fn describe(&self) -> IssuerInfo {
        IssuerInfo {
            name: self.name.clone(),
            kind: IssuerKind::Acme,
            status: match &self.last_error {
                Some(e) => format!("failing ({e})"),
                None => "enabled".into(),
            },
            directory: Some(self.directory.clone()),
            chain: vec![],
        }
    }

    fn issue(&self, input: &IssueInput<'_>, progress: &dyn JobProgress) -> Result<Issued, IssueError> {
        self.run(self.issue_async(input, progress))
    }

    fn revoke(&self, leaf: &X509Ref, reason: i32) -> Result<(), IssueError> {
        self.run(self.revoke_async(leaf, reason))
    }
}

/// The order's identifiers: the DNS names and IP addresses settled for the certificate (and its
/// CN when it is a name). An ACME CA certifies nothing else.
fn identifiers(input: &IssueInput<'_>, public: bool) -> Result<Vec<Identifier>, IssueError> {
    let s = input.sans;
    if let Some(other) = s.email.first().or(s.uri.first()).or(s.upn.first()) {
        return Err(IssueError::permanent(
            "rejectedIdentifier",
            format!("an ACME CA certifies DNS names and IP addresses only, not {other}"),
        ));
    }
    let mut names: Vec<String> = vec![];
    let cn = super::common_name(input.subject);
    if !cn.is_empty() && cn.parse::<IpAddr>().is_err() && cn.contains('.') && !cn.contains(' ') {
        names.push(cn.to_ascii_lowercase());
    }
    for d in &s.dns {
        let d = d.to_ascii_lowercase();
        if !names.contains(&d) {
            names.push(d);
        }
    }
    let mut ids = vec![];
    for n in &names {
        if public && let Some(p) = public_name_problem(n) {
            return Err(IssueError::permanent("rejectedIdentifier", p));
        }
        ids.push(Identifier::Dns(n.clone()));
    }
    for ip in &s.ip {
        let addr: IpAddr =
            ip.parse().map_err(|_| IssueError::permanent("rejectedIdentifier", format!("bad IP {ip}")))?;
        ids.push(Identifier::Ip(addr));
    }
    if ids.is_empty() {
        return Err(IssueError::permanent("rejectedIdentifier", "the certificate names no DNS name or IP address"));
    }
    Ok(ids)
}

fn identifier_text(id: &Identifier) -> String {
    match id {
        Identifier::Dns(d) => d.clone(),
        Identifier::Ip(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

/// A CSR for the order's names, signed with the key the gateway generated.
fn build_csr(
    input: &IssueInput<'_>,
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
) -> Result<Vec<u8>, IssueError> {
    let mut b = X509ReqBuilder::new()?;
    b.set_subject_name(input.subject)?;
    b.set_pubkey(key)?;
    let mut sans = SubjectAlternativeName::new();
    let cn = super::common_name(input.subject);
    let mut any = false;
    if !cn.is_empty()
        && cn.contains('.')
        && cn.parse::<IpAddr>().is_err()
        && !input.sans.dns.iter().any(|d| d.eq_ignore_ascii_case(&cn))
    {
        sans.dns(&cn);
        any = true;
    }
    for d in &input.sans.dns {
        sans.dns(d);
        any = true;
    }
    for i in &input.sans.ip {
        sans.ip(i);
        any = true;
    }
    if any {
        let mut exts = Stack::new()?;
        exts.push(sans.build(&b.x509v3_context(None))?)?;
        b.add_extensions(&exts)?;
    }
    let digest = super::KeySpec::of_key(key).map(|k| k.digest()).unwrap_or(MessageDigest::sha256());
    b.sign(key, digest)?;
    Ok(b.build().to_der()?)
}

/// An instant-acme error as the queue sees it: its problem type, and whether to retry.
fn upstream_error(e: instant_acme::Error) -> IssueError {
    match e {
        instant_acme::Error::Api(p) => {
            let kind = p
                .r#type
                .as_deref()
                .map(|t| t.rsplit(':').next().unwrap_or(t).to_string())
                .unwrap_or_else(|| "problem".into());
            let message = p.detail.clone().unwrap_or_else(|| kind.clone());
            match kind.as_str() {
                "rateLimited" => IssueError::retry_after(&kind, message, Duration::from_secs(60)),
                "badNonce" | "serverInternal" | "connection" => IssueError::transient(&kind, message),
                _ => IssueError::permanent(&kind, message),
            }
        }
        instant_acme::Error::Timeout(_) => {
            IssueError::transient("timeout", "the upstream CA did not finish the order in time")
        }
        other => IssueError::transient("unreachable", format!("the upstream CA cannot be reached: {other}")),
    }
}

/// Loaded upstream issuers, reloaded when their row changes (`ca update` from the CLI reaches a
/// running gateway without a restart).
#[derive(Default)]
pub struct Upstreams {
    cache: RwLock<HashMap<String, (chrono::NaiveDateTime, Arc<UpstreamIssuer>)>>,
}

impl Upstreams {
    pub fn get(
        &self,
        c: &mut DbConn,
        name: &str,
        master: &MasterKey,
        pool: &Pool,
    ) -> Result<Option<Arc<UpstreamIssuer>>, super::builtin::CaError> {
        let Some(row) = db::find(c, name)? else { return Ok(None) };
        if let Some((at, i)) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&row.name_lower)
            && *at == row.updated_at
            && i.last_error == row.last_error
        {
            return Ok(Some(i.clone()));
        }
        let issuer = Arc::new(UpstreamIssuer::from_row(&row, master, pool).map_err(super::builtin::CaError::Other)?);
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.name_lower.clone(), (row.updated_at, issuer.clone()));
        Ok(Some(issuer))
    }
}
