//! Orders, authorizations and challenges (RFC 8555 §7.4, §7.5): newOrder decides its action up
//! front (explicit action in the URL, then `replaces`, then auto-detection), checks every name
//! against the account's folder before writing anything, and plans one authorization per name —
//! pre-validated by the account's own EAB key, or with challenges the account must answer
//! itself. A challenge answer enqueues a validation job ([`super::jobs`]). Statuses move only
//! forward: authorizations make an order `ready` or `invalid`, the issuance job makes it
//! `valid` or `invalid`.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use chrono::NaiveDateTime;

use super::db::orders::{self as rows, NewAuthz, NewOrder};
use super::detect;
use super::ownership::Owner;
use super::validate::{ChallengeKind, Failure};
use super::{
    Account, AcmeError, AcmeResult, AuthzStatus, ChallengeStatus, ErrorType, Identifier, OrderAction, OrderStatus,
    RequestedAction,
};
use crate::ca::SanSet;
use crate::db::{DbConn, write_tx};
use crate::engine::inventory::{self, CertRef};
use crate::engine::{Engine, policy, validate};
use crate::vocab::{JobState, ObjectState};

/// An order as the client sees it.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub id: i64,
    pub status: OrderStatus,
    pub expires: NaiveDateTime,
    pub identifiers: Vec<Identifier>,
    pub authz_ids: Vec<i64>,
    pub action: OrderAction,
    /// The inventory object it acts on or created (the DigiCert orderId).
    pub object_id: Option<i64>,
    pub dry_run: bool,
    pub replaces: Option<String>,
    /// The issued certificate version (its download id), once `valid`.
    pub certificate_id: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ChallengeView {
    pub id: i64,
    pub authz_id: i64,
    pub kind: ChallengeKind,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated: Option<NaiveDateTime>,
    pub error: Option<Failure>,
}

#[derive(Debug, Clone)]
pub struct AuthzView {
    pub id: i64,
    pub identifier: Identifier,
    pub wildcard: bool,
    pub status: AuthzStatus,
    pub expires: NaiveDateTime,
    pub challenges: Vec<ChallengeView>,
}

/// A newOrder as the dialect parsed it.
pub struct NewOrderRequest {
    /// `(type, value)` as sent.
    pub identifiers: Vec<(String, String)>,
    pub action: RequestedAction,
    pub replaces: Option<String>,
    pub dry_run: bool,
}

fn stored_identifiers(json: &str) -> Vec<Identifier> {
    let pairs: Vec<(String, String)> = serde_json::from_str(json).unwrap_or_default();
    pairs.into_iter().map(|(kind, value)| Identifier { kind, value }).collect()
}

fn view(c: &mut DbConn, o: rows::Order) -> AcmeResult<OrderView> {
    let o = refresh(c, o)?;
    Ok(OrderView {
        id: o.id,
        status: OrderStatus::stored(&o.status)?,
        expires: o.expires,
        identifiers: stored_identifiers(&o.identifiers),
        authz_ids: rows::authz_ids(c, o.id)?,
        action: OrderAction::stored(&o.action)?,
        object_id: o.object_id.or(o.target_object_id),
        dry_run: o.dry_run,
        replaces: o.replaces,
        certificate_id: o.certificate_id.filter(|_| o.status == OrderStatus::Valid.as_str()),
        error: o.error,
    })
}

/// The account's order `id` (another account's answers like a missing one).
fn owned_order(c: &mut DbConn, account: &Account, id: i64) -> AcmeResult<rows::Order> {
    rows::find_order(c, id)?
        .filter(|o| o.account_id == account.id)
        .ok_or_else(|| AcmeError::unauthorized("no such order for this account"))
}

/// An order of the account, brought up to date.
pub fn get(c: &mut DbConn, account: &Account, id: i64) -> AcmeResult<OrderView> {
    let o = owned_order(c, account, id)?;
    view(c, o)
}

pub(super) fn get_row(c: &mut DbConn, account: &Account, id: i64) -> AcmeResult<rows::Order> {
    let o = owned_order(c, account, id)?;
    refresh(c, o)
}

