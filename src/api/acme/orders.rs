//! ACME orders: newOrder with the automation action decided up front (explicit action in the
//! URL > auto-detection), authorizations (pre-validated through the EAB key's folder, or an
//! http-01 challenge really validated), finalize through the engine's job queue, and the
//! certificate download.
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use openssl::x509::X509Req;
use serde_json::{Value, json};

use super::store::Account;
use super::{Problem, acme_response, base_url, jws, verify_account, verify_request};
use crate::app::AppState;
use crate::ca::SanSet;
use crate::db::schema::{acme_authz, acme_challenges, acme_objects, acme_orders, cert_objects, certificates};
use crate::db::{DbConn, now};
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
        .route("/acme/acct/{id}/orders", web::post().to(orders_list))
        .route("/acme/revoke-cert", web::post().to(revoke));
}

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
        let ids: Vec<i64> = blocking(&state, move |_, c| {
            Ok(acme_orders::table
                .filter(acme_orders::account_id.eq(account.id))
                .order(acme_orders::id.asc())
                .select(acme_orders::id)
                .load(c)?)
        })
        .await?;
        let urls: Vec<String> = ids.iter().map(|i| format!("{base}/order/{i}")).collect();
        Ok(HttpResponse::Ok().content_type("application/json").body(json!({"orders": urls}).to_string()))
    }
    .await;
    acme_response(&state, r).await
}

/// revokeCert (RFC 8555 §7.6): signed by the account that ordered the certificate (`kid`) or by
/// the certificate's own key (`jwk`).
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
            let ver: crate::db::models::CertVersion = certificates::table
                .filter(certificates::thumbprint.eq(&tp))
                .select(crate::db::models::CertVersion::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| Problem::unauthorized("this certificate was not issued here"))?;
            if !by_key {
                let acct = account.ok_or_else(|| Problem::malformed("kid required"))?;
                let owned: i64 = acme_orders::table
                    .filter(acme_orders::account_id.eq(acct.id))
                    .filter(acme_orders::certificate_id.eq(ver.id))
                    .count()
                    .get_result(c)?;
                if owned == 0 {
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

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = acme_orders)]
pub struct Order {
    pub id: i64,
    pub account_id: i64,
    pub status: String,
    pub identifiers: String,
    pub action: String,
    pub target_object_id: Option<i64>,
    pub expires: NaiveDateTime,
    pub job_id: Option<i64>,
    pub object_id: Option<i64>,
    pub certificate_id: Option<i64>,
    pub error: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = acme_authz)]
pub struct Authz {
    pub id: i64,
    pub order_id: i64,
    pub identifier: String,
    pub wildcard: bool,
    pub status: String,
    pub expires: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = acme_challenges)]
pub struct Challenge {
    pub id: i64,
    pub authz_id: i64,
    pub kind: String,
    pub token: String,
    pub status: String,
    pub validated: Option<NaiveDateTime>,
    pub error: Option<String>,
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
fn in_subtree(folder: &str, root: &str) -> bool {
    let (f, r) = (folder.to_lowercase(), root.to_lowercase());
    f == r || f.starts_with(&format!("{r}\\"))
}

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
    requested.iter().all(|r| {
        let base = r.strip_prefix("*.").unwrap_or(r);
        wild.iter().any(|w| base == *w || base.ends_with(&format!(".{w}"))) || object.contains(r)
    })
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
    if let Some(cid) = o.certificate_id.filter(|_| o.status == "valid") {
        v["certificate"] = json!(format!("{base}/cert/{cid}"));
    }
    if let Some(e) = &o.error {
        v["error"] = json!({"type": "urn:ietf:params:acme:error:serverInternal", "detail": e, "status": 500});
    }
    v
}

fn load_order(c: &mut DbConn, id: i64, account: &Account) -> Result<(Order, Vec<i64>), Problem> {
    let o: Order = acme_orders::table
        .find(id)
        .select(Order::as_select())
        .first(c)
        .optional()?
        .filter(|o| o.account_id == account.id)
        .ok_or_else(|| Problem::unauthorized("no such order for this account"))?;
    let authz: Vec<i64> = acme_authz::table
        .filter(acme_authz::order_id.eq(o.id))
        .order(acme_authz::id.asc())
        .select(acme_authz::id)
        .load(c)?;
    Ok((refresh(c, o)?, authz))
}

