//! Finalize (RFC 8555 §7.4): a certificate holds exactly the order's names. The CSR must be
//! signed by its key and name the order's identifiers and nothing else: any name of another
//! type (e-mail, URI, UPN or any otherName) or outside the order is refused with `badCSR` naming
//! it. What is issued does not come from the CSR beyond its key: the subject is the CN (the
//! first identifier, when it fits in 64 characters) plus the folder's subject values, the SANs
//! are the order's names, the EKU is serverAuth unless the folder's `acme_ekus` lists more.
use crate::engine::csr::Csr;

use super::db::orders as rows;
use super::ownership::Owner;
use super::{Account, AcmeError, AcmeResult, ErrorType, Identifier, OrderAction, OrderStatus};
use crate::ca::SanSet;
use crate::db::{DbConn, now};
use crate::engine::inventory::{self, CertRef};
use crate::engine::renew::{Accepted, EnrollRequest, IssueAs, RenewRequest, SubjectSpec};
use crate::engine::validate::PolicyViolation;
use crate::engine::{Engine, RenewError, policy, validate};

/// The longest CN (X.520 ub-common-name).
const MAX_CN: usize = 64;

/// How an engine refusal reads in ACME.
fn refusal(e: RenewError) -> AcmeError {
    match e {
        RenewError::AlreadyProcessing(dn) => {
            AcmeError::rate_limited(format!("{dn} is being processed; try again shortly"), 2)
        }
        RenewError::Policy(PolicyViolation::CompromisedKey) => {
            AcmeError::new(400, ErrorType::BadPublicKey, PolicyViolation::CompromisedKey.message())
        }
        RenewError::Policy(v) => AcmeError::bad_csr(v.message()),
        RenewError::Internal(m) => AcmeError::server(m),
        other => AcmeError::bad_csr(other.to_string()),
    }
}

/// Checks a CSR against the order: signature, and exactly the order's names.
pub fn check_csr(csr: &Csr, order: &[Identifier]) -> AcmeResult<()> {
    csr.public_key().map_err(|_| AcmeError::bad_csr("the CSR has no usable public key"))?;
    let _ = openssl::error::ErrorStack::get();
    if !csr.signature_verifies() {
        return Err(AcmeError::bad_csr("the CSR signature does not verify"));
    }
    let sans = SanSet::of_csr(csr);
    let refuse = |what: &str, v: &str| {
        Err(AcmeError::bad_csr(format!(
            "the CSR asks for {what} {v:?}: an ACME certificate holds the order's DNS names and IP addresses only"
        )))
    };
    if let Some(v) = sans.upn.first() {
        return refuse("the UPN", v);
    }
    if let Some(v) = sans.email.first() {
        return refuse("the e-mail address", v);
    }
    if let Some(v) = sans.uri.first() {
        return refuse("the URI", v);
    }
    let known = sans.dns.len() + sans.ip.len();
    if SanSet::general_names_in_csr(csr) > known {
        return Err(AcmeError::bad_csr(
            "the CSR holds a subject alternative name of a type ACME does not issue (an otherName, a directory \
             name, …): an ACME certificate holds the order's DNS names and IP addresses only",
        ));
    }
    let wanted: Vec<&str> = order.iter().map(|i| i.value.as_str()).collect();
    let normalize = |n: &str| -> String {
        match n.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => n.trim_end_matches('.').to_lowercase(),
        }
    };
    let mut asked: Vec<String> = sans.dns.iter().chain(sans.ip.iter()).map(|n| normalize(n)).collect();
    let cn = crate::ca::common_name(csr.subject_name());
    if !cn.is_empty() {
        asked.push(normalize(&cn));
    }
    if let Some(extra) = asked.iter().find(|n| !wanted.contains(&n.as_str())) {
        return Err(AcmeError::bad_csr(format!("the CSR names {extra:?}, which the order does not hold")));
    }
    if let Some(missing) = wanted.iter().find(|w| !asked.iter().any(|a| a == *w)) {
        return Err(AcmeError::bad_csr(format!("the CSR does not name {missing:?}, which the order holds")));
    }
    Ok(())
}