/// Brings an order's status up to date: authorizations → ready/invalid; the issuance job → valid/invalid.
fn refresh(c: &mut DbConn, mut o: rows::Order) -> AcmeResult<rows::Order> {
    let next = match OrderStatus::stored(&o.status)? {
        OrderStatus::Pending => {
            let mut st = vec![];
            for s in rows::authz_statuses(c, o.id)? {
                st.push(AuthzStatus::stored(&s)?);
            }
            if st.iter().any(|s| !matches!(s, AuthzStatus::Pending | AuthzStatus::Valid)) {
                Some((OrderStatus::Invalid, None, None))
            } else if st.iter().all(|s| *s == AuthzStatus::Valid) {
                Some((OrderStatus::Ready, None, None))
            } else {
                None
            }
        }
        OrderStatus::Processing => match o.job_id.map(|j| inventory::job(c, j)).transpose()?.flatten() {
            Some(j) if j.state == JobState::Done => Some((OrderStatus::Valid, j.result_cert_id, None)),
            Some(j) if j.state == JobState::Failed => Some((OrderStatus::Invalid, None, j.error)),
            _ => None,
        },
        _ => None,
    };
    if let Some((status, cert, err)) = next {
        let certificate_id = cert.or(o.certificate_id);
        crate::db::autocommit_write(c, |c| rows::set_order_status(c, o.id, status.as_str(), certificate_id, &err))?;
        o.status = status.as_str().to_string();
        o.certificate_id = certificate_id;
        o.error = err;
    }
    Ok(o)
}

/// Parses, normalizes and de-duplicates the identifiers of a newOrder.
fn identifiers(sent: &[(String, String)]) -> AcmeResult<Vec<Identifier>> {
    if sent.is_empty() {
        return Err(AcmeError::malformed("identifiers must not be empty"));
    }
    if sent.len() > super::MAX_IDENTIFIERS {
        return Err(AcmeError::rejected_identifier(format!(
            "an order may hold at most {} identifiers, not {}",
            super::MAX_IDENTIFIERS,
            sent.len()
        )));
    }
    let mut out: Vec<Identifier> = vec![];
    for (t, v) in sent {
        let id = Identifier::parse(t, v)?;
        if !out.iter().any(|x| x.value == id.value) {
            out.push(id);
        }
    }
    Ok(out)
}

pub fn san_set(ids: &[Identifier]) -> SanSet {
    SanSet {
        dns: ids.iter().filter(|i| i.kind() == super::IdentifierType::Dns).map(|i| i.value.clone()).collect(),
        ip: ids.iter().filter(|i| i.kind() == super::IdentifierType::Ip).map(|i| i.value.clone()).collect(),
        ..Default::default()
    }
}

/// `replaces` in newOrder: garbage → `malformed`; a certificate not issued here → nothing to
/// link (accepted, as lego sends it on every renewal); an object the account may not act on →
/// the same answer as an unknown order; already replaced by an order that issued (or is
/// issuing) → 409. Returns the object and the certID in its canonical form.
fn replaced_object(c: &mut DbConn, id: &str, owner: &Owner, dry_run: bool) -> AcmeResult<Option<(i64, String)>> {
    let (aki, serial) = super::renewal_info::parse_cert_id(id)
        .ok_or_else(|| AcmeError::malformed("replaces is not a certID (base64url(AKI) \".\" base64url(serial))"))?;
    let Some(v) = super::db::ari::find_version(c, &aki, &serial)? else { return Ok(None) };
    let obj = owner.object(c, v.object_id)?;
    let canonical = openssl::x509::X509::from_der(&v.der)
        .ok()
        .and_then(|x| super::renewal_info::cert_id(&x))
        .unwrap_or_else(|| id.to_string());
    if !dry_run && rows::already_replaced(c, &canonical)? {
        return Err(AcmeError::new(
            409,
            ErrorType::AlreadyReplaced,
            format!("certificate {canonical} has already been replaced"),
        ));
    }
    Ok(Some((obj.id, canonical)))
}