/// Brings an order's status up to date: authorizations → ready/invalid; the issuance job → valid/invalid.
fn refresh(c: &mut DbConn, mut o: Order) -> Result<Order, Problem> {
    let next = match o.status.as_str() {
        "pending" => {
            let st: Vec<String> =
                acme_authz::table.filter(acme_authz::order_id.eq(o.id)).select(acme_authz::status).load(c)?;
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
        diesel::update(acme_orders::table.find(o.id))
            .set((
                acme_orders::status.eq(&status),
                acme_orders::certificate_id.eq(cert.or(o.certificate_id)),
                acme_orders::error.eq(&err),
            ))
            .execute(c)?;
        o.status = status;
        o.certificate_id = cert.or(o.certificate_id);
        o.error = err;
    }
    Ok(o)
}

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
    let explicit = match path.strip_prefix("/acme/o/") {
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
    let requested: Vec<String> = ids.iter().map(|(_, v)| v.clone()).collect();
    let (order, authz) = blocking(state, move |_, c| {
        // Every name must be one the binding's folder allows.
        let p = policy::effective(c, &account.policy_dn)?;
        let subject = crate::engine::renew::SubjectSpec { common_name: requested.first().cloned(), ..Default::default() };
        if let Err(v) = validate::check(&p, &subject, &san_set(&ids), None) {
            return Err(Problem::new(400, "rejectedIdentifier", crate::api::venafi::error::policy_message(&v)));
        }
        let window = |key: &str, default_days: i64| {
            p.string(key).and_then(|(d, _)| crate::config::parse_duration(&d).ok()).map(|d| d.as_secs() as i64).unwrap_or(default_days * 86400)
        };
        let (action, target) = match explicit {
            Some((a, Some(n))) => {
                let obj = inventory::find_object(c, &CertRef::ObjectId(n))
                    .map_err(|e| Problem::server(e.to_string()))?
                    .filter(|o| in_subtree(&o.policy_dn, &account.policy_dn))
                    .ok_or_else(|| Problem::unauthorized(format!("Order {n} not found for this account")))?;
                if a == "duplicate" {
                    let np = policy::effective(c, &obj.policy_dn)?;
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
                // Auto-detection: objects first issued through ACME in the binding's folder.
                let candidates: Vec<i64> = acme_objects::table
                    .inner_join(cert_objects::table.on(cert_objects::id.eq(acme_objects::object_id)))
                    .filter(cert_objects::policy_dn.eq(&account.policy_dn))
                    .filter(cert_objects::disabled.eq(false))
                    .select(acme_objects::object_id)
                    .load(c)?;
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
                match best {
                    Some((id, not_after)) => {
                        let due = now() >= not_after - chrono::Duration::seconds(window("acme_renewal_window", 32));
                        (if due { "renew" } else { "enroll" }.to_string(), Some(id).filter(|_| due))
                    }
                    None => ("enroll".to_string(), None),
                }
            }
        };
        let domains = p.domains();
        // Decide every authorization before writing anything, so a refused name leaves no order behind.
        let mut plan = vec![];
        for (t, value) in &ids {
            let wildcard = value.starts_with("*.");
            let name = value.trim_start_matches("*.").to_string();
            let covered = t == "dns" && !domains.is_empty() && domains.iter().any(|d| name == *d || name.ends_with(&format!(".{d}")));
            let pre = account.prevalidated && covered;
            if wildcard && !pre {
                return Err(Problem::new(
                    400,
                    "rejectedIdentifier",
                    format!("{value}: wildcard names need dns-01, which this gateway does not validate yet; use a pre-validated EAB key"),
                ));
            }
            plan.push((name, wildcard, pre));
        }
        // One transaction (and, on PostgreSQL, a per-account lock) for the order and its authorizations.
        let oid = crate::db::write_tx(c, Some(7_263_000 + account.id), |c| -> Result<i64, Problem> {
            let ts = now();
            diesel::insert_into(acme_orders::table)
                .values((
                    acme_orders::account_id.eq(account.id),
                    acme_orders::status.eq("pending"),
                    acme_orders::identifiers.eq(serde_json::to_string(&ids).unwrap_or_default()),
                    acme_orders::action.eq(&action),
                    acme_orders::target_object_id.eq(target),
                    acme_orders::expires.eq(ts + chrono::Duration::days(7)),
                    acme_orders::created_at.eq(ts),
                ))
                .execute(c)?;
            let oid: i64 =
                acme_orders::table.filter(acme_orders::account_id.eq(account.id)).order(acme_orders::id.desc()).select(acme_orders::id).first(c)?;
            for (name, wildcard, pre) in &plan {
                diesel::insert_into(acme_authz::table)
                    .values((
                        acme_authz::order_id.eq(oid),
                        acme_authz::identifier.eq(name),
                        acme_authz::wildcard.eq(*wildcard),
                        acme_authz::status.eq(if *pre { "valid" } else { "pending" }),
                        acme_authz::expires.eq(ts + chrono::Duration::days(7)),
                    ))
                    .execute(c)?;
                if !*pre {
                    let aid: i64 = acme_authz::table.filter(acme_authz::order_id.eq(oid)).order(acme_authz::id.desc()).select(acme_authz::id).first(c)?;
                    let mut tok = [0u8; 32];
                    openssl::rand::rand_bytes(&mut tok).map_err(|e| Problem::server(e.to_string()))?;
                    diesel::insert_into(acme_challenges::table)
                        .values((
                            acme_challenges::authz_id.eq(aid),
                            acme_challenges::kind.eq("http-01"),
                            acme_challenges::token.eq(B64U.encode(tok)),
                            acme_challenges::status.eq("pending"),
                        ))
                        .execute(c)?;
                }
            }
            Ok(oid)
        })?;
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
        v["error"] = json!({"type": "urn:ietf:params:acme:error:incorrectResponse", "detail": e, "status": 403});
    }
    v
}

fn load_authz(c: &mut DbConn, id: i64, account: &Account) -> Result<(Authz, Vec<Challenge>), Problem> {
    let a: Authz = acme_authz::table
        .find(id)
        .select(Authz::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| Problem::unauthorized("no such authorization for this account"))?;
    let owner: i64 = acme_orders::table.find(a.order_id).select(acme_orders::account_id).first(c)?;
    if owner != account.id {
        return Err(Problem::unauthorized("no such authorization for this account"));
    }
    let ch =
        acme_challenges::table.filter(acme_challenges::authz_id.eq(a.id)).select(Challenge::as_select()).load(c)?;
    Ok((a, ch))
}

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
                diesel::update(acme_authz::table.find(a.id)).set(acme_authz::status.eq("deactivated")).execute(c)?;
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
            let ch: Challenge = acme_challenges::table
                .find(id)
                .select(Challenge::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| Problem::unauthorized("no such challenge"))?;
            let (a, _) = load_authz(c, ch.authz_id, &acct)?;
            let start = respond && ch.status == "pending" && a.status == "pending";
            if start {
                diesel::update(acme_challenges::table.find(ch.id))
                    .set(acme_challenges::status.eq("processing"))
                    .execute(c)?;
            }
            let ch = acme_challenges::table.find(id).select(Challenge::as_select()).first(c)?;
            Ok((ch, a.id, start))
        })
        .await?;
        if start {
            let engine = state.engine.clone();
            let ch2 = ch.clone();
            actix_web::rt::spawn(async move {
                let e2 = engine.clone();
                let _ = web::block(move || validate_http01(&e2, &ch2, &thumb)).await;
            });
        }
        Ok(HttpResponse::Ok()
            .insert_header(("Link", format!("<{base}/authz/{aid}>;rel=\"up\"")))
            .content_type("application/json")
            .body(challenge_json(&ch, &base).to_string()))
    }
    .await;
    acme_response(&state, r).await
}

