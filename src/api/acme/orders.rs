//! ACME orders: newOrder with the automation action decided up front (explicit action in the
//! URL > auto-detection), authorizations (pre-validated through the EAB key's folder, or an
//! http-01 challenge really validated), finalize through the engine's job queue, and the
//! certificate download.
use std::net::IpAddr;
use std::time::Duration;

#[allow(unused_imports)]
use super::doc::*;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use chrono::NaiveDateTime;
use openssl::x509::X509Req;
use serde_json::{Value, json};

use super::store::Account;
use super::{Problem, acme_response, base_url, dry_run, jws, validation, verify_account, verify_request};
use crate::acme::orders::{self as data, NewAuthz, NewOrder};
pub use crate::acme::orders::{Authz, Challenge, Order};
use crate::app::AppState;
use crate::ca::SanSet;
use crate::db::{DbConn, DbError, now};
use crate::engine::inventory::{self, CertRef};
use crate::engine::renew::{EnrollRequest, RenewRequest};
use crate::engine::{Engine, RenewError, policy, validate};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/acme/new-order", web::post().to(new_order))
        .route("/acme/o/enroll/new-order", web::post().to(new_order))
        .route("/acme/o/{action}/{n}/new-order", web::post().to(new_order))
        .route("/acme/order/{id}", web::post().to(order))
        .route("/acme/order/{id}/finalize", web::post().to(finalize))
        .route("/acme/authz/{id}", web::post().to(authz))
        .route("/acme/chall/{id}", web::post().to(challenge))
        .route("/acme/cert/{id}", web::post().to(certificate))
        .route("/acme/dry-run/new-order", web::post().to(new_order))
        .route("/acme/dry-run/o/enroll/new-order", web::post().to(new_order))
        .route("/acme/dry-run/o/{action}/{n}/new-order", web::post().to(new_order))
        .route("/acme/dry-run/cert/{id}", web::post().to(dry_run_certificate))
        .route("/acme/acct/{id}/orders", web::post().to(orders_list))
        .route("/acme/revoke-cert", web::post().to(revoke));
}

#[utoipa::path(post, path = "/acme/acct/{id}/orders", tag = "ACME", operation_id = "acme_orders_list", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, description = "The account's orders", body = OrderList),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn orders_list(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let (_, account) = verify_account(&req, &state, payload).await?;
        if account.id.to_string() != path.into_inner() {
            return Err(Problem::unauthorized("this orders list is not the signer's"));
        }
        let base = base_url(&req, &state);
        let ids: Vec<i64> = blocking(&state, move |_, c| Ok(data::order_ids(c, account.id)?)).await?;
        let urls: Vec<String> = ids.iter().map(|i| format!("{base}/order/{i}")).collect();
        Ok(HttpResponse::Ok().content_type("application/json").body(json!({"orders": urls}).to_string()))
    }
    .await;
    acme_response(&state, r).await
}

/// revokeCert (RFC 8555 §7.6): signed by the account that ordered the certificate (`kid`) or by
/// the certificate's own key (`jwk`).
#[utoipa::path(post, path = "/acme/revoke-cert", tag = "ACME", operation_id = "acme_revoke", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    responses((status = 200, description = "Revoked"),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let v = verify_request(&req, &state, payload, true).await?;
        let body: Value = serde_json::from_slice(&v.jws.payload)
            .map_err(|e| Problem::malformed(format!("the payload is not JSON: {e}")))?;
        let der = jws::b64u_decode(
            body.get("certificate")
                .and_then(|c| c.as_str())
                .ok_or_else(|| Problem::malformed("certificate is required"))?,
        )?;
        let cert = openssl::x509::X509::from_der(&der)
            .map_err(|_| Problem::malformed("certificate is not a DER certificate"))?;
        let reason = body.get("reason").and_then(|r| r.as_i64()).unwrap_or(0);
        if !(0..=10).contains(&reason) || reason == 7 {
            return Err(Problem::new(
                400,
                "badRevocationReason",
                format!("reason {reason} is not allowed (0–10 except 7)"),
            ));
        }
        let tp = crate::ca::thumbprint(&der);
        let by_key = match v.jws.jwk() {
            Some(jwk) => {
                let k = jws::key_from_jwk(jwk)?;
                let pk = cert.public_key().map_err(|e| Problem::server(e.to_string()))?;
                if !k.public_eq(&pk) {
                    return Err(Problem::unauthorized("the JWS key is not the certificate's key"));
                }
                true
            }
            None => false,
        };
        let account = v.account.clone();
        blocking(&state, move |engine, c| {
            let ver = data::version_by_thumbprint(c, &tp)?
                .ok_or_else(|| Problem::unauthorized("this certificate was not issued here"))?;
            if !by_key {
                let acct = account.ok_or_else(|| Problem::malformed("kid required"))?;
                if !data::account_ordered_certificate(c, acct.id, ver.id)? {
                    return Err(Problem::unauthorized("this account did not order this certificate"));
                }
            }
            let fresh = engine
                .revoke(c, &CertRef::Thumbprint(tp.clone()), reason as i32, "revoked through ACME", false)
                .map_err(|e| Problem::server(e.to_string()))?;
            if !fresh {
                return Err(Problem::new(400, "alreadyRevoked", "the certificate is already revoked"));
            }
            Ok(())
        })
        .await?;
        Ok(HttpResponse::Ok().finish())
    }
    .await;
    acme_response(&state, r).await
}

fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine, &mut DbConn) -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    let engine = state.engine.clone();
    web::block(move || {
        let mut c = engine.pool.get()?;
        f(&engine, &mut c)
    })
    .await?
}

/// Is `folder` the binding's folder or inside it?
/// The requested names (lower-case), in the order sent.
fn identifiers(body: &Value) -> Result<Vec<(String, String)>, Problem> {
    let arr = body
        .get("identifiers")
        .and_then(|v| v.as_array())
        .ok_or_else(|| Problem::malformed("identifiers is required"))?;
    if arr.is_empty() {
        return Err(Problem::malformed("identifiers must not be empty"));
    }
    let mut out: Vec<(String, String)> = vec![];
    for i in arr {
        let t = i.get("type").and_then(|v| v.as_str()).unwrap_or("");
        let v = i.get("value").and_then(|v| v.as_str()).unwrap_or("").trim().trim_end_matches('.').to_lowercase();
        match t {
            "dns" if !v.is_empty() => {}
            "ip" if v.parse::<IpAddr>().is_ok() => {}
            "dns" | "ip" => {
                return Err(Problem::new(400, "rejectedIdentifier", format!("{v:?} is not a valid {t} identifier")));
            }
            other => {
                return Err(Problem::new(
                    400,
                    "unsupportedIdentifier",
                    format!("identifier type {other:?} is not supported (dns, ip)"),
                ));
            }
        }
        if !out.iter().any(|(_, x)| *x == v) {
            out.push((t.to_string(), v));
        }
    }
    Ok(out)
}

fn san_set(ids: &[(String, String)]) -> SanSet {
    SanSet {
        dns: ids.iter().filter(|(t, _)| t == "dns").map(|(_, v)| v.clone()).collect(),
        ip: ids.iter().filter(|(t, _)| t == "ip").map(|(_, v)| v.clone()).collect(),
        ..Default::default()
    }
}

/// The names of an object's current certificate (CN and SANs, lower-case).
fn object_names(c: &mut DbConn, object_id: i64) -> Result<(Vec<String>, Option<NaiveDateTime>), Problem> {
    let obj = inventory::find_object(c, &CertRef::ObjectId(object_id)).map_err(|e| Problem::server(e.to_string()))?;
    let Some(obj) = obj else { return Ok((vec![], None)) };
    let Some(v) = inventory::current_version(c, &obj).map_err(|e| Problem::server(e.to_string()))? else {
        return Ok((vec![], None));
    };
    let x = openssl::x509::X509::from_der(&v.der).map_err(|e| Problem::server(e.to_string()))?;
    let s = SanSet::of_cert(&x);
    let mut names: Vec<String> = s.dns.iter().chain(s.ip.iter()).map(|n| n.to_lowercase()).collect();
    let cn = crate::ca::common_name(x.subject_name()).to_lowercase();
    if !cn.is_empty() && !names.contains(&cn) {
        names.insert(0, cn);
    }
    Ok((names, Some(v.not_after)))
}

/// Seed 001's match rule: non-wildcard objects need exactly the same names; a wildcard object
/// `*.d` matches requests whose names are `*.d`, `d`'s subdomains or `d` itself.
fn names_match(object: &[String], requested: &[String]) -> bool {
    if object.is_empty() {
        return false;
    }
    let wild: Vec<&str> = object.iter().filter_map(|n| n.strip_prefix("*.")).collect();
    if wild.is_empty() {
        let mut a = object.to_vec();
        let mut b = requested.to_vec();
        a.sort();
        b.sort();
        return a == b;
    }
    // A wildcard order: the requested CN (the first name) is the wildcard, its base name or a
    // subdomain it covers; the other names may be added or removed.
    requested.first().is_some_and(|r| {
        let base = r.strip_prefix("*.").unwrap_or(r);
        wild.iter().any(|w| base == *w || base.ends_with(&format!(".{w}"))) || object.contains(r)
    })
}

/// The `match_name`s of the objects a request may match (seed 001): its first name, and the
/// wildcards that cover it (`*.b.c` and `*.c` for `a.b.c`; `*.a.b.c` for its base name).
fn match_keys(requested: &[String]) -> Vec<String> {
    let Some(first) = requested.first() else { return vec![] };
    let base = first.trim_start_matches("*.");
    let mut keys = vec![first.clone(), format!("*.{base}")];
    let mut rest = base;
    while let Some((_, r)) = rest.split_once('.') {
        keys.push(format!("*.{r}"));
        rest = r;
    }
    keys
}

