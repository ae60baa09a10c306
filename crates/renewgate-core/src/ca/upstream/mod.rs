//! Upstream CAs reached over ACME (Let's Encrypt, DigiCert, EJBCA, step-ca, Pebble…), through
//! the instant-acme client. The gateway registers once per issuer (the account sealed under the
//! master key), orders exactly the names the engine settled, answers the challenges with its
//! solver, finalizes with the request's CSR (or one signed by the key it generated), and keeps
//! the order URL with the job so that a job resumed after a crash continues the same order.
pub mod admin;
pub mod db;
pub mod dns01;
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
pub const TSIG_PURPOSE: &str = "acme-issuer-tsig";

/// How an upstream CA's challenges are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Solver {
    /// From the gateway's plain-HTTP listener (`http_listen`), for hosts whose port 80 forwards to it.
    #[serde(rename = "http-01")]
    Http01,
    /// `_acme-challenge` TXT records by RFC 2136 dynamic update signed with TSIG.
    #[serde(rename = "dns-01")]
    Dns01,
    /// Authorizations are already valid upstream (a pre-validated organisation account).
    #[serde(rename = "none")]
    None,
}

impl Solver {
    pub fn parse(s: &str) -> Option<Solver> {
        match s.to_ascii_lowercase().as_str() {
            "http-01" => Some(Solver::Http01),
            "dns-01" => Some(Solver::Dns01),
            "none" => Some(Solver::None),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Solver::Http01 => "http-01",
            Solver::Dns01 => "dns-01",
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
    /// The dns-01 solver's server, key name and zone (its secret is sealed beside).
    #[serde(default)]
    pub dns01: Option<dns01::Dns01Config>,
}

/// What a job keeps of its progress at an upstream CA: the order it placed and the TXT values it
/// published (removed before the job ends, or when it resumes after a crash).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct JobState {
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    dns: Vec<dns01::Published>,
}

impl JobState {
    fn load(progress: &dyn JobProgress) -> JobState {
        match progress.load() {
            Some(s) => serde_json::from_str(&s).unwrap_or(JobState { order: Some(s), dns: vec![] }),
            None => JobState::default(),
        }
    }
    fn save(&self, progress: &dyn JobProgress) -> Result<(), IssueError> {
        progress.save(&serde_json::to_string(self).map_err(|e| IssueError::permanent("internal", e.to_string()))?)
    }
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
    tsig_secret: Option<Vec<u8>>,
    propagation_timeout: Duration,
    last_error: Option<String>,
    master: MasterKey,
    pool: Pool,
}

impl UpstreamIssuer {
    pub fn from_row(
        row: &db::IssuerRow,
        master: &MasterKey,
        pool: &Pool,
        propagation_timeout: Duration,
    ) -> Result<UpstreamIssuer, String> {
        let config: UpstreamConfig =
            serde_json::from_str(&row.config).map_err(|e| format!("issuer {}: unreadable settings: {e}", row.name))?;
        let eab = match (&config.eab_kid, &row.eab_hmac_enc) {
            (Some(kid), Some(sealed)) => Some((
                kid.clone(),
                master.open(EAB_PURPOSE, sealed).map_err(|e| format!("issuer {}: EAB key: {e}", row.name))?,
            )),
            _ => None,
        };
        let tsig_secret = row
            .tsig_secret_enc
            .as_ref()
            .map(|sealed| master.open(TSIG_PURPOSE, sealed))
            .transpose()
            .map_err(|e| format!("issuer {}: TSIG key: {e}", row.name))?;
        Ok(UpstreamIssuer {
            row_id: row.id,
            tsig_secret,
            propagation_timeout,
            name: row.name.clone(),
            directory: row.directory_url.clone(),
            config,
            eab,
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

    /// The stored account, else a new registration (saved sealed for every instance). `fresh`:
    /// the stored account is unknown to the CA; register again.
    async fn account(&self, fresh: bool) -> Result<Account, IssueError> {
        let db_err = |e: diesel::result::Error| IssueError::transient("database", e.to_string());
        // A registration made since this issuer was loaded (by another job or instance) counts.
        let stored = {
            let mut c = self.conn()?;
            db::stored_account(&mut c, self.row_id).map_err(db_err)?
        };
        if !fresh && let Some(sealed) = &stored {
            return self.restore(sealed).await;
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let eab = self.eab.as_ref().map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
        let created = Account::builder_with_http(self.http()?)
            .create(
                &NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false },
                self.directory.clone(),
                eab.as_ref(),
            )
            .await;
        let (account, creds) = match created {
            Ok(a) => a,
            Err(e) => {
                // Another job or instance registered meanwhile (a one-time EAB key refuses the
                // second registration): use its account.
                let mut c = self.conn()?;
                let now = db::stored_account(&mut c, self.row_id).map_err(db_err)?;
                return match now {
                    Some(sealed) if Some(&sealed) != stored.as_ref() => self.restore(&sealed).await,
                    _ => Err(upstream_error(e)),
                };
            }
        };
        let json = serde_json::to_vec(&creds).map_err(|e| IssueError::permanent("internal", e.to_string()))?;
        let sealed =
            self.master.seal(ACCOUNT_PURPOSE, &json).map_err(|e| IssueError::permanent("internal", e.to_string()))?;
        let mut c = self.conn()?;
        if !db::save_account(&mut c, self.row_id, &sealed, account.id(), stored.as_deref()).map_err(db_err)? {
            // Another registration was saved first: every job uses that one.
            if let Some(theirs) = db::stored_account(&mut c, self.row_id).map_err(db_err)? {
                drop(c);
                return self.restore(&theirs).await;
            }
        }
        tracing::info!(issuer = %self.name, account = %account.id(), "registered with the upstream CA");
        Ok(account)
    }

    async fn restore(&self, sealed: &[u8]) -> Result<Account, IssueError> {
        let bad = |e: String| IssueError::permanent("configuration", format!("issuer {}: account: {e}", self.name));
        let json = self.master.open(ACCOUNT_PURPOSE, sealed).map_err(|e| bad(e.to_string()))?;
        let creds: AccountCredentials = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
        Account::builder_with_http(self.http()?).from_credentials(creds).await.map_err(upstream_error)
    }

    /// The order a resumed job placed before, else a new one for `ids`.
    async fn order(
        &self,
        account: &Account,
        ids: &[Identifier],
        state: &mut JobState,
        progress: &dyn JobProgress,
    ) -> Result<Order, IssueError> {
        if let Some(url) = state.order.clone() {
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
        state.order = Some(order.url().to_string());
        state.save(progress)?;
        Ok(order)
    }

    async fn issue_async(&self, input: &IssueInput<'_>, progress: &dyn JobProgress) -> Result<Issued, IssueError> {
        let ids = identifiers(input, self.config.public)?;
        let csr_der = match (input.csr, input.private_key) {
            (Some(csr), _) => csr.der().to_vec(),
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
        let mut state = JobState::load(progress);
        let result = self.ordered(&ids, &csr_der, &mut state, progress).await;
        // Whatever happened, the TXT values this job published (in this attempt or one a crash
        // interrupted) go before the job answers. A certificate the CA issued is kept even when
        // that fails: the values left are named in the log.
        let cleaned = self.remove_published(&mut state, progress);
        let pem = result?;
        if let Err(e) = cleaned {
            tracing::warn!(issuer = %self.name, error = %e.message, left = ?state.dns, "dns-01 values left in the zone");
        }
        let mut certs = X509::stack_from_pem(pem.as_bytes())?.into_iter();
        let leaf = certs
            .next()
            .ok_or_else(|| IssueError::permanent("badCertificate", "the upstream CA returned no certificate"))?;
        Ok(Issued { leaf, chain: certs.collect(), ca_id: None })
    }

    async fn ordered(
        &self,
        ids: &[Identifier],
        csr_der: &[u8],
        state: &mut JobState,
        progress: &dyn JobProgress,
    ) -> Result<String, IssueError> {
        let mut account = self.account(false).await?;
        let mut order = match self.order(&account, ids, state, progress).await {
            // The CA forgot the account (a reset test CA, a deactivated account): register again.
            Err(e) if e.kind == "accountDoesNotExist" => {
                tracing::warn!(issuer = %self.name, "the upstream CA does not know the account; registering again");
                account = self.account(true).await?;
                self.order(&account, ids, state, progress).await?
            }
            other => other?,
        };
        let mut answered = vec![];
        let result = self.complete(&mut order, csr_der, &mut answered, state, progress).await;
        if !answered.is_empty()
            && let Ok(mut c) = self.conn()
        {
            let _ = db::remove_answers(&mut c, &answered);
        }
        result
    }

    fn dns01(&self) -> Result<dns01::Dns01Solver, IssueError> {
        let (Some(cfg), Some(secret)) = (&self.config.dns01, &self.tsig_secret) else {
            return Err(IssueError::permanent(
                "configuration",
                format!("issuer {}: dns-01 has no server or key", self.name),
            ));
        };
        dns01::Dns01Solver::new(cfg, secret.clone()).map_err(|e| dns01_error(&e))
    }

    /// Removes the TXT values the job published and forgets them.
    fn remove_published(&self, state: &mut JobState, progress: &dyn JobProgress) -> Result<(), IssueError> {
        if state.dns.is_empty() {
            return Ok(());
        }
        let solver = self.dns01()?;
        let mut left = vec![];
        let mut failure = None;
        for p in state.dns.drain(..) {
            if let Err(e) = solver.remove(&p) {
                failure = Some(dns01_error(&e));
                left.push(p);
            }
        }
        state.dns = left;
        state.save(progress)?;
        match failure {
            Some(e) => Err(IssueError { retry: Some(None), ..e }),
            None => Ok(()),
        }
    }

    /// Publishes the TXT values of the pending dns-01 challenges and waits until the zone's
    /// authoritative servers answer them. Each value is remembered with the job before it is
    /// added, so that a crash in between still removes it.
    async fn publish_dns01(
        &self,
        order: &mut Order,
        state: &mut JobState,
        progress: &dyn JobProgress,
    ) -> Result<(), IssueError> {
        let mut wanted = vec![];
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(upstream_error)?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            let name = identifier_text(a.identifier().identifier);
            let ch = a.challenge(ChallengeType::Dns01).ok_or_else(|| {
                IssueError::permanent("unauthorized", format!("the upstream CA offers no dns-01 challenge for {name}"))
            })?;
            // A challenge already processing (an attempt that timed out removed its value, or a
            // crash) needs its value back for the CA's validation to succeed.
            if matches!(ch.status, ChallengeStatus::Pending | ChallengeStatus::Processing) {
                wanted.push((dns01::Dns01Solver::record_name(&name), ch.key_authorization().dns_value()));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let solver = self.dns01()?;
        let mut published = vec![];
        for (record, value) in wanted {
            let zone = solver.zone_of(&record).map_err(|e| dns01_error(&e))?;
            let p = dns01::Published { name: record, zone, value };
            if !state.dns.contains(&p) {
                state.dns.push(p.clone());
                state.save(progress)?;
            }
            solver.add(&p).map_err(|e| dns01_error(&e))?;
            published.push(p);
        }
        for p in &published {
            solver.wait_propagated(p, self.propagation_timeout).map_err(|e| dns01_error(&e))?;
        }
        Ok(())
    }

    /// Answers the pending authorizations, finalizes and downloads the chain (PEM).
    async fn complete(
        &self,
        order: &mut Order,
        csr_der: &[u8],
        answered: &mut Vec<String>,
        state: &mut JobState,
        progress: &dyn JobProgress,
    ) -> Result<String, IssueError> {
        let retries =
            RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(90));
        if order.state().status == OrderStatus::Pending && self.config.solver == Solver::Dns01 {
            self.publish_dns01(order, state, progress).await?;
        }
        if order.state().status == OrderStatus::Pending {
            let challenge_type =
                if self.config.solver == Solver::Dns01 { ChallengeType::Dns01 } else { ChallengeType::Http01 };
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
                let mut ch = a.challenge(challenge_type.clone()).ok_or_else(|| {
                    IssueError::permanent(
                        "unauthorized",
                        format!("the upstream CA offers no {} challenge for {name}", self.config.solver.as_str()),
                    )
                })?;
                if !matches!(ch.status, ChallengeStatus::Pending | ChallengeStatus::Processing) {
                    continue;
                }
                // Answered before (a crash, an attempt that timed out): the CA is validating it
                // already; its answer is published again, not the challenge.
                let answer_only = ch.status == ChallengeStatus::Processing;
                if challenge_type == ChallengeType::Dns01 {
                    if answer_only {
                        continue;
                    }
                    // Published and seen on the zone's servers above.
                    ch.set_ready().await.map_err(upstream_error)?;
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
                if !answer_only {
                    ch.set_ready().await.map_err(upstream_error)?;
                }
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
        let code = |r: i32| match r {
            1 => instant_acme::RevocationReason::KeyCompromise,
            2 => instant_acme::RevocationReason::CaCompromise,
            3 => instant_acme::RevocationReason::AffiliationChanged,
            4 => instant_acme::RevocationReason::Superseded,
            5 => instant_acme::RevocationReason::CessationOfOperation,
            _ => instant_acme::RevocationReason::Unspecified,
        };
        let mut with_reason = true;
        loop {
            let reason = with_reason.then(|| code(reason));
            match account.revoke(&instant_acme::RevocationRequest { certificate: &cert, reason }).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let e = upstream_error(e);
                    match e.kind.as_str() {
                        // Revoked before (another instance, an earlier attempt): done.
                        "alreadyRevoked" => return Ok(()),
                        // A reason this CA does not take (Let's Encrypt refuses some): revoke
                        // without one rather than leave the certificate valid there.
                        "badRevocationReason" if with_reason => with_reason = false,
                        _ => return Err(e),
                    }
                }
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

    fn abandon(&self, progress: &dyn JobProgress) -> Result<(), IssueError> {
        let mut state = JobState::load(progress);
        self.remove_published(&mut state, progress)
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

/// A dns-01 failure as the job and the client see it: `dns-01: <cause>: <detail>`.
fn dns01_error(e: &dns01::Dns01Error) -> IssueError {
    let message = format!("dns-01: {}: {}", e.cause, e.detail);
    if e.transient { IssueError::transient(&e.cause, message) } else { IssueError::permanent(&e.cause, message) }
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
        propagation_timeout: Duration,
    ) -> Result<Option<Arc<UpstreamIssuer>>, super::builtin::CaError> {
        let Some(row) = db::find(c, name)? else { return Ok(None) };
        if let Some((at, i)) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&row.name_lower)
            && *at == row.updated_at
            && i.last_error == row.last_error
        {
            return Ok(Some(i.clone()));
        }
        let issuer = Arc::new(
            UpstreamIssuer::from_row(&row, master, pool, propagation_timeout)
                .map_err(super::builtin::CaError::Other)?,
        );
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.name_lower.clone(), (row.updated_at, issuer.clone()));
        Ok(Some(issuer))
    }
}