/// newOrder (RFC 8555 §7.4).
pub fn create(_engine: &Engine, c: &mut DbConn, account: &Account, req: NewOrderRequest) -> AcmeResult<OrderView> {
    let ids = identifiers(&req.identifiers)?;
    let owner = Owner::of(c, account)?;
    let requested: Vec<String> = ids.iter().map(|i| i.value.clone()).collect();
    // Every name must be one the account's folder allows.
    let p = policy::effective(c, &account.policy_dn)?;
    let subject = super::finalize::issue_as(&ids, &p).subject;
    if let Err(v) = validate::check(&p, &subject, &san_set(&ids), None) {
        return Err(AcmeError::rejected_identifier(v.message()));
    }
    // `replaces` (RFC 9773 §5): the certificate being replaced names the object to act on.
    let replaced = match &req.replaces {
        None => None,
        Some(id) => replaced_object(c, id, &owner, req.dry_run)?,
    };
    // Stored in canonical form so a second replacement of the same certificate is found.
    let replaces = match (&replaced, req.replaces) {
        (Some((_, canonical)), _) => Some(canonical.clone()),
        (None, r) => r,
    };
    let (action, target) = match req.action {
        RequestedAction::On(a, n) => {
            if let Some((m, _)) = replaced.as_ref().filter(|(m, _)| *m != n) {
                return Err(AcmeError::malformed(format!("replaces identifies order {m}, URL names {n}")));
            }
            let obj = owner.object(c, n)?;
            if a == OrderAction::Duplicate {
                let np = policy::effective(c, &obj.policy_dn)?;
                if !np.flag("acme_allow_duplicates", false) {
                    return Err(AcmeError::unauthorized(format!("The profile of order {n} does not allow duplicates")));
                }
            }
            if matches!(a, OrderAction::Renew | OrderAction::Duplicate) {
                let (names, _) = detect::object_names(c, n)?;
                if !detect::names_match(&names, &requested) {
                    return Err(AcmeError::rejected_identifier(format!(
                        "the names {requested:?} do not match order {n} ({names:?}): a {a} keeps the order's names"
                    )));
                }
            }
            if obj.state == ObjectState::Processing {
                return Err(AcmeError::rate_limited(format!("Order {n} is being processed; try again shortly"), 2));
            }
            (a, Some(n))
        }
        RequestedAction::Enroll => (OrderAction::Enroll, None),
        RequestedAction::Auto => {
            let found = match replaced {
                Some((m, _)) => Some(m),
                None => detect::find_match(c, &owner, &requested)?,
            };
            match found {
                Some(id) => detect::default_action(c, id)?,
                None => (OrderAction::Enroll, None),
            }
        }
    };
    // Decide every authorization before writing anything, so a refused name leaves no order
    // behind. A name the account's own EAB key pre-validates gets none; every other one gets
    // challenges with one token, shared by its challenges (as Boulder does): the key
    // authorization is the same whichever the client answers.
    let domains = p.domains();
    let mut plan = vec![];
    for id in &ids {
        let name = id.authz_name().to_string();
        let covered = id.kind() == super::IdentifierType::Dns
            && !domains.is_empty()
            && domains.iter().any(|d| name == *d || name.ends_with(&format!(".{d}")));
        let token = if account.prevalidated && covered {
            None
        } else {
            let mut tok = [0u8; 32];
            openssl::rand::rand_bytes(&mut tok).map_err(|e| AcmeError::server(e.to_string()))?;
            Some(B64U.encode(tok))
        };
        let kinds: Vec<&'static str> =
            super::validate::offered(&name, id.is_wildcard()).iter().map(|k| k.as_str()).collect();
        plan.push((name, id.is_wildcard(), token, kinds));
    }
    let challenged = plan.iter().filter(|(_, _, t, _)| t.is_some()).count() as i64;
    let authz: Vec<NewAuthz> = plan
        .iter()
        .map(|(name, wildcard, token, kinds)| NewAuthz {
            identifier: name,
            wildcard: *wildcard,
            challenges: token.as_deref().map(|t| (t, kinds.as_slice())),
        })
        .collect();
    let pairs: Vec<(String, String)> = ids.iter().map(|i| (i.kind.clone(), i.value.clone())).collect();
    let new = NewOrder {
        account_id: account.id,
        identifiers: serde_json::to_string(&pairs).unwrap_or_default(),
        action: action.as_str(),
        target_object_id: target,
        replaces: &replaces,
        dry_run: req.dry_run,
    };
    // The limit is checked in the transaction that writes the order, under the account's lock
    // (PostgreSQL; SQLite writes one at a time), so parallel orders cannot pass it together.
    let oid = write_tx(c, Some(7_263_000 + account.id), |tx| -> AcmeResult<i64> {
        if challenged > 0 {
            let pending = rows::pending_authz_count(tx, account.id)?;
            if pending + challenged > super::MAX_PENDING_AUTHZ {
                return Err(AcmeError::rate_limited(
                    format!(
                        "the account has {pending} pending authorizations; at most {} may wait for validation \
                         (answer or deactivate them, or wait until their orders expire)",
                        super::MAX_PENDING_AUTHZ
                    ),
                    3600,
                ));
            }
        }
        Ok(rows::create_order(tx, &new, &authz)?)
    })?;
    get(c, account, oid)
}

fn challenge_view(ch: rows::Challenge) -> AcmeResult<ChallengeView> {
    Ok(ChallengeView {
        id: ch.id,
        authz_id: ch.authz_id,
        kind: ChallengeKind::parse(&ch.kind)
            .ok_or_else(|| AcmeError::server(format!("stored challenge type {:?}", ch.kind)))?,
        token: ch.token,
        status: ChallengeStatus::stored(&ch.status)?,
        validated: ch.validated,
        error: ch.error.as_deref().map(Failure::decode),
    })
}