/// A duration policy key in seconds (`acme_renewal_window`, `acme_coverage`, …).
fn policy_secs(p: &policy::EffectivePolicy, key: &str) -> Option<i64> {
    p.string(key).and_then(|(d, _)| crate::settings::parse_duration(&d).ok()).map(|d| d.as_secs() as i64)
}

/// The default action on a matched order (seed 001): a standard plan renews inside the
/// renewal window (32 days before the current certificate expires) and otherwise enrolls anew;
/// a multi-year plan renews inside the order renewal window (90 days before the coverage ends)
/// and otherwise reissues.
fn default_action(c: &mut DbConn, id: i64) -> Result<(String, Option<i64>), Problem> {
    let (_, not_after) = object_names(c, id)?;
    let folder = data::object_folder(c, id)?;
    let p = policy::effective(c, &folder).map_err(DbError::from)?;
    let coverage_end = data::coverage_end(c, id)?;
    let t = now();
    Ok(match coverage_end {
        Some(end) => {
            let window = policy_secs(&p, "acme_order_renewal_window").unwrap_or(90 * 86400);
            let a = if t >= end - chrono::Duration::seconds(window) { "renew" } else { "reissue" };
            (a.to_string(), Some(id))
        }
        None => match not_after {
            Some(na)
                if t >= na
                    - chrono::Duration::seconds(policy_secs(&p, "acme_renewal_window").unwrap_or(32 * 86400)) =>
            {
                ("renew".to_string(), Some(id))
            }
            _ => ("enroll".to_string(), None),
        },
    })
}

/// `replaces` in newOrder: garbage → `malformed`; a certificate not issued here → nothing to
/// link (accepted, as lego sends it on every renewal); outside the account's binding → the same
/// 403 as an unknown order; already replaced by an order that issued (or is issuing) → 409.
/// Returns the object and the certID in its canonical form.
fn replaced_object(
    c: &mut DbConn,
    id: &str,
    account: &Account,
    dry_run: bool,
) -> Result<Option<(i64, String)>, Problem> {
    let (aki, serial) = super::ari::parse_cert_id(id)
        .ok_or_else(|| Problem::malformed("replaces is not a certID (base64url(AKI) \".\" base64url(serial))"))?;
    let Some(v) = crate::acme::ari::find_version(c, &aki, &serial)? else { return Ok(None) };
    let obj = inventory::find_object(c, &CertRef::ObjectId(v.object_id))
        .map_err(|e| Problem::server(e.to_string()))?
        .filter(|o| {
            crate::engine::access::object_allowed(&crate::engine::access::acme_account(&account.policy_dn), o, "write")
        })
        .ok_or_else(|| Problem::unauthorized(format!("Order {} not found for this account", v.object_id)))?;
    let canonical = openssl::x509::X509::from_der(&v.der)
        .ok()
        .and_then(|x| super::ari::cert_id(&x))
        .unwrap_or_else(|| id.to_string());
    if !dry_run && data::already_replaced(c, &canonical)? {
        return Err(Problem::new(409, "alreadyReplaced", format!("certificate {canonical} has already been replaced")));
    }
    Ok(Some((obj.id, canonical)))
}

fn order_json(o: &Order, authz_ids: &[i64], base: &str) -> Value {
    let ids: Vec<(String, String)> = serde_json::from_str(&o.identifiers).unwrap_or_default();
    let mut v = json!({
        "status": o.status,
        "expires": rfc3339(o.expires),
        "identifiers": ids.iter().map(|(t, v)| json!({"type": t, "value": v})).collect::<Vec<_>>(),
        "authorizations": authz_ids.iter().map(|a| format!("{base}/authz/{a}")).collect::<Vec<_>>(),
        "finalize": format!("{base}/order/{}/finalize", o.id),
        "x-renewgate": {"action": o.action, "orderId": o.object_id.or(o.target_object_id)},
    });
    if o.dry_run {
        v["x-renewgate"]["dryRun"] = json!(true);
    }
    if let Some(r) = &o.replaces {
        v["replaces"] = json!(r);
    }
    if o.dry_run && o.status == "valid" {
        v["certificate"] = json!(format!("{base}/dry-run/cert/{}", o.id));
    } else if let Some(cid) = o.certificate_id.filter(|_| o.status == "valid") {
        v["certificate"] = json!(format!("{base}/cert/{cid}"));
    }
    if let Some(e) = &o.error {
        v["error"] = json!({"type": "urn:ietf:params:acme:error:serverInternal", "detail": e, "status": 500});
    }
    v
}

fn load_order(c: &mut DbConn, id: i64, account: &Account) -> Result<(Order, Vec<i64>), Problem> {
    let o: Order = data::find_order(c, id)?
        .filter(|o| o.account_id == account.id)
        .ok_or_else(|| Problem::unauthorized("no such order for this account"))?;
    let authz = data::authz_ids(c, o.id)?;
    Ok((refresh(c, o)?, authz))
}