/// What the certificate is issued with (subject values from the folder are applied by the
/// engine's policy check).
pub fn issue_as(order: &[Identifier], p: &policy::EffectivePolicy) -> IssueAs {
    let cn = order.first().map(|i| i.value.clone()).filter(|v| v.chars().count() <= MAX_CN);
    IssueAs {
        subject: SubjectSpec { common_name: cn, ..Default::default() },
        sans: super::orders::san_set(order),
        ekus: p.acme_ekus(),
        acme_order: None,
    }
}

/// Finalizes the account's order `id` with `csr`: the issuance is queued (the order is
/// `processing`; returns its job), or for a dry-run order signed at once by the test issuer.
/// The finalize request waits for its certificate, so a job it may run itself is run here at
/// once, before this returns (`Engine::run_leased`); otherwise the workers run it.
pub fn finalize(engine: &Engine, c: &mut DbConn, req: FinalizeRequest<'_>) -> AcmeResult<Option<i64>> {
    let Some(accepted) = accept(engine, c, req)? else { return Ok(None) };
    if let Some(run) = &accepted.inline
        && let Err(e) = engine.run_leased(c, accepted.job_id, &run.lease)
    {
        // The job stays leased; a worker takes it when the lease expires.
        tracing::warn!(job = accepted.job_id, error = %e, "running the job here failed; the workers will");
    }
    Ok(Some(accepted.job_id))
}

/// A finalize: the account's order `id`, the CSR it sent, and the account's key (which the
/// certificate must not reuse).
pub struct FinalizeRequest<'a> {
    pub account: &'a Account,
    pub id: i64,
    pub csr: Csr,
    pub account_key: &'a openssl::pkey::PKeyRef<openssl::pkey::Public>,
}