/// Resolves a name for validation: `acme.validation.hosts` first, then the system resolver.
fn resolve(engine: &Engine, name: &str, port: u16) -> Option<SocketAddr> {
    for entry in &engine.settings.acme.validation.hosts {
        let Some((pattern, ip)) = entry.split_once('=') else { continue };
        let pattern = pattern.trim().to_lowercase();
        let hit = match pattern.strip_prefix("*.") {
            Some(suffix) => name == suffix || name.ends_with(&format!(".{suffix}")),
            None => name == pattern,
        };
        if hit && let Ok(ip) = ip.trim().parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, port));
        }
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    (name, port).to_socket_addrs().ok()?.next()
}

/// http-01 (RFC 8555 §8.3): GET http://name:port/.well-known/acme-challenge/<token>; the body,
/// trailing whitespace trimmed, must be the key authorization.
fn validate_http01(engine: &Engine, ch: &Challenge, thumbprint: &str) -> Result<(), Problem> {
    let mut c = engine.pool.get()?;
    let a: Authz = acme_authz::table.find(ch.authz_id).select(Authz::as_select()).first(&mut c)?;
    let expected = format!("{}.{thumbprint}", ch.token);
    let port = engine.settings.acme.validation.http01_port;
    let timeout = Duration::from_secs(engine.settings.acme.validation.timeout_s.max(1));
    let outcome: Result<(), String> = (|| {
        let addr = resolve(engine, &a.identifier, port).ok_or_else(|| format!("cannot resolve {}", a.identifier))?;
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        s.set_read_timeout(Some(timeout)).ok();
        s.set_write_timeout(Some(timeout)).ok();
        write!(s, "GET /.well-known/acme-challenge/{} HTTP/1.0\r\nHost: {}\r\nUser-Agent: renewgate-validation\r\nConnection: close\r\n\r\n", ch.token, a.identifier)
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(16 * 1024).read_to_end(&mut buf).map_err(|e| format!("reading the answer: {e}"))?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("the answer is not HTTP")?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(format!(
                "http://{}:{port}/.well-known/acme-challenge/{} answered {status}",
                a.identifier, ch.token
            ));
        }
        if body.trim_end() != expected {
            return Err(format!("the key authorization served for {} is not the expected one", a.identifier));
        }
        Ok(())
    })();
    let ts = now();
    crate::db::write_tx(&mut c, None, |tx| -> Result<(), diesel::result::Error> {
        match &outcome {
            Ok(()) => {
                diesel::update(acme_challenges::table.find(ch.id))
                    .set((acme_challenges::status.eq("valid"), acme_challenges::validated.eq(ts)))
                    .execute(tx)?;
                diesel::update(acme_authz::table.find(a.id)).set(acme_authz::status.eq("valid")).execute(tx)?;
            }
            Err(e) => {
                diesel::update(acme_challenges::table.find(ch.id))
                    .set((acme_challenges::status.eq("invalid"), acme_challenges::error.eq(e)))
                    .execute(tx)?;
                diesel::update(acme_authz::table.find(a.id)).set(acme_authz::status.eq("invalid")).execute(tx)?;
            }
        }
        Ok(())
    })?;
    tracing::info!(identifier = %a.identifier, ok = outcome.is_ok(), "http-01 validation");
    Ok(())
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
        let (accepted, new_object, duplicate_of) = match (o.action.as_str(), o.target_object_id) {
            ("renew" | "reissue", Some(n)) => (
                engine
                    .renew(
                        c,
                        RenewRequest {
                            certificate: CertRef::ObjectId(n),
                            csr: Some(csr),
                            subject: None,
                            sans: None,
                            reenable: false,
                            certificate_data: None,
                        },
                    )
                    .map_err(map_engine)?,
                false,
                None,
            ),
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
            diesel::insert_into(acme_objects::table)
                .values((
                    acme_objects::object_id.eq(accepted.object.id),
                    acme_objects::account_id.eq(acct.id),
                    acme_objects::duplicate_of.eq(duplicate_of),
                    acme_objects::created_at.eq(now()),
                ))
                .execute(c)?;
        }
        diesel::update(acme_orders::table.find(o.id))
            .set((
                acme_orders::status.eq("processing"),
                acme_orders::job_id.eq(accepted.job_id),
                acme_orders::object_id.eq(accepted.object.id),
            ))
            .execute(c)?;
        Ok((o.id, accepted.job_id))
    })
    .await?;
    let _ =
        state.engine.wait_for_job(job, Duration::from_secs(10)).await.map_err(|e| Problem::server(e.to_string()))?;
    let (o, authz) = blocking(state, move |_, c| load_order(c, order, &account)).await?;
    let mut r = HttpResponse::Ok();
    if o.status == "processing" {
        r.insert_header(("Retry-After", "2"));
    }
    Ok(r.insert_header(("Location", format!("{base}/order/{}", o.id)))
        .content_type("application/json")
        .body(order_json(&o, &authz, &base).to_string()))
}

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
            let owned: i64 = acme_orders::table
                .filter(acme_orders::account_id.eq(account.id))
                .filter(acme_orders::certificate_id.eq(id))
                .count()
                .get_result(c)?;
            if owned == 0 {
                return Err(Problem::unauthorized("no such certificate for this account"));
            }
            let ver: crate::db::models::CertVersion =
                certificates::table.find(id).select(crate::db::models::CertVersion::as_select()).first(c)?;
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