/// Brings an order's status up to date: authorizations → ready/invalid; the issuance job → valid/invalid.
fn refresh(c: &mut DbConn, mut o: Order) -> Result<Order, Problem> {
    let next = match o.status.as_str() {
        "pending" => {
            let st = data::authz_statuses(c, o.id)?;
            if st.iter().any(|s| s == "invalid" || s == "deactivated") {
                Some(("invalid".to_string(), None, None))
            } else if st.iter().all(|s| s == "valid") {
                Some(("ready".to_string(), None, None))
            } else {
                None
            }
        }
        "processing" => match o.job_id.and_then(|j| inventory::job(c, j).ok().flatten()) {
            Some(j) if j.state == "done" => Some(("valid".to_string(), j.result_cert_id, None)),
            Some(j) if j.state == "failed" => Some(("invalid".to_string(), None, j.error)),
            _ => None,
        },
        _ => None,
    };
    if let Some((status, cert, err)) = next {
        data::set_order_status(c, o.id, &status, cert.or(o.certificate_id), &err)?;
        o.status = status;
        o.certificate_id = cert.or(o.certificate_id);
        o.error = err;
    }
    Ok(o)
}

#[utoipa::path(post, path = "/acme/new-order", tag = "ACME", operation_id = "acme_new_order", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    description = "Creates an order. The same operation answers at `/acme/o/{action}/{orderId}/new-order`, \
        `/acme/o/enroll/new-order` and under `/acme/dry-run/`, as the directory lists them.",
    responses((status = 201, description = "Order created", body = AcmeOrder),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 409, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 429, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn new_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = new_order_inner(&req, &state, payload).await;
    acme_response(&state, r).await
}

async fn new_order_inner(req: &HttpRequest, state: &AppState, payload: web::Payload) -> Result<HttpResponse, Problem> {
    let (jws, account) = verify_account(req, state, payload).await?;
    let base = base_url(req, state);
    let body: Value = serde_json::from_slice(&jws.payload)
        .map_err(|e| Problem::malformed(format!("the payload is not JSON: {e}")))?;
    let ids = identifiers(&body)?;
    // The action comes from the path the directory handed out.
    let path = req.path().to_string();
    let rel = path.replacen("/acme/dry-run/", "/acme/", 1);
    let explicit = match rel.strip_prefix("/acme/o/") {
        None => None,
        Some("enroll/new-order") => Some(("enroll".to_string(), None)),
        Some(rest) => {
            let parts: Vec<&str> = rest.split('/').collect();
            let n: i64 = parts
                .get(1)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Problem::malformed("bad order id in the URL"))?;
            match parts[0] {
                a @ ("renew" | "reissue" | "duplicate") => Some((a.to_string(), Some(n))),
                other => return Err(Problem::malformed(format!("unknown action {other:?}"))),
            }
        }
    };
    let dry_run = path.starts_with("/acme/dry-run/");
    let replaces = match body.get("replaces") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Problem::malformed("replaces must be a certID string")),
    };
    let requested: Vec<String> = ids.iter().map(|(_, v)| v.clone()).collect();
    let (order, authz) = blocking(state, move |_, c| {
        // Every name must be one the binding's folder allows.
        let p = policy::effective(c, &account.policy_dn).map_err(DbError::from)?;
        let subject = crate::engine::renew::SubjectSpec { common_name: requested.first().cloned(), ..Default::default() };
        if let Err(v) = validate::check(&p, &subject, &san_set(&ids), None) {
            return Err(Problem::new(400, "rejectedIdentifier", crate::api::venafi::error::policy_message(&v)));
        }
        // `replaces` (RFC 9773 §5): the certificate being replaced names the order to act on.
        let replaced = match &replaces {
            None => None,
            Some(id) => replaced_object(c, id, &account, dry_run)?,
        };
        // Stored in canonical form so a second replacement of the same certificate is found.
        let replaces = match (&replaced, replaces) {
            (Some((_, canonical)), _) => Some(canonical.clone()),
            (None, r) => r,
        };
        let (action, target) = match explicit {
            Some((a, Some(n))) => {
                if let Some((m, _)) = replaced.as_ref().filter(|(m, _)| *m != n) {
                    return Err(Problem::malformed(format!("replaces identifies order {m}, URL names {n}")));
                }
                let obj = inventory::find_object(c, &CertRef::ObjectId(n))
                    .map_err(|e| Problem::server(e.to_string()))?
                    .filter(|o| crate::engine::access::object_allowed(&crate::engine::access::acme_account(&account.policy_dn), o, "write"))
                    .ok_or_else(|| Problem::unauthorized(format!("Order {n} not found for this account")))?;
                if a == "duplicate" {
                    let np = policy::effective(c, &obj.policy_dn).map_err(DbError::from)?;
                    if !np.flag("acme_allow_duplicates", false) {
                        return Err(Problem::unauthorized(format!("The profile of order {n} does not allow duplicates")));
                    }
                }
                if a == "renew" || a == "duplicate" {
                    let (names, _) = object_names(c, n)?;
                    if !names_match(&names, &requested) {
                        return Err(Problem::new(
                            400,
                            "rejectedIdentifier",
                            format!("the names {requested:?} do not match order {n} ({names:?}): a {a} keeps the order's names"),
                        ));
                    }
                }
                if obj.state == crate::engine::state::PROCESSING {
                    return Err(Problem::new(429, "rateLimited", format!("Order {n} is being processed; try again shortly")));
                }
                (a, Some(n))
            }
            Some((a, None)) => (a, None),
            None => {
                // `replaces` naming a known order, else auto-detection: objects first issued
                // through ACME in the binding's folder whose names match (seed 001).
                let found = match replaced {
                    Some((m, _)) => Some(m),
                    None => {
                        let candidates = data::match_candidates(c, &account.policy_dn, match_keys(&requested))?;
                        let mut best: Option<(i64, NaiveDateTime)> = None;
                        for id in candidates {
                            let (names, not_after) = object_names(c, id)?;
                            if let Some(na) = not_after
                                && names_match(&names, &requested)
                                && best.is_none_or(|(_, b)| na > b)
                            {
                                best = Some((id, na));
                            }
                        }
                        best.map(|(id, _)| id)
                    }
                };
                match found {
                    Some(id) => default_action(c, id)?,
                    None => ("enroll".to_string(), None),
                }
            }
        };
        let domains = p.domains();
        // Decide every authorization before writing anything, so a refused name leaves no order
        // behind. One token per authorization, shared by its challenges (as Boulder does): the
        // key authorization is the same whichever the client answers.
        let mut plan = vec![];
        for (t, value) in &ids {
            let wildcard = value.starts_with("*.");
            let name = value.trim_start_matches("*.").to_string();
            let covered = t == "dns" && !domains.is_empty() && domains.iter().any(|d| name == *d || name.ends_with(&format!(".{d}")));
            let token = if account.prevalidated && covered {
                None
            } else {
                let mut tok = [0u8; 32];
                openssl::rand::rand_bytes(&mut tok).map_err(|e| Problem::server(e.to_string()))?;
                Some(B64U.encode(tok))
            };
            plan.push((name, wildcard, token));
        }
        let authz: Vec<NewAuthz> = plan
            .iter()
            .map(|(name, wildcard, token)| NewAuthz {
                identifier: name,
                wildcard: *wildcard,
                challenges: token.as_deref().map(|t| (t, validation::offered(name, *wildcard))),
            })
            .collect();
        // One transaction (and, on PostgreSQL, a per-account lock) for the order and its authorizations.
        let new = NewOrder {
            account_id: account.id,
            identifiers: serde_json::to_string(&ids).unwrap_or_default(),
            action: &action,
            target_object_id: target,
            replaces: &replaces,
            dry_run,
        };
        let oid = data::create_order(c, &new, &authz)?;
        load_order(c, oid, &account)
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("{base}/order/{}", order.id)))
        .insert_header(("Link", format!("<{base}/directory>;rel=\"index\"")))
        .content_type("application/json")
        .body(order_json(&order, &authz, &base).to_string()))
}