fn accept(engine: &Engine, c: &mut DbConn, req: FinalizeRequest<'_>) -> AcmeResult<Option<Accepted>> {
    let FinalizeRequest { account, id, csr, account_key } = req;
    let o = super::orders::get_row(c, account, id)?;
    let status = OrderStatus::stored(&o.status)?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::new(403, ErrorType::OrderNotReady, format!("the order is {status}, not ready")));
    }
    let ids: Vec<Identifier> = serde_json::from_str::<Vec<(String, String)>>(&o.identifiers)
        .unwrap_or_default()
        .into_iter()
        .map(|(kind, value)| Identifier { kind, value })
        .collect();
    check_csr(&csr, &ids)?;
    let pk = csr.public_key().map_err(|_| AcmeError::bad_csr("the CSR has no usable public key"))?;
    if pk.public_eq(account_key) {
        return Err(AcmeError::bad_csr("the certificate key must not be the account key"));
    }
    let fp = crate::ca::public_key_fingerprint(&pk);
    if crate::engine::renew::compromised_key(c, &fp)? {
        return Err(AcmeError::new(400, ErrorType::BadPublicKey, PolicyViolation::CompromisedKey.message()));
    }
    let owner = Owner::of(c, account)?;
    let first = ids.first().map(|i| i.value.clone()).unwrap_or_default();
    let target_folder = match o.target_object_id {
        Some(n) => rows::find_object_folder(c, n)?,
        None => None,
    }
    .unwrap_or_else(|| account.policy_dn.clone());
    let p = policy::effective(c, &target_folder)?;
    let issue = IssueAs { acme_order: Some(o.id), ..issue_as(&ids, &p) };
    if o.dry_run {
        // The same policy checks as a real issuance, then the untrusted test issuer.
        let subject = validate::check(&p, &issue.subject, &issue.sans, crate::ca::KeySpec::of_key(&pk))
            .map_err(|v| AcmeError::bad_csr(v.message()))?;
        let validity = p.validity(engine.default_validity).as_secs();
        super::dry_run::issue(c, o.id, &csr, &subject, &issue, validity)?;
        return Ok(None);
    }
    let coverage_secs = super::detect::policy_secs(&p, "acme_coverage");
    let action = OrderAction::stored(&o.action)?;
    // The order becomes `processing` in the transaction that enqueues its job, and only if it
    // is still `ready`: of two finalizes of one order racing, the second enqueues nothing.
    let raced = std::cell::Cell::new(false);
    let processing = |c: &mut DbConn, a: &Accepted| -> Result<(), RenewError> {
        if !rows::set_order_processing(c, o.id, a.job_id, a.object.id)? {
            raced.set(true);
            return Err(RenewError::Internal(format!("order {} is no longer ready", o.id)));
        }
        Ok(())
    };
    let not_ready = || AcmeError::new(403, ErrorType::OrderNotReady, "the order is being finalized already");
    let accepted = match (action, o.target_object_id) {
        (OrderAction::Renew | OrderAction::Reissue, Some(n)) => {
            // A reissue stays inside the order's coverage: a multi-year plan's end, else the
            // current certificate's notAfter.
            let not_after_max = if action == OrderAction::Reissue {
                match rows::coverage_end(c, n)? {
                    Some(end) => Some(end.and_utc().timestamp()),
                    None => super::detect::object_names(c, n)?.1.map(|na| na.and_utc().timestamp()),
                }
            } else {
                None
            };
            // Renewing a multi-year order starts a new coverage period; a reissue may change the
            // names, and the first one is what later orders match.
            let coverage_end = coverage_secs.filter(|_| action == OrderAction::Renew);
            let with_order = |c: &mut DbConn, a: &Accepted| -> Result<(), RenewError> {
                processing(c, a)?;
                if let Some(secs) = coverage_end {
                    rows::set_coverage_end(c, n, now() + chrono::Duration::seconds(secs))?;
                }
                rows::set_match_name(c, n, &first)?;
                Ok(())
            };
            engine
                .renew_here_with(
                    c,
                    &RenewRequest {
                        certificate: CertRef::ObjectId(n),
                        csr: Some(csr),
                        subject: None,
                        sans: None,
                        reenable: false,
                        certificate_data: None,
                        not_after_max,
                        access: owner.access(),
                        issue_as: Some(issue),
                        object: None,
                    },
                    &with_order,
                )
                .map_err(|e| if raced.get() { not_ready() } else { refusal(e) })?
        }
        (action, target) => {
            // A new object: enroll, or a duplicate of `target` in its folder. Its name is the
            // first free one; a name taken meanwhile (another finalize) is refused as in flight
            // (`new_object_only`: never someone else's object), and the client's retry moves on.
            let folder = match (action, target) {
                (OrderAction::Duplicate, Some(n)) => inventory::find_object(c, &CertRef::ObjectId(n))?
                    .map(|o| o.policy_dn)
                    .unwrap_or(account.policy_dn.clone()),
                _ => account.policy_dn.clone(),
            };
            let base_name = first.trim_start_matches("*.").to_string();
            let mut name = if first.starts_with("*.") { format!("wildcard.{base_name}") } else { base_name.clone() };
            let mut k = 1;
            while inventory::find_object(c, &CertRef::Dn(format!("{folder}\\{name}")))?.is_some() {
                k += 1;
                name = format!("{base_name} ({k})");
            }
            // A duplicate shares its order's coverage; a new multi-year order starts one.
            let duplicate_of = target.filter(|_| action == OrderAction::Duplicate);
            let coverage = match duplicate_of {
                Some(n) => rows::coverage_end(c, n)?,
                None => coverage_secs.map(|s| now() + chrono::Duration::seconds(s)),
            };
            let with_order = |c: &mut DbConn, a: &Accepted| -> Result<(), RenewError> {
                processing(c, a)?;
                rows::insert_object(c, a.object.id, account.id, duplicate_of, coverage, &first, &owner.key)?;
                Ok(())
            };
            engine
                .enroll_here_with(
                    c,
                    &EnrollRequest {
                        policy_dn: folder,
                        object_name: Some(name),
                        csr: Some(csr),
                        subject: issue.subject.clone(),
                        sans: issue.sans.clone(),
                        key_spec: None,
                        management_type: None,
                        overrides: None,
                        issue_as: Some(issue),
                        new_object_only: true,
                    },
                    &with_order,
                )
                .map_err(|e| if raced.get() { not_ready() } else { refusal(e) })?
        }
    };
    Ok(Some(accepted))
}