/// An authorization of one of the account's orders (never another account's: an account
/// validates the names it orders itself).
pub fn authz(c: &mut DbConn, account: &Account, id: i64) -> AcmeResult<AuthzView> {
    let missing = || AcmeError::unauthorized("no such authorization for this account");
    let a = rows::find_authz(c, id)?.ok_or_else(missing)?;
    if rows::order_account(c, a.order_id)? != account.id {
        return Err(missing());
    }
    let challenges = rows::challenges(c, a.id)?.into_iter().map(challenge_view).collect::<AcmeResult<Vec<_>>>()?;
    let kind = if a.identifier.parse::<std::net::IpAddr>().is_ok() { "ip" } else { "dns" };
    Ok(AuthzView {
        id: a.id,
        // RFC 8555 §7.1.4: a wildcard authorization names the base domain, with `wildcard: true`.
        identifier: Identifier { kind: kind.into(), value: a.identifier.clone() },
        wildcard: a.wildcard,
        status: AuthzStatus::stored(&a.status)?,
        expires: a.expires,
        challenges,
    })
}

/// Deactivates an authorization (RFC 8555 §7.5.2).
pub fn deactivate_authz(c: &mut DbConn, account: &Account, id: i64) -> AcmeResult<AuthzView> {
    let a = authz(c, account, id)?;
    rows::deactivate_authz(c, a.id)?;
    authz(c, account, id)
}

/// A challenge of one of the account's authorizations; with `respond`, the client's answer
/// (RFC 8555 §7.5.1): a pending challenge of a pending authorization becomes `processing` and
/// its validation job is enqueued in the same transaction.
pub fn challenge(
    engine: &Engine,
    c: &mut DbConn,
    account: &Account,
    id: i64,
    respond: bool,
) -> AcmeResult<ChallengeView> {
    let missing = || AcmeError::unauthorized("no such challenge");
    let ch = rows::find_challenge(c, id)?.ok_or_else(missing)?;
    let a = authz(c, account, ch.authz_id).map_err(|_| missing())?;
    if respond && a.status == AuthzStatus::Pending && ChallengeStatus::stored(&ch.status)? == ChallengeStatus::Pending {
        let started = write_tx(c, None, |tx| -> AcmeResult<bool> {
            if !rows::start_challenge(tx, ch.id)? {
                return Ok(false);
            }
            let payload = serde_json::json!({ "challenge_id": ch.id }).to_string();
            Engine::enqueue_validation(tx, &payload)?;
            Ok(true)
        })?;
        if started {
            engine.signals.validation_enqueued.notify_one();
        }
    }
    challenge_view(rows::challenge(c, id)?)
}

/// The PEM chain of a certificate one of the account's orders issued (the root left out, as
/// CAs do: clients have it).
pub fn certificate_chain(engine: &Engine, c: &mut DbConn, account: &Account, id: i64) -> AcmeResult<Vec<u8>> {
    if !rows::account_ordered_certificate(c, account.id, id)? {
        return Err(AcmeError::unauthorized("no such certificate for this account"));
    }
    let ver = rows::version(c, id)?;
    let b = inventory::CertBundle::load(&ver, &engine.master, false)?;
    let crypto = |e: openssl::error::ErrorStack| AcmeError::server(e.to_string());
    let mut out = b.leaf.to_pem().map_err(crypto)?;
    for x in &b.chain {
        if x.issued(x) != openssl::x509::X509VerifyResult::OK {
            out.extend(x.to_pem().map_err(crypto)?);
        }
    }
    Ok(out)
}

/// How a revocation request proved its right (RFC 8555 §7.6).
pub enum RevocationProof<'a> {
    /// Signed by this account (`kid`): it must be the account that ordered the certificate.
    Account(&'a Account),
    /// Signed by the certificate's own key (`jwk`), checked by the dialect.
    CertificateKey,
}

/// Revokes a certificate issued here (reason 0–10 except 7).
pub fn revoke(engine: &Engine, c: &mut DbConn, der: &[u8], reason: i64, proof: &RevocationProof) -> AcmeResult<()> {
    if !(0..=10).contains(&reason) || reason == 7 {
        return Err(AcmeError::new(
            400,
            ErrorType::BadRevocationReason,
            format!("reason {reason} is not allowed (0–10 except 7)"),
        ));
    }
    let tp = crate::ca::thumbprint(der);
    let ver = rows::version_by_thumbprint(c, &tp)?
        .ok_or_else(|| AcmeError::unauthorized("this certificate was not issued here"))?;
    if let RevocationProof::Account(acct) = proof
        && !rows::account_ordered_certificate(c, acct.id, ver.id)?
    {
        return Err(AcmeError::unauthorized("this account did not order this certificate"));
    }
    let fresh = engine.revoke(c, &CertRef::Thumbprint(tp), reason as i32, "revoked through ACME", false)?;
    if !fresh {
        return Err(AcmeError::new(400, ErrorType::AlreadyRevoked, "the certificate is already revoked"));
    }
    Ok(())
}