fn path_id(s: &str) -> Result<i64, Problem> {
    s.parse().map_err(|_| Problem::new(404, "malformed", "no such resource"))
}

#[utoipa::path(post, path = "/acme/order/{id}", tag = "ACME", operation_id = "acme_order", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The order (POST-as-GET)", body = AcmeOrder),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn order(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let (jws, account) = verify_account(&req, &state, payload).await?;
        if !jws.payload.is_empty() {
            return Err(Problem::malformed("an order is read with POST-as-GET (an empty payload)"));
        }
        let id = path_id(&path.into_inner())?;
        let base = base_url(&req, &state);
        let (o, authz) = blocking(&state, move |_, c| load_order(c, id, &account)).await?;
        let mut r = HttpResponse::Ok();
        if o.status == "processing" {
            r.insert_header(("Retry-After", "2"));
        }
        Ok(r.insert_header(("Link", format!("<{base}/directory>;rel=\"index\"")))
            .content_type("application/json")
            .body(order_json(&o, &authz, &base).to_string()))
    }
    .await;
    acme_response(&state, r).await
}

fn authz_json(a: &Authz, chals: &[Challenge], base: &str) -> Value {
    let mut v = json!({
        "identifier": {"type": if a.identifier.parse::<IpAddr>().is_ok() { "ip" } else { "dns" }, "value": a.identifier},
        "status": a.status,
        "expires": rfc3339(a.expires),
        "challenges": chals.iter().map(|ch| challenge_json(ch, base)).collect::<Vec<_>>(),
    });
    if a.wildcard {
        v["wildcard"] = json!(true);
    }
    v
}

fn challenge_json(ch: &Challenge, base: &str) -> Value {
    let mut v =
        json!({"type": ch.kind, "url": format!("{base}/chall/{}", ch.id), "status": ch.status, "token": ch.token});
    if let Some(t) = ch.validated {
        v["validated"] = json!(rfc3339(t));
    }
    if let Some(e) = &ch.error {
        let (kind, detail) = validation::decode_failure(e);
        v["error"] = json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail, "status": 400});
    }
    v
}

fn load_authz(c: &mut DbConn, id: i64, account: &Account) -> Result<(Authz, Vec<Challenge>), Problem> {
    let a: Authz =
        data::find_authz(c, id)?.ok_or_else(|| Problem::unauthorized("no such authorization for this account"))?;
    let owner = data::order_account(c, a.order_id)?;
    if owner != account.id {
        return Err(Problem::unauthorized("no such authorization for this account"));
    }
    let ch = data::challenges(c, a.id)?;
    Ok((a, ch))
}

#[utoipa::path(post, path = "/acme/authz/{id}", tag = "ACME", operation_id = "acme_authz", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Authorization id")),
    responses((status = 200, description = "The authorization (POST-as-GET, or deactivation)", body = AcmeAuthorization),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn authz(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let (jws, account) = verify_account(&req, &state, payload).await?;
        let id = path_id(&path.into_inner())?;
        let base = base_url(&req, &state);
        let deactivate = if jws.payload.is_empty() {
            false
        } else {
            let b: Value = serde_json::from_slice(&jws.payload).map_err(|e| Problem::malformed(e.to_string()))?;
            match b.get("status").and_then(|s| s.as_str()) {
                Some("deactivated") => true,
                _ => return Err(Problem::malformed("an authorization can only be deactivated")),
            }
        };
        let (a, ch) = blocking(&state, move |_, c| {
            let (a, _) = load_authz(c, id, &account)?;
            if deactivate && (a.status == "pending" || a.status == "valid") {
                data::deactivate_authz(c, a.id)?;
            }
            load_authz(c, id, &account)
        })
        .await?;
        Ok(HttpResponse::Ok()
            .insert_header(("Link", format!("<{base}/directory>;rel=\"index\"")))
            .content_type("application/json")
            .body(authz_json(&a, &ch, &base).to_string()))
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/chall/{id}", tag = "ACME", operation_id = "acme_challenge", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Challenge id")),
    responses((status = 200, description = "The challenge; `{}` starts its validation", body = AcmeChallenge),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn challenge(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let (jws, account) = verify_account(&req, &state, payload).await?;
        let id = path_id(&path.into_inner())?;
        let base = base_url(&req, &state);
        let respond = !jws.payload.is_empty();
        let thumb = {
            let jwk: Value = serde_json::from_str(&account.jwk).map_err(|e| Problem::server(e.to_string()))?;
            jws::thumbprint(jwk.as_object().ok_or_else(|| Problem::server("stored JWK"))?)?
        };
        let acct = account.clone();
        let (ch, aid, start) = blocking(&state, move |_, c| {
            let ch: Challenge =
                data::find_challenge(c, id)?.ok_or_else(|| Problem::unauthorized("no such challenge"))?;
            let (a, _) = load_authz(c, ch.authz_id, &acct)?;
            let start = respond && ch.status == "pending" && a.status == "pending";
            if start {
                data::start_challenge(c, ch.id)?;
            }
            let ch = data::challenge(c, id)?;
            Ok((ch, a.id, start))
        })
        .await?;
        if start {
            actix_web::rt::spawn(validation::run(state.engine.clone(), ch.clone(), thumb));
        }
        Ok(HttpResponse::Ok()
            .insert_header(("Link", format!("<{base}/authz/{aid}>;rel=\"up\"")))
            .content_type("application/json")
            .body(challenge_json(&ch, &base).to_string()))
    }
    .await;
    acme_response(&state, r).await
}

/// The names a CSR asks for: its CN (if any) and SANs, lower-case.
fn csr_names(req: &X509Req) -> Vec<String> {
    let s = SanSet::of_csr(req);
    let mut names: Vec<String> = s.dns.iter().chain(s.ip.iter()).map(|n| n.to_lowercase()).collect();
    let cn = crate::ca::common_name(req.subject_name()).to_lowercase();
    if !cn.is_empty() && !names.contains(&cn) {
        names.push(cn);
    }
    names.sort();
    names.dedup();
    names
}

fn map_engine(e: RenewError) -> Problem {
    match e {
        RenewError::AlreadyProcessing(dn) => {
            Problem::new(429, "rateLimited", format!("{dn} is being processed; try again shortly"))
        }
        RenewError::Internal(m) => Problem::server(m),
        other => Problem::new(400, "badCSR", crate::api::venafi::error::message(&other)),
    }
}

#[utoipa::path(post, path = "/acme/order/{id}/finalize", tag = "ACME", operation_id = "acme_finalize", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The order, valid or processing (Retry-After)", body = AcmeOrder),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 429, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn finalize(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = finalize_inner(&req, &state, path.into_inner(), payload).await;
    acme_response(&state, r).await
}

async fn finalize_inner(
    req: &HttpRequest,
    state: &AppState,
    id: String,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let (jws, account) = verify_account(req, state, payload).await?;
    let id = path_id(&id)?;
    let base = base_url(req, state);
    let body: Value = serde_json::from_slice(&jws.payload)
        .map_err(|e| Problem::malformed(format!("the payload is not JSON: {e}")))?;
    let der = jws::b64u_decode(
        body.get("csr").and_then(|c| c.as_str()).ok_or_else(|| Problem::malformed("csr is required"))?,
    )?;
    let csr =
        X509Req::from_der(&der).map_err(|_| Problem::new(400, "badCSR", "the CSR is not a DER PKCS#10 request"))?;
    let pk = csr.public_key().map_err(|_| Problem::new(400, "badCSR", "the CSR has no usable public key"))?;
    let sig_ok = csr.verify(&pk).unwrap_or(false);
    let _ = openssl::error::ErrorStack::get();
    if !sig_ok {
        return Err(Problem::new(400, "badCSR", "the CSR signature does not verify"));
    }
    let acct_jwk: Value = serde_json::from_str(&account.jwk).map_err(|e| Problem::server(e.to_string()))?;
    let acct_key = jws::key_from_jwk(acct_jwk.as_object().ok_or_else(|| Problem::server("stored JWK"))?)?;
    if acct_key.public_eq(&pk) {
        return Err(Problem::new(400, "badCSR", "the certificate key must not be the account key"));
    }
    let names = csr_names(&csr);
    let acct = account.clone();
    let (order, job) = blocking(state, move |engine, c| {
        let (o, _) = load_order(c, id, &acct)?;
        if o.status != "ready" {
            return Err(Problem::new(403, "orderNotReady", format!("the order is {}, not ready", o.status)));
        }
        let ids: Vec<(String, String)> = serde_json::from_str(&o.identifiers).unwrap_or_default();
        let mut want: Vec<String> = ids.iter().map(|(_, v)| v.clone()).collect();
        want.sort();
        if names != want {
            return Err(Problem::new(
                400,
                "badCSR",
                format!("the CSR names {names:?} differ from the order's {want:?}"),
            ));
        }
        let subject = validate::subject_of(csr.subject_name());
        let first = ids.first().map(|(_, v)| v.clone()).unwrap_or_default();
        let target_folder = match o.target_object_id {
            Some(n) => data::find_object_folder(c, n)?,
            None => None,
        }
        .unwrap_or_else(|| acct.policy_dn.clone());
        let p = policy::effective(c, &target_folder).map_err(DbError::from)?;
        if o.dry_run {
            // The same policy checks as a real issuance, then the untrusted test issuer.
            let key = csr.public_key().map_err(|e| Problem::server(e.to_string()))?;
            validate::check(&p, &subject, &SanSet::of_csr(&csr), crate::ca::KeySpec::of_key(&key))
                .map_err(|v| Problem::new(400, "badCSR", crate::api::venafi::error::policy_message(&v)))?;
            dry_run::issue(c, o.id, &csr, p.validity(engine.default_validity).as_secs())?;
            return Ok((o.id, None));
        }
        let coverage_secs = policy_secs(&p, "acme_coverage");
        let (accepted, new_object, duplicate_of) = match (o.action.as_str(), o.target_object_id) {
            (action @ ("renew" | "reissue"), Some(n)) => {
                // A reissue stays inside the order's coverage: a multi-year plan's end, else the
                // current certificate's notAfter.
                let not_after_max = if action == "reissue" {
                    match data::coverage_end(c, n)? {
                        Some(end) => Some(end.and_utc().timestamp()),
                        None => object_names(c, n)?.1.map(|na| na.and_utc().timestamp()),
                    }
                } else {
                    None
                };
                let accepted = engine
                    .renew(
                        c,
                        RenewRequest {
                            certificate: CertRef::ObjectId(n),
                            csr: Some(csr),
                            subject: None,
                            sans: None,
                            reenable: false,
                            certificate_data: None,
                            not_after_max,
                            // An ACME account acts in the folder its EAB key binds it to; it
                            // never holds Private Key Read (its keys are its own).
                            access: crate::engine::access::acme_account(&acct.policy_dn),
                        },
                    )
                    .map_err(map_engine)?;
                // Renewing a multi-year order starts a new coverage period.
                if action == "renew"
                    && let Some(secs) = coverage_secs
                {
                    data::set_coverage_end(c, n, now() + chrono::Duration::seconds(secs))?;
                }
                (accepted, false, None)
            }
            (action, target) => {
                // A new object: enroll, or a duplicate of `target` in its folder.
                let folder = match (action, target) {
                    ("duplicate", Some(n)) => inventory::find_object(c, &CertRef::ObjectId(n))
                        .map_err(|e| Problem::server(e.to_string()))?
                        .map(|o| o.policy_dn)
                        .unwrap_or(acct.policy_dn.clone()),
                    _ => acct.policy_dn.clone(),
                };
                let base_name = first.trim_start_matches("*.").to_string();
                let mut name =
                    if first.starts_with("*.") { format!("wildcard.{base_name}") } else { base_name.clone() };
                let mut k = 1;
                while inventory::find_object(c, &CertRef::Dn(format!("{folder}\\{name}")))
                    .map_err(|e| Problem::server(e.to_string()))?
                    .is_some()
                {
                    k += 1;
                    name = format!("{base_name} ({k})");
                }
                let accepted = engine
                    .enroll(
                        c,
                        EnrollRequest {
                            policy_dn: folder,
                            object_name: Some(name),
                            csr: Some(csr),
                            subject,
                            sans: SanSet::default(),
                            key_spec: None,
                            management_type: None,
                            overrides: None,
                        },
                    )
                    .map_err(map_engine)?;
                (accepted, true, target.filter(|_| action == "duplicate"))
            }
        };
        if new_object {
            // A duplicate shares its order's coverage; a new multi-year order starts one.
            let coverage = match duplicate_of {
                Some(n) => data::coverage_end(c, n)?,
                None => coverage_secs.map(|s| now() + chrono::Duration::seconds(s)),
            };
            data::insert_object(c, accepted.object.id, acct.id, duplicate_of, coverage, &first)?;
        } else if let Some(n) = o.target_object_id {
            // A reissue may change the names: the first one is what later orders match.
            data::set_match_name(c, n, &first)?;
        }
        data::set_order_processing(c, o.id, accepted.job_id, accepted.object.id)?;
        Ok((o.id, Some(accepted.job_id)))
    })
    .await?;
    if let Some(job) = job {
        let _ = state
            .engine
            .wait_for_job(job, Duration::from_secs(10))
            .await
            .map_err(|e| Problem::server(e.to_string()))?;
    }
    let (o, authz) = blocking(state, move |_, c| load_order(c, order, &account)).await?;
    let mut r = HttpResponse::Ok();
    if o.status == "processing" {
        r.insert_header(("Retry-After", "2"));
    }
    Ok(r.insert_header(("Location", format!("{base}/order/{}", o.id)))
        .content_type("application/json")
        .body(order_json(&o, &authz, &base).to_string()))
}

/// The chain of a dry-run order (leaf and the untrusted test issuer).
pub async fn dry_run_certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let (_, account) = verify_account(&req, &state, payload).await?;
        let id = path_id(&path.into_inner())?;
        let pem = blocking(&state, move |_, c| {
            let (o, _) = load_order(c, id, &account)?;
            if !o.dry_run {
                return Err(Problem::unauthorized("no such certificate for this account"));
            }
            dry_run::certificate(c, o.id)?.ok_or_else(|| Problem::unauthorized("no such certificate for this account"))
        })
        .await?;
        Ok(HttpResponse::Ok().content_type("application/pem-certificate-chain").body(pem))
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/cert/{id}", tag = "ACME", operation_id = "acme_certificate", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Certificate id")),
    responses((status = 200, description = "Leaf and chain", body = PemCertificateChain, content_type = "application/pem-certificate-chain"),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let (_, account) = verify_account(&req, &state, payload).await?;
        let id = path_id(&path.into_inner())?;
        let pem = blocking(&state, move |engine, c| {
            if !data::account_ordered_certificate(c, account.id, id)? {
                return Err(Problem::unauthorized("no such certificate for this account"));
            }
            let ver = data::version(c, id)?;
            let b =
                inventory::CertBundle::load(&ver, &engine.master, false).map_err(|e| Problem::server(e.to_string()))?;
            let mut out = b.leaf.to_pem().map_err(|e| Problem::server(e.to_string()))?;
            for x in &b.chain {
                // The root is left out, as CAs do: clients have it.
                if x.issued(x) != openssl::x509::X509VerifyResult::OK {
                    out.extend(x.to_pem().map_err(|e| Problem::server(e.to_string()))?);
                }
            }
            Ok(out)
        })
        .await?;
        Ok(HttpResponse::Ok().content_type("application/pem-certificate-chain").body(pem))
    }
    .await;
    acme_response(&state, r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_keys_cover_the_name_and_its_wildcards() {
        let k = match_keys(&["a.b.c".to_string(), "x.y".to_string()]);
        assert_eq!(k, ["a.b.c", "*.a.b.c", "*.b.c", "*.c"]);
        assert_eq!(match_keys(&["*.b.c".to_string()]), ["*.b.c", "*.b.c", "*.c"]);
        assert!(match_keys(&[]).is_empty());
    }

    #[test]
    fn wildcard_objects_match_by_their_first_name() {
        let obj = vec!["*.example.com".to_string()];
        assert!(names_match(&obj, &["www.example.com".into(), "other.org".into()]));
        assert!(names_match(&obj, &["example.com".into()]));
        assert!(!names_match(&obj, &["example.org".into()]));
        let plain = vec!["a.example.com".to_string(), "b.example.com".to_string()];
        assert!(names_match(&plain, &["b.example.com".into(), "a.example.com".into()]));
        assert!(!names_match(&plain, &["a.example.com".into()]));
    }
}
